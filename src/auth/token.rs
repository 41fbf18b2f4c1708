//! JWT verification and minting.

use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthFailure;
use crate::domain::{DisplayName, Timestamp, UserId};

/// Tokens larger than this are refused before any parsing: no legitimate claim set comes close,
/// and it bounds the work an attacker can cause per handshake.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated between the host app and confab, for `nbf`: a token from a host whose
/// clock runs ahead is usable at once. Not for `exp`: a session ends at `exp` by this server's
/// clock (see `realtime::session`), so a token accepted past its `exp` would open a session
/// that ends the moment it begins, and a client reconnecting with it would loop. Skew at `exp`
/// only shortens or lengthens a token's life by the skew, which a lifetime of minutes absorbs.
const LEEWAY_SECS: u64 = 60;

/// The keys tokens may be signed with, as configured.
#[derive(Clone, Default)]
pub struct JwtKeys {
    /// HS256 shared secret (for example the app's NextAuth secret).
    pub secret: Option<String>,
    /// PEM public key for RS256 (RSA) or ES256 (P-256) tokens.
    pub public_key_pem: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
}

/// Who a verified token says the user is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: UserId,
    pub name: Option<DisplayName>,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    // Any JSON value: a non-string `name` is ignored rather than failing an otherwise valid token.
    #[serde(default)]
    name: Option<serde_json::Value>,
}

/// Verifies tokens against the configured keys. Cheap to clone behind an `Arc`.
pub struct Verifier {
    /// HS256 key and its validation rules.
    hmac: Option<(DecodingKey, Validation)>,
    /// The asymmetric key, its one algorithm, and validation rules.
    public: Option<(DecodingKey, Validation)>,
}

impl Verifier {
    pub fn new(keys: &JwtKeys) -> anyhow::Result<Self> {
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.leeway = LEEWAY_SECS;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "sub"]);
            match &keys.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            if let Some(iss) = &keys.issuer {
                v.set_issuer(&[iss]);
            }
            v
        };
        let hmac = match &keys.secret {
            Some(secret) if secret.len() < 16 => {
                bail!("the JWT secret must be at least 16 bytes long")
            }
            Some(secret) => Some((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            )),
            None => None,
        };
        let public = match &keys.public_key_pem {
            Some(pem) => {
                let pem = pem.as_bytes();
                let (key, alg) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                    (key, Algorithm::RS256)
                } else {
                    let key = DecodingKey::from_ec_pem(pem).context(
                        "the JWT public key is neither an RSA nor an EC (P-256) PEM key",
                    )?;
                    (key, Algorithm::ES256)
                };
                Some((key, validation(alg)))
            }
            None => None,
        };
        if hmac.is_none() && public.is_none() {
            bail!("no JWT key configured");
        }
        Ok(Self { hmac, public })
    }

    /// Verifies a token and returns whom it identifies.
    ///
    /// The key is chosen by the algorithm in the header, and each key accepts exactly one
    /// algorithm: `none`, HS/RS confusion and any other algorithm are refused.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        if token.is_empty() {
            return Err(AuthFailure::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::Invalid)?;
        let (key, validation) = [&self.hmac, &self.public]
            .into_iter()
            .flatten()
            .find(|(_, v)| v.algorithms.contains(&header.alg))
            .ok_or_else(|| {
                tracing::debug!(alg = ?header.alg, "token refused: no key configured for its algorithm");
                AuthFailure::Invalid
            })?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            // The detail (bad signature, wrong audience, …) helps whoever configures the
            // keys; it names no part of the token.
            tracing::debug!(error = ?e.kind(), "token refused");
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::Expired,
                _ => AuthFailure::Invalid,
            }
        })?;
        let claims = data.claims;
        // `jsonwebtoken` applies the leeway to `exp` too; we don't (see `LEEWAY_SECS`).
        let expires_at = Timestamp::from_secs(claims.exp);
        if expires_at <= Timestamp::now() {
            return Err(AuthFailure::Expired);
        }
        let user_id = UserId::parse(&claims.sub).map_err(|_| AuthFailure::Invalid)?;
        let name = match claims.name {
            Some(serde_json::Value::String(name)) => DisplayName::sanitize(&name),
            _ => None,
        };
        Ok(Identity {
            user_id,
            name,
            expires_at,
        })
    }
}

#[derive(Serialize)]
struct MintClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    iat: i64,
    exp: i64,
}

/// Signs an HS256 token for `sub`, valid for `ttl`. Used by `confab token` and local sign-in.
pub fn mint(secret: &str, sub: &str, name: Option<&str>, ttl: Duration) -> anyhow::Result<String> {
    UserId::parse(sub).map_err(|e| anyhow::anyhow!("--sub {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(ttl.as_secs()).context("ttl out of range")?;
    let claims = MintClaims {
        sub,
        name,
        iat: now,
        exp: now + ttl,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the token")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-at-least-16-bytes";

    fn verifier() -> Verifier {
        Verifier::new(&JwtKeys {
            secret: Some(SECRET.into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies() {
        let token = mint(SECRET, "alice", Some("Alice"), Duration::from_secs(60)).unwrap();
        let id = verifier().verify(&token).unwrap();
        assert_eq!(id.user_id.as_str(), "alice");
        assert_eq!(id.name.unwrap().as_str(), "Alice");
    }

    #[test]
    fn wrong_key_and_garbage_are_invalid() {
        let token = mint(
            "another-secret-16-bytes!",
            "alice",
            None,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(verifier().verify(&token).unwrap_err(), AuthFailure::Invalid);
        assert_eq!(
            verifier().verify("a.b.c").unwrap_err(),
            AuthFailure::Invalid
        );
        assert_eq!(verifier().verify("").unwrap_err(), AuthFailure::Missing);
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(verifier().verify(&huge).unwrap_err(), AuthFailure::Invalid);
    }

    fn signed(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn the_leeway_covers_nbf_but_not_exp() {
        let now = chrono::Utc::now().timestamp();
        let just_expired = signed(serde_json::json!({ "sub": "alice", "exp": now - 5 }));
        assert_eq!(
            verifier().verify(&just_expired).unwrap_err(),
            AuthFailure::Expired
        );
        let ahead = signed(serde_json::json!({ "sub": "alice", "nbf": now + 30, "exp": now + 90 }));
        assert_eq!(verifier().verify(&ahead).unwrap().user_id.as_str(), "alice");
    }

    #[test]
    fn short_secrets_are_refused_at_start() {
        let keys = JwtKeys {
            secret: Some("short".into()),
            ..Default::default()
        };
        assert!(Verifier::new(&keys).is_err());
    }
}
