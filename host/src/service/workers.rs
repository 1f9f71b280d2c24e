//! Processing workers: plain threads (plugin calls are CPU work), one queue
//! each. An item's shard picks its worker, so one contact's events are
//! processed in order by one thread and never race on the contact's record.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ServiceInner;
use super::flow;
use super::inbox::InboxJob;
use super::metrics::label;

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
        loop {
            match process_and_commit(&service, &job) {
                Ok(()) => {
                    service
                        .metrics
                        .event_seconds
                        .observe(received.elapsed().as_secs_f64());
                    service
                        .metrics
                        .events
                        .get_or_create(&label("outcome", "processed"))
                        .inc();
                    break;
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

fn process_and_commit(service: &ServiceInner, job: &InboxJob) -> Result<(), String> {
    let processed = flow::process(service, job).map_err(|e| e.to_string())?;
    service
        .committer
        .commit_blocking(processed.commit)
        .map_err(|e| e.to_string())?;
    if processed.queued_replies > 0 {
        service
            .metrics
            .replies_queued
            .inc_by(processed.queued_replies as u64);
        service.outbox.wake();
    }
    Ok(())
}
