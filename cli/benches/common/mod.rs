//! Helpers shared by the bench binaries (`mod common;` in each; cargo does
//! not take a `mod.rs` under `benches/` for a bench of its own).

// Each bench uses a part of this.
#![allow(dead_code)]

use std::time::Duration;

/// The value after `name` on the command line (`--contacts 1_000_000`;
/// underscores are ignored), or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile (0..=1) of samples sorted ascending (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Median, 99th percentile and maximum of a run of timings.
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Summarize `samples` (at least one).
pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    Summary {
        p50: quantile(&samples, 0.50),
        p99: quantile(&samples, 0.99),
        max: *samples.last().expect("at least one sample"),
    }
}
