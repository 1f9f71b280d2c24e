//! The real binary, killed with SIGKILL after acknowledging deliveries it
//! had not processed yet: after a restart every acknowledged delivery is
//! processed, and exactly once, and every reply is sent exactly once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use flowgate::channel::whatsapp::fake::{FakeCloudApi, Stall};
use flowgate::crypto::{SecretKey, from_hex};
use flowgate::data::Vault;
use flowgate::store::Kind;
use flowgate_testkit::api::Api;
use flowgate_testkit::now;
use flowgate_testkit::process::{ServerProcess, free_port, serve_command, write_config};
use flowgate_testkit::service::OPERATOR;
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant, set_up};
use flowgate_testkit::status_gate::StatusGate;
use flowgate_testkit::webhook::text_message;

/// The binary under test, serving with `config` on `port`.
async fn start(config: &Path, port: u16) -> ServerProcess {
    let binary = Path::new(env!("CARGO_BIN_EXE_flowgate"));
    ServerProcess::start(serve_command(binary, config, OPERATOR), port)
        .await
        .expect("starting flowgate serve")
}

/// A data directory, the fake Cloud API, a free port and a config file
/// for a server on it over `data/data`; `extra` adds settings (whole TOML
/// lines, tables last, the first may extend `[whatsapp]`).
async fn prepare(extra: &str) -> (tempfile::TempDir, FakeCloudApi, u16, PathBuf) {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeCloudApi::start().await.unwrap();
    let port = free_port();
    let config = data.path().join("flowgate.toml");
    write_config(
        &config,
        port,
        &data.path().join("data"),
        &fake.base_url(),
        "workers = 2\nstore_cache_mb = 64\n",
        extra,
    )
    .unwrap();
    (data, fake, port, config)
}

/// A tenant whose channel is `phone_number_id`, running `flow`, set up over
/// the operator and tenant APIs of the server at `api`.
async fn shop(
    api: &Api,
    fake: &FakeCloudApi,
    phone_number_id: &str,
    flow: Vec<Install>,
) -> TestTenant {
    let spec = flow.into_iter().fold(
        TenantSpec::new("Shop", phone_number_id),
        TenantSpec::install,
    );
    set_up(api, OPERATOR, fake, &spec).await.unwrap()
}

/// POST a webhook body to the tenant's channel, signed; whether it was
/// acknowledged.
async fn post_signed(api: &Api, tenant: &TestTenant, body: String) -> bool {
    api.post_webhook(&tenant.webhook, &body, &tenant.app_secret)
        .await
        .is_ok_and(|(status, _)| status == 200)
}

/// The vault in a stopped server's data directory.
fn open_vault(data: &Path) -> Vault {
    let master = std::fs::read_to_string(data.join("master.key")).unwrap();
    Vault::open_dir(
        data,
        SecretKey::from_bytes(from_hex::<64>(&master).unwrap()),
    )
    .unwrap()
}

/// Stop the server with SIGTERM: it must exit cleanly, its inbox and outbox
/// empty.
fn stop_gracefully(mut server: ServerProcess, data: &Path) {
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let vault = open_vault(data);
    assert_eq!(vault.store.count(Kind::Inbox), 0, "events left unprocessed");
    assert_eq!(vault.store.count(Kind::Outbox), 0, "replies left unsettled");
}

/// auto-reply answering "hours" questions, with no cooldown.
fn auto_reply() -> Install {
    Install::new("auto-reply")
        .grants(&["user.content.private"])
        .config(json!({"faq": r#"[{"keywords": ["hours"], "reply": "9 to 5"}]"#, "cooldown-minutes": "0"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deliveries_survive_kill_9_and_are_processed_once() {
    // A slow plugin (an endless loop stopped by a 150 ms deadline) keeps
    // items waiting in the inbox long enough to kill the server over them.
    // A reply marked as being sent when the kill came is in doubt: with no
    // status webhook to settle it, it is sent again after the 20 s
    // confirmation window, within the wait below.
    let (data, fake, port, config) = prepare(
        "confirm_timeout_secs = 20\n[limits]\nfuel = 100000000000\ndeadline_ms = 150\nbreaker_failures = 1000\n",
    )
    .await;
    let mut server = start(&config, port).await;
    let api = server.api.clone();
    let shop = shop(
        &api,
        &fake,
        "3001",
        vec![
            Install::new("fixture-hostile").config(json!({"attack": "loop"})),
            auto_reply(),
        ],
    )
    .await;

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
        assert!(post_signed(&api, &shop, body).await);
    }
    server.kill();

    // Acknowledged but not yet processed when the process died.
    let pending = open_vault(&data.path().join("data"))
        .store
        .count(Kind::Inbox);
    assert!(
        pending > 0,
        "the kill came after every item was processed; the test proves nothing"
    );
    let sent_before = fake.sent().len();
    assert!(sent_before < deliveries);

    let server = start(&config, port).await;
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
    let received = shop.api.audit("message.received").await.unwrap();
    assert_eq!(received.len(), deliveries);
    let verify = shop.api.verify_audit().await.unwrap();
    assert_eq!(verify["intact"], true);

    // A graceful stop exits cleanly.
    stop_gracefully(server, &data.path().join("data"));
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
    // every 100 ms while the server is down), short enough to wait out
    // below.
    let confirm_window = Duration::from_secs(20);
    let (data, fake, port, config) = prepare(&format!(
        "confirm_timeout_secs = {}\n[http]\nwebhook_requests_per_second = 100000\n",
        confirm_window.as_secs()
    ))
    .await;
    let seed = std::env::var("FLOWGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() ^ 0x9E37_79B9_7F4A_7C15);
    eprintln!("crash loop seed: {seed} (FLOWGATE_CRASH_SEED={seed} replays it)");
    let mut random = seed | 1;

    let mut server = start(&config, port).await;
    // The port is the same after each restart, so is the address.
    let api = server.api.clone();
    // The scaffolded plugin counts each contact's messages in its state (for
    // the essential service, so it runs without consent; lead-score, for
    // profiling, would not run for these contacts): an event processed twice
    // would count twice. auto-reply answers every message.
    let shop = shop(
        &api,
        &fake,
        "3002",
        vec![
            Install::new("scaffolded").grants(&["user.content.private"]),
            auto_reply(),
        ],
    )
    .await;
    // Like WhatsApp, the fake posts each accepted reply's status webhook
    // back, retrying while the server is down: that is how a reply whose
    // send was cut off by a kill is known to have gone out.
    let statuses = StatusGate::start(&api.base).await;
    fake.post_statuses(
        "3002",
        &format!("{}{}", statuses.base, shop.webhook),
        &shop.app_secret,
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
    // Deliveries not acknowledged (the server died under them) are posted
    // again after the restart, as WhatsApp retries them.
    let mut unacknowledged: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let kills = 4;
    let mut restarted = Instant::now();
    for round in 0..kills {
        for n in std::mem::take(&mut unacknowledged) {
            if !post_signed(&api, &shop, body_of(n)).await {
                unacknowledged.push(n);
            }
        }
        // The next reply is accepted by the Cloud API but its answer never
        // comes back before the kill: that reply is in doubt across the
        // restart, for its status webhook, held back until then, to settle.
        statuses.shut();
        fake.stall_next(&[Stall::Accepted]);
        // Load from 4 concurrent senders; the kill lands at a random moment.
        let stop_at = Instant::now() + Duration::from_millis(200 + next_random(&mut random) % 1200);
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(next));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let counter = counter.clone();
            let (api, shop) = (api.clone(), shop.clone());
            senders.spawn(async move {
                let mut failed = Vec::new();
                loop {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !post_signed(&api, &shop, body_of(n)).await {
                        failed.push(n);
                        return (n, failed);
                    }
                }
            });
        }
        tokio::time::sleep_until(stop_at.into()).await;
        server.kill();
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
        restarted = Instant::now();
        statuses.open();
    }
    // As WhatsApp does, a retry that gets no answer (the restarted server
    // may be slow to answer on a loaded machine: it is replaying and
    // compiling) is tried again, a few times.
    for n in std::mem::take(&mut unacknowledged) {
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = api
                .post_webhook(&shop.webhook, &body_of(n), &shop.app_secret)
                .await;
            if answer.as_ref().is_ok_and(|(status, _)| *status == 200) {
                break;
            }
            assert!(tries < 5, "a retry after the last restart: {answer:?}");
        }
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
    // A reply whose doubt no status webhook settled is sent again once the
    // confirmation window has passed: wait it out, so such a second send
    // would be seen below.
    let window_passed = restarted + confirm_window + Duration::from_secs(3);
    tokio::time::sleep_until(window_passed.into()).await;

    // Every delivery processed exactly once: per contact, as many stored
    // messages and as many counted by the plugin as were delivered.
    let dsr_key = shop.api.create_key("dsr", &["dsr"]).await.unwrap();
    let dsr = api.with_token(dsr_key);
    let mut expected_total = 0;
    for c in 0..contacts {
        let delivered = (0..next).filter(|n| n % contacts == c).count();
        expected_total += delivered;
        let export = dsr
            .call(
                Method::POST,
                "/v1/dsr/access",
                Some(json!({"wa_id": format!("4917100000{c:02}")})),
            )
            .await
            .unwrap();
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
    let admin = api.with_token(&shop.admin);
    let mut confirmed = 0;
    let mut after = 0;
    loop {
        let page = admin
            .call(
                Method::GET,
                &format!("/v1/audit?action=message.sent&limit=1000&after={after}"),
                None,
            )
            .await
            .unwrap();
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
    assert!(
        confirmed >= 1,
        "no reply was settled by its status webhook: the stalled sends proved nothing"
    );
    let verify = shop.api.verify_audit().await.unwrap();
    assert_eq!(verify["intact"], true);
    // Nothing is left in doubt or queued: a graceful stop finds the outbox
    // and the inbox empty.
    stop_gracefully(server, &data.path().join("data"));
}
