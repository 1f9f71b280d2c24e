//! The behaviour every [`Log`] keeps, written once: the segment and sled
//! logs' unit tests run it, and so does cluster mode's end-to-end test of
//! the JetStream log against real servers (which is why it is public and
//! not under `cfg(test)`: another crate's test calls it).
//!
//! What it holds an implementation to is what the embedded store relies
//! on: positions only grow, `sync` vouches for everything appended, replay
//! from a position gives exactly the records at and after it in order —
//! after reopening too — and a cut never loses a record at or after its
//! position. It does not pin how positions are counted (bytes for the
//! segment log, stream sequences for JetStream), nor how much a cut
//! removes below its position (whole segments only, for the segment log).

use super::{Log, Position};

/// Run the contract against the log `open` returns. The first call must
/// give an empty log; each later call reopens the same one (after the
/// previous handle was dropped), as a restart would.
///
/// Panics, naming the broken promise, when the log does not keep it.
pub fn check(open: &mut dyn FnMut() -> Box<dyn Log>) {
    let records: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        Vec::new(),
        vec![7; 300],
        b"fourth".to_vec(),
        (0..=255).collect(),
    ];
    let (positions, end) = {
        let log = open();
        assert!(
            replayed(&*log, 0).is_empty(),
            "a new log replays no records"
        );
        let start = log.end();
        let positions: Vec<Position> = records
            .iter()
            .map(|record| log.append(record).expect("append"))
            .collect();
        assert!(positions[0] >= start, "the first record starts at the end");
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "positions grow with each append: {positions:?}"
        );
        let end = log.end();
        assert!(end > positions[4], "the end is past the last record");
        assert_eq!(
            log.sync().expect("sync"),
            end,
            "sync returns the position after the last record"
        );
        let expected = with_positions(&positions, &records);
        assert_eq!(replayed(&*log, 0), expected, "replay gives every record");
        assert_eq!(
            replayed(&*log, positions[2]),
            expected[2..],
            "replay starts at the record at the position given"
        );
        assert!(replayed(&*log, end).is_empty(), "nothing is past the end");
        (positions, end)
    };

    // A restart: the synced records are there, with their positions.
    let after = {
        let log = open();
        let expected = with_positions(&positions, &records);
        assert_eq!(
            replayed(&*log, 0),
            expected,
            "a reopened log replays what was synced"
        );
        assert!(log.end() >= end, "reopening never moves the end back");
        let after = log.append(b"after reopening").expect("append");
        assert!(after >= end, "an append after reopening follows the rest");
        log.sync().expect("sync");
        assert_eq!(
            replayed(&*log, after),
            [(after, b"after reopening".to_vec())],
        );

        // A cut keeps every record at or after its position.
        log.truncate(positions[3]).expect("truncate");
        let mut kept = expected[3..].to_vec();
        kept.push((after, b"after reopening".to_vec()));
        assert_eq!(replayed(&*log, positions[3]), kept, "a cut keeps the rest");
        let all = replayed(&*log, 0);
        assert!(
            all.ends_with(&kept) && expected.ends_with(&all[..all.len() - 1]),
            "after a cut, replay gives a suffix of the records: {all:?}"
        );
        after
    };

    let log = open();
    let mut kept = with_positions(&positions, &records)[3..].to_vec();
    kept.push((after, b"after reopening".to_vec()));
    assert_eq!(
        replayed(&*log, positions[3]),
        kept,
        "a cut holds across a restart"
    );
}

fn with_positions(positions: &[Position], records: &[Vec<u8>]) -> Vec<(Position, Vec<u8>)> {
    positions
        .iter()
        .copied()
        .zip(records.iter().cloned())
        .collect()
}

/// Every record a replay from `from` gives, with its position.
pub fn replayed(log: &dyn Log, from: Position) -> Vec<(Position, Vec<u8>)> {
    let mut seen = Vec::new();
    log.replay(from, &mut |position, record| {
        seen.push((position, record.to_vec()));
        Ok(())
    })
    .expect("replay");
    seen
}
