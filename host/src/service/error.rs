//! What a tenant or operator action can answer besides its result: one
//! error for every service function, so the HTTP API and the console map the
//! same cases to the same answers.

use crate::compliance::backup::BackupError;
use crate::compliance::offboarding::ExportError;
use crate::crypto::KeyRingError;
use crate::data::DataError;
use crate::service::committer::CommitError;
use crate::service::context::ContextError;
use crate::store::StoreError;

/// Why an action was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing named does not exist for this caller (or the id names
    /// nothing): `"contact"`, `"installation"`…
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is malformed or breaks a rule; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// An installation's configuration is refused: a required key has no
    /// value, a key is unknown or too long, or the plugin itself answered
    /// `invalid-config` when tried with it. `key` names the configuration
    /// key concerned when it is known, so a form can show the message
    /// beside it.
    #[error("{message}")]
    InvalidConfig {
        key: Option<String>,
        message: String,
    },
    /// The caller's key lacks the scope the action needs.
    #[error("{0}")]
    Forbidden(String),
    /// The request collides with what exists (a phone number already
    /// taken, a plugin version registered with other bytes).
    #[error("{0}")]
    Conflict(String),
    /// The tenant is at one of its limits (installations); the message
    /// says which and what to do.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A component that is not a valid plugin.
    #[error("{0}")]
    InvalidPlugin(String),
    /// The service cannot take this now (shutting down, storage failing).
    #[error("{0}")]
    Unavailable(String),
    /// The tenant's processing context could not be built (a plugin of
    /// its flow is missing or does not load).
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyRingError),
    /// The commit failed; [`CommitError::Conflict`] reaches a caller only
    /// once the retries of [`crate::service::change`] are used up (the
    /// record kept changing: sending the request again is safe).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Writing a tenant's export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Writing a backup failed.
    #[error("writing the backup: {0}")]
    Backup(#[from] BackupError),
    /// The registry's own records are damaged (a component's bytes no
    /// longer match their hash).
    #[error("the plugin registry: {0}")]
    Registry(crate::registry::RegistryError),
    /// A blocking part of the action panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServiceError {
    /// Whether this is the service's own failure (logged, answered
    /// generically) rather than an answer about the request.
    pub fn is_internal(&self) -> bool {
        match self {
            ServiceError::Commit(CommitError::Conflict) => false,
            ServiceError::Data(_)
            | ServiceError::Store(_)
            | ServiceError::Keys(_)
            | ServiceError::Commit(_)
            | ServiceError::Task(_)
            | ServiceError::Registry(_)
            | ServiceError::Export(_)
            | ServiceError::Backup(_)
            | ServiceError::Context(_) => true,
            _ => false,
        }
    }
}

/// A result of a service function.
pub type ServiceResult<T> = Result<T, ServiceError>;
