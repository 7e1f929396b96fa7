//! API keys. Config holds only SHA-256 hashes; the presented key is hashed and looked up, and
//! the match is confirmed with a constant-time comparison. (The map lookup is keyed by the
//! digest, which reveals nothing usable about the secret: finding a key from timing would need a
//! SHA-256 preimage.)

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::config::runtime::ApiKey;
use crate::error::{ErrorKind, GatewayError};

/// The key from `Authorization: Bearer …` (what OpenAI SDKs send) or `x-api-key`.
pub fn presented_key(h: &pingora::http::RequestHeader) -> Option<&[u8]> {
    if let Some(v) = h.headers.get(http::header::AUTHORIZATION) {
        let v = v.as_bytes();
        let key = v
            .strip_prefix(b"Bearer ")
            .or_else(|| v.strip_prefix(b"bearer "))
            .unwrap_or(v);
        return Some(key.trim_ascii());
    }
    h.headers
        .get("x-api-key")
        .map(|v| v.as_bytes().trim_ascii())
}

pub fn authenticate(
    cfg: &Config,
    h: &pingora::http::RequestHeader,
) -> Result<Arc<ApiKey>, GatewayError> {
    let Some(key) = presented_key(h).filter(|k| !k.is_empty()) else {
        return Err(GatewayError::new(
            ErrorKind::InvalidApiKey,
            "missing API key: send `Authorization: Bearer <key>`",
        )
        .with_param("Authorization"));
    };
    let digest: [u8; 32] = Sha256::digest(key).into();
    match cfg.keys.get(&digest) {
        Some(k) if bool::from(k.hash.ct_eq(&digest)) && k.enabled => Ok(k.clone()),
        _ => Err(
            GatewayError::new(ErrorKind::InvalidApiKey, "invalid API key")
                .with_param("Authorization"),
        ),
    }
}

/// `signalbox hash-key`: the hex SHA-256 that goes into `keys.<id>.sha256`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_sha256() {
        assert_eq!(
            hash_key("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
    }
}
