//! Starting the `confab` binary as a newcomer would, with the settings people get wrong: each
//! mistake must stop the start with a message that says what is wrong and what to do, on one
//! line, without a backtrace (even with `RUST_BACKTRACE=1`, which many shells have set), and
//! without leaving files behind.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::helpers::*;
use crate::nodes::{NodeProcess, free_port};

/// Runs `confab ARGS` in `dir` with only these variables (plus PATH and RUST_BACKTRACE=1), and
/// waits for it to end.
async fn run(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .kill_on_drop(true);
    for (k, v) in vars {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("confab ended in time")
        .expect("confab ran")
}

/// The start failed with one clear line (on stderr) containing each of `says`.
fn refused(output: &Output, says: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "confab started: {stderr}");
    for part in says {
        assert!(stderr.contains(part), "expected {part:?} in: {stderr}");
    }
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Caused by"),
        "a dump, not a message: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    stderr
}

fn bind() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[tokio::test]
async fn an_empty_secret_stops_the_start_instead_of_opening_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let public = format!("0.0.0.0:{}", free_port());
    // `CONFAB_JWT_SECRET="$NEXTAUTH_SECRET"` with NEXTAUTH_SECRET unset.
    let output = run(
        dir.path(),
        &[],
        &[("CONFAB_JWT_SECRET", ""), ("CONFAB_BIND", &public)],
    )
    .await;
    refused(&output, &["CONFAB_JWT_SECRET is set but empty"]);
    // And without the variable at all, a public address in local mode needs an explicit choice.
    let output = run(dir.path(), &[], &[("CONFAB_BIND", &public)]).await;
    refused(
        &output,
        &["not a loopback address", "CONFAB_DEV_LOGIN=true"],
    );
    assert!(
        !dir.path().join("confab-data").exists(),
        "a refused start created files"
    );
}

#[tokio::test]
async fn an_explicit_open_sign_in_on_a_public_address_starts_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = NodeProcess::start(&[
        ("CONFAB_BIND", &format!("0.0.0.0:{}", free_port())),
        ("CONFAB_DEV_LOGIN", "true"),
        ("CONFAB_DATA_DIR", data.to_str().unwrap()),
    ])
    .await;
    let output = node.output().join("\n");
    assert!(output.contains("WARN"), "{output}");
    assert!(output.contains("sign in as anyone"), "{output}");
}

#[tokio::test]
async fn a_private_key_given_as_the_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("key.pem"), pem).unwrap();
    for value in [pem, "key.pem"] {
        let output = run(
            dir.path(),
            &[],
            &[("CONFAB_JWT_PUBLIC_KEY", value), ("CONFAB_BIND", &bind())],
        )
        .await;
        refused(
            &output,
            &["CONFAB_JWT_PUBLIC_KEY holds a private key", "-pubout"],
        );
    }
}

#[tokio::test]
async fn confab_token_finds_the_servers_secret_or_says_where_it_looked() {
    let server_dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // Nothing was ever started here: no secret to sign with, and none is made up.
    let output = run(elsewhere.path(), &["token", "--sub", "alice"], &[]).await;
    let expected = elsewhere.path().join("confab-data").join("jwt-secret");
    refused(
        &output,
        &[
            &expected.display().to_string(),
            "CONFAB_DATA_DIR",
            "CONFAB_JWT_SECRET",
        ],
    );
    assert!(!elsewhere.path().join("confab-data").exists());

    // Beside a local-mode server, the token it prints is one the server accepts.
    let data = server_dir.path().join("confab-data");
    let node = NodeProcess::start(&[("CONFAB_DATA_DIR", data.to_str().unwrap())]).await;
    let output = run(
        server_dir.path(),
        &["token", "--sub", "alice"],
        &[("CONFAB_DATA_DIR", data.to_str().unwrap())],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let options =
        confab_sio_client::ConnectOptions::new(node.url.clone()).auth(json!({ "token": token }));
    confab_sio_client::connect(options)
        .await
        .expect("the printed token connects");
}

#[tokio::test]
async fn database_problems_say_what_and_where_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ("CONFAB_JWT_SECRET", SECRET);
    // Nothing listens on this port.
    let closed = free_port();
    let url = format!("postgres://root:s3cret-pw@127.0.0.1:{closed}/chat");
    let output = run(
        dir.path(),
        &[],
        &[
            secret,
            ("CONFAB_DATABASE_URL", &url),
            ("CONFAB_BIND", &bind()),
        ],
    )
    .await;
    let message = refused(
        &output,
        &[
            &format!("127.0.0.1:{closed}"),
            "\"chat\"",
            "connection refused",
        ],
    );
    assert!(!message.contains("s3cret-pw"), "{message}");

    // A database that doesn't exist, on a server that does.
    if reachable("127.0.0.1:5432").await {
        let url = "postgres://root@127.0.0.1:5432/confab_no_such_database";
        let output = run(
            dir.path(),
            &[],
            &[
                secret,
                ("CONFAB_DATABASE_URL", url),
                ("CONFAB_BIND", &bind()),
            ],
        )
        .await;
        let message = refused(&output, &["confab_no_such_database", "does not exist"]);
        assert!(!message.contains("at line"), "{message}");
    } else {
        assert!(!services_required(), "PostgreSQL is required in CI");
    }

    // A SQLite path whose directory doesn't exist is a typo, not a new database.
    let missing = dir
        .path()
        .join("no")
        .join("such")
        .join("dir")
        .join("chat.db");
    let url = format!("sqlite://{}", missing.display());
    let output = run(
        dir.path(),
        &[],
        &[
            secret,
            ("CONFAB_DATABASE_URL", &url),
            ("CONFAB_BIND", &bind()),
        ],
    )
    .await;
    refused(&output, &["does not exist", "chat.db"]);
    assert!(!dir.path().join("no").exists(), "directories were created");
}

async fn reachable(addr: &str) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

#[tokio::test]
async fn bind_problems_are_explained_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(
        dir.path(),
        &[],
        &[
            ("CONFAB_BIND", &addr),
            ("CONFAB_DATA_DIR", data.to_str().unwrap()),
        ],
    )
    .await;
    refused(&output, &[&addr, "already in use", "CONFAB_BIND="]);
    assert!(
        !data.exists(),
        "the data directory was created before the bind"
    );

    let output = run(dir.path(), &[], &[("CONFAB_BIND", "localhost")]).await;
    refused(&output, &["CONFAB_BIND", "localhost:3001"]);

    // A host name is resolved.
    let node = NodeProcess::start(&[
        ("CONFAB_BIND", &format!("localhost:{}", free_port())),
        ("CONFAB_DATA_DIR", data.to_str().unwrap()),
    ])
    .await;
    assert!(node.url.contains("127.0.0.1"), "{}", node.url);
}

#[tokio::test]
async fn a_misspelled_variable_is_named_with_the_setting_it_resembles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let node = NodeProcess::start(&[
        ("CONFAB_JWT_SECERT", "oops-misspelled-secret"),
        ("CONFAB_DATA_DIR", data.to_str().unwrap()),
    ])
    .await;
    let output = node.output().join("\n");
    assert!(
        output.contains(
            "CONFAB_JWT_SECERT is not a confab setting (did you mean CONFAB_JWT_SECRET?)"
        ),
        "{output}"
    );
    assert!(!output.contains("oops-misspelled-secret"), "{output}");
}

#[tokio::test]
async fn confab_config_prints_what_is_in_effect_and_where_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("confab.toml"), "max_body_chars = 1234\n").unwrap();
    let output = run(
        dir.path(),
        &["--config", "confab.toml", "config"],
        &[("CONFAB_JWT_SECRET", SECRET), ("CONFAB_RATE_SEND", "5/10")],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let line = |var: &str| {
        table
            .lines()
            .find(|l| l.starts_with(var))
            .unwrap_or_else(|| panic!("no {var} in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("CONFAB_MAX_BODY_CHARS"),
        "CONFAB_MAX_BODY_CHARS file 1234"
    );
    assert_eq!(line("CONFAB_RATE_SEND"), "CONFAB_RATE_SEND env 5/10");
    assert_eq!(line("CONFAB_BIND"), "CONFAB_BIND default 127.0.0.1:3001");
    assert!(!table.contains(SECRET), "{table}");

    // A file named but missing is an error, not an empty file.
    let output = run(dir.path(), &["--config", "missing.toml", "config"], &[]).await;
    refused(&output, &["missing.toml"]);
    let output = run(dir.path(), &["config", "--reference"], &[]).await;
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("# Configuration reference"));
}
