//! `flowgate serve` and `flowgate keys`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use flowgate::clock::Clock;
use flowgate::config::ServiceConfig;
use flowgate::crypto::{SecretKey, from_hex, to_hex};
use flowgate::server::{self, MasterKeySource};

/// Run the service.
///
/// Configuration comes from a TOML file (--config), overridden by
/// environment variables, overridden by flags. Secrets come only from the
/// environment or files: FLOWGATE_MASTER_KEY (or master_key_file) and
/// FLOWGATE_OPERATOR_TOKEN (or operator_token_file).
///
/// With a [cluster] section the process is a node of a cluster on NATS
/// JetStream (see docs/operations.md, "Cluster mode"): its records and keys
/// live in JetStream, every node takes webhooks and API calls, and the one
/// holding the lease processes them. Every node needs the same master key
/// (--dev cannot generate one per node) and operator token. A node that
/// loses its lease exits with status 75; run it under a supervisor that
/// restarts it.
///
/// Logs go to stderr as JSON lines (--log-format text for humans); the level
/// is set by FLOWGATE_LOG or RUST_LOG (default: info). Logs carry ids,
/// routes and outcomes, never message text, names or phone numbers.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "FLOWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FLOWGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (records/ and keys/) [default: ./flowgate-data].
    #[arg(long, env = "FLOWGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the master key (128 hex digits).
    #[arg(long, env = "FLOWGATE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// File holding the operator token.
    #[arg(long, env = "FLOWGATE_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// Processing worker threads [default: number of CPUs].
    #[arg(long, env = "FLOWGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Cloud API base URL [default: https://graph.facebook.com].
    #[arg(long, env = "FLOWGATE_CLOUD_API_URL")]
    pub cloud_api_url: Option<String>,
    /// Development mode: generate a master key into the data directory if
    /// none is configured (with a loud warning). Never in production.
    #[arg(long)]
    pub dev: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Json,
    Text,
}

/// Build the configuration: file, then environment and flags.
pub fn config(args: &ServeArgs) -> Result<ServiceConfig> {
    let mut config = match &args.config {
        Some(path) => ServiceConfig::from_file(path)?,
        None => ServiceConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(file) = &args.master_key_file {
        config.master_key_file = Some(file.clone());
    }
    if let Some(file) = &args.operator_token_file {
        config.operator_token_file = Some(file.clone());
    }
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    if let Some(url) = &args.cloud_api_url {
        config.whatsapp.base_url = url.clone();
    }
    config.operator_token = match std::env::var("FLOWGATE_OPERATOR_TOKEN") {
        Ok(token) => token,
        Err(_) => match &config.operator_token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the operator token file {}", path.display()))?
                .trim()
                .to_owned(),
            None => String::new(),
        },
    };
    config.validate()?;
    Ok(config)
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_service_tracing(args.log_format);
    forbid_core_dumps();
    let config = config(&args)?;
    // A key generated into one node's data directory would seal records
    // the other nodes cannot open.
    let source = if args.dev && config.cluster.is_none() {
        MasterKeySource::GenerateInDataDir
    } else {
        MasterKeySource::Configured
    };
    let master = server::master_key(&config, source)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flowgate-http")
        .build()?;
    if config.cluster.is_some() {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("listening on {}", config.listen))?;
            flowgate::node::serve(
                config,
                master,
                Clock::system(),
                listener,
                server::shutdown_signal(),
            )
            .await
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    runtime.block_on(async move {
        let vault = server::open_vault(&config, master)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        server::serve(
            config,
            vault,
            Clock::system(),
            listener,
            server::shutdown_signal(),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The service aborts on purpose when its store can no longer vouch for
/// what it acknowledged (a failed sync, a fenced cluster log: see
/// `store::embedded`), and a core dump of it would hold the master key,
/// unwrapped tenant and contact keys and plaintext of messages in flight.
/// Marking the process not dumpable stops the kernel (and systemd-coredump)
/// from writing one, whatever the host's core limit.
fn forbid_core_dumps() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and changes
        // only this process's dumpable flag.
        let refused = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0;
        if refused {
            eprintln!(
                "flowgate: could not mark the process not dumpable: a crash may leave a core dump with keys"
            );
        }
    }
}

fn init_service_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("FLOWGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Master key tools.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a new random master key (128 hex digits) to stdout.
    Generate,
    /// Re-wrap every tenant key under a new master key. Records are not
    /// rewritten. Stop the service first; then start it with the new key.
    Rotate {
        /// Data directory.
        #[arg(long, env = "FLOWGATE_DATA_DIR")]
        data_dir: PathBuf,
        /// File with the current master key (or FLOWGATE_MASTER_KEY).
        #[arg(long)]
        current_key_file: Option<PathBuf>,
        /// File with the new master key.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

fn read_key(path: &std::path::Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    from_hex::<64>(&text)
        .map(SecretKey::from_bytes)
        .with_context(|| format!("{} does not hold 128 hex digits", path.display()))
}

pub fn keys(command: KeysCommand) -> Result<ExitCode> {
    match command {
        KeysCommand::Generate => {
            println!("{}", to_hex(SecretKey::generate().expose()));
        }
        KeysCommand::Rotate {
            data_dir,
            current_key_file,
            new_key_file,
        } => {
            let current = match current_key_file {
                Some(path) => read_key(&path)?,
                None => {
                    let hex = std::env::var("FLOWGATE_MASTER_KEY")
                        .context("give --current-key-file or set FLOWGATE_MASTER_KEY")?;
                    from_hex::<64>(&hex)
                        .map(SecretKey::from_bytes)
                        .context("FLOWGATE_MASTER_KEY is not 128 hex digits")?
                }
            };
            let new = read_key(&new_key_file)?;
            let ring = flowgate::crypto::KeyRing::open(&data_dir.join("keys"), current)?;
            let count = ring.rotate_master(new.clone())?;
            println!(
                "re-wrapped {count} tenant key(s) under master key {}; restart the service with it",
                new.id()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
