//! Who is in the cluster and where to reach them: a JetStream KV bucket
//! (`flowgate-nodes`) with one key per node, its name, holding the URL the
//! other nodes forward requests to. Each node rewrites its key every third
//! of the lease TTL; the bucket forgets a key three TTLs after its last
//! write, so a dead node drops out of the list on its own.
//!
//! Node names and URLs are the operator's infrastructure, not anyone's
//! personal data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::TryStreamExt;

use crate::cluster::names;
use crate::cluster::{ClusterConfig, ClusterLink};

/// The membership bucket, as one node sees it.
#[derive(Debug, Clone)]
pub struct Members {
    bucket: kv::Store,
    name: String,
    url: String,
}

/// A membership operation the servers did not carry out.
#[derive(Debug, thiserror::Error)]
#[error("cluster membership: {what}: {source}")]
pub struct MembersError {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn failed(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> MembersError {
    move |source| MembersError { what, source }
}

impl Members {
    /// Open (creating if needed) the bucket, as node `config.node_name`
    /// reachable at `url`.
    pub async fn open(
        link: &Arc<ClusterLink>,
        config: &ClusterConfig,
        url: String,
    ) -> Result<Members, MembersError> {
        let settings = kv::Config {
            bucket: names::MEMBERS_BUCKET.to_owned(),
            description: "flowgate: the nodes of the cluster and their URLs".to_owned(),
            history: 1,
            max_age: config.lease_ttl() * 3,
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        };
        let bucket = link
            .open_bucket(settings, Instant::now() + Duration::from_secs(30))
            .await
            .map_err(|error| failed("opening the bucket")(Box::new(error)))?;
        Ok(Members {
            bucket,
            name: config.node_name.clone(),
            url,
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Say this node is alive, and where.
    pub async fn announce(&self) -> Result<(), MembersError> {
        self.bucket
            .put(&self.name, self.url.clone().into())
            .await
            .map(drop)
            .map_err(|error| failed("announcing this node")(Box::new(error)))
    }

    /// Leave the list at once (a graceful stop), instead of after 3 TTLs.
    pub async fn leave(&self) -> Result<(), MembersError> {
        self.bucket
            .delete(&self.name)
            .await
            .map_err(|error| failed("leaving the list")(Box::new(error)))
    }

    /// The URL of node `name`, if it is alive.
    pub async fn url_of(&self, name: &str) -> Result<Option<String>, MembersError> {
        match self.bucket.entry(name).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                Ok(Some(String::from_utf8_lossy(&entry.value).into_owned()))
            }
            Ok(_) => Ok(None),
            Err(error) => Err(failed("looking a node up")(Box::new(error))),
        }
    }

    /// The names of the nodes alive, sorted.
    pub async fn list(&self) -> Result<Vec<String>, MembersError> {
        let keys = self
            .bucket
            .keys()
            .await
            .map_err(|error| failed("listing the nodes")(Box::new(error)))?;
        let mut names: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|error| failed("listing the nodes")(Box::new(error)))?;
        names.sort();
        Ok(names)
    }

    /// Announce this node every `period` until the task is dropped; a
    /// failed announcement is retried at the next period (three in a row
    /// are needed for the others to forget this node).
    pub async fn keep_announcing(self, period: Duration) {
        let mut failures = 0u32;
        loop {
            match self.announce().await {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures += 1;
                    if super::worth_saying(failures, 30) {
                        tracing::warn!(%error, failures, "announcing this node failed; retrying");
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }
}
