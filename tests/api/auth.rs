//! The handshake: who gets in, and what the others are told.

use confab_sio_client::ConnectError;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::helpers::*;

/// Connects with `auth` and returns the refusal's (message, data).
async fn refusal(app: &TestApp, auth: Value) -> (String, Option<Value>) {
    match app.connect_auth(auth).await {
        Err(ConnectError::Refused { message, data }) => (message, data),
        Err(other) => panic!("expected a connect_error, got {other}"),
        Ok(_) => panic!("the handshake should have been refused"),
    }
}

/// Asserts a refusal is `unauthorized` with the given reason.
async fn assert_refused(app: &TestApp, auth: Value, reason: &str) {
    let (message, data) = refusal(app, auth.clone()).await;
    assert_eq!(message, "unauthorized", "for {auth}");
    let data = data.unwrap_or_else(|| panic!("connect_error without data for {auth}"));
    assert_eq!(
        data,
        json!({ "code": "unauthorized", "reason": reason }),
        "for {auth}"
    );
}

fn claims(sub: &str, exp_in: i64) -> Value {
    let now = chrono_now();
    json!({ "sub": sub, "iat": now, "exp": now + exp_in })
}

both_backends! {
    async fn a_valid_token_connects_and_names_the_user(app: TestApp) {
        let alice = app.connect("alice").await;
        assert!(!alice.sid().is_empty());
        let bob = app.connect("bob").await;
        let data = alice.ok("conversation:create", json!({ "kind": "direct", "user_id": "bob" })).await;
        let members = &data["conversation"]["members"];
        let alice_member = members.as_array().unwrap().iter().find(|m| m["user_id"] == "alice").unwrap();
        assert_eq!(alice_member["name"], "User alice");
        drop(bob);
    }

    async fn a_missing_token_is_refused_as_missing(app: TestApp) {
        assert_refused(&app, json!({}), "missing").await;
        assert_refused(&app, json!({ "token": null }), "missing").await;
        // No auth payload at all: a bare CONNECT.
        match confab_sio_client::connect(app.options()).await {
            Err(ConnectError::Refused { message, data }) => {
                assert_eq!(message, "unauthorized");
                assert_eq!(data, Some(json!({ "code": "unauthorized", "reason": "missing" })));
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    async fn malformed_and_forged_tokens_are_refused_as_invalid(app: TestApp) {
        assert_refused(&app, json!({ "token": "not.a.jwt" }), "invalid").await;
        assert_refused(&app, json!({ "token": 42 }), "invalid").await;
        assert_refused(&app, json!({ "token": "x".repeat(20_000) }), "invalid").await;
        // Signed with another key.
        let forged = sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"some-other-secret-of-enough-length"),
            claims("alice", 3600),
        );
        assert_refused(&app, json!({ "token": forged }), "invalid").await;
        // The right secret, the wrong algorithm.
        let hs512 = sign_with(Algorithm::HS512, &EncodingKey::from_secret(SECRET.as_bytes()), claims("alice", 3600));
        assert_refused(&app, json!({ "token": hs512 }), "invalid").await;
    }

    async fn alg_none_is_refused(app: TestApp) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(claims("alice", 3600).to_string());
        assert_refused(&app, json!({ "token": format!("{header}.{body}.") }), "invalid").await;
        assert_refused(&app, json!({ "token": format!("{header}.{body}") }), "invalid").await;
    }

    async fn expired_tokens_are_refused_as_expired(app: TestApp) {
        let expired = sign(claims("alice", -120));
        assert_refused(&app, json!({ "token": expired }), "expired").await;
        // Past `exp` by less than the 60 s clock-skew leeway: still expired. The leeway is for
        // `nbf`; a session that would end the moment it began is refused instead of accepted.
        let just_expired = sign(claims("alice", -5));
        assert_refused(&app, json!({ "token": just_expired.clone() }), "expired").await;
        // The HTTP API judges it the same way.
        let (status, body) = app.http().get("/api/conversations", Some(&just_expired)).await;
        assert_eq!((status, body["error"]["reason"].as_str()), (401, Some("expired")), "{body}");
    }

    async fn nbf_keeps_its_clock_skew_leeway(app: TestApp) {
        // Issued by a host whose clock runs 30 s ahead of ours.
        let now = chrono_now();
        let ahead = sign(json!({ "sub": "alice", "nbf": now + 30, "iat": now + 30, "exp": now + 3600 }));
        assert!(app.connect_auth(json!({ "token": ahead })).await.is_ok());
    }

    async fn claims_are_checked(app: TestApp) {
        let now = chrono_now();
        let no_sub = sign(json!({ "exp": now + 3600 }));
        assert_refused(&app, json!({ "token": no_sub }), "invalid").await;
        let no_exp = sign(json!({ "sub": "alice" }));
        assert_refused(&app, json!({ "token": no_exp }), "invalid").await;
        let empty_sub = sign(json!({ "sub": "", "exp": now + 3600 }));
        assert_refused(&app, json!({ "token": empty_sub }), "invalid").await;
        let long_sub = sign(json!({ "sub": "u".repeat(129), "exp": now + 3600 }));
        assert_refused(&app, json!({ "token": long_sub }), "invalid").await;
        let future = sign(json!({ "sub": "alice", "exp": now + 7200, "nbf": now + 3600 }));
        assert_refused(&app, json!({ "token": future }), "invalid").await;
        // A non-string name is ignored rather than fatal.
        let odd_name = sign(json!({ "sub": "alice", "exp": now + 3600, "name": 7 }));
        assert!(app.connect_auth(json!({ "token": odd_name })).await.is_ok());
    }

    async fn ids_that_look_like_others_are_refused_and_names_are_cleaned(app: TestApp) {
        let now = chrono_now();
        // `alice` with a zero-width space, reversed by a direction override, padded, or made of
        // nothing visible: each would pass for someone else, or for no one.
        for sub in ["alice\u{200b}", "\u{202e}ecila", " alice", "\u{200b}\u{2060}"] {
            let token = sign(json!({ "sub": sub, "exp": now + 3600 }));
            assert_refused(&app, json!({ "token": token }), "invalid").await;
        }
        // A name loses what hides and what reorders, and is cut at 200 characters.
        let long = format!("\u{202e}Mallory\u{200b} {}", "x".repeat(400));
        let token = sign(json!({ "sub": "mallory", "exp": now + 3600, "name": long }));
        let mallory = app.connect_auth(json!({ "token": token })).await.unwrap();
        let invisible = sign(json!({ "sub": "ghost", "exp": now + 3600, "name": "\u{200b}\u{202e} " }));
        app.connect_auth(json!({ "token": invisible })).await.unwrap();
        let data = mallory.ok("conversation:create", json!({ "kind": "group", "title": "t", "member_ids": ["ghost"] })).await;
        let members = data["conversation"]["members"].as_array().unwrap();
        let name_of = |id: &str| members.iter().find(|m| m["user_id"] == id).unwrap()["name"].clone();
        let name = name_of("mallory");
        let name = name.as_str().unwrap();
        assert!(name.starts_with("Mallory xxx"), "{name:?}");
        assert_eq!(name.chars().count(), 200);
        assert_eq!(name_of("ghost"), Value::Null);
    }
}

mod asymmetric_keys {
    use super::*;

    const RSA_PRIVATE: &str = include_str!("../fixtures/rsa-private.pem");
    const EC_PRIVATE: &str = include_str!("../fixtures/ec-private.pem");

    async fn app_with_public_key(path: &str) -> TestApp {
        let key = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        spawn_app_with(Backend::Sqlite, &[("CONFAB_JWT_PUBLIC_KEY", &key)])
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rs256_tokens_verify_and_hs_confusion_is_refused() {
        let app = app_with_public_key("rsa-public.pem").await;
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = sign_with(Algorithm::RS256, &rsa, claims("alice", 3600));
        assert!(app.connect_auth(json!({ "token": token })).await.is_ok());
        // HS256 signed with the *public key* as the secret: the classic confusion attack.
        let public = std::fs::read(format!(
            "{}/tests/fixtures/rsa-public.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let confused = sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(&public),
            claims("alice", 3600),
        );
        assert_refused(&app, json!({ "token": confused }), "invalid").await;
        // The shared secret still works alongside the key.
        assert!(
            app.connect_auth(json!({ "token": app.token("bob") }))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn es256_tokens_verify() {
        let app = app_with_public_key("ec-public.pem").await;
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let token = sign_with(Algorithm::ES256, &ec, claims("alice", 3600));
        assert!(app.connect_auth(json!({ "token": token })).await.is_ok());
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let wrong = sign_with(Algorithm::RS256, &rsa, claims("alice", 3600));
        assert_refused(&app, json!({ "token": wrong }), "invalid").await;
    }
}
