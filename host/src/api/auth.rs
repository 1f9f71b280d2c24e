//! Authentication and rate limiting for the tenant and operator APIs.
//!
//! - Before a token is checked, the failed-authentication throttle
//!   ([`crate::admission::throttle`]): a client address that failed
//!   `http.auth_failures` times in the window, or a key id that did, is
//!   answered 429 with `Retry-After`, its token unchecked and nothing
//!   written. The operator token is throttled per client address only: a
//!   count for the token itself would let anyone lock the operator out.
//! - Operator routes take the operator token (`Authorization: Bearer …`),
//!   compared by hash in constant time.
//! - Tenant routes take a tenant API key; the key fixes the tenant, so every
//!   query the handler makes is scoped to it. Scopes gate routes. Failures
//!   are counted, and audited in aggregate, by [`failed_auth`].
//! - After authentication, every key (and the operator) has its own rate
//!   limit; every webhook channel has one too ([`super::webhook`]).

use std::hash::Hash;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::AppError;
use crate::admission::address::ClientAddress;
use crate::admission::rate::RateLimit;
use crate::admission::{Admission, Bearer};
use crate::service::caller::{Face, TenantCaller};
use crate::service::{failed_auth, keys};

/// Whole seconds to wait, rounded up, at least one.
fn seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Take one request from `key`'s allowance: 429 with `Retry-After` when it
/// is spent.
pub fn check_rate<K: Hash + Eq + Clone>(limit: &RateLimit<K>, key: &K) -> Result<(), AppError> {
    limit
        .check(key)
        .map_err(|wait| AppError::rate_limited(seconds(wait)))
}

/// The answer to an attempt refused by the failed-authentication throttle.
fn throttled(retry_after: Duration) -> AppError {
    AppError {
        message: "too many failed authentications from this client or with this key; \
                  retry after `Retry-After` seconds"
            .into(),
        ..AppError::rate_limited(seconds(retry_after))
    }
}

/// The client a request comes from ([`ClientAddress::of_request`]).
pub fn client_address(state: &ApiState, parts: &Parts) -> ClientAddress {
    ClientAddress::of_request(parts, &state.service.config)
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

fn admission(state: &ApiState) -> &Admission {
    &state.service.admission
}

/// The operator, authenticated.
pub struct Operator;

impl FromRequestParts<ApiState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        let address = client_address(state, parts);
        let failures = &admission(state).api_failures;
        let now = Instant::now();
        failures
            .check(&address, None, now)
            .map_err(|refused| throttled(refused.retry_after))?;
        let presented = blake3::hash(token.as_bytes());
        if !bool::from(
            presented
                .as_bytes()
                .ct_eq(&state.service.operator_token_hash),
        ) {
            failures.failed(&address, None, now);
            tracing::warn!("operator authentication failed");
            return Err(AppError::unauthorized());
        }
        check_rate(&admission(state).callers, &Bearer::Operator)?;
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
        let address = client_address(state, parts);
        failed_auth::admit(service, Face::Api, &address, token)
            .map_err(|refused| throttled(refused.retry_after))?;
        let Some(caller) = keys::authenticate(service, token, Face::Api)? else {
            failed_auth::record(service, Face::Api, &address, token).await;
            return Err(AppError::unauthorized());
        };
        check_rate(&admission(state).callers, &Bearer::Key(caller.key.id))?;
        Ok(caller)
    }
}
