//! Fuzz bodies for the parsers of untrusted input, shared by the `cargo fuzz` targets in `fuzz/`
//! (through the `fuzzing` feature) and by the seeded smoke tests below, which run on stable.
//!
//! Each body panics when a property fails, so a fuzzer (or the smoke test) reports it:
//! - `requests`: a payload is accepted only if it is a JSON object; an accepted request satisfies
//!   its limits and re-serialises to a payload that parses to the same value; a refusal is an
//!   `invalid_payload`/`too_large` envelope with a message.
//! - `jwt`: the only token the verifier accepts is the one signed with its key; everything else
//!   is `invalid` (`missing` when empty), never `expired`, which would mean the signature passed.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::auth::{AuthFailure, JwtKeys, Verifier, mint};
use crate::domain::Limits;
use crate::domain::{ClientId, ConversationId, ConversationTitle};
use crate::error::{Error, Result};
use crate::protocol::envelope;
use crate::protocol::requests::{
    ChangeMembers, ConversationRef, CreateConversation, DeleteMessage, EditMessage, History,
    HistoryWindowWire, MAX_ATTACHMENTS, MAX_HISTORY_LIMIT, MAX_PRESENCE_USERS, MAX_SEARCH_LIMIT,
    MAX_SYNC_CURSORS, MAX_USER_IDS, MarkRead, PresenceQuery, Refresh, Search, SendMessage, Sync,
    decode,
};

/// Small enough that fuzzed bodies reach `too_large`.
const MAX_BODY_CHARS: usize = 50;

fn limits() -> Limits {
    Limits {
        max_body_chars: MAX_BODY_CHARS,
        max_group_members: 10,
        max_payload_bytes: 64 * 1024,
    }
}

/// Every client→server payload parser, fed `data` the way the transports do: as the raw JSON
/// text of a Socket.IO event argument or an HTTP body (`null` when it isn't UTF-8), and as the
/// history route's query string.
pub fn requests(data: &[u8]) {
    let payload = std::str::from_utf8(data).unwrap_or("null");
    let limits = limits();

    check(payload, CreateConversation::parse, |r| match r {
        CreateConversation::Direct { user_id } => json!({ "kind": "direct", "user_id": user_id }),
        CreateConversation::Group { title, member_ids } => {
            assert_eq!(ConversationTitle::parse(title.as_str()).as_ref(), Ok(title));
            assert_unique(member_ids, MAX_USER_IDS);
            json!({ "kind": "group", "title": title, "member_ids": member_ids })
        }
    });
    check(payload, ChangeMembers::parse, |r| {
        assert!(!r.user_ids.is_empty());
        assert_unique(&r.user_ids, MAX_USER_IDS);
        json!({ "conversation_id": r.conversation_id, "user_ids": r.user_ids })
    });
    check(
        payload,
        ConversationRef::parse,
        |r| json!({ "conversation_id": r.conversation_id }),
    );
    let send_wire = |r: &SendMessage| {
        // A message of attachments alone has no text.
        if !r.body.as_str().is_empty() || r.attachment_ids.is_empty() {
            check_body(r.body.as_str());
        }
        assert!(r.attachment_ids.len() <= MAX_ATTACHMENTS);
        assert_unique(&r.attachment_ids, MAX_ATTACHMENTS);
        assert_eq!(
            ClientId::parse(r.client_id.as_str().to_owned()).as_ref(),
            Ok(&r.client_id)
        );
        let mut wire = json!({ "conversation_id": r.conversation_id, "client_id": r.client_id, "body": r.body });
        if !r.attachment_ids.is_empty() {
            wire["attachment_ids"] = json!(r.attachment_ids);
        }
        wire
    };
    check(payload, |v| SendMessage::parse(v, &limits), send_wire);
    // The HTTP route takes the conversation from the path: one in the body is ignored.
    let path_id = ConversationId(uuid::Uuid::from_u128(7));
    check(
        payload,
        |v| SendMessage::parse_in(v, Some(path_id), &limits),
        |r| {
            assert_eq!(r.conversation_id, path_id);
            let mut wire = send_wire(r);
            wire.as_object_mut().unwrap().remove("conversation_id");
            wire
        },
    );
    check(
        payload,
        |v| EditMessage::parse(v, &limits),
        |r| {
            check_body(r.body.as_str());
            json!({ "conversation_id": r.conversation_id, "message_id": r.message_id, "body": r.body })
        },
    );
    check(
        payload,
        DeleteMessage::parse,
        |r| json!({ "conversation_id": r.conversation_id, "message_id": r.message_id }),
    );
    check(payload, History::parse, |r| {
        check_window(r);
        let mut wire = json!({ "conversation_id": r.conversation_id, "limit": r.limit });
        if let Some(s) = r.before_seq {
            wire["before_seq"] = json!(s);
        }
        if let Some(s) = r.after_seq {
            wire["after_seq"] = json!(s);
        }
        wire
    });
    check(payload, MarkRead::parse, |r| {
        assert!(r.seq >= 0);
        json!({ "conversation_id": r.conversation_id, "seq": r.seq })
    });
    check(payload, PresenceQuery::parse, |r| {
        assert_unique(&r.user_ids, MAX_PRESENCE_USERS);
        json!({ "user_ids": r.user_ids })
    });
    check(payload, Refresh::parse, |r| json!({ "token": r.token }));
    check(payload, Search::parse, |r| {
        assert!((1..=MAX_SEARCH_LIMIT).contains(&r.limit));
        // What the databases are handed is made of quoted words only.
        assert!(!r.query.fts5().is_empty());
        json!({
            "query": r.query.as_str(),
            "conversation_id": r.conversation_id,
            "before": r.before,
            "limit": r.limit,
        })
    });
    check(payload, Sync::parse, |r| {
        assert!(r.cursors.len() <= MAX_SYNC_CURSORS);
        assert!(r.cursors.is_sorted());
        let mut cursors = Map::new();
        let mut changed_after = Map::new();
        for c in &r.cursors {
            assert!(c.after >= 0 && c.changed_after >= 0);
            cursors.insert(c.conversation_id.to_string(), json!(c.after));
            if c.changed_after > 0 {
                changed_after.insert(c.conversation_id.to_string(), json!(c.changed_after));
            }
        }
        let mut wire = json!({ "cursors": cursors });
        if let Some(since) = r.since {
            wire["since"] = json!(since.to_string());
        }
        if !changed_after.is_empty() {
            assert!(r.since.is_some());
            wire["changed_after"] = Value::Object(changed_after);
        }
        wire
    });

    history_query(data);
}

/// `GET /api/conversations/{id}/messages?…`: the query string, parsed as the route does.
fn history_query(data: &[u8]) {
    let id = ConversationId(uuid::Uuid::from_u128(7));
    let parse = |query: &[u8]| {
        let pairs = form_urlencoded::parse(query);
        decode::<HistoryWindowWire, _>(serde_urlencoded::Deserializer::new(pairs))
            .and_then(|w| History::from_window(id, w))
    };
    match parse(data) {
        Ok(h) => {
            check_window(&h);
            let mut query = format!("limit={}", h.limit);
            if let Some(s) = h.before_seq {
                query += &format!("&before_seq={s}");
            }
            if let Some(s) = h.after_seq {
                query += &format!("&after_seq={s}");
            }
            let again = parse(query.as_bytes())
                .unwrap_or_else(|e| panic!("{query:?} (from {h:?}) was refused: {e}"));
            assert_eq!(again, h, "{query:?}");
        }
        Err(e) => check_error(&e),
    }
}

/// Parses `payload`; if accepted, checks it was an object and that `wire` (which also checks the
/// value's invariants) gives a payload that parses to the same value.
fn check<T: PartialEq + std::fmt::Debug>(
    payload: &str,
    parse: impl Fn(&str) -> Result<T>,
    wire: impl Fn(&T) -> Value,
) {
    match parse(payload) {
        Ok(request) => {
            assert!(
                serde_json::from_str::<Value>(payload).is_ok_and(|v| v.is_object()),
                "accepted a non-object: {payload}"
            );
            let again = wire(&request);
            let reparsed = parse(&again.to_string())
                .unwrap_or_else(|e| panic!("{again} (from {request:?}) was refused: {e}"));
            assert_eq!(reparsed, request, "{again} parsed differently");
        }
        Err(e) => check_error(&e),
    }
}

fn check_error(e: &Error) {
    let code = e.code();
    assert!(
        code == "invalid_payload" || code == "too_large",
        "a parser answered {code}: {e:?}"
    );
    let envelope = serde_json::to_value(envelope::failure(e)).expect("an envelope serializes");
    assert_eq!(envelope["ok"], false);
    assert_eq!(envelope["error"]["code"], code);
    let message = envelope["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{envelope}");
    if let Some(field) = envelope["error"].get("field") {
        assert!(field.as_str().is_some_and(|f| !f.is_empty()), "{envelope}");
    }
}

fn check_body(body: &str) {
    assert!(body.chars().count() <= MAX_BODY_CHARS);
    assert!(!body.trim().is_empty() && !body.contains('\0'));
}

fn check_window(h: &History) {
    assert!((1..=MAX_HISTORY_LIMIT).contains(&h.limit));
    assert!(h.before_seq.is_none_or(|s| s >= 1));
    assert!(h.after_seq.is_none_or(|s| s >= 0));
}

fn assert_unique<T: std::hash::Hash + Eq + std::fmt::Debug>(ids: &[T], max: usize) {
    assert!(ids.len() <= max);
    let set: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "duplicates in {ids:?}");
}

/// The HS256 secret of the fuzzed verifier. Nothing but [`genuine_token`] is signed with it.
const SECRET: &str = "fuzzing-secret-that-is-long-enough";

/// An ES256 public key, configured beside the secret so the algorithm-to-key choice is fuzzed
/// too (and HS256 tokens signed with this PEM as the secret, the classic key confusion).
pub const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKeuJPoHculq0LHtDYKWd/uabTQn4
FTUxH6KLHw03e2AU+hV9A6O5eo6/hy0HP1cCnsbOYVrCE11Zjz1zqWmNxA==
-----END PUBLIC KEY-----
";

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Verifier::new(&JwtKeys {
            secret: Some(SECRET.into()),
            public_key_pem: Some(EC_PUBLIC_KEY.into()),
            ..Default::default()
        })
        .expect("valid keys")
    })
}

/// The one token the verifier should accept: signed with its secret, valid for a long time.
pub fn genuine_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let ten_years = Duration::from_secs(10 * 365 * 24 * 3600);
        mint(SECRET, "alice", Some("Alice"), ten_years).expect("minting")
    })
}

/// Token verification with `data` as the token, and with `data` as the claims of the genuine
/// token (its header and signature kept), which must then fail unless `data` is its claims.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    expect_refused(&text);

    let genuine = genuine_token();
    let mut parts = genuine.split('.');
    let (header, _, signature) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
    expect_refused(&format!("{header}.{}.{signature}", b64url(data)));
    // The same claims signed as HS256 with the public key's PEM, or not signed at all.
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    expect_refused(&format!("{none_header}.{}.", b64url(data)));
    if let Ok(claims) = serde_json::from_slice::<Value>(data) {
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(EC_PUBLIC_KEY.as_bytes()),
        )
        .expect("signing");
        expect_refused(&confused);
    }
}

fn expect_refused(token: &str) {
    let result = verifier().verify(token);
    if token == genuine_token() {
        assert!(result.is_ok(), "the genuine token was refused");
        return;
    }
    let expected = if token.is_empty() {
        AuthFailure::Missing
    } else {
        AuthFailure::Invalid
    };
    match result {
        Ok(identity) => panic!("accepted a forged token {token:?} as {identity:?}"),
        Err(failure) => assert_eq!(failure, expected, "{token:?}"),
    }
}

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The fuzz bodies over the seed corpus in `fuzz/seeds/` plus deterministic mutations of it,
    //! so every `cargo test` runs them on stable.

    use super::*;
    use confab_sio::fuzzing::smoke::{Rng, mutate};

    fn smoke(target: &str, body: fn(&[u8]), tokens: &[&str], mutations: usize) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        confab_sio::fuzzing::smoke::run(&dir, body, tokens, mutations);
    }

    const JSON_TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "null",
        "true",
        "-1",
        "0",
        "1e999",
        "\\u0000",
        " ",
        "\"conversation_id\":",
        "\"body\":",
        "\"since\":",
        "\"cursors\":{",
        "\"changed_after\":{",
        "\"limit\":",
        "\"user_ids\":[",
        "\"kind\":\"group\"",
        "\"title\":\"",
        "018f3c2e-7a1b-7c3d-8e4f-5a6b7c8d9e0f",
        "018F3C2E-7A1B-7C3D-8E4F-5A6B7C8D9E0F",
        "2026-01-01T00:00:00Z",
        "+01:00",
        "\u{85}",
        "é",
        "&limit=",
        "before_seq=",
        "%00",
    ];

    #[test]
    fn requests_smoke() {
        smoke("requests", requests, JSON_TOKENS, 4000);
    }

    #[test]
    fn jwt_smoke() {
        let tokens = [
            ".",
            "eyJ",
            "=",
            "-",
            "_",
            "\"alg\":\"none\"",
            "\"exp\":",
            "\"sub\":\"alice\"",
        ];
        smoke("jwt", jwt, &tokens, 2000);
    }

    #[test]
    fn the_genuine_token_is_accepted_and_its_mutations_are_not() {
        // Otherwise `jwt` could pass by refusing everything for a reason of its own.
        let genuine = genuine_token();
        assert_eq!(
            verifier().verify(genuine).unwrap().user_id.as_str(),
            "alice"
        );
        let mut rng = Rng(7);
        for _ in 0..500 {
            let mutated = mutate(&mut rng, genuine.as_bytes(), &[genuine.into()], &["."]);
            let text = String::from_utf8_lossy(&mutated);
            if text != genuine {
                expect_refused(&text);
            }
        }
    }

    #[test]
    fn check_reports_what_it_should() {
        // The properties themselves: a non-object accepted, and a parse that doesn't round-trip.
        let accepts_arrays = std::panic::catch_unwind(|| check("[1]", |_| Ok(1), |_| json!({})));
        assert!(accepts_arrays.is_err());
        let unstable =
            std::panic::catch_unwind(|| check("{}", |v| Ok(v.len()), |_| json!({ "x": 1 })));
        assert!(unstable.is_err());
    }
}
