//! A node's connection to the NATS cluster, with a runtime of its own.
//!
//! The store's [`Log`](crate::store::log::Log) is synchronous: committer
//! and flusher threads call it, but so may code inside a tokio task (the
//! store is opened from `flowgate serve`'s async start-up, and some
//! commits run in `spawn_blocking`, some not). `Handle::block_on` panics
//! when called from inside a runtime, and blocking on the caller's own
//! runtime could starve the very task it waits for. So the link owns a
//! one-thread runtime that nothing else runs on: the NATS client's
//! connection task lives there, each blocking call spawns its future there
//! and waits on a plain channel, which works from any thread, inside a
//! runtime or not. The only forbidden caller is the link's own thread
//! (it would wait for itself); [`ClusterLink::run`] refuses it loudly.
//!
//! Async code (leases, phase 2's partition manager) uses [`ClusterLink::jetstream`]
//! directly from its own runtime: the client is a handle to the
//! connection task, usable from anywhere.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::config::ClusterConfig;

/// The name of the link runtime's thread: what [`ClusterLink::run`] checks.
const THREAD_NAME: &str = "flowgate-nats";

/// How long one JetStream request or publish acknowledgement may take
/// before the caller sees a timeout (and the log retries, within its own
/// deadline): well past a healthy cluster's milliseconds, short enough that
/// a request lost with a dying server is sent again soon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a node could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading the NATS credentials file {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The URLs are not repeated: they may carry a user and password.
    #[error("a NATS server URL is invalid")]
    Address(#[source] std::io::Error),
    #[error("connecting to the NATS servers")]
    Connect(#[source] async_nats::ConnectError),
    #[error("starting the NATS client's runtime")]
    Runtime(#[source] std::io::Error),
}

/// A connection to the cluster: a NATS client, its JetStream context, and
/// the runtime they run on.
pub struct ClusterLink {
    /// Taken on drop, to shut down without blocking (dropping a runtime
    /// inside another one panics).
    runtime: Option<tokio::runtime::Runtime>,
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink").finish_non_exhaustive()
    }
}

impl ClusterLink {
    /// Connect as the node `config` describes.
    pub fn connect(config: &ClusterConfig) -> Result<Arc<ClusterLink>, ConnectError> {
        ClusterLink::connect_to(
            &config.urls,
            config.credentials_file.as_deref(),
            &config.node_name,
        )
    }

    /// Connect to the servers at `urls` (with a credentials file when the
    /// servers require one), naming the connection `name`.
    pub fn connect_to(
        urls: &[String],
        credentials: Option<&Path>,
        name: &str,
    ) -> Result<Arc<ClusterLink>, ConnectError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(ConnectError::Runtime)?;
        let urls = urls.to_vec();
        let credentials = credentials.map(Path::to_owned);
        let name = name.to_owned();
        let connected = run_on(runtime.handle(), async move {
            let mut options = async_nats::ConnectOptions::new()
                .name(name)
                .connection_timeout(REQUEST_TIMEOUT)
                .request_timeout(Some(REQUEST_TIMEOUT));
            if let Some(path) = credentials {
                options = options
                    .credentials_file(&path)
                    .await
                    .map_err(|source| ConnectError::Credentials { path, source })?;
            }
            let addresses = urls
                .iter()
                .map(|url| url.parse::<async_nats::ServerAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(ConnectError::Address)?;
            let client = options
                .connect(addresses)
                .await
                .map_err(ConnectError::Connect)?;
            let jetstream = jetstream::ContextBuilder::new()
                .timeout(REQUEST_TIMEOUT)
                // A full pipeline of unacknowledged publishes makes the
                // next publish wait instead of fail: the log's appends slow
                // down rather than error while the servers catch up.
                .backpressure_on_inflight(true)
                .build(client.clone());
            Ok::<_, ConnectError>((client, jetstream))
        });
        let (client, jetstream) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        Ok(Arc::new(ClusterLink {
            runtime: Some(runtime),
            client,
            jetstream,
        }))
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context (requests time out after 5 s).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Open (creating, or updating to `config`) a KV bucket, asking again
    /// until `until` while the servers refuse: a cluster just started, or
    /// electing a leader after a server's death, times such requests out
    /// for a few seconds, and a node started then should wait rather than
    /// exit.
    pub async fn open_bucket(
        &self,
        config: jetstream::kv::Config,
        until: std::time::Instant,
    ) -> Result<jetstream::kv::Store, jetstream::context::CreateKeyValueError> {
        retry_until(until, || {
            self.jetstream.create_or_update_key_value(config.clone())
        })
        .await
    }

    /// Run `future` on the link's runtime and wait for it, from any thread
    /// but the link's own.
    pub fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        run_on(self.handle(), future)
    }

    /// Start `future` on the link's runtime without waiting for it.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(future)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is there until the link is dropped")
            .handle()
    }
}

fn run_on<F>(handle: &tokio::runtime::Handle, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    assert_ne!(
        std::thread::current().name(),
        Some(THREAD_NAME),
        "a blocking cluster call from the cluster link's own thread would wait for itself"
    );
    let (done, result) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = done.send(future.await);
    });
    result
        .recv()
        .expect("a cluster task ended without an answer: it panicked")
}

impl Drop for ClusterLink {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Pause between attempts while the cluster recovers.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Run `attempt` until it succeeds or `until` passes; the last error when
/// it never did. For what a cluster just started, or electing a leader,
/// refuses for a while: a bucket's first requests, writes during an
/// election.
pub async fn retry_until<T, E, F, A>(until: std::time::Instant, mut attempt: A) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    A: FnMut() -> F,
{
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if std::time::Instant::now() >= until => return Err(error),
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}
