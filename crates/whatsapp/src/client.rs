//! Sending messages through the Cloud API.
//!
//! `POST {base}/{version}/{phone-number-id}/messages` with a bearer token
//! and `{"messaging_product": "whatsapp", "to": …, "type": "text", "text":
//! {"body": …}}`. Contacts known only by a business-scoped user id are
//! addressed with `recipient` instead of `to`. Errors are classified as
//! retryable (network, 5xx, 429, Meta's throttling codes) or permanent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how to reach the Cloud API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudApiConfig {
    /// Base URL (`https://graph.facebook.com`); tests point it at the fake.
    pub base_url: String,
    /// Graph API version path segment.
    pub version: String,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// How long a reply whose send is in doubt (the service stopped, or the
    /// connection dropped, between sending it and learning the outcome)
    /// waits for its status webhook before it is sent again. Longer means
    /// fewer duplicates when WhatsApp's webhooks are slow to arrive; shorter
    /// means a lost send is retried sooner.
    pub confirm_timeout_secs: u64,
}

impl Default for CloudApiConfig {
    fn default() -> Self {
        CloudApiConfig {
            base_url: "https://graph.facebook.com".into(),
            version: "v21.0".into(),
            timeout_ms: 10_000,
            confirm_timeout_secs: 300,
        }
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A WhatsApp id (phone number).
    WaId(String),
    /// A business-scoped user id.
    UserId(String),
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Whether trying again later may succeed.
    pub retryable: bool,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Meta's error code, when given.
    pub code: Option<i64>,
    pub message: String,
    /// The request may have reached the Cloud API and the message may have
    /// been sent (the connection dropped or timed out after the request
    /// left, or an answer of success could not be read). Sending again at
    /// once could deliver it twice; the outbox waits for the message's
    /// status webhook instead (see `service::outbox`).
    pub in_doubt: bool,
}

/// A Cloud API client; cheap to clone.
#[derive(Clone)]
pub struct CloudApiClient {
    http: reqwest::Client,
    config: CloudApiConfig,
}

#[derive(Deserialize)]
struct SendResponse {
    messages: Vec<SentId>,
}

#[derive(Deserialize)]
struct SentId {
    id: String,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    message: Option<String>,
    code: Option<i64>,
}

/// Meta's throttling and transient error codes (rate limits, temporary
/// unavailability), retried with backoff.
const RETRYABLE_CODES: [i64; 6] = [1, 2, 4, 80007, 130429, 131016];

impl CloudApiClient {
    pub fn new(config: CloudApiConfig) -> CloudApiClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("flowgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building the HTTP client");
        CloudApiClient { http, config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CloudApiConfig {
        &self.config
    }

    /// Send a text message; returns WhatsApp's message id. `callback` is
    /// sent as `biz_opaque_callback_data`, which WhatsApp echoes in the
    /// message's status webhooks (at most 512 characters, not shown to the
    /// recipient).
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        access_token: &str,
        to: &Recipient,
        text: &str,
        callback: Option<&str>,
    ) -> Result<String, SendError> {
        let url = format!(
            "{}/{}/{}/messages",
            self.config.base_url.trim_end_matches('/'),
            self.config.version,
            phone_number_id
        );
        let mut body = serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": "text",
            "text": {"preview_url": false, "body": text},
        });
        match to {
            Recipient::WaId(wa_id) => body["to"] = wa_id.as_str().into(),
            Recipient::UserId(user_id) => body["recipient"] = user_id.as_str().into(),
        }
        if let Some(callback) = callback {
            body["biz_opaque_callback_data"] = callback.into();
        }
        let response = self
            .http
            .post(&url)
            .bearer_auth(access_token)
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError {
                retryable: true,
                status: None,
                code: None,
                message: format!("request failed: {}", without_url(&e)),
                // Only a refused connection proves the request never left.
                in_doubt: !e.is_connect(),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| SendError {
            retryable: true,
            status: Some(status.as_u16()),
            code: None,
            message: format!("reading the response failed: {}", without_url(&e)),
            in_doubt: status.is_success(),
        })?;
        if status.is_success() {
            // A success whose message id cannot be read was still a success:
            // in doubt, so the status webhook settles it.
            let parsed: SendResponse = serde_json::from_slice(&bytes).map_err(|e| SendError {
                retryable: true,
                status: Some(status.as_u16()),
                code: None,
                message: format!("unexpected response: {e}"),
                in_doubt: true,
            })?;
            return parsed
                .messages
                .into_iter()
                .next()
                .map(|m| m.id)
                .ok_or_else(|| SendError {
                    retryable: true,
                    status: Some(status.as_u16()),
                    code: None,
                    message: "the response names no message id".into(),
                    in_doubt: true,
                });
        }
        let graph: Option<GraphError> = serde_json::from_slice::<GraphErrorBody>(&bytes)
            .ok()
            .map(|b| b.error);
        let code = graph.as_ref().and_then(|g| g.code);
        let retryable = status.is_server_error()
            || status.as_u16() == 429
            || code.is_some_and(|c| RETRYABLE_CODES.contains(&c));
        Err(SendError {
            retryable,
            status: Some(status.as_u16()),
            code,
            message: graph
                .and_then(|g| g.message)
                .unwrap_or_else(|| format!("HTTP {status}")),
            in_doubt: false,
        })
    }
}

/// Error text without the URL (which carries the phone number id).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<cloud api>");
    }
    text
}
