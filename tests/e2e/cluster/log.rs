//! The JetStream log: the same contract as the local logs, acknowledged
//! records surviving the death of any one server, fencing, and records
//! larger than the servers take in one message.

use std::time::Instant;

use flowgate::cluster::{ClusterLink, JetStreamLog, LogSettings, Partition, names};
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

/// Settings with room for records of several MB.
fn roomy() -> LogSettings {
    LogSettings {
        max_bytes: 64 << 20,
        ..settings()
    }
}

/// `len` bytes that differ from position to position (and from `seed` to
/// seed), so a part put back in the wrong place, or twice, is noticed.
fn large(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// How many messages the log's stream holds.
fn messages(link: &ClusterLink, log: &JetStreamLog) -> u64 {
    let jetstream = link.jetstream().clone();
    let name = log.stream_name().to_owned();
    link.run(async move {
        let stream = jetstream.get_stream(name).await.unwrap();
        stream.get_info().await.unwrap().state.messages
    })
}

#[test]
fn a_record_larger_than_a_message_round_trips_between_small_ones() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let max_payload = link.client().max_payload();
    let partition = Partition(5);
    let records = vec![
        record(0),
        large(5 << 20, 1),
        record(1),
        // Just over one message.
        large(max_payload + 1, 2),
        record(2),
    ];
    assert!(records[1].len() > 4 * max_payload, "{max_payload}");

    let log = JetStreamLog::open(link.clone(), partition, &roomy(), 1).unwrap();
    let started = Instant::now();
    let positions: Vec<u64> = records
        .iter()
        .map(|record| log.append(record).unwrap())
        .collect();
    assert_eq!(log.sync().unwrap(), log.end());
    eprintln!(
        "appended and synced {} MiB in {:?}",
        records.iter().map(Vec::len).sum::<usize>() >> 20,
        started.elapsed()
    );
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{positions:?}"
    );
    // Positions are sequences: the large records took several each, and
    // the end is after the last part.
    assert!(positions[2] - positions[1] >= 5, "{positions:?}");
    assert_eq!(positions[4] - positions[3], 2, "{positions:?}");
    assert_eq!(log.end(), positions[4] + 1);
    let fence = 1;
    assert_eq!(messages(&link, &log), fence + log.end() - positions[0]);

    let expected: Vec<(u64, Vec<u8>)> = positions.iter().copied().zip(records).collect();
    let started = Instant::now();
    let all = replayed(&log, 0);
    eprintln!("replayed in {:?}", started.elapsed());
    assert!(all == expected, "the replay differs from what was appended");
    for from in 1..expected.len() {
        assert!(
            replayed(&log, positions[from]) == expected[from..],
            "a replay from the record at {} differs",
            positions[from]
        );
    }
    drop(log);

    // A new writer replays the same, and appends after the last part.
    let log = JetStreamLog::open(link.clone(), partition, &roomy(), 2).unwrap();
    assert!(replayed(&log, 0) == expected);
    let after = log.append(b"after the new writer's fence").unwrap();
    log.sync().unwrap();
    assert_eq!(after, positions[4] + 2);
    assert_eq!(
        replayed(&log, after),
        [(after, b"after the new writer's fence".to_vec())]
    );
}

/// Publish what a writer that died mid-record leaves: the first `parts` of
/// a record of `total` parts, on the record subject, and nothing after.
fn publish_short_record(link: &ClusterLink, partition: Partition, parts: u32, total: u32) {
    let jetstream = link.jetstream().clone();
    link.run(async move {
        for index in 1..=parts {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(names::PART_HEADER, format!("{index}/{total}").as_str());
            jetstream
                .publish_with_headers(
                    names::log_record_subject(partition),
                    headers,
                    large(1000, index).into(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
}

#[test]
fn a_record_cut_short_by_its_writers_death_is_skipped_and_does_not_confuse_the_next_writer() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let partition = Partition(6);
    let old = JetStreamLog::open(link.clone(), partition, &roomy(), 1).unwrap();
    let kept = old.append(b"before the short record").unwrap();
    old.sync().unwrap();
    // The writer dies with two of a record's three parts in the stream.
    publish_short_record(&link, partition, 2, 3);
    drop(old);

    let new = JetStreamLog::open(link.clone(), partition, &roomy(), 2).unwrap();
    let big = large(3 << 20, 7);
    let (b1, b2) = (new.append(&big).unwrap(), new.append(b"small").unwrap());
    new.sync().unwrap();
    let expected = vec![
        (kept, b"before the short record".to_vec()),
        (b1, big),
        (b2, b"small".to_vec()),
    ];
    assert!(replayed(&new, 0) == expected, "{:?}", positions(&new));
    drop(new);

    // A cut keeps only the newest fence: the one between the short record
    // and the next writer's first goes, and the short record is still
    // dropped, the next one still read.
    let third = JetStreamLog::open(link.clone(), partition, &roomy(), 3).unwrap();
    third.truncate(kept).unwrap();
    let fence_before_b1 = b1 - 1;
    let stream = {
        let jetstream = link.jetstream().clone();
        let name = third.stream_name().to_owned();
        link.run(async move { jetstream.get_stream(name).await.unwrap() })
    };
    let gone = link.run(async move { stream.get_raw_message(fence_before_b1).await.is_err() });
    assert!(gone, "the fence between was cut");
    assert!(replayed(&third, 0) == expected, "{:?}", positions(&third));

    // A short record at the very end: replay ends without it, and the
    // next writer fences after it and goes on.
    publish_short_record(&link, partition, 1, 2);
    assert!(replayed(&third, 0) == expected, "{:?}", positions(&third));
    drop(third);
    let fourth = JetStreamLog::open(link.clone(), partition, &roomy(), 4).unwrap();
    let last = fourth.append(b"the fourth writer's").unwrap();
    fourth.sync().unwrap();
    let mut with_last = expected.clone();
    with_last.push((last, b"the fourth writer's".to_vec()));
    assert!(
        replayed(&fourth, 0) == with_last,
        "{:?}",
        positions(&fourth)
    );
    assert!(replayed(&fourth, b1) == with_last[1..]);
}

/// The positions a replay gives (for a failure's message: records of MBs
/// are not printed).
fn positions(log: &JetStreamLog) -> Vec<(u64, usize)> {
    replayed(log, 0)
        .into_iter()
        .map(|(position, record)| (position, record.len()))
        .collect()
}
