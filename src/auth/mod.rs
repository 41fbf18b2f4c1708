//! Authentication: verifying the host app's JWTs, and minting tokens for local use.

mod token;

pub use token::{Identity, JwtKeys, Verifier, mint};

/// Why a token was refused. Clients act on it: `expired` means "get a fresh token and retry",
/// `invalid` means "sign the user out".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
    Expired,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
        }
    }
}

/// Pulls the bearer token out of an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthFailure> {
    let value = header.ok_or(AuthFailure::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Invalid);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailure::Missing);
    }
    Ok(token)
}
