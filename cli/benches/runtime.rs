//! Per-event cost of running a plugin: a fresh instance per event (what the
//! service does), a reused instance (the cost without isolation), and the
//! same logic compiled natively (the cost without the sandbox); and for a
//! guest that imports WASI, the first two.
//!
//! Run with `cargo xtask bench -- --bench runtime` (builds the guests first).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{Call, Runtime, RuntimeConfig};
use flowgate_sdk::Plugin;
use flowgate_sdk::harness::TestEvent;
use flowgate_testkit::event::{NOW, message_event};
use flowgate_testkit::guests::load;

/// The same event for the sandbox (WIT) and for native code (SDK).
fn event(text: &str, config: &[(&str, &str)]) -> (wit::Event, flowgate_sdk::Event) {
    let mut native = TestEvent::message(text).at(NOW).name("Ana");
    for (key, value) in config {
        native = native.config(key, value);
    }
    let native = native.build();
    let mut wit = message_event(Some(text), config);
    wit.contact.pseudonym = native.contact.pseudonym.clone();
    wit.contact.name = native.contact.name.clone();
    (wit, native)
}

const RULES: &str = r#"[
  {"label": "pricing", "keywords": ["price", "how much", "quanto custa", "preço"], "patterns": ["\\bquote\\b"]},
  {"label": "complaint", "keywords": ["refund", "broken"]},
  {"keywords": ["problem solved"], "remove": ["complaint"]}
]"#;
const FAQ: &str = r#"[
  {"keywords": ["opening hours"], "reply": "We're open 9-18, {name}."},
  {"keywords": ["price", "how much"], "reply": "Prices: https://shop.example/prices"}
]"#;

fn bench_plugin<P: Plugin>(
    c: &mut Criterion,
    runtime: &Runtime,
    guest: &str,
    text: &str,
    config: &[(&str, &str)],
) {
    let plugin = load(runtime, guest);
    let (wit_event, native_event) = event(text, config);
    // Sanity: all three paths produce actions for this event.
    let fresh = runtime
        .invoke(&plugin, Call::new(wit_event.clone()))
        .unwrap();
    assert!(
        !fresh.actions.is_empty(),
        "{guest}: the benchmark event must do something"
    );

    let mut group = c.benchmark_group(guest);
    group.bench_function("fresh-instance", |b| {
        b.iter(|| {
            let invocation = runtime
                .invoke(&plugin, Call::new(black_box(wit_event.clone())))
                .unwrap();
            black_box(invocation.actions);
        })
    });
    let mut reused = runtime.reused_instance(&plugin).unwrap();
    group.bench_function("reused-instance", |b| {
        b.iter(|| {
            // Built per call on both paths: the service builds every event.
            let event = black_box(wit_event.clone());
            black_box(reused.handle(&event).unwrap())
        })
    });
    group.bench_function("instantiate-only", |b| {
        b.iter(|| black_box(runtime.reused_instance(&plugin).unwrap()))
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            flowgate_sdk::harness::reset();
            black_box(P::handle(black_box(native_event.clone())).unwrap())
        })
    });
    group.finish();
}

/// A guest that imports WASI (as Python and JavaScript plugins do): it is
/// called asynchronously, its clocks and randomness are the call's own. It
/// has no native twin.
fn bench_wasi_guest(c: &mut Criterion, runtime: &Runtime, guest: &str) {
    let plugin = load(runtime, guest);
    assert!(plugin.uses_wasi, "{guest} imports WASI");
    let (wit_event, _) = event("hello", &[]);
    let mut group = c.benchmark_group(guest);
    group.bench_function("fresh-instance", |b| {
        b.iter(|| {
            let invocation = runtime
                .invoke(&plugin, Call::new(black_box(wit_event.clone())))
                .unwrap();
            black_box(invocation.actions);
        })
    });
    let mut reused = runtime.reused_instance(&plugin).unwrap();
    group.bench_function("reused-instance", |b| {
        b.iter(|| {
            let event = black_box(wit_event.clone());
            black_box(reused.handle(&event).unwrap())
        })
    });
    group.finish();
}

fn runtime_benches(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    bench_wasi_guest(c, &runtime, "fixture-wasi-probe");
    bench_plugin::<fixture_trivial::Trivial>(c, &runtime, "fixture-trivial", "hello", &[]);
    bench_plugin::<labeller::Labeller>(
        c,
        &runtime,
        "labeller",
        "Hi! How much is the blue one? Can I get a quote?",
        &[("rules", RULES)],
    );
    bench_plugin::<lead_score::LeadScore>(
        c,
        &runtime,
        "lead-score",
        "I want to buy two, how much? Is it in stock?",
        &[],
    );
    bench_plugin::<auto_reply::AutoReply>(
        c,
        &runtime,
        "auto-reply",
        "What are your opening hours?",
        &[("faq", FAQ), ("cooldown-minutes", "0")],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = runtime_benches
}
criterion_main!(benches);
