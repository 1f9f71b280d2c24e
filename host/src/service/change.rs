//! The one way an action commits what it decided.
//!
//! An action reads what it needs and returns a [`Change`]: the writes and
//! audit entries to commit together, its result, and what must follow once
//! they are committed (the tenant's processing context forgotten, a contact
//! key shredded). [`ServiceInner::apply`] commits it and does what follows,
//! in one place, so no action can forget a step.
//!
//! A read-modify-write may expect records unchanged (see
//! [`crate::store::Batch::expect`]); when an event for the same contact was
//! committed between the action's reads and its commit, the committer
//! refuses it and `apply` runs the action again from its reads, up to
//! [`ATTEMPTS`] times, so neither side's change is lost. After the last
//! attempt the conflict reaches the caller (HTTP 409: sending it again is
//! safe).

use std::sync::Arc;

use super::ServiceInner;
use super::committer::{Commit, CommitError, Committed};
use super::error::{ServiceError, ServiceResult};
use crate::audit::AuditDraft;
use crate::ids::{ContactId, TenantId};
use crate::store::Batch;

/// How many times an action is carried out while its commit keeps being
/// refused because a record it read changed.
pub const ATTEMPTS: u32 = 5;

/// What an action decided: what to commit, what to answer, what follows.
#[derive(Debug)]
pub struct Change<T> {
    pub commit: Commit,
    pub result: T,
    /// The tenant whose processing context (profile, flow, channels) this
    /// changes: forgotten once committed, so the next event sees it.
    pub reconfigures: Option<TenantId>,
    /// A contact whose key is shredded once the change is durable (an
    /// erasure: the records sealed with it become unreadable everywhere).
    pub shreds: Option<(TenantId, ContactId)>,
}

impl<T> Change<T> {
    /// Writes and their audit entries, answering `result`.
    pub fn new(batch: Batch, audit: Vec<AuditDraft>, result: T) -> Change<T> {
        Change {
            commit: Commit::new(batch, audit),
            result,
            reconfigures: None,
            shreds: None,
        }
    }

    /// Only audit entries (reads of personal data, exports).
    pub fn audit_only(audit: Vec<AuditDraft>, result: T) -> Change<T> {
        Change::new(Batch::new(), audit, result)
    }

    /// The change alters `tenant`'s processing context.
    pub fn reconfiguring(mut self, tenant: TenantId) -> Change<T> {
        self.reconfigures = Some(tenant);
        self
    }

    /// Shred the contact's key once the change is durable.
    pub fn shredding(mut self, tenant: TenantId, contact: ContactId) -> Change<T> {
        self.shreds = Some((tenant, contact));
        self
    }
}

impl ServiceInner {
    /// Carry out an action: `prepare` reads and decides, the change is
    /// committed, and what follows it is done. `prepare` runs again when
    /// the commit is refused because a record it read has changed.
    pub async fn apply<T>(
        &self,
        mut prepare: impl FnMut() -> ServiceResult<Change<T>>,
    ) -> ServiceResult<T> {
        let mut attempt = 1;
        loop {
            match self.commit_change(prepare()?).await {
                Err(ServiceError::Commit(CommitError::Conflict)) if attempt < ATTEMPTS => {
                    attempt += 1;
                }
                outcome => return outcome.map(|(result, _)| result),
            }
        }
    }

    /// [`ServiceInner::apply`] for actions whose reads are heavy (an export
    /// walks every message of a contact): `prepare` runs on a blocking
    /// thread, off the async workers.
    pub async fn apply_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        prepare: impl Fn(&ServiceInner) -> ServiceResult<Change<T>> + Send + Sync + 'static,
    ) -> ServiceResult<T> {
        let prepare = Arc::new(prepare);
        let mut attempt = 1;
        loop {
            let service = self.clone();
            let attempt_once = prepare.clone();
            let change = tokio::task::spawn_blocking(move || attempt_once(&service)).await??;
            match self.commit_change(change).await {
                Err(ServiceError::Commit(CommitError::Conflict)) if attempt < ATTEMPTS => {
                    attempt += 1;
                }
                outcome => return outcome.map(|(result, _)| result),
            }
        }
    }

    /// Commit `change`, answering with what the committer placed in the
    /// audit trail too.
    pub async fn commit_change<T>(&self, change: Change<T>) -> ServiceResult<(T, Committed)> {
        let commit = change.commit;
        let nothing = commit.batch.is_empty()
            && commit.batch.expectations().is_empty()
            && commit.guarded.is_empty()
            && commit.audit.is_empty();
        let committed = if nothing {
            Committed::default()
        } else {
            self.committer.commit(commit).await?
        };
        if let Some(tenant) = change.reconfigures {
            self.contexts.invalidate(&tenant);
        }
        if let Some((tenant, contact)) = change.shreds {
            // Should this fail (or the process die first), the pending
            // shred the change recorded is finished at the next start or
            // maintenance run.
            crate::compliance::dsr::finish_shred(&self.vault, &tenant, &contact)?;
        }
        Ok((change.result, committed))
    }

    /// Append audit entries alone (a read of personal data is recorded
    /// before it is answered).
    pub async fn record(&self, audit: Vec<AuditDraft>) -> ServiceResult<()> {
        self.committer
            .commit(Commit::new(Batch::new(), audit))
            .await?;
        Ok(())
    }
}
