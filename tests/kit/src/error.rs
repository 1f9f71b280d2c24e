//! What can go wrong driving a service: the request, the answer, or the
//! files and processes around it.

use std::fmt;
use std::path::PathBuf;

/// An error of the kit. Its `Debug` is its message with its causes, so an
/// `unwrap()` in a test reads as what went wrong.
#[derive(thiserror::Error)]
pub enum Error {
    /// The request did not get an answer.
    #[error("{request}: no answer")]
    Http {
        request: String,
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error status.
    #[error("{request} answered {status}: {body}")]
    Status {
        request: String,
        status: u16,
        body: String,
    },
    /// The service answered, but without a field the kit reads.
    #[error("{request} answered without `{missing}`: {body}")]
    Answer {
        request: String,
        missing: &'static str,
        body: String,
    },
    /// A built component could not be read.
    #[error("reading {path} (build the guests first: `cargo xtask build-guests`)")]
    Component {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The channel's webhook verification did not echo the challenge.
    #[error("the verification handshake of {path} answered {status} {body:?}, not the challenge")]
    Verification {
        path: String,
        status: u16,
        body: String,
    },
    /// Deliveries were still being processed when the wait ended.
    #[error("not settled after {seconds} s: {progress}")]
    NotSettled { seconds: u64, progress: String },
    /// The service did not start, or stopped with an error.
    #[error("{what}")]
    Service {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file, a socket or a process.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn service(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Service {
            what,
            source: source.into(),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
