//! The WhatsApp webhook of one tenant channel.
//!
//! - `GET`: Meta's verification handshake — answer the challenge when the
//!   verify token matches the channel's.
//! - `POST`: a delivery, accepted by [`webhooks::accept`] (signature over
//!   the raw bytes with the secret of the channel the path names, parse,
//!   ownership of every item, durable deduplicated storage) before the 200.
//!
//! Both find the channel first (an id in another spelling, or one naming
//! no channel, is a 404 that leaves nothing behind), then take from that
//! channel's rate limit: the limiter holds cells for channels that exist,
//! whatever ids a flood makes up. Anyone who knows a channel's webhook URL
//! can spend its allowance; WhatsApp delivers again what was refused.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::auth::check_rate;
use super::error::{ApiBytes, ApiJson, ApiPath, ApiQuery, ApiResult, AppError};
use crate::service::channels;
use crate::service::webhooks::{self, Accepted, WebhookError};

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

impl From<WebhookError> for AppError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::UnknownChannel => AppError::not_found("channel"),
            WebhookError::BadSignature(error) => {
                AppError::new(StatusCode::UNAUTHORIZED, "bad_signature", error.to_string())
            }
            WebhookError::Malformed(error) => AppError::new(
                StatusCode::BAD_REQUEST,
                "malformed_payload",
                error.to_string(),
            ),
            error @ WebhookError::ForeignNumber(_) => AppError::forbidden(error.to_string()),
            error @ WebhookError::NotStored(_) => AppError::unavailable(error.to_string()),
            WebhookError::Service(error) => error.into(),
        }
    }
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
        (status = 429, description = "Rate limited (the channel's limit, shared with deliveries)", body = super::error::ErrorBody),
    )
)]
pub async fn verify(
    State(state): State<ApiState>,
    ApiPath(raw_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> ApiResult<Response> {
    let channel = channels::find(&state.service, &raw_id)?;
    check_rate(&state.service.admission.channels, &channel.id)?;
    let challenge = channels::verify_handshake(
        &state.service,
        &channel,
        query.mode.as_deref(),
        query.verify_token.as_deref(),
        query.challenge,
    )
    .await?;
    Ok((StatusCode::OK, [("content-type", "text/plain")], challenge).into_response())
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
    let channel = channels::find(&state.service, &raw_id)?;
    check_rate(&state.service.admission.channels, &channel.id)?;
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Run to the end even if the sender hangs up: hyper drops a request's
    // future when its connection closes, and a delivery dropped after its
    // commit and before it is handed to a worker would sit in the durable
    // inbox, acknowledged to the sender's retry as a duplicate and
    // processed only at the next restart. (Seen in the cluster test: a
    // commit held up by a NATS election outlasted the sender's timeout.)
    let service = state.service.clone();
    let accepting = tokio::spawn(async move {
        webhooks::accept(&service, &channel, signature.as_deref(), &body, received).await
    });
    let accepted = accepting
        .await
        .map_err(|error| AppError::internal(format!("accepting a delivery: {error}")))??;
    Ok(ApiJson(accepted))
}
