//! Rate limits and caps: refused with a clear code, nothing stored, nobody else slowed.

use std::time::{Duration, Instant};

use confab_sio_client::{ConnectError, connect};
use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn sends_over_the_limit_are_refused_and_not_stored(app: TestApp) {
        let app = app.with(&[("CONFAB_RATE_SEND", "2/3")]).await;
        let alice = app.connect("alice").await;
        let alice_tab = app.connect("alice").await;
        let id = group(&alice, "team", &[]).await;
        for i in 0..3 {
            send(&alice, &id, &format!("k{i}"), "ok").await;
        }
        // The user's other socket draws from the same bucket.
        let e = alice_tab.fails("message:send", json!({ "conversation_id": id, "client_id": "k3", "body": "too fast" })).await;
        assert_eq!(e["code"], "rate_limited");
        let wait = e["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((1..=1000).contains(&wait), "{wait}");
        assert!(alice_tab.is_connected());
        tokio::time::sleep(Duration::from_millis(wait + 20)).await;
        send(&alice_tab, &id, "k3", "patient").await;
        let page = alice.ok("message:history", json!({ "conversation_id": id })).await;
        assert_eq!(page["messages"].as_array().unwrap().len(), 4, "the refused send was not stored");
    }

    async fn typing_has_its_own_bucket(app: TestApp) {
        let app = app.with(&[("CONFAB_RATE_TYPING", "1/2")]).await;
        let alice = app.connect("alice").await;
        let id = group(&alice, "team", &[]).await;
        alice.ok("typing:start", json!({ "conversation_id": id })).await;
        alice.ok("typing:stop", json!({ "conversation_id": id })).await;
        let e = alice.fails("typing:start", json!({ "conversation_id": id })).await;
        assert_eq!(e["code"], "rate_limited");
        send(&alice, &id, "k", "sending is unaffected").await;
    }

    async fn a_flood_from_one_user_leaves_others_unaffected(app: TestApp) {
        let app = app.with(&[("CONFAB_RATE_SEND", "20/40"), ("CONFAB_RATE_OTHER", "20/40")]).await;
        let flooder = app.connect("flooder").await;
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let flood_room = group(&flooder, "flood", &[]).await;
        let id = group(&alice, "calm", &["bob"]).await;
        expect(&mut bob, "conversation:new").await;
        let flood = async {
            let started = Instant::now();
            let mut accepted = 0;
            for i in 0..2000 {
                let event = if i % 2 == 0 { "message:send" } else { "message:history" };
                let reply = flooder
                    .emit_with_ack(event, json!({ "conversation_id": flood_room, "client_id": format!("f{i}"), "body": "spam" }))
                    .await
                    .unwrap();
                if reply["error"]["code"] != "rate_limited" {
                    accepted += 1;
                }
            }
            (accepted, started.elapsed())
        };
        let calm = async {
            let mut worst = Duration::ZERO;
            for i in 0..20 {
                let started = Instant::now();
                let m = send(&alice, &id, &format!("c{i}"), "hello").await;
                worst = worst.max(started.elapsed());
                assert_eq!(expect(&mut bob, "message:new").await["message"], m);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worst
        };
        let ((accepted, took), worst) = tokio::join!(flood, calm);
        // Two buckets (sends, everything else), each a burst of 40 refilled at 20/s: whatever
        // the machine's speed, no more than that got through.
        let allowed = 2.0 * (40.0 + 20.0 * took.as_secs_f64());
        assert!(
            f64::from(accepted) <= allowed + 2.0,
            "{accepted} of the flood accepted in {took:?}; the limits allow {allowed:.0}"
        );
        // A generous bound: the point is that alice is served, not queued behind the flood.
        assert!(worst < Duration::from_secs(1), "alice's slowest ack: {worst:?}");
    }

    async fn per_user_socket_cap(app: TestApp) {
        let app = app.with(&[("CONFAB_MAX_SOCKETS_PER_USER", "2")]).await;
        let _a = app.connect("alice").await;
        let _b = app.connect("alice").await;
        match app.connect_auth(json!({ "token": app.token("alice") })).await {
            Err(ConnectError::Refused { message, data }) => {
                assert_eq!(message, "too_many_connections");
                assert_eq!(data, Some(json!({ "code": "too_many_connections", "limit": 2 })));
            }
            other => panic!("expected too_many_connections, got {:?}", other.map(|_| ())),
        }
        let _bob = app.connect("bob").await;
    }

    async fn per_address_connection_attempts(app: TestApp) {
        let app = app.with(&[("CONFAB_RATE_CONNECT_PER_IP", "1/3")]).await;
        let mut refused = None;
        for _ in 0..5 {
            match app.connect_auth(json!({ "token": app.token("alice") })).await {
                Ok(_) => {}
                Err(ConnectError::Refused { message, data }) => {
                    refused = Some((message, data));
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        let (message, data) = refused.expect("a burst of connects from one address is limited");
        assert_eq!(message, "rate_limited");
        let data = data.expect("data");
        assert_eq!(data["code"], "rate_limited");
        assert!(data["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{data}");
    }

    async fn behind_a_trusted_proxy_each_client_address_has_its_own_bucket(app: TestApp) {
        // Connects claiming to come from `client` via a proxy; true when rate-limited.
        async fn limited(app: &TestApp, client: &str) -> bool {
            let options = app
                .options()
                .auth(json!({ "token": app.token("alice") }))
                .header("X-Forwarded-For", client);
            match connect(options).await {
                Ok(_) => false,
                Err(ConnectError::Refused { message, .. }) if message == "rate_limited" => true,
                Err(other) => panic!("{other}"),
            }
        }
        // Connects as `client(i)` for i = 0, 1, … until limited.
        async fn exhaust(app: &TestApp, client: impl Fn(usize) -> String) {
            for i in 0..10 {
                if limited(app, &client(i)).await {
                    return;
                }
            }
            panic!("{} was never limited", client(0));
        }

        let proxied = app
            .with(&[("CONFAB_RATE_CONNECT_PER_IP", "1/2"), ("CONFAB_TRUSTED_PROXIES", "127.0.0.0/8")])
            .await;
        exhaust(&proxied, |_| "203.0.113.1".into()).await;
        // The bucket refills at one a second, so this comes right after: what the client wrote
        // to the left of what the proxy appended is not believed.
        assert!(limited(&proxied, "203.0.113.2, 203.0.113.1").await, "the rightmost untrusted hop counts");
        assert!(!limited(&proxied, "203.0.113.2").await, "another client behind the proxy is not limited");

        // Not a trusted proxy: the header is ignored and every connect counts against the peer.
        // A client can't escape the limit by writing the header itself.
        let direct = app.with(&[("CONFAB_RATE_CONNECT_PER_IP", "1/2")]).await;
        exhaust(&direct, |i| format!("203.0.113.{i}")).await;
    }
}

both_backends! {
    async fn oversized_frames_are_refused_and_hurt_nobody_else(app: TestApp) {
        let app = app.with(&[("CONFAB_MAX_PAYLOAD_BYTES", "4096")]).await;
        let alice = app.connect("alice").await;
        let mut bob = app.connect("bob").await;
        let mut mallory = app.connect("mallory").await;
        let id = group(&alice, "team", &["bob"]).await;
        // 10 KB of body in one frame: over the 4 KiB limit. The server closes that connection
        // (Socket.IO has no way to refuse one frame and keep going).
        let big = json!({ "conversation_id": id, "client_id": "big", "body": "x".repeat(10_000) });
        mallory.send_raw(format!("42[\"message:send\",{big}]")).await.unwrap();
        // Closed by the server: an event that never comes is not a disconnect.
        match mallory.next_event_timeout(Duration::from_secs(5)).await {
            Some(confab_sio_client::Incoming::Disconnected { .. }) => {}
            None => panic!("the oversized sender is still connected after 5 s"),
            other => panic!("expected the oversized sender to be disconnected, got {other:?}"),
        }
        assert!(!mallory.is_connected());
        let m = send(&alice, &id, "small", "still fine").await;
        assert_eq!(expect(&mut bob, "message:new").await["message"], m);
    }
}
