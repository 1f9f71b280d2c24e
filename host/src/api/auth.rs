//! Authentication and rate limiting for the tenant and operator APIs.
//!
//! - Operator routes take the operator token (`Authorization: Bearer …`),
//!   compared by hash in constant time.
//! - Tenant routes take a tenant API key; the key fixes the tenant, so every
//!   query the handler makes is scoped to it. Scopes gate routes.
//! - Every token (and every webhook channel) has its own rate limit.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::AppError;
use crate::audit::{Actor, AuditDraft};
use crate::ids::TenantId;
use crate::service::committer::Commit;
use crate::store::Batch;
use crate::tenancy::api_keys::{self, ApiKey, Scope};

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

/// A tenant API key, authenticated. Handlers read the tenant from here and
/// only from here.
pub struct TenantKey {
    pub tenant: TenantId,
    pub key: ApiKey,
}

impl TenantKey {
    /// Refuse unless the key carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.key.allows(scope) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "this API key lacks the `{}` scope",
                serde_json::to_value(scope)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )))
        }
    }

    /// The audit actor for this key.
    pub fn actor(&self) -> Actor {
        Actor::ApiKey(self.key.id.to_string())
    }
}

impl FromRequestParts<ApiState> for TenantKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or_else(AppError::unauthorized)?;
        let service = &state.service;
        let Some((tenant, key)) = api_keys::authenticate(&service.vault, token)? else {
            record_failure(state, token).await;
            return Err(AppError::unauthorized());
        };
        check_rate(&state.limiter, &key.id.to_string())?;
        Ok(TenantKey { tenant, key })
    }
}

/// Audit a failed authentication when the key id names a real tenant (a
/// wrong secret for an existing key); unknown ids are only logged.
async fn record_failure(state: &ApiState, token: &str) {
    let service: &Arc<crate::service::ServiceInner> = &state.service;
    let Some(key_id) = token
        .strip_prefix("fgk_")
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(id, _)| crate::crypto::from_hex::<16>(id))
    else {
        tracing::info!("authentication with a malformed token");
        return;
    };
    let tenant = service
        .vault
        .store
        .get(&TenantId::SYSTEM, crate::store::Kind::ApiKeys, &key_id)
        .ok()
        .flatten()
        .and_then(|t| TenantId::from_slice(&t));
    if let Some(tenant) = tenant {
        let draft = AuditDraft::new(
            tenant,
            service.clock.now(),
            Actor::ApiKey(crate::ids::ApiKeyId::from_bytes(key_id).to_string()),
            "auth.failed",
        );
        let _ = service
            .committer
            .commit(Commit::new(Batch::new(), vec![draft]))
            .await;
    }
    tracing::info!("tenant authentication failed");
}
