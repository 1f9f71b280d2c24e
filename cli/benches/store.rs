//! Tenant data throughput and latency, against a same-run baseline.
//!
//! 1. Upserts: resolve an inbound contact (index lookup, load or create with
//!    a new contact key), build a plugin's minimised view, seal the record
//!    and commit — in groups of `--group` contacts (default 64), as the
//!    service's committer groups concurrent events into one atomic write.
//!    The baseline writes the same number of plaintext records and index
//!    entries to sled with plain inserts.
//! 2. Lookups by WhatsApp id in a tenant of `--contacts` contacts (default
//!    1,000,000): index hash, index read, contact key unwrap, record open.
//!    The baseline reads the same sled trees without any crypto.
//!
//! `cargo bench -p flowgate-cli --bench store -- [--contacts N] [--lookups N]`
//! (`cargo xtask bench -- --bench store` runs it too.)

mod common;
use common::{arg, summarize};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use flowgate::channel::whatsapp::payload::MessageKind;
use flowgate::crypto::{KeyRing, SecretKey};
use flowgate::data::Vault;
use flowgate::data::contacts::Contacts;
use flowgate::ids::TenantId;
use flowgate::plugin::{Capability, DataField, Manifest, Purpose};
use flowgate::store::{Batch, Kind, SledStore};
use flowgate::view::{self, EventContext, MessageFacts};

fn phone(i: usize) -> String {
    format!("4915{:09}", i)
}

fn manifest() -> Manifest {
    Manifest {
        id: "lead-score".into(),
        version: "1.0.0".into(),
        summary: String::new(),
        purposes: vec![Purpose::parse("essential.service").unwrap()],
        fields: vec![
            DataField::MessageText,
            DataField::ProfileName,
            DataField::Labels,
        ],
        capabilities: vec![Capability::SetLeadScore],
        config: vec![],
        labels: vec![],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the
    // binary without it, as a smoke test on a small tenant.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let total: usize = arg("--contacts", if smoke { 2_000 } else { 1_000_000 });
    let upserts: usize = arg("--upserts", 100_000).min(total);
    let group: usize = arg("--group", 64).max(1);
    let lookups: usize = arg("--lookups", if smoke { 1_000 } else { 100_000 });
    let dir = tempfile::tempdir().expect("temporary directory");
    let vault = Vault::new(
        Arc::new(SledStore::open(&dir.path().join("records")).unwrap()),
        Arc::new(KeyRing::open(&dir.path().join("keys"), SecretKey::generate()).unwrap()),
    );
    let tenant = TenantId::generate();
    let keys = vault.keys.create_tenant(&tenant).unwrap();
    let contacts = Contacts::of(&vault, tenant).unwrap();
    let manifest = manifest();
    let grants: BTreeSet<DataField> = manifest.fields.iter().copied().collect();

    let pending = std::cell::RefCell::new(Batch::new());
    let commit = || {
        let batch = std::mem::take(&mut *pending.borrow_mut());
        vault.store.commit(&batch).unwrap();
    };
    let upsert = |i: usize, at: u64| {
        let mut loaded = contacts
            .resolve_inbound(Some(&phone(i)), None, Some("Sheena Nelson"), at)
            .unwrap();
        if loaded.is_new() {
            loaded.contact.labels = vec!["pricing".into()];
        }
        let disclosure =
            view::disclose(&manifest, &grants, &loaded.contact.processing_state()).unwrap();
        let event = view::build_event(
            &disclosure,
            &loaded.contact.view_data(),
            EventContext {
                pseudonym: view::pseudonym(&keys.pseudonyms, "ins", loaded.contact.id.as_bytes()),
                message: Some(MessageFacts {
                    kind: MessageKind::Text,
                    text: Some("Does it come in another color?".into()),
                    received_at: at,
                    service_window_open: true,
                }),
                status: None,
                config: vec![],
                now: at,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        );
        std::hint::black_box(event);
        contacts.stage(&mut pending.borrow_mut(), &loaded);
        if (i + 1).is_multiple_of(group) {
            commit();
        }
    };

    println!(
        "flowgate store benchmark: {total} contacts, {upserts} timed upserts, {lookups} lookups"
    );
    // --- 1. Upserts (new contacts), then the same contacts again (existing).
    let started = Instant::now();
    for i in 0..upserts {
        upsert(i, 1_000);
    }
    commit();
    vault.flush().unwrap();
    let new_rate = upserts as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..upserts {
        upsert(i, 2_000);
    }
    commit();
    vault.flush().unwrap();
    let existing_rate = upserts as f64 / started.elapsed().as_secs_f64();

    // Baseline: plaintext record + index entry per contact, straight to sled.
    let plain = sled::Config::new()
        .path(dir.path().join("plain"))
        .open()
        .unwrap();
    let (plain_records, plain_index) = (
        plain.open_tree("records").unwrap(),
        plain.open_tree("index").unwrap(),
    );
    let record = vec![b'x'; 420];
    let started = Instant::now();
    for i in 0..upserts {
        let id = (i as u128).to_be_bytes();
        plain_index.insert(phone(i).as_bytes(), &id[..]).unwrap();
        plain_records.insert(&id[..], record.as_slice()).unwrap();
    }
    plain.flush().unwrap();
    let baseline_rate = upserts as f64 / started.elapsed().as_secs_f64();
    println!(
        "upsert + view + sealed write, new contacts:      {new_rate:>10.0} /s  ({:.2}x the plaintext baseline)",
        new_rate / baseline_rate
    );
    println!(
        "upsert + view + sealed write, existing contacts: {existing_rate:>10.0} /s  ({:.2}x the plaintext baseline)",
        existing_rate / baseline_rate
    );
    println!("baseline: plaintext record + index insert:       {baseline_rate:>10.0} /s");

    // --- 2. Fill the tenant to `total` contacts, then look up at random.
    let started = Instant::now();
    for i in upserts..total {
        upsert(i, 3_000);
        if i % 100_000 == 0 {
            eprintln!("  … {i} contacts");
        }
    }
    commit();
    vault.flush().unwrap();
    println!(
        "filled to {total} contacts in {:.1} s ({} records, {} contact keys)",
        started.elapsed().as_secs_f64(),
        vault.store.count(Kind::Contacts),
        vault.keys.contact_key_count()
    );
    // The same random sequence for both measurements.
    let picks: Vec<usize> = {
        let mut state = 0x2545F4914F6CDD1Du64;
        (0..lookups)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % total as u64) as usize
            })
            .collect()
    };
    let mut samples = Vec::with_capacity(lookups);
    for &i in &picks {
        let started = Instant::now();
        let found = contacts.find_and_load(Some(&phone(i)), None).unwrap();
        samples.push(started.elapsed());
        assert!(found.is_some());
    }
    let sealed = summarize(samples);
    // Baseline: the same two reads (index entry, contact record) from the
    // same trees, with the index keys computed beforehand and no key
    // unwrapping or decryption.
    let index_keys: Vec<Vec<u8>> = picks
        .iter()
        .map(|&i| [b"w".as_slice(), &keys.lookup_hash("wa_id", &phone(i))].concat())
        .collect();
    let mut samples = Vec::with_capacity(lookups);
    for key in &index_keys {
        let started = Instant::now();
        let id = vault
            .store
            .get(&tenant, Kind::ContactIndex, key)
            .unwrap()
            .unwrap();
        let record = vault.store.get(&tenant, Kind::Contacts, &id).unwrap();
        samples.push(started.elapsed());
        assert!(record.is_some());
    }
    let baseline = summarize(samples);
    println!(
        "lookup by wa_id in {total} contacts: p50 {:>6.1} µs  p99 {:>6.1} µs  max {:>7.1} µs",
        sealed.p50.as_secs_f64() * 1e6,
        sealed.p99.as_secs_f64() * 1e6,
        sealed.max.as_secs_f64() * 1e6
    );
    println!(
        "baseline, the same reads unsealed:       p50 {:>6.1} µs  p99 {:>6.1} µs  (p99 ratio {:.1}x)",
        baseline.p50.as_secs_f64() * 1e6,
        baseline.p99.as_secs_f64() * 1e6,
        sealed.p99.as_secs_f64() / baseline.p99.as_secs_f64()
    );
    println!(
        "on disk: records {} MiB, keys {} MiB",
        dir_size(&dir.path().join("records")) >> 20,
        dir_size(&dir.path().join("keys")) >> 20
    );
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
