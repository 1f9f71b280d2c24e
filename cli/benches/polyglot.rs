//! What a plugin costs per language: flows written in Rust, Python
//! (componentize-py) and JavaScript (componentize-js), run in one process
//! the way the service runs them — a fresh instance per event.
//!
//! Pairs doing the same kind of work: `labeller` (Rust) and `sentiment-py`
//! label contacts by the words of a message; `auto-reply` (Rust) and
//! `faq-js` answer an FAQ entry. For each: component size; loading (cranelift
//! compile plus `describe()`, once per content hash); the first event after
//! loading; then `--events N` events (default 300), each in a fresh instance,
//! timed around `Runtime::invoke` (p50 and p90), with the fuel, linear
//! memory and minor page faults one event takes; for comparison, a call on
//! one instance kept across events (the service never does this) and a new
//! instance without a call. Every event is also run with a 4,000-character
//! message.
//!
//! `cargo xtask bench -- --bench polyglot` (builds the guests first), or
//! `cargo bench -p flowgate-cli --bench polyglot -- --events 1000`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{Call, LoadedPlugin, Runtime, RuntimeConfig};
use flowgate_testkit::event::{message_event, with_labels};
use flowgate_testkit::guests;

const RULES: &str = r#"[
  {"label": "negative", "keywords": ["late", "broken", "terrible", "worst", "refund"], "remove": ["positive"]},
  {"label": "positive", "keywords": ["great", "thanks", "excellent"], "remove": ["negative"]}
]"#;
const FAQ: &str = r#"[
  {"keywords": ["price", "how much"], "reply": "Prices: https://shop.example/prices"},
  {"keywords": ["opening hours", "horário"], "reply": "We're open 9 to 6, {name}!"}
]"#;

fn events_arg() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A message with `text`, from a contact labelled `positive`.
fn event(text: &str, config: &[(&str, &str)]) -> wit::Event {
    with_labels(message_event(Some(text), config), &["positive"])
}

struct Case {
    guest: &'static str,
    language: &'static str,
    text: &'static str,
    config: &'static [(&'static str, &'static str)],
}

const CASES: [Case; 4] = [
    Case {
        guest: "labeller",
        language: "Rust",
        text: "The parcel was late and arrived broken, not good at all.",
        config: &[("rules", RULES)],
    },
    Case {
        guest: "sentiment-py",
        language: "Python",
        text: "The parcel was late and arrived broken, not good at all.",
        config: &[],
    },
    Case {
        guest: "auto-reply",
        language: "Rust",
        text: "Hi! What are your opening hours on Saturday?",
        config: &[("faq", FAQ), ("cooldown-minutes", "0")],
    },
    Case {
        guest: "faq-js",
        language: "JavaScript",
        text: "Hi! What are your opening hours on Saturday?",
        config: &[("faq", FAQ)],
    },
];

struct Measured {
    p50: Duration,
    p90: Duration,
    fuel: u64,
    memory: usize,
    /// Minor page faults per event: pages of the memory image a fresh
    /// instance touches for the first time.
    faults: u64,
}

/// Minor page faults of the calling thread so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    // /proc/thread-self/stat: the 10th field, counted after the command
    // name, which is in parentheses and may contain spaces.
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1;
            after_name.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

fn fresh_instances(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    event: &wit::Event,
    n: usize,
) -> Measured {
    let mut times = Vec::with_capacity(n);
    let (mut fuel, mut memory) = (0, 0);
    let faults_before = minor_faults();
    for _ in 0..n {
        let started = Instant::now();
        let invocation = runtime
            .invoke(plugin, Call::new(event.clone()))
            .expect("the benchmark event succeeds");
        times.push(started.elapsed());
        assert!(
            !invocation.actions.is_empty(),
            "the benchmark event must do something"
        );
        fuel = invocation.fuel;
        memory = invocation.memory_bytes;
    }
    let faults = (minor_faults() - faults_before) / n as u64;
    times.sort();
    Measured {
        p50: times[n / 2],
        p90: times[n * 9 / 10],
        fuel,
        memory,
        faults,
    }
}

fn reused_instance(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    event: &wit::Event,
    n: usize,
) -> Duration {
    let mut instance = runtime.reused_instance(plugin).expect("instantiating");
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        std::hint::black_box(
            instance
                .handle(event)
                .expect("the benchmark event succeeds"),
        );
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

/// A new store and instance, dropped without a call: the part of a fresh
/// instance's cost that does not depend on the event.
fn instantiate_only(runtime: &Runtime, plugin: &LoadedPlugin, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        std::hint::black_box(runtime.reused_instance(plugin).expect("instantiating"));
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else {
        format!("{ms:.2} ms")
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the
    // binary without it, as a smoke test: one event per case, Rust guests
    // only. Compiling the interpreters would add a minute to every test run,
    // and the end-to-end tests (tests/e2e/runtime/) run them already.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke { 1 } else { events_arg() };
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let long = "The parcel was late, not good at all, and what are your opening hours? ".repeat(56);

    println!(
        "| plugin | language | size | load (compile + describe) | first event | event p50 | event p90 | fuel / event | memory | page faults / event | reused instance p50 | instantiate only p50 | 4,000-char message p50 | its fuel |"
    );
    println!(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut loaded: Vec<Arc<LoadedPlugin>> = Vec::new();
    for case in CASES.iter().filter(|c| !smoke || c.language == "Rust") {
        // A guest that is not built fails the run (unless xtask could not
        // build it and FLOWGATE_ALLOW_SKIPPED_GUESTS is set).
        let Some(bytes) = guests::built(case.guest) else {
            continue;
        };
        let started = Instant::now();
        let plugin = runtime.load(&bytes).expect("loading the component");
        let load = started.elapsed();
        let short = event(case.text, case.config);
        let started = Instant::now();
        runtime
            .invoke(&plugin, Call::new(short.clone()))
            .expect("first event");
        let first = started.elapsed();
        let fresh = fresh_instances(&runtime, &plugin, &short, n);
        let reused = reused_instance(&runtime, &plugin, &short, n);
        let instantiate = instantiate_only(&runtime, &plugin, n);
        let long_event = event(&long, case.config);
        let long_fresh = fresh_instances(&runtime, &plugin, &long_event, n.div_ceil(3));
        println!(
            "| {} | {} | {:.1} MB | {:.2} s | {} | {} | {} | {:.2} M | {} | {} | {} | {} | {} | {:.1} M |",
            case.guest,
            case.language,
            bytes.len() as f64 / 1e6,
            load.as_secs_f64(),
            ms(first),
            ms(fresh.p50),
            ms(fresh.p90),
            fresh.fuel as f64 / 1e6,
            mib(fresh.memory),
            fresh.faults,
            ms(reused),
            ms(instantiate),
            ms(long_fresh.p50),
            long_fresh.fuel as f64 / 1e6,
        );
        loaded.push(plugin);
    }
    println!(
        "\n{n} events per case (a third of that for the long message); limits: {:?}",
        runtime.limits()
    );
}
