//! Who is served now, decided before any work is done for a request: rate
//! limits per caller and per webhook channel ([`rate`]), and the throttle
//! on failed authentications per client ([`address`]) and per key id
//! ([`throttle`]). The API and the console share one [`Admission`], held
//! by the service.
//!
//! All of it is memory of one node, and bounded by what exists rather
//! than by what clients send: a rate-limit cell is made only for an API
//! key that authenticated, the operator, or a webhook channel found by its
//! id (in its one spelling, [`crate::ids`]); cells back at their full
//! allowance are pruned by [`Admission::upkeep`]; a throttle holds at most
//! [`throttle::CAPACITY`] counts per map and drops ended windows in the
//! same upkeep. `/metrics` reports the sizes
//! (`flowgate_rate_limit_keys`, `flowgate_auth_throttle_entries`) and the
//! attempts refused (`flowgate_auth_refused_total`).

pub mod address;
pub mod rate;
pub mod throttle;

use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::config::ServiceConfig;
use crate::ids::{ApiKeyId, ChannelId};
use rate::RateLimit;
use throttle::FailureThrottle;

/// Who a request to the API authenticated as, for its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bearer {
    Operator,
    Key(ApiKeyId),
}

/// The rate limits and throttles of the API and the console.
pub struct Admission {
    /// Per API key and for the operator, after authentication.
    pub callers: RateLimit<Bearer>,
    /// Per webhook channel, after the channel is found.
    pub channels: RateLimit<ChannelId>,
    /// Failed authentications to the API (`/v1/…`).
    pub api_failures: FailureThrottle,
    /// Failed console sign-ins. Apart from the API's: people type, and
    /// get few tries; an integration that keeps a revoked key in a loop
    /// must not lock its office out of the console.
    pub console_failures: FailureThrottle,
}

impl Admission {
    pub fn new(config: &ServiceConfig) -> Admission {
        let http = &config.http;
        let console = &config.console;
        Admission {
            callers: RateLimit::new(http.requests_per_second, http.burst),
            channels: RateLimit::new(
                http.webhook_requests_per_second,
                http.webhook_requests_per_second.saturating_mul(2),
            ),
            api_failures: FailureThrottle::new(
                http.auth_failures,
                Duration::from_secs(http.auth_failure_window_secs),
            ),
            console_failures: FailureThrottle::new(
                console.sign_in_failures,
                Duration::from_secs(console.sign_in_window_secs),
            ),
        }
    }

    /// Give back the memory of what is no longer needed: rate-limit cells
    /// at their full allowance, throttle windows that have ended.
    pub fn upkeep(&self, now: Instant) {
        self.callers.prune();
        self.channels.prune();
        self.api_failures.prune(now);
        self.console_failures.prune(now);
    }

    /// A collector of the sizes and refusals, read at each scrape.
    pub fn collector(self: &std::sync::Arc<Self>) -> Box<dyn Collector> {
        Box::new(AdmissionCollector(self.clone()))
    }
}

struct AdmissionCollector(std::sync::Arc<Admission>);

impl std::fmt::Debug for AdmissionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionCollector")
    }
}

impl Collector for AdmissionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let admission = &self.0;
        let gauge = ConstGauge::new(0i64);
        let mut keys = encoder.encode_descriptor(
            "rate_limit_keys",
            "Rate-limit cells held, by limiter (api: per key, webhook: per channel)",
            None,
            gauge.metric_type(),
        )?;
        for (limiter, len) in [
            ("api", admission.callers.len()),
            ("webhook", admission.channels.len()),
        ] {
            let labels = [("limiter", limiter)];
            ConstGauge::new(len as i64).encode(keys.encode_family(&labels)?)?;
        }
        let faces = [
            ("api", &admission.api_failures),
            ("console", &admission.console_failures),
        ];
        let mut entries = encoder.encode_descriptor(
            "auth_throttle_entries",
            "Failed-authentication counts held, by face and by what is counted",
            None,
            gauge.metric_type(),
        )?;
        for (face, throttle) in faces {
            let (addresses, key_ids) = throttle.len();
            for (by, len) in [("address", addresses), ("key", key_ids)] {
                let labels = [("face", face), ("by", by)];
                ConstGauge::new(len as i64).encode(entries.encode_family(&labels)?)?;
            }
        }
        let counter = ConstCounter::new(0u64);
        let mut refused = encoder.encode_descriptor(
            "auth_refused",
            "Authentication attempts refused unchecked after too many failures, by face",
            None,
            counter.metric_type(),
        )?;
        for (face, throttle) in faces {
            let labels = [("face", face)];
            ConstCounter::new(throttle.refused()).encode(refused.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
