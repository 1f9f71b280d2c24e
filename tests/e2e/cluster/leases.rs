//! Partition leases: exclusive while renewed, handed over once the holder
//! stops renewing for the TTL, and fencing the old holder's log.

use std::time::{Duration, Instant};

use flowgate::cluster::{JetStreamLog, LeaseBucket, LeaseError, Partition};
use flowgate::store::log::{Log, LogError};
use flowgate_testkit::nats::NatsCluster;

use super::{link, settings};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_moves_after_its_ttl_and_fences_the_holder_that_stopped_renewing() {
    let nats = NatsCluster::start(3).unwrap();
    let (link_a, link_b) = (link(&nats, "node-a"), link(&nats, "node-b"));
    let a = LeaseBucket::open(&link_a, "node-a", TTL, 3).await.unwrap();
    let b = LeaseBucket::open(&link_b, "node-b", TTL, 3).await.unwrap();
    let partition = Partition(4);

    let mut held = a.acquire(partition).await.unwrap().expect("free at first");
    assert!(b.acquire(partition).await.unwrap().is_none(), "exclusive");
    let term = held.term();
    // The servers time the lease from when they store the renewal, after
    // it was sent: it cannot expire sooner than a TTL from here.
    let last_renewal = Instant::now();
    a.renew(&mut held).await.unwrap();
    assert_eq!(held.term(), term, "renewing keeps the term");
    assert!(held.revision() > term);
    assert_eq!(
        b.holder(partition).await.unwrap().as_deref(),
        Some("node-a")
    );
    let log_a = {
        let link = link_a.clone();
        tokio::task::spawn_blocking(move || {
            let log = JetStreamLog::open(link, partition, &settings(), term).unwrap();
            log.append(b"written under the first lease").unwrap();
            log.sync().unwrap();
            log
        })
        .await
        .unwrap()
    };

    // Node A stops renewing (paused, cut off, dead). Node B keeps asking.
    let taken = loop {
        if let Some(lease) = b.acquire(partition).await.unwrap() {
            break lease;
        }
        assert!(
            last_renewal.elapsed() < TTL + Duration::from_secs(8),
            "the lease did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waited = last_renewal.elapsed();
    eprintln!("the lease moved {waited:?} after its last renewal (TTL {TTL:?})");
    assert!(waited >= TTL - Duration::from_millis(200), "{waited:?}");
    assert!(taken.term() > term, "a later holder's term is greater");
    assert!(
        held.held_until() < Instant::now(),
        "A's own clock gave it up"
    );

    // A wakes up: its renewal fails, and once B fenced the log, so do its
    // appends.
    assert!(matches!(
        a.renew(&mut held).await,
        Err(LeaseError::Lost(p)) if p == partition
    ));
    let new_term = taken.term();
    let outcome = tokio::task::spawn_blocking(move || {
        let log_b = JetStreamLog::open(link_b, partition, &settings(), new_term).unwrap();
        log_a.append(b"written after losing the lease").unwrap();
        let refused = log_a.sync();
        log_b.append(b"written under the second lease").unwrap();
        log_b.sync().unwrap();
        refused
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, Err(LogError::Fenced { .. })),
        "{outcome:?}"
    );

    // A released lease is free at once, no TTL to wait; releasing one that
    // is no longer yours says so.
    assert!(matches!(a.release(held).await, Err(LeaseError::Lost(_))));
    b.release(taken).await.unwrap();
    let started = Instant::now();
    assert!(a.acquire(partition).await.unwrap().is_some());
    assert!(started.elapsed() < TTL);
}
