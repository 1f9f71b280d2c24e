//! The store's record decoding: sealed records, keys, ids, API key tokens,
//! inbox and outbox entries, the store's journal and backup files.
//!
//! A real vault (sled store and key ring, in a temporary directory) is set
//! up once per process with two tenants, two contacts and an API key, so
//! the fuzzer's records can name real keys and reach the JSON decoding
//! behind the seal: a case either seals the fuzzer's plaintext properly
//! (exercising the decoders) or passes the bytes as the sealed value
//! (exercising the opening).
//!
//! Properties: arbitrary bytes give an error, never a panic; a sealed value
//! with any byte changed, cut short or moved to another context does not
//! open; whatever decodes survives being sealed again and reopened; ids and
//! tokens parse only from their canonical text (up to hex case and
//! surrounding whitespace).

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use flowgate::audit::AuditEntry;
use flowgate::compliance::backup;
use flowgate::compliance::dsr::RequestRecord;
use flowgate::crypto::{SEAL_OVERHEAD, SecretKey, to_hex};
use flowgate::data::consent::ConsentRecord;
use flowgate::data::contacts::Contact;
use flowgate::data::messages::MessageRecord;
use flowgate::data::plugin_state::StateMap;
use flowgate::data::{DataError, Vault, record_context};
use flowgate::ids::{ApiKeyId, ChannelId, ContactId, InstallationId, RequestId, TenantId};
use flowgate::registry::PluginRecord;
use flowgate::service::inbox::{self, InboxItem};
use flowgate::service::outbox::{self, OutboxEntry};
use flowgate::store::{Batch, Kind, Op, group};
use flowgate::tenancy::api_keys::{self, Scope};
use flowgate::tenancy::channels::Channel;
use flowgate::tenancy::installations::Installation;
use flowgate::tenancy::tenant::Tenant;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

struct World {
    vault: Vault,
    /// Two tenants with keys.
    tenants: [TenantId; 2],
    /// Two contacts of the first tenant, with keys.
    contacts: [ContactId; 2],
    /// The first tenant's API key token.
    token: String,
    /// A second vault that restores overwrite, so they cannot disturb the
    /// records the other cases rely on.
    restore_vault: Vault,
    backup_path: PathBuf,
}

static WORLD: OnceLock<World> = OnceLock::new();

/// The scratch directory: in memory when possible (restores flush), named
/// by process so a run can remove what runs that died left behind.
fn scratch() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("flowgate-fuzz-records-"))
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("flowgate-fuzz-records-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let dir = scratch();
        let vault =
            Vault::open_dir(&dir.join("main"), SecretKey::from_bytes([7; 64])).expect("fuzz vault");
        let tenants = [TenantId::from_bytes([1; 16]), TenantId::from_bytes([2; 16])];
        for tenant in &tenants {
            vault.keys.create_tenant(tenant).expect("tenant key");
        }
        let contacts = [
            ContactId::from_bytes([3; 16]),
            ContactId::from_bytes([4; 16]),
        ];
        for contact in &contacts {
            vault
                .keys
                .create_contact(&tenants[0], contact)
                .expect("contact key");
        }
        let keys = vault.keys.tenant(&tenants[0]).expect("tenant keys");
        let new_key = api_keys::create(&keys, "fuzz", [Scope::Read].into(), 0);
        let mut batch = Batch::new();
        api_keys::stage(&vault, &mut batch, &tenants[0], &new_key.record).expect("stage key");
        vault.store.commit(&batch).expect("commit key");
        vault.flush().expect("flush");

        let restore_vault = Vault::open_dir(&dir.join("restore"), SecretKey::from_bytes([7; 64]))
            .expect("restore vault");
        restore_vault
            .keys
            .create_tenant(&tenants[0])
            .expect("tenant key");
        restore_vault
            .keys
            .create_contact(&tenants[0], &contacts[0])
            .expect("contact key");
        restore_vault.flush().expect("flush");
        World {
            vault,
            tenants,
            contacts,
            token: new_key.token,
            restore_vault,
            backup_path: dir.join("backup.fgb"),
        }
    })
}

/// A tenant named by the fuzzer: one with a key, the system tenant, or any.
#[derive(Arbitrary, Debug)]
enum TenantChoice {
    Known(bool),
    System,
    Other([u8; 16]),
}

impl TenantChoice {
    fn id(&self, world: &World) -> TenantId {
        match self {
            TenantChoice::Known(second) => world.tenants[usize::from(*second)],
            TenantChoice::System => TenantId::SYSTEM,
            TenantChoice::Other(bytes) => TenantId::from_bytes(*bytes),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Case<'a> {
    /// Arbitrary bytes opened as a sealed value, and unwrapped as a key.
    OpenBytes {
        key: u8,
        context: &'a [u8],
        sealed: &'a [u8],
    },
    /// A real seal, then changed: a byte flipped, cut, extended, another
    /// context or key.
    Tamper {
        context: &'a [u8],
        plain: &'a [u8],
        position: u16,
        flip: u8,
        cut: u16,
    },
    /// A record of some type at some place.
    Record {
        record: u8,
        kind: u8,
        tenant: TenantChoice,
        key: &'a [u8],
        seal: bool,
        bytes: &'a [u8],
    },
    /// An inbox entry as a recovery scan finds it: `shard ‖ seq ‖ tenant`.
    Inbox {
        shard: u8,
        seq: u64,
        tenant: TenantChoice,
        extra: &'a [u8],
        seal: bool,
        bytes: &'a [u8],
    },
    /// An inbox entry under an arbitrary key.
    InboxKey { key: &'a [u8], sealed: &'a [u8] },
    /// An outbox entry: `seq ‖ tenant ‖ contact`.
    Outbox {
        seq: u64,
        tenant: TenantChoice,
        contact: Option<bool>,
        extra: &'a [u8],
        seal: bool,
        bytes: &'a [u8],
    },
    /// Text parsed as every kind of id.
    Id { text: &'a str },
    /// A bearer token; and the real token with one byte replaced.
    Token {
        token: &'a str,
        position: u8,
        replacement: u8,
    },
    /// A store journal record.
    Journal { bytes: &'a [u8] },
    /// Writes encoded into a journal record and decoded back.
    JournalRoundTrip { ops: Vec<JournalWrite<'a>> },
    /// A backup file; with `fix_checksum` the checksum is made to match,
    /// so the restore gets past verification.
    Backup { body: &'a [u8], fix_checksum: bool },
}

#[derive(Arbitrary, Debug)]
struct JournalWrite<'a> {
    tenant: [u8; 16],
    kind: u8,
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    // Inputs starting with `{` are a record's plaintext (the committed seeds
    // are real records' JSON): sealed properly and opened as every record
    // type, so libFuzzer mutates the decoders' input as text.
    if data.first() == Some(&b'{') {
        for record in 0..RECORD_TYPES {
            let kind = Kind::ALL[usize::from(record) % Kind::ALL.len()];
            check_record(world, record, kind, &world.tenants[0], b"seed", true, data);
        }
        return;
    }
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match case {
        Case::OpenBytes {
            key,
            context,
            sealed,
        } => open_bytes(key, context, sealed),
        Case::Tamper {
            context,
            plain,
            position,
            flip,
            cut,
        } => tamper(context, plain, position, flip, cut),
        Case::Record {
            record,
            kind,
            tenant,
            key,
            seal,
            bytes,
        } => {
            let kind = Kind::ALL[usize::from(kind) % Kind::ALL.len()];
            let tenant = tenant.id(world);
            check_record(world, record, kind, &tenant, key, seal, bytes);
        }
        Case::Inbox {
            shard,
            seq,
            tenant,
            extra,
            seal,
            bytes,
        } => {
            let tenant = tenant.id(world);
            let mut key = vec![shard];
            key.extend_from_slice(&seq.to_be_bytes());
            key.extend_from_slice(tenant.as_bytes());
            key.extend_from_slice(extra);
            check_inbox(world, &tenant, &key, seal, bytes);
        }
        Case::InboxKey { key, sealed } => {
            let _ = inbox::open(&world.vault, key, sealed);
        }
        Case::Outbox {
            seq,
            tenant,
            contact,
            extra,
            seal,
            bytes,
        } => {
            let tenant = tenant.id(world);
            let contact = match contact {
                Some(second) => world.contacts[usize::from(second)],
                None => ContactId::from_bytes([9; 16]),
            };
            let mut key = seq.to_be_bytes().to_vec();
            key.extend_from_slice(tenant.as_bytes());
            key.extend_from_slice(contact.as_bytes());
            key.extend_from_slice(extra);
            check_outbox(world, &tenant, &contact, &key, seal, bytes);
        }
        Case::Id { text } => check_ids(text),
        Case::Token {
            token,
            position,
            replacement,
        } => check_token(world, token, position, replacement),
        Case::Journal { bytes } => {
            if let Some(ops) = group::decode(bytes) {
                // What decodes was whole and nothing else: encoding it
                // again gives back exactly the record.
                assert_eq!(group::encode(&ops), *bytes, "a decoded group re-encodes as itself");
            }
        }
        Case::JournalRoundTrip { ops } => journal_round_trip(&ops),
        Case::Backup { body, fix_checksum } => check_backup(world, body, fix_checksum),
    }
});

fn key_for(selector: u8) -> SecretKey {
    SecretKey::from_bytes([selector % 4; 64])
}

fn open_bytes(selector: u8, context: &[u8], sealed: &[u8]) {
    let key = key_for(selector);
    // Bytes not made by `seal` do not open (forging AES-SIV is out of the
    // fuzzer's reach, so an `Ok` here would be a bug).
    assert!(key.open(context, sealed).is_err(), "arbitrary bytes opened");
    assert!(
        key.unwrap_key(context, sealed).is_err(),
        "arbitrary bytes unwrapped"
    );
}

fn tamper(context: &[u8], plain: &[u8], position: u16, flip: u8, cut: u16) {
    let key = key_for(0);
    let sealed = key.seal(context, plain);
    assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
    assert_eq!(key.open(context, &sealed).as_deref(), Ok(plain));

    let position = usize::from(position) % sealed.len();
    let mut flipped = sealed.clone();
    flipped[position] ^= flip.max(1);
    assert!(
        key.open(context, &flipped).is_err(),
        "byte {position} of {} flipped and it still opens",
        sealed.len()
    );
    let cut = usize::from(cut) % sealed.len();
    assert!(
        key.open(context, &sealed[..cut]).is_err(),
        "cut to {cut} bytes and it still opens"
    );
    let mut extended = sealed.clone();
    extended.push(flip);
    assert!(
        key.open(context, &extended).is_err(),
        "extended and it opens"
    );
    let mut other_context = context.to_vec();
    other_context.push(flip);
    assert!(
        key.open(&other_context, &sealed).is_err(),
        "opens in another context"
    );
    assert!(
        key_for(1).open(context, &sealed).is_err(),
        "opens with another key"
    );

    // Wrapped keys: the same, deterministic mode.
    let inner = SecretKey::from_bytes({
        let mut bytes = [0u8; 64];
        for (i, b) in plain.iter().take(64).enumerate() {
            bytes[i] = *b;
        }
        bytes
    });
    let wrapped = key.wrap(context, &inner);
    assert_eq!(key.unwrap_key(context, &wrapped).as_ref(), Ok(&inner));
    let mut flipped = wrapped.clone();
    let position = position % wrapped.len();
    flipped[position] ^= flip.max(1);
    assert!(
        key.unwrap_key(context, &flipped).is_err(),
        "wrapped key byte {position} flipped and it unwraps"
    );
    assert!(key.unwrap_key(&other_context, &wrapped).is_err());
}

/// `FLOWGATE_FUZZ_VERBOSE=1` says which record types an input decodes as
/// (to check that seeds are what they claim to be).
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FLOWGATE_FUZZ_VERBOSE").is_some())
}

/// Open `sealed` as a `T`; when it decodes, it must seal and reopen to the
/// same value.
fn open_as<T: Serialize + DeserializeOwned + PartialEq>(
    vault: &Vault,
    sealing_key: &SecretKey,
    tenant: &TenantId,
    kind: Kind,
    key: &[u8],
    sealed: &[u8],
    properly_sealed: bool,
) {
    match vault.open::<T>(sealing_key, tenant, kind, key, sealed) {
        Ok(value) => {
            assert!(properly_sealed, "a record opened from arbitrary bytes");
            if verbose() {
                eprintln!("decoded as {}", std::any::type_name::<T>());
            }
            let resealed = vault.seal(sealing_key, tenant, kind, key, &value);
            let reopened: T = vault
                .open(sealing_key, tenant, kind, key, &resealed)
                .expect("a record that opened once reopens after sealing again");
            assert!(
                reopened == value,
                "{} record changed through seal and reopen:\n{}\n{}",
                std::any::type_name::<T>(),
                serde_json::to_string(&value).unwrap_or_default(),
                serde_json::to_string(&reopened).unwrap_or_default()
            );
        }
        Err(DataError::Sealed { .. }) => {
            assert!(!properly_sealed, "a properly sealed record did not open");
        }
        Err(DataError::Decode { .. }) => {
            assert!(
                properly_sealed,
                "arbitrary bytes opened, then did not decode"
            );
        }
        Err(other) => panic!("unexpected error opening a record: {other}"),
    }
}

/// How many record types `check_record` opens as.
const RECORD_TYPES: u8 = 14;

fn check_record(
    world: &World,
    record: u8,
    kind: Kind,
    tenant: &TenantId,
    key: &[u8],
    seal: bool,
    bytes: &[u8],
) {
    let vault = &world.vault;
    let sealing_key = key_for(record);
    let sealed = if seal {
        sealing_key.seal(&record_context(tenant, kind, key), bytes)
    } else {
        bytes.to_vec()
    };
    macro_rules! open {
        ($t:ty) => {
            open_as::<$t>(vault, &sealing_key, tenant, kind, key, &sealed, seal)
        };
    }
    match record % RECORD_TYPES {
        0 => open!(Contact),
        1 => open!(ConsentRecord),
        2 => open!(MessageRecord),
        3 => open!(StateMap),
        4 => open!(AuditEntry),
        5 => open!(InboxItem),
        6 => open!(OutboxEntry),
        7 => open!(api_keys::ApiKey),
        8 => open!(PluginRecord),
        9 => open!(Installation),
        10 => open!(Tenant),
        11 => open!(Channel),
        12 => open!(RequestRecord),
        _ => open!(serde_json::Value),
    }
    if seal {
        // The same record anywhere else does not open.
        let mut moved = key.to_vec();
        moved.push(0);
        assert!(
            vault
                .open::<serde_json::Value>(&sealing_key, tenant, kind, &moved, &sealed)
                .is_err_and(|e| matches!(e, DataError::Sealed { .. })),
            "a record opened under another key"
        );
        let other_kind = Kind::ALL
            [(Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) + 1) % Kind::ALL.len()];
        assert!(
            vault
                .open::<serde_json::Value>(&sealing_key, tenant, other_kind, key, &sealed)
                .is_err_and(|e| matches!(e, DataError::Sealed { .. })),
            "a record opened as another kind"
        );
    }
}

fn check_inbox(world: &World, tenant: &TenantId, key: &[u8], seal: bool, bytes: &[u8]) {
    let sealed = match (seal, world.vault.keys.tenant(tenant)) {
        (true, Ok(keys)) => keys
            .records
            .seal(&record_context(tenant, Kind::Inbox, key), bytes),
        _ => bytes.to_vec(),
    };
    if let Ok(job) = inbox::open(&world.vault, key, &sealed) {
        assert!(seal, "an inbox entry opened from arbitrary bytes");
        assert_eq!(&job.tenant, tenant);
        assert_eq!(job.shard, key[0]);
        assert_eq!(job.key, key);
        let json = serde_json::to_vec(&job.item).expect("inbox items serialize");
        let back: InboxItem = serde_json::from_slice(&json).expect("inbox items read back");
        assert_eq!(back, job.item, "inbox item JSON round trip");
    }
}

fn check_outbox(
    world: &World,
    tenant: &TenantId,
    contact: &ContactId,
    key: &[u8],
    seal: bool,
    bytes: &[u8],
) {
    let contact_key = world.vault.keys.contact(tenant, contact).ok().flatten();
    let sealed = match (&contact_key, seal) {
        (Some(contact_key), true) => {
            contact_key.seal(&record_context(tenant, Kind::Outbox, key), bytes)
        }
        _ => bytes.to_vec(),
    };
    match outbox::open_entry(&world.vault, key, &sealed) {
        Ok(Some((t, c, _, entry))) => {
            assert!(seal, "an outbox entry opened from arbitrary bytes");
            assert_eq!((&t, &c), (tenant, contact));
            let json = serde_json::to_vec(&entry).expect("outbox entries serialize");
            let back: OutboxEntry = serde_json::from_slice(&json).expect("entries read back");
            assert_eq!(back, entry, "outbox entry JSON round trip");
        }
        Ok(None) => assert!(
            contact_key.is_none(),
            "an entry of a live contact was taken for an erased one"
        ),
        Err(_) => {}
    }
}

/// Ids parse from their text form only: prefix, `_`, 32 hex digits (in
/// either case, with whitespace around the digits tolerated).
fn check_ids(text: &str) {
    macro_rules! id {
        ($t:ty) => {
            if let Ok(id) = text.parse::<$t>() {
                let digits = text
                    .strip_prefix(<$t>::PREFIX)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .expect("a parsed id has its prefix");
                assert_eq!(
                    digits.trim().to_ascii_lowercase(),
                    to_hex(id.as_bytes()),
                    "{text:?} parsed as {id}"
                );
                assert_eq!(id.to_string().parse::<$t>().as_ref(), Ok(&id));
                let json = serde_json::to_string(&id).expect("ids serialize");
                assert_eq!(serde_json::from_str::<$t>(&json).ok(), Some(id));
            }
        };
    }
    id!(TenantId);
    id!(ContactId);
    id!(InstallationId);
    id!(ChannelId);
    id!(ApiKeyId);
    id!(RequestId);
    if let Ok(json) = serde_json::to_string(text) {
        let _ = serde_json::from_str::<TenantId>(&json);
    }
}

fn check_token(world: &World, token: &str, position: u8, replacement: u8) {
    let vault = &world.vault;
    if let Ok(Some(_)) = api_keys::authenticate(vault, token) {
        // `fgk_<id>_<secret>`: the same digits, up to case and whitespace
        // around each hex part.
        let canonical = |t: &str| -> Option<(String, String)> {
            let (id, secret) = t.strip_prefix("fgk_")?.split_once('_')?;
            Some((
                id.trim().to_ascii_lowercase(),
                secret.trim().to_ascii_lowercase(),
            ))
        };
        assert_eq!(
            canonical(token),
            canonical(&world.token),
            "{token:?} authenticated as {:?}",
            world.token
        );
    }
    let real = world.token.as_bytes();
    let position = usize::from(position) % real.len();
    let original = real[position];
    let mut changed = real.to_vec();
    changed[position] = replacement;
    let Ok(changed) = String::from_utf8(changed) else {
        return;
    };
    let same_digit = original.is_ascii_hexdigit()
        && position >= "fgk_".len()
        && original.eq_ignore_ascii_case(&replacement);
    if replacement != original && !same_digit {
        assert!(
            !matches!(api_keys::authenticate(vault, &changed), Ok(Some(_))),
            "token byte {position} {:?} replaced by {:?} still authenticates: {changed:?}",
            original as char,
            replacement as char
        );
    }
}

fn journal_round_trip(writes: &[JournalWrite<'_>]) {
    let ops: Vec<Op> = writes
        .iter()
        .map(|w| Op {
            tenant: TenantId::from_bytes(w.tenant),
            kind: Kind::ALL[usize::from(w.kind) % Kind::ALL.len()],
            key: w.key.to_vec(),
            value: w.value.map(<[u8]>::to_vec),
        })
        .collect();
    let decoded = group::decode(&group::encode(&ops)).expect("an encoded group decodes");
    assert_eq!(decoded, ops);
}

fn check_backup(world: &World, body: &[u8], fix_checksum: bool) {
    let mut file = Vec::with_capacity(body.len() + 64);
    if fix_checksum {
        file.extend_from_slice(b"FLOWGATE-BACKUP-1\n");
        file.extend_from_slice(body);
        let hash = blake3::hash(&file);
        file.extend_from_slice(hash.as_bytes());
    } else {
        file.extend_from_slice(body);
    }
    std::fs::write(&world.backup_path, &file).expect("write the backup file");
    // Damaged files are refused; valid ones restore. Neither panics.
    let _ = backup::restore(&world.restore_vault, &world.backup_path);
}
