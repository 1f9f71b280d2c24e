//! Running the service: open the data directory with the master key, start
//! the service, serve HTTP until a shutdown signal, then stop gracefully.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::crypto::{SecretKey, from_hex, to_hex};
use crate::data::Vault;
use crate::ids::TenantId;
use crate::service::{Service, ServiceInner};

/// Where the master key comes from.
pub enum MasterKeySource {
    /// `FLOWGATE_MASTER_KEY` or the configured file.
    Configured,
    /// Generate one into the data directory (demo and development only).
    GenerateInDataDir,
}

/// Load the operator's master key: the environment, then the file; or, for
/// development, a key generated into the data directory.
pub fn master_key(config: &ServiceConfig, source: MasterKeySource) -> Result<SecretKey> {
    let parse = |text: &str, origin: &str| -> Result<SecretKey> {
        from_hex::<64>(text)
            .map(SecretKey::from_bytes)
            .with_context(|| format!("the master key in {origin} is not 128 hex digits"))
    };
    if let Ok(hex) = std::env::var("FLOWGATE_MASTER_KEY") {
        return parse(&hex, "FLOWGATE_MASTER_KEY");
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the master key file {}", path.display()))?;
        return parse(&text, &path.display().to_string());
    }
    match source {
        MasterKeySource::GenerateInDataDir => {
            let path = config.data_dir.join("master.key");
            if path.exists() {
                let text = std::fs::read_to_string(&path)?;
                return parse(&text, &path.display().to_string());
            }
            std::fs::create_dir_all(&config.data_dir)?;
            let key = SecretKey::generate();
            write_private(&path, &to_hex(key.expose()))?;
            eprintln!(
                "\n  WARNING: generated a master key into {} for development.\n  \
                 Anyone who can read the data directory can read all data.\n  \
                 In production set FLOWGATE_MASTER_KEY or master_key_file, kept apart from the data.\n",
                path.display()
            );
            Ok(key)
        }
        MasterKeySource::Configured => bail!(
            "no master key: set FLOWGATE_MASTER_KEY (128 hex digits; `flowgate keys generate` makes one) \
             or master_key_file, or use --dev for a development key in the data directory"
        ),
    }
}

/// Write a secret file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Open the vault in the configured data directory.
pub fn open_vault(config: &ServiceConfig, master: SecretKey) -> Result<Vault> {
    let records =
        crate::store::SledStore::open_with(&config.data_dir.join("records"), config.store())
            .with_context(|| format!("opening the records in {}", config.data_dir.display()))?;
    let keys = crate::crypto::KeyRing::open(&config.data_dir.join("keys"), master)
        .with_context(|| format!("opening the key ring in {}", config.data_dir.display()))?
        .with_contact_key_cache(config.key_cache_contacts);
    let vault = Vault::new(std::sync::Arc::new(records), std::sync::Arc::new(keys));
    // The system tenant's key seals the operator's own audit chain.
    vault.keys.create_tenant(&TenantId::SYSTEM)?;
    Ok(vault)
}

/// The whole application: the API, and the tenant console beside it with
/// its own routes, session and security headers (its CSP lets it load its
/// own scripts and styles). Composed here, above both, so that neither
/// face imports the other.
pub fn app(service: Arc<ServiceInner>) -> axum::Router {
    crate::api::router(service.clone()).merge(crate::console::router(service))
}

/// Serve until `shutdown` completes, then stop gracefully: stop accepting,
/// finish requests in flight, let the workers and the sender finish.
pub async fn serve(
    config: ServiceConfig,
    vault: Vault,
    clock: Clock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // A cluster node keeps its records in JetStream (see `crate::node`):
    // serving its configuration from the embedded store would split the
    // cluster's state without anyone noticing.
    anyhow::ensure!(
        config.cluster.is_none(),
        "a [cluster] configuration is served by flowgate::node::serve, not the embedded server"
    );
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let service = Service::start(config, vault, clock)?;
    let app = app(service.inner.clone());
    tracing::info!(address = %listener.local_addr()?, "flowgate is serving");
    // The peer's address reaches handlers (the console throttles failed
    // sign-ins per client address).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("shutting down: finishing work in flight");
    let store = service.inner.vault.store.clone();
    if tokio::time::timeout(grace, service.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "work in flight did not finish within the grace period; it resumes on restart"
        );
    }
    // Everything logged goes to the checkpoint, so the next start replays
    // nothing.
    if let Err(error) = tokio::task::spawn_blocking(move || store.checkpoint()).await? {
        tracing::warn!(%error, "the last checkpoint failed; the next start replays the log");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
