//! Structured logs, read from a real node's output: JSON lines with `CONFAB_LOG_FORMAT=json`,
//! connection events in a span naming the user, and no message bodies, tokens or secrets.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::*;
use crate::nodes::NodeProcess;

const BODY: &str = "zebra-quartz-1729 the body nobody may log";
const EDITED: &str = "okapi-vellum-4471 the edit nobody may log";
const LOCKED: &str = "narwhal-tundra-8802 sent while the database was locked";

#[tokio::test]
async fn json_logs_carry_the_user_and_never_bodies_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("logs.db").display());
    let mut node = NodeProcess::start(&[
        ("CONFAB_DATABASE_URL", database.as_str()),
        ("CONFAB_JWT_SECRET", SECRET),
        ("CONFAB_DATA_DIR", dir.path().to_str().unwrap()),
        ("CONFAB_LOG_FORMAT", "json"),
        // Our own crates at their most detailed level (what an operator turns on to debug).
        ("CONFAB_LOG", "info,confab=debug,confab_sio=debug"),
    ])
    .await;
    let token = |user: &str| sign(json!({ "sub": user, "exp": chrono_now() + 3600 }));
    // Acks may wait out the database's busy timeout below.
    let connect = |auth: Value| {
        confab_sio_client::connect(
            confab_sio_client::ConnectOptions::new(node.url.clone())
                .ack_timeout(Duration::from_secs(30))
                .auth(auth),
        )
    };
    let alice_token = token("alice");
    let alice = connect(json!({ "token": alice_token })).await.unwrap();
    let mut bob = connect(json!({ "token": token("bob") })).await.unwrap();
    let id = group(&alice, "logged", &["bob"]).await;
    let m = send(&alice, &id, "c1", BODY).await;
    assert_eq!(
        expect(&mut bob, "message:new").await["message"]["body"],
        BODY
    );
    alice
        .ok(
            "message:edit",
            json!({ "conversation_id": id, "message_id": m["id"], "body": EDITED }),
        )
        .await;

    // Errors: a malformed payload, a conversation that isn't there, another user's token on
    // refresh, and handshakes with an expired and a forged token.
    alice
        .fails(
            "message:send",
            json!({ "conversation_id": id, "body": BODY }),
        )
        .await;
    let missing = "018f3c2e-7a1b-7c3d-8e4f-5a6b7c8d9e0f";
    let e = alice
        .fails(
            "message:send",
            json!({ "conversation_id": missing, "client_id": "c2", "body": BODY }),
        )
        .await;
    assert_eq!(e["code"], "not_found");
    let bob_token = token("bob");
    let e = alice
        .fails("auth:refresh", json!({ "token": bob_token }))
        .await;
    assert_eq!(e["code"], "unauthorized");
    let expired = sign(json!({ "sub": "carol", "exp": chrono_now() - 3600 }));
    assert!(connect(json!({ "token": expired })).await.is_err());
    let forged = format!("{}x", token("carol"));
    assert!(connect(json!({ "token": forged })).await.is_err());

    // A database that can't be written: the failures are logged (WARN, with their cause) in the
    // socket's span, for a send (answered from the writer task) as for any other event.
    let mut lock = sqlx::SqliteConnection::connect(&database).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let (sent, read) = tokio::join!(
        alice.emit_with_ack(
            "message:send",
            json!({ "conversation_id": id, "client_id": "c3", "body": LOCKED }),
        ),
        alice.emit_with_ack(
            "conversation:read",
            json!({ "conversation_id": id, "seq": 1 })
        ),
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    assert_eq!(sent.unwrap()["error"]["code"], "unavailable");
    assert_eq!(read.unwrap()["error"]["code"], "unavailable");

    drop(alice);
    drop(bob);
    // Both disconnections are logged before the node is stopped.
    let disconnected = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"socket disconnected\""))
            .count()
    };
    for _ in 0..100 {
        if disconnected(&node.output()) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.terminate(Duration::from_secs(10))
        .await
        .expect("confab stops on SIGTERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = node.output();

    let mut socket_events = Vec::new();
    let mut unavailable = Vec::new();
    for line in &lines {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        let level = entry["level"].as_str().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "no level: {line}"
        );
        let timestamp = entry["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "no RFC 3339 timestamp: {line}"
        );
        assert!(
            entry["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {line}"
        );
        if entry["message"] == "dependency unavailable" {
            unavailable.push(entry);
        } else if entry["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("socket "))
            // confab's own, not confab-sio's transport lines (which name the Engine.IO session).
            && entry["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("confab::"))
        {
            socket_events.push(entry);
        }
    }
    for (what, secret) in [
        ("a message body", BODY),
        ("an edited body", EDITED),
        ("a body that failed to store", LOCKED),
        ("a token", alice_token.as_str()),
        ("a refresh token", bob_token.as_str()),
        ("an expired token", expired.as_str()),
        ("a forged token", forged.as_str()),
        ("the JWT secret", SECRET),
    ] {
        // Also a token's signature alone: a log line could carry part of it.
        let needle = secret.rsplit('.').next().unwrap();
        assert!(
            !lines.iter().any(|l| l.contains(needle)),
            "{what} was logged"
        );
    }
    for (user, event) in [
        ("alice", "socket connected"),
        ("bob", "socket connected"),
        ("alice", "socket disconnected"),
        ("bob", "socket disconnected"),
    ] {
        let found = socket_events.iter().find(|e| {
            e["message"] == event && e["span"]["name"] == "socket" && e["span"]["user"] == user
        });
        assert!(
            found.is_some(),
            "no {event:?} in a socket span for {user}: {socket_events:#?}"
        );
    }
    // Every socket event is in its socket's span, and no line names a socket it isn't about.
    for e in &socket_events {
        assert_eq!(e["span"]["name"], "socket", "{e}");
        assert!(e["span"]["key"].is_u64(), "{e}");
        if let Some(spans) = e["spans"].as_array() {
            assert!(
                spans.iter().all(|s| s["user"] == e["span"]["user"]),
                "a line lists another socket's span: {e}"
            );
        }
    }
    assert_eq!(unavailable.len(), 2, "{unavailable:#?}");
    for e in &unavailable {
        assert_eq!(e["level"], "WARN");
        assert_eq!(e["span"]["name"], "socket", "not in the socket's span: {e}");
        assert_eq!(e["span"]["user"], "alice", "{e}");
        // The cause, not only the opaque "service unavailable" the client is told.
        let cause = e["error"].as_str().unwrap_or_default();
        assert!(
            cause.contains("locked") || cause.contains("timed out"),
            "no cause: {e}"
        );
    }
}
