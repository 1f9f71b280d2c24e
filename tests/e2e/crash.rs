//! The real binary, killed with SIGKILL after acknowledging deliveries it
//! had not processed yet: after a restart every acknowledged delivery is
//! processed, and exactly once, and every reply is sent exactly once.

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

/// A data directory, the fake Cloud API, a free port and a config file
/// for a server on it over `data/data`; `extra` adds settings (whole TOML
/// lines, tables last, the first may extend `[whatsapp]`).
async fn prepare(extra: &str) -> (tempfile::TempDir, FakeCloudApi, u16, std::path::PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeCloudApi::start().await.unwrap();
    let port = free_port();
    let config = data.path().join("flowgate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nworkers = 2\nstore_cache_mb = 64\n\
             [whatsapp]\nbase_url = \"{}\"\n{extra}",
            data.path().join("data").display(),
            fake.base_url()
        ),
    )
    .unwrap();
    (data, fake, port, config)
}

/// A tenant set up over the operator and tenant APIs.
struct Shop {
    admin: String,
    webhook: String,
}

/// Create a tenant with a channel (`phone_number_id`, signed with
/// `secret`), upload `plugins` and install each with its request body.
async fn shop_over_http(
    http: &reqwest::Client,
    base: &str,
    fake: &FakeCloudApi,
    (phone_number_id, secret): (&str, &str),
    plugins: &[(&str, Value)],
) -> Shop {
    let created = call(
        http,
        base,
        Method::POST,
        "/v1/operator/tenants",
        OPERATOR,
        Some(json!({"name": "Shop"})),
    )
    .await;
    let admin = created["admin_api_key"].as_str().unwrap().to_owned();
    let tenant = created["tenant"]["id"].as_str().unwrap().to_owned();
    let token = format!("token-{phone_number_id}");
    fake.register(phone_number_id, &token);
    let channel = call(
        http,
        base,
        Method::POST,
        &format!("/v1/operator/tenants/{tenant}/channels"),
        OPERATOR,
        Some(
            json!({"phone_number_id": phone_number_id, "app_secret": secret,
                    "verify_token": "verify-123", "access_token": token}),
        ),
    )
    .await;
    for (plugin, installation) in plugins {
        let response = http
            .post(format!("{base}/v1/operator/plugins"))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/wasm")
            .body(crate::support::component(plugin))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let mut installation = installation.clone();
        installation["plugin"] = (*plugin).into();
        call(
            http,
            base,
            Method::POST,
            "/v1/installations",
            &admin,
            Some(installation),
        )
        .await;
    }
    Shop {
        admin,
        webhook: channel["webhook_path"].as_str().unwrap().to_owned(),
    }
}

/// POST a webhook body signed with `secret`; whether it was acknowledged.
async fn post_signed(http: &reqwest::Client, url: String, secret: &str, body: String) -> bool {
    http.post(url)
        .header(
            "x-hub-signature-256",
            signature::sign(secret.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// auto-reply answering "hours" questions, with no cooldown.
fn auto_reply() -> (&'static str, Value) {
    (
        "auto-reply",
        json!({"grants": ["user.content.private"],
               "config": {"faq": r#"[{"keywords": ["hours"], "reply": "9 to 5"}]"#, "cooldown-minutes": "0"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_survive_kill_9_and_are_processed_once() {
    // A slow plugin (an endless loop stopped by a 150 ms deadline) keeps
    // items waiting in the inbox long enough to kill the server over them.
    let (data, fake, port, config) =
        prepare("[limits]\nfuel = 100000000000\ndeadline_ms = 150\nbreaker_failures = 1000\n")
            .await;
    let mut server = start(&config, port).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let shop = shop_over_http(
        &http,
        &base,
        &fake,
        ("3001", "crash-test-secret"),
        &[
            ("fixture-hostile", json!({"config": {"attack": "loop"}})),
            auto_reply(),
        ],
    )
    .await;
    let admin = shop.admin.clone();

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
        let url = format!("{base}{}", shop.webhook);
        assert!(post_signed(&http, url, "crash-test-secret", body).await);
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

/// A tiny deterministic generator for kill times (the seed is printed, so a
/// failing run can be replayed with `FLOWGATE_CRASH_SEED`).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_under_load_processes_every_delivery_exactly_once() {
    // A reply in doubt waits 20 s for its status webhook: longer than a
    // restart takes even on a slow machine (the fake retries the status
    // every 100 ms while the server is down), short enough for the drain.
    // `_data` keeps the data directory alive to the end of the test.
    let (_data, fake, port, config) =
        prepare("confirm_timeout_secs = 20\n[http]\nwebhook_requests_per_second = 100000\n").await;
    let seed = std::env::var("FLOWGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() ^ 0x9E37_79B9_7F4A_7C15);
    eprintln!("crash loop seed: {seed} (FLOWGATE_CRASH_SEED={seed} replays it)");
    let mut random = seed | 1;

    let mut server = start(&config, port).await;
    let http = reqwest::Client::new();
    // The scaffolded plugin counts each contact's messages in its state (for
    // the essential service, so it runs without consent; lead-score, for
    // profiling, would not run for these contacts): an event processed twice
    // would count twice. auto-reply answers every message.
    let shop = shop_over_http(
        &http,
        &server.base,
        &fake,
        ("3002", "crash-loop-secret"),
        &[
            ("scaffolded", json!({"grants": ["user.content.private"]})),
            auto_reply(),
        ],
    )
    .await;
    let (admin, webhook) = (shop.admin.clone(), shop.webhook.clone());
    // Like WhatsApp, the fake posts each accepted reply's status webhook
    // back, retrying while the server is down: that is how a reply whose
    // send was cut off by a kill is known to have gone out.
    fake.post_statuses(
        "3002",
        &format!("{}{webhook}", server.base),
        "crash-loop-secret",
    );

    let contacts = 8;
    let body_of = move |n: usize| {
        text_message(
            "3002",
            &format!("wamid.R{n}"),
            &format!("4917100000{:02}", n % contacts),
            "R",
            "opening hours?",
            now(),
        )
    };
    let post = {
        let http = http.clone();
        let webhook = webhook.clone();
        move |base: String, body: String| {
            let http = http.clone();
            let url = format!("{base}{webhook}");
            async move { post_signed(&http, url, "crash-loop-secret", body).await }
        }
    };
    // Deliveries not acknowledged (the server died under them) are posted
    // again after the restart, as WhatsApp retries them.
    let mut unacknowledged: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let kills = 4;
    for round in 0..kills {
        for n in std::mem::take(&mut unacknowledged) {
            if !post(server.base.clone(), body_of(n)).await {
                unacknowledged.push(n);
            }
        }
        // Load from 4 concurrent senders; the kill lands at a random moment.
        let stop_at = Instant::now() + Duration::from_millis(200 + next_random(&mut random) % 1200);
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(next));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let counter = counter.clone();
            let base = server.base.clone();
            let post = post.clone();
            senders.spawn(async move {
                let mut failed = Vec::new();
                loop {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !post(base.clone(), body_of(n)).await {
                        failed.push(n);
                        return (n, failed);
                    }
                }
            });
        }
        tokio::time::sleep_until(stop_at.into()).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let mut highest = next;
        while let Some(result) = senders.join_next().await {
            let (last, failed) = result.unwrap();
            highest = highest.max(last + 1);
            unacknowledged.extend(failed);
        }
        next = highest;
        eprintln!(
            "round {round}: {next} deliveries posted, {} unacknowledged, {} replies so far",
            unacknowledged.len(),
            fake.sent().len()
        );
        server = start(&config, port).await;
    }
    for n in std::mem::take(&mut unacknowledged) {
        assert!(
            post(server.base.clone(), body_of(n)).await,
            "a retry after the last restart"
        );
    }
    // Let everything drain: one reply per delivery at least.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fake.sent().len() < next {
        assert!(
            Instant::now() < deadline,
            "only {} of {next} replies after the last restart",
            fake.sent().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every delivery processed exactly once: per contact, as many stored
    // messages and as many counted by the plugin as were delivered.
    let dsr_key = call(
        &http,
        &server.base,
        Method::POST,
        "/v1/api-keys",
        &admin,
        Some(json!({"name": "dsr", "scopes": ["dsr"]})),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut expected_total = 0;
    for c in 0..contacts {
        let delivered = (0..next).filter(|n| n % contacts == c).count();
        expected_total += delivered;
        let export = call(
            &http,
            &server.base,
            Method::POST,
            "/v1/dsr/access",
            &dsr_key,
            Some(json!({"wa_id": format!("4917100000{c:02}")})),
        )
        .await;
        let messages = export["export"]["messages"].as_array().unwrap();
        let inbound = messages
            .iter()
            .filter(|m| m["direction"] == "inbound")
            .count();
        assert_eq!(inbound, delivered, "contact {c}: stored inbound messages");
        let counted = export["export"]["plugin_state"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["plugin"] == "scaffolded")
            .and_then(|s| s["entries"]["messages"]["hex"].as_str())
            .map(|hex| u64::from_le_bytes(from_hex::<8>(hex).unwrap()))
            .unwrap();
        assert_eq!(
            counted as usize, delivered,
            "contact {c}: the plugin's count"
        );
        let outbound = messages
            .iter()
            .filter(|m| m["direction"] == "outbound")
            .count();
        assert_eq!(
            outbound, delivered,
            "contact {c}: one reply queued per delivery"
        );
    }
    assert_eq!(expected_total, next);
    // Replies: every one sent exactly once. A kill between the Cloud API
    // accepting a reply and the outbox recording it leaves the reply in
    // doubt; its status webhook settles it instead of a second send.
    let sent = fake.sent();
    let mut callbacks: Vec<&str> = sent.iter().filter_map(|m| m.callback.as_deref()).collect();
    callbacks.sort_unstable();
    callbacks.dedup();
    let mut confirmed = 0;
    let mut after = 0;
    loop {
        let page = call(
            &http,
            &server.base,
            Method::GET,
            &format!("/v1/audit?action=message.sent&limit=1000&after={after}"),
            &admin,
            None,
        )
        .await;
        let Some(last) = page.as_array().unwrap().last() else {
            break;
        };
        after = last["seq"].as_u64().unwrap();
        confirmed += page
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["details"]["confirmed_by"] == "status")
            .count();
    }
    eprintln!(
        "{next} deliveries, {} replies sent, {} distinct, {confirmed} settled by a status webhook across {kills} kills",
        sent.len(),
        callbacks.len()
    );
    assert_eq!(callbacks.len(), sent.len(), "a reply was sent twice");
    assert_eq!(sent.len(), next, "one reply per delivery");
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
}
