//! Signed download links: `GET /api/attachments/{id}?u=<user>&exp=<unix secs>&sig=<hex>`, so an
//! `<img src>` works without putting the user's token in a URL. A link names the user it was
//! made for, and the server checks at download time that they may still see the attachment, so
//! a link stops working when its user leaves the conversation, as well as when it expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{AttachmentId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks links.
#[derive(Clone)]
pub struct Links {
    key: Vec<u8>,
    /// How long a link lasts, at least (at most twice that).
    ttl_secs: i64,
}

impl Links {
    pub fn new(key: &[u8], ttl_secs: u64) -> Self {
        Self {
            key: key.to_vec(),
            ttl_secs: ttl_secs.clamp(1, i64::MAX as u64) as i64,
        }
    }

    /// A key derived from another secret (the JWT secret), so a cluster whose nodes share
    /// that one shares this one, without a setting more; derived, so a link's signature
    /// can't be turned into a token's.
    pub fn derive(secret: &[u8], ttl_secs: u64) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"confab attachment links v1");
        Self::new(&mac.finalize().into_bytes(), ttl_secs)
    }

    /// When a link made at `now` (unix seconds) expires: the end of the next whole period of
    /// `ttl`, so that links made within one period are the same URL and a browser's cache
    /// keeps working.
    pub fn expiry(&self, now: i64) -> i64 {
        (now.div_euclid(self.ttl_secs) + 2) * self.ttl_secs
    }

    fn mac(&self, id: AttachmentId, user: &UserId, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        // User ids can't contain control characters, so the newlines can't be forged.
        mac.update(format!("{id}\n{user}\n{expires}").as_bytes());
        mac
    }

    /// The query string of a link for `user` to `id`, and when it expires (unix seconds).
    pub fn sign(&self, id: AttachmentId, user: &UserId, now: i64) -> (String, i64) {
        let expires = self.expiry(now);
        let sig = hex::encode(self.mac(id, user, expires).finalize().into_bytes());
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("u", user.as_str())
            .append_pair("exp", &expires.to_string())
            .append_pair("sig", &sig)
            .finish();
        (query, expires)
    }

    /// Whether `sig` signs this link and it hasn't expired at `now`. Compared in constant time.
    pub fn verify(
        &self,
        id: AttachmentId,
        user: &UserId,
        expires: i64,
        sig: &str,
        now: i64,
    ) -> bool {
        if expires <= now {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        self.mac(id, user, expires).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_only_as_signed() {
        let links = Links::derive(b"a-secret-of-sixteen-bytes", 600);
        let (id, alice) = (AttachmentId::new(), UserId::parse("alice").unwrap());
        let now = 1_800_000_000;
        let (query, expires) = links.sign(id, &alice, now);
        assert!(expires > now + 600 - 1 && expires <= now + 1200);
        assert_eq!(
            links.sign(id, &alice, now + 1).0,
            query,
            "stable within a period"
        );
        let sig = query.split("sig=").nth(1).unwrap();
        assert!(links.verify(id, &alice, expires, sig, now));
        assert!(!links.verify(id, &alice, expires, sig, expires));
        assert!(!links.verify(AttachmentId::new(), &alice, expires, sig, now));
        let bob = UserId::parse("bob").unwrap();
        assert!(!links.verify(id, &bob, expires, sig, now));
        assert!(!links.verify(id, &alice, expires + 600, sig, now));
        assert!(!links.verify(id, &alice, expires, "zz", now));
        let other = Links::derive(b"another-secret-sixteen", 600);
        assert!(!other.verify(id, &alice, expires, sig, now));
    }
}
