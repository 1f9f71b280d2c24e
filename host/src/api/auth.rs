//! Authentication and rate limiting for the tenant and operator APIs.
//!
//! - Operator routes take the operator token (`Authorization: Bearer …`),
//!   compared by hash in constant time.
//! - Tenant routes take a tenant API key; the key fixes the tenant, so every
//!   query the handler makes is scoped to it. Scopes gate routes.
//! - Every token (and every webhook channel) has its own rate limit.

use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::AppError;
use crate::service::caller::{Face, TenantCaller};
use crate::service::keys;

/// A keyed limiter: one GCRA cell per key, updated with atomic operations.
pub type KeyedLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// A limiter allowing `per_second` sustained with `burst`.
pub fn limiter(per_second: u32, burst: u32) -> KeyedLimiter {
    let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("at least 1"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
    RateLimiter::keyed(quota)
}

/// Take one request from `key`'s allowance.
pub fn check_rate(limiter: &KeyedLimiter, key: &str) -> Result<(), AppError> {
    limiter.check_key(&key.to_owned()).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        AppError::rate_limited(wait.as_secs() + 1)
    })
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The operator, authenticated.
pub struct Operator;

impl FromRequestParts<ApiState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        let presented = blake3::hash(token.as_bytes());
        if !bool::from(
            presented
                .as_bytes()
                .ct_eq(&state.service.operator_token_hash),
        ) {
            tracing::warn!("operator authentication failed");
            return Err(AppError::unauthorized());
        }
        check_rate(&state.limiter, "operator")?;
        Ok(Operator)
    }
}

/// A tenant API key, authenticated, as the caller of the service's tenant
/// functions (which check its scopes). Handlers read the tenant from here
/// and only from here.
impl FromRequestParts<ApiState> for TenantCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        let service = &state.service;
        let Some(caller) = keys::authenticate(service, token, Face::Api)? else {
            keys::record_failure(service, token).await;
            return Err(AppError::unauthorized());
        };
        check_rate(&state.limiter, &caller.key.id.to_string())?;
        Ok(caller)
    }
}
