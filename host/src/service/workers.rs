//! Processing workers: plain threads (plugin calls are CPU work), one queue
//! each. An item's shard picks its worker, so one contact's events are
//! processed in order by one thread and never race on the contact's record.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ServiceInner;
use super::committer::CommitError;
use super::flow;
use super::inbox::InboxJob;
use super::metrics::label;
use crate::audit::AuditDraft;

/// Senders to the workers' queues.
#[derive(Clone)]
pub struct Workers {
    queues: Vec<mpsc::Sender<(InboxJob, Instant)>>,
}

impl Workers {
    /// Start `count` workers.
    pub fn start(service: Arc<ServiceInner>, count: usize) -> (Workers, Vec<JoinHandle<()>>) {
        let count = count.max(1);
        let mut queues = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (sender, receiver) = mpsc::channel();
            queues.push(sender);
            let service = service.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("flowgate-worker-{index}"))
                    .spawn(move || run(service, receiver))
                    .expect("spawning a worker"),
            );
        }
        (Workers { queues }, threads)
    }

    /// Hand an item to its worker. `received` is when the webhook arrived.
    pub fn dispatch(&self, job: InboxJob, received: Instant) {
        let queue = &self.queues[job.shard as usize % self.queues.len()];
        // A closed queue means the service is shutting down; the item stays
        // in the durable inbox and is processed after the restart.
        let _ = queue.send((job, received));
    }
}

fn run(service: Arc<ServiceInner>, receiver: mpsc::Receiver<(InboxJob, Instant)>) {
    while let Ok((job, received)) = receiver.recv() {
        let mut attempt = 0u32;
        let mut conflicts = 0u32;
        let mut unrecorded = Vec::new();
        loop {
            match process_and_commit(&service, &job, received, &mut unrecorded) {
                Ok(()) => break,
                // The contact was changed (an API call, an erasure) between
                // this event's read and its commit, and nothing of the event
                // was written: process it again on the record as it is now.
                // Only a record that keeps changing falls through to the
                // backoff below.
                Err(Failure::Conflict) if conflicts < 3 => {
                    conflicts += 1;
                    tracing::debug!(conflicts, "the contact changed while processing; again");
                }
                Err(error) => {
                    attempt += 1;
                    service
                        .metrics
                        .events
                        .get_or_create(&label("outcome", "retried"))
                        .inc();
                    tracing::warn!(%error, attempt, "processing an inbox item failed; retrying");
                    // Transient failures (storage, a plugin that cannot be
                    // loaded yet) are retried with backoff; the item is safe
                    // in the inbox meanwhile, and the worker keeps its order.
                    std::thread::sleep(Duration::from_millis(
                        (50u64 << attempt.min(8)).min(10_000),
                    ));
                    if service.stopping() {
                        break;
                    }
                }
            }
        }
    }
}

/// Why processing an item did not commit.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Process(#[from] flow::ProcessError),
    #[error(transparent)]
    Commit(CommitError),
    #[error("{}", CommitError::Conflict)]
    Conflict,
}

/// Process an item and commit its effects. The worker waits until the
/// effects are applied (the contact's next event must see them), not until
/// they are flushed: the group's fsync overlaps with the next event's
/// plugin calls. Replies are released to the sender, and the event counted
/// as processed, once the flush has made them durable.
///
/// `unrecorded`: audit entries of earlier attempts at this item that did
/// not commit but record what will not happen again (see
/// [`flow::Processed::lasting`]); they go first into this attempt's
/// commit, and stay for the next attempt if this one fails too.
fn process_and_commit(
    service: &Arc<ServiceInner>,
    job: &InboxJob,
    received: Instant,
    unrecorded: &mut Vec<AuditDraft>,
) -> Result<(), Failure> {
    let mut processed = flow::process(service, job)?;
    let earlier = std::mem::take(unrecorded);
    let mut pending = earlier.clone();
    pending.append(&mut processed.lasting);
    processed.commit.audit.splice(0..0, earlier);
    let replies = processed.replies;
    let confirmed = processed.confirmed;
    let durable_service = service.clone();
    let durable_replies = replies;
    let on_durable = Box::new(move |flushed: Result<(), CommitError>| {
        if flushed.is_err() {
            // Not durable: the event stays in the inbox (its removal was in
            // the same write) and its replies are not released to the
            // sender (a crash could undo them after they went out).
            return;
        }
        let service = durable_service;
        let metrics = &service.metrics;
        metrics
            .event_seconds
            .observe(received.elapsed().as_secs_f64());
        metrics
            .events
            .get_or_create(&label("outcome", "processed"))
            .inc();
        if !durable_replies.is_empty() {
            metrics.replies_queued.inc_by(durable_replies.len() as u64);
            service.outbox.release(&durable_replies);
        }
    });
    let result = service
        .committer
        .commit_applied_blocking(processed.commit, on_durable);
    if !confirmed.is_empty() && result.is_ok() {
        // A confirmation of a send in doubt is readable now.
        service.outbox.release(&confirmed);
    }
    match result {
        Ok(_) => Ok(()),
        Err(error) => {
            *unrecorded = pending;
            Err(match error {
                CommitError::Conflict => Failure::Conflict,
                error => Failure::Commit(error),
            })
        }
    }
}
