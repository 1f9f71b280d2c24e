//! Checking a tenant's chain: every entry's link, hash and position, then
//! its end against the sealed head ([`super::head`]).

use serde::Serialize;

use super::head::{self, ChainEnd, HEAD_LOST, Sealed};
use super::{AuditEntry, ENTRY_PREFIX, GENESIS, entry_key, hash_by};
use crate::crypto::to_hex;
use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::store::Kind;

/// The result of checking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// Whether every link and hash holds and the chain ends where its
    /// sealed head says.
    pub intact: bool,
    /// Whether the newest entries are missing: the chain ends before the
    /// entry its sealed head names (`broken_at` is the first one missing).
    pub truncated: bool,
    /// The last entry as the sealed head records it; absent for a chain
    /// written before heads were kept and not added to since, or when the
    /// head is missing or does not open (then `intact` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// The first entry where the chain breaks, and why. A problem with the
    /// head alone has a `reason` but no `broken_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verification {
    fn broken(entries: u64, head: Option<u64>, at: Option<u64>, reason: String) -> Verification {
        Verification {
            entries,
            intact: false,
            truncated: false,
            head,
            broken_at: at,
            reason: Some(reason),
        }
    }
}

/// Walk a tenant's chain and check every link, hash and sequence number,
/// then its end against the sealed head. Detects edited entries (hash
/// mismatch), deleted or reordered entries (sequence gap, link mismatch),
/// entries that no longer open, entries moved from another tenant's chain
/// (hash rule 2 binds the tenant), the newest entries deleted (the chain
/// ends before its head: truncated), and a head that was deleted, altered
/// or lost before (an `audit.head-lost` entry).
pub fn verify(vault: &Vault, tenant: &TenantId) -> Result<Verification, DataError> {
    let sealed = head::read(vault, tenant)?;
    let head_seq = match sealed {
        Sealed::At(end) => Some(end.seq),
        Sealed::Missing | Sealed::Unreadable => None,
    };
    let (end, hash_version) = match walk(vault, tenant)? {
        Walked::Whole { end, hash_version } => (end, hash_version),
        Walked::Broken {
            checked,
            at,
            reason,
        } => {
            return Ok(Verification::broken(checked, head_seq, Some(at), reason));
        }
    };
    let checked = end.seq;
    let broken =
        |at: Option<u64>, reason: String| Ok(Verification::broken(checked, head_seq, at, reason));
    match sealed {
        Sealed::At(head) if head.seq > end.seq => {
            let missing = if head.seq == end.seq + 1 {
                format!("entry {} is", head.seq)
            } else {
                format!("entries {} to {} are", end.seq + 1, head.seq)
            };
            Ok(Verification {
                truncated: true,
                ..Verification::broken(
                    checked,
                    head_seq,
                    Some(end.seq + 1),
                    format!(
                        "the newest {missing} missing: the chain ends at entry {}, but its sealed head names entry {} (truncated)",
                        end.seq, head.seq
                    ),
                )
            })
        }
        Sealed::At(head) if head.seq < end.seq => broken(
            Some(head.seq + 1),
            format!(
                "entries after {} are not covered by the sealed head (added outside the service, or the head was put back from an older copy)",
                head.seq
            ),
        ),
        Sealed::At(head) if head.hash != end.hash => broken(
            Some(end.seq),
            "the last entry does not match the sealed head (replaced)".into(),
        ),
        Sealed::At(_) => Ok(Verification {
            entries: checked,
            intact: true,
            truncated: false,
            head: head_seq,
            broken_at: None,
            reason: None,
        }),
        // A chain with a rule-2 entry was written with a head all along.
        Sealed::Missing if hash_version >= 2 => broken(
            None,
            "the sealed head is missing (deleted): the newest entries may have been deleted too"
                .into(),
        ),
        Sealed::Missing => Ok(Verification {
            entries: checked,
            intact: true,
            truncated: false,
            head: None,
            broken_at: None,
            reason: None,
        }),
        Sealed::Unreadable => broken(
            None,
            "the sealed head does not open (altered or moved)".into(),
        ),
    }
}

/// How far the walk along the entries got.
enum Walked {
    /// Every entry holds: the end, and the newest hash rule met.
    Whole { end: ChainEnd, hash_version: u8 },
    /// Entries up to `checked` hold; `at` does not.
    Broken {
        checked: u64,
        at: u64,
        reason: String,
    },
}

fn walk(vault: &Vault, tenant: &TenantId) -> Result<Walked, DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let mut prev = GENESIS;
    let mut expected_seq = 1;
    let mut newest_rule = 1;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, Kind::Audit, ENTRY_PREFIX, after.as_deref(), 512)?;
        if page.is_empty() {
            return Ok(Walked::Whole {
                end: ChainEnd {
                    seq: expected_seq - 1,
                    hash: prev,
                },
                hash_version: newest_rule,
            });
        }
        for (key, sealed) in &page {
            let checked = expected_seq - 1;
            let broken = |at: u64, reason: String| {
                Ok(Walked::Broken {
                    checked,
                    at,
                    reason,
                })
            };
            let Ok(entry) =
                vault.open::<AuditEntry>(&keys.records, tenant, Kind::Audit, key, sealed)
            else {
                return broken(
                    expected_seq,
                    "entry does not open (altered or moved)".into(),
                );
            };
            if entry.seq != expected_seq || key.as_slice() != entry_key(entry.seq).as_slice() {
                return broken(
                    expected_seq,
                    format!(
                        "expected entry {expected_seq}, found {} (deleted or reordered)",
                        entry.seq
                    ),
                );
            }
            if entry.prev != to_hex(&prev) {
                return broken(
                    entry.seq,
                    "link to the previous entry does not match".into(),
                );
            }
            if entry.hash_version < newest_rule {
                return broken(
                    entry.seq,
                    format!(
                        "hashed by rule {} after an entry hashed by rule {newest_rule} (downgraded)",
                        entry.hash_version
                    ),
                );
            }
            let Some(hash) = hash_by(entry.hash_version, &prev, &entry.draft(*tenant), entry.seq)
            else {
                return broken(
                    entry.seq,
                    format!(
                        "hashed by rule {}, which this host does not know",
                        entry.hash_version
                    ),
                );
            };
            if to_hex(&hash) != entry.hash {
                return broken(
                    entry.seq,
                    "content does not match its hash (edited, or moved from another tenant)".into(),
                );
            }
            if entry.action == HEAD_LOST && entry.actor == super::Actor::System {
                return broken(
                    entry.seq,
                    format!(
                        "the sealed head could not be trusted when this entry was written ({}): entries before it may have been deleted",
                        entry.details["reason"]
                            .as_str()
                            .unwrap_or("no reason given")
                    ),
                );
            }
            newest_rule = entry.hash_version;
            prev = hash;
            expected_seq += 1;
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditDraft, HASH_VERSION, head};
    use crate::store::Batch;

    /// A vault with a tenant whose key exists.
    fn vault_with(tenants: &[TenantId]) -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        for tenant in tenants {
            vault.keys.create_tenant(tenant).unwrap();
        }
        (dir, vault)
    }

    fn draft(tenant: TenantId, n: u64) -> AuditDraft {
        AuditDraft::new(tenant, 1_000 + n, Actor::System, "test.step")
            .details(serde_json::json!({"n": n}))
    }

    /// Append `count` entries hashed by rule `version` after `end`, as the
    /// committer does (with the sealed head, from rule 2) or as it did
    /// before heads were kept (rule 1).
    fn append(vault: &Vault, tenant: TenantId, end: ChainEnd, count: u64, version: u8) -> ChainEnd {
        let keys = vault.keys.tenant(&tenant).unwrap();
        let mut batch = Batch::new();
        let mut end = end;
        for seq in end.seq + 1..=end.seq + count {
            let draft = draft(tenant, seq);
            let hash = hash_by(version, &end.hash, &draft, seq).unwrap();
            let (mut entry, _) = crate::audit::seal_entry(&end.hash, seq, &draft);
            entry.hash = to_hex(&hash);
            entry.hash_version = version;
            vault.stage(
                &mut batch,
                &keys.records,
                &tenant,
                Kind::Audit,
                &entry_key(seq),
                &entry,
            );
            end = ChainEnd { seq, hash };
        }
        if version >= 2 {
            head::stage(vault, &mut batch, &keys.records, &tenant, end);
        }
        vault.store.commit(&batch).unwrap();
        end
    }

    fn delete(vault: &Vault, tenant: TenantId, keys: impl IntoIterator<Item = Vec<u8>>) {
        let mut batch = Batch::new();
        for key in keys {
            batch.delete(tenant, Kind::Audit, key);
        }
        vault.store.commit(&batch).unwrap();
    }

    #[test]
    fn deleting_the_newest_entries_is_reported_as_truncation() {
        let tenant = TenantId::generate();
        let (_dir, vault) = vault_with(&[tenant]);
        append(&vault, tenant, ChainEnd::EMPTY, 9, HASH_VERSION);
        let whole = verify(&vault, &tenant).unwrap();
        assert!(whole.intact && !whole.truncated, "{whole:?}");
        assert_eq!((whole.entries, whole.head), (9, Some(9)));

        // What is left is a whole chain of six: only the head tells.
        delete(&vault, tenant, (7..=9).map(entry_key));
        let cut = verify(&vault, &tenant).unwrap();
        assert!(!cut.intact && cut.truncated, "{cut:?}");
        assert_eq!(
            (cut.entries, cut.head, cut.broken_at),
            (6, Some(9), Some(7))
        );
        let reason = cut.reason.unwrap();
        assert!(reason.contains("entries 7 to 9 are missing"), "{reason}");
        assert!(reason.contains("truncated"), "{reason}");
    }

    #[test]
    fn a_deleted_or_altered_head_is_reported() {
        let tenant = TenantId::generate();
        let (_dir, vault) = vault_with(&[tenant]);
        append(&vault, tenant, ChainEnd::EMPTY, 3, HASH_VERSION);
        // Another tenant's head, sealed for its own place, does not open here.
        let other = TenantId::generate();
        vault.keys.create_tenant(&other).unwrap();
        append(&vault, other, ChainEnd::EMPTY, 5, HASH_VERSION);
        let moved = vault.store.get(&other, Kind::Audit, b"h").unwrap().unwrap();
        let mut batch = Batch::new();
        batch.put(tenant, Kind::Audit, b"h".to_vec(), moved);
        vault.store.commit(&batch).unwrap();
        let altered = verify(&vault, &tenant).unwrap();
        assert!(!altered.intact && !altered.truncated, "{altered:?}");
        assert!(altered.reason.unwrap().contains("does not open"));

        delete(&vault, tenant, [b"h".to_vec()]);
        let missing = verify(&vault, &tenant).unwrap();
        assert!(!missing.intact, "{missing:?}");
        assert_eq!(
            (missing.entries, missing.head, missing.broken_at),
            (3, None, None)
        );
        assert!(missing.reason.unwrap().contains("head is missing"));
    }

    #[test]
    fn a_chain_from_before_heads_verifies_and_grows_by_tenant_bound_entries() {
        let tenant = TenantId::generate();
        let (_dir, vault) = vault_with(&[tenant]);
        // Written by an older host: rule 1, no head.
        let old = append(&vault, tenant, ChainEnd::EMPTY, 4, 1);
        let legacy = verify(&vault, &tenant).unwrap();
        assert!(legacy.intact, "{legacy:?}");
        assert_eq!((legacy.entries, legacy.head), (4, None));
        // The committer goes on after its last entry, with no notice.
        let resume = head::resume(&vault, &tenant, 2_000).unwrap();
        assert_eq!(
            resume,
            head::Resume {
                end: old,
                notice: None
            }
        );
        append(&vault, tenant, old, 2, HASH_VERSION);
        let grown = verify(&vault, &tenant).unwrap();
        assert!(grown.intact, "{grown:?}");
        assert_eq!((grown.entries, grown.head), (6, Some(6)));

        // A rule-1 entry after a rule-2 one is a downgrade.
        let keys = vault.keys.tenant(&tenant).unwrap();
        let mut last: AuditEntry = vault
            .read(&keys.records, &tenant, Kind::Audit, &entry_key(6))
            .unwrap()
            .unwrap();
        let prev = crate::crypto::from_hex::<32>(&last.prev).unwrap();
        last.hash_version = 1;
        last.hash = to_hex(&hash_by(1, &prev, &last.draft(tenant), 6).unwrap());
        let mut batch = Batch::new();
        vault.stage(
            &mut batch,
            &keys.records,
            &tenant,
            Kind::Audit,
            &entry_key(6),
            &last,
        );
        vault.store.commit(&batch).unwrap();
        let downgraded = verify(&vault, &tenant).unwrap();
        assert_eq!(downgraded.broken_at, Some(6), "{downgraded:?}");
        assert!(downgraded.reason.unwrap().contains("downgraded"));
    }

    #[test]
    fn an_entry_carried_into_another_tenants_chain_does_not_verify_there() {
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let (_dir, vault) = vault_with(&[a, b]);
        append(&vault, a, ChainEnd::EMPTY, 1, HASH_VERSION);
        // Someone with both tenants' keys moves A's first entry into B's
        // empty chain, sealed for its new place, with a head to match.
        let (keys_a, keys_b) = (
            vault.keys.tenant(&a).unwrap(),
            vault.keys.tenant(&b).unwrap(),
        );
        let entry: AuditEntry = vault
            .read(&keys_a.records, &a, Kind::Audit, &entry_key(1))
            .unwrap()
            .unwrap();
        let end = ChainEnd {
            seq: 1,
            hash: crate::crypto::from_hex::<32>(&entry.hash).unwrap(),
        };
        let mut batch = Batch::new();
        vault.stage(
            &mut batch,
            &keys_b.records,
            &b,
            Kind::Audit,
            &entry_key(1),
            &entry,
        );
        head::stage(&vault, &mut batch, &keys_b.records, &b, end);
        vault.store.commit(&batch).unwrap();
        let moved = verify(&vault, &b).unwrap();
        assert!(!moved.intact, "{moved:?}");
        assert_eq!(moved.broken_at, Some(1));
        assert!(moved.reason.unwrap().contains("moved from another tenant"));
    }
}
