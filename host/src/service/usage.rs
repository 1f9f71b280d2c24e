//! What a tenant's flow did over time, per installation: events received,
//! plugin calls, fuel burnt, actions refused, failures and circuit
//! breakers. Read back from the audit trail (which records every call with
//! its fuel) and from the runtime's breakers (which hold their state in
//! memory), so it needs no counters of its own and agrees with the trail.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::ServiceInner;
use super::caller::TenantCaller;
use super::error::ServiceResult;
use crate::audit::{self, Actor, DRAFT_SLACK_SECS, Walk};
use crate::tenancy::api_keys::Scope;
use crate::tenancy::installations::Installation;

/// Entries a usage report reads at most; a busier window is reported as
/// incomplete (its oldest buckets undercounted) rather than read for long.
pub const ENTRY_BUDGET: u64 = 200_000;

/// The time a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    /// The last 24 hours, by hour.
    Day,
    /// The last 7 days, by 6 hours.
    Week,
    /// The last 30 days, by day.
    Month,
}

impl Window {
    /// The window a query names (`day`, `week`, `month`).
    pub fn parse(name: &str) -> Option<Window> {
        match name {
            "day" => Some(Window::Day),
            "week" => Some(Window::Week),
            "month" => Some(Window::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }

    /// (bucket length in seconds, number of buckets).
    pub fn buckets(self) -> (u64, usize) {
        match self {
            Window::Day => (3_600, 24),
            Window::Week => (6 * 3_600, 28),
            Window::Month => (86_400, 30),
        }
    }
}

/// Counts per bucket, oldest bucket first.
pub type Series = Vec<u64>;

/// One installation's activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallationUsage {
    pub installation: String,
    /// The plugin's id (from the installation, or from the trail for an
    /// installation since removed).
    pub plugin: String,
    /// Whether it still exists and is enabled.
    pub enabled: bool,
    pub removed: bool,
    /// Calls that ran (including failed ones).
    pub calls: Series,
    pub fuel: Series,
    pub failures: Series,
    /// Actions the host refused (not granted, opted out, window closed…).
    pub refused: Series,
    /// Times the contact's state kept the plugin from running (restricted,
    /// objected).
    pub skipped: Series,
    /// Times its circuit breaker opened.
    pub breaker_opened: Series,
    /// Whether its breaker is open now.
    pub breaker_open: bool,
}

impl InstallationUsage {
    fn new(installation: String, buckets: usize) -> InstallationUsage {
        InstallationUsage {
            installation,
            calls: vec![0; buckets],
            fuel: vec![0; buckets],
            failures: vec![0; buckets],
            refused: vec![0; buckets],
            skipped: vec![0; buckets],
            breaker_opened: vec![0; buckets],
            ..InstallationUsage::default()
        }
    }
}

/// A tenant's activity over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub window: Window,
    /// Start of the first bucket (seconds since the Unix epoch).
    pub from: u64,
    pub bucket_secs: u64,
    /// Messages and delivery statuses received.
    pub events: Series,
    /// Installations in flow order, then removed ones seen in the window.
    pub installations: Vec<InstallationUsage>,
    /// False when the window held more entries than a report reads: the
    /// oldest buckets then undercount.
    pub complete: bool,
}

/// The tenant's activity over `window`, ending now.
pub fn report(
    service: &ServiceInner,
    caller: &TenantCaller,
    window: Window,
) -> ServiceResult<UsageReport> {
    caller.require(Scope::Read)?;
    let (bucket_secs, buckets) = window.buckets();
    let now = service.clock.now();
    // Buckets end at the next whole bucket after now, so the last one is
    // the current hour (or day) and they line up with the clock.
    let end = (now / bucket_secs + 1) * bucket_secs;
    let from = end - bucket_secs * buckets as u64;
    let bucket_of = |at: u64| -> Option<usize> {
        (at >= from && at < end).then(|| ((at - from) / bucket_secs) as usize)
    };

    let open_now = service
        .runtime
        .breakers()
        .open_installations(Instant::now());
    let mut by_installation: BTreeMap<String, InstallationUsage> = BTreeMap::new();
    let mut order = Vec::new();
    for installation in Installation::list(&service.vault, &caller.tenant)? {
        let id = installation.id.to_string();
        let mut usage = InstallationUsage::new(id.clone(), buckets);
        usage.plugin = installation.plugin_id.clone();
        usage.enabled = installation.enabled;
        usage.breaker_open = open_now.contains(&id);
        order.push(id.clone());
        by_installation.insert(id, usage);
    }

    let mut events = vec![0; buckets];
    let stop = from.saturating_sub(DRAFT_SLACK_SECS);
    let unfinished = audit::walk_back(
        &service.vault,
        &caller.tenant,
        None,
        ENTRY_BUDGET,
        |entry| {
            if entry.at < stop {
                return Walk::Stop;
            }
            let Some(bucket) = bucket_of(entry.at) else {
                return Walk::On;
            };
            let installation = match (&entry.actor, entry.action.as_str()) {
                (_, "message.received" | "message.status") => {
                    events[bucket] += 1;
                    return Walk::On;
                }
                (Actor::Installation(id), _) => id.clone(),
                (Actor::System, "breaker.changed") => {
                    match entry.details.get("installation").and_then(|i| i.as_str()) {
                        Some(id) => id.to_owned(),
                        None => return Walk::On,
                    }
                }
                _ => return Walk::On,
            };
            let usage = by_installation
                .entry(installation.clone())
                .or_insert_with(|| {
                    let mut usage = InstallationUsage::new(installation, buckets);
                    usage.removed = true;
                    usage
                });
            if usage.plugin.is_empty()
                && let Some(plugin) = entry.details.get("plugin").and_then(|p| p.as_str())
            {
                usage.plugin = plugin.to_owned();
            }
            let fuel = entry
                .details
                .get("fuel")
                .and_then(|f| f.as_u64())
                .unwrap_or(0);
            match entry.action.as_str() {
                "plugin.invoked" => {
                    usage.calls[bucket] += 1;
                    usage.fuel[bucket] += fuel;
                }
                "plugin.failed" => {
                    usage.calls[bucket] += 1;
                    usage.failures[bucket] += 1;
                    usage.fuel[bucket] += fuel;
                }
                "plugin.skipped" => usage.skipped[bucket] += 1,
                "action.dropped" => usage.refused[bucket] += 1,
                "breaker.changed"
                    if entry.details.get("transition").and_then(|t| t.as_str())
                        == Some("opened") =>
                {
                    usage.breaker_opened[bucket] += 1;
                }
                _ => {}
            }
            Walk::On
        },
    )?;

    let mut installations: Vec<InstallationUsage> = order
        .iter()
        .filter_map(|id| by_installation.remove(id))
        .collect();
    installations.extend(by_installation.into_values());
    Ok(UsageReport {
        window,
        from,
        bucket_secs,
        events,
        installations,
        complete: unfinished.is_none(),
    })
}
