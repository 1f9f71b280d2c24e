//! Every name flowgate gives a thing in NATS: streams, subjects, buckets,
//! keys and headers, in one place so a reviewer can check them at once.
//!
//! The rule they keep: a name holds a partition number, a random id or a
//! fixed word, never anything about a tenant or a contact. Subjects,
//! headers and keys are stored in clear by the servers (and shown by their
//! monitoring), unlike payloads, which are sealed before they get here.

use super::partition::Partition;
use crate::crypto::KeySpace;

/// The stream holding a partition's log.
pub fn log_stream(partition: Partition) -> String {
    format!("flowgate-log-{partition}")
}

/// The subjects of a partition's log stream (records and fences).
pub fn log_subjects(partition: Partition) -> String {
    format!("flowgate.log.{partition}.*")
}

/// The subject a partition's log records are published on.
pub fn log_record_subject(partition: Partition) -> String {
    format!("flowgate.log.{partition}.record")
}

/// The subject of a partition's fences: the record a new writer puts in
/// the log to shut out the writer before it.
pub fn log_fence_subject(partition: Partition) -> String {
    format!("flowgate.log.{partition}.fence")
}

/// The KV bucket of partition leases.
pub const LEASE_BUCKET: &str = "flowgate-leases";

/// A partition's key in the lease bucket.
pub fn lease_key(partition: Partition) -> String {
    format!("partition.{partition}")
}

/// On a fence and on every record: the lease term (fencing token) of the
/// writer, a number.
pub const FENCE_HEADER: &str = "Flowgate-Fence";

/// On each message of a log record split over several (a record larger
/// than the servers take in one message): which part it is, `<i>/<n>`,
/// counting from 1. A record in one message has no such header.
pub const PART_HEADER: &str = "Flowgate-Part";

/// The KV bucket of the key ring's wrapped tenant and contact keys.
pub const KEY_BUCKET: &str = "flowgate-keys";

/// The word naming a key space in the key bucket's keys.
pub fn key_space(space: KeySpace) -> &'static str {
    match space {
        KeySpace::Tenants => "tenants",
        KeySpace::Contacts => "contacts",
    }
}

/// A wrapped key's key in the key bucket: `<space>.<hex of its key>`. The
/// ring's keys are a tenant id, or a tenant id and a contact id: random
/// ids, never a number or a name.
pub fn wrapped_key(space: KeySpace, key: &[u8]) -> String {
    format!("{}.{}", key_space(space), flowgate_hex::to_hex(key))
}

/// The KV bucket of the cluster's nodes: node name → the URL other nodes
/// forward requests to (operator infrastructure, not personal data).
pub const MEMBERS_BUCKET: &str = "flowgate-nodes";

/// The KV bucket holding the last id range a lease holder claimed (one
/// key, a number).
pub const IDS_BUCKET: &str = "flowgate-ids";
