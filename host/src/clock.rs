//! The service's clock: system time plus an adjustable offset, so tests can
//! travel forward in time (retention, the 24-hour window, cool-downs)
//! without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, shiftable.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Now, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        let system = unix_now() as i64;
        (system + self.offset.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Move this clock (and every clone of it) forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// Seconds since the Unix epoch, by the system clock (no offset).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.now();
        clock.advance(86_400);
        assert!(other.now() >= before + 86_400);
    }
}
