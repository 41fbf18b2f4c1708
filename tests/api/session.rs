//! Session expiry: warned, refreshed, or ended at the token's `exp`.

use std::time::Duration;

use confab_sio_client::{Client, ConnectError, Incoming};
use serde_json::json;

use crate::helpers::*;

fn token_expiring_in(user: &str, secs: i64) -> String {
    sign(json!({ "sub": user, "exp": chrono_now() + secs }))
}

/// Reads events until `session:expired` (panics if the connection ends or goes quiet for
/// `quiet` first) and returns how many `session:expiring` came before it.
async fn warnings_until_expired(client: &mut Client, quiet: Duration) -> usize {
    let mut warnings = 0;
    loop {
        match client.next_event_timeout(quiet).await {
            Some(Incoming::Event(e)) if e.name == "session:expiring" => warnings += 1,
            Some(Incoming::Event(e)) if e.name == "session:expired" => return warnings,
            Some(Incoming::Event(_)) => {}
            other => panic!("expected session:expired, got {other:?}"),
        }
    }
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

    async fn a_refresh_that_does_not_extend_the_session_is_refused_and_not_warned_again(app: TestApp) {
        let app = app.with(&[("CONFAB_SESSION_WARNING_SECS", "3")]).await;
        let exp = chrono_now() + 5;
        let token = sign(json!({ "sub": "alice", "exp": exp }));
        let mut alice = app.connect_auth(json!({ "token": token.clone() })).await.unwrap();
        alice.expect_event("session:expiring", Duration::from_secs(5)).await.unwrap();
        // The token the session runs on, and one that ends sooner: neither moves the end, so
        // both are refused (a client that re-sends its cached token learns it can't renew).
        for stale in [token, sign(json!({ "sub": "alice", "exp": exp - 1 }))] {
            let e = alice.fails("auth:refresh", json!({ "token": stale })).await;
            assert_eq!((e["code"].as_str(), e["field"].as_str()), (Some("invalid_payload"), Some("token")), "{e}");
        }
        // One warning per expiry: the session ends as announced, without another.
        assert_eq!(warnings_until_expired(&mut alice, Duration::from_secs(5)).await, 0);
        let end = alice.next_event_timeout(Duration::from_secs(2)).await;
        assert!(matches!(end, Some(Incoming::Disconnected { .. })), "{end:?}");
    }

    async fn a_short_session_is_warned_halfway_not_at_once(app: TestApp) {
        // The default warning (60 s) is longer than these tokens: the warning comes halfway
        // through what is left, so a client that refreshes on it isn't asked again at once.
        let mut alice = app.connect_auth(json!({ "token": token_expiring_in("alice", 6) })).await.unwrap();
        alice.expect_no_event("session:expiring", Duration::from_millis(1_800)).await.expect("no warning at once");
        alice.expect_event("session:expiring", Duration::from_secs(4)).await.unwrap();
        // A refresh that extends the session by a few seconds: again halfway.
        alice.ok("auth:refresh", json!({ "token": token_expiring_in("alice", 8) })).await;
        alice.expect_no_event("session:expiring", Duration::from_millis(2_500)).await.expect("no warning right after a refresh");
        alice.expect_event("session:expiring", Duration::from_secs(5)).await.unwrap();
    }

    async fn an_ended_session_cannot_be_resumed_with_its_token(app: TestApp) {
        // The loop the issue saw: the session ends at `exp`, and the same token, still within
        // the clock-skew leeway, must not open a session that ends the moment it begins.
        let token = token_expiring_in("alice", 2);
        let mut alice = app.connect_auth(json!({ "token": token.clone() })).await.unwrap();
        alice.expect_event("session:expired", Duration::from_secs(4)).await.unwrap();
        match app.connect_auth(json!({ "token": token })).await {
            Err(ConnectError::Refused { message, data }) => {
                assert_eq!(message, "unauthorized");
                assert_eq!(data, Some(json!({ "code": "unauthorized", "reason": "expired" })));
            }
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(_) => panic!("a token whose session ended opened another"),
        }
    }
}
