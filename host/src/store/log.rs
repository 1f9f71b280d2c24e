//! The durable log: every commit group appended as one record, made
//! durable by one sync per flush, replayed after a crash from the last
//! checkpoint, and cut once a checkpoint has written its records to the
//! store.
//!
//! A group is the unit of atomicity: a record is either whole after a crash
//! (its frame length and checksum hold) or ignored with everything after
//! it. [`Log`] is the seam: [`SegmentLog`] (files of checksummed frames
//! beside the store) is what the service uses; [`SledLog`] keeps the same
//! records in a sled tree and exists to measure the two against each other
//! (BENCHMARKS.md, "Log"). Cluster mode implements it over a NATS
//! JetStream stream: an append is a publish (with the expected last
//! sequence, which fences an owner that lost its lease; several, for a
//! record larger than a message), a position is the stream sequence, `replay` is an ordered consumer from a sequence, and
//! `truncate` is a purge up to a sequence.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a record starts: a byte offset in the log's whole history (never
/// reused), so positions compare across segments.
pub type Position = u64;

/// A log failure. After a failed append or sync the service stops: what
/// was acknowledged as durable must be, and a log that cannot promise it
/// is not written to again (restart recovers from what is on disk).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("a log record at position {position} is damaged: {reason}")]
    Damaged { position: Position, reason: String },
    /// Another writer appended at `position` since this one last did: it
    /// holds the log now (a partition's new owner), and this writer must
    /// stop, not retry. Distinct from a failure: nothing is wrong with the
    /// log, only with this writer's claim to it.
    #[error(
        "the log was written at position {position} by another owner: this writer is fenced off"
    )]
    Fenced { position: Position },
    /// A log kept by a remote service (cluster mode) did not answer, or
    /// refused, and retrying within the log's deadline did not help.
    #[error("log service: {what}")]
    Remote {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The behaviour every [`Log`] keeps, run by each implementation's tests.
pub mod contract;

/// Receives each record of a replay: its position and bytes.
pub type ReplaySink<'a> = dyn FnMut(Position, &[u8]) -> Result<(), LogError> + 'a;

/// An append-only sequence of records.
pub trait Log: Send + Sync + 'static {
    /// Append a record; it is durable once [`Log::sync`] returns a position
    /// past it. Returns the record's position.
    fn append(&self, record: &[u8]) -> Result<Position, LogError>;

    /// Make every appended record durable; returns the position after the
    /// last one.
    fn sync(&self) -> Result<Position, LogError>;

    /// The position after the last appended record.
    fn end(&self) -> Position;

    /// Pass every whole record at or after `from` to `each`, in order.
    fn replay(&self, from: Position, each: &mut ReplaySink<'_>) -> Result<(), LogError>;

    /// Forget the records before `before`: a checkpoint holds them. Whole
    /// segments are dropped, so some records before `before` may stay until
    /// a later cut; replay from `before` never reads them.
    fn truncate(&self, before: Position) -> Result<(), LogError>;
}

/// Frame header: length (u32 LE) and CRC-32 of the payload (u32 LE).
const HEADER: usize = 8;

/// A segment is closed once it grows past this; a cut drops whole segments.
const SEGMENT_BYTES: u64 = 64 << 20;

/// The log as segment files `<start position>.seg` in a directory.
pub struct SegmentLog {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Position after the last appended record.
    end: AtomicU64,
}

struct Writer {
    file: std::sync::Arc<File>,
    /// Position of the segment's first byte.
    start: Position,
    /// Bytes in the segment.
    len: u64,
    /// Set after a failed write: nothing more is appended.
    poisoned: bool,
}

fn segment_path(dir: &Path, start: Position) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

impl SegmentLog {
    /// Open (or create) the log in `dir`. A torn record at the end of the
    /// last segment (a crash during an append) is cut off, so appends
    /// continue after the last whole record.
    pub fn open(dir: &Path) -> Result<SegmentLog, LogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = segments(dir)?;
        let (start, len) = match segments.last() {
            Some(&start) => {
                let path = segment_path(dir, start);
                let valid = valid_length(&path, start)?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                file.set_len(valid).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                (start, valid)
            }
            None => (0, 0),
        };
        let path = segment_path(dir, start);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if segments.is_empty() {
            sync_dir(dir)?;
        }
        Ok(SegmentLog {
            dir: dir.to_owned(),
            end: AtomicU64::new(start + len),
            writer: Mutex::new(Writer {
                file: std::sync::Arc::new(file),
                start,
                len,
                poisoned: false,
            }),
        })
    }

    /// Start a new segment at the current end, after making the old one
    /// durable (records never span segments).
    fn rotate(&self, writer: &mut Writer) -> Result<(), LogError> {
        let old = segment_path(&self.dir, writer.start);
        writer.file.sync_data().map_err(io(&old))?;
        let start = writer.start + writer.len;
        let path = segment_path(&self.dir, start);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(&self.dir)?;
        *writer = Writer {
            file: std::sync::Arc::new(file),
            start,
            len: 0,
            poisoned: false,
        };
        Ok(())
    }
}

/// The start positions of the segments in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<Position>, LogError> {
    let mut starts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        if let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            starts.push(start);
        }
    }
    starts.sort_unstable();
    Ok(starts)
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Bytes of `path` that hold whole, intact records.
fn valid_length(path: &Path, start: Position) -> Result<u64, LogError> {
    read_frames(path, start, 0, &mut |_, _| Ok(()))
}

/// Read the frames of a segment from byte `offset`, passing each whole one
/// to `each`; stops at the first torn or damaged frame (the end of what was
/// durably written). Returns the offset after the last whole frame.
fn read_frames(
    path: &Path,
    start: Position,
    offset: u64,
    each: &mut ReplaySink<'_>,
) -> Result<u64, LogError> {
    let mut file = File::open(path).map_err(io(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut at = offset;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    loop {
        if !read_full(&mut reader, &mut header).map_err(io(path))? {
            return Ok(at);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        payload.resize(len, 0);
        if !read_full(&mut reader, &mut payload).map_err(io(path))?
            || crc32fast::hash(&payload) != crc
        {
            return Ok(at);
        }
        each(start + at, &payload)?;
        at += (HEADER + len) as u64;
    }
}

/// Fill `buf`; false when the file ends first (a torn frame).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => return Ok(false),
            n => filled += n,
        }
    }
    Ok(true)
}

impl Log for SegmentLog {
    fn append(&self, record: &[u8]) -> Result<Position, LogError> {
        let mut writer = self.writer.lock().expect("log writer lock");
        if writer.poisoned {
            return Err(LogError::Damaged {
                position: writer.start + writer.len,
                reason: "an earlier append failed; the log takes no more records".into(),
            });
        }
        if writer.len >= SEGMENT_BYTES {
            self.rotate(&mut writer)?;
        }
        let position = writer.start + writer.len;
        let mut frame = Vec::with_capacity(HEADER + record.len());
        frame.extend_from_slice(&(record.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
        frame.extend_from_slice(record);
        let path = segment_path(&self.dir, writer.start);
        if let Err(error) = (&*writer.file).write_all(&frame) {
            writer.poisoned = true;
            return Err(io(&path)(error));
        }
        writer.len += frame.len() as u64;
        self.end
            .store(position + frame.len() as u64, Ordering::Release);
        Ok(position)
    }

    fn sync(&self) -> Result<Position, LogError> {
        // Sync outside the lock, so appends go on meanwhile; everything
        // appended before the file was taken is in it (or in an earlier
        // segment, synced when it was closed).
        let (file, start, end) = {
            let writer = self.writer.lock().expect("log writer lock");
            (writer.file.clone(), writer.start, writer.start + writer.len)
        };
        file.sync_data()
            .map_err(io(&segment_path(&self.dir, start)))?;
        Ok(end)
    }

    fn end(&self) -> Position {
        self.end.load(Ordering::Acquire)
    }

    fn replay(&self, from: Position, each: &mut ReplaySink<'_>) -> Result<(), LogError> {
        let starts = segments(&self.dir)?;
        for (index, &start) in starts.iter().enumerate() {
            let next = starts.get(index + 1).copied().unwrap_or(u64::MAX);
            if next <= from {
                continue;
            }
            let offset = from.saturating_sub(start);
            let path = segment_path(&self.dir, start);
            let end = read_frames(&path, start, offset, each)?;
            let size = std::fs::metadata(&path).map_err(io(&path))?.len();
            if end < size && index + 1 < starts.len() {
                // A damaged record before the last segment: what follows
                // it cannot be trusted to be the history.
                return Err(LogError::Damaged {
                    position: start + end,
                    reason: "a record in a closed segment does not check".into(),
                });
            }
        }
        Ok(())
    }

    fn truncate(&self, before: Position) -> Result<(), LogError> {
        let current = self.writer.lock().expect("log writer lock").start;
        let starts = segments(&self.dir)?;
        for (index, &start) in starts.iter().enumerate() {
            let next = starts.get(index + 1).copied().unwrap_or(u64::MAX);
            if next <= before && start < current {
                let path = segment_path(&self.dir, start);
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

/// The log as a sled tree keyed by position: the alternative measured
/// against [`SegmentLog`]. Each record is one insert (sled writes it to its
/// own log, then to its pages).
pub struct SledLog {
    tree: sled::Tree,
    end: AtomicU64,
    db: sled::Db,
}

impl SledLog {
    /// The log in tree `log` of `db`.
    pub fn open(db: &sled::Db) -> Result<SledLog, LogError> {
        let tree = db.open_tree("log")?;
        let end = match tree.last()? {
            Some((key, value)) => {
                u64::from_be_bytes(key.as_ref().try_into().map_err(|_| LogError::Damaged {
                    position: 0,
                    reason: "a log key is not a position".into(),
                })?) + value.len() as u64
            }
            None => 0,
        };
        Ok(SledLog {
            tree,
            end: AtomicU64::new(end),
            db: db.clone(),
        })
    }
}

impl Log for SledLog {
    fn append(&self, record: &[u8]) -> Result<Position, LogError> {
        // Only the committer appends: the read-then-advance is not raced.
        let position = self.end.load(Ordering::Acquire);
        self.tree.insert(position.to_be_bytes(), record)?;
        self.end
            .store(position + record.len().max(1) as u64, Ordering::Release);
        Ok(position)
    }

    fn sync(&self) -> Result<Position, LogError> {
        let end = self.end();
        self.db.flush()?;
        Ok(end)
    }

    fn end(&self) -> Position {
        self.end.load(Ordering::Acquire)
    }

    fn replay(&self, from: Position, each: &mut ReplaySink<'_>) -> Result<(), LogError> {
        for item in self.tree.range(from.to_be_bytes()..) {
            let (key, value) = item?;
            let position = u64::from_be_bytes(key.as_ref().try_into().expect("8-byte keys"));
            each(position, &value)?;
        }
        Ok(())
    }

    fn truncate(&self, before: Position) -> Result<(), LogError> {
        for key in self.tree.range(..before.to_be_bytes()).keys() {
            self.tree.remove(key?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(log: &dyn Log, from: Position) -> Vec<(Position, Vec<u8>)> {
        let mut seen = Vec::new();
        log.replay(from, &mut |position, record| {
            seen.push((position, record.to_vec()));
            Ok(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn records_replay_in_order_from_any_position_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let positions: Vec<Position> = {
            let log = SegmentLog::open(dir.path()).unwrap();
            let positions = (0..5u8)
                .map(|i| log.append(&vec![i; 10 + i as usize]).unwrap())
                .collect();
            log.sync().unwrap();
            positions
        };
        let log = SegmentLog::open(dir.path()).unwrap();
        let all = replayed(&log, 0);
        assert_eq!(all.len(), 5);
        assert_eq!(all[3], (positions[3], vec![3; 13]));
        assert_eq!(replayed(&log, positions[2]).len(), 3);
        let next = log.append(b"after").unwrap();
        assert_eq!(next, log.end() - 5 - HEADER as u64);
        assert_eq!(replayed(&log, next), vec![(next, b"after".to_vec())]);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_appends_continue_after_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let second = {
            let log = SegmentLog::open(dir.path()).unwrap();
            log.append(b"first").unwrap();
            let second = log.append(b"second").unwrap();
            log.sync().unwrap();
            second
        };
        let path = segment_path(dir.path(), 0);
        // A crash half-way through writing the second record...
        let full = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 3)
            .unwrap();
        let log = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(replayed(&log, 0), vec![(0, b"first".to_vec())]);
        let third = log.append(b"third").unwrap();
        assert_eq!(third, second, "the torn record's place is reused");
        log.sync().unwrap();
        // ... and a flipped byte in a record's payload.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let log = SegmentLog::open(dir.path()).unwrap();
        assert_eq!(replayed(&log, 0), vec![(0, b"first".to_vec())]);
    }

    #[test]
    fn a_cut_drops_whole_segments_below_it_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path()).unwrap();
        let big = vec![7u8; 1 << 20];
        let mut positions = Vec::new();
        // Enough to fill two segments and start a third.
        for _ in 0..(2 * SEGMENT_BYTES / (1 << 20) + 2) {
            positions.push(log.append(&big).unwrap());
        }
        log.sync().unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 3);
        let from = positions[positions.len() - 3];
        log.truncate(from).unwrap();
        let left = segments(dir.path()).unwrap();
        assert!(left.len() < 3, "{left:?}");
        assert!(left[0] <= from);
        assert_eq!(replayed(&log, from).len(), 3);
    }

    #[test]
    fn the_segment_log_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        contract::check(&mut || Box::new(SegmentLog::open(dir.path()).unwrap()));
    }

    #[test]
    fn the_sled_log_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        contract::check(&mut || Box::new(SledLog::open(&db).unwrap()));
        let log = SledLog::open(&db).unwrap();
        let end = log.end();
        let last = log.append(b"two").unwrap();
        assert_eq!(last, end);
        drop(log);
        assert_eq!(SledLog::open(&db).unwrap().end(), last + 3);
    }
}
