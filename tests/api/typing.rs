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
        let started = Instant::now();
        for _ in 0..5 {
            alice.ok("typing:start", json!({ "conversation_id": id })).await;
        }
        assert_eq!(expect(&mut bob, "typing").await["typing"], true);
        // Five starts within a second: one broadcast.
        bob.expect_no_event("typing", Duration::from_millis(500)).await.expect("coalesced");
        let stopped = expect(&mut bob, "typing").await;
        assert_eq!(stopped["typing"], false, "the server ends it by itself");
        let after = started.elapsed();
        assert!(after >= Duration::from_millis(1100), "not before the ttl: {after:?}");
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
