//! Compliance costs that must not grow with the tenant: a data-subject
//! export and an erasure of one contact, and the retention sweep.
//!
//! 1. A tenant of `--contacts` contacts (default 1,000,000) with
//!    `--messages` messages each (default 10, so 10,000,000 messages), each
//!    contact with a consent record, a plugin state record and an audit
//!    entry, all written through the same code the service uses (sealed,
//!    indexed, chained by the committer).
//! 2. Access (build the export and serialise it to JSON) and erasure
//!    (read, stage every deletion, commit through the committer, shred the
//!    contact key) of `--samples` random contacts, with p50/p99/max. The
//!    baseline is the same two requests in a tenant of 1,000 contacts in
//!    the same store, measured in the same run: the ratio shows whether the
//!    cost follows the tenant's size.
//! 3. Retention: a sweep of the large tenant when nothing is due (its cost
//!    must not depend on the 10M messages), then previews clearing and
//!    record expiry for `--expiring` messages (default 200,000) of a third
//!    tenant, against plain sled removal of as many keys.
//!
//! `cargo bench -p flowgate-cli --bench compliance -- [--contacts N] [--messages N]`

mod common;
use common::{Summary, arg, summarize};

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::audit::{Actor, AuditDraft};
use flowgate::channel::whatsapp::payload::MessageKind;
use flowgate::compliance::dsr::{Dsr, Subject};
use flowgate::compliance::retention::{self, RetentionPolicy};
use flowgate::crypto::{KeyRing, SecretKey};
use flowgate::data::Vault;
use flowgate::data::consent::{ConsentLedger, ConsentRecord, Decision, Source};
use flowgate::data::contacts::Contacts;
use flowgate::data::messages::{self, Direction, MessageRecord, Owner};
use flowgate::data::plugin_state::{self, Slot};
use flowgate::ids::{InstallationId, TenantId};
use flowgate::service::committer::{Commit, Committer};
use flowgate::store::{Batch, SledStore};

const DAY: u64 = 86_400;
/// When the bench's history starts (2026-01-01).
const T0: u64 = 1_767_225_600;

fn phone(tenant_no: usize, i: usize) -> String {
    format!("4{tenant_no}15{i:09}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Write `contacts` contacts with `per` messages each into `tenant`, in
/// groups committed through the committer (as the service does).
fn populate(
    vault: &Vault,
    committer: &Committer,
    tenant: TenantId,
    tenant_no: usize,
    contacts: usize,
    per: usize,
) {
    let directory = Contacts::of(vault, tenant).unwrap();
    let keys = vault.keys.tenant(&tenant).unwrap();
    let ledger = ConsentLedger::of(vault, tenant).unwrap();
    let installation = InstallationId::generate();
    let text = "Hi! Does the blue jacket come in a size M, and what does delivery to Lyon cost?";
    let started = Instant::now();
    let mut batch = Batch::new();
    let mut audit = Vec::new();
    for i in 0..contacts {
        let at = T0 + (i as u64 % 30) * DAY;
        let loaded = directory
            .resolve_inbound(Some(&phone(tenant_no, i)), None, Some("Sheena Nelson"), at)
            .unwrap();
        directory.stage(&mut batch, &loaded);
        let id = loaded.contact.id;
        let owner = Owner {
            tenant: &tenant,
            keys: &keys,
            contact: &id,
            contact_key: &loaded.key,
        };
        for m in 0..per {
            let inbound = m % 2 == 0;
            let record = MessageRecord {
                seq: vault.store.next_id().unwrap(),
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                kind: MessageKind::Text,
                at: at + m as u64 * 60,
                status: None,
                status_at: None,
                preview: Some(messages::preview(text)),
                content: None,
                origin: (!inbound).then(|| "auto-reply".to_owned()),
            };
            messages::stage(vault, &mut batch, owner, &record);
        }
        ledger
            .stage_append(
                &mut batch,
                &ConsentRecord {
                    contact: id,
                    subject: flowgate::data::consent::Subject::Messaging,
                    decision: Decision::Granted,
                    source: Source::Keyword,
                    evidence: Some(ledger.evidence("whatsapp-message", &format!("wamid.{i}"))),
                    at,
                },
            )
            .unwrap();
        let slot = Slot {
            tenant: &tenant,
            installation: &installation,
            contact: &id,
            contact_key: &loaded.key,
        };
        let entries = [("messages".to_owned(), per.to_string().into_bytes())].into();
        plugin_state::stage(vault, &mut batch, slot, entries, at);
        audit.push(
            AuditDraft::new(tenant, at, Actor::System, "plugin.invoked")
                .subject(flowgate::audit::contact_pseudonym(&keys, &id))
                .details(serde_json::json!({"fields": ["message.text"], "fuel": 41_000})),
        );
        if (i + 1) % 256 == 0 || i + 1 == contacts {
            committer
                .commit_blocking(Commit::new(
                    std::mem::take(&mut batch),
                    std::mem::take(&mut audit),
                ))
                .unwrap();
        }
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "  … {} contacts, {} messages, {:.0} s",
                i + 1,
                (i + 1) * per,
                started.elapsed().as_secs_f64()
            );
        }
    }
    vault.flush().unwrap();
}

/// Time access (export serialised to JSON) and erasure of `samples` random
/// contacts of a populated tenant.
fn access_and_erase(
    vault: &Vault,
    committer: &Committer,
    tenant: TenantId,
    tenant_no: usize,
    contacts: usize,
    samples: usize,
) -> (Summary, Summary, usize) {
    let mut state = 0x2545F4914F6CDD1Du64 ^ tenant_no as u64;
    let mut picks = Vec::new();
    while picks.len() < samples.min(contacts) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = (state % contacts as u64) as usize;
        if !picks.contains(&pick) {
            picks.push(pick);
        }
    }
    let dsr = Dsr {
        vault,
        tenant,
        actor: Actor::System,
        now: T0 + 40 * DAY,
    };
    let (mut access, mut erasure) = (Vec::new(), Vec::new());
    let mut export_bytes = 0;
    for &pick in &picks {
        let subject = Subject {
            wa_id: Some(phone(tenant_no, pick)),
            ..Subject::default()
        };
        let started = Instant::now();
        let outcome = dsr.access(&subject).unwrap();
        committer
            .commit_blocking(Commit::new(outcome.batch, outcome.audit))
            .unwrap();
        let json = serde_json::to_vec(&outcome.result).unwrap();
        access.push(started.elapsed());
        export_bytes = json.len();
        assert!(
            !outcome.result.messages.is_empty() && !outcome.result.audit.is_empty(),
            "the export holds the contact's messages and audit entries"
        );

        let started = Instant::now();
        let outcome = dsr.erase(&subject).unwrap();
        committer
            .commit_blocking(Commit::new(outcome.batch, outcome.audit))
            .unwrap();
        vault
            .keys
            .shred_contact(&tenant, &outcome.shred.unwrap())
            .unwrap();
        erasure.push(started.elapsed());
        assert!(
            matches!(
                dsr.access(&subject),
                Err(flowgate::compliance::dsr::DsrError::UnknownContact)
            ),
            "an erased contact is gone"
        );
    }
    (summarize(access), summarize(erasure), export_bytes)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the
    // binary without it, as a smoke test on a small tenant.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let contacts: usize = arg("--contacts", if smoke { 2_000 } else { 1_000_000 });
    let per: usize = arg("--messages", 10).max(1);
    let samples: usize = arg("--samples", if smoke { 20 } else { 200 });
    let expiring: usize = arg("--expiring", if smoke { 2_000 } else { 200_000 });
    let small = 1_000.min(contacts);

    let dir = tempfile::tempdir().expect("temporary directory");
    let vault = Vault::new(
        Arc::new(SledStore::open(&dir.path().join("records")).unwrap()),
        Arc::new(KeyRing::open(&dir.path().join("keys"), SecretKey::generate()).unwrap()),
    );
    let (committer, _thread) = Committer::start(vault.clone(), Default::default());
    let (large, baseline, sweepable) = (
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
    );
    for tenant in [large, baseline, sweepable] {
        vault.keys.create_tenant(&tenant).unwrap();
    }
    println!(
        "flowgate compliance benchmark: {contacts} contacts x {per} messages; baseline tenant of {small} contacts; {samples} samples"
    );

    let started = Instant::now();
    populate(&vault, &committer, baseline, 1, small, per);
    populate(&vault, &committer, large, 2, contacts, per);
    println!(
        "populated {} contacts and {} messages in {:.0} s",
        contacts + small,
        (contacts + small) * per,
        started.elapsed().as_secs_f64()
    );

    let (base_access, base_erase, _) =
        access_and_erase(&vault, &committer, baseline, 1, small, samples);
    let (access, erase, export_bytes) =
        access_and_erase(&vault, &committer, large, 2, contacts, samples);
    let row = |name: &str, big: &Summary, base: &Summary| {
        println!(
            "{name:<8} {contacts:>9} contacts: p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms | {small} contacts: p50 {:>6.2} ms  p99 {:>6.2} ms | p99 ratio {:.2}x",
            ms(big.p50),
            ms(big.p99),
            ms(big.max),
            ms(base.p50),
            ms(base.p99),
            big.p99.as_secs_f64() / base.p99.as_secs_f64()
        );
    };
    row("access", &access, &base_access);
    row("erasure", &erase, &base_erase);
    println!("export of one contact: {export_bytes} bytes of JSON");

    // --- 3. Retention.
    let policy = RetentionPolicy::default();
    let mut commit = |batch: Batch| {
        committer
            .commit_blocking(Commit::new(batch, Vec::new()))
            .map(|_| ())
            .map_err(|e| flowgate::data::DataError::Commit(e.to_string()))
    };
    // Nothing of the large tenant is due 50 days after it was written.
    let started = Instant::now();
    let idle = retention::sweep(&vault, &large, &policy, T0 + 50 * DAY, &mut commit).unwrap();
    let idle_time = started.elapsed();
    assert!(idle.is_empty(), "nothing is due yet: {idle:?}");
    println!(
        "sweep with nothing due over {} messages: {:.3} ms",
        contacts * per,
        ms(idle_time)
    );

    populate(
        &vault,
        &committer,
        sweepable,
        3,
        expiring.div_ceil(per),
        per,
    );
    let due = expiring.div_ceil(per) * per;
    let started = Instant::now();
    let previews =
        retention::sweep(&vault, &sweepable, &policy, T0 + 121 * DAY, &mut commit).unwrap();
    let previews_rate = previews.previews_cleared as f64 / started.elapsed().as_secs_f64();
    assert_eq!(previews.previews_cleared as usize, due);
    let started = Instant::now();
    let expired =
        retention::sweep(&vault, &sweepable, &policy, T0 + 400 * DAY, &mut commit).unwrap();
    let expiry_rate = expired.messages_deleted as f64 / started.elapsed().as_secs_f64();
    assert_eq!(expired.messages_deleted as usize, due);

    // Baseline: plain sled removal of as many keys, one flush per 1,000.
    let plain = sled::Config::new()
        .path(dir.path().join("plain"))
        .open()
        .unwrap();
    let tree = plain.open_tree("records").unwrap();
    for i in 0..due as u64 {
        tree.insert(i.to_be_bytes(), vec![b'x'; 200]).unwrap();
    }
    plain.flush().unwrap();
    let started = Instant::now();
    for i in 0..due as u64 {
        tree.remove(i.to_be_bytes()).unwrap();
        if i % 1_000 == 999 {
            plain.flush().unwrap();
        }
    }
    plain.flush().unwrap();
    let baseline_rate = due as f64 / started.elapsed().as_secs_f64();
    println!(
        "sweep clearing previews: {previews_rate:>9.0} messages/s ({:.2}x plain sled removal)",
        previews_rate / baseline_rate
    );
    println!(
        "sweep expiring records:  {expiry_rate:>9.0} messages/s ({:.2}x plain sled removal)",
        expiry_rate / baseline_rate
    );
    println!("baseline: plain sled removal: {baseline_rate:>9.0} keys/s");
}
