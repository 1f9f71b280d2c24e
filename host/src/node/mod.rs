//! A cluster node: `flowgate serve` with a `[cluster]` section.
//!
//! **The shape (this version).** The work's durable state lives in NATS
//! JetStream: the commit groups in a replicated log stream
//! ([`JetStreamLog`]), the key ring in a replicated KV bucket
//! ([`KvKeyStore`]). One node at a time processes — the holder of the
//! partition lease ([`LeaseBucket`]) — over an embedded store whose sled
//! directory is only a cache of that log: taking the lease over, a node
//! empties it and replays the log from the start. Every node accepts
//! webhooks and API calls; one without the lease forwards them to the
//! holder ([`forward`]), found through the membership bucket
//! ([`members`]). So an opt-out received on any node is in the one
//! ledger every reply is checked against, an erasure on any node shreds
//! the one key every node reads, and replies are sent once by the one
//! outbox.
//!
//! **Failure.** A node that dies stops renewing its lease; after the TTL
//! another takes it, fences the log with its newer term (the old holder's
//! appends are refused from then on), replays it and resumes the inbox
//! and outbox where they were. A node that finds its lease lost (it was
//! paused, or cut off from the servers for longer than the TTL, and
//! another node took over) exits — status 75 when its renewal says so, an
//! abort when its log refuses a commit — and its supervisor starts it
//! again, as a follower. A NATS server's death is ridden out by the
//! replicas (3 by default): appends and renewals wait for the new stream
//! leaders. (An election that outlasts the lease TTL can hand the work to
//! another node; nothing is lost or done twice, the fence sees to that.)
//!
//! **Not yet.** The work is not split: one node processes everything, the
//! others add availability, not throughput (see `docs/operations.md`,
//! "Cluster mode"). The log is never cut, so the whole history is replayed
//! by a new owner and bounded by `log_max_mb`. Both wait for per-contact
//! partitions with snapshots in the object store.

pub mod forward;
pub mod members;
mod metrics;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, header};
use tower::ServiceExt;

use crate::clock::Clock;
use crate::cluster::link::retry_until;
use crate::cluster::{
    ClusterConfig, ClusterLink, JetStreamLog, KeyBucketSettings, KvKeyStore, Lease, LeaseBucket,
    LeaseError, LogSettings, Partition,
};
use crate::config::ServiceConfig;
use crate::crypto::{KeyRing, SecretKey};
use crate::data::Vault;
use crate::ids::TenantId;
use crate::service::Service;
use crate::store::SledStore;
use crate::store::sled_store::SledTrees;
use members::Members;

/// The one partition this version processes.
const PARTITION: Partition = Partition(0);

/// How long a node trusts its idea of who the owner is before asking the
/// lease bucket again (a failed forward asks at once).
const OWNER_CACHE: Duration = Duration::from_millis(500);

/// The exit status of a node that lost its lease (EX_TEMPFAIL).
pub const LOST_LEASE_EXIT: i32 = 75;

/// What a node is now.
struct Node {
    name: String,
    config: ServiceConfig,
    leases: LeaseBucket,
    members: Members,
    client: reqwest::Client,
    /// The service's routes, once this node holds the lease and has opened
    /// the store.
    app: RwLock<Option<axum::Router>>,
    /// The lease term while this node holds it.
    term: RwLock<Option<u64>>,
    /// Set while this node holds the lease but could not confirm it past
    /// its expiry (renewals unanswered): it serves nothing meanwhile, since
    /// another node may hold the lease by now.
    unconfirmed: std::sync::atomic::AtomicBool,
    /// The owner's URL, and when it was looked up.
    owner: tokio::sync::Mutex<Option<(String, Instant)>>,
    metrics: metrics::NodeMetrics,
    seal: forward::AddressSeal,
}

/// Serve as a node of the cluster in `config.cluster` until `shutdown`
/// completes.
pub async fn serve(
    config: ServiceConfig,
    master: SecretKey,
    clock: Clock,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let cluster = config
        .cluster
        .clone()
        .context("a cluster node needs a [cluster] section")?;
    let url = cluster.advertised(listener.local_addr()?);
    let link = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || ClusterLink::connect(&cluster)).await??
    };
    let leases = LeaseBucket::open(
        &link,
        &cluster.node_name,
        cluster.lease_ttl(),
        cluster.replicas,
    )
    .await
    .context("opening the lease bucket")?;
    let members = Members::open(&link, &cluster, url.clone()).await?;
    // A bucket just created may not take writes on every server yet, and a
    // cluster may be electing a leader: worth waiting for, a while.
    retry_until(Instant::now() + Duration::from_secs(30), || {
        members.announce()
    })
    .await?;
    let announcing = tokio::spawn(members.clone().keep_announcing(cluster.lease_ttl() / 3));
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let node = Arc::new(Node {
        name: cluster.node_name.clone(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // An owner whose host is gone must not hold a request for the
            // whole timeout: connecting is quick or it fails.
            .connect_timeout(Duration::from_secs(2))
            // Admitting a plugin compiles it on the owner: minutes at worst.
            .timeout(Duration::from_secs(300))
            .build()?,
        config,
        leases,
        members,
        app: RwLock::new(None),
        term: RwLock::new(None),
        unconfirmed: std::sync::atomic::AtomicBool::new(false),
        owner: tokio::sync::Mutex::new(None),
        metrics: metrics::NodeMetrics::default(),
        seal: forward::AddressSeal::new(&master),
    });
    tracing::info!(node = %node.name, %url, "flowgate node is serving; waiting for the lease");
    let owning = tokio::spawn(own(node.clone(), link, master, clock));
    let app = axum::Router::new()
        .fallback(dispatch)
        .with_state(node.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    announcing.abort();
    let _ = node.members.leave().await;
    // Stop taking or holding the lease; a service started by it is
    // stopped and its lease released, so another node takes over now
    // rather than after the TTL.
    owning.abort();
    if let Ok(owned) = owning.await {
        owned.stop(&node, grace).await;
    }
    Ok(())
}

/// What a node that took the lease runs.
struct Owned {
    service: Service,
    lease: Arc<tokio::sync::Mutex<Lease>>,
    renewing: tokio::task::JoinHandle<()>,
}

impl Owned {
    async fn stop(self, node: &Node, grace: Duration) {
        *node.app.write().expect("app lock") = None;
        let store = self.service.inner.vault.store.clone();
        if tokio::time::timeout(grace, self.service.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("work in flight did not finish within the grace period");
        }
        self.renewing.abort();
        let _ = tokio::task::spawn_blocking(move || store.checkpoint()).await;
        let lease = self.lease.lock().await.clone();
        match node.leases.release(lease).await {
            Ok(()) => tracing::info!("released the lease"),
            Err(error) => tracing::warn!(%error, "releasing the lease failed; it expires"),
        }
    }
}

/// Wait for the lease, take it, open the store over the log and start the
/// service. Returns only once it serves (the task is aborted at shutdown).
///
/// A node that took the lease and cannot serve exits: holding the lease
/// without serving would stop the whole cluster (every node forwards to
/// the holder), and the lease expires only once its renewals stop.
async fn own(node: Arc<Node>, link: Arc<ClusterLink>, master: SecretKey, clock: Clock) -> Owned {
    let lease = acquire(&node).await;
    match take_over(node, link, master, clock, lease).await {
        Ok(owned) => owned,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "took the lease but cannot serve; exiting so another node takes it"
            );
            eprintln!(
                "flowgate: took the lease but cannot serve: {error:#}; exiting so another node takes it"
            );
            std::process::exit(1)
        }
    }
}

/// Ask for the lease until this node gets it.
async fn acquire(node: &Node) -> Lease {
    let ttl = node
        .config
        .cluster
        .as_ref()
        .expect("a cluster node")
        .lease_ttl();
    let mut failures = 0u32;
    loop {
        match node.leases.acquire(PARTITION).await {
            Ok(Some(lease)) => return lease,
            Ok(None) => failures = 0,
            Err(error) => {
                // Every follower asks ten times a TTL: say it once, then
                // now and then, while the servers do not answer.
                failures += 1;
                if worth_saying(failures, 100) {
                    tracing::warn!(%error, failures, "asking for the lease failed; retrying");
                }
            }
        }
        // Often enough that a dead owner's work moves within a second of
        // its lease expiring.
        tokio::time::sleep(ttl / 10).await;
    }
}

/// Open the store over the log, as the holder of `lease`, and start the
/// service.
async fn take_over(
    node: Arc<Node>,
    link: Arc<ClusterLink>,
    master: SecretKey,
    clock: Clock,
    lease: Lease,
) -> Result<Owned> {
    let cluster = node.config.cluster.clone().expect("a cluster node");
    let ttl = cluster.lease_ttl();
    let started = Instant::now();
    let term = lease.term();
    tracing::info!(term, "took the lease; opening the log");
    let lease = Arc::new(tokio::sync::Mutex::new(lease));
    // Renewed from now on (replaying a long log may take longer than the
    // TTL), on the link's own runtime: the service's start-up and its
    // handlers block threads of this one, and a renewal that waits for
    // them loses the lease.
    let renewing = link.spawn(keep_renewing(node.clone(), lease.clone(), ttl));
    let vault = {
        let (config, cluster, link) = (node.config.clone(), cluster.clone(), link.clone());
        tokio::task::spawn_blocking(move || open_vault(&config, &cluster, link, master, term))
            .await??
    };
    // Starting compiles or loads every plugin: blocking work.
    let service = {
        let config = node.config.clone();
        tokio::task::spawn_blocking(move || Service::start(config, vault, clock)).await??
    };
    *node.app.write().expect("app lock") = Some(crate::server::app(service.inner.clone()));
    *node.term.write().expect("term lock") = Some(term);
    node.metrics.took_over(started.elapsed());
    tracing::info!(
        term,
        seconds = started.elapsed().as_secs_f64(),
        "this node processes the work now"
    );
    Ok(Owned {
        service,
        lease,
        renewing,
    })
}

/// Renew the lease every third of the TTL (more often while renewals
/// fail). A lease found lost ends the process: another node holds it, this
/// node's writes are fenced already or about to be, and only a fresh start
/// (as a follower) brings it back safely.
///
/// A renewal that fails because the servers do not answer (a NATS server
/// died and the bucket is electing a leader, which can take longer than
/// the TTL) does not end it: nobody can take the lease while the bucket has
/// no leader, and if the lease expired meanwhile and another node took it,
/// that node's fence refuses this one's next commit (and the next renewal
/// says `Lost`). Safety rests on the fence, not on clocks; the TTL only
/// decides how fast a dead owner's work moves.
async fn keep_renewing(node: Arc<Node>, lease: Arc<tokio::sync::Mutex<Lease>>, ttl: Duration) {
    let mut failures = 0u32;
    loop {
        let pause = if failures == 0 { ttl / 3 } else { ttl / 10 };
        tokio::time::sleep(pause).await;
        let mut lease = lease.lock().await;
        match node.leases.renew(&mut lease).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "renewed the lease again; serving");
                }
                failures = 0;
                node.unconfirmed.store(false, Ordering::Release);
            }
            Err(LeaseError::Lost(_)) => lost_lease("another node holds it now"),
            Err(error) => {
                failures += 1;
                let expired = Instant::now() >= lease.held_until();
                if expired {
                    // Another node may hold the lease by now: answer
                    // nothing (not even a read of what may have been
                    // erased there) until a renewal says whose it is.
                    node.unconfirmed.store(true, Ordering::Release);
                }
                if worth_saying(failures, 50) {
                    tracing::warn!(%error, failures, expired, "renewing the lease failed; retrying");
                }
            }
        }
    }
}

/// Whether the `failures`th failure in a row of something retried often
/// is worth a log line: the first, then every `every`th, so a long outage
/// is seen without flooding the log.
fn worth_saying(failures: u32, every: u32) -> bool {
    failures == 1 || failures.is_multiple_of(every)
}

fn lost_lease(why: &str) -> ! {
    tracing::error!("lost the lease ({why}); exiting so this node restarts as a follower");
    eprintln!("flowgate: lost the lease ({why}); exiting so this node restarts as a follower");
    std::process::exit(LOST_LEASE_EXIT)
}

/// The vault of a lease holder: an embedded store over the partition's log
/// (its sled directory emptied first: a cache of another term's log is no
/// use), and the key ring in the cluster's KV bucket.
fn open_vault(
    config: &ServiceConfig,
    cluster: &ClusterConfig,
    link: Arc<ClusterLink>,
    master: SecretKey,
    term: u64,
) -> Result<Vault> {
    let cache = config.data_dir.join("cluster").join("records");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)
            .with_context(|| format!("emptying the cache {}", cache.display()))?;
    }
    std::fs::create_dir_all(&cache)?;
    let settings = LogSettings {
        replicas: cluster.replicas,
        max_bytes: (cluster.log_max_mb << 20) as i64,
        ..LogSettings::default()
    };
    let log = JetStreamLog::open(link.clone(), PARTITION, &settings, term)
        .context("opening the replicated log")?;
    let trees = SledTrees::open(&cache.join("db"), config.store().cache_bytes)?;
    trees.ids_from(claim_id_range(&link, cluster.replicas)?)?;
    let store = SledStore::start(Some(&cache), trees, Box::new(log), config.store())
        .context("replaying the replicated log")?;
    let keys = KvKeyStore::open(
        link,
        &KeyBucketSettings {
            replicas: cluster.replicas,
            ..KeyBucketSettings::default()
        },
    )
    .context("opening the key bucket")?;
    let vault = Vault::new(
        Arc::new(store),
        Arc::new(
            KeyRing::new(Box::new(keys), master).with_contact_key_cache(config.key_cache_contacts),
        ),
    );
    vault.keys.create_tenant(&TenantId::SYSTEM)?;
    Ok(vault)
}

/// Ids (`Store::next_id`: inbox keys, message and consent sequences) must
/// never repeat across owners, and a new owner's store starts from an
/// empty cache. Each takeover claims the next range of 2^40 ids (years of
/// a busy node's ids) by compare-and-set on one key of the bucket
/// `flowgate-ids`; the range's start is the floor of this owner's ids.
/// 2^24 takeovers fit in a u64.
fn claim_id_range(link: &Arc<ClusterLink>, replicas: usize) -> Result<u64> {
    use async_nats::jetstream::kv;
    const KEY: &str = "range";
    let opener = link.clone();
    let range = link.run(async move {
        let until = Instant::now() + Duration::from_secs(30);
        let config = kv::Config {
            bucket: crate::cluster::names::IDS_BUCKET.to_owned(),
            description: "flowgate: the id range each lease holder hands out from".to_owned(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let bucket = opener
            .open_bucket(config, until)
            .await
            .context("opening the id bucket")?;
        loop {
            let claimed = match bucket.entry(KEY).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                    let last = <[u8; 8]>::try_from(entry.value.as_ref())
                        .map(u64::from_be_bytes)
                        .context("the id bucket's range is not 8 bytes")?;
                    let next = last + 1;
                    bucket
                        .update(KEY, next.to_be_bytes().to_vec().into(), entry.revision)
                        .await
                        .map(|_| next)
                        .map_err(anyhow::Error::from)
                }
                Ok(_) => bucket
                    .create(KEY, 1u64.to_be_bytes().to_vec().into())
                    .await
                    .map(|_| 1)
                    .map_err(anyhow::Error::from),
                Err(error) => Err(anyhow::Error::from(error)),
            };
            match claimed {
                Ok(range) => return Ok::<u64, anyhow::Error>(range),
                // Another claim won, or the servers are electing: again.
                Err(error) if Instant::now() > until => {
                    return Err(error.context("claiming an id range"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })?;
    anyhow::ensure!(
        range < 1 << 24,
        "the id ranges are used up ({range} takeovers)"
    );
    Ok(range << 40)
}

/// Every request: to the service when this node holds the lease, else to
/// the node that does. Probes are answered here.
async fn dispatch(State(node): State<Arc<Node>>, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path();
    if path == "/healthz" {
        return Response::new(Body::from("ok"));
    }
    let app = node.serving();
    if path == "/readyz" {
        return readiness(&node, app).await;
    }
    if path == "/metrics" {
        return metrics::answer(&node, app, request).await;
    }
    if let Some(app) = app {
        let mut request = request;
        node.seal.restore(&mut request);
        return app
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
    }
    if request.headers().contains_key(forward::FORWARDED) {
        return forward::unavailable("this node does not process requests now; retry");
    }
    let Some(owner) = node.owner_url(false).await else {
        return forward::unavailable("no node processes requests now (one is taking over); retry");
    };
    let http = &node.config.http;
    let limit = http.plugin_upload_limit_bytes.max(http.body_limit_bytes) + (64 << 10);
    let response =
        forward::forward(&node.client, &owner, &node.name, &node.seal, request, limit).await;
    node.metrics.forwarded(response.status());
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        // The owner may have changed: ask again next time.
        *node.owner.lock().await = None;
    }
    response
}

impl Node {
    /// The service's routes, while this node holds a confirmed lease.
    fn serving(&self) -> Option<axum::Router> {
        if self.unconfirmed.load(Ordering::Acquire) {
            return None;
        }
        self.app.read().expect("app lock").clone()
    }

    /// The lease holder's URL, unless it is this node or no one.
    async fn owner_url(&self, fresh: bool) -> Option<String> {
        let mut cached = self.owner.lock().await;
        if !fresh
            && let Some((url, at)) = cached.as_ref()
            && at.elapsed() < OWNER_CACHE
        {
            return Some(url.clone());
        }
        *cached = None;
        let holder = self.leases.holder(PARTITION).await.ok()??;
        if holder == self.name {
            return None;
        }
        let url = self.members.url_of(&holder).await.ok()??;
        *cached = Some((url.clone(), Instant::now()));
        Some(url)
    }
}

/// `/readyz`: this node's role in the cluster and who it knows. Ready
/// (200) when it processes requests and its service is ready, or when it
/// knows a live owner to forward them to.
async fn readiness(node: &Node, app: Option<axum::Router>) -> Response<Body> {
    let members = node.members.list().await.unwrap_or_default();
    let (status, role, service) = match app {
        Some(app) => {
            let probe = Request::get("/readyz")
                .body(Body::empty())
                .expect("a request");
            let answer = app
                .oneshot(probe)
                .await
                .unwrap_or_else(|never| match never {});
            let status = answer.status();
            let body = axum::body::to_bytes(answer.into_body(), 64 << 10)
                .await
                .unwrap_or_default();
            (status, "owner", String::from_utf8_lossy(&body).into_owned())
        }
        None if node.app.read().expect("app lock").is_some() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "owner",
            "the lease could not be confirmed since it expired; serving nothing until it is"
                .to_owned(),
        ),
        None => match node.owner_url(true).await {
            Some(_) => (StatusCode::OK, "follower", "forwarding".to_owned()),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "follower",
                "no node holds the lease".to_owned(),
            ),
        },
    };
    let holder = node.leases.holder(PARTITION).await.ok().flatten();
    let body = serde_json::json!({
        "node": node.name,
        "role": role,
        "lease": {
            "partition": PARTITION.0,
            "holder": holder,
            "term": *node.term.read().expect("term lock"),
        },
        "members": members,
        "service": service,
    });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}
