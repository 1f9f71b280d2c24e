//! A real service for the browser tests, until the test kit
//! (`flowgate-testkit`) lands: `flowgate::server::serve` on a loopback port
//! with a temporary data directory and the fake Cloud API.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::channel::whatsapp::signature;
use flowgate::clock::Clock;
use flowgate::config::ServiceConfig;
use flowgate::crypto::SecretKey;

pub const OPERATOR: &str = "test-operator-token-0123456789";

pub struct TestService {
    pub base: String,
    pub http: reqwest::Client,
    pub fake: FakeCloudApi,
    _data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct TestTenant {
    pub admin: String,
    pub webhook: String,
    pub app_secret: String,
}

fn component(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("FLOWGATE_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Run with `cargo xtask test`, or `cargo xtask build-guests` first",
            path.display()
        )
    })
}

impl TestService {
    pub async fn start() -> TestService {
        let data = tempfile::tempdir().unwrap();
        let fake = FakeCloudApi::start().await.unwrap();
        let mut config = ServiceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_owned(),
            operator_token: OPERATOR.into(),
            workers: 2,
            store_cache_mb: 64,
            max_instances: 32,
            ..ServiceConfig::default()
        };
        config.whatsapp.base_url = fake.base_url();
        config.validate().unwrap();
        let vault = flowgate::server::open_vault(&config, SecretKey::generate()).unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(flowgate::server::serve(
            config,
            vault,
            Clock::system(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        TestService {
            base,
            http: reqwest::Client::new(),
            fake,
            _data: data,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    pub async fn upload(&self, name: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/operator/plugins", self.base))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/wasm")
            .body(component(name))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "uploading {name}");
        response.json().await.unwrap()
    }

    pub async fn tenant(&self, name: &str, phone_number_id: &str) -> TestTenant {
        let created = self
            .ok(
                reqwest::Method::POST,
                "/v1/operator/tenants",
                OPERATOR,
                Some(json!({"name": name})),
            )
            .await;
        let id = created["tenant"]["id"].as_str().unwrap().to_owned();
        let admin = created["admin_api_key"].as_str().unwrap().to_owned();
        let app_secret = format!("app-secret-of-{name}");
        let access_token = format!("access-token-of-{name}");
        self.fake.register(phone_number_id, &access_token);
        let channel = self
            .ok(
                reqwest::Method::POST,
                &format!("/v1/operator/tenants/{id}/channels"),
                OPERATOR,
                Some(
                    json!({"phone_number_id": phone_number_id, "app_secret": app_secret,
                            "verify_token": "verify-token-123", "access_token": access_token}),
                ),
            )
            .await;
        TestTenant {
            admin,
            webhook: channel["webhook_path"].as_str().unwrap().to_owned(),
            app_secret,
        }
    }

    pub async fn deliver(&self, tenant: &TestTenant, body: &str) {
        let response = self
            .http
            .post(format!("{}{}", self.base, tenant.webhook))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature::sign(tenant.app_secret.as_bytes(), body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Meta's verification handshake, as Meta makes it.
    pub async fn verify_webhook(&self, tenant: &TestTenant) {
        let response = self
            .http
            .get(format!(
                "{}{}?hub.mode=subscribe&hub.verify_token=verify-token-123&hub.challenge=4242",
                self.base, tenant.webhook
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "4242");
    }

    /// The metrics (the operator's to read); `None` while rate limited.
    async fn metrics(&self) -> Option<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        match status.as_u16() {
            200 => Some(text),
            429 => None,
            _ => panic!("/metrics answered {status}: {text}"),
        }
    }

    /// Wait until every accepted item is processed.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(metrics) = self.metrics().await {
                let accepted = metric(
                    &metrics,
                    "flowgate_webhook_items_total",
                    "outcome=\"accepted\"",
                );
                let processed = metric(&metrics, "flowgate_events_total", "outcome=\"processed\"");
                if processed >= accepted {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "not settled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn metric(metrics: &str, name: &str, filter: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A webhook body with one text message.
pub fn text_message(
    phone_number_id: &str,
    wamid: &str,
    from: &str,
    name: &str,
    text: &str,
    at: u64,
) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": at.to_string(), "type": "text", "text": {"body": text}}]
        }}]}]
    })
    .to_string()
}

pub fn now() -> u64 {
    flowgate::data::unix_now()
}
