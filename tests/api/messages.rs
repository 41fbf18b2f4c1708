//! Sending, retrying, editing and deleting messages, and who hears of it.

use serde_json::{Value, json};

use crate::helpers::*;

both_backends! {
    async fn a_message_is_acked_then_delivered_to_everyone_else(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut alice_phone = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut outsider = app.connect("outsider").await;
        let id = group(&alice, "team", &["bob"]).await;
        let m = send(&alice, &id, "c-1", "hello").await;
        assert_eq!(m["conversation_id"], id.as_str());
        assert_eq!(m["seq"], 1);
        assert_eq!(m["sender_id"], "alice");
        assert_eq!(m["client_id"], "c-1");
        assert_eq!(m["body"], "hello");
        assert_eq!(m["edited_at"], Value::Null);
        assert_eq!(m["deleted_at"], Value::Null);
        let created = m["created_at"].as_str().unwrap();
        assert_eq!(created.len(), "2026-01-01T00:00:00.000Z".len(), "{created}");
        assert!(uuid::Uuid::parse_str(m["id"].as_str().unwrap()).is_ok());
        assert_eq!(expect(&mut bob, "message:new").await, json!({ "message": m }));
        assert_eq!(expect(&mut alice_phone, "message:new").await, json!({ "message": m }));
        expect_none(&mut outsider, "message:new").await;
    }

    async fn the_sending_socket_gets_the_ack_not_the_event(app: TestApp) {
        let mut alice = app.connect("alice").await;
        let id = group(&alice, "team", &["bob"]).await;
        send(&alice, &id, "c-1", "hello").await;
        expect_none(&mut alice, "message:new").await;
    }

    async fn a_retry_returns_the_stored_message_and_broadcasts_nothing(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let first = send(&alice, &id, "same-key", "hello").await;
        expect(&mut bob, "message:new").await;
        // Even with a different body: the key identifies the message.
        let again = send(&alice, &id, "same-key", "hello, edited by mistake").await;
        assert_eq!(again, first);
        expect_none(&mut bob, "message:new").await;
        // The key is per sender: bob may use the same one.
        let bobs = send(&bob, &id, "same-key", "mine").await;
        assert_eq!(bobs["seq"], 2);
        // And per conversation.
        let other = group(&alice, "other", &["bob"]).await;
        assert_eq!(send(&alice, &other, "same-key", "new").await["seq"], 1);
    }

    async fn a_retry_after_reconnecting_is_still_deduplicated(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "team", &["bob"]).await;
        let first = send(&alice, &id, "k", "hello").await;
        alice.disconnect().await;
        let alice = app.connect("alice").await;
        assert_eq!(send(&alice, &id, "k", "hello").await, first);
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    }

    async fn non_members_get_not_found_like_a_missing_conversation(app: TestApp) {
        let alice = app.connect("alice").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &["bob"]).await;
        let e1 = mallory.fails("message:send", json!({ "conversation_id": id, "client_id": "m", "body": "hi" })).await;
        let missing = uuid::Uuid::now_v7().to_string();
        let e2 = mallory.fails("message:send", json!({ "conversation_id": missing, "client_id": "m", "body": "hi" })).await;
        assert_eq!(e1["code"], "not_found");
        assert_eq!(e1, e2, "a stranger can't tell a conversation exists");
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"], json!([]), "nothing was stored");
    }

    async fn refusals_and_retries_among_other_sends_leave_no_gap(app: TestApp) {
        // Sent all at once so that they share the writer's batches: a batch holding a
        // non-member's send or a retry is written again knowing about them (PostgreSQL), and
        // the others' messages must come out of that with consecutive seqs, once each. Refusals
        // and retries go in separate rounds, so that either alone must trigger that.
        let alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &["bob"]).await;
        let first = send(&alice, &id, "k0", "first").await;
        let payload = |client_id: String| json!({ "conversation_id": id, "client_id": client_id, "body": "hi" });
        let members_send = |round: usize| {
            let (alice, bob, payload) = (&alice, &bob, &payload);
            futures::future::join_all((1..=20).map(move |i| {
                let sender = if i % 2 == 0 { alice } else { bob };
                sender.ok("message:send", payload(format!("r{round}-{i}")))
            }))
        };

        let refused = futures::future::join_all(
            (0..10).map(|i| mallory.fails("message:send", payload(format!("m{i}")))),
        );
        let (mut stored, refused) = tokio::join!(members_send(1), refused);
        assert!(refused.iter().all(|e| e["code"] == "not_found"), "{refused:?}");

        let retried = futures::future::join_all((0..10).map(|_| {
            alice.ok("message:send", json!({ "conversation_id": id, "client_id": "k0", "body": "first" }))
        }));
        let (more, retried) = tokio::join!(members_send(2), retried);
        assert!(retried.iter().all(|d| d["message"] == first), "{retried:?}");
        stored.extend(more);

        let mut seqs: Vec<i64> = stored.iter().map(|d| d["message"]["seq"].as_i64().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=41).collect::<Vec<_>>());
        let page = alice
            .ok("message:history", json!({ "conversation_id": id, "limit": 100 }))
            .await;
        let mut stored: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        stored.sort_unstable();
        assert_eq!(stored, (1..=41).collect::<Vec<_>>());
        assert!(page["messages"].as_array().unwrap().iter().all(|m| m["sender_id"] != "mallory"));
    }

    async fn bodies_are_checked(app: TestApp) {
        let alice = app.connect("alice").await;
        let id = group(&alice, "team", &[]).await;
        let cases = [
            (json!(""), "invalid_payload"),
            (json!("   \n "), "invalid_payload"),
            (json!("x".repeat(5001)), "too_large"),
            (json!("nul\u{0}byte"), "invalid_payload"),
            (json!(42), "invalid_payload"),
            (json!(null), "invalid_payload"),
            (json!(["x"]), "invalid_payload"),
        ];
        for (body, code) in cases {
            let e = alice.fails("message:send", json!({ "conversation_id": id, "client_id": "k", "body": body })).await;
            assert_eq!(e["code"], code, "body {body}");
            assert_eq!(e["field"], "body", "body {body}");
        }
        // Exactly at the limit, counted in characters, is fine.
        send(&alice, &id, "k", &"é".repeat(5000)).await;
        let e = alice.fails("message:send", json!({ "conversation_id": id, "client_id": "", "body": "x" })).await;
        assert_eq!(e["field"], "client_id");
        let e = alice.fails("message:send", json!({ "conversation_id": id, "client_id": "k".repeat(65), "body": "x" })).await;
        assert_eq!(e["field"], "client_id");
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"].as_array().unwrap().len(), 1, "no refused send was stored");
    }

    async fn the_sender_edits_and_everyone_hears(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let m = send(&alice, &id, "k", "helo").await;
        expect(&mut bob, "message:new").await;
        let edited = alice
            .ok("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "hello" }))
            .await["message"]
            .clone();
        assert_eq!(edited["body"], "hello");
        assert_eq!(edited["seq"], m["seq"]);
        assert!(edited["edited_at"].is_string());
        assert_eq!(expect(&mut bob, "message:updated").await["message"], edited);
        let e = bob.fails("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "mine now" })).await;
        assert_eq!(e["code"], "forbidden");
        let e = bob.fails("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await;
        assert_eq!(e["code"], "forbidden");
        let e = alice.fails("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "x".repeat(5001) })).await;
        assert_eq!(e["code"], "too_large");
    }

    async fn a_deleted_message_keeps_its_seq(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        let m = send(&alice, &id, "k1", "oops").await;
        send(&alice, &id, "k2", "fine").await;
        let deleted = alice.ok("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await["message"].clone();
        assert_eq!(deleted["body"], Value::Null);
        assert_eq!(deleted["seq"], 1);
        assert!(deleted["deleted_at"].is_string());
        expect(&mut bob, "message:new").await;
        expect(&mut bob, "message:new").await;
        assert_eq!(expect(&mut bob, "message:updated").await["message"], deleted);
        // Deleting again changes nothing; editing a deleted message is a conflict.
        let again = alice.ok("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await;
        assert_eq!(again["message"], deleted);
        let e = alice.fails("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "back" })).await;
        assert_eq!(e["code"], "conflict");
        let page = bob.ok("message:history", json!({ "conversation_id": id })).await;
        let seqs: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(page["messages"][0]["body"], Value::Null);
    }

    async fn editing_what_you_cannot_see_is_not_found(app: TestApp) {
        let alice = app.connect("alice").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &[]).await;
        let m = send(&alice, &id, "k", "secret").await;
        let e = mallory.fails("message:edit", json!({ "conversation_id": id, "message_id": m["id"], "body": "x" })).await;
        assert_eq!(e["code"], "not_found");
        let e = mallory.fails("message:delete", json!({ "conversation_id": id, "message_id": m["id"] })).await;
        assert_eq!(e["code"], "not_found");
        let unknown = uuid::Uuid::now_v7().to_string();
        let e = alice.fails("message:delete", json!({ "conversation_id": id, "message_id": unknown })).await;
        assert_eq!(e["code"], "not_found");
        // A message id from another conversation doesn't match.
        let other = group(&alice, "other", &[]).await;
        let e = alice.fails("message:delete", json!({ "conversation_id": other, "message_id": m["id"] })).await;
        assert_eq!(e["code"], "not_found");
        let e = alice.fails("message:delete", json!({ "conversation_id": id, "message_id": "nope" })).await;
        assert_eq!(e["field"], "message_id");
    }
}
