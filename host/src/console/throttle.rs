//! Throttling failed console sign-ins, per client address and per API key
//! id, so a key's secret cannot be guessed through the sign-in form.
//!
//! Each (address) and each (key id) may fail `sign_in_failures` times in a
//! window of `sign_in_window_secs` that starts at its first failure; after
//! that, sign-ins from it (or for it) are refused without the token being
//! checked, until the window ends. A success does not clear the count (a
//! guesser holding one valid key of its own must not reset its allowance).
//!
//! Memory is bounded: each map holds at most `CAPACITY` entries; when full,
//! ended windows are dropped first, then the window that started first.
//! The limits: a guesser spreading over more addresses than that can push
//! out the oldest counts (the per-key count still holds, for a guessed key
//! id); and anyone who knows a key id can spend that key's allowance, which
//! locks the key out of console sign-in (not out of the API) for one window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries per map.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The failure counts.
pub struct SignInThrottle {
    allowed: u32,
    window: Duration,
    capacity: usize,
    by_address: Mutex<HashMap<String, Window>>,
    by_key: Mutex<HashMap<String, Window>>,
}

/// A refused attempt: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl SignInThrottle {
    pub fn new(allowed: u32, window: Duration) -> SignInThrottle {
        SignInThrottle::with_capacity(allowed, window, CAPACITY)
    }

    fn with_capacity(allowed: u32, window: Duration, capacity: usize) -> SignInThrottle {
        SignInThrottle {
            allowed: allowed.max(1),
            window,
            capacity: capacity.max(1),
            by_address: Mutex::new(HashMap::new()),
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn blocked(
        &self,
        map: &Mutex<HashMap<String, Window>>,
        id: &str,
        now: Instant,
    ) -> Option<Duration> {
        let map = map.lock().expect("throttle lock");
        let window = map.get(id)?;
        let ends = window.started + self.window;
        (window.failures >= self.allowed && ends > now).then(|| ends - now)
    }

    /// Whether an attempt from `address` for `key` (the key id the token
    /// names, when it names one) may be checked now.
    pub fn check(&self, address: &str, key: Option<&str>, now: Instant) -> Result<(), Throttled> {
        let by_address = self.blocked(&self.by_address, address, now);
        let by_key = key.and_then(|key| self.blocked(&self.by_key, key, now));
        match by_address.max(by_key) {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        }
    }

    fn count(&self, map: &Mutex<HashMap<String, Window>>, id: &str, now: Instant) {
        let mut map = map.lock().expect("throttle lock");
        if !map.contains_key(id) && map.len() >= self.capacity {
            map.retain(|_, w| w.started + self.window > now);
            if map.len() >= self.capacity
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(id, _)| id.clone())
            {
                map.remove(&oldest);
            }
        }
        let window = map.entry(id.to_owned()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if window.started + self.window <= now {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// Count a failed attempt.
    pub fn failed(&self, address: &str, key: Option<&str>, now: Instant) {
        self.count(&self.by_address, address, now);
        if let Some(key) = key {
            self.count(&self.by_key, key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_allowance_are_refused_until_the_window_ends() {
        let throttle = SignInThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(throttle.check("10.0.0.1", Some("key_a"), start).is_ok());
            throttle.failed("10.0.0.1", Some("key_a"), start);
        }
        let refused = throttle.check("10.0.0.1", None, start + Duration::from_secs(10));
        assert_eq!(
            refused,
            Err(Throttled {
                retry_after: Duration::from_secs(50)
            })
        );
        // The key is refused from another address too…
        assert!(throttle.check("10.0.0.2", Some("key_a"), start).is_err());
        // …and another key from the same address.
        assert!(throttle.check("10.0.0.1", Some("key_b"), start).is_err());
        // Others are unaffected.
        assert!(throttle.check("10.0.0.2", Some("key_b"), start).is_ok());
        // The window ends: a fresh allowance.
        let later = start + Duration::from_secs(60);
        assert!(throttle.check("10.0.0.1", Some("key_a"), later).is_ok());
        throttle.failed("10.0.0.1", Some("key_a"), later);
        assert!(throttle.check("10.0.0.1", Some("key_a"), later).is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let throttle = SignInThrottle::with_capacity(1, Duration::from_secs(60), 100);
        let start = Instant::now();
        for n in 0..1_000u64 {
            let at = start + Duration::from_millis(n);
            throttle.failed(&format!("addr{n}"), Some(&format!("key{n}")), at);
        }
        assert!(throttle.by_address.lock().unwrap().len() <= 100);
        assert!(throttle.by_key.lock().unwrap().len() <= 100);
        // The newest counts are kept.
        assert!(throttle.check("addr999", None, start).is_err());
    }
}
