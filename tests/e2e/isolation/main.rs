//! One tenant's plugins cannot slow another tenant's events: a plugin that
//! sleeps does not hold the shared workers, and a tenant enabling many slow
//! plugins is held to its own share and its own budget per event.
//!
//! Latency is what a contact notices: from sending the webhook to the reply
//! reaching the (fake) Cloud API. The bounds leave room for a loaded 2-core
//! machine; what they rule out is waiting behind another tenant's plugins,
//! which costs whole seconds.
//!
//! A test target of its own, its tests one at a time: they load both cores
//! on purpose, and would starve the other layers' tests (uploads compiling
//! past their request timeout) and each other's latency measurements.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use flowgate::channel::whatsapp::fake::SentMessage;
use flowgate::runtime::{Call, Runtime, RuntimeConfig};
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{built, component, load};
use flowgate_testkit::metrics::metric;
use flowgate_testkit::now;
use flowgate_testkit::service::{OPERATOR, TestService};
use flowgate_testkit::setup::TestTenant;
use flowgate_testkit::webhook::text_message;

/// One test at a time (see the module's doc).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FAQ: &str = r#"[{"keywords": ["hours"], "reply": "We're open 9 to 6, {name}!"}]"#;

/// A tenant whose flow answers "hours" questions.
async fn shop(service: &TestService, phone: &str) -> TestTenant {
    let tenant = service.tenant("Shop", phone).await;
    service
        .enable(
            &tenant,
            "auto-reply",
            json!({"faq": FAQ, "cooldown-minutes": "0"}),
        )
        .await;
    tenant
}

/// Ask `count` questions, one after the other (each from its own contact),
/// and time each from the webhook to its reply.
async fn reply_latencies(
    service: &TestService,
    tenant: &TestTenant,
    phone: &str,
    count: usize,
    replies: &mut UnboundedReceiver<(SentMessage, Instant)>,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = text_message(
            phone,
            &format!("wamid.Q{n}"),
            &format!("4915{n:08}"),
            "Ana",
            "what are your hours?",
            now(),
        );
        let sent = Instant::now();
        service.deliver(tenant, &body).await;
        loop {
            let (message, arrived) = tokio::time::timeout(Duration::from_secs(60), replies.recv())
                .await
                .expect("a reply within a minute")
                .expect("the fake is running");
            if message.phone_number_id == phone {
                latencies.push(arrived - sent);
                break;
            }
        }
    }
    latencies
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The 99th percentile (of fewer than 100 samples: the slowest).
fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

/// Flood `tenant` with `count` messages, from as many contacts.
async fn flood(service: &TestService, tenant: &TestTenant, phone: &str, count: usize) {
    for i in 0..count {
        let body = text_message(
            phone,
            &format!("wamid.F{phone}-{i}"),
            &format!("4917{i:08}"),
            "Bo",
            "hello",
            now(),
        );
        service.deliver(tenant, &body).await;
    }
}

/// Issue 15, item 1, in the service: plugins that sleep (Python's
/// `time.sleep(5)`, a JavaScript timer, a Rust guest blocking on a WASI
/// pollable) used to hold a worker for five seconds per call, and every
/// other tenant's events queued behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_sleep_do_not_hold_the_workers_other_tenants_share() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let service = TestService::start_with(|c| {
        // Every sleeping call must really run: no breaker opening on them.
        c.limits.breaker_failures = 1_000;
        // The Python probe is an 18 MB component, compiled while its
        // upload waits: minutes on a loaded machine.
        c.http.plugin_upload_limit_bytes = 32 << 20;
        c.http.request_timeout_ms = 600_000;
    })
    .await;
    service.upload("auto-reply").await;
    // A guest xtask could not build fails the test, unless skipping is
    // allowed (flowgate_testkit::guests::built).
    let mut sleepers = Vec::new();
    for name in [
        "fixture-wasi-probe",
        "fixture-wasi-probe-py",
        "fixture-wasi-probe-js",
    ] {
        if let Some(bytes) = built(name) {
            service.operator().admit(bytes).await.unwrap();
            sleepers.push(name);
        }
    }
    let shop = shop(&service, "7001").await;
    let sleepy = service.tenant("Sleepy", "7002").await;
    for name in &sleepers {
        service
            .enable(&sleepy, name, json!({"wait": "sleep"}))
            .await;
    }
    let mut replies = service.fake.watch();
    let alone = reply_latencies(&service, &shop, "7001", 10, &mut replies).await;

    let started = Instant::now();
    flood(&service, &sleepy, "7002", 10).await;
    let beside = reply_latencies(&service, &shop, "7001", 10, &mut replies).await;
    service.settle().await;
    let sleepy_done = started.elapsed();

    eprintln!("shop alone: {alone:?}\nbeside the sleepers: {beside:?}");
    assert!(
        p99(&beside) < p99(&alone) + Duration::from_millis(500),
        "the shop's p99 went from {:?} alone to {:?} beside the sleepers",
        p99(&alone),
        p99(&beside)
    );
    // Each sleeping call ended at its deadline, reported as such.
    let failed = service.audit_of(&sleepy, "plugin.failed").await;
    assert_eq!(failed.len(), 10 * sleepers.len());
    assert!(
        failed.iter().all(|e| e["details"]["error"] == "deadline"),
        "{failed:?}"
    );
    // Thirty calls that each asked for five seconds took less than one.
    assert!(
        sleepy_done < Duration::from_secs(5),
        "the sleepers' events took {sleepy_done:?}"
    );
    service.stop().await;
}

/// Issue 15, item 1, at admission: a component whose `describe()` waits
/// ten seconds on a WASI pollable held the upload (and its blocking thread)
/// for ten seconds; now it is refused when its deadline passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_describe_waits_is_refused_at_admission_within_its_deadline() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let service = TestService::start().await;
    let started = Instant::now();
    let response = service
        .http
        .post(format!("{}/v1/operator/plugins", service.base))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/wasm")
        .body(component("fixture-wasi-stall"))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status().as_u16(), 422);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_plugin");
    assert_eq!(
        answer["error"]["message"],
        "describe() failed: exceeded its 500 ms deadline"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    service.stop().await;
}

/// Issue 15, item 12: the number of installations was unbounded, so a
/// tenant could enable N copies of a slow plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_enables_at_most_its_limit_of_installations() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let service = TestService::start_with(|c| c.tenant_limits.max_installations = 3).await;
    service.upload("fixture-hostile").await;
    let tenant = service.tenant("Greedy", "7101").await;
    let mut installed = Vec::new();
    for _ in 0..3 {
        installed.push(service.enable(&tenant, "fixture-hostile", json!({})).await);
    }
    let request = json!({"plugin": "fixture-hostile"});
    let (status, answer) = service
        .request(
            Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(request.clone()),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "quota_exceeded");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 installations"),
        "{answer}"
    );
    // Removing one makes room for another.
    let id = installed[0]["id"].as_str().unwrap();
    service
        .ok(
            Method::DELETE,
            &format!("/v1/installations/{id}"),
            &tenant.admin,
            None,
        )
        .await;
    service
        .ok(
            Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(request),
        )
        .await;
    service.stop().await;
}

/// Fuel one `burn` call of the hostile fixture uses with `rounds`.
fn burn_fuel(rounds: u64) -> u64 {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = load(&runtime, "fixture-hostile");
    let rounds = rounds.to_string();
    let event = message_event(Some("hello"), &[("attack", "burn"), ("rounds", &rounds)]);
    runtime.invoke(&plugin, Call::new(event)).unwrap().fuel
}

/// Issue 15, item 12: each installation had its own fuel and deadline, so
/// N copies of a plugin multiplied what one event could take. Now the
/// tenant's plugins share one budget per event: a call gets what is left,
/// and the plugins after it are skipped, all audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_plugins_share_the_tenants_budget_and_the_rest_are_skipped() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let per_call = burn_fuel(5_000_000);
    let service = TestService::start_with(|c| {
        // Two and a half calls' worth; time is not what runs out here.
        c.tenant_limits.event_fuel = per_call * 5 / 2;
        c.tenant_limits.event_time_ms = 60_000;
        c.limits.deadline_ms = 30_000;
        // A call stopped by the tenant's budget is not the plugin's fault:
        // it must not count towards its breaker.
        c.limits.breaker_failures = 1;
    })
    .await;
    service.upload("fixture-hostile").await;
    let tenant = service.tenant("Copies", "7201").await;
    for _ in 0..4 {
        service
            .enable(
                &tenant,
                "fixture-hostile",
                json!({"attack": "burn", "rounds": "5000000"}),
            )
            .await;
    }
    flood(&service, &tenant, "7201", 1).await;
    service.settle().await;

    let invoked = service.audit_of(&tenant, "plugin.invoked").await;
    let failed = service.audit_of(&tenant, "plugin.failed").await;
    let skipped = service.audit_of(&tenant, "plugin.skipped").await;
    assert_eq!(invoked.len(), 2, "two calls fit: {invoked:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["details"]["error"], "event-budget");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["details"]["reason"], "event-budget");
    let fuel: u64 = invoked
        .iter()
        .chain(&failed)
        .map(|e| e["details"]["fuel"].as_u64().unwrap())
        .sum();
    assert!(
        fuel <= per_call * 5 / 2,
        "{fuel} fuel used of a budget of {}",
        per_call * 5 / 2
    );
    assert!(
        service
            .audit_of(&tenant, "breaker.changed")
            .await
            .is_empty(),
        "no breaker opened"
    );
    service.stop().await;
}

/// Issue 15, item 12: a tenant with eight copies of a slow (honest) plugin
/// and a backlog of events used to hold both workers, and another tenant's
/// events queued behind its backlog. Now it runs within its budget per
/// event, on at most one of the two workers, and tenants take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_saturating_its_budget_does_not_raise_another_tenants_p99() {
    // Each copy burns about 150 M fuel (of the 200 M per call): eight of
    // them want more than the default budget of 1,000 M per event.
    let rounds = 150_000_000 * 1_000_000 / burn_fuel(1_000_000);
    let service = TestService::start().await;
    service.upload("auto-reply").await;
    service.upload("fixture-hostile").await;
    let shop = shop(&service, "7301").await;
    let noisy = service.tenant("Noisy", "7302").await;
    for _ in 0..8 {
        service
            .enable(
                &noisy,
                "fixture-hostile",
                json!({"attack": "burn", "rounds": rounds.to_string()}),
            )
            .await;
    }
    let mut replies = service.fake.watch();
    let alone = reply_latencies(&service, &shop, "7301", 20, &mut replies).await;

    flood(&service, &noisy, "7302", 12).await;
    let beside = reply_latencies(&service, &shop, "7301", 20, &mut replies).await;
    // The shop was measured while the noisy backlog was being processed.
    let metrics = service.metrics().await;
    let accepted = metric(&metrics, "flowgate_webhook_items_total", "accepted");
    let processed = metric(&metrics, "flowgate_events_total", "outcome=\"processed\"");
    service.settle().await;

    eprintln!("shop alone: {alone:?}\nbeside the noisy tenant: {beside:?}");
    assert!(
        p99(&beside) < p99(&alone) + Duration::from_millis(500),
        "the shop's p99 went from {:?} alone to {:?} beside the noisy tenant",
        p99(&alone),
        p99(&beside)
    );
    assert!(
        processed < accepted,
        "the noisy backlog was done before the shop's questions ({processed} of {accepted})"
    );
    // The noisy tenant's events ran within its budget: some of its copies
    // were skipped on every event.
    let skipped = service.audit_of(&noisy, "plugin.skipped").await;
    assert!(!skipped.is_empty());
    assert!(
        skipped
            .iter()
            .all(|e| e["details"]["reason"] == "event-budget")
    );
    service.stop().await;
}
