//! A partition's durable log as a NATS JetStream stream: the cluster-mode
//! implementation of [`Log`].
//!
//! One stream per partition (`flowgate-log-<p>`), file storage, replicated
//! to `replicas` servers (3 by default). A record is one message on
//! `flowgate.log.<p>.record`; its position is its stream sequence.
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
//! number, random writer ids and sequence numbers only (see
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
use bytes::Bytes;
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

/// A published record whose acknowledgement is still to be checked.
struct Pending {
    sequence: u64,
    id: String,
    payload: Bytes,
    ack: tokio::task::JoinHandle<Result<PublishAck, PublishError>>,
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
                let publish = PublishMessage::build()
                    .payload(pending.payload.clone())
                    .message_id(&pending.id)
                    .expected_last_sequence(sequence - 1);
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

/// Read the stream from `from` to its last message at the start, passing
/// records (not fences) to `sink` in order. Retries through server deaths
/// by starting a new ordered consumer after the last record passed on.
async fn replay_into(
    stream: stream::Stream<()>,
    fence_subject: String,
    from: u64,
    until: Instant,
    sink: std::sync::mpsc::SyncSender<Result<(u64, Bytes), LogError>>,
) {
    let mut next = from.max(1);
    let mut last_error: Option<LogError> = None;
    let mut last = None;
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
                Ok(info) => *last.insert(info.state.last_sequence),
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
            // Nothing at or after `next` any more (cut meanwhile).
            Ok(consumer) if consumer.cached_info().num_pending == 0 => return,
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
            if message.subject.as_str() != fence_subject {
                let payload = message.message.payload.clone();
                if sink.send(Ok((sequence, payload))).is_err() {
                    // The caller stopped the replay.
                    return;
                }
            }
            next = sequence + 1;
            if sequence >= end || pending == 0 {
                return;
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

impl Log for JetStreamLog {
    fn append(&self, record: &[u8]) -> Result<Position, LogError> {
        let mut writer = self.writer.lock().expect("log writer lock");
        writer.check()?;
        let sequence = writer.next;
        let id = format!("{}.{sequence}", self.writer_id);
        let payload = Bytes::copy_from_slice(record);
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&id)
            .expected_last_sequence(sequence - 1)
            .expected_last_message_id(&writer.last_id);
        let jetstream = self.link.jetstream().clone();
        let subject = self.record_subject.clone();
        // Publishing only hands the message to the connection; the
        // acknowledgement is awaited by a task of its own, checked by the
        // next sync.
        let ack = self
            .link
            .run(async move {
                let ack = jetstream.send_publish(subject, publish).await?;
                Ok::<_, PublishError>(tokio::spawn(ack.into_future()))
            })
            .map_err(|error| remote("publishing a log record", error))?;
        writer.pending.push_back(Pending {
            sequence,
            id: id.clone(),
            payload,
            ack,
        });
        writer.last_id = id;
        writer.next = sequence + 1;
        self.end.store(sequence + 1, Ordering::Release);
        Ok(sequence)
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
            Ok(()) => Ok(end),
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
            self.fence_subject.clone(),
            from,
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
}
