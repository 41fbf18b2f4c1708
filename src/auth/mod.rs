//! Authentication: verifying the host app's JWTs, and minting tokens for local use.

mod server_keys;
mod token;

pub use crate::error::AuthFailure;
pub use server_keys::ServerKeys;
pub use token::{Identity, JwtKeys, Verifier, mint};

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
