//! Typing indicators: to the other members, coalesced, expired by the server.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn the_other_members_see_typing_start_and_stop(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut alice_tab = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        expect(&mut alice_tab, "conversation:new").await;
        alice.ok("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await, json!({ "conversation_id": id, "user_id": "alice", "typing": true }));
        expect_none(&mut alice_tab, "typing").await;
        alice.ok("typing:stop", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await["typing"], false);
        // Stopping when not typing tells nobody anything.
        alice.ok("typing:stop", json!({ "conversation_id": id })).await;
        expect_none(&mut bob, "typing").await;
    }

    async fn typing_is_for_members_only(app: TestApp) {
        let alice = app.connect("alice").await;
        let mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &[]).await;
        let e = mallory.fails("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
        let e = mallory.fails("typing:start", json!({ "conversation_id": "x" })).await;
        assert_eq!(e["code"], "invalid_payload");
    }

    async fn repeated_starts_are_coalesced_and_the_server_expires_them(app: TestApp) {
        let app = app.with(&[("CONFAB_TYPING_TTL_MS", "1200")]).await;
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        for _ in 0..5 {
            alice.ok("typing:start", json!({ "conversation_id": id })).await;
        }
        let last_start = Instant::now();
        assert_eq!(expect(&mut bob, "typing").await["typing"], true);
        // Five starts: one broadcast. The next typing event is the server's own stop, however
        // long the starts took (no window to guess).
        let stopped = expect(&mut bob, "typing").await;
        assert_eq!(stopped["typing"], false, "coalesced, then ended by the server");
        // The ttl runs from the last start (the server saw it before its ack reached us).
        let after = last_start.elapsed();
        assert!(after >= Duration::from_millis(1100), "not before the ttl: {after:?}");
    }

    async fn leaving_or_being_removed_ends_typing(app: TestApp) {
        let owner = app.connect("owner").await;
        let alice = app.connect("alice").await;
        let carol = app.connect("carol").await;
        let mut bob = app.connect("bob").await;
        let id = group(&owner, "team", &["alice", "bob", "carol"]).await;
        expect(&mut bob, "conversation:new").await;
        // Typing, then gone by choice: the others must not see them typing forever.
        alice.ok("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await["typing"], true);
        alice.ok("conversation:leave", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await, json!({ "conversation_id": id, "user_id": "alice", "typing": false }));
        // Typing, then removed by the owner.
        carol.ok("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await["user_id"], "carol");
        owner.ok("conversation:members:remove", json!({ "conversation_id": id, "user_ids": ["carol"] })).await;
        assert_eq!(expect(&mut bob, "typing").await, json!({ "conversation_id": id, "user_id": "carol", "typing": false }));
        // And they can't start again.
        let e = carol.fails("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "not_found");
    }

    async fn a_disconnect_ends_typing(app: TestApp) {
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let id = group(&alice, "team", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        alice.ok("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(expect(&mut bob, "typing").await["typing"], true);
        alice.disconnect().await;
        assert_eq!(expect(&mut bob, "typing").await, json!({ "conversation_id": id, "user_id": "alice", "typing": false }));
    }
}
