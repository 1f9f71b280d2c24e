//! A gate between the fake Cloud API's status webhooks and a server.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};

/// Where the fake Cloud API posts status webhooks in the crash tests:
/// shut, it refuses them (503: the fake posts them again 100 ms later, as
/// WhatsApp retries); open, it passes them on to the server. Shut while a
/// server is killed, so that the statuses of replies sent before reach the
/// server only after the kill and restart, as they may from WhatsApp. (A
/// status that reaches a server which then dies before the send it
/// confirms ends is the one case the outbox does not cover: see
/// `service/outbox.rs`.)
pub struct StatusGate {
    open: Arc<AtomicBool>,
    /// The gate's address.
    pub base: String,
}

impl StatusGate {
    /// A gate passing statuses on to the server at `server`, open.
    pub async fn start(server: &str) -> StatusGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(true));
        let (gate, server, http) = (open.clone(), server.to_owned(), reqwest::Client::new());
        let relay = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (gate, server, http) = (gate.clone(), server.clone(), http.clone());
            async move {
                if !gate.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let mut request = http.post(format!("{server}{}", uri.path())).body(body);
                for name in ["content-type", "x-hub-signature-256"] {
                    if let Some(value) = headers.get(name) {
                        request = request.header(name, value);
                    }
                }
                match request.send().await {
                    Ok(answer) => StatusCode::from_u16(answer.status().as_u16())
                        .unwrap_or(StatusCode::BAD_GATEWAY),
                    Err(_) => StatusCode::BAD_GATEWAY,
                }
            }
        };
        tokio::spawn(axum::serve(listener, axum::Router::new().fallback(relay)).into_future());
        StatusGate { open, base }
    }

    /// Refuse statuses from now on.
    pub fn shut(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Pass statuses on from now on.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
