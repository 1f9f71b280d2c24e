//! The JetStream log: the same contract as the local logs, acknowledged
//! records surviving the death of any one server, and fencing.

use std::time::Instant;

use flowgate::cluster::{JetStreamLog, Partition};
use flowgate::store::log::contract::{self, replayed};
use flowgate::store::log::{Log, LogError};
use flowgate_testkit::nats::NatsCluster;

use super::{link, settings};

#[test]
fn the_jetstream_log_keeps_the_log_contract() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    contract::check(&mut || {
        Box::new(JetStreamLog::open(link.clone(), Partition(1), &settings(), 1).unwrap())
    });
}

fn record(i: usize) -> Vec<u8> {
    format!("sealed group {i:04}").into_bytes()
}

/// The server leading `log`'s stream.
fn leader(nats: &NatsCluster, link: &flowgate::cluster::ClusterLink, log: &JetStreamLog) -> usize {
    let jetstream = link.jetstream().clone();
    let name = log.stream_name().to_owned();
    let leader = link
        .run(async move {
            let stream = jetstream.get_stream(name).await.unwrap();
            stream.cached_info().cluster.as_ref()?.leader.clone()
        })
        .expect("the stream has a leader");
    nats.index_of(&leader).unwrap()
}

#[test]
fn acknowledged_records_survive_kill_9_of_any_one_server() {
    let mut nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let partition = Partition(2);
    let log = JetStreamLog::open(link.clone(), partition, &settings(), 1).unwrap();
    let mut positions = Vec::new();
    let mut append = |log: &JetStreamLog, range: std::ops::Range<usize>| {
        for i in range {
            positions.push(log.append(&record(i)).unwrap());
        }
        log.sync().unwrap();
    };
    append(&log, 0..50);

    // The worst one first: the stream's leader, mid-stream. Appends go on
    // while the other two elect a new leader; the sync waits for them.
    let leader = leader(&nats, &link, &log);
    nats.kill(leader);
    let started = Instant::now();
    append(&log, 50..100);
    eprintln!(
        "appends and sync with the leader killed: {:?}",
        started.elapsed()
    );
    nats.restart(leader).unwrap();

    // Then a follower.
    let follower = (0..3)
        .find(|&i| i != self::leader(&nats, &link, &log))
        .unwrap();
    nats.kill(follower);
    append(&log, 100..150);
    nats.restart(follower).unwrap();
    drop(log);

    // A new writer (a restart of the node) replays every synced record,
    // once each, in order, at the positions the appends returned.
    let log = JetStreamLog::open(link.clone(), partition, &settings(), 1).unwrap();
    let replay = replayed(&log, 0);
    let expected: Vec<(u64, Vec<u8>)> = positions
        .iter()
        .enumerate()
        .map(|(i, &position)| (position, record(i)))
        .collect();
    assert_eq!(replay.len(), 150);
    assert_eq!(replay, expected);
}

#[test]
fn a_writer_fenced_by_a_newer_term_is_refused() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let partition = Partition(3);
    let old = JetStreamLog::open(link.clone(), partition, &settings(), 5).unwrap();
    let kept = old.append(b"before the handover").unwrap();
    old.sync().unwrap();

    // The partition's next holder fences the log with its newer term.
    let new = JetStreamLog::open(link.clone(), partition, &settings(), 6).unwrap();
    // The old writer does not know yet: its append is sent, and refused
    // by the servers, which its sync reports.
    old.append(b"after the handover").unwrap();
    let refused = old.sync().unwrap_err();
    assert!(matches!(refused, LogError::Fenced { .. }), "{refused}");
    // It stays refused: a fenced writer must stop, not retry.
    assert!(matches!(old.append(b"again"), Err(LogError::Fenced { .. })));
    // And a writer that opens with the old term is refused at once.
    let stale = JetStreamLog::open(link.clone(), partition, &settings(), 5).unwrap_err();
    assert!(matches!(stale, LogError::Fenced { .. }), "{stale}");

    let mine = new.append(b"the new holder's").unwrap();
    new.sync().unwrap();
    assert_eq!(
        replayed(&new, 0),
        [
            (kept, b"before the handover".to_vec()),
            (mine, b"the new holder's".to_vec())
        ]
    );
}
