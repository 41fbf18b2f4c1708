//! The OpenAPI document: served, equal to the committed docs/openapi.json, and true of the
//! server (schemathesis, from PyPI, throws generated requests at a running server).

use std::process::Stdio;

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let (status, served) = app.http().get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(served["openapi"], "3.1.0");
    let paths = served["paths"].as_object().unwrap();
    for path in [
        "/api/conversations",
        "/api/conversations/{id}/messages",
        "/api/blocks",
        "/api/server/conversations",
        "/api/server/conversations/{id}/messages",
        "/api/server/users/{user_id}",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    assert!(
        committed.as_ref() == Some(&served),
        "docs/openapi.json is out of date: run `cargo run -q -- openapi > docs/openapi.json`"
    );
}

/// The schemathesis command, if installed (`pip install schemathesis`; .ci/run installs it).
fn schemathesis() -> Option<&'static str> {
    let found = std::process::Command::new("st")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("st");
    }
    if services_required() {
        panic!("schemathesis is required in CI (pip install schemathesis)");
    }
    eprintln!("schemathesis is not installed; skipping (pip install schemathesis)");
    None
}

/// Runs schemathesis against one tag's routes with `token`: no 5xx, every answer as documented.
async fn fuzz(app: &TestApp, tag: &str, token: &str) {
    let Some(st) = schemathesis() else {
        return;
    };
    // Run elsewhere: schemathesis keeps a cache in its working directory.
    let scratch = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(st)
        .current_dir(scratch.path())
        .args([
            "--no-color",
            "run",
            &format!("{}/api/openapi.json", app.url),
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--include-tag",
            tag,
            "--max-examples",
            "30",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--generation-database",
            "none",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("running schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems ({tag}):\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_and_answers_match_the_schema() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let token = app.token("fuzzer");
    fuzz(&app, "user", &token).await;
    fuzz(&app, "server", SERVER_KEY).await;
}
