//! The running service, and everything tenants and the operator do with
//! it.
//!
//! **What tenants and the operator do** is one function each, in the
//! modules below, named after what they act on. Each checks the caller's
//! scope, validates, reads, and returns a [`change::Change`] that
//! [`ServiceInner::apply`] commits (retrying when a record it read changed
//! meanwhile), audits and follows up (context invalidation, key shredding)
//! in one place. The HTTP API ([`crate::api`]) and the tenant console are
//! thin faces over these functions: they extract, authenticate, call, and
//! map [`error::ServiceError`] to their answers.
//! - tenant: [`settings`], [`installations`], [`plugins`], [`contacts`],
//!   [`consent`], [`keys`], [`trail`] (the audit trail), [`requests`]
//!   (data-subject requests), [`usage`] (activity per installation),
//!   [`playground`] (a plugin tried on a sample event);
//! - operator: [`tenants`], [`channels`], [`plugins`], [`operations`];
//! - WhatsApp: [`webhooks`].
//!
//! **The engine**: a webhook delivery goes: [`webhooks::accept`] (signature,
//! parse) → [`committer`] (deduplicated into the durable [`inbox`]; the
//! handler answers 200) → [`workers`] (the tenant's [`flow`] through the
//! plugins) → committer (effects, audit, inbox removal, queued replies; one
//! atomic write) → [`outbox`] sender (Cloud API) → committer.

pub mod caller;
pub mod change;
pub mod error;

pub mod channels;
pub mod consent;
pub mod contacts;
pub mod installations;
pub mod keys;
pub mod operations;
pub mod playground;
pub mod plugins;
pub mod requests;
pub mod settings;
pub mod tenants;
pub mod trail;
pub mod usage;
pub mod webhooks;

pub mod committer;
pub mod context;
pub mod failed_auth;
pub mod flow;
pub mod inbox;
pub mod maintenance;
pub mod metrics;
pub mod optout;
pub mod outbox;
pub mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::channel::whatsapp::client::CloudApiClient;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::data::Vault;
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use committer::Committer;
use context::TenantContexts;
use failed_auth::FailureTally;
use metrics::Metrics;
use outbox::OutboxSignal;
use workers::Workers;

/// State shared by the API, the workers and the sender.
pub struct ServiceInner {
    pub config: ServiceConfig,
    pub vault: Vault,
    pub runtime: Arc<Runtime>,
    pub registry: Registry,
    pub committer: Committer,
    pub contexts: TenantContexts,
    pub metrics: Metrics,
    pub outbox: OutboxSignal,
    pub cloud: CloudApiClient,
    pub clock: Clock,
    /// blake3 of the operator token; compared in constant time.
    pub operator_token_hash: [u8; 32],
    /// Held shared by every operator action on an existing tenant and
    /// exclusively by every tenant deletion (see [`tenants`]).
    pub tenant_deletions: tokio::sync::RwLock<()>,
    /// The rate limits and failed-authentication throttles of the API and
    /// the console.
    pub admission: Arc<Admission>,
    /// Failed authentications counted for the audit trail, not yet
    /// written ([`failed_auth`]).
    pub failed_auth: FailureTally,
    workers: std::sync::RwLock<Option<Workers>>,
    stopping: AtomicBool,
}

impl ServiceInner {
    /// Hand an acknowledged item to its worker.
    pub fn dispatch(&self, job: inbox::InboxJob, received: Instant) {
        if let Some(workers) = self.workers.read().expect("workers lock").as_ref() {
            workers.dispatch(job, received);
        }
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// A started service.
pub struct Service {
    pub inner: Arc<ServiceInner>,
    worker_threads: Vec<JoinHandle<()>>,
    sender: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Service {
    /// Open the data directory, start the committer, the workers and the
    /// outbox sender, and requeue what the inbox still holds from before a
    /// stop or crash. Must run inside a tokio runtime.
    pub fn start(config: ServiceConfig, vault: Vault, clock: Clock) -> anyhow::Result<Service> {
        // Compiled plugins are kept beside the records, so a restart loads
        // them instead of compiling them again.
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                limits: config.limits.clone(),
                max_instances: config.max_instances,
            })?
            .with_code_cache(config.data_dir.join("code")),
        );
        let registry = Registry::new(vault.clone(), runtime.clone());
        // The committer thread runs as long as any handle exists; every
        // group it commits is flushed, so nothing waits for it at shutdown.
        let mut metrics = Metrics::new();
        metrics.watch_store(vault.store.clone());
        metrics.watch_keys(vault.keys.clone());
        let admission = Arc::new(Admission::new(&config));
        metrics.watch(admission.collector());
        let failed_auth = FailureTally::new(config.http.auth_failure_audit_secs);
        let (committer, _committer_thread) =
            Committer::start(vault.clone(), metrics.commit.clone());
        let contexts = TenantContexts::new(vault.clone(), registry.clone());
        let operator_token_hash = *blake3::hash(config.operator_token.as_bytes()).as_bytes();
        let inner = Arc::new(ServiceInner {
            cloud: CloudApiClient::new(config.whatsapp.clone()),
            config,
            vault,
            runtime,
            registry,
            committer,
            contexts,
            metrics,
            outbox: OutboxSignal::default(),
            clock,
            operator_token_hash,
            tenant_deletions: tokio::sync::RwLock::new(()),
            failed_auth,
            admission,
            workers: std::sync::RwLock::new(None),
            stopping: AtomicBool::new(false),
        });
        let per_tenant = inner
            .config
            .tenant_limits
            .concurrent_events(inner.config.workers);
        let (workers, worker_threads) =
            Workers::start(inner.clone(), inner.config.workers, per_tenant);
        *inner.workers.write().expect("workers lock") = Some(workers);
        let recovered = recover(&inner)?;
        if recovered > 0 {
            tracing::info!(
                items = recovered,
                "requeued inbox items left from before the restart"
            );
        }
        let shutdown = CancellationToken::new();
        let sender = tokio::spawn(outbox::run_sender(inner.clone(), shutdown.clone()));
        let maintenance = tokio::spawn(operations::run_periodically(
            inner.clone(),
            std::time::Duration::from_secs(inner.config.retention_interval_secs.max(1)),
            shutdown.clone(),
        ));
        let upkeep = tokio::spawn(operations::run_upkeep(
            inner.clone(),
            std::time::Duration::from_secs(inner.config.http.auth_failure_audit_secs.max(1)),
            shutdown.clone(),
        ));
        inner.outbox.wake();
        Ok(Service {
            inner,
            worker_threads,
            sender,
            maintenance,
            upkeep,
            shutdown,
        })
    }

    /// Stop: the sender finishes sends in flight, the workers finish the
    /// items already queued to them (each committed and flushed), and
    /// anything not yet queued stays in the durable inbox for the next
    /// start. Call after the HTTP server has stopped taking requests.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.sender.await;
        let _ = self.maintenance.await;
        let _ = self.upkeep.await;
        // The workers finish what is queued and exit.
        if let Some(workers) = self.inner.workers.write().expect("workers lock").take() {
            workers.close();
        }
        let workers = self.worker_threads;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
        self.inner.stopping.store(true, Ordering::Relaxed);
    }
}

/// Requeue every inbox item (in shard and sequence order).
fn recover(inner: &Arc<ServiceInner>) -> anyhow::Result<usize> {
    let finished = crate::compliance::dsr::finish_pending_shreds(&inner.vault)?;
    if finished > 0 {
        tracing::info!(contacts = finished, "finished erasures a stop interrupted");
    }
    let pending = inbox::pending(&inner.vault)?;
    let count = pending.len();
    for (key, sealed) in pending {
        let dropped = match inbox::open(&inner.vault, &key, &sealed) {
            Ok(Some(job)) => {
                inner.dispatch(job, Instant::now());
                continue;
            }
            // The contact was erased or the tenant deleted (its key
            // shredded): the item is theirs, and goes with them.
            Ok(None) => "its contact or tenant is gone",
            Err(error) => {
                tracing::warn!(%error, "dropping an unreadable inbox item");
                "unreadable"
            }
        };
        tracing::info!(reason = dropped, "dropped an inbox item");
        let mut batch = crate::store::Batch::new();
        batch.delete(crate::ids::TenantId::SYSTEM, crate::store::Kind::Inbox, key);
        inner.vault.store.commit(&batch)?;
    }
    Ok(count)
}
