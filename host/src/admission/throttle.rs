//! Throttling failed authentications, per client address and per API key
//! id, so a secret cannot be guessed and a flood of wrong ones costs
//! little: the API and the console each hold one.
//!
//! Each client address and each key id may fail `allowed` times in a
//! window of `window` that starts at its first failure; after that,
//! attempts from it (or for it) are refused without the token being
//! checked or anything written, until the window ends. A success does not
//! clear the count (a guesser holding one valid key of its own must not
//! reset its allowance).
//!
//! Memory is bounded: each map holds at most `CAPACITY` entries; when full,
//! ended windows are dropped first, then the window that started first;
//! [`FailureThrottle::prune`] drops ended windows. The limits: a guesser
//! spreading over more addresses than that can push out the oldest counts
//! (the per-key count still holds, for a guessed key id); and anyone who
//! knows a key id can spend that key's allowance, which makes the key wait
//! out one window on that face. Key ids are not published (a tenant sees
//! its own), and a key can be replaced by one with a new id.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::address::ClientAddress;
use crate::ids::ApiKeyId;

/// Entries per map.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts of one kind of key, bounded.
struct Counts<K> {
    windows: Mutex<HashMap<K, Window>>,
}

/// The failure counts of one face.
pub struct FailureThrottle {
    allowed: u32,
    window: Duration,
    capacity: usize,
    by_address: Counts<ClientAddress>,
    by_key: Counts<ApiKeyId>,
    refused: AtomicU64,
}

/// A refused attempt: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl<K: Hash + Eq + Copy> Counts<K> {
    fn new() -> Counts<K> {
        Counts {
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Window>> {
        self.windows.lock().expect("throttle lock")
    }

    /// How long `id` must wait, if it has failed `allowed` times in a
    /// window that has not ended.
    fn blocked(&self, id: &K, allowed: u32, window: Duration, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let counted = map.get(id)?;
        let ends = counted.started + window;
        (counted.failures >= allowed && ends > now).then(|| ends - now)
    }

    /// Count a failure of `id`: whether it has now used up its allowance.
    fn count(&self, id: K, allowed: u32, window: Duration, capacity: usize, now: Instant) -> bool {
        let mut map = self.lock();
        if !map.contains_key(&id) && map.len() >= capacity {
            map.retain(|_, w| w.started + window > now);
            if map.len() >= capacity
                && let Some(oldest) = map.iter().min_by_key(|(_, w)| w.started).map(|(id, _)| *id)
            {
                map.remove(&oldest);
            }
        }
        let counted = map.entry(id).or_insert(Window {
            started: now,
            failures: 0,
        });
        if counted.started + window <= now {
            *counted = Window {
                started: now,
                failures: 0,
            };
        }
        counted.failures = counted.failures.saturating_add(1);
        counted.failures == allowed
    }

    fn prune(&self, window: Duration, now: Instant) {
        let mut map = self.lock();
        map.retain(|_, w| w.started + window > now);
        map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl FailureThrottle {
    /// `allowed` failures per `window` (at least one).
    pub fn new(allowed: u32, window: Duration) -> FailureThrottle {
        FailureThrottle::with_capacity(allowed, window, CAPACITY)
    }

    fn with_capacity(allowed: u32, window: Duration, capacity: usize) -> FailureThrottle {
        FailureThrottle {
            allowed: allowed.max(1),
            window,
            capacity: capacity.max(1),
            by_address: Counts::new(),
            by_key: Counts::new(),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether an attempt from `address` for `key` (the key id the token
    /// names, when it names one) may be checked now. A refusal is counted
    /// (see [`FailureThrottle::refused`]).
    pub fn check(
        &self,
        address: &ClientAddress,
        key: Option<&ApiKeyId>,
        now: Instant,
    ) -> Result<(), Throttled> {
        let (allowed, window) = (self.allowed, self.window);
        let by_address = self.by_address.blocked(address, allowed, window, now);
        let by_key = key.and_then(|key| self.by_key.blocked(key, allowed, window, now));
        match by_address.max(by_key) {
            Some(retry_after) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Throttled { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Count a failed attempt.
    pub fn failed(&self, address: &ClientAddress, key: Option<&ApiKeyId>, now: Instant) {
        let (allowed, window, capacity) = (self.allowed, self.window, self.capacity);
        // Logged once per window that fills, not per refused attempt: a
        // flood must not become a flood of log lines.
        if self
            .by_address
            .count(*address, allowed, window, capacity, now)
        {
            tracing::warn!("a client used up its allowance of failed authentications");
        }
        if let Some(key) = key
            && self.by_key.count(*key, allowed, window, capacity, now)
        {
            tracing::warn!(key = %key, "an API key id used up its allowance of failed authentications");
        }
    }

    /// Drop the windows that have ended.
    pub fn prune(&self, now: Instant) {
        self.by_address.prune(self.window, now);
        self.by_key.prune(self.window, now);
    }

    /// Entries held: (client addresses, key ids).
    pub fn len(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_key.len())
    }

    /// Attempts refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> ClientAddress {
        ClientAddress::V4([10, 0, 0, last])
    }

    fn key(n: u8) -> ApiKeyId {
        ApiKeyId::from_bytes([n; 16])
    }

    #[test]
    fn failures_past_the_allowance_are_refused_until_the_window_ends() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(throttle.check(&address(1), Some(&key(1)), start).is_ok());
            throttle.failed(&address(1), Some(&key(1)), start);
        }
        let refused = throttle.check(&address(1), None, start + Duration::from_secs(10));
        assert_eq!(
            refused,
            Err(Throttled {
                retry_after: Duration::from_secs(50)
            })
        );
        // The key is refused from another address too…
        assert!(throttle.check(&address(2), Some(&key(1)), start).is_err());
        // …and another key from the same address.
        assert!(throttle.check(&address(1), Some(&key(2)), start).is_err());
        // Others are unaffected.
        assert!(throttle.check(&address(2), Some(&key(2)), start).is_ok());
        assert_eq!(throttle.refused(), 3);
        // The window ends: a fresh allowance.
        let later = start + Duration::from_secs(60);
        assert!(throttle.check(&address(1), Some(&key(1)), later).is_ok());
        throttle.failed(&address(1), Some(&key(1)), later);
        assert!(throttle.check(&address(1), Some(&key(1)), later).is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_ended_windows_are_pruned() {
        let throttle = FailureThrottle::with_capacity(1, Duration::from_secs(60), 100);
        let start = Instant::now();
        for n in 0..1_000u32 {
            let at = start + Duration::from_millis(n.into());
            let [a, b, c, d] = n.to_be_bytes();
            let from = ClientAddress::V4([a, b, c, d]);
            throttle.failed(&from, Some(&ApiKeyId::from_bytes([d; 16])), at);
        }
        let (addresses, keys) = throttle.len();
        assert!(addresses <= 100 && keys <= 100, "{addresses} {keys}");
        // The newest counts are kept.
        let newest = ClientAddress::V4(999u32.to_be_bytes());
        assert!(throttle.check(&newest, None, start).is_err());
        throttle.prune(start + Duration::from_secs(61));
        assert_eq!(throttle.len(), (0, 0));
    }
}
