//! Session expiry: warned, refreshed, or ended at the token's `exp`.

use std::time::Duration;

use confab_sio_client::Incoming;
use serde_json::json;

use crate::helpers::*;

fn token_expiring_in(user: &str, secs: i64) -> String {
    sign(json!({ "sub": user, "exp": chrono_now() + secs }))
}

both_backends! {
    async fn an_expiring_session_is_warned_then_ended(app: TestApp) {
        let app = app.with(&[("CONFAB_SESSION_WARNING_SECS", "2")]).await;
        let mut alice = app.connect_auth(json!({ "token": token_expiring_in("alice", 3) })).await.unwrap();
        let warning = alice.expect_event("session:expiring", Duration::from_secs(3)).await.unwrap();
        assert!(warning.data()["expires_at"].is_string());
        alice.expect_event("session:expired", Duration::from_secs(4)).await.unwrap();
        let end = alice.next_event_timeout(Duration::from_secs(2)).await;
        assert!(matches!(end, Some(Incoming::Disconnected { .. })), "{end:?}");
    }

    async fn a_refresh_for_the_same_user_extends_the_session(app: TestApp) {
        let app = app.with(&[("CONFAB_SESSION_WARNING_SECS", "2")]).await;
        let mut alice = app.connect_auth(json!({ "token": token_expiring_in("alice", 3) })).await.unwrap();
        alice.expect_event("session:expiring", Duration::from_secs(3)).await.unwrap();
        // Refused refreshes change nothing.
        let e = alice.fails("auth:refresh", json!({ "token": app.token("bob") })).await;
        assert_eq!(e["code"], "unauthorized");
        let e = alice.fails("auth:refresh", json!({ "token": "garbage" })).await;
        assert_eq!((e["code"].as_str(), e["reason"].as_str()), (Some("unauthorized"), Some("invalid")));
        let expired = sign(json!({ "sub": "alice", "exp": chrono_now() - 600 }));
        let e = alice.fails("auth:refresh", json!({ "token": expired })).await;
        assert_eq!(e["reason"], "expired");
        let e = alice.fails("auth:refresh", json!({})).await;
        assert_eq!(e["field"], "token");
        // A good one moves the end.
        let data = alice.ok("auth:refresh", json!({ "token": app.token("alice") })).await;
        assert!(data["expires_at"].is_string());
        alice.expect_no_event("session:expired", Duration::from_secs(3)).await.expect("refreshed");
        assert!(alice.is_connected());
        let id = group(&alice, "still here", &[]).await;
        send(&alice, &id, "k", "works").await;
    }
}
