//! The host app's server keys (`CONFAB_SERVER_API_KEYS`), for the server API.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthFailure;

/// The keys the host app's server may present. Several, so one can be rotated: add the new
/// one, move the app to it, remove the old one.
#[derive(Default)]
pub struct ServerKeys {
    /// SHA-256 of each key. Comparing digests takes the same time whatever the presented key's
    /// length, and `subtle` compares them in constant time, so timing tells an attacker nothing
    /// about how much of a key they guessed.
    digests: Vec<[u8; 32]>,
}

impl ServerKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys.iter().map(|k| Sha256::digest(k).into()).collect(),
        }
    }

    /// Whether the server API is on (some key is configured).
    pub fn any(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Checks a presented key against every configured one (all of them, whichever matches,
    /// so the time taken doesn't say which key matched either).
    pub fn verify(&self, presented: &str) -> Result<(), AuthFailure> {
        if self.digests.is_empty() {
            // Refused like a wrong key (the caller learns nothing of the setup), but whoever
            // runs confab should learn why the app's calls fail: once per process.
            static TOLD: std::sync::Once = std::sync::Once::new();
            TOLD.call_once(|| {
                tracing::warn!(
                    "a server API request was refused: CONFAB_SERVER_API_KEYS is not set, so the server API refuses every key"
                );
            });
        }
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&digest)
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthFailure::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_pass() {
        let keys = ServerKeys::new(&["old-key-0123456789".into(), "new-key-0123456789".into()]);
        assert!(keys.verify("old-key-0123456789").is_ok());
        assert!(keys.verify("new-key-0123456789").is_ok());
        assert!(keys.verify("new-key-012345678").is_err());
        assert!(keys.verify("").is_err());
        assert!(ServerKeys::default().verify("").is_err());
    }
}
