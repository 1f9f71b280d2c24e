//! Partition leases: which node processes a partition, kept in a
//! JetStream KV bucket (`flowgate-leases`, one key per partition).
//!
//! A lease is a key written with compare-and-set on its revision: acquiring
//! creates the key (refused while it exists), renewing rewrites it at the
//! revision the holder last wrote (refused once anyone else wrote it), and
//! releasing deletes it at that revision. The bucket keeps one revision per
//! key (history 1) for `ttl` (its `max_age`): a holder that stops renewing
//! — dead, paused, cut off — loses the key after `ttl`, and the next
//! acquire succeeds. A bucket-wide age, rather than per-message TTLs, is
//! enough because every lease has the same TTL, and works with every
//! JetStream server version.
//!
//! The revision at which a lease was acquired is its **term**: revisions
//! are the bucket stream's sequence, so a later holder's term is always
//! greater. The holder passes it to its writes — [`super::JetStreamLog`]
//! fences its log with it — so a holder that lost its lease and has not
//! noticed yet cannot commit after the new holder opened the log.
//!
//! The servers time a lease from when they stored it; the holder times it
//! from *before* it asked ([`Lease::held_until`]), so it always gives a
//! lease up before the servers would. Renew well within the TTL (every
//! third of it): one lost renewal must not cost the partition.
//!
//! The value of a key is the holder's node name; keys carry partition
//! numbers only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use super::link::{ClusterLink, retry_until};
use super::names;
use super::partition::Partition;

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease expired or another node holds it now: stop processing the
    /// partition.
    #[error("the lease of partition {0} is lost: it expired or another node took it")]
    Lost(Partition),
    /// The servers did not answer; the lease may or may not still be held
    /// (go by [`Lease::held_until`]).
    #[error("lease bucket: {what}")]
    Remote {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn remote(
    what: impl Into<String>,
    error: impl std::error::Error + Send + Sync + 'static,
) -> LeaseError {
    LeaseError::Remote {
        what: what.into(),
        source: Box::new(error),
    }
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    partition: Partition,
    term: u64,
    revision: u64,
    held_until: Instant,
}

impl Lease {
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The fencing token: the revision the lease was acquired at. Greater
    /// for every later holder of any partition.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The revision last written (by the acquire or the last renewal).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Until when this holder may act on the lease, by its own clock: the
    /// TTL counted from before the last successful acquire or renewal was
    /// sent, so never later than the servers' expiry.
    pub fn held_until(&self) -> Instant {
        self.held_until
    }
}

/// The lease bucket, as one node (the holder) sees it.
#[derive(Debug)]
pub struct LeaseBucket {
    store: kv::Store,
    holder: String,
    ttl: Duration,
    /// Kept alive with the bucket: the store's requests run on the link's
    /// connection, which ends with the link.
    _link: Arc<ClusterLink>,
}

impl LeaseBucket {
    /// Open (creating, or updating to this TTL and replica count) the lease
    /// bucket, for leases held by `holder` (a node name) that last `ttl`.
    pub async fn open(
        link: &Arc<ClusterLink>,
        holder: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<LeaseBucket, LeaseError> {
        let config = kv::Config {
            bucket: names::LEASE_BUCKET.to_owned(),
            description: "flowgate: which node processes each partition".to_owned(),
            history: 1,
            max_age: ttl,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let store = link
            .open_bucket(config, Instant::now() + Duration::from_secs(30))
            .await
            .map_err(|error| remote("opening the lease bucket", error))?;
        // A bucket just created has no leader on every server yet: its
        // first requests get "no responders". Wait until it answers a read
        // (a bounded while), so the first acquire is a real answer.
        retry_until(Instant::now() + Duration::from_secs(30), || {
            store.entry(names::lease_key(Partition(0)))
        })
        .await
        .map_err(|error| remote("reading the lease bucket", error))?;
        Ok(LeaseBucket {
            store,
            holder: holder.to_owned(),
            ttl,
            _link: link.clone(),
        })
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Take the lease of `partition` if no one holds it; `None` if someone
    /// does.
    pub async fn acquire(&self, partition: Partition) -> Result<Option<Lease>, LeaseError> {
        let asked = Instant::now();
        match self
            .store
            .create(names::lease_key(partition), self.holder.clone().into())
            .await
        {
            Ok(revision) => Ok(Some(Lease {
                partition,
                term: revision,
                revision,
                held_until: asked + self.ttl,
            })),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(remote(
                format!("acquiring the lease of partition {partition}"),
                error,
            )),
        }
    }

    /// Extend `lease` by the TTL, if it is still this holder's.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let asked = Instant::now();
        match self
            .store
            .update(
                names::lease_key(lease.partition),
                self.holder.clone().into(),
                lease.revision,
            )
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.held_until = asked + self.ttl;
                Ok(())
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(LeaseError::Lost(lease.partition))
            }
            Err(error) => Err(remote(
                format!("renewing the lease of partition {}", lease.partition),
                error,
            )),
        }
    }

    /// Give `lease` up, so another node need not wait for it to expire.
    /// [`LeaseError::Lost`] if it was no longer this holder's.
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        let key = names::lease_key(lease.partition);
        match self
            .store
            .delete_expect_revision(&key, Some(lease.revision))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) => {
                // The delete's error kinds do not tell a lost lease from a
                // failed request; the key does.
                match self.store.entry(&key).await {
                    Ok(Some(entry)) if entry.revision == lease.revision => Err(remote(
                        format!("releasing the lease of partition {}", lease.partition),
                        error,
                    )),
                    Ok(_) => Err(LeaseError::Lost(lease.partition)),
                    Err(_) => Err(remote(
                        format!("releasing the lease of partition {}", lease.partition),
                        error,
                    )),
                }
            }
        }
    }

    /// The node holding `partition`'s lease, if any (as the servers last
    /// replicated it: a hint for operators and rebalancing, not a lease).
    pub async fn holder(&self, partition: Partition) -> Result<Option<String>, LeaseError> {
        match self.store.entry(names::lease_key(partition)).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Ok(Some(String::from_utf8_lossy(&entry.value).into_owned()))
            }
            Ok(_) => Ok(None),
            Err(error) => Err(remote(
                format!("reading the lease of partition {partition}"),
                error,
            )),
        }
    }
}
