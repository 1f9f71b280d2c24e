//! Service configuration: a TOML file, overridden by environment variables
//! and command-line flags (see `flowgate serve --help`).
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/flowgate"
//! master_key_file = "/etc/flowgate/master.key"
//! operator_token_file = "/etc/flowgate/operator.token"
//! workers = 2
//! key_cache_contacts = 65536   # contact keys kept unwrapped (~120 bytes each)
//!
//! [whatsapp]
//! base_url = "https://graph.facebook.com"
//! version = "v21.0"
//! timeout_ms = 10000
//! confirm_timeout_secs = 300   # a send in doubt waits this long for its status webhook
//!
//! [http]
//! body_limit_bytes = 262144
//! requests_per_second = 50
//! burst = 100
//! webhook_requests_per_second = 500
//! auth_failures = 20               # failed authentications per client and per key id…
//! auth_failure_window_secs = 60    # …in this window, then 429 until it ends
//! auth_failure_audit_secs = 60     # one `auth.failed` audit entry per key per period
//! # client_address_header = "x-forwarded-for"   # only when a trusted proxy sets it
//!
//! [limits]          # per plugin call
//! fuel = 200000000
//! deadline_ms = 500
//!
//! [tenant_limits]   # per tenant, across its flow
//! max_installations = 20
//! event_fuel = 1000000000
//! event_time_ms = 2000
//! max_concurrent_events = 0   # 0: all workers but one
//! [console]         # the tenant console at /console
//! idle_timeout_secs = 1800       # signed out after 30 minutes without a request
//! absolute_timeout_secs = 43200  # and 12 hours after signing in, whatever happens
//! secure_cookie = false          # true behind a TLS-terminating proxy
//! ```
//!
//! A `[cluster]` section (see [`crate::cluster::config`]) makes `flowgate
//! serve` a node of a cluster on NATS JetStream (see [`crate::node`])
//! instead of serving from the embedded store alone.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::channel::whatsapp::client::CloudApiConfig;
use crate::cluster::ClusterConfig;
use crate::cluster::config::InvalidClusterConfig;
use crate::runtime::Limits;

/// HTTP-level settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted (webhooks, API); plugin uploads may be
    /// up to `plugin_upload_limit_bytes`.
    pub body_limit_bytes: usize,
    /// Largest plugin component upload.
    pub plugin_upload_limit_bytes: usize,
    /// Sustained requests per second per API key or operator token.
    pub requests_per_second: u32,
    /// Burst allowance per API key or operator token.
    pub burst: u32,
    /// Sustained webhook requests per second per channel (with a burst of
    /// twice that).
    pub webhook_requests_per_second: u32,
    /// Per-request timeout, in milliseconds.
    pub request_timeout_ms: u64,
    /// Failed authentications to the API allowed per client address (an
    /// IPv6 client by its /64), and per API key id, within
    /// `auth_failure_window_secs`, before further attempts from that
    /// address or for that key are answered 429, unchecked, until the
    /// window has passed. The console's sign-in has its own
    /// ([`ConsoleConfig::sign_in_failures`]).
    pub auth_failures: u32,
    pub auth_failure_window_secs: u64,
    /// Failed authentications with one API key, through one face, are
    /// written to its tenant's audit trail as one `auth.failed` entry per
    /// this many seconds, with their count, rather than one entry (and
    /// one commit) each. Rate-limit cells and ended throttle windows are
    /// pruned at the same pace.
    pub auth_failure_audit_secs: u64,
    /// A header naming the client's address, set by a reverse proxy you
    /// trust (such as `x-forwarded-for`); its last address, the one the
    /// proxy saw, is used. When unset, the connection's peer address is
    /// the client's: behind a proxy every client then shares the proxy's
    /// allowance of failed authentications.
    pub client_address_header: Option<String>,
}

impl HttpConfig {
    /// The trusted client-address header: this one, or the console's
    /// older setting of the same.
    pub fn client_address_header<'a>(&'a self, console: &'a ConsoleConfig) -> Option<&'a str> {
        self.client_address_header
            .as_deref()
            .or(console.client_address_header.as_deref())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 256 << 10,
            plugin_upload_limit_bytes: 16 << 20,
            requests_per_second: 50,
            burst: 100,
            webhook_requests_per_second: 2_000,
            request_timeout_ms: 30_000,
            // An integration retrying a wrong key gets its answer (429)
            // within a minute; a guesser gets 20 tries a minute per
            // address at a 256-bit secret.
            auth_failures: 20,
            auth_failure_window_secs: 60,
            auth_failure_audit_secs: 60,
            client_address_header: None,
        }
    }
}

/// What one tenant may take of the shared workers, whatever its flow: the
/// per-call [`Limits`] bound one plugin call, these bound a tenant's
/// plugins together (see `docs/operations.md`, "Noisy neighbours").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Installations a tenant may have, enabled or not. Enabling one more
    /// is refused (`409 quota_exceeded`).
    pub max_installations: usize,
    /// Fuel the tenant's plugins may use together on one event. A call is
    /// given at most what is left; plugins after the budget ran out are
    /// skipped, and both are recorded in the audit trail.
    pub event_fuel: u64,
    /// Wall-clock time the tenant's plugin calls may take together on one
    /// event, in milliseconds; spent like `event_fuel`.
    pub event_time_ms: u64,
    /// Events of one tenant processed at the same time. 0 means every
    /// worker but one (at least one), so that one tenant's slow events can
    /// never occupy every worker while other tenants' events wait.
    pub max_concurrent_events: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            max_installations: 20,
            // Five calls at the default per-call fuel, four at the default
            // deadline: room for any sensible flow, not for twenty copies
            // of a slow plugin.
            event_fuel: 1_000_000_000,
            event_time_ms: 2_000,
            max_concurrent_events: 0,
        }
    }
}

impl TenantLimits {
    /// Events of one tenant processed at once with `workers` workers.
    pub fn concurrent_events(&self, workers: usize) -> usize {
        match self.max_concurrent_events {
            0 => workers.saturating_sub(1).max(1),
            n => n,
        }
    }
}

/// The tenant console's sessions and sign-in throttling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session ends after this many seconds without a request.
    pub idle_timeout_secs: u64,
    /// A session ends this many seconds after sign-in, however active.
    pub absolute_timeout_secs: u64,
    /// Sessions held at once; when full, the one idle longest is ended.
    pub max_sessions: usize,
    /// Mark the session cookie `Secure` on every response. It is marked so
    /// anyway when the request came over TLS (an `https` URL or
    /// `X-Forwarded-Proto: https`); set this behind a proxy that terminates
    /// TLS without saying so.
    pub secure_cookie: bool,
    /// Kept for configurations written before
    /// [`HttpConfig::client_address_header`], which now names the header
    /// for the API and the console alike and is used when both are set.
    pub client_address_header: Option<String>,
    /// Failed sign-ins allowed per client address, and per key id, within
    /// `sign_in_window_secs`, before further attempts are refused until
    /// the window has passed.
    pub sign_in_failures: u32,
    pub sign_in_window_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 12 * 60 * 60,
            max_sessions: 10_000,
            secure_cookie: false,
            client_address_header: None,
            sign_in_failures: 5,
            sign_in_window_secs: 15 * 60,
        }
    }
}

/// Everything `flowgate serve` needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory: `records/` (sealed records) and `keys/` (key ring).
    pub data_dir: PathBuf,
    /// File with the master key (128 hex digits). The environment variable
    /// `FLOWGATE_MASTER_KEY` takes precedence.
    pub master_key_file: Option<PathBuf>,
    /// File with the operator token. `FLOWGATE_OPERATOR_TOKEN` takes
    /// precedence.
    pub operator_token_file: Option<PathBuf>,
    /// The operator token itself (from the environment or the file; never
    /// written to the TOML file).
    #[serde(skip)]
    pub operator_token: String,
    /// Processing worker threads (default: the number of CPUs).
    pub workers: usize,
    /// Plugin instances that may exist at once.
    pub max_instances: u32,
    /// Store page cache, in MiB.
    pub store_cache_mb: u64,
    /// Records written since the last checkpoint that are held in memory
    /// before they are written back to sled, in MiB. Commits wait while
    /// twice this is waiting for a checkpoint.
    pub store_overlay_mb: u64,
    /// Checkpoint at least this often while records are written, in
    /// seconds: bounds the log a restart replays.
    pub checkpoint_interval_secs: u64,
    /// Contact keys kept unwrapped in memory, most recently used first
    /// (about 120 bytes each): an event needs its contact's key several
    /// times, and loading one reads the key store (a NATS round trip in
    /// cluster mode). 0 turns the cache off.
    pub key_cache_contacts: usize,
    /// Seconds to let in-flight work finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds between retention sweeps (and checks for offboarded tenants
    /// due for deletion).
    pub retention_interval_secs: u64,
    /// Where `POST /v1/operator/backups` writes backups. Keep it off the
    /// data directory's disk.
    pub backup_dir: PathBuf,
    pub whatsapp: CloudApiConfig,
    pub http: HttpConfig,
    pub limits: Limits,
    pub tenant_limits: TenantLimits,
    pub console: ConsoleConfig,
    /// Cluster mode: not servable yet (see the module docs).
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: "127.0.0.1:8080".parse().expect("a valid address"),
            data_dir: PathBuf::from("flowgate-data"),
            master_key_file: None,
            operator_token_file: None,
            operator_token: String::new(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_instances: 256,
            store_cache_mb: 1024,
            store_overlay_mb: 64,
            key_cache_contacts: crate::crypto::keyring::DEFAULT_CONTACT_KEY_CACHE,
            checkpoint_interval_secs: 10,
            shutdown_grace_secs: 20,
            retention_interval_secs: 3600,
            backup_dir: PathBuf::from("flowgate-backups"),
            whatsapp: CloudApiConfig::default(),
            http: HttpConfig::default(),
            limits: Limits::default(),
            tenant_limits: TenantLimits::default(),
            console: ConsoleConfig::default(),
            cluster: None,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cluster(#[from] InvalidClusterConfig),
}

impl ServiceConfig {
    /// Read a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<ServiceConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            error: e.to_string(),
        })
    }

    /// Check values that cannot be checked by their types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.operator_token.len() < 16 {
            return Err(ConfigError::Invalid(
                "the operator token must be at least 16 characters \
                 (set FLOWGATE_OPERATOR_TOKEN or operator_token_file)"
                    .into(),
            ));
        }
        if self.store_overlay_mb == 0 || self.checkpoint_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "store_overlay_mb and checkpoint_interval_secs must be at least 1".into(),
            ));
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::Invalid("workers must be 1 to 256".into()));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.body_limit_bytes must be at least 1024".into(),
            ));
        }
        if self.http.requests_per_second == 0 || self.http.webhook_requests_per_second == 0 {
            return Err(ConfigError::Invalid(
                "rate limits must be at least 1 per second".into(),
            ));
        }
        if self.http.auth_failures == 0
            || self.http.auth_failure_window_secs == 0
            || self.http.auth_failure_audit_secs == 0
        {
            return Err(ConfigError::Invalid(
                "http.auth_failures, auth_failure_window_secs and auth_failure_audit_secs \
                 must be at least 1"
                    .into(),
            ));
        }
        let tenants = &self.tenant_limits;
        if tenants.max_installations == 0 || tenants.event_fuel == 0 || tenants.event_time_ms == 0 {
            return Err(ConfigError::Invalid(
                "tenant_limits.max_installations, event_fuel and event_time_ms must be at least 1"
                    .into(),
            ));
        }
        let console = &self.console;
        if console.idle_timeout_secs == 0
            || console.absolute_timeout_secs < console.idle_timeout_secs
        {
            return Err(ConfigError::Invalid(
                "console.idle_timeout_secs must be at least 1, and \
                 console.absolute_timeout_secs at least as long"
                    .into(),
            ));
        }
        if console.max_sessions == 0 || console.sign_in_failures == 0 {
            return Err(ConfigError::Invalid(
                "console.max_sessions and console.sign_in_failures must be at least 1".into(),
            ));
        }
        match &self.cluster {
            Some(cluster) => Ok(cluster.validate_for(self.listen)?),
            None => Ok(()),
        }
    }
}

impl ServiceConfig {
    /// How the embedded store uses memory and disk.
    pub fn store(&self) -> crate::store::StoreConfig {
        crate::store::StoreConfig {
            cache_bytes: self.store_cache_mb << 20,
            overlay_bytes: (self.store_overlay_mb << 20) as usize,
            checkpoint_interval: std::time::Duration::from_secs(self.checkpoint_interval_secs),
            // A cluster's log is shared by the nodes that take it over.
            cut_log: self.cluster.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_files_fill_missing_values_with_defaults_and_refuse_typos() {
        let config: ServiceConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\n[limits]\nfuel = 1000\n[whatsapp]\nversion = \"v22.0\"\n",
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.fuel, 1000);
        assert_eq!(config.limits.deadline_ms, Limits::default().deadline_ms);
        assert_eq!(config.whatsapp.base_url, "https://graph.facebook.com");
        assert!(toml::from_str::<ServiceConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn one_tenant_keeps_every_worker_but_one_by_default() {
        let limits = TenantLimits::default();
        assert_eq!(limits.concurrent_events(1), 1);
        assert_eq!(limits.concurrent_events(2), 1);
        assert_eq!(limits.concurrent_events(8), 7);
        let set = TenantLimits {
            max_concurrent_events: 3,
            ..limits
        };
        assert_eq!(set.concurrent_events(8), 3);
        let config: ServiceConfig =
            toml::from_str("[tenant_limits]\nmax_installations = 3\n").unwrap();
        assert_eq!(config.tenant_limits.max_installations, 3);
        assert_eq!(config.tenant_limits.event_fuel, 1_000_000_000);
    }

    #[test]
    fn a_cluster_section_is_parsed_and_checked_against_the_listen_address() {
        let mut config: ServiceConfig = toml::from_str(
            "listen = \"0.0.0.0:8080\"\n[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnode_name = \"node-a\"\n",
        )
        .unwrap();
        config.operator_token = "0123456789abcdef".into();
        assert_eq!(config.cluster.as_ref().unwrap().replicas, 3);
        // Other nodes cannot reach "0.0.0.0": the address must be given.
        let refused = config.validate().unwrap_err().to_string();
        assert!(refused.starts_with("cluster.advertise_url"), "{refused}");
        config.cluster.as_mut().unwrap().advertise_url = Some("http://10.0.0.5:8080".into());
        config.validate().unwrap();
        config.cluster.as_mut().unwrap().partitions = 0;
        let invalid = config.validate().unwrap_err().to_string();
        assert!(invalid.starts_with("cluster.partitions"), "{invalid}");
        config.cluster = None;
        config.validate().unwrap();
    }

    #[test]
    fn a_short_operator_token_is_refused() {
        let mut config = ServiceConfig::default();
        assert!(config.validate().is_err());
        config.operator_token = "0123456789abcdef".into();
        assert!(config.validate().is_ok());
    }
}
