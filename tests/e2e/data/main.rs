//! The data layer: tenant data at rest, as real bytes in sled sealed with
//! real keys, written from what real plugins did.

use std::collections::BTreeMap;
use std::path::Path;

use flowgate::audit::Actor;
use flowgate::compliance::dsr::{self, Dsr};
use flowgate::crypto::SecretKey;
use flowgate::data::consent::{ConsentLedger, ConsentRecord, Decision, Source, Subject};
use flowgate::data::contacts::Contacts;
use flowgate::data::{DataError, Vault, plugin_state};
use flowgate::ids::{ContactId, InstallationId, TenantId};
use flowgate::plugin::{Action, DataField, Purpose};
use flowgate::runtime::{Call, PluginState};
use flowgate::store::{Batch, Kind};
use flowgate::view::{self, EventContext, MessageFacts};

use flowgate_testkit::disk::files_under;
use flowgate_testkit::event::NOW;
use flowgate_testkit::guests::{load, shared_runtime};

mod registry;

const MASTER: [u8; 64] = [0x5a; 64];

fn vault(dir: &Path) -> Vault {
    Vault::open_dir(dir, SecretKey::from_bytes(MASTER)).unwrap()
}

/// Identifiable personal data for contact `i`: none of it may reach disk.
fn person(i: usize) -> (String, String, String, String) {
    (
        format!("1650555{i:04}"),
        format!("Quintessa Marlowe{i}"),
        format!("BR.98765432100{i:04}"),
        format!("I want to buy the cobalt teapot number {i}"),
    )
}

/// A workload touching every record kind of this issue: contacts with
/// names, numbers and BSUIDs; consent records with message-id evidence;
/// plugin state written by a real plugin from real message text.
fn workload(vault: &Vault, tenant: TenantId, contacts: usize) -> Vec<ContactId> {
    vault.keys.create_tenant(&tenant).unwrap();
    let directory = Contacts::of(vault, tenant).unwrap();
    let ledger = ConsentLedger::of(vault, tenant).unwrap();
    let runtime = shared_runtime();
    let scorer = load(runtime, "lead-score");
    let installation = InstallationId::generate();
    let mut ids = Vec::new();
    for i in 0..contacts {
        let (phone, name, bsuid, text) = person(i);
        let mut loaded = directory
            .resolve_inbound(Some(&phone), Some(&bsuid), Some(&name), NOW + i as u64)
            .unwrap();
        loaded.contact.labels.push(format!("label-of-{name}"));
        let mut batch = Batch::new();
        let consent = ConsentRecord {
            contact: loaded.contact.id,
            subject: Subject::Purpose(Purpose::parse("personalize.profiling").unwrap()),
            decision: Decision::Granted,
            source: Source::Keyword,
            evidence: Some(ledger.evidence("whatsapp-message", &format!("wamid.{phone}"))),
            at: NOW,
        };
        ledger.stage_append(&mut batch, &consent).unwrap();
        loaded
            .contact
            .consents
            .push(Purpose::parse("personalize.profiling").unwrap());

        // The plugin sees the text and keeps state derived from it.
        let grants = scorer.manifest.fields.iter().copied().collect();
        let disclosure = view::disclose(
            &scorer.manifest,
            &grants,
            &loaded.contact.processing_state(),
        )
        .unwrap();
        let event = view::build_event(
            &disclosure,
            &loaded.contact.view_data(),
            EventContext {
                pseudonym: view::pseudonym(
                    &directory.tenant_keys().pseudonyms,
                    &installation.to_string(),
                    loaded.contact.id.as_bytes(),
                ),
                message: Some(MessageFacts {
                    kind: flowgate::channel::whatsapp::payload::MessageKind::Text,
                    text: Some(text.clone()),
                    received_at: NOW,
                    service_window_open: true,
                }),
                status: None,
                config: view::resolve_config(&scorer.manifest, &[]).unwrap(),
                now: NOW,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        );
        let state = plugin_state::load(
            vault,
            &tenant,
            &installation,
            &loaded.contact.id,
            &loaded.key,
        )
        .unwrap();
        let invocation = runtime
            .invoke(&scorer, Call::new(event).state(PluginState::new(state)))
            .unwrap();
        let mut entries = invocation.state.merged();
        // A careless plugin could store message text in its state: it is
        // sealed like everything else.
        entries.insert("last-text".into(), text.into_bytes());
        plugin_state::stage(
            vault,
            &mut batch,
            plugin_state::Slot {
                tenant: &tenant,
                installation: &installation,
                contact: &loaded.contact.id,
                contact_key: &loaded.key,
            },
            entries,
            NOW,
        );
        directory.stage(&mut batch, &loaded);
        vault.store.commit(&batch).unwrap();
        ids.push(loaded.contact.id);
    }
    vault.flush().unwrap();
    ids
}

/// Erase a contact as the data-subject API does: every record in one
/// commit, then the key.
fn erase(vault: &Vault, tenant: TenantId, id: ContactId) {
    let dsr = Dsr {
        vault,
        tenant,
        actor: Actor::System,
        now: NOW,
    };
    let outcome = dsr
        .erase(&dsr::Subject {
            contact_id: Some(id),
            ..dsr::Subject::default()
        })
        .unwrap();
    vault.store.commit(&outcome.batch).unwrap();
    assert_eq!(outcome.shred, Some(id));
    vault.keys.shred_contact(&tenant, &id).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn no_plaintext_personal_data_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let contacts = 150;
    let canary = "CANARY-written-without-sealing";
    {
        let vault = vault(dir.path());
        workload(&vault, TenantId::generate(), contacts);
        workload(&vault, TenantId::generate(), 10);
        // Proof the scan can see plaintext: one value written around the
        // vault, straight into the store.
        let mut batch = Batch::new();
        batch.put(
            TenantId::generate(),
            Kind::Audit,
            b"canary".to_vec(),
            canary.as_bytes().to_vec(),
        );
        vault.store.commit(&batch).unwrap();
        vault.flush().unwrap();
    }
    let mut canary_seen = false;
    let files = files_under(dir.path());
    assert!(files.len() >= 4, "records and keys databases: {files:?}");
    let mut scanned = 0;
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        scanned += bytes.len();
        canary_seen |= bytes.windows(canary.len()).any(|w| w == canary.as_bytes());
        for i in 0..contacts {
            let (phone, name, bsuid, text) = person(i);
            for needle in [&phone, &name, &bsuid, &text, &format!("wamid.{phone}")] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle:?} found in plaintext in {}",
                    file.display()
                );
            }
        }
        // Partial leaks too: the distinctive surname, the teapot.
        for needle in ["Marlowe", "cobalt teapot", "1650555"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} found in {}",
                file.display()
            );
        }
    }
    assert!(
        scanned > 100_000,
        "the scan read the data ({scanned} bytes)"
    );
    assert!(canary_seen, "the scan finds plaintext when there is some");
}

#[test]
fn a_ciphertext_moved_to_another_place_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let tenant_a = TenantId::generate();
    let tenant_b = TenantId::generate();
    let a = workload(&vault, tenant_a, 2);
    let b = workload(&vault, tenant_b, 1);
    let sealed_a0 = vault
        .store
        .get(&tenant_a, Kind::Contacts, a[0].as_bytes())
        .unwrap()
        .unwrap();

    // Onto another contact of the same tenant.
    let mut batch = Batch::new();
    batch.put(
        tenant_a,
        Kind::Contacts,
        a[1].as_bytes().to_vec(),
        sealed_a0.clone(),
    );
    // Onto a contact of another tenant.
    batch.put(
        tenant_b,
        Kind::Contacts,
        b[0].as_bytes().to_vec(),
        sealed_a0.clone(),
    );
    vault.store.commit(&batch).unwrap();

    let contacts_a = Contacts::of(&vault, tenant_a).unwrap();
    assert!(
        contacts_a.load(&a[0]).unwrap().is_some(),
        "the original still opens"
    );
    assert!(matches!(
        contacts_a.load(&a[1]),
        Err(DataError::Sealed { .. })
    ));
    let contacts_b = Contacts::of(&vault, tenant_b).unwrap();
    assert!(matches!(
        contacts_b.load(&b[0]),
        Err(DataError::Sealed { .. })
    ));

    // A consent record re-keyed under another contact does not open either.
    let records = vault
        .store
        .scan(&tenant_a, Kind::Consent, a[0].as_bytes(), None, 10)
        .unwrap();
    let (key, sealed) = &records[0];
    let mut moved_key = a[1].as_bytes().to_vec();
    moved_key.extend_from_slice(&key[16..]);
    let mut batch = Batch::new();
    batch.put(tenant_a, Kind::Consent, moved_key, sealed.clone());
    vault.store.commit(&batch).unwrap();
    let ledger = ConsentLedger::of(&vault, tenant_a).unwrap();
    assert!(matches!(
        ledger.history(&a[1]),
        Err(DataError::Sealed { .. })
    ));
}

#[test]
fn after_erasure_an_older_copy_of_the_records_reveals_nothing_of_the_contact() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let ids = {
        let vault = vault(dir.path());
        workload(&vault, tenant, 3)
    };
    // A copy of the records taken before the erasure (a stale replica, a
    // backup, a stolen disk image).
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("records"), &copy.path().join("records"));

    {
        let vault = vault(dir.path());
        let contacts = Contacts::of(&vault, tenant).unwrap();
        erase(&vault, tenant, ids[0]);
        assert!(contacts.load(&ids[0]).unwrap().is_none());
        assert!(contacts.find(Some(&person(0).0), None).unwrap().is_none());
    }

    // Open the old copy with the live key ring.
    std::fs::remove_dir_all(dir.path().join("records")).unwrap();
    copy_dir(&copy.path().join("records"), &dir.path().join("records"));
    let vault = vault(dir.path());
    let contacts = Contacts::of(&vault, tenant).unwrap();
    // The copy still has the index entry and the sealed record…
    assert_eq!(
        contacts.find(Some(&person(0).0), None).unwrap(),
        Some(ids[0])
    );
    assert!(
        vault
            .store
            .get(&tenant, Kind::Contacts, ids[0].as_bytes())
            .unwrap()
            .is_some()
    );
    // …but without the key there is nothing to read.
    assert!(contacts.load(&ids[0]).unwrap().is_none());
    assert!(vault.keys.contact(&tenant, &ids[0]).unwrap().is_none());
    // Try every key the ring still has: none opens the erased record.
    let sealed = vault
        .store
        .get(&tenant, Kind::Contacts, ids[0].as_bytes())
        .unwrap()
        .unwrap();
    for other in &ids[1..] {
        let key = vault.keys.contact(&tenant, other).unwrap().unwrap();
        let opened: Result<serde_json::Value, _> =
            vault.open(&key, &tenant, Kind::Contacts, ids[0].as_bytes(), &sealed);
        assert!(opened.is_err());
    }
    // The other contacts are intact.
    let survivor = contacts.load(&ids[1]).unwrap().unwrap();
    assert_eq!(
        survivor.contact.profile_name.as_deref(),
        Some(person(1).1.as_str())
    );
}

#[test]
fn master_key_rotation_rewraps_without_rewriting_records() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::generate();
    let ids = {
        let vault = vault(dir.path());
        workload(&vault, tenant, 2)
    };
    let record_before = {
        let vault = vault(dir.path());
        let before = vault
            .store
            .get(&tenant, Kind::Contacts, ids[0].as_bytes())
            .unwrap();
        assert_eq!(
            vault
                .keys
                .rotate_master(SecretKey::from_bytes([0x77; 64]))
                .unwrap(),
            1
        );
        before
    };
    let rotated = Vault::open_dir(dir.path(), SecretKey::from_bytes([0x77; 64])).unwrap();
    let record_after = rotated
        .store
        .get(&tenant, Kind::Contacts, ids[0].as_bytes())
        .unwrap();
    assert_eq!(record_before, record_after, "records are not rewritten");
    let contacts = Contacts::of(&rotated, tenant).unwrap();
    assert_eq!(
        contacts
            .load(&ids[0])
            .unwrap()
            .unwrap()
            .contact
            .profile_name
            .as_deref(),
        Some(person(0).1.as_str())
    );
    drop(contacts);
    drop(rotated);
    // The old master key no longer opens the tenant.
    let old = vault(dir.path());
    assert!(Contacts::of(&old, tenant).is_err());
}

#[test]
fn plugin_state_round_trips_through_the_store_per_installation() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let tenant = TenantId::generate();
    vault.keys.create_tenant(&tenant).unwrap();
    let contacts = Contacts::of(&vault, tenant).unwrap();
    let loaded = contacts
        .resolve_inbound(Some("16505550000"), None, None, NOW)
        .unwrap();
    let (one, two) = (InstallationId::generate(), InstallationId::generate());
    let mut batch = Batch::new();
    contacts.stage(&mut batch, &loaded);
    let id = loaded.contact.id;
    plugin_state::stage(
        &vault,
        &mut batch,
        plugin_state::Slot {
            tenant: &tenant,
            installation: &one,
            contact: &id,
            contact_key: &loaded.key,
        },
        BTreeMap::from([("n".into(), vec![1])]),
        NOW,
    );
    plugin_state::stage(
        &vault,
        &mut batch,
        plugin_state::Slot {
            tenant: &tenant,
            installation: &two,
            contact: &id,
            contact_key: &loaded.key,
        },
        BTreeMap::from([("n".into(), vec![2])]),
        NOW,
    );
    vault.store.commit(&batch).unwrap();
    assert_eq!(
        plugin_state::load(&vault, &tenant, &one, &id, &loaded.key).unwrap()["n"],
        vec![1]
    );
    assert_eq!(
        plugin_state::load(&vault, &tenant, &two, &id, &loaded.key).unwrap()["n"],
        vec![2]
    );
    let all = plugin_state::all_for_contact(&vault, &tenant, &id, &loaded.key).unwrap();
    assert_eq!(all.len(), 2);
    // Erasure takes the state with it.
    erase(&vault, tenant, id);
    assert_eq!(vault.store.count(Kind::PluginState), 0);
}

#[test]
fn opted_out_restricted_and_objecting_contacts_shape_the_views() {
    let runtime = shared_runtime();
    let labeller = load(runtime, "labeller");
    let grants = [DataField::MessageText, DataField::Labels]
        .into_iter()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let vault = vault(dir.path());
    let tenant = TenantId::generate();
    vault.keys.create_tenant(&tenant).unwrap();
    let contacts = Contacts::of(&vault, tenant).unwrap();
    let mut loaded = contacts
        .resolve_inbound(Some("1"), None, None, NOW)
        .unwrap();

    let decide = |c: &flowgate::data::contacts::Contact| {
        view::disclose(&labeller.manifest, &grants, &c.processing_state())
    };
    assert!(
        decide(&loaded.contact)
            .unwrap()
            .shows(DataField::MessageText)
    );
    loaded.contact.objections = vec![Purpose::parse("essential").unwrap()];
    assert!(
        decide(&loaded.contact).is_err(),
        "objection to a broader purpose"
    );
    loaded.contact.objections.clear();
    loaded.contact.restricted = true;
    assert!(decide(&loaded.contact).is_err(), "restricted");

    // Opted out of messages (STOP), as stored: still processed, labels and
    // scores still apply; only replies to the contact are dropped, by the
    // flow (tests/e2e/http/service.rs).
    loaded.contact.restricted = false;
    loaded.contact.opted_out = true;
    let mut batch = Batch::new();
    contacts.stage(&mut batch, &loaded);
    vault.store.commit(&batch).unwrap();
    let opted_out = contacts.load(&loaded.contact.id).unwrap().unwrap().contact;
    assert!(opted_out.opted_out);
    assert!(
        decide(&opted_out).unwrap().shows(DataField::MessageText),
        "opted out of messages, not of processing"
    );

    // And a real call with the consent-free, essential-purpose labeller,
    // for the opted-out contact.
    let disclosure = decide(&opted_out).unwrap();
    let event = view::build_event(
        &disclosure,
        &opted_out.view_data(),
        EventContext {
            pseudonym: "ps".into(),
            message: Some(MessageFacts {
                kind: flowgate::channel::whatsapp::payload::MessageKind::Text,
                text: Some("refund please".into()),
                received_at: NOW,
                service_window_open: true,
            }),
            status: None,
            config: vec![(
                "rules".into(),
                r#"[{"label":"complaint","keywords":["refund"]}]"#.into(),
            )],
            now: NOW,
            timezone: "UTC".into(),
            utc_offset_minutes: 0,
        },
    );
    let invocation = runtime.invoke(&labeller, Call::new(event)).unwrap();
    assert_eq!(
        invocation.actions,
        vec![Action::AddLabel {
            label: "complaint".into()
        }]
    );
}
