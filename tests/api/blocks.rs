//! Blocks: a blocked user can't open or write a direct conversation with the blocker, and
//! doesn't see the blocker's presence.

use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn a_blocked_user_cannot_open_or_write_to_the_blocker(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let direct = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let direct_id = direct["conversation"]["id"].as_str().unwrap().to_owned();
        let group_id = group(&alice, "club", &["bob"]).await;
        send(&bob, &direct_id, "b0", "hi").await;

        let reply = alice.ok("user:block", json!({ "user_id": "bob" })).await;
        assert_eq!(reply, json!({ "user_id": "bob", "blocked": true }));
        alice.ok("user:block", json!({ "user_id": "bob" })).await;
        // Bob can't write in their direct conversation, nor open it again, over any route.
        let error = bob.fails("message:send", json!({ "conversation_id": direct_id, "client_id": "b1", "body": "hey" })).await;
        assert_eq!(error["code"], "forbidden");
        let error = bob.fails("conversation:create", json!({ "kind": "direct", "user_id": "alice" })).await;
        assert_eq!(error["code"], "forbidden");
        let bob_token = app.token("bob");
        let (status, body) = app.http().post(&format!("/api/conversations/{direct_id}/messages"), Some(&bob_token), &json!({ "client_id": "b2", "body": "hey" })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
        // Sends queued together with allowed ones: each gets its own answer, seqs stay gap-free.
        let (blocked, allowed) = tokio::join!(
            bob.emit_with_ack("message:send", json!({ "conversation_id": direct_id, "client_id": "b3", "body": "x" })),
            bob.emit_with_ack("message:send", json!({ "conversation_id": group_id, "client_id": "b4", "body": "in the group" })),
        );
        assert_eq!(blocked.unwrap()["error"]["code"], "forbidden");
        let allowed = allowed.unwrap();
        assert_eq!((allowed["ok"].as_bool(), allowed["data"]["message"]["seq"].as_i64()), (Some(true), Some(1)));
        // The blocker still can; the block is not a wall around Bob in groups.
        send(&alice, &direct_id, "a1", "bye").await;
        expect(&mut bob, "message:new").await;
        let history = alice.ok("message:history", json!({ "conversation_id": direct_id })).await;
        let seqs: Vec<i64> = history["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, [1, 2]);

        // Unblocked over HTTP: Bob writes again.
        let (status, body) = app.http().delete("/api/blocks/bob", Some(&app.token("alice"))).await;
        assert_eq!((status, &body["data"]), (200, &json!({ "user_id": "bob", "blocked": false })));
        send(&bob, &direct_id, "b5", "sorry").await;
        let (status, body) = app.http().post("/api/blocks", Some(&bob_token), &json!({ "user_id": "bob" })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some("user_id")), "not yourself");
        let (status, _) = app.http().post("/api/blocks", Some(&bob_token), &json!({ "user_id": "alice" })).await;
        assert_eq!(status, 200);
        let error = bob.fails("user:block", json!({ "user_id": "" })).await;
        assert_eq!(error["code"], "invalid_payload");
    }

    async fn a_blocked_user_does_not_see_the_blockers_presence(app: TestApp) {
        let app = app.with(&[("CONFAB_PRESENCE_GRACE_MS", "300")]).await;
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut carol = app.connect("carol").await;
        group(&alice, "club", &["bob", "carol"]).await;
        expect(&mut bob, "conversation:new").await;
        expect(&mut carol, "conversation:new").await;
        alice.ok("user:block", json!({ "user_id": "bob" })).await;
        assert_eq!(seen(&bob).await, json!({ "user_id": "alice", "online": false, "last_seen_at": null }));
        assert_eq!(seen(&carol).await["online"], true);

        alice.disconnect().await;
        assert_eq!(expect(&mut carol, "presence").await["online"], false);
        expect_none(&mut bob, "presence").await;
        let _alice = app.connect("alice").await;
        assert_eq!(expect(&mut carol, "presence").await["online"], true);
        expect_none(&mut bob, "presence").await;
    }
}

/// Alice's presence as `client` sees it.
async fn seen(client: &confab_sio_client::Client) -> serde_json::Value {
    client
        .ok("presence:get", json!({ "user_ids": ["alice"] }))
        .await["presence"][0]
        .clone()
}
