//! The key ring's store in a KV bucket: the same contract as the embedded
//! key store, one ring for every node, shredding that is immediate for
//! all of them and leaves no message behind, and a store that keeps
//! working through a server's death.

use std::sync::Arc;
use std::time::Instant;

use flowgate::cluster::{ClusterLink, KeyBucketSettings, KvKeyStore, names};
use flowgate::crypto::key_store::contract;
use flowgate::crypto::{KeyRing, KeySpace, KeyStore, SecretKey};
use flowgate::ids::{ContactId, TenantId};
use flowgate_testkit::nats::NatsCluster;

use super::link;

fn key_store(link: &Arc<ClusterLink>) -> KvKeyStore {
    KvKeyStore::open(link.clone(), &KeyBucketSettings::default()).unwrap()
}

/// A node connected to server `index` only (until that server dies).
fn node(nats: &NatsCluster, index: usize, name: &str) -> Arc<ClusterLink> {
    ClusterLink::connect_to(&[nats.servers()[index].url()], None, name).unwrap()
}

#[test]
fn the_kv_key_store_keeps_the_key_store_contract() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    contract::check(&mut || Box::new(key_store(&link)));
}

#[test]
fn of_two_nodes_creating_one_key_at_once_exactly_one_wins_and_both_read_its_value() {
    let nats = NatsCluster::start(3).unwrap();
    let (a, b) = (node(&nats, 0, "node-a"), node(&nats, 2, "node-b"));
    contract::create_race(&key_store(&a), &key_store(&b));
}

/// The bucket stream's message count and whether it holds any message on
/// `subject`, as the stream's leader says.
fn raw_stream(link: &ClusterLink, store: &KvKeyStore, subject: String) -> (u64, bool) {
    let jetstream = link.jetstream().clone();
    let name = store.stream_name().to_owned();
    link.run(async move {
        let stream = jetstream.get_stream(name).await.unwrap();
        let messages = stream.get_info().await.unwrap().state.messages;
        let held = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_ok();
        (messages, held)
    })
}

#[test]
fn a_deleted_key_is_gone_at_once_for_every_node_and_leaves_no_message_in_the_bucket() {
    let nats = NatsCluster::start(3).unwrap();
    let (link_a, link_b) = (node(&nats, 0, "node-a"), node(&nats, 1, "node-b"));
    let (a, b) = (key_store(&link_a), key_store(&link_b));
    let tenant = [7u8; 16];
    a.put(KeySpace::Tenants, &tenant, b"a wrapped tenant key")
        .unwrap();
    // Many times over: a read that a lagging replica answered would show
    // a deleted key now and then, not every time.
    for round in 0..30u8 {
        let key = [[round; 16], [0xc0; 16]].concat();
        let subject = format!(
            "$KV.{}.{}",
            names::KEY_BUCKET,
            names::wrapped_key(KeySpace::Contacts, &key)
        );
        let wrapped = [b"a wrapped contact key ".as_slice(), &[round]].concat();
        a.put(KeySpace::Contacts, &key, &wrapped).unwrap();
        assert_eq!(
            b.get(KeySpace::Contacts, &key).unwrap(),
            Some(wrapped),
            "round {round}: written on one node, read on the other"
        );
        let (before, held) = raw_stream(&link_b, &b, subject.clone());
        assert!(held);

        assert!(a.delete(KeySpace::Contacts, &key).unwrap());
        assert_eq!(
            b.get(KeySpace::Contacts, &key).unwrap(),
            None,
            "round {round}: shredded on one node, still there on the other"
        );
        // Purged: not a tombstone or a marker in the value's place (with
        // one message per key, either would keep the count).
        let (after, held) = raw_stream(&link_b, &b, subject);
        assert!(!held, "round {round}: a message is left for the key");
        assert_eq!(after, before - 1, "round {round}");
        assert!(!b.delete(KeySpace::Contacts, &key).unwrap());
    }
    assert_eq!(b.count(KeySpace::Contacts), 0);
    assert_eq!(b.count(KeySpace::Tenants), 1);
}

#[test]
fn a_key_ring_over_the_bucket_is_one_ring_for_two_nodes_and_shreds_for_both_at_once() {
    let nats = NatsCluster::start(3).unwrap();
    let (link_a, link_b) = (node(&nats, 0, "node-a"), node(&nats, 2, "node-b"));
    let master = SecretKey::from_bytes([3; 64]);
    // Two rings serving the same contacts at once: without the contact-key
    // cache, which is one ring's own (see `crypto::contact_keys`).
    let a = KeyRing::new(Box::new(key_store(&link_a)), master.clone()).with_contact_key_cache(0);
    let b = KeyRing::new(Box::new(key_store(&link_b)), master).with_contact_key_cache(0);
    let tenant = TenantId::generate();

    // A tenant's first events reach both nodes at once: one key is made.
    let (made_a, made_b) = std::thread::scope(|scope| {
        let made_a = scope.spawn(|| a.create_tenant(&tenant).unwrap().index);
        let made_b = scope.spawn(|| b.create_tenant(&tenant).unwrap().index);
        (made_a.join().unwrap(), made_b.join().unwrap())
    });
    assert_eq!(made_a, made_b, "both nodes use the one tenant key");

    let contacts: Vec<ContactId> = (0..3).map(|_| ContactId::generate()).collect();
    let keys: Vec<SecretKey> = contacts
        .iter()
        .map(|contact| a.create_contact(&tenant, contact).unwrap())
        .collect();
    a.flush().unwrap();
    for (contact, key) in contacts.iter().zip(&keys) {
        assert_eq!(b.contact(&tenant, contact).unwrap().as_ref(), Some(key));
    }
    assert_eq!(b.contact_key_count(), 3);

    // An erasure handled by node B: node A cannot open the contact's
    // records from the moment the shred returns.
    let started = Instant::now();
    assert!(b.shred_contact(&tenant, &contacts[0]).unwrap());
    assert_eq!(a.contact(&tenant, &contacts[0]).unwrap(), None);
    eprintln!(
        "shredded and gone on the other node in {:?}",
        started.elapsed()
    );
    assert_eq!(
        a.contact(&tenant, &contacts[1]).unwrap().as_ref(),
        Some(&keys[1])
    );

    // A tenant's deletion on node A takes every contact key, for B too.
    assert_eq!(a.shred_tenant(&tenant).unwrap(), 2);
    for contact in &contacts {
        assert_eq!(b.contact(&tenant, contact).unwrap(), None);
    }
    assert_eq!(b.contact_key_count(), 0);
    assert!(!b.has_tenant(&tenant).unwrap());
}

/// The server leading the key bucket's stream.
fn leader(nats: &NatsCluster, link: &ClusterLink, store: &KvKeyStore) -> usize {
    let jetstream = link.jetstream().clone();
    let name = store.stream_name().to_owned();
    let leader = link
        .run(async move {
            let stream = jetstream.get_stream(name).await.unwrap();
            stream.cached_info().cluster.as_ref()?.leader.clone()
        })
        .expect("the bucket's stream has a leader");
    nats.index_of(&leader).unwrap()
}

#[test]
fn the_key_store_keeps_working_through_kill_9_of_a_server() {
    let mut nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let store = key_store(&link);
    let deadline = KeyBucketSettings::default().deadline;
    let key = |i: u8| [i; 16];
    // Every operation of a contact key's life; returns how long it took.
    let life = |store: &KvKeyStore, i: u8| {
        let started = Instant::now();
        assert!(store.create(KeySpace::Contacts, &key(i), &[i; 48]).unwrap());
        assert!(!store.create(KeySpace::Contacts, &key(i), b"again").unwrap());
        store.put(KeySpace::Contacts, &key(i), &[i; 40]).unwrap();
        assert_eq!(
            store.get(KeySpace::Contacts, &key(i)).unwrap(),
            Some(vec![i; 40])
        );
        if i.is_multiple_of(2) {
            assert!(store.delete(KeySpace::Contacts, &key(i)).unwrap());
        }
        let took = started.elapsed();
        assert!(took < deadline, "key {i}: {took:?}");
        took
    };
    for i in 0..10 {
        life(&store, i);
    }

    // The bucket's leader dies: the other two elect a new one meanwhile.
    let leader = leader(&nats, &link, &store);
    nats.kill(leader);
    let started = Instant::now();
    let slowest = (10..20).map(|i| life(&store, i)).max().unwrap();
    eprintln!(
        "10 keys' lives with the leader killed: {:?} (slowest {slowest:?})",
        started.elapsed()
    );
    nats.restart(leader).unwrap();
    for i in 20..30 {
        life(&store, i);
    }

    // A node on the restarted server sees every key's last state.
    let other = node(&nats, leader, "node-b");
    let seen = key_store(&other);
    for i in 0..30u8 {
        let expected = (!i.is_multiple_of(2)).then(|| vec![i; 40]);
        assert_eq!(
            seen.get(KeySpace::Contacts, &key(i)).unwrap(),
            expected,
            "key {i}"
        );
    }
    assert_eq!(seen.count(KeySpace::Contacts), 15);
}
