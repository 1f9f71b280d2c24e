//! The `[cluster]` section of the service configuration: which NATS
//! servers to use, as which node, and how the work and its log are split
//! and replicated.
//!
//! ```toml
//! [cluster]
//! urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
//! credentials_file = "/etc/flowgate/nats.creds"   # optional
//! node_name = "node-a"
//! advertise_url = "http://10.0.0.5:8080"   # where the other nodes reach this one
//! partitions = 1         # this version: 1 (see below)
//! replicas = 3           # copies of each log stream and of every bucket
//! lease_ttl_secs = 5     # a dead node's partitions move after this long
//! log_max_mb = 1024      # the most the replicated log may hold
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a node joins the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers to connect to first (`nats://host:port`, `tls://…`).
    /// The client learns the cluster's other servers from them, but list
    /// all of them: a node restarted while one listed server is down must
    /// still find another.
    pub urls: Vec<String>,
    /// A NATS credentials file (user JWT and nkey seed), when the servers
    /// require one.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// This node's name, unique in the cluster: leases name their holder
    /// by it, and the NATS servers show it as the connection's name.
    pub node_name: String,
    /// Partitions the work is split into, by a keyed hash of tenant and
    /// contact. Each is one log stream, processed by one node at a time.
    /// Changing it moves almost every contact to another partition, so it
    /// is set once per cluster.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Copies JetStream keeps of each stream and bucket: 3 survives the
    /// loss of any one NATS server with writes going on (a quorum of 2 is
    /// left); 5 survives two.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Seconds a partition lease lasts without renewal: how long a dead
    /// node's partitions wait before another node takes them.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// The base URL other nodes forward requests to this one by
    /// (`http://host:port`). Default: `http://` and the listen address,
    /// which must then be a specific one (not 0.0.0.0 or ::).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// The most the replicated log may hold, in MiB. This version keeps
    /// the whole log (a node taking a partition over replays it from the
    /// start), so this bounds the cluster's history: a full log refuses
    /// commits rather than lose any. JetStream reserves it on each of
    /// `replicas` servers.
    #[serde(default = "default_log_max_mb")]
    pub log_max_mb: u64,
}

/// One: this version processes all work in one partition, whose lease
/// holder serves every request the other nodes forward to it (see
/// [`crate::node`]). Splitting the work by contact needs per-partition
/// audit chains and tenant state shared across partitions: the next step.
fn default_partitions() -> u32 {
    1
}

fn default_log_max_mb() -> u64 {
    1024
}

fn default_replicas() -> usize {
    3
}

/// Short enough that partitions move well within the 10 s the cluster
/// tests allow after a node dies, long enough that a renewal every third of
/// it survives a garbage-collection pause or a slow disk on the servers.
fn default_lease_ttl_secs() -> u64 {
    5
}

/// The largest log a cluster may keep, in MiB (16 TiB): far past any
/// server's disk, and small enough that its size in bytes fits an i64.
pub const MAX_LOG_MB: u64 = 16 << 20;

/// The most partitions a cluster may have: each is a replicated stream.
pub const MAX_PARTITIONS: u32 = 1024;

/// Why a `[cluster]` section is unusable.
#[derive(Debug, thiserror::Error)]
#[error("cluster.{field}: {reason}")]
pub struct InvalidClusterConfig {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidClusterConfig {
    InvalidClusterConfig {
        field,
        reason: reason.into(),
    }
}

impl ClusterConfig {
    /// Check what the types do not.
    pub fn validate(&self) -> Result<(), InvalidClusterConfig> {
        if self.urls.is_empty() {
            return Err(invalid(
                "urls",
                "list the NATS servers to connect to (nats://host:port)",
            ));
        }
        for url in &self.urls {
            if let Err(error) = url.parse::<async_nats::ServerAddr>() {
                return Err(invalid("urls", format!("{url:?}: {error}")));
            }
        }
        let name = &self.node_name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "node_name",
                format!(
                    "{name:?} must be 1 to 64 letters, digits, '-' or '_' \
                     (it is written into lease records and server logs)"
                ),
            ));
        }
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(invalid(
                "partitions",
                format!(
                    "{} must be 1 to {MAX_PARTITIONS} (each partition is a replicated stream)",
                    self.partitions
                ),
            ));
        }
        if self.partitions != 1 {
            return Err(invalid(
                "partitions",
                format!(
                    "{}: this version serves one partition (one node processes at a time, \
                     the others forward to it); leave it out or set 1",
                    self.partitions
                ),
            ));
        }
        if !(64..=MAX_LOG_MB).contains(&self.log_max_mb) {
            return Err(invalid(
                "log_max_mb",
                format!("{} must be 64 to {MAX_LOG_MB}", self.log_max_mb),
            ));
        }
        if let Some(url) = &self.advertise_url {
            check_advertised(url)?;
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(invalid(
                "replicas",
                format!(
                    "{} must be 1, 3 or 5: JetStream allows 1 to 5, and an even count \
                     survives no more server losses than the odd count below it",
                    self.replicas
                ),
            ));
        }
        if self.lease_ttl_secs == 0 || self.lease_ttl_secs > 300 {
            return Err(invalid(
                "lease_ttl_secs",
                format!(
                    "{} must be 1 to 300: a dead node's partitions wait this long",
                    self.lease_ttl_secs
                ),
            ));
        }
        if let Some(path) = &self.credentials_file
            && !path.is_file()
        {
            return Err(invalid(
                "credentials_file",
                format!("{} is not a readable file", path.display()),
            ));
        }
        Ok(())
    }

    /// [`ClusterConfig::validate`], and that the other nodes can reach this
    /// one: without `advertise_url`, the service's `listen` address must be
    /// a specific one.
    pub fn validate_for(&self, listen: SocketAddr) -> Result<(), InvalidClusterConfig> {
        self.validate()?;
        if self.advertise_url.is_none() && listen.ip().is_unspecified() {
            return Err(invalid(
                "advertise_url",
                format!(
                    "the service listens on {listen}, which other nodes cannot connect to: \
                     set the URL they reach this node by (http://host:port)"
                ),
            ));
        }
        Ok(())
    }

    /// Where other nodes reach this one, for a service listening on
    /// `listen`.
    pub fn advertised(&self, listen: SocketAddr) -> String {
        match &self.advertise_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{listen}"),
        }
    }

    /// How long a partition lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }
}

/// An advertised URL: http(s), a host, and nothing after the port (nodes
/// append the request's path to it).
fn check_advertised(url: &str) -> Result<(), InvalidClusterConfig> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(authority)
            if !authority.is_empty() && !authority.trim_end_matches('/').contains('/') =>
        {
            Ok(())
        }
        _ => Err(invalid(
            "advertise_url",
            format!("{url:?} must be http://host:port or https://host:port"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ClusterConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_minimal_section_gets_replicated_defaults() {
        let config = parse("urls = [\"nats://127.0.0.1:4222\"]\nnode_name = \"node-a\"\n");
        assert_eq!(config.partitions, 1);
        assert_eq!(config.log_max_mb, 1024);
        assert_eq!(config.replicas, 3);
        assert_eq!(config.lease_ttl(), Duration::from_secs(5));
        assert!(config.credentials_file.is_none());
        config.validate().unwrap();
    }

    #[test]
    fn unusable_values_are_refused_naming_the_field() {
        let good = parse("urls = [\"nats://127.0.0.1:4222\"]\nnode_name = \"node-a\"\n");
        let refused = |change: &dyn Fn(&mut ClusterConfig)| {
            let mut config = good.clone();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(refused(&|c| c.urls.clear()).starts_with("cluster.urls"));
        assert!(refused(&|c| c.urls = vec!["http://x:1".into()]).starts_with("cluster.urls"));
        assert!(refused(&|c| c.node_name = "node a".into()).starts_with("cluster.node_name"));
        assert!(refused(&|c| c.node_name = String::new()).starts_with("cluster.node_name"));
        assert!(refused(&|c| c.partitions = 0).starts_with("cluster.partitions"));
        assert!(refused(&|c| c.partitions = 5000).starts_with("cluster.partitions"));
        let split = refused(&|c| c.partitions = 32);
        assert!(split.contains("serves one partition"), "{split}");
        assert!(refused(&|c| c.log_max_mb = 1).starts_with("cluster.log_max_mb"));
        assert!(refused(&|c| c.log_max_mb = u64::MAX).starts_with("cluster.log_max_mb"));
        for url in ["10.0.0.5:8080", "ftp://x", "http://", "http://x:1/api"] {
            let bad = refused(&|c| c.advertise_url = Some(url.into()));
            assert!(bad.starts_with("cluster.advertise_url"), "{url}: {bad}");
        }
        let even = refused(&|c| c.replicas = 2);
        assert!(even.contains("even count"), "{even}");
        assert!(refused(&|c| c.lease_ttl_secs = 0).starts_with("cluster.lease_ttl_secs"));
        assert!(
            refused(&|c| c.credentials_file = Some("/nonexistent/nats.creds".into()))
                .starts_with("cluster.credentials_file")
        );
        assert!(
            toml::from_str::<ClusterConfig>("urls = []\nnode_name = \"a\"\nnodes = 3").is_err()
        );
    }
}
