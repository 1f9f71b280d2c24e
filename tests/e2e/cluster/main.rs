//! Cluster mode's foundation against real NATS servers: a 3-server
//! JetStream cluster on loopback (the test kit's [`NatsCluster`]), killed
//! with SIGKILL and restarted, under the replicated log, the partition
//! leases, the key ring's bucket and the partition hash; and `flowgate
//! serve` as three cluster nodes (`nodes`), killed and restarted under
//! load.
//!
//! Needs the pinned nats-server: `cargo xtask test` installs it, or
//! `eval $(cargo xtask nats-server)` before `cargo test --test cluster`.

mod figures;
mod key_store;
mod leases;
mod log;
mod nodes;
mod privacy;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use flowgate::cluster::{ClusterLink, LogSettings};
use flowgate_testkit::nats::NatsCluster;

/// A node's connection to `nats`, named `name`.
fn link(nats: &NatsCluster, name: &str) -> Arc<ClusterLink> {
    ClusterLink::connect_to(&nats.urls(), None, name).unwrap()
}

/// Log settings for tests: the production replication, a small stream.
fn settings() -> LogSettings {
    LogSettings {
        replicas: 3,
        max_bytes: 16 << 20,
        deadline: Duration::from_secs(30),
    }
}
