//! Prometheus metrics (`GET /metrics`): events, plugin calls, fuel, traps,
//! latencies. Labels carry plugin ids and outcomes, never tenant or contact
//! data.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::committer::CommitStats;
use crate::runtime::{Invocation, InvokeFailure};

/// Label set: name/value pairs.
pub type Labels = Vec<(String, String)>;

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    /// Webhook items accepted into the inbox, by kind (message, status) and
    /// outcome (accepted, duplicate).
    pub webhook_items: Family<Labels, Counter>,
    /// Webhook requests refused, by reason.
    pub webhook_refused: Family<Labels, Counter>,
    /// Inbox items processed, by outcome.
    pub events: Family<Labels, Counter>,
    /// Plugin calls, by plugin and outcome (ok or an error kind).
    pub plugin_calls: Family<Labels, Counter>,
    /// Fuel used, by plugin.
    pub plugin_fuel: Family<Labels, Counter>,
    /// Traps, by plugin and kind.
    pub plugin_traps: Family<Labels, Counter>,
    /// Plugins not run on an event, by reason (`event-budget`: the
    /// tenant's budget for the event was spent).
    pub plugin_skips: Family<Labels, Counter>,
    /// Actions, by outcome (applied, dropped).
    pub actions: Family<Labels, Counter>,
    /// Replies queued for sending (plugin replies and confirmations).
    pub replies_queued: Counter,
    /// Outbound messages, by outcome (sent, retry, in-doubt, unconfirmed,
    /// failed, dropped).
    pub messages_sent: Family<Labels, Counter>,
    /// Plugin call latency.
    pub plugin_seconds: Family<Labels, Histogram>,
    /// Webhook acknowledgement latency (receipt to durable inbox).
    pub webhook_ack_seconds: Histogram,
    /// Inbox item processing latency (receipt to committed effects).
    pub event_seconds: Histogram,
    /// The committer's group commits.
    pub commit: CommitStats,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~30 s in steps of 25%, fine enough to read percentiles from.
    Histogram::new(exponential_buckets(0.000_05, 1.25, 62))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flowgate");
        let metrics = Metrics {
            webhook_items: Family::default(),
            webhook_refused: Family::default(),
            events: Family::default(),
            plugin_calls: Family::default(),
            plugin_fuel: Family::default(),
            plugin_traps: Family::default(),
            plugin_skips: Family::default(),
            actions: Family::default(),
            messages_sent: Family::default(),
            replies_queued: Counter::default(),
            plugin_seconds: Family::new_with_constructor(latency_histogram),
            webhook_ack_seconds: latency_histogram(),
            event_seconds: latency_histogram(),
            commit: CommitStats::default(),
            registry: Registry::default(),
        };
        registry.register(
            "webhook_items",
            "Webhook items received",
            metrics.webhook_items.clone(),
        );
        registry.register(
            "webhook_refused",
            "Webhook requests refused",
            metrics.webhook_refused.clone(),
        );
        registry.register("events", "Inbox items processed", metrics.events.clone());
        registry.register("plugin_calls", "Plugin calls", metrics.plugin_calls.clone());
        registry.register(
            "plugin_fuel",
            "Fuel used by plugins",
            metrics.plugin_fuel.clone(),
        );
        registry.register("plugin_traps", "Plugin traps", metrics.plugin_traps.clone());
        registry.register(
            "plugin_skips",
            "Plugins not run on an event",
            metrics.plugin_skips.clone(),
        );
        registry.register("actions", "Plugin actions", metrics.actions.clone());
        registry.register(
            "messages_sent",
            "Outbound messages",
            metrics.messages_sent.clone(),
        );
        registry.register(
            "replies_queued",
            "Replies queued for sending",
            metrics.replies_queued.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Plugin call latency",
            metrics.plugin_seconds.clone(),
        );
        registry.register(
            "webhook_ack_seconds",
            "Webhook acknowledgement latency",
            metrics.webhook_ack_seconds.clone(),
        );
        registry.register(
            "event_seconds",
            "Event processing latency",
            metrics.event_seconds.clone(),
        );
        let commit = &metrics.commit;
        registry.register(
            "commit_groups",
            "Atomic writes by the committer (groups of requests)",
            commit.groups.clone(),
        );
        registry.register(
            "commit_requests",
            "Commit requests merged into groups",
            commit.requests.clone(),
        );
        registry.register(
            "commit_writes",
            "Records written or deleted by the committer",
            commit.writes.clone(),
        );
        registry.register(
            "commit_conflicts",
            "Commits refused because a record they were computed from had changed (retried by their callers)",
            commit.conflicts.clone(),
        );
        registry.register(
            "commit_flushes",
            "Flushes (fsyncs) of committed groups",
            commit.flushes.clone(),
        );
        registry.register(
            "commit_apply_seconds",
            "Time spent applying groups",
            commit.apply_seconds.clone(),
        );
        registry.register(
            "commit_flush_seconds",
            "Time spent flushing groups",
            commit.flush_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Count one plugin call.
    pub fn observe_call(
        &self,
        plugin: &str,
        result: &Result<Invocation, InvokeFailure>,
        elapsed: Duration,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(failure) => failure.error.kind(),
        };
        let labels = vec![("plugin".to_owned(), plugin.to_owned())];
        let mut with_outcome = labels.clone();
        with_outcome.push(("outcome".to_owned(), outcome.to_owned()));
        self.plugin_calls.get_or_create(&with_outcome).inc();
        let fuel = match result {
            Ok(invocation) => invocation.fuel,
            Err(failure) => failure.fuel,
        };
        self.plugin_fuel.get_or_create(&labels).inc_by(fuel);
        if let Err(failure) = result
            && failure.error.is_trap()
        {
            self.plugin_traps.get_or_create(&with_outcome).inc();
        }
        self.plugin_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Export what the store has done (`flowgate_log_*`,
    /// `flowgate_checkpoint_*`, `flowgate_overlay_bytes`), read at each
    /// scrape.
    pub fn watch_store(&mut self, store: std::sync::Arc<dyn crate::store::Store>) {
        self.registry
            .register_collector(Box::new(StoreCollector(store)));
    }

    /// Export the key ring's contact-key cache (`flowgate_contact_key_cache_*`),
    /// read at each scrape.
    pub fn watch_keys(&mut self, keys: std::sync::Arc<crate::crypto::KeyRing>) {
        self.registry
            .register_collector(Box::new(KeyCacheCollector(keys)));
    }

    /// Export what `collector` reads at each scrape.
    pub fn watch(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// One label pair.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}

/// The store's counters at scrape time.
struct StoreCollector(std::sync::Arc<dyn crate::store::Store>);

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCollector")
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters: [(&str, &str, u64); 6] = [
            (
                "log_appends",
                "Records (commit groups) appended to the durable log",
                stats.log_appends,
            ),
            (
                "log_bytes",
                "Bytes appended to the durable log",
                stats.log_bytes,
            ),
            (
                "log_syncs",
                "Syncs (fsyncs) of the durable log",
                stats.log_syncs,
            ),
            (
                "checkpoints",
                "Checkpoints written back to sled",
                stats.checkpoints,
            ),
            (
                "checkpoint_records",
                "Records checkpoints wrote back, after coalescing",
                stats.checkpoint_records,
            ),
            (
                "checkpoint_writes",
                "sled inserts and removals made by checkpoints (a chunk of records counts once)",
                stats.checkpoint_writes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let seconds = ConstCounter::new(stats.checkpoint_seconds);
        let metric = encoder.encode_descriptor(
            "checkpoint_seconds",
            "Time spent writing checkpoints",
            None,
            seconds.metric_type(),
        )?;
        seconds.encode(metric)?;
        let overlay = ConstGauge::new(stats.overlay_bytes as i64);
        let metric = encoder.encode_descriptor(
            "overlay_bytes",
            "Bytes of records logged but not yet checkpointed, held in memory",
            None,
            overlay.metric_type(),
        )?;
        overlay.encode(metric)
    }
}

/// The contact-key cache's size and hit counts at scrape time.
struct KeyCacheCollector(std::sync::Arc<crate::crypto::KeyRing>);

impl std::fmt::Debug for KeyCacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCacheCollector")
    }
}

impl Collector for KeyCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (held, hits, misses) = self.0.contact_key_cache_stats();
        let entries = ConstGauge::new(held as i64);
        let metric = encoder.encode_descriptor(
            "contact_key_cache_entries",
            "Contact keys held unwrapped in memory (bounded by key_cache_contacts)",
            None,
            entries.metric_type(),
        )?;
        entries.encode(metric)?;
        for (name, help, value) in [
            (
                "contact_key_cache_hits",
                "Contact keys found in the cache",
                hits,
            ),
            (
                "contact_key_cache_misses",
                "Contact keys read from the key store and unwrapped",
                misses,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}
