//! Failed authentications: throttled, and written to the audit trail
//! counted rather than one by one. The API and the console both come
//! through here, each with its own throttle ([`crate::admission`]).
//!
//! A failed authentication with a token naming an existing key is its
//! tenant's business: the tenant's trail shows it as `auth.failed`, its
//! actor the key (through the API or the console). Written per attempt,
//! each was a commit through the single committer, so anyone who knew a
//! key id could make the service write as fast as they could send. Now the
//! failures of one key through one face are counted in memory and written
//! as one entry per period (`http.auth_failure_audit_secs`): by the
//! service's upkeep once the period has passed, at the key's next failure
//! after it, or at shutdown. Its details:
//!
//! ```json
//! {"failures": 3, "first_at": 1760000000, "last_at": 1760000002,
//!  "sources": ["ps_…"], "more_sources": false}
//! ```
//!
//! Attempts the throttle refused unchecked are not counted here (they are
//! in `flowgate_auth_refused_total`): finding whose key they name is the
//! work the throttle spares.
//!
//! Client addresses are personal data, and the trail holds none: a source
//! is a keyed hash of a client's address (an IPv6 client's /64) under the
//! tenant's pseudonym key, as contacts are named in the trail. The same
//! client is the same source throughout one tenant's trail, so the tenant
//! can tell one source from many and follow one across entries; without
//! the tenant's key (shredded with the tenant) a source names nobody. An
//! entry keeps at most [`SOURCES`] of them, and says whether there were
//! more.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::ServiceInner;
use super::caller::Face;
use crate::admission::address::ClientAddress;
use crate::admission::throttle::{FailureThrottle, Throttled};
use crate::audit::{Actor, AuditDraft};
use crate::ids::{ApiKeyId, TenantId};
use crate::store::Kind;
use crate::tenancy::api_keys;

/// Sources kept per entry.
pub const SOURCES: usize = 8;

/// Keys with failures counted and not yet written, at most. Only keys that
/// exist are counted, so this is reached only by a host with that many
/// keys under attack at once; the oldest count is then written early.
const CAPACITY: usize = 10_000;

/// The failures of one key through one face, since `first_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Count {
    first_at: u64,
    last_at: u64,
    failures: u64,
    sources: Vec<ClientAddress>,
    more_sources: bool,
}

type Counted = (TenantId, ApiKeyId, Face);

/// A count to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tallied {
    tenant: TenantId,
    key: ApiKeyId,
    face: Face,
    count: Count,
}

/// The counts not yet written.
pub struct FailureTally {
    period_secs: u64,
    open: Mutex<HashMap<Counted, Count>>,
}

impl FailureTally {
    /// One entry per key and face per `period_secs`.
    pub fn new(period_secs: u64) -> FailureTally {
        FailureTally {
            period_secs: period_secs.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Counted, Count>> {
        self.open.lock().expect("failure tally lock")
    }

    /// Count a failure of `key` (of `tenant`) through `face` from
    /// `address` at `now`: a count to write now, if this failure ended
    /// one (the key's period had passed, or the tally was full).
    pub fn count(
        &self,
        tenant: TenantId,
        key: ApiKeyId,
        face: Face,
        address: ClientAddress,
        now: u64,
    ) -> Option<Tallied> {
        let mut open = self.lock();
        let id = (tenant, key, face);
        let mut ended = None;
        if open
            .get(&id)
            .is_some_and(|count| count.first_at + self.period_secs <= now)
        {
            ended = open.remove(&id).map(|count| (id, count));
        } else if !open.contains_key(&id)
            && open.len() >= CAPACITY
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, count)| count.first_at)
                .map(|(id, _)| *id)
        {
            ended = open.remove(&oldest).map(|count| (oldest, count));
        }
        let count = open.entry(id).or_insert(Count {
            first_at: now,
            last_at: now,
            failures: 0,
            sources: Vec::new(),
            more_sources: false,
        });
        count.failures += 1;
        count.last_at = now;
        if !count.sources.contains(&address) {
            if count.sources.len() < SOURCES {
                count.sources.push(address);
            } else {
                count.more_sources = true;
            }
        }
        ended.map(|((tenant, key, face), count)| Tallied {
            tenant,
            key,
            face,
            count,
        })
    }

    /// Take the counts whose period has passed at `now`; every count with
    /// `all` (at shutdown).
    pub fn take_due(&self, now: u64, all: bool) -> Vec<Tallied> {
        let mut open = self.lock();
        let due: Vec<Counted> = open
            .iter()
            .filter(|(_, count)| all || count.first_at + self.period_secs <= now)
            .map(|(id, _)| *id)
            .collect();
        let taken = due
            .into_iter()
            .filter_map(|id| open.remove(&id).map(|count| (id, count)))
            .map(|((tenant, key, face), count)| Tallied {
                tenant,
                key,
                face,
                count,
            })
            .collect();
        open.shrink_to_fit();
        taken
    }

    /// Counts held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

fn throttle(service: &ServiceInner, face: Face) -> &FailureThrottle {
    match face {
        Face::Api => &service.admission.api_failures,
        Face::Console => &service.admission.console_failures,
    }
}

/// Whether an attempt from `address` with `token` through `face` may be
/// checked now: refused, unchecked, while the address or the key id the
/// token names has used up its allowance of failures.
pub fn admit(
    service: &ServiceInner,
    face: Face,
    address: &ClientAddress,
    token: &str,
) -> Result<(), Throttled> {
    let key = api_keys::key_id_of(token);
    throttle(service, face)
        .check(address, key.as_ref(), Instant::now())
        .inspect_err(|_| tracing::debug!("authentication refused unchecked: too many failures"))
}

/// Count a failed authentication from `address` with `token` through
/// `face`: against the address and the key id in the throttle, and, when
/// the token names an existing key, in its tenant's tally (written when
/// the count's period ends).
pub async fn record(service: &ServiceInner, face: Face, address: &ClientAddress, token: &str) {
    let key = api_keys::key_id_of(token);
    throttle(service, face).failed(address, key.as_ref(), Instant::now());
    let Some(key) = key else {
        tracing::info!("authentication with a malformed token");
        return;
    };
    let tenant = service
        .vault
        .store
        .get(&TenantId::SYSTEM, Kind::ApiKeys, key.as_bytes())
        .ok()
        .flatten()
        .and_then(|t| TenantId::from_slice(&t));
    tracing::info!("tenant authentication failed");
    let Some(tenant) = tenant else { return };
    let now = service.clock.now();
    if let Some(ended) = service.failed_auth.count(tenant, key, face, *address, now) {
        write(service, vec![ended]).await;
    }
}

/// Write the counts whose period has passed; every count with `all`.
pub async fn flush(service: &ServiceInner, all: bool) {
    let due = service.failed_auth.take_due(service.clock.now(), all);
    if !due.is_empty() {
        write(service, due).await;
    }
}

/// Write counts as `auth.failed` entries, one commit for all of them.
async fn write(service: &ServiceInner, tallied: Vec<Tallied>) {
    let drafts: Vec<AuditDraft> = tallied
        .into_iter()
        .filter_map(|tallied| draft(service, tallied))
        .collect();
    if drafts.is_empty() {
        return;
    }
    if let Err(error) = service.record(drafts).await {
        tracing::warn!(%error, "failed authentications could not be audited");
    }
}

/// The entry of a count; `None` when the tenant is gone meanwhile.
fn draft(service: &ServiceInner, tallied: Tallied) -> Option<AuditDraft> {
    let Tallied {
        tenant,
        key,
        face,
        count,
    } = tallied;
    let keys = service.vault.keys.tenant(&tenant).ok()?;
    let sources: Vec<String> = count
        .sources
        .iter()
        .map(|address| crate::view::pseudonym(&keys.pseudonyms, "client", address.as_bytes()))
        .collect();
    let actor = match face {
        Face::Api => Actor::ApiKey(key.to_string()),
        Face::Console => Actor::Console(key.to_string()),
    };
    Some(
        AuditDraft::new(tenant, count.last_at, actor, "auth.failed").details(serde_json::json!({
            "failures": count.failures,
            "first_at": count.first_at,
            "last_at": count.last_at,
            "sources": sources,
            "more_sources": count.more_sources,
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_count_per_key_and_face_per_period() {
        let tally = FailureTally::new(60);
        let (tenant, key) = (TenantId::generate(), ApiKeyId::generate());
        let from = |n: u8| ClientAddress::V4([10, 0, 0, n]);
        for n in 0..20u8 {
            assert_eq!(tally.count(tenant, key, Face::Api, from(n), 1_000), None);
        }
        // Another face is another count.
        assert_eq!(
            tally.count(tenant, key, Face::Console, from(1), 1_010),
            None
        );
        assert!(tally.take_due(1_059, false).is_empty());
        // The key's next failure after its period ends the count…
        let ended = tally.count(tenant, key, Face::Api, from(1), 1_060).unwrap();
        assert_eq!(ended.count.failures, 20);
        assert_eq!(ended.count.sources.len(), SOURCES);
        assert!(ended.count.more_sources);
        // …and starts the next one; the upkeep takes what is due.
        let due = tally.take_due(1_070, false);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].face, due[0].count.failures), (Face::Console, 1));
        let rest = tally.take_due(1_070, true);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].count.failures, 1);
        assert!(tally.is_empty());
    }
}
