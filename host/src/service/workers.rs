//! Processing workers: plain threads (plugin calls are CPU work) that take
//! items from one [`Scheduler`].
//!
//! The scheduler keeps two promises:
//! - **One contact's items in order.** Items are queued per (tenant,
//!   shard), the shard being a hash of the tenant and the contact; a
//!   shard's next item starts only once the one before it has committed, so
//!   a contact's events are processed one at a time, in arrival order, and
//!   never race on the contact's record.
//! - **No tenant crowds out the others.** Tenants with items ready take
//!   turns, one item per turn, so a tenant's backlog does not queue other
//!   tenants' items behind it; and a tenant runs at most
//!   [`TenantLimits::concurrent_events`](crate::config::TenantLimits::concurrent_events)
//!   items at a time (by default every worker but one), so however slow its
//!   plugins, a worker stays free for everyone else. Each item's plugins
//!   run within the tenant's per-event budget ([`super::flow`]).
//!
//! Before this, an item's shard picked one of the workers' own queues: a
//! tenant enabling slow plugins, or sending many events, held every worker
//! and queued every other tenant's events behind its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ServiceInner;
use super::committer::CommitError;
use super::flow;
use super::inbox::InboxJob;
use super::metrics::label;
use crate::audit::AuditDraft;
use crate::ids::TenantId;

/// The handle the service dispatches items through.
#[derive(Clone)]
pub struct Workers {
    scheduler: Arc<Scheduler<(InboxJob, Instant)>>,
}

impl Workers {
    /// Start `count` workers; one tenant runs at most `per_tenant` items at
    /// a time.
    pub fn start(
        service: Arc<ServiceInner>,
        count: usize,
        per_tenant: usize,
    ) -> (Workers, Vec<JoinHandle<()>>) {
        let scheduler = Arc::new(Scheduler::new(per_tenant));
        let threads = (0..count.max(1))
            .map(|index| {
                let service = service.clone();
                let scheduler = scheduler.clone();
                std::thread::Builder::new()
                    .name(format!("flowgate-worker-{index}"))
                    .spawn(move || run(service, &scheduler))
                    .expect("spawning a worker")
            })
            .collect();
        (Workers { scheduler }, threads)
    }

    /// Queue an item. `received` is when the webhook arrived.
    pub fn dispatch(&self, job: InboxJob, received: Instant) {
        self.scheduler.push(job.tenant, job.shard, (job, received));
    }

    /// Stop taking new items: the workers finish what is queued and exit.
    /// Items dispatched afterwards stay in the durable inbox and are
    /// processed after the restart.
    pub fn close(&self) {
        self.scheduler.close();
    }
}

fn run(service: Arc<ServiceInner>, scheduler: &Scheduler<(InboxJob, Instant)>) {
    while let Some((job, received)) = scheduler.take() {
        process(&service, &job, received);
        scheduler.done(&job.tenant, job.shard);
    }
}

fn process(service: &Arc<ServiceInner>, job: &InboxJob, received: Instant) {
    let mut attempt = 0u32;
    let mut conflicts = 0u32;
    let mut unrecorded = Vec::new();
    loop {
        match process_and_commit(service, job, received, &mut unrecorded) {
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
                // in the inbox meanwhile, and its shard keeps its order.
                std::thread::sleep(Duration::from_millis((50u64 << attempt.min(8)).min(10_000)));
                if service.stopping() {
                    break;
                }
            }
        }
    }
}

/// Items waiting and running, per tenant and shard; see the module docs.
pub struct Scheduler<T> {
    queues: Mutex<Queues<T>>,
    changed: Condvar,
    per_tenant: usize,
}

struct Queues<T> {
    tenants: HashMap<TenantId, TenantQueue<T>>,
    /// Tenants that may start an item now, in the order of their turns.
    turns: VecDeque<TenantId>,
    /// Items queued and not yet taken, all tenants together.
    pending: usize,
    closed: bool,
}

struct TenantQueue<T> {
    /// Items per shard, in arrival order.
    shards: HashMap<u8, VecDeque<T>>,
    /// Shards whose first item may start (none of theirs is running), in
    /// the order they became ready.
    ready: VecDeque<u8>,
    /// Shards with an item being processed (their next item waits).
    running: HashSet<u8>,
    /// Whether the tenant is in [`Queues::turns`].
    in_turns: bool,
}

impl<T> Default for TenantQueue<T> {
    fn default() -> Self {
        TenantQueue {
            shards: HashMap::new(),
            ready: VecDeque::new(),
            running: HashSet::new(),
            in_turns: false,
        }
    }
}

impl<T> Default for Queues<T> {
    fn default() -> Self {
        Queues {
            tenants: HashMap::new(),
            turns: VecDeque::new(),
            pending: 0,
            closed: false,
        }
    }
}

impl<T> TenantQueue<T> {
    fn eligible(&self, per_tenant: usize) -> bool {
        !self.ready.is_empty() && self.running.len() < per_tenant
    }
}

impl<T> Queues<T> {
    /// Give `tenant` a turn if it may start an item and has none yet.
    fn offer_turn(&mut self, tenant: TenantId, per_tenant: usize) {
        if let Some(queue) = self.tenants.get_mut(&tenant)
            && !queue.in_turns
            && queue.eligible(per_tenant)
        {
            queue.in_turns = true;
            self.turns.push_back(tenant);
        }
    }
}

impl<T> Scheduler<T> {
    /// A scheduler running at most `per_tenant` items of one tenant at once.
    pub fn new(per_tenant: usize) -> Scheduler<T> {
        Scheduler {
            queues: Mutex::new(Queues::default()),
            changed: Condvar::new(),
            per_tenant: per_tenant.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues<T>> {
        self.queues.lock().expect("scheduler lock poisoned")
    }

    /// Queue an item behind the others of its (tenant, shard).
    pub fn push(&self, tenant: TenantId, shard: u8, item: T) {
        let mut queues = self.lock();
        if queues.closed {
            return;
        }
        let queue = queues.tenants.entry(tenant).or_default();
        let items = queue.shards.entry(shard).or_default();
        items.push_back(item);
        // A shard with an item running becomes ready when that is done.
        if items.len() == 1 && !queue.running.contains(&shard) {
            queue.ready.push_back(shard);
        }
        queues.pending += 1;
        queues.offer_turn(tenant, self.per_tenant);
        drop(queues);
        self.changed.notify_one();
    }

    /// The next item to process: the first tenant whose turn it is, its
    /// earliest ready shard's first item. Waits for one; `None` once closed
    /// and everything queued has been taken.
    pub fn take(&self) -> Option<T> {
        let mut queues = self.lock();
        loop {
            if let Some(tenant) = queues.turns.pop_front() {
                let per_tenant = self.per_tenant;
                let queue = queues.tenants.get_mut(&tenant).expect("a tenant in turns");
                queue.in_turns = false;
                let shard = queue.ready.pop_front().expect("an eligible tenant");
                let item = queue
                    .shards
                    .get_mut(&shard)
                    .and_then(VecDeque::pop_front)
                    .expect("a ready shard has an item");
                queue.running.insert(shard);
                queues.pending -= 1;
                // To the back of the line: the others' turns come first.
                queues.offer_turn(tenant, per_tenant);
                return Some(item);
            }
            if queues.closed && queues.pending == 0 {
                return None;
            }
            queues = self.changed.wait(queues).expect("scheduler lock poisoned");
        }
    }

    /// An item of `tenant` in `shard` has been processed: the shard's next
    /// item may start.
    pub fn done(&self, tenant: &TenantId, shard: u8) {
        let mut queues = self.lock();
        let Some(queue) = queues.tenants.get_mut(tenant) else {
            return;
        };
        queue.running.remove(&shard);
        if queue
            .shards
            .get(&shard)
            .is_some_and(|items| !items.is_empty())
        {
            queue.ready.push_back(shard);
        } else {
            queue.shards.remove(&shard);
        }
        if queue.running.is_empty() && queue.shards.is_empty() {
            queues.tenants.remove(tenant);
        } else {
            queues.offer_turn(*tenant, self.per_tenant);
        }
        let closed = queues.closed;
        drop(queues);
        // Woken all: a closed scheduler's idle workers check whether they
        // may exit, an open one's whether an item became ready.
        if closed {
            self.changed.notify_all();
        } else {
            self.changed.notify_one();
        }
    }

    /// Take no more items; workers exit once the queued ones are done.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(n: usize) -> Vec<TenantId> {
        (0..n).map(|_| TenantId::generate()).collect()
    }

    #[test]
    fn a_shards_items_start_one_at_a_time_in_order() {
        let scheduler = Scheduler::new(4);
        let [a] = tenants(1)[..] else { unreachable!() };
        for n in 0..3 {
            scheduler.push(a, 7, n);
        }
        scheduler.push(a, 8, 10);
        assert_eq!(scheduler.take(), Some(0));
        // Shard 7's next item waits for the first; shard 8's may start.
        assert_eq!(scheduler.take(), Some(10));
        scheduler.done(&a, 7);
        assert_eq!(scheduler.take(), Some(1));
        scheduler.done(&a, 7);
        assert_eq!(scheduler.take(), Some(2));
    }

    #[test]
    fn tenants_take_turns_and_one_tenant_is_held_to_its_share() {
        let scheduler = Scheduler::new(1);
        let [noisy, quiet] = tenants(2)[..] else {
            unreachable!()
        };
        for n in 0..5u8 {
            scheduler.push(noisy, n, format!("noisy {n}"));
        }
        scheduler.push(quiet, 0, "quiet 0".to_string());
        scheduler.push(quiet, 1, "quiet 1".to_string());
        assert_eq!(scheduler.take().as_deref(), Some("noisy 0"));
        // The noisy tenant has its one item running: the quiet one's items
        // go next although they arrived after all of the noisy one's.
        assert_eq!(scheduler.take().as_deref(), Some("quiet 0"));
        scheduler.done(&quiet, 0);
        scheduler.done(&noisy, 0);
        assert_eq!(scheduler.take().as_deref(), Some("quiet 1"));
        assert_eq!(scheduler.take().as_deref(), Some("noisy 1"));
    }

    #[test]
    fn closing_lets_the_queued_items_finish_then_ends_the_workers() {
        let scheduler = Arc::new(Scheduler::new(1));
        let [a] = tenants(1)[..] else { unreachable!() };
        scheduler.push(a, 0, 1);
        scheduler.push(a, 0, 2);
        scheduler.close();
        scheduler.push(a, 0, 3);
        let worker = {
            let scheduler = scheduler.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(item) = scheduler.take() {
                    seen.push(item);
                    scheduler.done(&a, 0);
                }
                seen
            })
        };
        assert_eq!(worker.join().unwrap(), vec![1, 2]);
    }
}
