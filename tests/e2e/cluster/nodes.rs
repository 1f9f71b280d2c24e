//! `flowgate serve` as three cluster nodes over a 3-server NATS cluster,
//! all on loopback, with real plugins and the fake Cloud API: load spread
//! over every node while the owner node is killed with SIGKILL (and, in the
//! second test, then a NATS server); every
//! acknowledged delivery processed exactly once, every
//! reply sent once, an opt-out and an erasure made on one node in effect
//! on the others, audit chains intact, and no phone number, name or message
//! word in the servers' stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate_testkit::api::Api;
use flowgate_testkit::nats::{NatsCluster, files_containing};
use flowgate_testkit::now;
use flowgate_testkit::process::{ServerProcess, free_port, serve_command, write_config};
use flowgate_testkit::service::OPERATOR;
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant, set_up};
use flowgate_testkit::status_gate::StatusGate;
use flowgate_testkit::webhook::text_message;

/// The master key every node shares (a test key; real ones come from
/// `flowgate keys generate`).
const MASTER: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e\
                      0ddba11c0ddba11c0ddba11c0ddba11c0ddba11c0ddba11c0ddba11c0ddba11c";

/// The lease TTL the nodes run with (the default): a dead owner's work
/// moves after it, and a NATS leader election shorter than it leaves the
/// owner in place.
const LEASE_TTL_SECS: u64 = 5;

/// One flowgate node: its port, configuration and process.
struct Node {
    port: u16,
    config: PathBuf,
    process: Option<ServerProcess>,
}

impl Node {
    fn api(&self) -> Api {
        Api::new(format!("http://127.0.0.1:{}", self.port))
    }

    /// `flowgate serve` as this node.
    fn command(&self) -> std::process::Command {
        let mut command = serve_command(
            Path::new(env!("CARGO_BIN_EXE_flowgate")),
            &self.config,
            OPERATOR,
        );
        command.env("FLOWGATE_MASTER_KEY", MASTER);
        // FLOWGATE_TEST_NODE_LOGS=1 shows the nodes' logs with the test's
        // output; a directory keeps each node's in its own file there.
        if let Some(logs) = std::env::var_os("FLOWGATE_TEST_NODE_LOGS") {
            command.env("FLOWGATE_LOG", "info");
            let stderr = if logs == "1" {
                std::process::Stdio::inherit()
            } else {
                let name = self.config.with_extension("log");
                let path = Path::new(&logs).join(name.file_name().unwrap());
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("opening a node's log file")
                    .into()
            };
            command.stderr(stderr);
        }
        command
    }

    async fn start(&mut self) {
        let mut command = self.command();
        // A node that cannot start (the NATS servers still electing past
        // its deadline) exits, and its supervisor starts it again.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match ServerProcess::start(command, self.port).await {
                Ok(process) => {
                    self.process = Some(process);
                    return;
                }
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "starting a cluster node: {error}"
                    );
                    eprintln!("a cluster node did not start ({error}); starting it again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    command = self.command();
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Start the node again if it exited on its own, as its supervisor
    /// would (systemd's `Restart=always`): an owner whose lease moved while
    /// a NATS server was down exits. Whether it did. (A node the test
    /// killed has no process, and stays down.)
    async fn supervise(&mut self) -> bool {
        let exited = self
            .process
            .as_mut()
            .is_some_and(|process| process.child.try_wait().ok().flatten().is_some());
        if exited {
            self.process = None;
            self.start().await;
        }
        exited
    }
}

/// The nodes, under a supervisor that starts again any that exits on its
/// own, whenever it does — a node can lose its lease, and exit, at any
/// moment a NATS election outlasts the lease, also while the test checks.
struct Supervised {
    nodes: Arc<tokio::sync::Mutex<Vec<Node>>>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Supervised {
    fn watch(nodes: Vec<Node>) -> Supervised {
        let nodes = Arc::new(tokio::sync::Mutex::new(nodes));
        let supervisor = tokio::spawn({
            let nodes = nodes.clone();
            async move {
                loop {
                    for (index, node) in nodes.lock().await.iter_mut().enumerate() {
                        if node.supervise().await {
                            eprintln!("node-{index} exited, and was started again");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Supervised { nodes, supervisor }
    }

    /// The index of the node that processes the work now, by its own word.
    async fn owner(&self) -> Option<usize> {
        owner(&self.nodes.lock().await).await
    }

    async fn stop(self) {
        self.supervisor.abort();
        for node in self.nodes.lock().await.iter_mut() {
            node.kill();
        }
    }
}

/// Three nodes over `nats`, sending through `fake`.
async fn nodes(nats: &NatsCluster, fake: &FakeCloudApi, dir: &Path) -> Vec<Node> {
    let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
    let mut nodes = Vec::new();
    for index in 0..3 {
        let port = free_port();
        let config = dir.join(format!("node-{index}.toml"));
        write_config(
            &config,
            port,
            &dir.join(format!("node-{index}")),
            &fake.base_url(),
            "workers = 2\nstore_cache_mb = 32\n",
            &format!(
                "confirm_timeout_secs = 60\n[http]\nwebhook_requests_per_second = 100000\n\
                 [cluster]\nurls = [{}]\nnode_name = \"node-{index}\"\nlease_ttl_secs = {LEASE_TTL_SECS}\n",
                urls.join(", ")
            ),
        )
        .unwrap();
        let mut node = Node {
            port,
            config,
            process: None,
        };
        // One after the other: the first takes the lease, so the others
        // find an owner to forward to when they are asked if ready.
        node.start().await;
        nodes.push(node);
    }
    nodes
}

/// `/readyz` of the node at `api`: its role and view of the cluster.
async fn readiness(api: &Api) -> Option<Value> {
    let answer = reqwest::get(format!("{}/readyz", api.base)).await.ok()?;
    answer.json().await.ok()
}

/// The index of the node that processes the work now, by its own word.
async fn owner(nodes: &[Node]) -> Option<usize> {
    for (index, node) in nodes.iter().enumerate() {
        if node.process.is_some()
            && let Some(ready) = readiness(&node.api()).await
            && ready["role"] == "owner"
        {
            return Some(index);
        }
    }
    None
}

async fn post_signed(api: &Api, tenant: &TestTenant, body: &str) -> bool {
    api.post_webhook(&tenant.webhook, body, &tenant.app_secret)
        .await
        .is_ok_and(|(status, _)| status == 200)
}

/// Numbers, names and words of the traffic, none of which may reach NATS.
const CONTACTS: usize = 6;
fn number(contact: usize) -> String {
    format!("4915550{contact:05}")
}
fn name(contact: usize) -> String {
    format!("Zebulon{contact}")
}
const QUESTION: &str = "opening hours for the marmalade?";

fn delivery(n: usize) -> String {
    let contact = n % CONTACTS;
    text_message(
        "7001",
        &format!("wamid.C{n}"),
        &number(contact),
        &name(contact),
        // Numbered: a lost delivery can be named (see `Acks::missing`).
        &format!("{QUESTION} #{n}."),
        now(),
    )
}

/// Post deliveries `from..to` spread over the live nodes by 3 senders,
/// each posted until a node acknowledges it (as WhatsApp delivers again).
/// Which node acknowledged each delivery, when, and with what answer: what
/// a failure says about the deliveries that were lost.
#[derive(Clone, Default)]
struct Acks(Arc<std::sync::Mutex<std::collections::BTreeMap<usize, String>>>);

impl Acks {
    /// `n` acknowledged by `node` now (UTC, as the nodes' logs say it)
    /// with `answer`.
    fn note(&self, n: usize, node: usize, answer: &Value) {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let (secs, millis) = (since.as_secs() % 86_400, since.subsec_millis());
        let at = format!(
            "{:02}:{:02}:{:02}.{millis:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        self.0
            .lock()
            .unwrap()
            .insert(n, format!("node-{node} at {at}: {answer}"));
    }

    /// The acknowledged deliveries that no contact's history holds, with
    /// their acknowledgements, as a data-subject access export shows them.
    async fn missing(&self, api: &Api, shop: &TestTenant) -> Vec<(usize, String)> {
        let mut histories = String::new();
        for contact in 0..CONTACTS {
            let export = api
                .tenant(&shop.admin)
                .0
                .call(
                    Method::POST,
                    "/v1/dsr/access",
                    Some(json!({"wa_id": number(contact)})),
                )
                .await
                .map(|value| value.to_string())
                .unwrap_or_default();
            histories.push_str(&export);
        }
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| !histories.contains(&format!("#{n}.")))
            .map(|(n, ack)| (*n, ack.clone()))
            .collect()
    }
}

async fn load(nodes: &[Api], shop: &TestTenant, from: usize, to: usize, acks: &Acks) {
    let next = Arc::new(AtomicUsize::new(from));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..3 {
        let (next, nodes, shop, acks) = (next.clone(), nodes.to_vec(), shop.clone(), acks.clone());
        senders.spawn(async move {
            let mut attempt = sender;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= to {
                    return;
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    attempt += 1;
                    let node = &nodes[attempt % nodes.len()];
                    if let Ok((200, answer)) = node
                        .post_webhook(&shop.webhook, &delivery(n), &shop.app_secret)
                        .await
                    {
                        acks.note(n, attempt % nodes.len(), &answer);
                        break;
                    }
                    assert!(Instant::now() < deadline, "delivery {n} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
}

/// How many audit entries of each action about messages the tenant has.
async fn audit_counts(api: &Api, shop: &TestTenant) -> Vec<(&'static str, Option<usize>)> {
    let tenant = api.tenant(&shop.admin);
    let mut counts = Vec::new();
    for action in [
        "message.received",
        "message.sent",
        "message.dropped",
        "message.failed",
        "message.unconfirmed",
        "action.dropped",
    ] {
        counts.push((
            action,
            tenant.audit(action).await.ok().map(|entries| entries.len()),
        ));
    }
    counts
}

/// Wait for `total` replies; when they do not come, fail with what the
/// audit and each node's counters say happened (`when`: the test's phase).
async fn await_replies(
    fake: &FakeCloudApi,
    apis: &[Api],
    shop: &TestTenant,
    acks: &Acks,
    total: usize,
    when: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while fake.sent().len() < total {
        if Instant::now() > deadline {
            let per_contact: Vec<usize> = (0..CONTACTS)
                .map(|c| fake.sent().iter().filter(|m| m.to == number(c)).count())
                .collect();
            panic!(
                "{when}: only {} of {total} replies; per contact {per_contact:?}; audit {:?}; \
                 acknowledged but in no history: {:?}",
                fake.sent().len(),
                audit_counts(&apis[2], shop).await,
                acks.missing(&apis[2], shop).await,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_every_delivery_exactly_once_through_kill_9_of_the_owner_node() {
    three_nodes_under_load(false).await;
}

/// The owner's death as above, then, with the second half of the load
/// started at once, a NATS server killed and started again. The servers'
/// elections there often outlast the lease TTL, so the work moves again,
/// and a sender whose request a slow commit held up hangs up and delivers
/// again: it once found its first delivery stored but never handed to a
/// worker (lost until the next restart, or a reply sent twice when it was
/// a status), in about a quarter of the runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_every_delivery_exactly_once_through_kill_9_of_a_nats_server() {
    three_nodes_under_load(true).await;
}

/// Load over three nodes while the owner node is killed, and then, when
/// `kill_a_nats_server`, a NATS server; then every check of the module's
/// header.
async fn three_nodes_under_load(kill_a_nats_server: bool) {
    let mut nats = NatsCluster::start(3).unwrap();
    let fake = FakeCloudApi::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nodes = nodes(&nats, &fake, dir.path()).await;
    let apis: Vec<Api> = nodes.iter().map(Node::api).collect();
    let nodes = Supervised::watch(nodes);
    assert_eq!(
        nodes.owner().await,
        Some(0),
        "the first node took the lease"
    );
    let ready = readiness(&apis[1]).await.unwrap();
    assert_eq!(ready["role"], "follower", "{ready}");
    assert_eq!(ready["lease"]["holder"], "node-0", "{ready}");
    assert_eq!(ready["members"].as_array().unwrap().len(), 3, "{ready}");

    // Set up through a follower: every call is forwarded to the owner.
    let spec = TenantSpec::new("Shop", "7001")
        .install(Install::new("scaffolded").grants(&["user.content.private"]))
        .install(
            Install::new("auto-reply")
                .grants(&["user.content.private"])
                .config(json!({
                    "faq": r#"[{"keywords": ["hours"], "reply": "9 to 5"}]"#,
                    "cooldown-minutes": "0"
                })),
        );
    let shop = set_up(&apis[1], OPERATOR, &fake, &spec).await.unwrap();
    // Status webhooks settle replies in doubt; they go to the node that is
    // never killed, through a gate held shut while a node or server is
    // killed, as the single-node crash loop does (see `StatusGate`): a
    // status taken in by an owner that then dies mid-send is the one case
    // the outbox does not cover.
    let statuses = StatusGate::start(&apis[2].base).await;
    fake.post_statuses(
        "7001",
        &format!("{}{}", statuses.base, shop.webhook),
        &shop.app_secret,
    );

    // Load on every node; the owner is killed under it.
    let acks = Acks::default();
    let total = if kill_a_nats_server { 120 } else { 60 };
    let loading = {
        let (apis, shop, acks) = (apis.clone(), shop.clone(), acks.clone());
        tokio::spawn(async move { load(&apis, &shop, 0, 60, &acks).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    statuses.shut();
    nodes.nodes.lock().await[0].kill();
    let killed = Instant::now();
    let moved = loop {
        if let Some(index) = nodes.owner().await {
            break (index, killed.elapsed());
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no node took the work over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "the work moved from node-0 to node-{} {:.1} s after node-0 was killed (lease TTL {LEASE_TTL_SECS} s)",
        moved.0,
        moved.1.as_secs_f64()
    );
    assert!(
        moved.1 < Duration::from_secs(10),
        "the work took {:?} to move",
        moved.1
    );
    loading.await.unwrap();
    // The killed node comes back as a follower.
    nodes.nodes.lock().await[0].start().await;
    statuses.open();
    assert_eq!(readiness(&apis[0]).await.unwrap()["role"], "follower");

    // Then a NATS server dies under load, and comes back.
    // Right away, while the new owner may still be working through what
    // the dead one left: a delivery whose sender hangs up while a NATS
    // election holds its commit up must still be processed.
    if kill_a_nats_server {
        let loading = {
            let (apis, shop, acks) = (apis.clone(), shop.clone(), acks.clone());
            tokio::spawn(async move { load(&apis, &shop, 60, total, &acks).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        statuses.shut();
        nats.kill(1);
        loading.await.unwrap();
        nats.restart(1).unwrap();
    }
    statuses.open();
    // A takeover the election caused may still be replaying: the checks
    // below ask a serving cluster, as a client retrying 503s would.
    let serving = Instant::now();
    while nodes.owner().await.is_none() {
        assert!(
            serving.elapsed() < Duration::from_secs(60),
            "no node serves after the NATS server came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // From here on, every check is asked as a client that retries 503s
    // does: a NATS election can still move the work once more.
    let apis: Vec<Api> = apis
        .iter()
        .map(|api| api.patient(Duration::from_secs(60)))
        .collect();

    // Every delivery answered once, each contact's as many as it sent.
    await_replies(&fake, &apis, &shop, &acks, total, "in the end").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = fake.sent();
    // Each reply carries its message's sequence in its contact's history
    // as callback data: a reply sent twice shows as a repeat even if
    // another was lost.
    let mut seen = std::collections::HashMap::new();
    for m in &sent {
        *seen
            .entry((m.to.as_str(), m.callback.as_deref()))
            .or_insert(0) += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        sent.len() == total && repeated.is_empty() && seen.len() == total,
        "{} replies, {} distinct, of {total}: sent twice (or without callback data): \
         {repeated:?}; audit {:?}",
        sent.len(),
        seen.len(),
        audit_counts(&apis[2], &shop).await
    );
    for contact in 0..CONTACTS {
        let replies = sent.iter().filter(|m| m.to == number(contact)).count();
        assert_eq!(replies, total / CONTACTS, "replies to contact {contact}");
    }
    // Processed once: the audit says so from any node, and its chain holds.
    for api in &apis {
        let tenant = api.tenant(&shop.admin);
        assert_eq!(tenant.audit("message.received").await.unwrap().len(), total);
        assert_eq!(tenant.verify_audit().await.unwrap()["intact"], true);
    }

    // In order per contact across nodes: STOP on one node, then a question
    // on another gets no reply but the opt-out's confirmation.
    let before = fake.sent().len();
    let stop = text_message("7001", "wamid.S1", &number(0), &name(0), "STOP", now());
    assert!(post_signed(&apis[0], &shop, &stop).await);
    let after = text_message("7001", "wamid.S2", &number(0), &name(0), QUESTION, now());
    assert!(post_signed(&apis[1], &shop, &after).await);
    // Settled as the owner counts it (a follower's metrics are its own).
    let owner_now = nodes.owner().await.expect("an owner");
    apis[owner_now]
        .operator(OPERATOR)
        .settle(Duration::from_secs(30))
        .await
        .unwrap();
    let late: Vec<_> = fake.sent()[before..].to_vec();
    assert_eq!(late.len(), 1, "only the opt-out's confirmation: {late:?}");
    assert!(late[0].text.contains("unsubscribed"), "{late:?}");

    // An erasure asked of one node is in effect on every other at once,
    // and the contact's key is gone from the cluster's key bucket.
    let erased_contact = apis[0]
        .tenant(&shop.admin)
        .lookup(&number(1))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let erased = apis[1]
        .tenant(&shop.admin)
        .0
        .call(
            Method::POST,
            "/v1/dsr/erasure",
            Some(json!({"wa_id": number(1)})),
        )
        .await
        .unwrap();
    assert_eq!(erased["kind"], "erasure", "{erased}");
    for api in [&apis[0], &apis[2]] {
        let (status, _) = api
            .tenant(&shop.admin)
            .0
            .send(
                Method::POST,
                "/v1/contacts/lookup",
                Some(json!({"wa_id": number(1)})),
            )
            .await
            .unwrap();
        assert_eq!(status, 404, "the erased contact is gone on {}", api.base);
    }

    let (urls, tenant, contact) = (nats.urls(), shop.id.clone(), erased_contact);
    let contact_key = tokio::task::spawn_blocking(move || {
        use flowgate::crypto::{KeySpace, KeyStore};
        let tenant: flowgate::ids::TenantId = tenant.parse().unwrap();
        let contact: flowgate::ids::ContactId = contact.parse().unwrap();
        let link = flowgate::cluster::ClusterLink::connect_to(&urls, None, "inspector").unwrap();
        let keys = flowgate::cluster::KvKeyStore::open(link, &Default::default()).unwrap();
        let entry = [tenant.as_bytes().as_slice(), contact.as_bytes()].concat();
        keys.get(KeySpace::Contacts, &entry).unwrap()
    })
    .await
    .unwrap();
    assert!(
        contact_key.is_none(),
        "the erased contact's key is still in the bucket"
    );

    // Each node's metrics say what it does: the owner's hold the service's
    // and its lease; a follower's, what it forwarded. Only for the operator.
    let owner_now = nodes.owner().await.expect("an owner");
    for (index, api) in apis.iter().enumerate() {
        let text = api.operator(OPERATOR).metrics().await.unwrap();
        let owns = index == owner_now;
        assert!(
            text.contains(&format!(
                "flowgate_cluster_owner{{partition=\"0\"}} {}",
                u8::from(owns)
            )),
            "node-{index}: {text}"
        );
        assert_eq!(text.contains("flowgate_events_total"), owns, "node-{index}");
        let refused = reqwest::get(format!("{}/metrics", api.base)).await.unwrap();
        assert_eq!(
            refused.status(),
            401,
            "node-{index} shows its metrics to anyone"
        );
    }
    let forwarded = apis[(owner_now + 1) % 3]
        .operator(OPERATOR)
        .metrics()
        .await
        .unwrap();
    assert!(
        !forwarded.contains("flowgate_cluster_forwarded_total{partition=\"0\"} 0\n"),
        "{forwarded}"
    );

    // Nothing personal reached the NATS servers' stores.
    let mut needles: Vec<String> = (0..CONTACTS).flat_map(|c| [number(c), name(c)]).collect();
    needles.extend(["marmalade".to_owned(), "9 to 5".to_owned()]);
    for needle in &needles {
        let found = files_containing(nats.dir(), needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} is in {found:?}");
    }

    // The tenant deleted through a follower: gone on every node, and its
    // keys gone from the cluster's key bucket (shredded for every node).
    let tenant_id: flowgate::ids::TenantId = shop.id.parse().unwrap();
    // As a client does: 503 (no node serving for a moment) is retried,
    // for up to 30 s.
    let deleted = apis[(owner_now + 2) % 3]
        .patient(Duration::from_secs(30))
        .operator(OPERATOR)
        .0
        .send(
            Method::DELETE,
            &format!("/v1/operator/tenants/{}", shop.id),
            None,
        )
        .await
        .unwrap();
    assert!((200..300).contains(&deleted.0), "{deleted:?}");
    for api in &apis {
        let (status, _) = api
            .tenant(&shop.admin)
            .0
            .send(Method::GET, "/v1/plugins", None)
            .await
            .unwrap();
        assert_eq!(
            status, 401,
            "the deleted tenant's key still works on {}",
            api.base
        );
        assert!(
            !post_signed(api, &shop, &delivery(0)).await,
            "{} took a webhook for a deleted tenant",
            api.base
        );
    }
    let urls = nats.urls();
    let (tenant_key, contact_keys) = tokio::task::spawn_blocking(move || {
        use flowgate::crypto::{KeySpace, KeyStore};
        let link = flowgate::cluster::ClusterLink::connect_to(&urls, None, "inspector").unwrap();
        let keys = flowgate::cluster::KvKeyStore::open(link, &Default::default()).unwrap();
        (
            keys.get(KeySpace::Tenants, tenant_id.as_bytes()).unwrap(),
            keys.scan(KeySpace::Contacts, tenant_id.as_bytes(), None, 10)
                .unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(
        tenant_key.is_none(),
        "the tenant key is still in the bucket"
    );
    assert!(
        contact_keys.is_empty(),
        "{} contact keys left",
        contact_keys.len()
    );

    nodes.stop().await;
}
