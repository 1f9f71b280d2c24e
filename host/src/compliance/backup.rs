//! Backups of the records: a consistent snapshot taken while the service
//! runs, and a restore that never brings an erased contact back.
//!
//! A backup holds the records exactly as stored — sealed — and **no keys**:
//! the key ring lives apart and is not part of a backup. A restore puts the
//! records back and then removes every record whose key is gone (contacts
//! erased, tenants deleted since the backup was taken); those records could
//! not be opened anyway, and removing them leaves no trace of them.
//!
//! File format (version 1): the line `FLOWGATE-BACKUP-1\n`, then records
//! `[kind name length u8][kind name][key length u32 LE][key][value length
//! u32 LE][value]`, then a zero byte, then the blake3 hash (32 bytes) of
//! everything before it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::data::{DataError, Vault};
use crate::ids::{ContactId, TenantId};
use crate::store::{Kind, Store};

const MAGIC: &[u8] = b"FLOWGATE-BACKUP-1\n";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0} is not a flowgate backup (or a newer version)")]
    NotABackup(String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
}

/// What a backup holds.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct BackupSummary {
    pub records: u64,
    pub bytes: u64,
    /// blake3 of the file's content, hex.
    pub checksum: String,
}

/// A writer that hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write a snapshot of `store` to `path` (through a temporary file, so an
/// interrupted backup never looks complete). Run it where no write can
/// interleave (the committer's exclusive section) for a consistent copy.
pub fn create(store: &dyn Store, path: &Path) -> Result<BackupSummary, BackupError> {
    let partial = path.with_extension("partial");
    // Only the service's user may read a backup, whatever the umask: it
    // holds every tenant's sealed records and wrapped keys.
    // (A partial file a crash left keeps its mode: start afresh.)
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&partial)?;
    let mut out = Hashing {
        inner: BufWriter::new(file),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    out.write_all(MAGIC)?;
    let records = store.export_raw(&mut |kind, key, value| {
        let name = kind.name().as_bytes();
        out.write_all(&[name.len() as u8])?;
        out.write_all(name)?;
        out.write_all(&(key.len() as u32).to_le_bytes())?;
        out.write_all(key)?;
        out.write_all(&(value.len() as u32).to_le_bytes())?;
        out.write_all(value)
    })?;
    out.write_all(&[0])?;
    let checksum = out.hasher.finalize();
    let bytes = out.bytes + 32;
    let mut file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.write_all(checksum.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(BackupSummary {
        records,
        bytes,
        checksum: checksum.to_hex().to_string(),
    })
}

fn read_exact_or(reader: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    reader
        .read_exact(buf)
        .map_err(|_| BackupError::Damaged(format!("truncated while reading {what}")))
}

/// Receives the records read from a backup.
type RecordVisitor<'a> = dyn FnMut(Kind, &[u8], &[u8]) -> Result<(), BackupError> + 'a;

/// Read a backup, calling `record` for each record. Verifies the checksum
/// at the end; with `record` doing nothing this is a verification pass.
fn read(path: &Path, record: &mut RecordVisitor<'_>) -> Result<u64, BackupError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size < (MAGIC.len() + 33) as u64 {
        return Err(BackupError::NotABackup(path.display().to_string()));
    }
    let mut reader = BufReader::new(file).take(size - 32);
    let mut hasher = blake3::Hasher::new();
    let mut magic = vec![0u8; MAGIC.len()];
    read_exact_or(&mut reader, &mut magic, "the header")?;
    if magic != MAGIC {
        return Err(BackupError::NotABackup(path.display().to_string()));
    }
    hasher.update(&magic);
    let mut count = 0;
    loop {
        let mut len = [0u8; 1];
        read_exact_or(&mut reader, &mut len, "a record")?;
        hasher.update(&len);
        if len[0] == 0 {
            break;
        }
        let mut name = vec![0u8; len[0] as usize];
        read_exact_or(&mut reader, &mut name, "a kind")?;
        hasher.update(&name);
        let kind = std::str::from_utf8(&name)
            .ok()
            .and_then(Kind::from_name)
            .ok_or_else(|| BackupError::Damaged("unknown record kind".into()))?;
        let mut fields = [Vec::new(), Vec::new()];
        for field in &mut fields {
            let mut len = [0u8; 4];
            read_exact_or(&mut reader, &mut len, "a length")?;
            hasher.update(&len);
            let len = u32::from_le_bytes(len) as usize;
            if len > 64 << 20 {
                return Err(BackupError::Damaged("a record longer than 64 MiB".into()));
            }
            field.resize(len, 0);
            read_exact_or(&mut reader, field, "a record")?;
            hasher.update(field);
        }
        record(kind, &fields[0], &fields[1])?;
        count += 1;
    }
    let mut file = reader.into_inner();
    let mut expected = [0u8; 32];
    file.read_exact(&mut expected)?;
    if hasher.finalize().as_bytes() != &expected {
        return Err(BackupError::Damaged("the checksum does not match".into()));
    }
    Ok(count)
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreSummary {
    pub records: u64,
    /// Records removed because their tenant or contact key no longer
    /// exists (deleted tenants, erased contacts).
    pub unrecoverable_removed: u64,
}

/// Replace the vault's records with a backup's. The backup is verified in
/// full before anything is changed. The key ring is not touched: records
/// of tenants and contacts whose keys are gone are removed afterwards.
pub fn restore(vault: &Vault, path: &Path) -> Result<RestoreSummary, BackupError> {
    read(path, &mut |_, _, _| Ok(()))?;
    let store = vault.store.as_ref();
    store.clear_all()?;
    let records = read(path, &mut |kind, key, value| {
        Ok(store.import_raw(kind, key, value)?)
    })?;
    let removed = remove_unrecoverable(vault)?;
    vault.flush()?;
    Ok(RestoreSummary {
        records,
        unrecoverable_removed: removed,
    })
}

/// Remove records that can no longer be opened: of tenants without a key,
/// and contact-scoped records of contacts without a key.
pub fn remove_unrecoverable(vault: &Vault) -> Result<u64, BackupError> {
    let store = vault.store.as_ref();
    let mut removed = 0;
    let tenant_alive =
        |raw: &[u8]| -> Result<bool, BackupError> {
            let Some(tenant) = raw.get(..16).and_then(TenantId::from_slice) else {
                return Ok(false);
            };
            Ok(tenant == TenantId::SYSTEM
                || vault.keys.has_tenant(&tenant).map_err(DataError::from)?)
        };
    let contact_alive = |tenant: &[u8], contact: Option<&[u8]>| -> Result<bool, BackupError> {
        let (Some(tenant), Some(contact)) = (
            TenantId::from_slice(tenant),
            contact.and_then(ContactId::from_slice),
        ) else {
            return Ok(true);
        };
        if !vault.keys.has_tenant(&tenant).map_err(DataError::from)? {
            return Ok(false);
        }
        Ok(vault
            .keys
            .contact(&tenant, &contact)
            .map_err(DataError::from)?
            .is_some())
    };
    for kind in Kind::ALL {
        for raw in store.raw_keys(kind)? {
            let (tenant, key) = raw.split_at(16.min(raw.len()));
            let keep = if !tenant_alive(&raw)? {
                false
            } else if TenantId::from_slice(tenant) == Some(TenantId::SYSTEM) {
                match kind {
                    // shard ‖ seq ‖ tenant ‖ contact: an item of an erased
                    // contact would bring the contact back if processed.
                    Kind::Inbox => {
                        contact_alive(key.get(9..25).unwrap_or_default(), key.get(25..41))?
                    }
                    // seq ‖ tenant ‖ contact
                    Kind::Outbox => {
                        contact_alive(key.get(8..24).unwrap_or_default(), key.get(24..40))?
                    }
                    _ => true,
                }
            } else {
                match kind {
                    Kind::Contacts => contact_alive(tenant, Some(key))?,
                    Kind::PluginState => contact_alive(tenant, key.get(..16))?,
                    Kind::Messages if key.first() == Some(&b'm') => {
                        contact_alive(tenant, key.get(1..17))?
                    }
                    Kind::ContactIndex => {
                        let target = store.get(
                            &TenantId::from_slice(tenant).expect("16 bytes"),
                            kind,
                            key,
                        )?;
                        contact_alive(tenant, target.as_deref())?
                    }
                    // Retention index entries name a contact's records
                    // (and when it wrote): class ‖ time ‖ target.
                    Kind::Expiry => match crate::data::expiry::target_contact(key) {
                        Some(contact) => contact_alive(tenant, Some(contact))?,
                        None => true,
                    },
                    _ => true,
                }
            };
            if !keep {
                store.delete_raw(kind, &raw)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;

    #[test]
    fn restore_then_drop_does_not_hang_with_many_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.fgb");
        let data = dir.path().join("data");
        let (done, finished) = std::sync::mpsc::channel();
        let (worker_data, worker_path) = (data.clone(), path.clone());
        // On a thread, so that a hang fails the test instead of stalling
        // the run.
        let worker = std::thread::spawn(move || {
            let vault = crate::data::test_vault(&worker_data);
            let tenant = TenantId::generate();
            vault.keys.create_tenant(&tenant).unwrap();
            for chunk in 0..50u32 {
                let mut batch = Batch::new();
                for i in 0..200u32 {
                    batch.put(
                        tenant,
                        Kind::Messages,
                        [chunk.to_be_bytes(), i.to_be_bytes()].concat(),
                        vec![7; 300],
                    );
                }
                vault.store.commit(&batch).unwrap();
            }
            create(vault.store.as_ref(), &worker_path).unwrap();
            let restored = restore(&vault, &worker_path).unwrap();
            drop(vault);
            let _ = done.send(restored);
        });
        let restored = match finished.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(restored) => restored,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("restoring 10,000 records and closing the store took over two minutes")
            }
            // The thread panicked: its panic is the failure.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(worker.join().unwrap_err())
            }
        };
        worker.join().unwrap();
        assert_eq!(restored.records, 10_000);
        assert_eq!(restored.unrecoverable_removed, 0);
        // Closed cleanly: opened again, every record is there.
        let vault = crate::data::test_vault(&data);
        assert_eq!(vault.store.count(Kind::Messages), 10_000);
    }

    #[test]
    fn a_backup_round_trips_and_damage_is_detected_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(&dir.path().join("data"));
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let mut batch = Batch::new();
        batch.put(tenant, Kind::Audit, b"e1".to_vec(), b"sealed".to_vec());
        vault.store.commit(&batch).unwrap();
        let path = dir.path().join("backup.fgb");
        let summary = create(vault.store.as_ref(), &path).unwrap();
        assert_eq!(summary.records, 1);

        let mut damaged = std::fs::read(&path).unwrap();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        let damaged_path = dir.path().join("damaged.fgb");
        std::fs::write(&damaged_path, damaged).unwrap();
        assert!(matches!(
            restore(&vault, &damaged_path),
            Err(BackupError::Damaged(_))
        ));
        assert_eq!(vault.store.count(Kind::Audit), 1, "nothing changed");

        let mut batch = Batch::new();
        batch.delete(tenant, Kind::Audit, b"e1".to_vec());
        vault.store.commit(&batch).unwrap();
        let restored = restore(&vault, &path).unwrap();
        assert_eq!(restored.records, 1);
        assert_eq!(
            vault.store.get(&tenant, Kind::Audit, b"e1").unwrap(),
            Some(b"sealed".to_vec())
        );
        std::fs::write(dir.path().join("junk"), b"hello").unwrap();
        assert!(matches!(
            restore(&vault, &dir.path().join("junk")),
            Err(BackupError::NotABackup(_))
        ));
    }

    #[test]
    fn a_restore_drops_what_an_erased_contact_left_queued_and_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(&dir.path().join("data"));
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let (erased, kept) = (ContactId::generate(), ContactId::generate());
        for contact in [&erased, &kept] {
            vault.keys.create_contact(&tenant, contact).unwrap();
        }
        // Each contact: an acknowledged delivery still in the inbox (key
        // shard ‖ seq ‖ tenant ‖ contact) and a message's retention-index
        // entry (class ‖ time ‖ `m` ‖ contact ‖ seq).
        let mut batch = Batch::new();
        for (seq, contact) in [(1u64, &erased), (2, &kept)] {
            let inbox_key = [
                &[7u8][..],
                &seq.to_be_bytes(),
                tenant.as_bytes(),
                contact.as_bytes(),
            ]
            .concat();
            batch.put(TenantId::SYSTEM, Kind::Inbox, inbox_key, b"sealed".to_vec());
            let target = [b"m".as_slice(), contact.as_bytes(), &seq.to_be_bytes()].concat();
            crate::compliance::retention::stage_index(
                &mut batch,
                &tenant,
                crate::data::expiry::Class::Metadata,
                100,
                &target,
            );
        }
        vault.store.commit(&batch).unwrap();
        let path = dir.path().join("backup.fgb");
        create(vault.store.as_ref(), &path).unwrap();
        // Erased after the backup was taken: its key is gone.
        vault.keys.shred_contact(&tenant, &erased).unwrap();
        let restored = restore(&vault, &path).unwrap();
        assert_eq!(restored.unrecoverable_removed, 2);
        let inbox = vault
            .store
            .scan(&TenantId::SYSTEM, Kind::Inbox, b"", None, 10)
            .unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(&inbox[0].0[25..41], kept.as_bytes());
        let index = vault
            .store
            .scan(&tenant, Kind::Expiry, b"", None, 10)
            .unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(
            crate::data::expiry::target_contact(&index[0].0),
            Some(kept.as_bytes().as_slice())
        );
    }
}
