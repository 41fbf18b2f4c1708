//! The official `socket.io-client` (what browsers run) against confab, over WebSocket, HTTP
//! long-polling and the upgrade between them, with the default JSON parser and with
//! `socket.io-msgpack-parser`. The script is tests/js/official.mjs.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::helpers::*;

/// Installs the script's dependencies once (`npm ci`) when they are missing.
fn node_modules(dir: &Path) -> bool {
    // Both backends' tests get here at once on a fresh checkout: without the lock, one runs the
    // script while the other's `npm ci` is wiping node_modules.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules/socket.io-msgpack-parser").exists() {
        return true;
    }
    match Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
    {
        Ok(status) if status.success() => true,
        Ok(status) => panic!("npm ci failed in {}: {status}", dir.display()),
        Err(e) if !services_required() => {
            eprintln!("npm is not available ({e}); skipping the official client test");
            false
        }
        Err(e) => panic!("npm is required in CI: {e}"),
    }
}

both_backends! {
    async fn the_official_client_chats_over_every_transport(app: TestApp) {
        official_client(&app, "json").await;
    }

    async fn the_official_client_chats_with_the_msgpack_parser(app: TestApp) {
        official_client(&app, "msgpack").await;
    }
}

async fn official_client(app: &TestApp, parser: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !node_modules(&dir) {
        return;
    }
    let expired = sign(json!({ "sub": "alice", "exp": chrono_now() - 600 }));
    let output = tokio::process::Command::new("node")
        .arg("official.mjs")
        .arg(&app.url)
        .args([
            app.token("alice"),
            app.token("bob"),
            app.token("carol"),
            expired,
        ])
        .arg(parser)
        .arg(SERVER_KEY)
        .current_dir(&dir)
        .output()
        .await
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "official client checks failed ({parser} parser):\n{stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
}
