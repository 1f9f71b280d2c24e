//! Rate limits: a GCRA cell per key (an API key, a webhook channel),
//! updated with atomic operations (governor).
//!
//! A cell is made the first time a key is checked and stays until
//! [`RateLimit::prune`] finds it back at its full allowance, so the number
//! of cells is the number of keys seen recently. Callers check only keys
//! that name something that exists (an authenticated key, a channel found
//! by its id): keyed by the raw path, a flood of made-up channel ids once
//! made a cell per id, and none was ever dropped.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A keyed rate limit.
pub struct RateLimit<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// `per_second` sustained, with `burst` at once (each at least 1).
    pub fn new(per_second: u32, burst: u32) -> RateLimit<K> {
        let at_least_one = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
        let quota = Quota::per_second(at_least_one(per_second)).allow_burst(at_least_one(burst));
        RateLimit {
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// Take one request from `key`'s allowance; when it is spent, how long
    /// until the next one is allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Drop the cells back at their full allowance (indistinguishable from
    /// a new one) and give their memory back.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Cells held: the keys seen since they were last back at full
    /// allowance and pruned.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_allowance_says_how_long_to_wait_and_other_keys_are_unaffected() {
        let limit = RateLimit::new(1, 2);
        assert!(limit.check(&"a").is_ok());
        assert!(limit.check(&"a").is_ok());
        let wait = limit.check(&"a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limit.check(&"b").is_ok());
        assert_eq!(limit.len(), 2);
    }

    #[test]
    fn pruning_drops_the_cells_back_at_their_full_allowance_only() {
        // 1000 per second: a cell that took one request is full again
        // after a millisecond; one that spent a burst of a million is not
        // for many minutes.
        let limit = RateLimit::new(1_000, 1_000_000);
        for key in 0..100u32 {
            limit.check(&key).unwrap();
        }
        let busy = u32::MAX;
        for _ in 0..10_000 {
            limit.check(&busy).unwrap();
        }
        assert_eq!(limit.len(), 101);
        // Waits for the cells to fill again, which the assertion does not
        // measure: a slower machine only makes the margin larger.
        std::thread::sleep(Duration::from_millis(50));
        limit.prune();
        assert_eq!(limit.len(), 1, "only the busy key is kept");
    }
}
