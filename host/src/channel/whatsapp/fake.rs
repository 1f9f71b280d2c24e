//! A local fake of the Cloud API's send endpoint, for the demo and tests.
//!
//! It speaks the real request format and checks it strictly: the path
//! `/{version}/{phone-number-id}/messages`, a bearer token registered for
//! that phone number id, `messaging_product: "whatsapp"`, `type: "text"`,
//! a recipient (`to` or `recipient`) and a body of 1 to 4096 characters.
//! It answers like Graph (a `wamid.` id, or an `error` object), counts what
//! it accepted, and can be told to fail the next requests.

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
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, String>,
    sent: Vec<SentMessage>,
    rejected: usize,
    fail_next: Vec<u16>,
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
    let mut inner = inner.lock().expect("fake cloud api lock");
    if let Some(status) = (!inner.fail_next.is_empty()).then(|| inner.fail_next.remove(0)) {
        inner.rejected += 1;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return graph_error(status, 2, "Service temporarily unavailable (injected)");
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_none() || inner.tokens.get(&phone_number_id).map(String::as_str) != token {
        inner.rejected += 1;
        return graph_error(StatusCode::UNAUTHORIZED, 190, "Invalid OAuth access token");
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        inner.rejected += 1;
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid JSON");
    };
    let to = json["to"]
        .as_str()
        .or(json["recipient"].as_str())
        .unwrap_or_default();
    let text = json["text"]["body"].as_str().unwrap_or_default();
    let valid = json["messaging_product"] == "whatsapp"
        && json["type"] == "text"
        && !to.is_empty()
        && (json["recipient"].is_string() || to.chars().all(|c| c.is_ascii_digit()))
        && !text.is_empty()
        && text.chars().count() <= 4096;
    if !valid {
        inner.rejected += 1;
        return graph_error(StatusCode::BAD_REQUEST, 100, "Invalid parameter");
    }
    let wamid = format!("wamid.FAKE{:012}", inner.sent.len() + 1);
    let message = SentMessage {
        phone_number_id,
        to: to.to_owned(),
        text: text.to_owned(),
        wamid: wamid.clone(),
    };
    let arrived = std::time::Instant::now();
    inner
        .watchers
        .retain(|watcher| watcher.send((message.clone(), arrived)).is_ok());
    inner.sent.push(message);
    Json(serde_json::json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid}]
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::whatsapp::client::{CloudApiClient, CloudApiConfig, Recipient};

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
            .send_text("106540352242922", "token-1", &to, "Hello")
            .await
            .unwrap();
        assert!(wamid.starts_with("wamid."));
        assert_eq!(fake.sent()[0].text, "Hello");

        let wrong_token = client
            .send_text("106540352242922", "token-2", &to, "Hello")
            .await
            .unwrap_err();
        assert!(!wrong_token.retryable);
        assert_eq!(wrong_token.code, Some(190));

        fake.fail_next(&[503]);
        let unavailable = client
            .send_text("106540352242922", "token-1", &to, "Hello")
            .await
            .unwrap_err();
        assert!(unavailable.retryable);

        let too_long = client
            .send_text("106540352242922", "token-1", &to, &"x".repeat(4097))
            .await
            .unwrap_err();
        assert_eq!(too_long.status, Some(400));
        let bsuid = client
            .send_text(
                "106540352242922",
                "token-1",
                &Recipient::UserId("BR.1".into()),
                "Oi",
            )
            .await;
        assert!(bsuid.is_ok());
        assert_eq!(fake.sent().len(), 2);
    }
}
