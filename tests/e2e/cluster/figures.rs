//! A measurement, not a check (ignored by default): append + sync through
//! the JetStream log on a 3-server cluster against the segment log on the
//! local disk, in one run, in the order A-B-B-A so a machine warming up or
//! a neighbour's load does not favour one. Run by hand:
//!
//! ```text
//! eval $(cargo xtask nats-server)
//! cargo test -p flowgate-cli --test cluster -- --ignored --nocapture figures
//! ```

use std::time::{Duration, Instant};

use flowgate::cluster::{JetStreamLog, Partition};
use flowgate::store::log::{Log, SegmentLog};
use flowgate_testkit::nats::NatsCluster;

use super::{link, settings};

/// Records per group (one sync each): a committer's group under load.
const GROUP: usize = 16;
const GROUPS: usize = 200;
const RECORD_BYTES: usize = 1024;

struct Figures {
    records_per_second: f64,
    sync_p50: Duration,
    sync_p99: Duration,
}

fn measure(log: &dyn Log) -> Figures {
    let record = vec![0xa5u8; RECORD_BYTES];
    let mut syncs = Vec::with_capacity(GROUPS);
    let started = Instant::now();
    for _ in 0..GROUPS {
        for _ in 0..GROUP {
            log.append(&record).unwrap();
        }
        let sync = Instant::now();
        log.sync().unwrap();
        syncs.push(sync.elapsed());
    }
    let elapsed = started.elapsed();
    syncs.sort();
    Figures {
        records_per_second: (GROUP * GROUPS) as f64 / elapsed.as_secs_f64(),
        sync_p50: syncs[syncs.len() / 2],
        sync_p99: syncs[syncs.len() * 99 / 100],
    }
}

#[test]
#[ignore = "a measurement, run by hand (see the module docs)"]
fn figures_append_and_sync_jetstream_against_segment_log() {
    let nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let dir = tempfile::tempdir().unwrap();
    for (round, name) in ["segment", "jetstream", "jetstream", "segment"]
        .into_iter()
        .enumerate()
    {
        let log: Box<dyn Log> = match name {
            "segment" => Box::new(SegmentLog::open(&dir.path().join(round.to_string())).unwrap()),
            _ => Box::new(
                JetStreamLog::open(link.clone(), Partition(round as u32), &settings(), 1).unwrap(),
            ),
        };
        let figures = measure(&*log);
        println!(
            "{name:<10} {:>8.0} records/s  sync p50 {:>7.2} ms  p99 {:>7.2} ms  \
             ({GROUPS} groups of {GROUP} × {RECORD_BYTES} B)",
            figures.records_per_second,
            figures.sync_p50.as_secs_f64() * 1e3,
            figures.sync_p99.as_secs_f64() * 1e3,
        );
    }
}
