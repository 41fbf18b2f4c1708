//! Malformed input: answered with `invalid_payload`, never a panic, never a disconnect, never a
//! problem for anyone else.

use serde_json::{Value, json};

use crate::helpers::*;

const EVENTS: &[&str] = &[
    "conversation:create",
    "conversation:members:add",
    "conversation:members:remove",
    "conversation:leave",
    "message:send",
    "message:edit",
    "message:delete",
    "message:history",
    "sync",
];

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

both_backends! {
    async fn every_event_answers_garbage_with_invalid_payload(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let garbage = [
            Value::Null,
            json!("a string"),
            json!(42),
            json!([1, 2, 3]),
            json!({}),
            json!({ "conversation_id": 7, "user_ids": "bob", "client_id": [], "body": {}, "cursors": 3 }),
            json!({ "conversation_id": "x".repeat(50_000) }),
            json!({ "conversation_id": nested(100) }),
        ];
        for event in EVENTS {
            for payload in &garbage {
                let reply = alice.emit_with_ack(event, payload.clone()).await.expect("an ack");
                assert_eq!(reply["ok"], false, "{event} {payload}");
                let code = reply["error"]["code"].as_str().unwrap();
                assert!(code == "invalid_payload" || code == "too_large", "{event}: {reply}");
                assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
        }
        // The socket is still connected and the conversation still works for everyone.
        assert!(alice.is_connected());
        let m = send(&alice, &id, "after-garbage", "still here").await;
        assert_eq!(m["seq"], 1, "nothing was stored by the garbage");
        assert_eq!(expect(&mut bob, "message:new").await["message"], m);
    }

    async fn unknown_events_and_missing_acks_are_harmless(app: TestApp) {
        let alice = app.connect("alice").await;
        let e = alice.fails("message:teleport", json!({})).await;
        assert_eq!(e["code"], "invalid_payload");
        assert!(e["message"].as_str().unwrap().contains("message:teleport"));
        // Without an ack callback the event is still carried out.
        let id = group(&alice, "team", &[]).await;
        alice.emit("message:send", json!({ "conversation_id": id, "client_id": "no-ack", "body": "fire and forget" })).await.unwrap();
        alice.emit("message:send", json!({ "garbage": true })).await.unwrap();
        // Nothing tells us when it is stored, so look until it is.
        let mut stored = false;
        for _ in 0..50 {
            let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
            if page["messages"][0]["client_id"] == "no-ack" {
                stored = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(stored, "a send without an ack is still stored");
        // Several arguments: the first is the payload.
        let reply = alice
            .emit_args_with_ack("message:history", &[json!({ "conversation_id": id }), json!("extra")])
            .await
            .unwrap();
        assert_eq!(reply[0]["ok"], true);
    }

    async fn positional_arrays_are_not_payloads(app: TestApp) {
        // serde's derived structs read `["<id>", "c1", "hi"]` field by field; the protocol says
        // payloads are objects, so each of these must be refused, and nothing done.
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let attempts = [
            ("message:send", json!([id, "positional", "hello"])),
            ("conversation:create", json!(["direct", "bob"])),
            ("conversation:create", json!(["group", null, "by position", ["bob"]])),
            ("conversation:read", json!([id, 1])),
            ("conversation:leave", json!([id])),
            ("presence:get", json!([["bob"]])),
        ];
        for (event, payload) in attempts {
            let e = alice.fails(event, payload.clone()).await;
            assert_eq!(e["code"], "invalid_payload", "{event} {payload}: {e}");
            assert_eq!(e["message"], "payload: must be an object, not an array", "{event}");
            assert!(e.get("field").is_none(), "{e}");
        }
        let (status, body) = app
            .http()
            .post(&format!("/api/conversations/{id}/messages"), Some(&app.token("alice")), &json!(["positional", "hello"]))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_payload");
        // None of it happened: alice is still a member, no conversation was made, no message stored.
        expect_none(&mut bob, "message:new").await;
        let list = alice.ok("conversation:list", json!({})).await;
        assert_eq!(list["conversations"].as_array().unwrap().len(), 1, "{list}");
        let m = send(&alice, &id, "after-arrays", "objects still work").await;
        assert_eq!(m["seq"], 1, "nothing was stored by the arrays");
    }
}
