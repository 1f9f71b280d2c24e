//! Cluster mode's foundation: several flowgate nodes sharing the work over
//! a NATS JetStream cluster (see ARCHITECTURE.md, "Cluster mode", and
//! issue #17).
//!
//! What exists (phase 1), each piece tested against real `nats-server`
//! processes (tests/e2e/cluster):
//! - [`config`]: the `[cluster]` section (servers, node name, partitions,
//!   replicas, lease TTL).
//! - [`link`]: a node's connection, with a runtime of its own so the
//!   synchronous store can call into it from any thread.
//! - [`partition`]: which partition a (tenant, contact) belongs to, by a
//!   keyed hash.
//! - [`lease`]: which node processes a partition, by leases in a KV bucket
//!   (compare-and-set, TTL, a fencing term).
//! - [`jetstream_log`]: a partition's durable log as a replicated stream,
//!   implementing the store's [`Log`](crate::store::log::Log) seam, fenced
//!   by the lease term; a record larger than a message (a plugin's
//!   component) is split into consecutive parts and put together on replay.
//! - [`key_store`]: the key ring's wrapped keys in a replicated KV bucket,
//!   implementing the ring's [`KeyStore`](crate::crypto::KeyStore) seam, so
//!   every node shares one ring (`KeyRing::new` over it) and a shredded key
//!   is gone for every node as soon as the shred returns.
//! - [`names`]: every stream, subject, bucket, key and header name, none of
//!   which carries anything about a tenant or contact.
//!
//! Not yet (phase 2): the embedded store over these logs, the rest of the
//! shared state in KV, partition ownership in the pipeline, and `flowgate
//! serve` in cluster mode — which refuses a `[cluster]` section until then.
//!
//! ```no_run
//! use flowgate::cluster::{
//!     ClusterLink, JetStreamLog, KeyBucketSettings, KvKeyStore, LeaseBucket, LogSettings,
//!     Partition,
//! };
//! use flowgate::crypto::{KeyRing, SecretKey};
//! use flowgate::store::log::Log;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let link = ClusterLink::connect_to(&["nats://127.0.0.1:4222".into()], None, "node-a")?;
//! let leases = LeaseBucket::open(&link, "node-a", std::time::Duration::from_secs(5), 3).await?;
//! if let Some(lease) = leases.acquire(Partition(7)).await? {
//!     // Blocking: from a thread, not a task (as the store's committer is).
//!     let log = JetStreamLog::open(link.clone(), Partition(7), &LogSettings::default(), lease.term())?;
//!     log.append(b"a sealed commit group")?;
//!     log.sync()?; // acknowledged by 2 of the 3 replicas
//! }
//! // Every node's ring over the one bucket (blocking, like the log).
//! let keys = KvKeyStore::open(link.clone(), &KeyBucketSettings::default())?;
//! let ring = KeyRing::new(Box::new(keys), SecretKey::generate());
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod jetstream_log;
pub mod key_store;
pub mod lease;
pub mod link;
pub mod names;
pub mod partition;

pub use config::ClusterConfig;
pub use jetstream_log::{JetStreamLog, LogSettings};
pub use key_store::{KeyBucketSettings, KvKeyStore};
pub use lease::{Lease, LeaseBucket, LeaseError};
pub use link::{ClusterLink, ConnectError};
pub use partition::{Partition, PartitionMap};
