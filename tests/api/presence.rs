//! Presence: online while any socket is connected, offline after a grace period, persisted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const GRACE: &str = "400";

async fn presence_of(client: &confab_sio_client::Client, users: &[&str]) -> Vec<Value> {
    let data = client
        .ok("presence:get", json!({ "user_ids": users }))
        .await;
    data["presence"].as_array().unwrap().clone()
}

both_backends! {
    async fn contacts_hear_the_first_socket_and_the_last(app: TestApp) {
        let app = app.with(&[("CONFAB_PRESENCE_GRACE_MS", GRACE)]).await;
        let mut alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        group(&bob, "pair", &["alice"]).await;
        expect(&mut alice, "conversation:new").await;
        bob.disconnect().await;
        let offline = expect(&mut alice, "presence").await;
        assert_eq!(offline["user_id"], "bob");
        assert_eq!(offline["online"], false);
        assert!(offline["last_seen_at"].is_string(), "{offline}");

        let bob = app.connect("bob").await;
        assert_eq!(expect(&mut alice, "presence").await, json!({ "user_id": "bob", "online": true, "last_seen_at": null }));
        // A second tab is not news.
        let bob_tab = app.connect("bob").await;
        expect_none(&mut alice, "presence").await;
        // Nor is closing one of two.
        bob_tab.disconnect().await;
        expect_none(&mut alice, "presence").await;
        let [p] = &presence_of(&alice, &["bob"]).await[..] else { panic!() };
        assert_eq!(p["online"], true);
        drop(bob);
    }

    async fn a_reload_within_the_grace_period_is_not_announced(app: TestApp) {
        let app = app.with(&[("CONFAB_PRESENCE_GRACE_MS", "1500")]).await;
        let mut alice = app.connect("alice").await;
        let bob = app.connect("bob").await;
        group(&bob, "pair", &["alice"]).await;
        expect(&mut alice, "conversation:new").await;
        bob.disconnect().await;
        let _bob = app.connect("bob").await;
        // Watched for longer than the grace, so an offline announcement would have come.
        alice
            .expect_no_event("presence", Duration::from_millis(2000))
            .await
            .expect("no offline/online flap for a reload");
    }

    async fn a_silent_client_goes_offline_after_the_ping_timeout(app: TestApp) {
        let app = app
            .with(&[("CONFAB_PRESENCE_GRACE_MS", "100"), ("CONFAB_PING_INTERVAL_MS", "300"), ("CONFAB_PING_TIMEOUT_MS", "300")])
            .await;
        let mut alice = app.connect("alice").await;
        let bob = confab_sio_client::connect(
            app.options().auth(json!({ "token": app.token("bob") })).answer_pings(false),
        )
        .await
        .unwrap();
        group(&bob, "pair", &["alice"]).await;
        expect(&mut alice, "conversation:new").await;
        // Bob's network dies silently: no close, no pongs.
        let offline = alice.expect_event("presence", Duration::from_secs(5)).await.unwrap();
        assert_eq!(offline.data()["user_id"], "bob");
        assert_eq!(offline.data()["online"], false);
        drop(bob);
    }

    async fn presence_is_only_visible_to_contacts(app: TestApp) {
        let app = app.with(&[("CONFAB_PRESENCE_GRACE_MS", GRACE)]).await;
        let alice = app.connect("alice").await;
        let _bob = app.connect("bob").await;
        let _stranger = app.connect("stranger").await;
        group(&alice, "pair", &["bob"]).await;
        let states = presence_of(&alice, &["bob", "stranger", "nobody"]).await;
        assert_eq!(states[0], json!({ "user_id": "bob", "online": true, "last_seen_at": null }));
        assert_eq!(states[1], json!({ "user_id": "stranger", "online": false, "last_seen_at": null }), "can't be probed");
        assert_eq!(states[2], json!({ "user_id": "nobody", "online": false, "last_seen_at": null }));
        let many: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
        let e = alice.fails("presence:get", json!({ "user_ids": many })).await;
        assert_eq!(e["code"], "too_large");
        let e = alice.fails("presence:get", json!({ "user_ids": "bob" })).await;
        assert_eq!(e["field"], "user_ids");
    }

    async fn last_seen_survives_a_restart(app: TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let url = shared_database(app.backend, dir.path()).await.unwrap();
        let settings = [("CONFAB_PRESENCE_GRACE_MS", "100"), ("CONFAB_DATABASE_URL", url.as_str())];
        let first = app.with(&settings).await;
        let mut alice = first.connect("alice").await;
        let bob = first.connect("bob").await;
        group(&alice, "pair", &["bob"]).await;
        bob.disconnect().await;
        // Wait for the announcement, not for a guess at how long it takes.
        let offline = expect(&mut alice, "presence").await;
        assert_eq!((offline["user_id"].as_str(), offline["online"].as_bool()), (Some("bob"), Some(false)));
        let before = presence_of(&alice, &["bob"]).await[0]["last_seen_at"].clone();
        assert!(before.is_string(), "{before}");
        drop(alice);
        drop(first);
        let second = app.with(&settings).await;
        let alice = second.connect("alice").await;
        let after = presence_of(&alice, &["bob"]).await;
        assert_eq!(after[0]["online"], false);
        assert_eq!(after[0]["last_seen_at"], before);
    }
}
