//! What a plugin instance can reach: the per-call data behind its imports.
//!
//! One `HostState` lives in each call's `Store` and dies with it, so nothing
//! a plugin does (log lines, state writes, WASI handles) outlives the call
//! except what the caller takes out of it afterwards.

use std::collections::BTreeMap;

use serde::Serialize;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::limits::Limits;
use super::wasi::{WasiSandbox, WasiSetup};
use crate::bindings::{log, state, types};

/// A plugin's state for one (installation, contact): its entries before the
/// call and the changes the call made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginState {
    entries: BTreeMap<String, Vec<u8>>,
    changes: BTreeMap<String, Option<Vec<u8>>>,
}

impl PluginState {
    /// State as loaded from the store.
    pub fn new(entries: BTreeMap<String, Vec<u8>>) -> PluginState {
        PluginState {
            entries,
            changes: BTreeMap::new(),
        }
    }

    /// The state after a call that produced `after` from these entries
    /// (for calls that do not go through the `state` import).
    pub fn with_result(self, after: BTreeMap<String, Vec<u8>>) -> PluginState {
        let mut changes = BTreeMap::new();
        for (key, value) in &after {
            if self.entries.get(key) != Some(value) {
                changes.insert(key.clone(), Some(value.clone()));
            }
        }
        for key in self.entries.keys() {
            if !after.contains_key(key) {
                changes.insert(key.clone(), None);
            }
        }
        PluginState {
            entries: self.entries,
            changes,
        }
    }

    /// The entries before the call.
    pub fn entries(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.entries
    }

    /// The value a read sees: the call's own writes first.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        match self.changes.get(key) {
            Some(change) => change.as_deref(),
            None => self.entries.get(key).map(Vec::as_slice),
        }
    }

    /// The entries after applying the call's changes.
    pub fn merged(&self) -> BTreeMap<String, Vec<u8>> {
        let mut merged = self.entries.clone();
        for (key, change) in &self.changes {
            match change {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        merged
    }

    /// The writes (`Some`) and deletions (`None`) the call made.
    pub fn changes(&self) -> &BTreeMap<String, Option<Vec<u8>>> {
        &self.changes
    }

    fn key_count_after(&self, new_key: &str) -> usize {
        let existing = self
            .entries
            .keys()
            .filter(|k| !matches!(self.changes.get(*k), Some(None)))
            .count();
        let added = self
            .changes
            .iter()
            .filter(|(k, v)| v.is_some() && !self.entries.contains_key(*k))
            .count();
        let new = usize::from(self.get(new_key).is_none());
        existing + added + new
    }
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace` to `error`, or `stdout` / `stderr` for WASI output.
    pub level: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// The data behind a call's imports.
pub struct HostState {
    limits: Limits,
    pub(super) state: PluginState,
    pub(super) logs: Vec<LogLine>,
    log_bytes: usize,
    pub(super) dropped_log_lines: usize,
    pub(super) memory_limit_hit: bool,
    /// Linear memory the instance holds, all its memories together: what it
    /// was created with plus every growth (memories never shrink).
    pub(super) memory_bytes: usize,
    /// For guests that import WASI; `None` for the others.
    pub(super) wasi: Option<WasiSandbox>,
}

impl HostState {
    /// The state of one call; `wasi` for guests that import WASI.
    pub(super) fn new(limits: &Limits, state: PluginState, wasi: Option<WasiSetup>) -> HostState {
        HostState {
            limits: limits.clone(),
            state,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_log_lines: 0,
            memory_limit_hit: false,
            memory_bytes: 0,
            wasi: wasi.map(WasiSandbox::new),
        }
    }

    fn push_log(&mut self, level: &'static str, message: String, fields: Vec<(String, String)>) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.logs.len() >= self.limits.max_log_lines
            || self.log_bytes + size > self.limits.max_log_bytes
        {
            self.dropped_log_lines += 1;
            return;
        }
        self.log_bytes += size;
        self.logs.push(LogLine {
            level,
            message,
            fields,
        });
    }

    /// Move captured WASI output into the log, one line per output line.
    pub(super) fn collect_wasi_output(&mut self) {
        let Some(wasi) = &self.wasi else {
            return;
        };
        for (level, bytes) in wasi.output() {
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    self.push_log(level, line.to_owned(), Vec::new());
                }
            }
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.push_log(level, message, fields);
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.get(&key).map(<[u8]>::to_vec)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), state::StateError> {
        let limits = &self.limits;
        if key.len() > limits.max_state_key_bytes {
            return Err(state::StateError::TooLarge(format!(
                "keys up to {} bytes",
                limits.max_state_key_bytes
            )));
        }
        if value.len() > limits.max_state_value_bytes {
            return Err(state::StateError::TooLarge(format!(
                "values up to {} bytes",
                limits.max_state_value_bytes
            )));
        }
        if self.state.key_count_after(&key) > limits.max_state_keys {
            return Err(state::StateError::QuotaExceeded(format!(
                "{} keys per contact",
                limits.max_state_keys
            )));
        }
        self.state.changes.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: String) {
        if self.state.get(&key).is_some() {
            self.state.changes.insert(key, None);
        }
    }
}

impl HostState {
    /// The call's WASI context. Only components that import WASI reach
    /// this, and theirs is built up front; anything else gets one (the
    /// describe() setup: no clock, fixed seed) rather than a panic inside a
    /// host call.
    pub(super) fn wasi_sandbox(&mut self) -> &mut WasiSandbox {
        let budget = self.limits.deadline();
        self.wasi
            .get_or_insert_with(|| WasiSandbox::new(WasiSetup::describe(budget)))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi_sandbox().view()
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        // Also called when a memory is created (from 0 to its initial size),
        // so this counts the memory image an interpreter starts from.
        self.memory_bytes += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::state::Host as _;

    fn host(entries: &[(&str, &[u8])]) -> HostState {
        let entries = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        HostState::new(&Limits::default(), PluginState::new(entries), None)
    }

    #[test]
    fn reads_see_the_calls_own_writes_and_deletes() {
        let mut host = host(&[("a", b"1")]);
        assert_eq!(host.get("a".into()), Some(b"1".to_vec()));
        host.set("a".into(), b"2".to_vec()).unwrap();
        assert_eq!(host.get("a".into()), Some(b"2".to_vec()));
        host.delete("a".into());
        assert_eq!(host.get("a".into()), None);
        assert!(host.state.merged().is_empty());
    }

    #[test]
    fn key_quota_counts_existing_and_new_keys_and_frees_deleted_ones() {
        let limits = Limits::default();
        let existing: Vec<(String, Vec<u8>)> = (0..limits.max_state_keys - 1)
            .map(|i| (format!("k{i}"), vec![1]))
            .collect();
        let mut host = HostState::new(
            &limits,
            PluginState::new(existing.into_iter().collect()),
            None,
        );
        host.set("new".into(), vec![1]).unwrap();
        assert!(matches!(
            host.set("one-too-many".into(), vec![1]),
            Err(state::StateError::QuotaExceeded(_))
        ));
        // Overwriting is not a new key; deleting frees a slot.
        host.set("k0".into(), vec![2]).unwrap();
        host.delete("k1".into());
        host.set("one-too-many".into(), vec![1]).unwrap();
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        let mut host = host(&[]);
        assert!(matches!(
            host.set("k".repeat(129), vec![]),
            Err(state::StateError::TooLarge(_))
        ));
        assert!(matches!(
            host.set("k".into(), vec![0; 4097]),
            Err(state::StateError::TooLarge(_))
        ));
    }
}
