//! The committer: the one writer of the service.
//!
//! Every write — a webhook delivery entering the inbox, the effects of
//! processing an event, an API change — goes through one thread, which
//! groups whatever requests are waiting into a single atomic write, appends
//! their audit entries to each tenant's hash chain in that order, makes the
//! group durable with one flush, and then answers every request in it.
//!
//! One writer gives three properties at once: the audit chain has a single
//! order with no races on its head; "insert if absent" guards (webhook
//! deduplication) need no locks; and durability costs one fsync per group
//! instead of one per request (group commit), which is what lets a webhook
//! be acknowledged only once it is on disk without capping throughput at
//! the disk's fsync rate.
//!
//! It also checks what a request was computed from: a batch may expect a
//! record to be as it was read (see [`crate::store::Batch::expect`]), and a
//! request whose expectation no longer holds — a worker's event computed
//! from a contact that an API call has changed since — is refused alone
//! ([`CommitError::Conflict`]) and redone by its caller, instead of
//! silently undoing the other change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::AtomicU64;
use tokio::sync::oneshot;

use crate::audit::head::ChainEnd;
use crate::audit::{self, AuditDraft, AuditEntry};
use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::store::{Batch, Kind};

/// Requests merged into one write at most.
const MAX_GROUP: usize = 512;

/// A write guarded by "only if this key is absent" (and not written by an
/// earlier request of the same group).
#[derive(Debug, Clone)]
pub struct Guarded {
    pub tenant: TenantId,
    pub kind: Kind,
    pub key: Vec<u8>,
    /// Written only when the guard key is absent; it should write the guard.
    pub batch: Batch,
}

/// What to commit.
#[derive(Debug, Default)]
pub struct Commit {
    pub batch: Batch,
    pub guarded: Vec<Guarded>,
    pub audit: Vec<AuditDraft>,
}

impl Commit {
    /// A commit of a batch and its audit entries.
    pub fn new(batch: Batch, audit: Vec<AuditDraft>) -> Commit {
        Commit {
            batch,
            guarded: Vec::new(),
            audit,
        }
    }
}

/// The outcome of a commit.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// For each guarded write, whether it was applied.
    pub applied: Vec<bool>,
    /// The audit entries as placed in the chain.
    pub audit: Vec<AuditEntry>,
}

/// Why a commit failed. `Clone`: one failure answers every request of its
/// group, so a source error is shared behind an `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// Nothing of the group was written (the key ring or the store failed).
    #[error("commit failed: {0}")]
    Failed(#[source] Arc<DataError>),
    /// The committer thread has stopped (the service is shutting down):
    /// the request was not taken.
    #[error("commit failed: the committer has stopped")]
    Stopped,
    /// The committer thread stopped after taking the request, before
    /// answering it: whether it was written is unknown.
    #[error("commit failed: the committer stopped before answering")]
    Unanswered,
    /// A record this commit was computed from had been rewritten by an
    /// earlier commit (see [`crate::store::Batch::expect`]). Nothing of
    /// this commit was written; the rest of its group was. The caller reads
    /// again and recomputes.
    #[error("a record changed while the change was prepared; nothing was written")]
    Conflict,
}

// Written out rather than `#[from]`: the source goes behind an `Arc`, and a
// store's conflict is this error's own variant, not a failure.
impl From<DataError> for CommitError {
    fn from(error: DataError) -> Self {
        CommitError::Failed(Arc::new(error))
    }
}

impl From<crate::crypto::KeyRingError> for CommitError {
    fn from(error: crate::crypto::KeyRingError) -> Self {
        DataError::from(error).into()
    }
}

impl From<crate::store::StoreError> for CommitError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Conflict => CommitError::Conflict,
            error => DataError::from(error).into(),
        }
    }
}

/// Called once the group holding a commit is durable (or failed to flush).
pub type OnDurable = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// Work run on the committer thread between groups, with no write in
/// between (consistent backups).
pub type Exclusive = Box<dyn FnOnce() + Send>;

struct Request {
    exclusive: Option<Exclusive>,
    commit: Commit,
    reply: oneshot::Sender<Result<Committed, CommitError>>,
    /// Answer as soon as the group is applied (readable), before the flush;
    /// `on_durable` then reports durability.
    early: Option<OnDurable>,
}

/// Handle to the committer thread. Cloning is cheap.
#[derive(Clone)]
pub struct Committer {
    sender: mpsc::Sender<Request>,
    stats: Arc<CommitStats>,
}

/// Group-commit counters, exported as `flowgate_commit_*` metrics (see
/// `service::metrics`). Clones share the counts.
#[derive(Debug, Default, Clone)]
pub struct CommitStats {
    /// Groups written (one atomic write each).
    pub groups: Counter,
    /// Commit requests, merged into those groups.
    pub requests: Counter,
    /// Records written or deleted: what the store pays per event.
    pub writes: Counter,
    /// Requests refused because a record they were computed from had
    /// changed (their callers recompute and retry).
    pub conflicts: Counter,
    /// Flushes (fsyncs), each making one or more groups durable.
    pub flushes: Counter,
    /// Time spent applying groups.
    pub apply_seconds: Counter<f64, AtomicU64>,
    /// Time spent flushing.
    pub flush_seconds: Counter<f64, AtomicU64>,
}

impl Committer {
    /// Start the committer thread over `vault`, counting into `stats`. It
    /// stops when every handle is dropped, after answering what was queued.
    pub fn start(vault: Vault, stats: CommitStats) -> (Committer, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<Request>();
        let stats = Arc::new(stats);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-committer".into())
            .spawn(move || run(vault, receiver, thread_stats))
            .expect("spawning the committer thread");
        (Committer { sender, stats }, thread)
    }

    /// Commit and wait (async).
    pub async fn commit(&self, commit: Commit) -> Result<Committed, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request {
                exclusive: None,
                commit,
                reply,
                early: None,
            })
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Unanswered)?
    }

    /// Commit and wait (from a plain thread).
    pub fn commit_blocking(&self, commit: Commit) -> Result<Committed, CommitError> {
        self.send_blocking(commit, None)
    }

    /// Commit and wait until the commit is applied — visible to every later
    /// read — but not until it is flushed; `on_durable` runs after the flush.
    /// Workers use this: the next event of a contact needs the previous
    /// event's effects, not their fsync, and whatever must wait for
    /// durability (sending a reply) waits in `on_durable`.
    pub fn commit_applied_blocking(
        &self,
        commit: Commit,
        on_durable: OnDurable,
    ) -> Result<Committed, CommitError> {
        self.send_blocking(commit, Some(on_durable))
    }

    fn send_blocking(
        &self,
        commit: Commit,
        early: Option<OnDurable>,
    ) -> Result<Committed, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request {
                exclusive: None,
                commit,
                reply,
                early,
            })
            .map_err(|_| CommitError::Stopped)?;
        answer
            .blocking_recv()
            .map_err(|_| CommitError::Unanswered)?
    }

    /// Run `work` on the committer thread after every earlier commit is
    /// applied and flushed and before any later one: a consistent view of
    /// the store. Writes wait while it runs.
    pub async fn exclusive(&self, work: Exclusive) -> Result<(), CommitError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request {
                exclusive: Some(work),
                commit: Commit::default(),
                reply,
                early: None,
            })
            .map_err(|_| CommitError::Stopped)?;
        answer
            .await
            .map_err(|_| CommitError::Unanswered)?
            .map(|_| ())
    }

    /// Group-commit counters.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

fn run(vault: Vault, receiver: mpsc::Receiver<Request>, stats: Arc<CommitStats>) {
    let (flusher, flush_queue) = mpsc::channel::<Durability>();
    let flush_vault = vault.clone();
    let flush_stats = stats.clone();
    let flush_thread = std::thread::Builder::new()
        .name("flowgate-flusher".into())
        .spawn(move || flush_loop(flush_vault, flush_queue, flush_stats))
        .expect("spawning the flusher thread");
    let mut heads: HashMap<TenantId, ChainEnd> = HashMap::new();
    let mut pending_exclusive: Option<Request> = None;
    loop {
        let first = match pending_exclusive.take() {
            Some(request) => request,
            None => match receiver.recv() {
                Ok(request) => request,
                Err(_) => break,
            },
        };
        if let Some(work) = first.exclusive {
            // Wait for the flusher to drain (a flush of nothing), then run.
            let (done, flushed) = oneshot::channel();
            let mut marker = Durability::default();
            marker.waiting.push((
                done,
                Committed {
                    applied: Vec::new(),
                    audit: Vec::new(),
                },
            ));
            let _ = flusher.send(marker);
            let _ = flushed.blocking_recv();
            work();
            let _ = first.reply.send(Ok(Committed {
                applied: Vec::new(),
                audit: Vec::new(),
            }));
            continue;
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                // An exclusive request ends the group; it runs next round.
                Ok(request) if request.exclusive.is_some() => {
                    pending_exclusive = Some(request);
                    break;
                }
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        stats.groups.inc();
        stats.requests.inc_by(group.len() as u64);
        let applying = Instant::now();
        let applied = apply_group(&vault, &mut heads, &mut group, &stats);
        stats.apply_seconds.inc_by(applying.elapsed().as_secs_f64());
        let results = match applied {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, requests = group.len(), "commit group failed");
                for request in group {
                    if let Some(on_durable) = request.early {
                        on_durable(Err(error.clone()));
                    }
                    let _ = request.reply.send(Err(error.clone()));
                }
                continue;
            }
        };
        // Early requests learn now that their writes are visible; the rest
        // wait for the flusher, which makes this group durable while the
        // next group is being applied. A refused request wrote nothing and
        // has nothing to wait for.
        let mut durability = Durability::default();
        for (request, result) in group.into_iter().zip(results) {
            match (result, request.early) {
                (Err(refused), early) => {
                    if let Some(on_durable) = early {
                        on_durable(Err(refused.clone()));
                    }
                    let _ = request.reply.send(Err(refused));
                }
                (Ok(result), Some(on_durable)) => {
                    let _ = request.reply.send(Ok(result));
                    durability.callbacks.push(on_durable);
                }
                (Ok(result), None) => durability.waiting.push((request.reply, result)),
            }
        }
        if flusher.send(durability).is_err() {
            tracing::error!("the flusher has stopped");
        }
    }
    // Every handle is gone: let the flusher answer what it holds, then stop.
    drop(flusher);
    let _ = flush_thread.join();
}

/// Requests of applied groups waiting for a flush.
#[derive(Default)]
struct Durability {
    waiting: Vec<(oneshot::Sender<Result<Committed, CommitError>>, Committed)>,
    callbacks: Vec<OnDurable>,
}

/// Flush whatever groups were applied since the last flush, with one fsync,
/// then answer them all.
fn flush_loop(vault: Vault, receiver: mpsc::Receiver<Durability>, stats: Arc<CommitStats>) {
    while let Ok(first) = receiver.recv() {
        let mut pending = vec![first];
        pending.extend(receiver.try_iter());
        let started = Instant::now();
        let flushed = vault.flush().map_err(CommitError::from);
        stats.flushes.inc();
        stats.flush_seconds.inc_by(started.elapsed().as_secs_f64());
        if let Err(error) = &flushed {
            tracing::error!(%error, "flushing commit groups failed");
        }
        for durability in pending {
            for (reply, result) in durability.waiting {
                let _ = reply.send(flushed.clone().map(|()| result));
            }
            for on_durable in durability.callbacks {
                on_durable(flushed.clone());
            }
        }
    }
}

/// Apply a group's writes as one atomic batch; the chain heads advance only
/// if it applies. A request whose expectations no longer hold is left out
/// and answered [`CommitError::Conflict`]; the others still apply.
fn apply_group(
    vault: &Vault,
    heads: &mut HashMap<TenantId, ChainEnd>,
    group: &mut [Request],
    stats: &CommitStats,
) -> Result<Vec<Result<Committed, CommitError>>, CommitError> {
    let mut combined = Batch::new();
    let mut guards_taken: HashSet<(TenantId, Kind, Vec<u8>)> = HashSet::new();
    // Chain heads advance on a copy, kept only if the group commits.
    let mut new_heads: HashMap<TenantId, ChainEnd> = HashMap::new();
    let mut results = Vec::with_capacity(group.len());
    let mut subjects = SubjectRuns::default();
    let mut watched = Watched::of(group);
    for request in group.iter_mut() {
        let commit = &mut request.commit;
        let mut expected = commit.batch.take_expectations();
        for guarded in &mut commit.guarded {
            expected.extend(guarded.batch.take_expectations());
        }
        if !watched.hold(vault, &expected)? {
            stats.conflicts.inc();
            results.push(Err(CommitError::Conflict));
            continue;
        }
        // The batches move into the group's: on failure every request is
        // answered with the error and its caller builds it again.
        watched.note(&commit.batch);
        combined.extend(std::mem::take(&mut commit.batch));
        let mut applied = Vec::with_capacity(commit.guarded.len());
        for guarded in &mut commit.guarded {
            let id = (guarded.tenant, guarded.kind, guarded.key.clone());
            let absent = !guards_taken.contains(&id)
                && vault
                    .store
                    .get(&guarded.tenant, guarded.kind, &guarded.key)?
                    .is_none();
            if absent {
                guards_taken.insert(id);
                watched.note(&guarded.batch);
                combined.extend(std::mem::take(&mut guarded.batch));
            }
            applied.push(absent);
        }
        let mut entries = Vec::with_capacity(commit.audit.len());
        for draft in &commit.audit {
            let end = match new_heads.get(&draft.tenant).or(heads.get(&draft.tenant)) {
                Some(end) => *end,
                None => {
                    let resume = audit::head::resume(vault, &draft.tenant, draft.at)?;
                    match resume.notice {
                        // Not among the request's entries: the committer's own.
                        Some(notice) => {
                            chain(vault, &mut combined, &mut subjects, &notice, resume.end)?.1
                        }
                        None => resume.end,
                    }
                }
            };
            let (entry, end) = chain(vault, &mut combined, &mut subjects, draft, end)?;
            new_heads.insert(draft.tenant, end);
            entries.push(entry);
        }
        results.push(Ok(Committed {
            applied,
            audit: entries,
        }));
    }
    subjects.finish(&mut combined);
    // Each chain's new end, sealed, in the same write as its entries: the
    // head and the chain disagree only if someone changed one of them.
    for (tenant, end) in &new_heads {
        let keys = vault.keys.tenant(tenant)?;
        audit::head::stage(vault, &mut combined, &keys.records, tenant, *end);
    }
    // New contact keys must be durable before records sealed with them can
    // be: flush the key ring first (cheap when nothing changed).
    vault.keys.flush()?;
    vault.store.commit(&combined)?;
    stats.writes.inc_by(combined.ops().len() as u64);
    heads.extend(new_heads);
    Ok(results)
}

/// Stage `draft` as the entry after `end`: the entry, its subject index;
/// the chain's new end.
fn chain(
    vault: &Vault,
    batch: &mut Batch,
    subjects: &mut SubjectRuns,
    draft: &AuditDraft,
    end: ChainEnd,
) -> Result<(AuditEntry, ChainEnd), CommitError> {
    let seq = end.seq + 1;
    let (entry, hash) = audit::seal_entry(&end.hash, seq, draft);
    let keys = vault.keys.tenant(&draft.tenant)?;
    vault.stage(
        batch,
        &keys.records,
        &draft.tenant,
        Kind::Audit,
        &audit::entry_key(seq),
        &entry,
    );
    subjects.add(batch, draft, seq);
    Ok((entry, ChainEnd { seq, hash }))
}

/// The records some request of a group expects (see
/// [`crate::store::Batch::expect`]), with what earlier requests of the same
/// group wrote there: the group is one write, so a request must be checked
/// against the store as the requests before it leave it, not as it was.
struct Watched {
    keys: HashMap<(TenantId, Kind), HashMap<Vec<u8>, GroupWrite>>,
}

/// A watched key's state within a group: `None` until a request of the
/// group writes it, then `Some(value)` (`Some(None)`: deleted it).
type GroupWrite = Option<Option<Vec<u8>>>;

impl Watched {
    fn of(group: &[Request]) -> Watched {
        let mut keys: HashMap<_, HashMap<_, _>> = HashMap::new();
        for request in group {
            let commit = &request.commit;
            let batches =
                std::iter::once(&commit.batch).chain(commit.guarded.iter().map(|g| &g.batch));
            for expected in batches.flat_map(Batch::expectations) {
                keys.entry((expected.tenant, expected.kind))
                    .or_default()
                    .insert(expected.key.clone(), None);
            }
        }
        Watched { keys }
    }

    /// Whether every expectation holds now.
    fn hold(
        &self,
        vault: &Vault,
        expected: &[crate::store::Expectation],
    ) -> Result<bool, CommitError> {
        for expectation in expected {
            let written = self
                .keys
                .get(&(expectation.tenant, expectation.kind))
                .and_then(|keys| keys.get(&expectation.key))
                .and_then(Option::as_ref);
            let holds = match written {
                Some(value) => *value == expectation.value,
                None => {
                    vault
                        .store
                        .get(&expectation.tenant, expectation.kind, &expectation.key)?
                        == expectation.value
                }
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Remember what an accepted request writes to watched keys.
    fn note(&mut self, batch: &Batch) {
        if self.keys.is_empty() {
            return;
        }
        for op in batch.ops() {
            if let Some(slot) = self
                .keys
                .get_mut(&(op.tenant, op.kind))
                .and_then(|keys| keys.get_mut(op.key.as_slice()))
            {
                *slot = Some(op.value.clone());
            }
        }
    }
}

/// Subject-index keys for a group's audit entries: one key per run of
/// consecutive entries about one contact (an event's plugin calls and
/// actions are such a run), rather than one per entry — an event's audit
/// entries cost one index write instead of seven.
#[derive(Default)]
struct SubjectRuns {
    /// The open run: tenant, subject, first and last sequence.
    open: Option<(TenantId, String, u64, u64)>,
}

impl SubjectRuns {
    fn add(&mut self, batch: &mut Batch, draft: &AuditDraft, seq: u64) {
        if let (Some((tenant, subject, _, last)), Some(about)) = (&mut self.open, &draft.subject)
            && *tenant == draft.tenant
            && subject == about
            && *last + 1 == seq
        {
            *last = seq;
            return;
        }
        self.finish(batch);
        self.open = draft
            .subject
            .as_ref()
            .map(|subject| (draft.tenant, subject.clone(), seq, seq));
    }

    fn finish(&mut self, batch: &mut Batch) {
        if let Some((tenant, subject, first, last)) = self.open.take() {
            batch.put(
                tenant,
                Kind::Audit,
                audit::subject_key(&subject, first),
                audit::subject_run_value(first, last),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;

    /// A committer over a fresh vault with one tenant.
    fn started() -> (
        tempfile::TempDir,
        Vault,
        TenantId,
        Committer,
        JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let (committer, thread) = Committer::start(vault.clone(), CommitStats::default());
        (dir, vault, tenant, committer, thread)
    }

    #[test]
    fn guards_apply_once_even_within_a_group_and_audit_chains() {
        let (_dir, vault, tenant, committer, thread) = started();
        let guarded = |value: &[u8]| {
            let mut batch = Batch::new();
            batch.put(tenant, Kind::Dedup, b"wamid-1".to_vec(), value.to_vec());
            Guarded {
                tenant,
                kind: Kind::Dedup,
                key: b"wamid-1".to_vec(),
                batch,
            }
        };
        let first = committer
            .commit_blocking(Commit {
                guarded: vec![guarded(b"a"), guarded(b"b")],
                audit: vec![AuditDraft::new(tenant, 1, Actor::System, "test.one")],
                ..Commit::default()
            })
            .unwrap();
        assert_eq!(first.applied, vec![true, false]);
        let second = committer
            .commit_blocking(Commit {
                guarded: vec![guarded(b"c")],
                audit: vec![AuditDraft::new(tenant, 2, Actor::System, "test.two")],
                ..Commit::default()
            })
            .unwrap();
        assert_eq!(second.applied, vec![false]);
        assert_eq!(second.audit[0].seq, 2);
        assert_eq!(second.audit[0].prev, first.audit[0].hash);
        assert_eq!(
            vault.store.get(&tenant, Kind::Dedup, b"wamid-1").unwrap(),
            Some(b"a".to_vec())
        );
        assert!(audit::verify(&vault, &tenant).unwrap().intact);
        drop(committer);
        thread.join().unwrap();
    }

    /// Commit one entry per action, each alone.
    fn record(committer: &Committer, tenant: TenantId, actions: &[&str]) -> Vec<AuditEntry> {
        actions
            .iter()
            .flat_map(|action| {
                committer
                    .commit_blocking(Commit::new(
                        Batch::new(),
                        vec![AuditDraft::new(tenant, 1, Actor::System, action)],
                    ))
                    .unwrap()
                    .audit
            })
            .collect()
    }

    #[test]
    fn after_a_restart_the_chain_goes_on_after_its_sealed_head_not_after_what_is_left() {
        let (_dir, vault, tenant, committer, thread) = started();
        record(&committer, tenant, &["one", "two", "three"]);
        drop(committer);
        thread.join().unwrap();
        // While the service is stopped the newest two entries are deleted.
        let mut batch = Batch::new();
        for seq in [2, 3] {
            batch.delete(tenant, Kind::Audit, audit::entry_key(seq));
        }
        vault.store.commit(&batch).unwrap();
        assert!(audit::verify(&vault, &tenant).unwrap().truncated);
        // Chained after the last entry left, the next entry would make the
        // shortened chain whole again, head included.
        let (committer, thread) = Committer::start(vault.clone(), CommitStats::default());
        let four = record(&committer, tenant, &["four"]);
        assert_eq!(four[0].seq, 4);
        let verified = audit::verify(&vault, &tenant).unwrap();
        assert_eq!(verified.broken_at, Some(2), "{verified:?}");
        assert!(verified.reason.unwrap().contains("deleted"));
        drop(committer);
        thread.join().unwrap();
    }

    #[test]
    fn without_a_trustworthy_head_the_chain_goes_on_with_a_notice_that_verification_reports() {
        let (_dir, vault, tenant, committer, thread) = started();
        record(&committer, tenant, &["one", "two"]);
        drop(committer);
        thread.join().unwrap();
        let mut batch = Batch::new();
        batch.delete(tenant, Kind::Audit, b"h".to_vec());
        vault.store.commit(&batch).unwrap();
        let (committer, thread) = Committer::start(vault.clone(), CommitStats::default());
        // The request gets its own entry; the notice goes before it.
        let three = record(&committer, tenant, &["three"]);
        assert_eq!((three.len(), three[0].seq), (1, 4));
        let notice =
            audit::query(&vault, &tenant, &audit::AuditFilter::default()).unwrap()[2].clone();
        assert_eq!(notice.action, audit::head::HEAD_LOST);
        assert_eq!(notice.details["resumed_after"], 2);
        // The chain is whole again, head and all, but says what happened.
        let verified = audit::verify(&vault, &tenant).unwrap();
        assert_eq!(verified.head, Some(4));
        assert_eq!(verified.broken_at, Some(3), "{verified:?}");
        assert!(verified.reason.unwrap().contains("head is missing"));
        drop(committer);
        thread.join().unwrap();
    }

    #[test]
    fn runs_of_entries_about_one_contact_share_an_index_key() {
        let (_dir, vault, tenant, committer, thread) = started();
        let about = |who: Option<&str>, action: &str| {
            let draft = AuditDraft::new(tenant, 1, Actor::System, action);
            match who {
                Some(who) => draft.subject(who.into()),
                None => draft,
            }
        };
        committer
            .commit_blocking(Commit::new(
                Batch::new(),
                vec![
                    about(Some("ps_a"), "one"),
                    about(Some("ps_a"), "two"),
                    about(Some("ps_a"), "three"),
                    about(None, "four"),
                    about(Some("ps_b"), "five"),
                    about(Some("ps_b"), "six"),
                ],
            ))
            .unwrap();
        committer
            .commit_blocking(Commit::new(
                Batch::new(),
                vec![about(Some("ps_a"), "seven")],
            ))
            .unwrap();
        let index = vault
            .store
            .scan(&tenant, Kind::Audit, b"s", None, 100)
            .unwrap();
        assert_eq!(index.len(), 3, "a, b and the later a");
        let actions = |who: &str| -> Vec<String> {
            audit::about(&vault, &tenant, who)
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(actions("ps_a"), ["one", "two", "three", "seven"]);
        assert_eq!(actions("ps_b"), ["five", "six"]);
        assert!(actions("ps_c").is_empty());
        drop(committer);
        thread.join().unwrap();
    }

    /// A write expecting `expected` at the contact key, setting it to `new`,
    /// with one audit entry.
    fn expecting(tenant: TenantId, expected: &[u8], new: &[u8], action: &str) -> Commit {
        let mut batch = Batch::new();
        batch.expect(
            tenant,
            Kind::Contacts,
            b"c".to_vec(),
            Some(expected.to_vec()),
        );
        batch.put(tenant, Kind::Contacts, b"c".to_vec(), new.to_vec());
        batch.put(
            tenant,
            Kind::Messages,
            action.as_bytes().to_vec(),
            b"m".to_vec(),
        );
        Commit::new(
            batch,
            vec![AuditDraft::new(tenant, 1, Actor::System, action)],
        )
    }

    #[test]
    fn a_commit_computed_from_a_record_changed_since_is_refused_alone() {
        let (_dir, vault, tenant, committer, thread) = started();
        let mut first = Batch::new();
        first.put(tenant, Kind::Contacts, b"c".to_vec(), b"v1".to_vec());
        committer
            .commit_blocking(Commit::new(first, Vec::new()))
            .unwrap();
        committer
            .commit_blocking(expecting(tenant, b"v1", b"v2", "test.api"))
            .unwrap();
        // A worker read v1 before the API's write: its commit is refused,
        // with nothing of it written and no audit entry chained.
        let stale = committer.commit_blocking(expecting(tenant, b"v1", b"stale", "test.stale"));
        assert!(matches!(stale, Err(CommitError::Conflict)), "{stale:?}");
        let get = |kind, key: &[u8]| vault.store.get(&tenant, kind, key).unwrap();
        assert_eq!(get(Kind::Contacts, b"c"), Some(b"v2".to_vec()));
        assert_eq!(get(Kind::Messages, b"test.stale"), None);
        assert_eq!(audit::head::last_seq(&vault, &tenant).unwrap(), 1);
        assert_eq!(committer.stats().conflicts.get(), 1);
        drop(committer);
        thread.join().unwrap();
    }

    #[test]
    fn expectations_see_the_writes_of_earlier_requests_in_the_same_group() {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        let tenant = TenantId::generate();
        vault.keys.create_tenant(&tenant).unwrap();
        let mut seed = Batch::new();
        seed.put(tenant, Kind::Contacts, b"c".to_vec(), b"v1".to_vec());
        vault.store.commit(&seed).unwrap();
        let request = |commit| Request {
            exclusive: None,
            commit,
            reply: oneshot::channel().0,
            early: None,
        };
        // Three requests in one group, all read before any applied: the
        // first wins, the second (also from v1) is refused, the third (from
        // what the first wrote) applies.
        let mut group = vec![
            request(expecting(tenant, b"v1", b"v2", "test.first")),
            request(expecting(tenant, b"v1", b"lost", "test.second")),
            request(expecting(tenant, b"v2", b"v3", "test.third")),
        ];
        let stats = CommitStats::default();
        let results = apply_group(&vault, &mut HashMap::new(), &mut group, &stats).unwrap();
        let outcomes: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(outcomes, vec![true, false, true]);
        let get = |kind, key: &[u8]| vault.store.get(&tenant, kind, key).unwrap();
        assert_eq!(get(Kind::Contacts, b"c"), Some(b"v3".to_vec()));
        assert_eq!(get(Kind::Messages, b"test.second"), None);
        assert!(get(Kind::Messages, b"test.third").is_some());
        // The refused request took no place in the audit chain.
        let chained: Vec<u64> = results
            .iter()
            .flatten()
            .flat_map(|c| c.audit.iter().map(|e| e.seq))
            .collect();
        assert_eq!(chained, vec![1, 2]);
    }

    #[test]
    fn a_failed_commit_keeps_its_cause_and_answers_every_request_with_it() {
        use std::error::Error as _;
        let disk = std::io::Error::other("disk full");
        let error = CommitError::from(crate::store::StoreError::Export(disk));
        assert_eq!(
            error.to_string(),
            "commit failed: storage: writing: disk full"
        );
        // The clone each request of the group gets still leads to the cause.
        let copy = error.clone();
        let root = std::iter::successors(copy.source(), |e| (*e).source()).last();
        assert_eq!(root.map(|e| e.to_string()).as_deref(), Some("disk full"));
        assert!(matches!(
            CommitError::from(crate::store::StoreError::Conflict),
            CommitError::Conflict
        ));
    }
}
