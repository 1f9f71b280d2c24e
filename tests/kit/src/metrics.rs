//! Reading the service's Prometheus metrics.

use std::fmt;

/// Sum of a metric's samples whose line starts with `name` and contains
/// `filter` (a label, or "" for all).
pub fn metric(metrics: &str, name: &str, filter: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// How far the service is with what it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Webhook items accepted.
    pub accepted: u64,
    /// Events processed.
    pub processed: u64,
    /// Replies queued (plugin replies and confirmations).
    pub queued: u64,
    /// Replies sent, failed or dropped.
    pub done: u64,
}

impl Progress {
    /// Read from a metrics text.
    pub fn of(metrics: &str) -> Progress {
        Progress {
            accepted: metric(
                metrics,
                "flowgate_webhook_items_total",
                "outcome=\"accepted\"",
            ),
            processed: metric(metrics, "flowgate_events_total", "outcome=\"processed\""),
            queued: metric(metrics, "flowgate_replies_queued_total", ""),
            done: ["sent", "dropped", "failed"]
                .iter()
                .map(|o| {
                    metric(
                        metrics,
                        "flowgate_messages_sent_total",
                        &format!("outcome=\"{o}\""),
                    )
                })
                .sum(),
        }
    }

    /// Every accepted item processed, and every queued reply sent, failed
    /// or dropped.
    pub fn settled(&self) -> bool {
        self.processed >= self.accepted && self.done >= self.queued
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} processed, {}/{} replies",
            self.processed, self.accepted, self.done, self.queued
        )
    }
}
