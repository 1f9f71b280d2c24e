//! The WhatsApp webhook of one tenant channel.
//!
//! - `GET`: Meta's verification handshake — answer the challenge when the
//!   verify token matches the channel's.
//! - `POST`: check `X-Hub-Signature-256` over the raw bytes with the
//!   channel's app secret (chosen by the path, never by the body), parse,
//!   check every item belongs to one of the tenant's phone numbers,
//!   deduplicate and store the items durably, then answer 200. Processing
//!   happens after the answer; a crash after it loses nothing.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::auth::check_rate;
use super::error::{ApiBytes, ApiJson, ApiPath, ApiQuery, ApiResult, AppError};
use crate::channel::whatsapp::{payload, signature};
use crate::ids::ChannelId;
use crate::service::committer::Commit;
use crate::service::inbox;
use crate::service::metrics::label;
use crate::tenancy::channels::Channel;

/// Meta's verification query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
// Named explicitly: utoipa infers "query" only from axum's own `Query`, not
// from the `ApiQuery` wrapper the handler uses.
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Always `subscribe`.
    #[serde(rename = "hub.mode")]
    pub mode: Option<String>,
    /// The verify token configured for the channel.
    #[serde(rename = "hub.verify_token")]
    pub verify_token: Option<String>,
    /// Echoed back on success.
    #[serde(rename = "hub.challenge")]
    pub challenge: Option<String>,
}

/// The answer to an accepted delivery.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `ok`.
    pub status: String,
    /// Items stored for processing.
    pub accepted: usize,
    /// Items already received before (not stored again).
    pub duplicates: usize,
}

fn channel_id(raw: &str) -> Result<ChannelId, AppError> {
    raw.parse().map_err(|_| AppError::not_found("channel"))
}

fn load_channel(state: &ApiState, id: &ChannelId) -> Result<Channel, AppError> {
    Channel::load(&state.service.vault, id)?.ok_or_else(|| AppError::not_found("channel"))
}

/// Verification handshake.
#[utoipa::path(
    get,
    path = "/webhooks/whatsapp/{channel_id}",
    tag = "webhook",
    params(("channel_id" = String, Path, description = "The channel, as in its webhook path"), VerifyQuery),
    responses(
        (status = 200, description = "The challenge, as plain text", body = String, content_type = "text/plain"),
        (status = 403, description = "Wrong mode or verify token", body = super::error::ErrorBody),
        (status = 404, description = "Unknown channel", body = super::error::ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<ApiState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> ApiResult<Response> {
    let channel = load_channel(&state, &channel_id(&raw_id)?)?;
    let token_ok = query
        .verify_token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(channel.verify_token.as_bytes())));
    match (query.mode.as_deref(), token_ok, query.challenge) {
        (Some("subscribe"), true, Some(challenge)) if challenge.len() <= 256 => {
            Ok((StatusCode::OK, [("content-type", "text/plain")], challenge).into_response())
        }
        _ => Err(AppError::forbidden("verification failed")),
    }
}

/// Receive a delivery.
#[utoipa::path(
    post,
    path = "/webhooks/whatsapp/{channel_id}",
    tag = "webhook",
    params(
        ("channel_id" = String, Path, description = "The channel, as in its webhook path"),
        ("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body under the app secret>"),
    ),
    request_body(content = String, description = "A WhatsApp Cloud API webhook body", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored durably; processed asynchronously", body = Accepted),
        (status = 400, description = "Not a WhatsApp webhook body", body = super::error::ErrorBody),
        (status = 401, description = "Missing or wrong signature", body = super::error::ErrorBody),
        (status = 403, description = "An item is for a phone number this tenant does not own", body = super::error::ErrorBody),
        (status = 404, description = "Unknown channel", body = super::error::ErrorBody),
        (status = 413, description = "Body too large", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited", body = super::error::ErrorBody),
        (status = 503, description = "Could not be stored; retry", body = super::error::ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<ApiState>,
    ApiPath(raw_id): ApiPath<String>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<ApiJson<Accepted>> {
    let received = Instant::now();
    let service = &state.service;
    let refuse = |reason: &str| {
        service
            .metrics
            .webhook_refused
            .get_or_create(&label("reason", reason))
            .inc();
    };
    let id = channel_id(&raw_id)?;
    check_rate(&state.webhook_limiter, &raw_id)?;
    let channel = load_channel(&state, &id)?;
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(error) = signature::verify(channel.app_secret.as_bytes(), &body, header) {
        refuse("signature");
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            error.to_string(),
        ));
    }
    let delivery = payload::parse(&body).map_err(|error| {
        refuse("malformed");
        AppError::new(
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            error.to_string(),
        )
    })?;
    let context = service
        .contexts
        .get(&channel.tenant)
        .map_err(AppError::internal)?;
    if let Some(foreign) = delivery.items.iter().find(|item| {
        !context
            .channels
            .iter()
            .any(|c| c.phone_number_id == item.phone_number_id())
    }) {
        refuse("foreign-number");
        return Err(AppError::forbidden(format!(
            "the delivery has an item for phone number id {}, which is not a channel of this tenant",
            foreign.phone_number_id()
        )));
    }
    let now = service.clock.now();
    // Items go to the channel that owns their phone number (one Meta app
    // may serve several numbers of the same tenant).
    let mut guarded = Vec::new();
    let mut jobs = Vec::new();
    for item in delivery.items {
        let owner = context
            .channels
            .iter()
            .find(|c| c.phone_number_id == item.phone_number_id())
            .map(|c| c.id)
            .unwrap_or(channel.id);
        let (g, j) = inbox::prepare(
            &service.vault,
            &channel.tenant,
            &owner,
            payload::Delivery { items: vec![item] },
            now,
        )?;
        guarded.extend(g);
        jobs.extend(j);
    }
    let committed = service
        .committer
        .commit(Commit {
            guarded,
            ..Commit::default()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing a webhook delivery failed");
            AppError::unavailable("the delivery could not be stored; retry")
        })?;
    let mut accepted = 0;
    let mut duplicates = 0;
    for (job, applied) in jobs.into_iter().zip(committed.applied) {
        let kind = match job.item.item {
            payload::DeliveryItem::Message(_) => "message",
            payload::DeliveryItem::Status(_) => "status",
        };
        if applied {
            accepted += 1;
            service
                .metrics
                .webhook_items
                .get_or_create(&vec![
                    ("kind".into(), kind.into()),
                    ("outcome".into(), "accepted".into()),
                ])
                .inc();
            service.dispatch(job, received);
        } else {
            duplicates += 1;
            service
                .metrics
                .webhook_items
                .get_or_create(&vec![
                    ("kind".into(), kind.into()),
                    ("outcome".into(), "duplicate".into()),
                ])
                .inc();
        }
    }
    service
        .metrics
        .webhook_ack_seconds
        .observe(received.elapsed().as_secs_f64());
    Ok(ApiJson(Accepted {
        status: "ok".into(),
        accepted,
        duplicates,
    }))
}
