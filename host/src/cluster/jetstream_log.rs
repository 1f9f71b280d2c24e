//! A partition's durable log as a NATS JetStream stream: the cluster-mode
//! implementation of [`Log`].
//!
//! One stream per partition (`flowgate-log-<p>`), file storage, replicated
//! to `replicas` servers (3 by default). A record is one message on
//! `flowgate.log.<p>.record`; its position is its stream sequence.
//!
//! **Records larger than a message.** The servers refuse a message over
//! their `max_payload` (1 MiB by default), and one commit group can be far
//! larger: admitting a plugin stores its component, tens of MB for a Python
//! one. Such a record is split into consecutive messages on the record
//! subject, each with a [`names::PART_HEADER`] of `<i>/<n>`, each published
//! like any record — its own message id, the expected last sequence and
//! message id — so fencing, retries and their resolution apply to every
//! part unchanged. The record's position is its first part's sequence; the
//! end is after its last. Replay puts the parts together and passes the
//! whole record at its first part's position (see [`Reassembly`] for what
//! it does with parts that do not make a record).
//!
//! **Durability is a quorum's acknowledgement.** JetStream acknowledges a
//! publish once a majority of the stream's replicas stored it (2 of 3), so
//! an acknowledged record survives the loss of any one server. Appends are
//! pipelined: [`Log::append`] publishes and returns without waiting, and
//! [`Log::sync`] waits for every acknowledgement outstanding — group commit,
//! as the segment log's one fsync per flush. (The servers' own fsync
//! follows their `sync_interval`; replication, not the disk flush, is what
//! an acknowledgement promises, which covers a server's death but not a
//! power cut of every server at once: see docs/operations.md.)
//!
//! **Fencing.** Each writer holds a lease term (the lease's KV revision, a
//! number that only grows across holders). Opening the log publishes a
//! *fence* carrying the term on `flowgate.log.<p>.fence`, refused if a
//! higher term fenced the log already. Every record is published with the
//! sequence and the message id the writer expects to come before it
//! (`Nats-Expected-Last-Sequence`, `Nats-Expected-Last-Msg-Id`), so once a
//! newer writer's fence is in the stream, the older writer's next record is
//! refused by the servers and [`Log::sync`] answers [`LogError::Fenced`].
//! The message id check matters: a sequence alone can be matched by
//! someone else's message landing exactly where a lost one of ours should
//! have been.
//!
//! **Retries.** A record's acknowledgement may be lost with a dying server
//! or a leader election. Then the log asks the stream's leader what is at
//! the record's sequence: our message id (it landed), another one (fenced),
//! or nothing (it is published again, with the same message id, which the
//! servers' deduplication window turns into a no-op if the first copy
//! lands after all). This repeats until the log's deadline; a log that
//! could not confirm a record fails the sync, and takes no more records.
//!
//! **Privacy.** Subjects, stream names and headers carry the partition
//! number, random writer ids, sequence numbers and part numbers only (see
//! [`super::names`]). The payload is whatever the caller appends: the
//! store's commit groups, whose records are sealed before they get here.
//!
//! The trait is synchronous and its callers are threads (the committer, the
//! flusher, the checkpointer, start-up): the work runs on the cluster
//! link's own runtime (see [`super::link`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, RawMessageErrorKind};
use async_nats::jetstream::{self as js, consumer};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::link::ClusterLink;
use super::names;
use super::partition::Partition;
use crate::store::log::{Log, LogError, Position, ReplaySink};

/// How a partition's log stream is kept.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Servers holding a copy (1, 3 or 5).
    pub replicas: usize,
    /// The most the stream may hold, in bytes. A full stream refuses
    /// appends (discard policy `new`): the service stops committing rather
    /// than have the servers drop records a checkpoint has not covered.
    pub max_bytes: i64,
    /// How long an operation keeps retrying through server deaths and
    /// leader elections before it fails. A leader election after a
    /// server's death takes the followers' election timeout, 4 to 9 s.
    pub deadline: Duration,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            replicas: 3,
            // The log holds what was written since the last checkpoint (at
            // least every 10 s): 256 MiB is minutes of a busy partition.
            // JetStream reserves max_bytes × replicas of the servers'
            // storage per stream, so it is not set higher than useful.
            max_bytes: 256 << 20,
            deadline: Duration::from_secs(30),
        }
    }
}

impl LogSettings {
    /// The stream's configuration for `partition`.
    fn stream_config(&self, partition: Partition) -> stream::Config {
        stream::Config {
            name: names::log_stream(partition),
            subjects: vec![names::log_subjects(partition)],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            max_bytes: self.max_bytes,
            // Retries of a record happen within the deadline; the window
            // must cover them (so a late first copy is not stored twice),
            // and costs the servers memory per message id, so it is not
            // longer than twice that.
            duplicate_window: self.deadline * 2,
            // Sealed records do not compress.
            compression: Some(stream::Compression::None),
            description: Some(format!("flowgate: the log of partition {partition}")),
            ..Default::default()
        }
    }
}

/// A partition's log in a JetStream stream, written by one lease holder.
pub struct JetStreamLog {
    link: Arc<ClusterLink>,
    stream: stream::Stream<()>,
    record_subject: String,
    fence_subject: String,
    /// Both, as the stream's subject filter.
    subjects: String,
    /// A random id for this writer (one per open): message ids are
    /// `<writer>.<sequence>`.
    writer_id: String,
    stream_name: String,
    deadline: Duration,
    writer: Mutex<Writer>,
    /// Held for a whole sync: a sync returns once every record appended
    /// before it is confirmed, including those an earlier, concurrent sync
    /// took.
    syncing: Mutex<()>,
    end: AtomicU64,
    /// The last sequence known to be in the stream: this writer's fence,
    /// then its last confirmed record.
    confirmed: AtomicU64,
}

struct Writer {
    /// The sequence the next record gets.
    next: u64,
    /// The message id of the record (or fence) at `next - 1`.
    last_id: String,
    /// Published, not yet confirmed.
    pending: VecDeque<Pending>,
    /// Set when a sync failed: nothing more is appended.
    failure: Option<Failure>,
}

#[derive(Clone, Copy)]
enum Failure {
    Fenced(Position),
    Unconfirmed(Position),
}

impl Writer {
    fn check(&self) -> Result<(), LogError> {
        match self.failure {
            None => Ok(()),
            Some(Failure::Fenced(position)) => Err(LogError::Fenced { position }),
            Some(Failure::Unconfirmed(position)) => Err(LogError::Damaged {
                position,
                reason: "an earlier record was not confirmed; the log takes no more records".into(),
            }),
        }
    }
}

/// A published message (a record, or a part of one) whose acknowledgement
/// is still to be checked.
struct Pending {
    sequence: u64,
    id: String,
    payload: Bytes,
    /// Its [`names::PART_HEADER`] value, when the record has several parts.
    part: Option<String>,
    ack: tokio::task::JoinHandle<Result<PublishAck, PublishError>>,
}

/// Room left in each message for its headers (message id, expected
/// sequence and message id, part): a few hundred bytes, with a margin.
const HEADER_ROOM: usize = 4 << 10;

/// The most payload a message of a record carries, for a connection whose
/// server takes `max_payload` bytes (headers and payload) at most. The
/// client keeps the limit of the server it is connected to (1 MiB, the
/// servers' default, until that server told it); the servers of a cluster
/// are meant to share one configuration, so a part sized for one fits all.
fn part_limit(max_payload: usize) -> usize {
    if max_payload > 2 * HEADER_ROOM {
        max_payload - HEADER_ROOM
    } else {
        max_payload / 2
    }
    .max(1)
}

/// A record's payload as the payloads of its messages: one, when it fits.
fn split(record: Bytes, limit: usize) -> Vec<Bytes> {
    if record.len() <= limit {
        return vec![record];
    }
    (0..record.len())
        .step_by(limit)
        .map(|start| record.slice(start..(start + limit).min(record.len())))
        .collect()
}

/// What a message of the log stream is, as replay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A writer's fence.
    Fence,
    /// A whole record, in one message.
    Whole,
    /// Part `index` of `total` (counting from 1) of a record.
    Part { index: u32, total: u32 },
}

impl Framing {
    /// The framing of a message on `subject` with `headers`; an error names
    /// what is wrong with a part header.
    fn of(
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        fence_subject: &str,
    ) -> Result<Framing, String> {
        if subject == fence_subject {
            return Ok(Framing::Fence);
        }
        let Some(value) = headers.and_then(|headers| headers.get(names::PART_HEADER)) else {
            return Ok(Framing::Whole);
        };
        let parsed = value
            .as_str()
            .split_once('/')
            .and_then(|(index, total)| Some((index.parse().ok()?, total.parse().ok()?)));
        match parsed {
            Some((index, total)) if 1 <= index && index <= total => {
                Ok(Framing::Part { index, total })
            }
            _ => Err(format!(
                "a message's {} header is not <i>/<n>",
                names::PART_HEADER
            )),
        }
    }
}

/// Puts records split over several messages back together during a replay.
///
/// What a stream can hold, and what replay does with it:
/// - A writer publishes a record's parts one after another, each expecting
///   the one before at the sequence before, so a record's parts are
///   consecutive with nothing between them.
/// - A record can stop short — its writer died, or was fenced, before its
///   last part landed. Its sync never returned, so it was never
///   acknowledged, and nothing of it is passed on. Replay notices when the
///   next message starts something else: a fence (the next writer's), a
///   whole record or a first part. The fence is not always there to see:
///   [`Log::truncate`] keeps only the newest fence, so a cut can leave a
///   short record directly before a later writer's first record. Either
///   way the short record is dropped, and the next one read as usual.
/// - A part that does not continue a record being put together (no first
///   part before it, a part missing between, another record's total) is
///   not something a writer can leave. At the start of a replay it is the
///   rest of a record that begins before the replay's first position —
///   positions handed out are always a record's first part, so only a
///   position not from this log does that — and it is skipped, as records
///   before that position are. Anywhere else it means messages were
///   removed from the middle of the stream by something other than a cut
///   (a cut never divides a record: it purges below a record's position):
///   an acknowledged record may be missing, so the replay fails with
///   [`LogError::Damaged`], as the segment log does for a damaged record
///   in a closed segment, rather than recover without it.
#[derive(Default)]
struct Reassembly {
    /// The record being put together.
    open: Option<Partial>,
    /// Whether a record's start (or a fence) was read: before one, a stray
    /// part is the rest of a record that begins before the replay does.
    started: bool,
}

struct Partial {
    /// The sequence of its first part: the record's position.
    first: u64,
    total: u32,
    /// The part expected next, and where.
    next_index: u32,
    next_sequence: u64,
    bytes: BytesMut,
}

impl Reassembly {
    /// Take the message at `sequence`; returns a record once one is whole,
    /// with its position.
    fn accept(
        &mut self,
        sequence: u64,
        framing: Framing,
        payload: Bytes,
    ) -> Result<Option<(u64, Bytes)>, LogError> {
        match framing {
            Framing::Fence => {
                // A short record before it is dropped, unread.
                self.open = None;
                self.started = true;
                Ok(None)
            }
            Framing::Whole | Framing::Part { index: 1, total: 1 } => {
                self.open = None;
                self.started = true;
                Ok(Some((sequence, payload)))
            }
            Framing::Part { index: 1, total } => {
                self.started = true;
                self.open = Some(Partial {
                    first: sequence,
                    total,
                    next_index: 2,
                    next_sequence: sequence + 1,
                    bytes: BytesMut::from(&payload[..]),
                });
                Ok(None)
            }
            Framing::Part { index, total } => match self.open.take() {
                Some(mut partial)
                    if partial.total == total
                        && partial.next_index == index
                        && partial.next_sequence == sequence =>
                {
                    partial.bytes.extend_from_slice(&payload);
                    if index == total {
                        return Ok(Some((partial.first, partial.bytes.freeze())));
                    }
                    partial.next_index += 1;
                    partial.next_sequence += 1;
                    self.open = Some(partial);
                    Ok(None)
                }
                None if !self.started => Ok(None),
                open => Err(LogError::Damaged {
                    position: sequence,
                    reason: match open {
                        Some(partial) => format!(
                            "part {index}/{total} at {sequence} follows the record at {} \
                             expecting part {}/{} at {}: a message is missing",
                            partial.first, partial.next_index, partial.total, partial.next_sequence
                        ),
                        None => format!(
                            "part {index}/{total} at {sequence} follows no first part: \
                             a message is missing"
                        ),
                    },
                }),
            },
        }
    }
}

fn remote(
    what: impl Into<String>,
    error: impl std::error::Error + Send + Sync + 'static,
) -> LogError {
    LogError::Remote {
        what: what.into(),
        source: Box::new(error),
    }
}

fn message_id(headers: &async_nats::HeaderMap) -> Option<&str> {
    headers.get(NATS_MESSAGE_ID).map(|value| value.as_str())
}

/// Pause between retries while the cluster recovers.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl JetStreamLog {
    /// Open (creating if needed) the log of `partition` for the holder of
    /// lease term `term`, and fence it: from now on, a writer with an older
    /// term cannot append. Refused with [`LogError::Fenced`] when a newer
    /// term fenced it already.
    pub fn open(
        link: Arc<ClusterLink>,
        partition: Partition,
        settings: &LogSettings,
        term: u64,
    ) -> Result<JetStreamLog, LogError> {
        let writer_id = flowgate_hex::to_hex(&crate::crypto::random_bytes::<8>());
        let config = settings.stream_config(partition);
        let stream_name = config.name.clone();
        let jetstream = link.jetstream().clone();
        let deadline = settings.deadline;
        let fence_subject = names::log_fence_subject(partition);
        let fence_id = format!("{writer_id}.fence");
        let (stream, fenced_at) = link.run({
            let fence_subject = fence_subject.clone();
            let fence_id = fence_id.clone();
            async move {
                let until = Instant::now() + deadline;
                let stream = ensure_stream(&jetstream, config, until).await?;
                let at = fence(&jetstream, &stream, &fence_subject, &fence_id, term, until).await?;
                Ok::<_, LogError>((stream, at))
            }
        })?;
        Ok(JetStreamLog {
            link,
            stream,
            record_subject: names::log_record_subject(partition),
            subjects: names::log_subjects(partition),
            fence_subject,
            writer_id,
            stream_name,
            deadline,
            writer: Mutex::new(Writer {
                next: fenced_at + 1,
                last_id: fence_id,
                pending: VecDeque::new(),
                failure: None,
            }),
            syncing: Mutex::new(()),
            end: AtomicU64::new(fenced_at + 1),
            confirmed: AtomicU64::new(fenced_at),
        })
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }
}

/// Create the stream, or update its settings to these.
async fn ensure_stream(
    jetstream: &js::Context,
    config: stream::Config,
    until: Instant,
) -> Result<stream::Stream<()>, LogError> {
    let name = config.name.clone();
    loop {
        match jetstream.create_or_update_stream(config.clone()).await {
            Ok(_) => break,
            Err(error) => {
                // No meta leader yet (a cluster starting or electing) is
                // worth waiting for; a refused configuration is not, but
                // it cannot be told apart reliably, and the deadline bounds
                // the wait either way.
                if Instant::now() > until {
                    return Err(remote(format!("creating the stream {name}"), error));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    jetstream
        .get_stream_no_info(&name)
        .await
        .map_err(|error| remote(format!("opening the stream {name}"), error))
}

/// Publish this writer's fence after everything in the stream, unless a
/// newer term's fence is there. Returns the fence's sequence.
async fn fence(
    jetstream: &js::Context,
    stream: &stream::Stream<()>,
    subject: &str,
    id: &str,
    term: u64,
    until: Instant,
) -> Result<u64, LogError> {
    let mut last_error: Option<LogError> = None;
    while Instant::now() < until {
        // The last sequence first, then the last fence: a fence published
        // in between makes the publish below (expecting that sequence)
        // fail and the loop look again, so no newer fence goes unseen.
        let last = match stream.get_info().await {
            Ok(info) => info.state.last_sequence,
            Err(error) => {
                last_error = Some(remote("reading the log stream's state", error));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let fenced = message
                    .headers
                    .get(names::FENCE_HEADER)
                    .and_then(|value| value.as_str().parse::<u64>().ok())
                    .unwrap_or(0);
                if fenced > term {
                    return Err(LogError::Fenced {
                        position: message.sequence,
                    });
                }
            }
            Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(error) => {
                last_error = Some(remote("reading the log's last fence", error));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        }
        let publish = PublishMessage::build()
            .payload(Bytes::new())
            .message_id(id)
            .expected_last_sequence(last)
            .header(names::FENCE_HEADER, term.to_string());
        let acked = match jetstream.send_publish(subject.to_owned(), publish).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match acked {
            Ok(ack) if ack.sequence == last + 1 => return Ok(ack.sequence),
            Ok(ack) => {
                return Err(LogError::Damaged {
                    position: ack.sequence,
                    reason: format!("the fence landed at {}, not after {last}", ack.sequence),
                });
            }
            Err(error) => {
                // Refused (someone wrote meanwhile) or unanswered: did it
                // land after all? Otherwise look again and retry.
                if let Ok(message) = stream.get_raw_message(last + 1).await
                    && message_id(&message.headers) == Some(id)
                {
                    return Ok(last + 1);
                }
                last_error = Some(remote("publishing the log's fence", error));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        remote(
            "fencing the log",
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        )
    }))
}

/// Confirm that each record of `batch` is in the stream at its sequence,
/// in order, publishing again what did not land.
async fn confirm(
    jetstream: js::Context,
    stream: stream::Stream<()>,
    subject: String,
    batch: VecDeque<Pending>,
    until: Instant,
) -> Result<(), (Failure, LogError)> {
    for mut pending in batch {
        // The fast path: the publish's own acknowledgement.
        match (&mut pending.ack).await {
            Ok(Ok(ack)) if ack.sequence == pending.sequence => continue,
            Ok(Ok(ack)) => {
                let reason = format!(
                    "record {} was acknowledged at sequence {}",
                    pending.sequence, ack.sequence
                );
                return Err((
                    Failure::Unconfirmed(pending.sequence),
                    LogError::Damaged {
                        position: pending.sequence,
                        reason,
                    },
                ));
            }
            // Refused, timed out, or the connection dropped: ask.
            Ok(Err(_)) | Err(_) => {}
        }
        resolve(&jetstream, &stream, &subject, &pending, until).await?;
    }
    Ok(())
}

/// Find out whether `pending` is in the stream at its sequence, and put it
/// there if nothing is. Every record before it is confirmed ours.
async fn resolve(
    jetstream: &js::Context,
    stream: &stream::Stream<()>,
    subject: &str,
    pending: &Pending,
    until: Instant,
) -> Result<(), (Failure, LogError)> {
    let sequence = pending.sequence;
    let unconfirmed = |error: LogError| (Failure::Unconfirmed(sequence), error);
    let mut last_error: Option<LogError> = None;
    // Times the record's place was empty while the stream went past it.
    let mut gaps = 0;
    while Instant::now() < until {
        match stream.get_raw_message(sequence).await {
            Ok(message) if message_id(&message.headers) == Some(pending.id.as_str()) => {
                return Ok(());
            }
            Ok(_) => {
                return Err((
                    Failure::Fenced(sequence),
                    LogError::Fenced { position: sequence },
                ));
            }
            Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => {
                match stream.get_info().await {
                    // Once may be the record landing between the two
                    // questions; twice, something removed it.
                    Ok(info) if info.state.last_sequence >= sequence => {
                        gaps += 1;
                        if gaps > 1 {
                            return Err(unconfirmed(LogError::Damaged {
                                position: sequence,
                                reason: "the record's place in the stream is empty: \
                                         something removed it"
                                    .into(),
                            }));
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        last_error = Some(remote("reading the log stream's state", error));
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                }
                // The stream ends before it: publish it again. The record
                // before it is ours (confirmed in order), so the expected
                // sequence is enough; the expected message id is left out
                // because a server restarted while the stream was idle
                // past its duplicate window no longer knows it.
                let mut publish = PublishMessage::build()
                    .payload(pending.payload.clone())
                    .message_id(&pending.id)
                    .expected_last_sequence(sequence - 1);
                if let Some(part) = &pending.part {
                    publish = publish.header(names::PART_HEADER, part.as_str());
                }
                let acked = match jetstream.send_publish(subject.to_owned(), publish).await {
                    Ok(ack) => ack.await,
                    Err(error) => Err(error),
                };
                match acked {
                    Ok(ack) if ack.sequence == sequence => return Ok(()),
                    // Landed elsewhere, refused, or unanswered: look again.
                    Ok(_) => {}
                    Err(error) => {
                        last_error = Some(remote("publishing a log record again", error));
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            Err(error) => {
                last_error = Some(remote("reading a log record back", error));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    Err(unconfirmed(last_error.unwrap_or_else(|| {
        remote(
            format!("confirming log record {sequence}"),
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        )
    })))
}

/// Whether the stream's leader holds a message on `subjects` at or after
/// `from` and no later than `end`.
async fn leader_holds(
    stream: &stream::Stream<()>,
    subjects: &str,
    from: u64,
    end: u64,
) -> Result<bool, LogError> {
    let next = stream
        .raw_message_builder()
        .sequence(from)
        .next_by_subject(subjects)
        .send()
        .await;
    match next {
        Ok(message) => Ok(message.sequence <= end),
        Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => Ok(false),
        Err(error) => Err(remote("reading the log stream's next message", error)),
    }
}

/// Read the stream from `from` to its last message at the start, passing
/// records (not fences), put together from their parts, to `sink` in
/// order. Retries through server deaths by starting a new ordered consumer
/// after the last message read.
///
/// The end is the leader's last sequence, and the replay reads up to it.
/// What the consumer says is left to read is not trusted to end the
/// replay: an ordered consumer is a one-replica consumer that may be
/// placed on any replica of the stream, one that is still catching up too
/// (a restarted server, or a follower on a loaded machine), and then it
/// counts, and delivers, only what that replica holds. When it says there
/// is nothing more before the end, the leader is asked; if the leader
/// holds more, the consumer is started again until one delivers it.
/// (Before this, a replay after a server's restart could stop short of
/// acknowledged records, seen in the tests under load.)
///
/// `known` is the last sequence the caller knows to be in the stream (its
/// own fence, or its last confirmed record): the end is never before it,
/// whatever a server answers about the stream's state. A replay that stops
/// short of its end is an error, never a silent end: the message at the
/// end is always there (the newest fence is never cut, and nobody but the
/// replaying writer appends or cuts once it has fenced the log), so a
/// server saying nothing is left before it is behind, and is asked again.
async fn replay_into(
    stream: stream::Stream<()>,
    subjects: String,
    fence_subject: String,
    from: u64,
    known: u64,
    until: Instant,
    sink: std::sync::mpsc::SyncSender<Result<(u64, Bytes), LogError>>,
) {
    let mut next = from.max(1);
    let mut last_error: Option<LogError> = None;
    let mut last = None;
    let mut reassembly = Reassembly::default();
    loop {
        if Instant::now() > until {
            let error = last_error.unwrap_or_else(|| {
                remote(
                    "replaying the log",
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                )
            });
            let _ = sink.send(Err(error));
            return;
        }
        let end = match last {
            Some(end) => end,
            None => match stream.get_info().await {
                Ok(info) => *last.insert(info.state.last_sequence.max(known)),
                Err(error) => {
                    last_error = Some(remote("reading the log stream's state", error));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        if next > end {
            return;
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: next,
                },
                ..Default::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(consumer) if consumer.cached_info().num_pending == 0 => {
                match leader_holds(&stream, &subjects, next, end).await {
                    // A server behind the stream's end (a leader just
                    // elected, still applying): ask again until it agrees.
                    Ok(false) => {
                        tracing::warn!(
                            next,
                            end,
                            "the log stream's leader holds nothing up to the log's end yet; \
                             asking again"
                        );
                        last_error = Some(LogError::Damaged {
                            position: next,
                            reason: format!(
                                "the stream answers that nothing is left to read from {next}, \
                                 but the log ends at {end}"
                            ),
                        });
                    }
                    // The consumer's replica lags: start another.
                    Ok(true) => {}
                    Err(error) => last_error = Some(error),
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            Ok(consumer) => match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    last_error = Some(remote("reading the log", error));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
            Err(error) => {
                last_error = Some(remote("starting to read the log", error));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        loop {
            let item = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            let message = match item {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => {
                    last_error = Some(remote("reading the log", error));
                    break;
                }
                Ok(None) => break,
                Err(elapsed) => {
                    last_error = Some(remote("reading the log", elapsed));
                    break;
                }
            };
            let (sequence, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(error) => {
                    let _ = sink.send(Err(LogError::Damaged {
                        position: next,
                        reason: format!("a log message without its metadata: {error}"),
                    }));
                    return;
                }
            };
            // The ordered consumer may start again from the stream's
            // beginning when it recreates itself: what is before `next`
            // was passed on already (or is before `from`).
            if sequence < next {
                continue;
            }
            let framing = Framing::of(
                message.subject.as_str(),
                message.headers.as_ref(),
                &fence_subject,
            )
            .map_err(|reason| LogError::Damaged {
                position: sequence,
                reason,
            });
            let record = framing.and_then(|framing| {
                reassembly.accept(sequence, framing, message.message.payload.clone())
            });
            match record {
                Ok(Some(record)) => {
                    if sink.send(Ok(record)).is_err() {
                        // The caller stopped the replay.
                        return;
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = sink.send(Err(error));
                    return;
                }
            }
            next = sequence + 1;
            if sequence >= end {
                return;
            }
            if pending == 0 {
                // Nothing more on the consumer's replica: the leader says
                // whether that is the end (the next consumer's count).
                break;
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

impl Log for JetStreamLog {
    fn append(&self, record: &[u8]) -> Result<Position, LogError> {
        let mut writer = self.writer.lock().expect("log writer lock");
        writer.check()?;
        let first = writer.next;
        let parts = split(
            Bytes::copy_from_slice(record),
            part_limit(self.link.client().max_payload()),
        );
        let total = parts.len();
        // Each part is published as a one-message record is, expecting the
        // message before it: the parts land consecutively, or the rest of
        // them not at all.
        let mut last_id = writer.last_id.clone();
        let mut messages = Vec::with_capacity(total);
        let mut pending = Vec::with_capacity(total);
        for (index, payload) in parts.into_iter().enumerate() {
            let sequence = first + index as u64;
            let id = format!("{}.{sequence}", self.writer_id);
            let part = (total > 1).then(|| format!("{}/{total}", index + 1));
            let mut publish = PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id)
                .expected_last_sequence(sequence - 1)
                .expected_last_message_id(&last_id);
            if let Some(part) = &part {
                publish = publish.header(names::PART_HEADER, part.as_str());
            }
            messages.push(publish);
            pending.push((sequence, id.clone(), payload, part));
            last_id = id;
        }
        let jetstream = self.link.jetstream().clone();
        let subject = self.record_subject.clone();
        // Publishing only hands the messages to the connection; each
        // acknowledgement is awaited by a task of its own, checked by the
        // next sync.
        let (acks, failed) = self.link.run(async move {
            let mut acks = Vec::with_capacity(messages.len());
            for publish in messages {
                match jetstream.send_publish(subject.clone(), publish).await {
                    Ok(ack) => acks.push(tokio::spawn(ack.into_future())),
                    Err(error) => return (acks, Some(error)),
                }
            }
            (acks, None)
        });
        if let Some(error) = failed {
            if !acks.is_empty() {
                // Part of the record is on its way, the rest is not: no
                // record can follow it. Its parts that land are a short
                // record, which replay drops.
                writer.failure = Some(Failure::Unconfirmed(first));
            }
            return Err(remote("publishing a log record", error));
        }
        for ((sequence, id, payload, part), ack) in pending.into_iter().zip(acks) {
            writer.pending.push_back(Pending {
                sequence,
                id,
                payload,
                part,
                ack,
            });
        }
        writer.last_id = last_id;
        writer.next = first + total as u64;
        self.end.store(writer.next, Ordering::Release);
        Ok(first)
    }

    fn sync(&self) -> Result<Position, LogError> {
        let _one_at_a_time = self.syncing.lock().expect("log sync lock");
        let (batch, end) = {
            let mut writer = self.writer.lock().expect("log writer lock");
            writer.check()?;
            (std::mem::take(&mut writer.pending), writer.next)
        };
        if batch.is_empty() {
            return Ok(end);
        }
        let confirmed = self.link.run(confirm(
            self.link.jetstream().clone(),
            self.stream.clone(),
            self.record_subject.clone(),
            batch,
            Instant::now() + self.deadline,
        ));
        match confirmed {
            Ok(()) => {
                self.confirmed.fetch_max(end - 1, Ordering::AcqRel);
                Ok(end)
            }
            Err((failure, error)) => {
                self.writer.lock().expect("log writer lock").failure = Some(failure);
                Err(error)
            }
        }
    }

    fn end(&self) -> Position {
        self.end.load(Ordering::Acquire)
    }

    fn replay(&self, from: Position, each: &mut ReplaySink<'_>) -> Result<(), LogError> {
        let (sender, records) = std::sync::mpsc::sync_channel(256);
        self.link.spawn(replay_into(
            self.stream.clone(),
            self.subjects.clone(),
            self.fence_subject.clone(),
            from,
            // Everything this writer fenced or confirmed is in the stream.
            self.confirmed.load(Ordering::Acquire),
            Instant::now() + self.deadline,
            sender,
        ));
        for record in records {
            let (position, payload) = record?;
            each(position, &payload)?;
        }
        Ok(())
    }

    fn truncate(&self, before: Position) -> Result<(), LogError> {
        // Never past what this writer put in the stream: a purge beyond
        // the last sequence would move the stream's sequence on.
        let before = before.min(self.end());
        let stream = self.stream.clone();
        let records = self.record_subject.clone();
        let fences = self.fence_subject.clone();
        let until = Instant::now() + self.deadline;
        self.link.run(async move {
            loop {
                // Records only: the fences stay, or a writer with an old
                // term could open the log again unseen. Of the fences,
                // the newest is enough.
                let cut = async {
                    stream.purge().filter(&records).sequence(before).await?;
                    stream.purge().filter(&fences).keep(1).await?;
                    Ok::<_, stream::PurgeError>(())
                };
                match cut.await {
                    Ok(()) => return Ok(()),
                    Err(error) if Instant::now() > until => {
                        return Err(remote("cutting the log", error));
                    }
                    Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
                }
            }
        })
    }
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.stream_name)
            .field("end", &self.end())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_replicated_file_storage_that_refuses_rather_than_drops() {
        let config = LogSettings::default().stream_config(Partition(7));
        assert_eq!(config.name, "flowgate-log-7");
        assert_eq!(config.subjects, ["flowgate.log.7.*"]);
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.storage, stream::StorageType::File);
        assert_eq!(config.discard, stream::DiscardPolicy::New);
        assert!(config.duplicate_window >= LogSettings::default().deadline);
    }

    #[test]
    fn a_record_is_split_into_parts_that_fit_a_message_with_its_headers() {
        assert_eq!(part_limit(1 << 20), (1 << 20) - HEADER_ROOM);
        assert!(part_limit(1000) > 0 && part_limit(1000) < 1000);
        let record = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<_>>());
        let parts = split(record.clone(), 300);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [300, 300, 300, 100]
        );
        assert_eq!(parts.concat(), record);
        assert_eq!(split(record.clone(), 1000), [record]);
        assert_eq!(split(Bytes::new(), 10), [Bytes::new()]);
    }

    fn part(index: u32, total: u32) -> Framing {
        Framing::Part { index, total }
    }

    /// What a replay of `messages` (sequence, framing, payload) passes on,
    /// or the error it stops with.
    fn reassembled(messages: &[(u64, Framing, &str)]) -> Result<Vec<(u64, String)>, String> {
        let mut reassembly = Reassembly::default();
        let mut records = Vec::new();
        for &(sequence, framing, payload) in messages {
            match reassembly.accept(sequence, framing, Bytes::from(payload.to_owned())) {
                Ok(Some((position, record))) => {
                    records.push((position, String::from_utf8(record.to_vec()).unwrap()))
                }
                Ok(None) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(records)
    }

    #[test]
    fn parts_make_one_record_at_the_first_parts_position() {
        use Framing::{Fence, Whole};
        let messages = [
            (1, Fence, ""),
            (2, Whole, "small"),
            (3, part(1, 3), "a"),
            (4, part(2, 3), "b"),
            (5, part(3, 3), "c"),
            (6, Whole, "after"),
        ];
        assert_eq!(
            reassembled(&messages).unwrap(),
            [(2, "small".into()), (3, "abc".into()), (6, "after".into())]
        );
    }

    #[test]
    fn a_short_record_is_dropped_whatever_follows_it() {
        use Framing::{Fence, Whole};
        // Its writer was fenced: the next writer's fence follows.
        let fenced = [(3, part(1, 3), "a"), (4, part(2, 3), "b"), (5, Fence, "")];
        assert_eq!(reassembled(&fenced).unwrap(), []);
        // The fence between was cut (a cut keeps the newest fence only).
        let cut = [
            (3, part(1, 3), "a"),
            (4, part(2, 3), "b"),
            (6, Whole, "next"),
            (7, part(1, 2), "x"),
            (8, part(1, 2), "y"),
            (9, part(2, 2), "z"),
        ];
        assert_eq!(
            reassembled(&cut).unwrap(),
            [(6, "next".into()), (8, "yz".into())]
        );
        // At the end of the stream: its writer died.
        let torn = [(2, Whole, "kept"), (3, part(1, 3), "a")];
        assert_eq!(reassembled(&torn).unwrap(), [(2, "kept".into())]);
    }

    #[test]
    fn the_rest_of_a_record_before_the_replay_is_skipped_and_anywhere_else_is_damage() {
        use Framing::Whole;
        let from_inside = [(4, part(2, 3), "b"), (5, part(3, 3), "c"), (6, Whole, "n")];
        assert_eq!(reassembled(&from_inside).unwrap(), [(6, "n".into())]);

        let damaged = [
            // A whole record, then the rest of one whose first part is gone.
            vec![(2, Whole, "r"), (4, part(2, 3), "b"), (5, part(3, 3), "c")],
            // A part missing between.
            vec![(3, part(1, 3), "a"), (5, part(3, 3), "c")],
            // In order, but not at consecutive sequences.
            vec![(3, part(1, 2), "a"), (5, part(2, 2), "b")],
            // Another record's part.
            vec![(3, part(1, 3), "a"), (4, part(2, 4), "b")],
        ];
        for messages in damaged {
            let error = reassembled(&messages).unwrap_err();
            assert!(error.contains("a message is missing"), "{error}");
        }
    }

    #[test]
    fn a_part_header_is_index_over_total() {
        let headers = |value: &str| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(names::PART_HEADER, value);
            headers
        };
        let of = |value: &str| Framing::of("r", Some(&headers(value)), "f");
        assert_eq!(of("2/5"), Ok(part(2, 5)));
        for bad in ["0/2", "3/2", "1", "a/b", "1/2/3", ""] {
            assert!(of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Framing::of("r", None, "f"), Ok(Framing::Whole));
        assert_eq!(Framing::of("f", None, "f"), Ok(Framing::Fence));
    }
}
