//! Nothing that identifies a contact reaches the NATS servers' disks: the
//! partition is a keyed hash's number, lease keys and stream names carry
//! only it, and log payloads are sealed by the caller (the store seals
//! every record before it is grouped and appended) — here with the same
//! AES-SIV sealing, under a key the servers never see.

use std::time::{Duration, Instant};

use flowgate::cluster::{JetStreamLog, LeaseBucket, PartitionMap};
use flowgate::crypto::SecretKey;
use flowgate::ids::TenantId;
use flowgate::store::log::Log;
use flowgate_testkit::nats::{NatsCluster, files_containing};

use super::{link, settings};

const PHONE: &str = "4915112345678";
const NAME: &str = "Quintessa Marlowe";
const WORDS: &str = "the cobalt teapot, please";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phone_number_name_or_message_word_reaches_the_servers_stores() {
    let mut nats = NatsCluster::start(3).unwrap();
    let link = link(&nats, "node-a");
    let master = SecretKey::generate();
    let tenant = TenantId::generate();
    let map = PartitionMap::new(&master, 32);
    let partition = map.partition(&tenant, PHONE.as_bytes());

    let leases = LeaseBucket::open(&link, "node-a", Duration::from_secs(30), 3)
        .await
        .unwrap();
    let lease = leases.acquire(partition).await.unwrap().unwrap();
    let records = master.derive("test records");
    let sealed: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let plain =
                format!("{{\"from\":\"{PHONE}\",\"name\":\"{NAME}\",\"text\":\"{WORDS} {i}\"}}");
            records.seal(tenant.as_bytes(), plain.as_bytes())
        })
        .collect();
    let log = {
        let (link, sealed) = (link.clone(), sealed.clone());
        tokio::task::spawn_blocking(move || {
            let log = JetStreamLog::open(link, partition, &settings(), lease.term()).unwrap();
            for record in &sealed {
                log.append(record).unwrap();
            }
            log.sync().unwrap();
            log
        })
        .await
        .unwrap()
    };

    // The servers write their stores behind the acknowledgement: wait
    // until every server's disk holds the sealed records (so the scan
    // below looks at what was really stored), then stop them.
    let last = sealed.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while nats
        .servers()
        .iter()
        .any(|server| files_containing(&server.store_dir, last).is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the records never reached every store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease_key = format!("partition.{partition}");
    assert!(!files_containing(nats.dir(), lease_key.as_bytes()).is_empty());
    drop(log);
    for index in 0..nats.servers().len() {
        nats.kill(index);
    }

    let hex_phone = flowgate::crypto::to_hex(PHONE.as_bytes());
    for needle in [PHONE, NAME, "cobalt", "teapot", &hex_phone] {
        let found = files_containing(nats.dir(), needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} is in {found:?}");
    }
}
