//! The `[cluster]` section of the service configuration: which NATS
//! servers to use, as which node, and how the work and its log are split
//! and replicated.
//!
//! ```toml
//! [cluster]
//! urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
//! credentials_file = "/etc/flowgate/nats.creds"   # optional
//! node_name = "node-a"
//! partitions = 32        # fixed for the cluster's life (see below)
//! replicas = 3           # copies of each log stream and of the lease bucket
//! lease_ttl_secs = 5     # a dead node's partitions move after this long
//! ```

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
}

/// Enough to spread the work over a dozen nodes with a few partitions
/// each; each partition is a stream (a RAFT group of `replicas` servers),
/// so many more cost the servers heartbeats and memory for nothing.
fn default_partitions() -> u32 {
    32
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

    /// How long a partition lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
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
        assert_eq!(config.partitions, 32);
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
