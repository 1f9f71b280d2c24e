//! A real service for tests: `flowgate::server::serve` on a loopback port
//! with a temporary data directory and the fake Cloud API, driven over HTTP.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::channel::whatsapp::signature;
use flowgate::clock::Clock;
use flowgate::config::ServiceConfig;
use flowgate::crypto::SecretKey;
use flowgate::data::Vault;

pub const OPERATOR: &str = "test-operator-token-0123456789";

/// A running service.
pub struct TestService {
    pub base: String,
    pub http: reqwest::Client,
    pub fake: FakeCloudApi,
    pub vault: Vault,
    pub clock: Clock,
    /// Kept so the data directory lives as long as the service.
    _data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A tenant set up for tests.
pub struct TestTenant {
    pub id: String,
    pub admin: String,
    pub webhook: String,
    pub app_secret: String,
}

impl TestService {
    pub async fn start() -> TestService {
        TestService::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServiceConfig)) -> TestService {
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
        adjust(&mut config);
        config.validate().unwrap();
        let vault = flowgate::server::open_vault(&config, SecretKey::generate()).unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = Clock::system();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(flowgate::server::serve(
            config,
            vault.clone(),
            clock.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        TestService {
            base,
            http: reqwest::Client::new(),
            fake,
            vault,
            clock,
            _data: data,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stop gracefully and wait. Returns the data directory, which is
    /// deleted when the returned value is dropped.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        tempfile::TempDir::new()
            .map(|placeholder| std::mem::replace(&mut self._data, placeholder))
            .unwrap()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self.request(method.clone(), path, token, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        value
    }

    /// Admit a built component to the registry.
    pub async fn upload(&self, name: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/v1/operator/plugins", self.base))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/wasm")
            .body(super::component(name))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "uploading {name}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A tenant with a channel (the fake accepts its access token).
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
            id,
            admin,
            webhook: channel["webhook_path"].as_str().unwrap().to_owned(),
            app_secret,
        }
    }

    /// Enable a plugin for a tenant with every declared field granted.
    pub async fn enable(&self, tenant: &TestTenant, plugin: &str, config: Value) -> Value {
        let registry = self
            .ok(reqwest::Method::GET, "/v1/plugins", &tenant.admin, None)
            .await;
        let manifest = registry
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["manifest"]["id"] == plugin)
            .unwrap_or_else(|| panic!("{plugin} is not in the registry"))["manifest"]
            .clone();
        self.ok(
            reqwest::Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(json!({"plugin": plugin, "grants": manifest["fields"], "config": config})),
        )
        .await
    }

    /// POST a webhook body signed with `secret`.
    pub async fn post_webhook(&self, path: &str, body: &str, secret: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature::sign(secret.as_bytes(), body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn deliver(&self, tenant: &TestTenant, body: &str) -> Value {
        let (status, answer) = self
            .post_webhook(&tenant.webhook, body, &tenant.app_secret)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The tenant's audit entries with this action.
    pub async fn audit_of(&self, tenant: &TestTenant, action: &str) -> Vec<Value> {
        self.ok(
            reqwest::Method::GET,
            &format!("/v1/audit?action={action}"),
            &tenant.admin,
            None,
        )
        .await
        .as_array()
        .unwrap()
        .clone()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Wait until every accepted item is processed and every queued reply
    /// has been sent, failed or dropped.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = self.metrics().await;
            let accepted = metric(
                &metrics,
                "flowgate_webhook_items_total",
                "outcome=\"accepted\"",
            );
            let processed = metric(&metrics, "flowgate_events_total", "outcome=\"processed\"");
            let queued = metric(&metrics, "flowgate_replies_queued_total", "");
            let done: u64 = ["sent", "dropped", "failed"]
                .iter()
                .map(|o| {
                    metric(
                        &metrics,
                        "flowgate_messages_sent_total",
                        &format!("outcome=\"{o}\""),
                    )
                })
                .sum();
            if processed >= accepted && done >= queued {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not settled: {processed}/{accepted} processed, {done}/{queued} replies"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sum of a metric's samples whose labels contain `filter`.
pub fn metric(metrics: &str, name: &str, filter: &str) -> u64 {
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

/// A `delivered` status webhook body for a message sent to `recipient`
/// (a phone number, or a BSUID).
/// A `delivered` status of a message sent with `callback` as its
/// `biz_opaque_callback_data`, which WhatsApp echoes in its statuses.
pub fn delivered_status(
    phone_number_id: &str,
    wamid: &str,
    recipient: &str,
    callback: Option<&str>,
) -> String {
    let mut status = json!({"id": wamid, "status": "delivered", "timestamp": now().to_string()});
    if let Some(callback) = callback {
        status["biz_opaque_callback_data"] = callback.into();
    }
    let field = if recipient.bytes().all(|b| b.is_ascii_digit()) {
        "recipient_id"
    } else {
        "recipient_user_id"
    };
    status[field] = recipient.into();
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "statuses": [status]
        }}]}]
    })
    .to_string()
}

pub fn now() -> u64 {
    flowgate::data::unix_now()
}
