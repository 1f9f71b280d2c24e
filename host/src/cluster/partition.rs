//! Which partition a contact's events belong to: a keyed hash of tenant and
//! contact, reduced to `0..P`.
//!
//! Every event of one contact lands in one partition, and one node at a
//! time processes a partition, so a contact's events keep their order
//! (a STOP is seen before the message after it) whichever node took the
//! webhook. The hash is keyed with a key derived from the master key, which
//! every node of a cluster holds: without it, a partition number says
//! nothing about which contacts it holds, and no one can pick phone
//! numbers that pile onto one partition. Only the partition number leaves
//! the node (in stream names, subjects and lease keys), never the
//! identifier or its hash.

use std::fmt;

use crate::crypto::SecretKey;
use crate::ids::TenantId;

/// A partition of the work, `0..P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Maps (tenant, contact) to its partition. Every node must build it from
/// the same master key and partition count, or they disagree about who
/// processes what.
pub struct PartitionMap {
    key: [u8; 32],
    count: u32,
}

impl fmt::Debug for PartitionMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionMap")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl PartitionMap {
    /// The map for `count` partitions (at least 1), keyed by a subkey of
    /// the master key.
    pub fn new(master: &SecretKey, count: u32) -> PartitionMap {
        assert!(count > 0, "a cluster has at least one partition");
        PartitionMap {
            key: master.derive_32("flowgate 2026 cluster partitions"),
            count,
        }
    }

    /// How many partitions there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Every partition, in order.
    pub fn all(&self) -> impl Iterator<Item = Partition> + use<> {
        (0..self.count).map(Partition)
    }

    /// The partition of `contact` (its stable identifier, the same bytes
    /// whichever node or webhook names it) in `tenant`.
    pub fn partition(&self, tenant: &TenantId, contact: &[u8]) -> Partition {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(tenant.as_bytes());
        // Length-prefixed, so no two (tenant, contact) pairs hash the same
        // bytes.
        hasher.update(&(contact.len() as u64).to_le_bytes());
        hasher.update(contact);
        let hash = hasher.finalize();
        let wide = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        // Multiply-shift instead of `%`: no bias towards low partitions
        // worth speaking of, and no division.
        Partition(((u128::from(wide) * u128::from(self.count)) >> 64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_always_lands_in_the_same_partition_and_contacts_spread_evenly() {
        let master = SecretKey::generate();
        let map = PartitionMap::new(&master, 16);
        let tenant = TenantId::generate();
        let again = PartitionMap::new(&master, 16);
        let mut counts = [0u32; 16];
        for n in 0..16_000u32 {
            let contact = format!("+4915{n:08}");
            let partition = map.partition(&tenant, contact.as_bytes());
            assert_eq!(partition, again.partition(&tenant, contact.as_bytes()));
            counts[partition.0 as usize] += 1;
        }
        // 1,000 expected in each; a fair hash stays well within ±20 %.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_partition_depends_on_the_key_and_the_tenant() {
        let tenant = TenantId::generate();
        let other = TenantId::generate();
        let a = PartitionMap::new(&SecretKey::generate(), 1024);
        let b = PartitionMap::new(&SecretKey::generate(), 1024);
        let differs = |f: &dyn Fn(&[u8]) -> bool| {
            (0..64u32)
                .filter(|n| f(format!("contact {n}").as_bytes()))
                .count()
        };
        // With 1,024 partitions, two independent draws agree about 1 time
        // in 1,024: 64 contacts agreeing everywhere means the key or the
        // tenant was ignored.
        assert!(differs(&|c| a.partition(&tenant, c) != b.partition(&tenant, c)) > 50);
        assert!(differs(&|c| a.partition(&tenant, c) != a.partition(&other, c)) > 50);
        assert!(a.all().count() == 1024 && a.all().all(|p| p.0 < 1024));
    }
}
