//! HS256 tokens for the simulated users, signed with the secret the server was given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The claims confab and the Node peer read: `sub` and `exp` are required, `name` is optional.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs one token per user. Building the key once keeps minting cheap (a few µs per token),
/// so tens of thousands of users cost nothing noticeable before the run starts.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    ttl: Duration,
}

impl Minter {
    /// A minter for `secret`; tokens last `ttl` from the moment they are minted.
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::new(Algorithm::HS256),
            ttl,
        }
    }

    /// A token whose `sub` (and display name) is `user`.
    pub fn mint(&self, user: &str) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let claims = Claims {
            sub: user,
            name: user,
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("signing a token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Decoded {
        sub: String,
        name: String,
        exp: u64,
        iat: u64,
    }

    #[test]
    fn tokens_verify_with_the_same_secret_only() {
        let minter = Minter::new("a-secret-of-sixteen+", Duration::from_secs(3600));
        let token = minter.mint("bench-u7").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let decoded = jsonwebtoken::decode::<Decoded>(
            &token,
            &DecodingKey::from_secret(b"a-secret-of-sixteen+"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(decoded.sub, "bench-u7");
        assert_eq!(decoded.name, "bench-u7");
        assert_eq!(decoded.exp - decoded.iat, 3600);

        let wrong = jsonwebtoken::decode::<Decoded>(
            &token,
            &DecodingKey::from_secret(b"another-secret-of-16"),
            &validation,
        );
        assert!(wrong.is_err());
    }
}
