//! The behaviour every [`KeyStore`] keeps, written once: the sled key
//! store's unit tests run it, and so does cluster mode's end-to-end test of
//! the key bucket against real servers (which is why it is public and not
//! under `cfg(test)`: another crate's test calls it).
//!
//! What it holds an implementation to is what the key ring relies on:
//! spaces kept apart, `create` writing only where nothing is (also where a
//! key was deleted) and telling whether it did, `delete` telling whether
//! something was there and leaving nothing to read, `scan` paging through
//! a prefix in key order, counts, and what was flushed found again after
//! reopening. And a race: of two creations of one key at once, exactly one
//! wins and both read the winner's value (the ring's `create_tenant` on
//! two nodes at once).

use super::{KeySpace, KeyStore};

/// A contact key's key: tenant ‖ contact, as the ring builds it.
fn contact(tenant: u8, contact: u8) -> Vec<u8> {
    let mut key = vec![tenant; 16];
    key.extend([contact; 16]);
    key
}

/// Run the contract against the store `open` returns. The first call must
/// give an empty store; each later call reopens the same one (after the
/// previous handle was dropped), as a restart would.
///
/// Panics, naming the broken promise, when the store does not keep it.
pub fn check(open: &mut dyn FnMut() -> Box<dyn KeyStore>) {
    use KeySpace::{Contacts, Tenants};
    {
        let store = open();
        assert_eq!(store.get(Tenants, b"tenant-1").unwrap(), None, "empty");
        assert_eq!(store.count(Tenants), 0, "a new store holds no keys");
        assert_eq!(store.count(Contacts), 0, "a new store holds no keys");
        assert!(store.scan(Contacts, b"", None, 10).unwrap().is_empty());

        store.put(Tenants, b"tenant-1", b"wrapped 1").unwrap();
        assert_eq!(
            store.get(Tenants, b"tenant-1").unwrap().as_deref(),
            Some(&b"wrapped 1"[..]),
            "a put is read back"
        );
        store.put(Tenants, b"tenant-1", b"rewrapped 1").unwrap();
        assert_eq!(
            store.get(Tenants, b"tenant-1").unwrap().as_deref(),
            Some(&b"rewrapped 1"[..]),
            "a put replaces what was there"
        );
        assert_eq!(
            store.get(Contacts, b"tenant-1").unwrap(),
            None,
            "the spaces are apart"
        );

        assert!(
            store.create(Tenants, b"tenant-2", b"first").unwrap(),
            "creating an absent key writes it"
        );
        assert!(
            !store.create(Tenants, b"tenant-2", b"second").unwrap(),
            "creating a present key does not"
        );
        assert_eq!(
            store.get(Tenants, b"tenant-2").unwrap().as_deref(),
            Some(&b"first"[..]),
            "a refused creation keeps what was there"
        );
        assert!(
            store.delete(Tenants, b"tenant-2").unwrap(),
            "deleting a present key says so"
        );
        assert_eq!(
            store.get(Tenants, b"tenant-2").unwrap(),
            None,
            "a deleted key is gone"
        );
        assert!(
            !store.delete(Tenants, b"tenant-2").unwrap(),
            "deleting an absent key says nothing was there"
        );
        assert!(
            store.create(Tenants, b"tenant-2", b"again").unwrap(),
            "a deleted key can be created again"
        );
        assert_eq!(
            store.get(Tenants, b"tenant-2").unwrap().as_deref(),
            Some(&b"again"[..])
        );
        assert_eq!(store.count(Tenants), 2);

        // Keys are bytes: any byte, any length.
        let odd: [&[u8]; 3] = [&[0], &[0xff; 40], &[0, 0xff, b'.', b'*', b'>']];
        for key in odd {
            store.put(Tenants, key, key).unwrap();
            assert_eq!(store.get(Tenants, key).unwrap().as_deref(), Some(key));
        }
        for key in odd {
            assert!(store.delete(Tenants, key).unwrap());
        }

        // Two tenants' contacts, written out of order.
        for c in [3, 1, 4, 0, 2] {
            store
                .put(Contacts, &contact(0xaa, c), &[c; 48])
                .expect("put");
        }
        for c in [1, 0] {
            store.put(Contacts, &contact(0xbb, c), &[c; 48]).unwrap();
        }
        store.put(Contacts, &contact(0x99, 9), &[9; 48]).unwrap();
        let keys = |prefix: &[u8], after: Option<&[u8]>, limit| -> Vec<Vec<u8>> {
            let page = store.scan(Contacts, prefix, after, limit).unwrap();
            page.into_iter().map(|(key, _)| key).collect()
        };
        let tenant_a: Vec<Vec<u8>> = (0..5).map(|c| contact(0xaa, c)).collect();
        assert_eq!(
            keys(&[0xaa; 16], None, 10),
            tenant_a,
            "a scan gives the prefix's keys, in key order"
        );
        assert_eq!(keys(&[0xaa; 16], None, 2), tenant_a[..2], "at most limit");
        assert_eq!(
            keys(&[0xaa; 16], Some(&tenant_a[1]), 2),
            tenant_a[2..4],
            "a page starts after the key given"
        );
        assert!(keys(&[0xaa; 16], Some(&tenant_a[4]), 2).is_empty());
        assert_eq!(
            store
                .scan(Contacts, &[0xbb; 16], None, 10)
                .unwrap()
                .into_iter()
                .map(|(key, value)| (key[16], value))
                .collect::<Vec<_>>(),
            [(0, vec![0; 48]), (1, vec![1; 48])],
            "a scan gives the values too"
        );
        assert_eq!(keys(b"", None, 100).len(), 8, "an empty prefix is all");
        assert_eq!(
            store.scan(Tenants, b"", None, 100).unwrap().len(),
            2,
            "a scan stays in its space"
        );
        assert!(store.delete(Contacts, &tenant_a[2]).unwrap());
        assert_eq!(
            keys(&[0xaa; 16], Some(&tenant_a[1]), 10),
            [tenant_a[3].clone(), tenant_a[4].clone()],
            "a deleted key is not scanned"
        );
        assert_eq!(store.count(Contacts), 7);
        store.flush().expect("flush");
    }

    {
        let store = open();
        create_race(&*store, &*store);
    }

    // A restart: what was flushed is there, what was deleted is not.
    let store = open();
    assert_eq!(
        store.get(Tenants, b"tenant-1").unwrap().as_deref(),
        Some(&b"rewrapped 1"[..]),
        "a reopened store reads what was flushed"
    );
    assert_eq!(store.get(Contacts, &contact(0xaa, 2)).unwrap(), None);
    assert_eq!(store.count(Contacts), 7, "and counts the same");
}

/// Creations of one key at once through `a` and through `b` (one store
/// twice, or two nodes' stores over the same keys): exactly one is written,
/// and both read back the winner's value. Over several keys, so the two
/// threads really meet.
pub fn create_race(a: &dyn KeyStore, b: &dyn KeyStore) {
    const ROUNDS: u8 = 20;
    let barrier = std::sync::Barrier::new(2);
    // Errors are kept, not unwrapped, in the threads: a thread that
    // panicked would leave the other waiting at the barrier for ever.
    type Outcome = (
        Result<bool, String>,
        Vec<u8>,
        Result<Option<Vec<u8>>, String>,
    );
    let race = |store: &dyn KeyStore, name: &[u8]| -> Vec<Outcome> {
        (0..ROUNDS)
            .map(|round| {
                let key = [b"race-".as_slice(), &[round]].concat();
                let value = [name, &[round]].concat();
                barrier.wait();
                let created = store.create(KeySpace::Tenants, &key, &value);
                let read = store.get(KeySpace::Tenants, &key);
                (
                    created.map_err(|error| error.to_string()),
                    value,
                    read.map_err(|error| error.to_string()),
                )
            })
            .collect()
    };
    let (from_a, from_b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| race(a, b"node a "));
        let b = scope.spawn(|| race(b, b"node b "));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (round, ((a_won, a_value, a_read), (b_won, b_value, b_read))) in
        from_a.into_iter().zip(from_b).enumerate()
    {
        let (a_won, b_won) = (a_won.expect("create"), b_won.expect("create"));
        let (a_read, b_read) = (a_read.expect("get"), b_read.expect("get"));
        assert!(
            a_won != b_won,
            "round {round}: exactly one creation wins (a: {a_won}, b: {b_won})"
        );
        let winner = if a_won { a_value } else { b_value };
        assert_eq!(
            a_read.as_ref(),
            Some(&winner),
            "round {round}: a reads the winner's"
        );
        assert_eq!(
            b_read.as_ref(),
            Some(&winner),
            "round {round}: b reads the winner's"
        );
    }
    for round in 0..ROUNDS {
        assert!(
            a.delete(KeySpace::Tenants, &[b"race-".as_slice(), &[round]].concat())
                .unwrap()
        );
    }
}
