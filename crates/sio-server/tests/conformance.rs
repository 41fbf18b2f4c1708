//! Runs the official `socket.io-client` (npm, driven by Node) against the server: `tests/js/`, once with
//! the default JSON parser and once with `socket.io-msgpack-parser`, each against a fresh server (the
//! server needs no setting for either: it learns each connection's parser from its first packet).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Server;
use confab_sio::{Config, DisconnectReason};

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Installs the test's npm packages (from the committed lock file) when they are missing.
fn ensure_node_modules(js_dir: &Path) {
    if js_dir
        .join("node_modules/socket.io-msgpack-parser")
        .is_dir()
    {
        return;
    }
    let npm = find_program("npm")
        .expect("npm not found on PATH: the conformance test needs Node 20+ and npm");
    let status = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js_dir)
        .status()
        .expect("running npm ci");
    assert!(status.success(), "npm ci failed in {}", js_dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_socket_io_client_conformance() {
    conformance("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_socket_io_client_conformance_with_the_msgpack_parser() {
    conformance("msgpack").await;
}

async fn conformance(parser: &str) {
    // Both tests install the npm packages on a fresh checkout: one at a time.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let node =
        find_program("node").expect("node not found on PATH: the conformance test needs Node 20+");
    let js_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    {
        let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        ensure_node_modules(&js_dir);
    }
    let config = Config {
        ping_interval: Duration::from_millis(1000),
        ping_timeout: Duration::from_millis(1000),
        max_payload: 100_000,
        ..Config::default()
    };
    let server = Server::start(config).await;

    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(node)
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-reporter=spec",
                "conformance.test.mjs",
            ])
            .current_dir(&js_dir)
            .env("SIO_URL", server.url())
            .env("SIO_PARSER", parser)
            .output(),
    )
    .await
    .expect("the Node tests took more than 3 minutes")
    .expect("running node");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the socket.io-client conformance tests failed with the {parser} parser (see the output above)"
    );

    // What the handler saw, checked from the server's side too.
    {
        let records = server.records();
        let reasons = |label: &str| records.disconnects.get(label).cloned().unwrap_or_default();
        assert_eq!(
            reasons("client-disconnect"),
            vec![DisconnectReason::ClientDisconnect]
        );
        assert_eq!(reasons("kicked"), vec![DisconnectReason::ServerDisconnect]);
        assert_eq!(
            reasons("no-pong").first(),
            Some(&DisconnectReason::PingTimeout)
        );
        assert_eq!(
            reasons("reconnect").first(),
            Some(&DisconnectReason::TransportClose)
        );
        assert!(records.connects.get("reconnect").copied().unwrap_or(0) >= 2);
        assert!(
            !records.connects.contains_key("expired"),
            "a refused connect must not count as connected"
        );
        for label in ["big-ws", "big-polling"] {
            let events = records.events.get(label).cloned().unwrap_or_default();
            assert!(
                !events.contains(&"big".to_owned()),
                "{label}: the oversized event must not be delivered"
            );
            assert_eq!(
                reasons(label).first(),
                Some(&DisconnectReason::TransportError),
                "{label}"
            );
        }
    }
    server.stop().await;
}
