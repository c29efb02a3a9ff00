//! Bearer-key authentication. Keys are random strings shown once; the store keeps
//! only their sha256, so a leaked database does not leak usable keys.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

pub const KEY_PREFIX: &str = "nmb_";
/// Shortest key accepted from `--api-key`, so a guessable key cannot be configured.
pub const MIN_KEY_LEN: usize = 16;

/// Generates a new API key: the `nmb_` prefix and 32 random bytes in hex.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Returns the part of a key that is safe to show, enough to tell keys apart.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(8).collect()
}

/// Returns the start of a rejected key for an error message: at most 8 characters
/// and at most half the key, so a short key is never echoed in full.
fn rejected_key_hint(key: &str) -> String {
    let hint_length = (key.chars().count() / 2).min(8);
    key.chars().take(hint_length).collect()
}

/// Resolves `Authorization: Bearer KEY` to its account and stores the account in the
/// request extensions; any failure is a 401 that does not echo the key.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("Authorization header is missing; send Authorization: Bearer KEY".into())
    })?;
    let value = header.to_str().map_err(|_| {
        ApiError::Unauthorized("Authorization header is not valid text; send Authorization: Bearer KEY".into())
    })?;
    let key = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("Authorization header must have the form: Bearer KEY".into()))?;
    let account = state.store.account_for_key(&hash_key(key)).await?.ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "API key '{}…' is not valid; use a key from the server's data directory or from `nimbus admin key create`",
            rejected_key_hint(key)
        ))
    })?;
    request.extensions_mut().insert(account);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        let first = generate_key();
        let second = generate_key();
        assert_ne!(first, second);
        assert!(first.starts_with(KEY_PREFIX));
        assert_eq!(first.len(), KEY_PREFIX.len() + 64);
    }

    #[test]
    fn rejected_key_hint_is_partial() {
        assert_eq!(rejected_key_hint("wrong"), "wr");
        assert_eq!(rejected_key_hint("nmb_0123456789abcdef"), "nmb_0123");
        assert_eq!(rejected_key_hint("x"), "");
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
