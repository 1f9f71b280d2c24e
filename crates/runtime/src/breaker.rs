//! Per-installation circuit breakers.
//!
//! An installation whose plugin keeps failing (traps, timeouts, errors) is
//! disabled for a cool-down instead of burning every event's budget. After
//! the cool-down one trial call is let through: success closes the breaker,
//! failure opens it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A breaker's change of state, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerTransition {
    /// Too many consecutive failures: the installation is disabled.
    Opened { consecutive_failures: u32 },
    /// A trial call succeeded: the installation runs again.
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over and one trial call is running; other calls
    /// are refused meanwhile (each would pay the failing plugin's limits:
    /// a loop holds a worker for its whole deadline). A trial that never
    /// reports back (its caller died) is replaced after another cool-down.
    Trial {
        started: Instant,
    },
}

/// The breakers of all installations, keyed by installation id.
#[derive(Debug)]
pub struct CircuitBreakers {
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<String, State>>,
}

/// The installation is disabled until its cool-down ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open: the installation failed repeatedly; retried in {}s", retry_in.as_secs())]
pub struct BreakerOpen {
    /// Time left before a trial call is allowed.
    pub retry_in: Duration,
}

impl CircuitBreakers {
    /// Breakers that open after `threshold` consecutive failures and stay
    /// open for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreakers {
        CircuitBreakers {
            threshold: threshold.max(1),
            cooldown,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call may run now.
    pub fn admit(&self, installation: &str, now: Instant) -> Result<(), BreakerOpen> {
        let mut states = self.states.lock().expect("breaker lock poisoned");
        let until = match states.get(installation).copied() {
            None | Some(State::Closed { .. }) => return Ok(()),
            Some(State::Open { until }) => until,
            Some(State::Trial { started }) => started + self.cooldown,
        };
        if now >= until {
            states.insert(installation.to_owned(), State::Trial { started: now });
            return Ok(());
        }
        Err(BreakerOpen {
            retry_in: until - now,
        })
    }

    /// A call that ended for a reason that says nothing about the plugin
    /// (the tenant's budget for the event ran out first): it counts neither
    /// way, and a trial it was goes back to waiting for the next call.
    pub fn release(&self, installation: &str, now: Instant) {
        let mut states = self.states.lock().expect("breaker lock poisoned");
        if let Some(state @ State::Trial { .. }) = states.get_mut(installation) {
            *state = State::Open { until: now };
        }
    }

    /// Record a call's outcome; returns the transition it caused, if any.
    pub fn record(
        &self,
        installation: &str,
        succeeded: bool,
        now: Instant,
    ) -> Option<BreakerTransition> {
        let mut states = self.states.lock().expect("breaker lock poisoned");
        let current = states.get(installation).copied().unwrap_or(State::Closed {
            consecutive_failures: 0,
        });
        let (next, transition) = match (current, succeeded) {
            (State::Trial { .. }, true) => (
                State::Closed {
                    consecutive_failures: 0,
                },
                Some(BreakerTransition::Closed),
            ),
            (State::Trial { .. }, false) => (
                State::Open {
                    until: now + self.cooldown,
                },
                Some(BreakerTransition::Opened {
                    consecutive_failures: self.threshold,
                }),
            ),
            (State::Closed { .. }, true) => (
                State::Closed {
                    consecutive_failures: 0,
                },
                None,
            ),
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures + 1;
                if failures >= self.threshold {
                    (
                        State::Open {
                            until: now + self.cooldown,
                        },
                        Some(BreakerTransition::Opened {
                            consecutive_failures: failures,
                        }),
                    )
                } else {
                    (
                        State::Closed {
                            consecutive_failures: failures,
                        },
                        None,
                    )
                }
            }
            // A call admitted before the breaker opened finished late.
            (open @ State::Open { .. }, _) => (open, None),
        };
        if matches!(
            next,
            State::Closed {
                consecutive_failures: 0
            }
        ) {
            states.remove(installation);
        } else {
            states.insert(installation.to_owned(), next);
        }
        transition
    }

    /// Installations whose breaker is open now.
    pub fn open_installations(&self, now: Instant) -> Vec<String> {
        let states = self.states.lock().expect("breaker lock poisoned");
        states
            .iter()
            .filter(|(_, state)| matches!(state, State::Open { until } if *until > now))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_after_a_good_trial() {
        let breakers = CircuitBreakers::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(breakers.record("inst", false, t0), None);
        }
        assert_eq!(
            breakers.record("inst", false, t0),
            Some(BreakerTransition::Opened {
                consecutive_failures: 3
            })
        );
        let refused = breakers
            .admit("inst", t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(50));
        // Other installations are unaffected.
        assert!(breakers.admit("other", t0).is_ok());
        assert_eq!(breakers.open_installations(t0), vec!["inst".to_string()]);

        let later = t0 + Duration::from_secs(61);
        assert!(breakers.admit("inst", later).is_ok());
        // One trial at a time: the next calls wait for its outcome.
        assert!(breakers.admit("inst", later).is_err());
        assert!(
            breakers
                .admit("inst", later + Duration::from_secs(1))
                .is_err()
        );
        assert_eq!(
            breakers.record("inst", true, later),
            Some(BreakerTransition::Closed)
        );
        assert!(breakers.open_installations(later).is_empty());
    }

    #[test]
    fn a_failed_trial_reopens_and_a_success_resets_the_count() {
        let breakers = CircuitBreakers::new(2, Duration::from_secs(5));
        let t0 = Instant::now();
        breakers.record("i", false, t0);
        breakers.record("i", true, t0);
        assert_eq!(breakers.record("i", false, t0), None, "count was reset");
        assert!(breakers.record("i", false, t0).is_some());
        let trial = t0 + Duration::from_secs(6);
        breakers.admit("i", trial).unwrap();
        assert!(matches!(
            breakers.record("i", false, trial),
            Some(BreakerTransition::Opened { .. })
        ));
        assert!(breakers.admit("i", trial + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_trial_that_never_reports_is_replaced_after_a_cool_down() {
        let breakers = CircuitBreakers::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        breakers.record("i", false, t0);
        let trial = t0 + Duration::from_secs(5);
        breakers.admit("i", trial).unwrap();
        // Its caller never records an outcome.
        assert_eq!(
            breakers
                .admit("i", trial + Duration::from_secs(2))
                .unwrap_err()
                .retry_in,
            Duration::from_secs(3)
        );
        assert!(breakers.admit("i", trial + Duration::from_secs(5)).is_ok());
    }
}
