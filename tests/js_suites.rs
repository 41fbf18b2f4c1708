//! The JavaScript suites, run by `cargo test` so that the README's one command runs everything:
//! the client library's tests (`clients/js`), the web bundle check and the browser tests (`web/`),
//! and the Next.js example (`examples/nextjs`) built and driven in the browser, each against this
//! build's `confab` binary.
//!
//! They need Node.js 20+ with npm, and (for the browser tests) Chromium at `/usr/bin/chromium` or
//! `CHROMIUM_PATH`. Missing tools skip the tests with a note on a laptop, and fail them in CI
//! (`CI=true`). Dependencies are installed with `npm ci` when `node_modules` is missing or older
//! than `package-lock.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

/// One suite at a time: each starts servers and (for the browser) Chromium, and the machine may
/// have two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `Ok(())` when the tools are there; otherwise skips (returns `Err`) or, in CI, fails.
fn need(what: &str, present: bool, hint: &str) -> Result<(), ()> {
    if present {
        return Ok(());
    }
    if required() {
        panic!("{what} is required in CI and missing: {hint}");
    }
    eprintln!("skipping: {what} is missing ({hint})");
    Err(())
}

fn node_ok() -> bool {
    let Ok(out) = Command::new("node").arg("--version").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    out.status.success() && major >= 20 && Command::new("npm").arg("--version").output().is_ok()
}

/// Node.js and Chromium, for the browser tests: `need()` of each.
fn browser_tools() -> Result<(), ()> {
    need(
        "Node.js 20+ with npm",
        node_ok(),
        "install Node.js 20 or later",
    )?;
    need(
        "Chromium",
        chromium_path().exists(),
        "apt-get install -y chromium, or set CHROMIUM_PATH",
    )
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs a command in `dir` with the test environment; panics with its output when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let started = Instant::now();
    let output: Output = Command::new(program)
        .args(args)
        .current_dir(dir)
        // This build's server: the JS tests don't build their own.
        .env("CONFAB_BIN", env!("CARGO_BIN_EXE_confab"))
        .env("CHROMIUM_PATH", chromium_path())
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {}: {e}", dir.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`{program} {}` failed in {} ({}):\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        dir.display(),
        output.status,
        tail(&stdout, 200),
        tail(&stderr, 100),
    );
    println!(
        "`{program} {}` in {}: ok in {:.1}s\n{}",
        args.join(" "),
        dir.display(),
        started.elapsed().as_secs_f64(),
        tail(&stdout, 12)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `npm ci` where `node_modules` is missing (a fresh clone) or older than the lockfile (someone
/// added a dependency since the last install).
fn install(dirs: &[&str]) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    for dir in dirs {
        let dir = repo().join(dir);
        // npm keeps a copy of the lockfile it installed from in node_modules.
        let installed = modified(&dir.join("node_modules/.package-lock.json"));
        let wanted = modified(&dir.join("package-lock.json"));
        if installed.is_none() || wanted > installed {
            run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]);
        }
    }
}

#[test]
fn client_library() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if need(
        "Node.js 20+ with npm",
        node_ok(),
        "install Node.js 20 or later",
    )
    .is_err()
    {
        return;
    }
    install(&["clients/js"]);
    run(&repo().join("clients/js"), "npm", &["test"]);
}

#[test]
fn web_bundle_matches_its_sources() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if need(
        "Node.js 20+ with npm",
        node_ok(),
        "install Node.js 20 or later",
    )
    .is_err()
    {
        return;
    }
    install(&["clients/js", "web"]);
    run(&repo().join("web"), "sh", &["check-bundle.sh"]);
}

#[test]
fn web_app_in_a_browser() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if browser_tools().is_err() {
        return;
    }
    install(&["clients/js", "web"]);
    run(&repo().join("web"), "npm", &["test"]);
}

#[test]
fn nextjs_example_in_a_browser() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if browser_tools().is_err() {
        return;
    }
    install(&["clients/js"]);
    // The example installs @confab/client as npm users would: from the tarball `npm pack` makes
    // (its `prepare` builds it), not a link to the sources. Packed and installed every time, since
    // the tarball changes with the sources (its lockfile entry has no integrity, so `npm ci`
    // reads the new one rather than npm's cached copy of the old).
    run(&repo().join("clients/js"), "npm", &["pack"]);
    run(
        &repo().join("examples/nextjs"),
        "npm",
        &["ci", "--no-audit", "--no-fund"],
    );
    // Builds and starts the app (`next build` and `next start`, then `next dev`) and drives it in
    // Chromium (examples/nextjs/e2e).
    run(&repo().join("examples/nextjs"), "npm", &["test"]);
}
