//! A local fake of the Cloud API's send endpoint, for the demo and tests.
//!
//! It speaks the real request format and checks it strictly: the path
//! `/{version}/{phone-number-id}/messages`, a bearer token registered for
//! that phone number id, `messaging_product: "whatsapp"`, `type: "text"`,
//! a recipient (`to` or `recipient`) and a body of 1 to 4096 characters.
//! It answers like Graph (a `wamid.` id, or an `error` object), counts what
//! it accepted, and can be told to fail the next requests.
//!
//! Like WhatsApp, it can post a signed `sent` status webhook for every
//! message it accepts (echoing `biz_opaque_callback_data`), retrying until
//! the service answers 200 — the service may be down when the status is
//! due. And it can stall: answer a request only after the client gave up,
//! having accepted the message or not, which is how a send ends in doubt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

/// A message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    pub phone_number_id: String,
    /// `to` (a WhatsApp id) or `recipient` (a BSUID).
    pub to: String,
    pub text: String,
    pub wamid: String,
    /// `biz_opaque_callback_data`, when given.
    pub callback: Option<String>,
}

/// Where the status webhooks of a phone number's messages go.
#[derive(Clone)]
struct StatusHook {
    url: String,
    app_secret: String,
}

/// A request answered only after `STALL` (the client has given up by
/// then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The message is accepted (and its status posted), the answer stalls.
    Accepted,
    /// Nothing is accepted; the answer stalls, then is an error.
    Lost,
}

/// How long a stalled request waits before it is answered.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, String>,
    sent: Vec<SentMessage>,
    rejected: usize,
    fail_next: Vec<u16>,
    stall_next: Vec<Stall>,
    status_hooks: HashMap<String, StatusHook>,
    watchers: Vec<tokio::sync::mpsc::UnboundedSender<(SentMessage, std::time::Instant)>>,
}

/// A running fake. Dropping it does not stop the server; it lives as long
/// as the runtime that spawned it.
#[derive(Clone)]
pub struct FakeCloudApi {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

impl FakeCloudApi {
    /// Start on a free loopback port.
    pub async fn start() -> std::io::Result<FakeCloudApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(send))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeCloudApi { inner, addr })
    }

    /// The base URL to configure as the Cloud API's.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accept `token` for `phone_number_id`.
    pub fn register(&self, phone_number_id: &str, token: &str) {
        self.lock()
            .tokens
            .insert(phone_number_id.into(), token.into());
    }

    /// Answer the next requests with these HTTP statuses (then succeed).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().fail_next.extend_from_slice(statuses);
    }

    /// Stall the next requests (after any injected failures).
    pub fn stall_next(&self, stalls: &[Stall]) {
        self.lock().stall_next.extend_from_slice(stalls);
    }

    /// Post a signed `sent` status webhook to `url` for every message
    /// accepted for `phone_number_id` from now on.
    pub fn post_statuses(&self, phone_number_id: &str, url: &str, app_secret: &str) {
        self.lock().status_hooks.insert(
            phone_number_id.into(),
            StatusHook {
                url: url.into(),
                app_secret: app_secret.into(),
            },
        );
    }

    /// Everything accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    /// Every message accepted from now on, with the time it arrived (for
    /// end-to-end latency in the load generator).
    pub fn watch(&self) -> tokio::sync::mpsc::UnboundedReceiver<(SentMessage, std::time::Instant)> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.lock().watchers.push(sender);
        receiver
    }

    /// Requests refused (bad token, bad body or injected failure).
    pub fn rejected(&self) -> usize {
        self.lock().rejected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake cloud api lock")
    }
}

fn graph_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({
            "error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "fake"}
        })),
    )
        .into_response()
}

async fn send(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let answer = accept(&inner, &phone_number_id, &headers, &body);
    let stall = {
        let mut inner = inner.lock().expect("fake cloud api lock");
        (!inner.stall_next.is_empty()).then(|| inner.stall_next.remove(0))
    };
    match (stall, answer) {
        (None, Ok(message)) => sent_response(&record(&inner, message)),
        (None, Err((status, code, message))) => graph_error(status, code, message),
        (Some(Stall::Accepted), Ok(message)) => {
            let message = record(&inner, message);
            tokio::time::sleep(STALL).await;
            sent_response(&message)
        }
        (Some(_), _) => {
            tokio::time::sleep(STALL).await;
            graph_error(StatusCode::SERVICE_UNAVAILABLE, 2, "Timed out (injected)")
        }
    }
}

fn sent_response(message: &SentMessage) -> Response {
    Json(serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": message.to, "wa_id": message.to}],
        "messages": [{"id": message.wamid}]
    }))
    .into_response()
}

/// Count an accepted message (giving it its wamid), tell the watchers,
/// and post its status.
fn record(inner: &Arc<Mutex<Inner>>, mut message: SentMessage) -> SentMessage {
    let mut inner = inner.lock().expect("fake cloud api lock");
    message.wamid = format!("wamid.FAKE{:012}", inner.sent.len() + 1);
    let arrived = std::time::Instant::now();
    inner
        .watchers
        .retain(|watcher| watcher.send((message.clone(), arrived)).is_ok());
    if let Some(hook) = inner.status_hooks.get(&message.phone_number_id).cloned() {
        tokio::spawn(post_status(hook, message.clone()));
    }
    inner.sent.push(message.clone());
    message
}

/// Post a `sent` status webhook like WhatsApp's, retrying until it is
/// answered 200 (WhatsApp retries for days; ten minutes is plenty here).
async fn post_status(hook: StatusHook, message: SentMessage) {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut status = serde_json::json!({
        "id": message.wamid,
        "status": "sent",
        "timestamp": timestamp.to_string(),
        "conversation": {"id": "fake-conversation", "origin": {"type": "service"}},
        "pricing": {"billable": true, "pricing_model": "CBP", "category": "service"},
    });
    if message.to.bytes().all(|b| b.is_ascii_digit()) {
        status["recipient_id"] = message.to.clone().into();
    } else {
        status["recipient_user_id"] = message.to.clone().into();
    }
    if let Some(callback) = &message.callback {
        status["biz_opaque_callback_data"] = callback.clone().into();
    }
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "fake-waba", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": message.phone_number_id},
            "statuses": [status],
        }}]}],
    })
    .to_string();
    let signature = super::signature::sign(hook.app_secret.as_bytes(), body.as_bytes());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while std::time::Instant::now() < deadline {
        let posted = http
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        if posted.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A refusal: HTTP status, Graph error code, message.
type Refused = (StatusCode, i64, &'static str);

/// Check a request like Graph does: the message it asks to send, or why
/// not.
fn accept(
    inner: &Arc<Mutex<Inner>>,
    phone_number_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SentMessage, Refused> {
    let mut inner = inner.lock().expect("fake cloud api lock");
    if let Some(status) = (!inner.fail_next.is_empty()).then(|| inner.fail_next.remove(0)) {
        inner.rejected += 1;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err((status, 2, "Service temporarily unavailable (injected)"));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_none() || inner.tokens.get(phone_number_id).map(String::as_str) != token {
        inner.rejected += 1;
        return Err((StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token"));
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        inner.rejected += 1;
        return Err((StatusCode::BAD_REQUEST, 100, "Invalid JSON"));
    };
    let to = json["to"]
        .as_str()
        .or(json["recipient"].as_str())
        .unwrap_or_default();
    let text = json["text"]["body"].as_str().unwrap_or_default();
    let callback = &json["biz_opaque_callback_data"];
    let valid = json["messaging_product"] == "whatsapp"
        && json["type"] == "text"
        && !to.is_empty()
        && (json["recipient"].is_string() || to.chars().all(|c| c.is_ascii_digit()))
        && !text.is_empty()
        && text.chars().count() <= 4096
        && (callback.is_null() || callback.as_str().is_some_and(|c| c.len() <= 512));
    if !valid {
        inner.rejected += 1;
        return Err((StatusCode::BAD_REQUEST, 100, "Invalid parameter"));
    }
    Ok(SentMessage {
        phone_number_id: phone_number_id.to_owned(),
        to: to.to_owned(),
        text: text.to_owned(),
        // Numbered when recorded.
        wamid: String::new(),
        callback: callback.as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{CloudApiClient, CloudApiConfig, Recipient};

    #[tokio::test]
    async fn the_client_and_the_fake_speak_the_same_format() {
        let fake = FakeCloudApi::start().await.unwrap();
        fake.register("106540352242922", "token-1");
        let client = CloudApiClient::new(CloudApiConfig {
            base_url: fake.base_url(),
            ..CloudApiConfig::default()
        });
        let to = Recipient::WaId("16505551234".into());
        let wamid = client
            .send_text("106540352242922", "token-1", &to, "Hello", None)
            .await
            .unwrap();
        assert!(wamid.starts_with("wamid."));
        assert_eq!(fake.sent()[0].text, "Hello");

        let wrong_token = client
            .send_text("106540352242922", "token-2", &to, "Hello", None)
            .await
            .unwrap_err();
        assert!(!wrong_token.retryable);
        assert_eq!(wrong_token.code, Some(190));

        fake.fail_next(&[503]);
        let unavailable = client
            .send_text("106540352242922", "token-1", &to, "Hello", None)
            .await
            .unwrap_err();
        assert!(unavailable.retryable);

        let too_long = client
            .send_text("106540352242922", "token-1", &to, &"x".repeat(4097), None)
            .await
            .unwrap_err();
        assert_eq!(too_long.status, Some(400));
        let bsuid = client
            .send_text(
                "106540352242922",
                "token-1",
                &Recipient::UserId("BR.1".into()),
                "Oi",
                Some("flowgate:7"),
            )
            .await;
        assert!(bsuid.is_ok());
        assert_eq!(fake.sent().len(), 2);
        assert_eq!(fake.sent()[1].callback.as_deref(), Some("flowgate:7"));
    }
}
