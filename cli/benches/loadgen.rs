//! The load generator: `flowgate serve` as a separate process, driven over
//! loopback with signed WhatsApp webhooks at rising rates, for `--tenants`
//! tenants of `--contacts` contacts each, every tenant running the three
//! first-party plugins (labeller, lead-score, auto-reply) as components.
//!
//! The load is open-loop: event k of a step is due at `k / rate` seconds and
//! its latencies are measured from that due time, so a server that falls
//! behind shows it in the percentiles instead of slowing the generator down
//! (no coordinated omission). At most `--in-flight` requests are
//! outstanding; past that, waiting counts as latency too.
//!
//! Per step: offered and achieved rate, acknowledgement latency (due time to
//! the 200), end-to-end latency (due time to the reply arriving at the fake
//! Cloud API; half the texts ask something the FAQ answers), how long the
//! server took to drain what it acknowledged, and its resident memory.
//!
//! `--soak SECS` instead runs one rate (`--rate`, default 500/s) for SECS
//! seconds with `--hostile H` extra tenants whose flows also hold hostile
//! plugins (an endless loop, an allocation bomb, a trap) beside the honest
//! ones; it reports honest tenants' latency and the server's memory per
//! window, and which installations' circuit breakers opened.
//!
//! `cargo xtask bench -- --bench loadgen [--rates 1000,2000,4000] [--step-secs 5]
//!  [--tenants 4] [--contacts 1000] [--in-flight 256] [--workers N]
//!  [--store-cache-mb 1024]`
//! `cargo xtask bench -- --bench loadgen --soak 120 --hostile 2 --rate 500`
//! (`--server-bin PATH` measures another build of `flowgate`.)
//!
//! `--cluster N` runs N cluster nodes over a 3-server NATS cluster on the
//! same machine instead of one embedded server, and spreads the webhooks
//! over the nodes; the CPU columns then add up every node, and a third
//! gives the NATS servers' (`cargo xtask bench` installs nats-server).

mod common;
use common::arg;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate_testkit::api::Api;
use flowgate_testkit::metrics::metric;
use flowgate_testkit::process::{ServerProcess, free_port, serve_command, write_config};
use flowgate_testkit::service::OPERATOR;
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant, set_up};
use flowgate_testkit::webhook;
use serde_json::json;
use tokio::sync::Semaphore;

/// Texts sent in turn; the first and third get an FAQ reply.
const TEXTS: [(&str, bool); 4] = [
    ("Hi! How much is the blue one?", true),
    ("Is it in stock? I want to buy two", false),
    ("What are your opening hours today?", true),
    ("My order arrived broken, I want a refund", false),
];

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with `)`;
    // utime and stime are the 12th and 13th of them, in clock ticks.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ, the unit of /proc times: 100 on every Linux ABI.
    Duration::from_micros(ticks * 10_000)
}

/// The servers under test (one embedded server, or cluster nodes and their
/// NATS servers), killed when dropped.
struct Server {
    /// The first is the one the generator asks for metrics: the embedded
    /// server, or the node started first, which takes the lease.
    nodes: Vec<ServerProcess>,
    nats: Option<flowgate_testkit::nats::NatsCluster>,
}

impl Server {
    fn api(&self) -> &Api {
        &self.nodes[0].api
    }

    /// Where to post webhooks: every node.
    fn bases(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.api.base.clone())
            .collect()
    }

    /// CPU time the flowgate processes have used.
    fn cpu(&self) -> Duration {
        self.nodes
            .iter()
            .map(|node| cpu_time(&node.child.id().to_string()))
            .sum()
    }

    /// CPU time the NATS servers have used (zero without a cluster).
    fn nats_cpu(&self) -> Duration {
        self.nats
            .iter()
            .flat_map(|nats| nats.servers())
            .filter_map(|server| server.pid())
            .map(|pid| cpu_time(&pid.to_string()))
            .sum()
    }

    /// Resident and peak resident memory of the flowgate processes, in MiB.
    fn memory_mib(&self) -> (f64, f64) {
        self.nodes.iter().fold((0.0, 0.0), |(rss, peak), node| {
            let (r, p) = memory_of(node.child.id());
            (rss + r, peak + p)
        })
    }
}

/// Resident and peak resident memory of process `pid`, in MiB.
fn memory_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The `flowgate` binary to measure: this build's, or `--server-bin PATH`
/// (to compare two builds under the same generator).
fn server_binary() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--server-bin")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flowgate")))
}

/// The master key cluster nodes share (a benchmark's, never a real one).
const CLUSTER_MASTER: &str = "be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c\
                              4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0c4be0";

/// One embedded server (`cluster` 0), or `cluster` nodes over a 3-server
/// NATS cluster.
async fn start_server(
    data: &Path,
    cloud_api: &str,
    workers: usize,
    cache_mb: u64,
    cluster: usize,
) -> Server {
    let nats = (cluster > 0).then(|| {
        flowgate_testkit::nats::NatsCluster::start(3).expect("starting a 3-server NATS cluster")
    });
    let mut nodes = Vec::new();
    for index in 0..cluster.max(1) {
        let port = free_port();
        let config = data.join(format!("flowgate-{index}.toml"));
        let mut extra = "[http]\nrequests_per_second = 1000000\nburst = 1000000\nwebhook_requests_per_second = 1000000\n".to_owned();
        if let Some(nats) = &nats {
            let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
            extra.push_str(&format!(
                "[cluster]\nurls = [{}]\nnode_name = \"node-{index}\"\n",
                urls.join(", ")
            ));
        }
        write_config(
            &config,
            port,
            &data.join(format!("data-{index}")),
            cloud_api,
            &format!("workers = {workers}\nstore_cache_mb = {cache_mb}\n"),
            &extra,
        )
        .unwrap();
        let mut command = serve_command(&server_binary(), &config, OPERATOR);
        command
            .env("FLOWGATE_LOG", "error")
            .env("FLOWGATE_MASTER_KEY", CLUSTER_MASTER)
            .stderr(Stdio::inherit());
        // One after the other: the first takes the lease.
        nodes.push(
            ServerProcess::start(command, port)
                .await
                .expect("starting flowgate serve"),
        );
    }
    Server { nodes, nats }
}

/// One tenant, as the generator drives it.
struct Tenant {
    tenant: TestTenant,
    /// Its webhook's URL on each node.
    webhooks: Vec<String>,
    hostile: bool,
}

async fn setup(
    api: &Api,
    bases: &[String],
    fake: &FakeCloudApi,
    honest: usize,
    hostile: usize,
) -> Vec<Tenant> {
    let mut tenants = Vec::new();
    for t in 0..honest + hostile {
        let is_hostile = t >= honest;
        let mut spec = TenantSpec::new(&format!("Tenant {t}"), &format!("10654035224{t:04}"));
        if is_hostile {
            // Hostile plugins first: an honest plugin after them must still
            // run on time.
            for attack in ["panic", "alloc", "loop"] {
                spec =
                    spec.install(Install::new("fixture-hostile").config(json!({"attack": attack})));
            }
        }
        let spec = spec
            .install(Install::new("labeller").config(json!({"rules": r#"[{"label":"pricing","keywords":["price","how much"]},{"label":"stock","keywords":["in stock"]},{"label":"complaint","keywords":["refund","broken"]}]"#})))
            .install(Install::new("lead-score").config(json!({"label-weights": "pricing=5, complaint=-15", "hand-off-at": "off"})))
            .install(Install::new("auto-reply").config(json!({"faq": r#"[{"keywords":["opening hours"],"reply":"9-18, {name}"},{"keywords":["price","how much"],"reply":"See our prices, {name}"}]"#, "cooldown-minutes": "0"})));
        let tenant = set_up(api, OPERATOR, fake, &spec).await.unwrap();
        tenants.push(Tenant {
            webhooks: bases
                .iter()
                .map(|base| format!("{base}{}", tenant.webhook))
                .collect(),
            tenant,
            hostile: is_hostile,
        });
    }
    tenants
}

fn wa_id(tenant: usize, contact: usize) -> String {
    format!("49{tenant:03}{contact:08}")
}

/// Replies still expected, per (phone number id, recipient): the due times
/// of the events that asked for them, oldest first.
type Expected = Arc<Mutex<HashMap<(String, String), VecDeque<Instant>>>>;

/// End-to-end samples: (phone number id, due time to arrival), matched per
/// recipient.
type Replies = Arc<Mutex<Vec<(String, Duration)>>>;

fn collect_replies(fake: &FakeCloudApi, expected: Expected) -> Replies {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut watch = fake.watch();
    let sink = samples.clone();
    tokio::spawn(async move {
        while let Some((message, arrived)) = watch.recv().await {
            let key = (message.phone_number_id, message.to);
            let due = expected
                .lock()
                .unwrap()
                .get_mut(&key)
                .and_then(VecDeque::pop_front);
            if let Some(due) = due {
                sink.lock()
                    .unwrap()
                    .push((key.0, arrived.saturating_duration_since(due)));
            }
        }
    });
    samples
}

/// A sum from the server's metrics (see `flowgate_testkit::metrics::metric`).
async fn metric_now(api: &Api, name: &str, filter: &str) -> u64 {
    let metrics = api.operator(OPERATOR).metrics().await.unwrap();
    metric(&metrics, name, filter)
}

/// Events processed so far, whatever their outcome, duplicates aside.
async fn processed(api: &Api) -> u64 {
    metric_now(api, "flowgate_events_total{", "").await
        - metric_now(api, "flowgate_events_total{", "outcome=\"deduplicated\"").await
}

/// Records the committer wrote or deleted so far.
async fn store_writes(api: &Api) -> u64 {
    metric_now(api, "flowgate_commit_writes_total ", "").await
}

/// Records (commit groups) appended to the durable log so far: what a
/// cluster's log stream gets one message for each.
async fn log_appends(api: &Api) -> u64 {
    metric_now(api, "flowgate_log_appends_total ", "").await
}

/// Bytes appended to the durable log so far (sealed commit groups: what a
/// cluster's log stream stores, once per replica).
async fn log_bytes(api: &Api) -> u64 {
    metric_now(api, "flowgate_log_bytes_total ", "").await
}

/// Wait until the server processed `target` events; the time it took.
async fn drain(api: &Api, target: u64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if processed(api).await >= target {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
}

fn percentiles(samples: &mut [Duration]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles {
            p50: f64::NAN,
            p95: f64::NAN,
            p99: f64::NAN,
        };
    }
    samples.sort();
    let at = |q: f64| common::quantile(samples, q).as_secs_f64() * 1e3;
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

/// The generator's shared state.
struct Load {
    http: reqwest::Client,
    tenants: Arc<Vec<Tenant>>,
    contacts: usize,
    expected: Expected,
    sequence: AtomicU64,
    slots: Arc<Semaphore>,
}

/// One acknowledged event: (tenant index, due time, ack latency).
type Ack = (usize, Instant, Duration);

impl Load {
    /// Send `rate` events per second for `duration` over `tenants` (indexes);
    /// returns the acknowledgements and how many were refused.
    async fn run(
        self: &Arc<Self>,
        rate: f64,
        duration: Duration,
        tenants: &[usize],
    ) -> (Vec<Ack>, u64) {
        let total = (rate * duration.as_secs_f64()) as u64;
        let start = tokio::time::Instant::now() + Duration::from_millis(10);
        let acks = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let now = flowgate_testkit::now();
        for k in 0..total {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            tokio::time::sleep_until(due).await;
            let due = due.into_std();
            let permit = self.slots.clone().acquire_owned().await.unwrap();
            let n = self.sequence.fetch_add(1, Ordering::Relaxed) as usize;
            let t = tenants[n % tenants.len()];
            let contact = (n / tenants.len()) % self.contacts;
            let (text, answered) = TEXTS[(n / (tenants.len() * self.contacts)) % TEXTS.len()];
            let tenant = &self.tenants[t];
            let from = wa_id(t, contact);
            let body = webhook::text_message(
                &tenant.tenant.phone_number_id,
                &format!("wamid.L{n}"),
                &from,
                "Customer",
                text,
                now,
            );
            if answered {
                self.expected
                    .lock()
                    .unwrap()
                    .entry((tenant.tenant.phone_number_id.clone(), from))
                    .or_default()
                    .push_back(due);
            }
            let load = self.clone();
            let acks = acks.clone();
            let refused = refused.clone();
            tasks.spawn(async move {
                let tenant = &load.tenants[t];
                let response = load
                    .http
                    .post(&tenant.webhooks[n % tenant.webhooks.len()])
                    .header("content-type", "application/json")
                    .header(
                        "x-hub-signature-256",
                        webhook::signature(&tenant.tenant.app_secret, &body),
                    )
                    .body(body)
                    .send()
                    .await;
                drop(permit);
                match response {
                    Ok(r) if r.status() == 200 => {
                        acks.lock().unwrap().push((t, due, due.elapsed()))
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        (acks, refused.load(Ordering::Relaxed))
    }
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let tenants_n: usize = arg("--tenants", if smoke { 2 } else { 4 });
    let contacts: usize = arg("--contacts", if smoke { 20 } else { 1_000 });
    let rates: Vec<f64> = arg(
        "--rates",
        if smoke {
            "200".to_owned()
        } else {
            "500,1000,2000,3000,4000,6000".to_owned()
        },
    )
    .split(',')
    .filter_map(|r| r.trim().parse().ok())
    .collect();
    let step = Duration::from_secs_f64(arg("--step-secs", if smoke { 1.0 } else { 5.0 }));
    let in_flight: usize = arg("--in-flight", 256);
    let workers: usize = arg("--workers", 2);
    // sled's page cache: a soak with a small one tells cache growth from a
    // leak.
    let cache_mb: u64 = arg("--store-cache-mb", 1024);
    let soak: u64 = arg("--soak", 0);
    let hostile: usize = arg("--hostile", if soak > 0 { 2 } else { 0 });
    let soak_rate: f64 = arg("--rate", 500.0);
    let cluster: usize = arg("--cluster", 0);

    // One client thread, so the generator takes at most one of the two
    // cores from the server it measures.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let data = tempfile::tempdir().unwrap();
        let fake = FakeCloudApi::start().await.unwrap();
        let server = start_server(data.path(), &fake.base_url(), workers, cache_mb, cluster).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(in_flight)
            .build()
            .unwrap();
        let api = server.api().clone();
        let tenants = Arc::new(setup(&api, &server.bases(), &fake, tenants_n, hostile).await);
        let expected: Expected = Arc::default();
        let replies = collect_replies(&fake, expected.clone());
        let load = Arc::new(Load {
            http: http.clone(),
            tenants: tenants.clone(),
            contacts,
            expected: expected.clone(),
            sequence: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(in_flight)),
        });
        let honest: Vec<usize> = (0..tenants.len()).filter(|&t| !tenants[t].hostile).collect();
        let all: Vec<usize> = (0..tenants.len()).collect();

        // Warm-up: every contact of every tenant writes once, so the steps
        // measure known contacts; each consents to lead scoring.
        eprintln!("warm-up: {} contacts", tenants.len() * contacts);
        let warm = (tenants.len() * contacts) as f64;
        let (acks, _) = load.run(1_000.0, Duration::from_secs_f64(warm / 1_000.0), &all).await;
        let mut sent = acks.len() as u64;
        drain(&api, sent, Duration::from_secs(120)).await.expect("warm-up drained");
        for (t, tenant) in tenants.iter().enumerate() {
            for c in 0..contacts {
                tenant.tenant.api.consent_by_number(&wa_id(t, c), "personalize.profiling").await.unwrap();
            }
        }
        expected.lock().unwrap().clear();
        replies.lock().unwrap().clear();

        println!(
            "flowgate load generator: {} tenants x {contacts} contacts, 3-plugin flows, server workers {workers}, \
             at most {in_flight} requests in flight",
            tenants_n
        );
        if soak > 0 {
            run_soak(&load, &server, &replies, soak, soak_rate, &honest, &all).await;
            return;
        }
        // CPU per event: what each event costs the server (and the
        // generator with the fake Cloud API) bounds the rate two cores can
        // reach, whatever the latencies.
        if cluster > 0 {
            println!("cluster: {cluster} node(s) over 3 NATS servers, webhooks spread over the nodes");
        }
        println!(
            "{:>8} {:>9} {:>9} | {:>27} | {:>27} | {:>8} {:>7} | {:>26} | {:>8} {:>9} {:>8}",
            "offered", "acked/s", "refused", "ack p50 / p95 / p99 ms", "end-to-end p50 / p95 / p99", "drain s", "RSS MiB",
            "CPU µs/event s / g / nats", "writes/ev", "appends/ev", "log B/ev"
        );
        for &rate in &rates {
            replies.lock().unwrap().clear();
            let (server_cpu, own_cpu, nats_cpu) = (server.cpu(), cpu_time("self"), server.nats_cpu());
            let writes_before = store_writes(&api).await;
            let appends_before = log_appends(&api).await;
            let log_bytes_before = log_bytes(&api).await;
            let started = Instant::now();
            let (mut acks, refused) = load.run(rate, step, &all).await;
            let sending = started.elapsed();
            sent += acks.len() as u64;
            let drained = drain(&api, sent, Duration::from_secs(60)).await;
            // Replies still in the outbox when the drain ends are counted up
            // to two seconds later.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let acked_rate = acks.len() as f64 / sending.as_secs_f64();
            let mut ack_latencies: Vec<Duration> = acks.drain(..).map(|(_, _, d)| d).collect();
            let ack = percentiles(&mut ack_latencies);
            let mut e2e: Vec<Duration> = replies.lock().unwrap().iter().map(|(_, d)| *d).collect();
            let end = percentiles(&mut e2e);
            let (rss, _) = server.memory_mib();
            let events = ack_latencies.len().max(1) as f64;
            let per_event = |cpu: Duration| cpu.as_secs_f64() * 1e6 / events;
            let writes = (store_writes(&api).await - writes_before) as f64 / events;
            let appends = (log_appends(&api).await - appends_before) as f64 / events;
            let bytes = (log_bytes(&api).await - log_bytes_before) as f64 / events;
            println!(
                "{rate:>8.0} {acked_rate:>9.0} {refused:>9} | {:>7.2} / {:>7.2} / {:>7.2} | {:>7.1} / {:>7.1} / {:>7.1} | {:>8} {rss:>7.0} | {:>8.0} {:>8.0} {:>8.0} | {writes:>8.1} {appends:>9.2} {bytes:>8.0}",
                ack.p50, ack.p95, ack.p99, end.p50, end.p95, end.p99,
                drained.map_or("> 60".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
                per_event(server.cpu() - server_cpu),
                per_event(cpu_time("self") - own_cpu),
                per_event(server.nats_cpu() - nats_cpu),
            );
            // Under `cargo test` the rate is one two cores keep up with
            // easily: a step that does not drain is a failure, not a
            // measurement.
            assert!(
                !smoke || drained.is_some(),
                "the server did not process the {rate}/s step within 60 s"
            );
        }
        let (rss, peak) = server.memory_mib();
        println!("server memory: {rss:.0} MiB resident, {peak:.0} MiB peak");
        // No API call races the generated events: what conflicts here is
        // the outbox sender's check of a contact against that contact's
        // next event (a handful per 10,000 events; each is redone at once).
        let conflicts = metric_now(&api, "flowgate_commit_conflicts_total ", "").await;
        println!("commits redone because a contact changed under them: {conflicts}");
    });
}

async fn run_soak(
    load: &Arc<Load>,
    server: &Server,
    replies: &Replies,
    seconds: u64,
    rate: f64,
    honest: &[usize],
    all: &[usize],
) {
    let window = Duration::from_secs(10.min(seconds));
    let windows = seconds.div_ceil(window.as_secs());
    println!(
        "soak: {rate:.0} events/s for {seconds} s over {} tenants ({} hostile), windows of {} s",
        all.len(),
        all.len() - honest.len(),
        window.as_secs()
    );
    println!(
        "{:>6} | {:>23} | {:>23} | {:>7}",
        "window", "honest ack p50 / p99 ms", "honest e2e p50 / p99 ms", "RSS MiB"
    );
    let mut first: Option<(f64, f64)> = None;
    let mut last = (0.0, 0.0);
    let mut rss_series = Vec::new();
    for w in 0..windows {
        replies.lock().unwrap().clear();
        let (acks, _) = load.run(rate, window, all).await;
        let mut honest_acks: Vec<Duration> = acks
            .iter()
            .filter(|(t, _, _)| honest.contains(t))
            .map(|(_, _, d)| *d)
            .collect();
        let ack = percentiles(&mut honest_acks);
        let honest_numbers: Vec<&str> = honest
            .iter()
            .map(|&t| load.tenants[t].tenant.phone_number_id.as_str())
            .collect();
        let mut e2e: Vec<Duration> = replies
            .lock()
            .unwrap()
            .iter()
            .filter(|(number, _)| honest_numbers.contains(&number.as_str()))
            .map(|(_, d)| *d)
            .collect();
        let end = percentiles(&mut e2e);
        let (rss, _) = server.memory_mib();
        rss_series.push(rss);
        println!(
            "{:>6} | {:>10.2} / {:>10.2} | {:>10.1} / {:>10.1} | {rss:>7.0}",
            w + 1,
            ack.p50,
            ack.p99,
            end.p50,
            end.p99
        );
        if w > 0 && first.is_none() {
            // The first window includes the hostile plugins' initial
            // failures before their breakers open.
            first = Some((end.p99, rss));
        }
        last = (end.p99, rss);
    }
    let (first_p99, first_rss) = first.unwrap_or(last);
    println!(
        "honest end-to-end p99: {first_p99:.1} ms (window 2) → {:.1} ms (last); RSS {first_rss:.0} → {:.0} MiB",
        last.0, last.1
    );
    // Which installations' breakers opened, per tenant.
    for (t, tenant) in load.tenants.iter().enumerate() {
        let entries = tenant
            .tenant
            .api
            .audit("breaker.changed")
            .await
            .unwrap_or_default();
        let opened: std::collections::BTreeSet<String> = entries
            .iter()
            .filter(|e| {
                e["details"]["transition"]
                    .as_str()
                    .is_some_and(|s| s == "opened")
            })
            .filter_map(|e| e["details"]["installation"].as_str().map(str::to_owned))
            .collect();
        println!(
            "tenant {t} ({}): {} installation(s) tripped their breaker{}",
            if tenant.hostile {
                "hostile plugins"
            } else {
                "honest"
            },
            opened.len(),
            if tenant.hostile {
                " (3 hostile installed)"
            } else {
                ""
            }
        );
    }
}
