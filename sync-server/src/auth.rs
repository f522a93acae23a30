//! Who is calling: a bearer token, checked before anything else of the request is read.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::scope::Device;
use crate::{blocking, AppState, ServerError};

/// The device the request's bearer token belongs to, within its rate limit. As an extractor it
/// runs before the body is read, so an unknown token or a device over its budget costs no body
/// parsing.
pub struct Authed(pub Device);

/// Only the hash of a token is stored: a copy of the database grants nothing.
pub fn token_hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(token.as_bytes()) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

pub fn bearer(headers: &HeaderMap) -> Result<String, ServerError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .ok_or(ServerError::Unauthorized(
            "send Authorization: Bearer TOKEN from POST /v1/devices",
        ))
}

/// Whether `given` is the admin key, in time that does not depend on where they differ.
pub fn is_admin_key(state: &AppState, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    state.admin_key.as_ref().is_some_and(|key| {
        let (a, b) = (
            Sha256::digest(key.as_bytes()),
            Sha256::digest(given.as_bytes()),
        );
        bool::from(a.ct_eq(&b))
    })
}

/// The device a token belongs to (not revoked), or 401.
pub fn authenticate(state: &AppState, token: &str) -> Result<Device, ServerError> {
    state
        .storage
        .device(&token_hash(token))?
        .ok_or(ServerError::Unauthorized("unknown token"))
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ServerError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        let class = crate::limits::Class::of_path(parts.uri.path());
        // The budget is the device's, whatever token it shows (a rotated token starts no new
        // one); finding the device is one indexed read, and the address's own budget bounds
        // how many of those a stream of made-up tokens costs.
        let hash = token_hash(&token);
        let device = blocking(state, move |state| {
            state
                .storage
                .device(&hash)?
                .ok_or(ServerError::Unauthorized("unknown token"))
        })
        .await?;
        state.limits.device(class, &device.id)?;
        Ok(Authed(device))
    }
}
