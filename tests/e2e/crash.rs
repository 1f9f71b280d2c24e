//! The real binary, killed with SIGKILL after acknowledging deliveries it
//! had not processed yet: after a restart every acknowledged delivery is
//! processed, and exactly once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::channel::whatsapp::signature;
use flowgate::crypto::{SecretKey, from_hex};
use flowgate::data::Vault;
use flowgate::store::Kind;

use crate::support::service::{OPERATOR, now, text_message};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    /// A failing test must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(config: &Path, port: u16) -> Server {
    let server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_flowgate"))
            .args(["serve", "--dev", "--log-format", "text", "--config"])
            .arg(config)
            .env("FLOWGATE_OPERATOR_TOKEN", OPERATOR)
            .env("FLOWGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting flowgate serve"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let base = server.base.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await
            && response.status() == 200
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_survive_kill_9_and_are_processed_once() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeCloudApi::start().await.unwrap();
    let port = free_port();
    let config = data.path().join("flowgate.toml");
    // A slow plugin (an endless loop stopped by a 150 ms deadline) keeps
    // items waiting in the inbox long enough to kill the server over them.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nworkers = 2\nstore_cache_mb = 64\n\
             [whatsapp]\nbase_url = \"{}\"\n[limits]\nfuel = 100000000000\ndeadline_ms = 150\nbreaker_failures = 1000\n",
            data.path().join("data").display(),
            fake.base_url()
        ),
    )
    .unwrap();
    let mut server = start(&config, port).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();

    let created = call(
        &http,
        &base,
        Method::POST,
        "/v1/operator/tenants",
        OPERATOR,
        Some(json!({"name": "Shop"})),
    )
    .await;
    let admin = created["admin_api_key"].as_str().unwrap().to_owned();
    let tenant = created["tenant"]["id"].as_str().unwrap().to_owned();
    fake.register("3001", "token-3001");
    let channel = call(&http, &base, Method::POST, &format!("/v1/operator/tenants/{tenant}/channels"), OPERATOR,
        Some(json!({"phone_number_id": "3001", "app_secret": "crash-test-secret", "verify_token": "verify-123", "access_token": "token-3001"}))).await;
    let webhook = channel["webhook_path"].as_str().unwrap().to_owned();
    for plugin in ["fixture-hostile", "auto-reply"] {
        let response = http
            .post(format!("{base}/v1/operator/plugins"))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/wasm")
            .body(crate::support::component(plugin))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    call(
        &http,
        &base,
        Method::POST,
        "/v1/installations",
        &admin,
        Some(json!({"plugin": "fixture-hostile", "config": {"attack": "loop"}})),
    )
    .await;
    call(&http, &base, Method::POST, "/v1/installations", &admin,
        Some(json!({"plugin": "auto-reply", "grants": ["user.content.private"],
                    "config": {"faq": r#"[{"keywords": ["hours"], "reply": "9 to 5"}]"#, "cooldown-minutes": "0"}}))).await;

    let deliveries = 12;
    for i in 0..deliveries {
        let body = text_message(
            "3001",
            &format!("wamid.K{i}"),
            &format!("4917000000{i:02}"),
            "K",
            "opening hours?",
            now(),
        );
        let response = http
            .post(format!("{base}{webhook}"))
            .header(
                "x-hub-signature-256",
                signature::sign(b"crash-test-secret", body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Acknowledged but not yet processed when the process died.
    let master = std::fs::read_to_string(data.path().join("data/master.key")).unwrap();
    let pending = {
        let vault = Vault::open_dir(
            &data.path().join("data"),
            SecretKey::from_bytes(from_hex::<64>(&master).unwrap()),
        )
        .unwrap();
        vault.store.count(Kind::Inbox)
    };
    assert!(
        pending > 0,
        "the kill came after every item was processed; the test proves nothing"
    );
    let sent_before = fake.sent().len();
    assert!(sent_before < deliveries);

    let mut server = start(&config, port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.sent().len() < deliveries {
        assert!(
            Instant::now() < deadline,
            "only {} of {deliveries} replies after the restart",
            fake.sent().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives: each delivery was processed once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.sent().len(), deliveries);
    let received = call(
        &http,
        &server.base,
        Method::GET,
        "/v1/audit?action=message.received&limit=1000",
        &admin,
        None,
    )
    .await;
    assert_eq!(received.as_array().unwrap().len(), deliveries);
    let verify = call(
        &http,
        &server.base,
        Method::GET,
        "/v1/audit/verify",
        &admin,
        None,
    )
    .await;
    assert_eq!(verify["intact"], true);

    // A graceful stop exits cleanly.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let vault = Vault::open_dir(
        &data.path().join("data"),
        SecretKey::from_bytes(from_hex::<64>(&master).unwrap()),
    )
    .unwrap();
    assert_eq!(vault.store.count(Kind::Inbox), 0);
    assert_eq!(vault.store.count(Kind::Outbox), 0);
}
