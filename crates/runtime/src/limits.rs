//! The per-call budget every plugin invocation runs under.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to every call into a plugin. The defaults suit the
/// first-party plugins with a wide margin; operators may tighten them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Instruction budget per call (wasmtime fuel). Deterministic: the same
    /// plugin on the same event uses the same fuel on every machine.
    pub fuel: u64,
    /// Wall-clock backstop per call, in milliseconds (epoch interruption).
    /// Catches time spent where fuel is not charged, such as host calls.
    pub deadline_ms: u64,
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Table elements per instance.
    pub table_elements: usize,
    /// Actions accepted per call; more fails the call.
    pub max_actions: usize,
    /// Log lines kept per call; further lines are counted and dropped.
    pub max_log_lines: usize,
    /// Bytes of log text kept per call.
    pub max_log_bytes: usize,
    /// Plugin state: longest key, in bytes.
    pub max_state_key_bytes: usize,
    /// Plugin state: largest value, in bytes.
    pub max_state_value_bytes: usize,
    /// Plugin state: keys per (installation, contact).
    pub max_state_keys: usize,
    /// Consecutive failures that open an installation's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker keeps the installation disabled, in seconds.
    pub breaker_cooldown_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 200_000_000,
            deadline_ms: 500,
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            max_actions: 16,
            max_log_lines: 100,
            max_log_bytes: 16 << 10,
            max_state_key_bytes: 128,
            max_state_value_bytes: 4096,
            max_state_keys: 32,
            breaker_failures: 5,
            breaker_cooldown_secs: 60,
        }
    }
}

impl Limits {
    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}
