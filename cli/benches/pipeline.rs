//! Webhook to applied actions, over loopback, with the three first-party
//! plugins — once with the plugins as sandboxed components (the service as
//! deployed) and once with the same plugin code compiled natively into the
//! host (the baseline: the pipeline without the sandbox), in the same run.
//!
//! Each event is a signed webhook with one text message from one of
//! `--contacts` contacts, posted by `--concurrency` keep-alive clients; the
//! service answers after the delivery is durable, then runs labeller,
//! lead-score and auto-reply, commits, and sends the reply to a fake Cloud
//! API. Reported: events per second (first request to last event
//! committed), acknowledgement latency (client side, exact) and processing
//! latency (receipt to committed effects, from the service's histogram).
//!
//! `cargo xtask bench -- --bench pipeline [--events N] [--contacts M] [--concurrency C]`

mod common;
use common::arg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::clock::Clock;
use flowgate::crypto::SecretKey;
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{ContentHash, NativePlugin};
use flowgate::service::Service;
use flowgate_testkit::api::Api;
use flowgate_testkit::metrics::metric;
use flowgate_testkit::service::{OPERATOR, test_config};
use flowgate_testkit::setup::{Install, TenantSpec, set_up};
use flowgate_testkit::webhook;
use serde_json::json;

const PHONE: &str = "106540352242922";

/// An SDK plugin run natively behind the runtime's `NativePlugin` hook.
struct SdkNative<P>(std::marker::PhantomData<P>);

impl<P: flowgate_sdk::Plugin + Send + Sync> NativePlugin for SdkNative<P> {
    fn handle(
        &self,
        event: wit::Event,
        state: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<Vec<wit::Action>, wit::PluginError> {
        flowgate_sdk::harness::set_state(std::mem::take(state));
        let result = P::handle(to_sdk(event));
        state.extend(flowgate_sdk::harness::state());
        match result {
            Ok(actions) => Ok(actions.into_iter().map(from_sdk).collect()),
            Err(error) => Err(wit::PluginError::Failed(error.to_string())),
        }
    }
}

fn to_sdk(event: wit::Event) -> flowgate_sdk::Event {
    use flowgate_sdk::{Contact, Message, MessageKind, Trigger};
    flowgate_sdk::Event {
        trigger: match event.trigger {
            wit::Trigger::MessageReceived => Trigger::MessageReceived,
            wit::Trigger::StatusUpdate => Trigger::StatusUpdate,
        },
        contact: Contact {
            pseudonym: event.contact.pseudonym,
            name: event.contact.name,
            phone_number: event.contact.phone_number,
            user_id: event.contact.user_id,
            labels: event.contact.labels,
            lead_score: event.contact.lead_score,
        },
        message: event.message.map(|m| Message {
            kind: match m.kind {
                wit::MessageKind::Text => MessageKind::Text,
                _ => MessageKind::Unsupported,
            },
            text: m.text,
            received_at: m.received_at,
            service_window_open: m.service_window_open,
        }),
        status: None,
        config: event.config,
        now: event.now,
        timezone: event.timezone,
        utc_offset_minutes: event.utc_offset_minutes,
    }
}

fn from_sdk(action: flowgate_sdk::Action) -> wit::Action {
    use flowgate_sdk::Action;
    match action {
        Action::Reply(text) => wit::Action::Reply(text),
        Action::AddLabel(label) => wit::Action::AddLabel(label),
        Action::RemoveLabel(label) => wit::Action::RemoveLabel(label),
        Action::SetLeadScore { score, reason } => {
            wit::Action::SetLeadScore(wit::LeadScore { score, reason })
        }
        Action::HandOff(note) => wit::Action::HandOff(note),
    }
}

struct Run {
    events_per_second: f64,
    ack_p50: Duration,
    ack_p99: Duration,
    processing_p50: f64,
    processing_p99: f64,
    replies: usize,
}

fn message(wamid: &str, from: &str, text: &str, at: u64) -> String {
    webhook::text_message(PHONE, wamid, from, "Customer", text, at)
}

const TEXTS: [&str; 4] = [
    "Hi! How much is the blue one?",
    "Is it in stock? I want to buy two",
    "What are your opening hours today?",
    "My order arrived broken, I want a refund",
];

/// A percentile from a Prometheus histogram: the upper bound of the first
/// bucket holding the quantile (so at most 25% above the true value).
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> f64 {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, count)| *count >= q * total)
        .map_or(f64::NAN, |(bound, _)| *bound)
}

async fn run(native: bool, events: usize, contacts: usize, concurrency: usize) -> Run {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeCloudApi::start().await.unwrap();
    let mut config = test_config(data.path(), &fake);
    config.http.requests_per_second = 100_000;
    config.http.burst = 100_000;
    config.http.webhook_requests_per_second = 1_000_000;
    let vault = flowgate::server::open_vault(&config, SecretKey::generate()).unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // Started here rather than with `server::serve`: the native run swaps
    // plugins in the service's own runtime.
    let service = Service::start(config, vault, Clock::system()).unwrap();
    let runtime = service.inner.runtime.clone();
    let app = flowgate::server::app(service.inner.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let api = Api::with_client(base.clone(), http.clone());

    // Operator and tenant setup through the APIs.
    let spec = TenantSpec::new("Bench", PHONE)
        .install(Install::new("labeller").config(json!({"rules": r#"[{"label":"pricing","keywords":["price","how much"]},{"label":"stock","keywords":["in stock"]},{"label":"complaint","keywords":["refund","broken"]}]"#})))
        .install(Install::new("lead-score").config(json!({"label-weights": "pricing=5, complaint=-15", "hand-off-at": "off"})))
        .install(Install::new("auto-reply").config(json!({"faq": r#"[{"keywords":["opening hours"],"reply":"9-18, {name}"},{"keywords":["price","how much"],"reply":"See our prices, {name}"}]"#, "cooldown-minutes": "0"})));
    let tenant = set_up(&api, OPERATOR, &fake, &spec).await.unwrap();
    let webhook = format!("{base}{}", tenant.webhook);
    let hashes: BTreeMap<String, ContentHash> = tenant
        .plugins
        .iter()
        .map(|record| {
            let id = record["manifest"]["id"].as_str().unwrap().to_owned();
            (id, record["hash"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    if native {
        for (plugin, hash) in &hashes {
            let adapter: Arc<dyn NativePlugin> = match plugin.as_str() {
                "labeller" => Arc::new(SdkNative::<labeller::Labeller>(Default::default())),
                "lead-score" => Arc::new(SdkNative::<lead_score::LeadScore>(Default::default())),
                _ => Arc::new(SdkNative::<auto_reply::AutoReply>(Default::default())),
            };
            assert!(runtime.use_native(hash, adapter));
        }
        service
            .inner
            .contexts
            .invalidate(&tenant.id.parse().unwrap());
    }

    // Warm-up: every contact writes once and consents to lead scoring.
    let now = flowgate::data::unix_now();
    let post = {
        let http = http.clone();
        let webhook = webhook.clone();
        let secret = tenant.app_secret.clone();
        move |body: String| {
            let http = http.clone();
            let webhook = webhook.clone();
            let signature = webhook::signature(&secret, &body);
            async move {
                let started = Instant::now();
                let response = http
                    .post(webhook)
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                started.elapsed()
            }
        }
    };
    for i in 0..contacts {
        post(message(
            &format!("wamid.W{i}"),
            &format!("49150{i:07}"),
            "hello",
            now,
        ))
        .await;
    }
    let settle = |target: u64| {
        let api = api.clone();
        async move {
            loop {
                let metrics = api.operator(OPERATOR).metrics().await.unwrap();
                if metric(&metrics, "flowgate_events_total", "processed") >= target {
                    return metrics;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    settle(contacts as u64).await;
    for i in 0..contacts {
        tenant
            .api
            .consent_by_number(&format!("49150{i:07}"), "personalize.profiling")
            .await
            .unwrap();
    }
    let before = api.operator(OPERATOR).metrics().await.unwrap();
    let replies_before = fake.sent().len();

    // The measured traffic.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let post = post.clone();
        clients.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return latencies;
                }
                let body = message(
                    &format!("wamid.E{i}"),
                    &format!("49150{:07}", i % contacts),
                    TEXTS[i % TEXTS.len()],
                    now + 1,
                );
                latencies.push(post(body).await);
            }
        });
    }
    let mut acks = Vec::with_capacity(events);
    while let Some(latencies) = clients.join_next().await {
        acks.extend(latencies.unwrap());
    }
    let metrics = settle((contacts + events) as u64).await;
    let elapsed = started.elapsed();
    acks.sort();
    // Processing latency of the measured events only: subtract the warm-up
    // histogram from the final one.
    let processing = subtract_histogram(&metrics, &before, "flowgate_event_seconds");
    // Replies leave through the outbox after their event's commit is
    // durable, so the last few may still be on their way: wait for them
    // (the count is still checked exactly by the caller).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.sent().len() - replies_before < events / 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let replies = fake.sent().len() - replies_before;
    let stats = service.inner.committer.stats();
    eprintln!(
        "  committer: {} groups, {} requests, {} writes, apply {:.0} ms, {} flushes, flush {:.0} ms (whole run)",
        stats.groups.get(),
        stats.requests.get(),
        stats.writes.get(),
        stats.apply_seconds.get() * 1e3,
        stats.flushes.get(),
        stats.flush_seconds.get() * 1e3
    );
    service.shutdown().await;
    Run {
        events_per_second: events as f64 / elapsed.as_secs_f64(),
        ack_p50: acks[acks.len() / 2],
        ack_p99: acks[acks.len() * 99 / 100],
        processing_p50: histogram_quantile(&processing, "flowgate_event_seconds", 0.50),
        processing_p99: histogram_quantile(&processing, "flowgate_event_seconds", 0.99),
        replies,
    }
}

/// `after - before` for every bucket line of a histogram, as metrics text.
fn subtract_histogram(after: &str, before: &str, name: &str) -> String {
    let prefix = format!("{name}_bucket");
    let count = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    after
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|line| {
            let key = line.rsplit_once(' ').map_or(line, |(k, _)| k);
            format!("{key} {}", count(after, key) - count(before, key))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events: usize = arg("--events", if smoke { 200 } else { 20_000 });
    let contacts: usize = arg("--contacts", if smoke { 20 } else { 1_000 });
    let concurrency: usize = arg("--concurrency", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "webhook → applied actions, 3 plugins, {events} events from {contacts} contacts, {concurrency} clients"
    );
    let mut results = Vec::new();
    for (name, native) in [
        ("sandboxed components", false),
        ("native plugin code", true),
    ] {
        let run = runtime.block_on(run(native, events, contacts, concurrency));
        assert_eq!(run.replies, events / 2, "half the texts match an FAQ entry");
        println!(
            "{name:<21} {:>8.0} events/s  ack p50 {:>6.2} ms  p99 {:>6.2} ms  processing p50 ≤{:>6.2} ms  p99 ≤{:>7.2} ms",
            run.events_per_second,
            run.ack_p50.as_secs_f64() * 1e3,
            run.ack_p99.as_secs_f64() * 1e3,
            run.processing_p50 * 1e3,
            run.processing_p99 * 1e3,
        );
        results.push(run);
    }
    println!(
        "ratio sandboxed / native: throughput {:.2}x",
        results[0].events_per_second / results[1].events_per_second
    );
}
