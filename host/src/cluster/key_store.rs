//! The key ring's store in cluster mode: wrapped tenant and contact keys in
//! a JetStream KV bucket (`flowgate-keys`), implementing [`KeyStore`], so
//! every node's [`KeyRing`](crate::crypto::KeyRing) reads and writes the
//! same keys, and a key shredded on one node is gone for all of them.
//!
//! The bucket is file storage replicated to `replicas` servers (3 by
//! default) and keeps one revision per key (history 1). Its keys are
//! `<space>.<hex>` ([`names::wrapped_key`]): KV keys take only
//! `[-/_=.a-zA-Z0-9]`, and the ring's keys are bytes (a tenant id, a
//! tenant id and a contact id: random ids, nothing personal).
//!
//! **Durability.** Every write returns once the servers acknowledged it,
//! which a quorum of the replicas (2 of 3) does after storing it; so
//! [`KeyStore::flush`] has nothing left to do. As for the log (see
//! [`super::jetstream_log`]), the servers' own fsync follows their
//! `sync_interval`: the acknowledgement promises replication.
//!
//! **Reads go to the stream's leader.** A KV bucket allows *direct gets*,
//! which any replica answers, a lagging follower too: the NATS documentation
//! promises KV readers monotonic reads, not that they read their own (or
//! another node's) last write. A shredded key read back from a follower
//! that has not applied the purge yet would not be shredded "at once", and
//! `create`'s loser could miss the winner's value. So every read here is
//! the JetStream API's message get, which the stream's leader answers from
//! what a quorum stored.
//!
//! **Deleting is purging.** Shredding a key must leave nothing to read: a
//! KV delete only writes a tombstone over the value, and a KV purge leaves
//! a marker. [`KeyStore::delete`] purges the key's subject from the
//! bucket's stream, so no message is left for it at all (the bytes on the
//! servers' disks go when their blocks are compacted, as for any removed
//! message; the wrapped key was sealed by the tenant's key anyway).
//!
//! **Create** publishes expecting no message on the key's subject (the KV
//! "revision 0" rule), with a message id of its own. When the answer is
//! lost or refused, the leader says who won: the value with our message id
//! is ours (`true`), another value is the winner's (`false`), and a
//! tombstone or marker someone left by hand is created over. async-nats'
//! own `Store::create` handles tombstones too, but decides through a
//! direct get (a follower may not have the winner's value yet) and cannot
//! tell its own landed create from another's.
//!
//! **Scans and counts list the bucket.** KV has no range reads: `scan` and
//! `count` list every key in the bucket (an ordered consumer over the last
//! message of each subject, headers only), keep the space's, filter, sort,
//! and read the values of one page. That is O(keys in the bucket) per
//! call. The ring calls `scan` when it shreds a tenant (pages of its
//! contacts, one listing per page) and rotates the master key (pages of
//! tenants); `count` is `KeyRing::contact_key_count`, for metrics. Each is
//! an operator's or an erasure's occasional work, not a message's.
//!
//! **Retries.** Each operation retries through a server's death or a
//! leader election (4 to 9 s) until its deadline, as the log does.
//!
//! Synchronous like the trait: each call runs on the cluster link's own
//! runtime (see [`super::link`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;

use super::link::{ClusterLink, retry_until};
use super::names;
use crate::crypto::key_store::{KeySpace, KeyStore, KeyStoreError, WrappedEntry};

/// How the key bucket is kept.
#[derive(Debug, Clone)]
pub struct KeyBucketSettings {
    /// Servers holding a copy (1, 3 or 5).
    pub replicas: usize,
    /// How long an operation keeps retrying through server deaths and
    /// leader elections before it fails.
    pub deadline: Duration,
}

impl Default for KeyBucketSettings {
    fn default() -> Self {
        KeyBucketSettings {
            replicas: 3,
            deadline: Duration::from_secs(30),
        }
    }
}

impl KeyBucketSettings {
    fn bucket_config(&self) -> kv::Config {
        kv::Config {
            bucket: names::KEY_BUCKET.to_owned(),
            description: "flowgate: the key ring's wrapped tenant and contact keys".to_owned(),
            // One value per key: a replaced or shredded wrapped key is not
            // kept as history.
            history: 1,
            storage: jetstream::stream::StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// Pause between retries while the cluster recovers.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The key ring's wrapped keys in the cluster's KV bucket.
pub struct KvKeyStore {
    link: Arc<ClusterLink>,
    bucket: kv::Store,
    deadline: Duration,
}

impl std::fmt::Debug for KvKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvKeyStore")
            .field("bucket", &self.bucket.name)
            .finish_non_exhaustive()
    }
}

/// The key bucket cannot hold an empty key (`<space>.` is not a KV key);
/// the ring never uses one.
#[derive(Debug, thiserror::Error)]
#[error("the key bucket holds no empty key")]
struct EmptyKey;

/// Ran out of time with no error to show (the deadline passed first).
#[derive(Debug, thiserror::Error)]
#[error("no answer within the deadline")]
struct TimedOut;

/// Whether a message of the bucket's stream holds a value, rather than a
/// KV delete or purge marker (which this store never writes, but a
/// hand-run `nats kv del` does).
fn is_value(message: &StreamMessage) -> bool {
    let operation = message.headers.get("KV-Operation").map(|v| v.as_str());
    matches!(operation, None | Some("PUT")) && message.headers.get("Nats-Marker-Reason").is_none()
}

fn message_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(NATS_MESSAGE_ID).map(|value| value.as_str())
}

/// The last message on `subject`, as the stream's leader has it.
async fn last_message(
    stream: &Stream,
    subject: &str,
) -> Result<Option<StreamMessage>, async_nats::jetstream::stream::LastRawMessageError> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// [`retry_until`], its error named by `what`.
async fn retrying<T, E, F, A>(what: &str, until: Instant, attempt: A) -> Result<T, KeyStoreError>
where
    E: std::error::Error + Send + Sync + 'static,
    F: Future<Output = Result<T, E>>,
    A: FnMut() -> F,
{
    retry_until(until, attempt)
        .await
        .map_err(|error| KeyStoreError::remote(what, error))
}

impl KvKeyStore {
    /// Open (creating, or updating to these settings) the key bucket.
    pub fn open(
        link: Arc<ClusterLink>,
        settings: &KeyBucketSettings,
    ) -> Result<KvKeyStore, KeyStoreError> {
        let config = settings.bucket_config();
        let until = Instant::now() + settings.deadline;
        let opener = link.clone();
        let bucket = link.run(async move {
            opener
                .open_bucket(config, until)
                .await
                .map_err(|error| KeyStoreError::remote("opening the key bucket", error))
        })?;
        Ok(KvKeyStore {
            link,
            bucket,
            deadline: settings.deadline,
        })
    }

    /// The name of the stream behind the bucket (for operators and tests).
    pub fn stream_name(&self) -> &str {
        &self.bucket.stream_name
    }

    /// The stream subject of `key` in `space`.
    fn subject(&self, space: KeySpace, key: &[u8]) -> Result<String, KeyStoreError> {
        if key.is_empty() {
            return Err(KeyStoreError::new(EmptyKey));
        }
        Ok(format!(
            "{}{}",
            self.bucket.prefix,
            names::wrapped_key(space, key)
        ))
    }

    fn until(&self) -> Instant {
        Instant::now() + self.deadline
    }

    /// Every key of `space` in the bucket, in key order.
    fn keys(&self, space: KeySpace, until: Instant) -> Result<Vec<Vec<u8>>, KeyStoreError> {
        let bucket = self.bucket.clone();
        let prefix = format!("{}.", names::key_space(space));
        self.link.run(async move {
            let mut keys = retrying("listing the key bucket", until, || async {
                let listing = async {
                    let mut names = bucket.keys().await?;
                    let mut keys = Vec::new();
                    while let Some(name) = names.next().await {
                        keys.push(name?);
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(keys)
                };
                // A listing cut off by a server's death may wait for
                // messages that will not come: start again.
                let remaining = until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining.max(RETRY_PAUSE), listing).await {
                    Ok(Ok(keys)) => Ok(keys),
                    Ok(Err(error)) => Err(ListError(error)),
                    Err(_) => Err(ListError(Box::new(TimedOut))),
                }
            })
            .await?
            .into_iter()
            // Keys of the other space, or not written by this store, are
            // not this space's.
            .filter_map(|name| flowgate_hex::decode_hex(name.strip_prefix(&prefix)?))
            .collect::<Vec<_>>();
            keys.sort();
            Ok(keys)
        })
    }
}

/// A listing's failure, whatever its step.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ListError(Box<dyn std::error::Error + Send + Sync>);

impl KeyStore for KvKeyStore {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let subject = self.subject(space, key)?;
        let stream = self.bucket.stream.clone();
        let until = self.until();
        let last = self.link.run(async move {
            retrying("reading a wrapped key", until, || {
                last_message(&stream, &subject)
            })
            .await
        })?;
        Ok(last
            .filter(is_value)
            .map(|message| message.payload.to_vec()))
    }

    fn put(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<(), KeyStoreError> {
        self.subject(space, key)?;
        let name = names::wrapped_key(space, key);
        let value = Bytes::copy_from_slice(value);
        let bucket = self.bucket.clone();
        let until = self.until();
        // Putting the same value twice is harmless: a put whose answer was
        // lost is simply put again.
        self.link.run(async move {
            retrying("writing a wrapped key", until, || {
                bucket.put(&name, value.clone())
            })
            .await
        })?;
        Ok(())
    }

    fn create(&self, space: KeySpace, key: &[u8], value: &[u8]) -> Result<bool, KeyStoreError> {
        let subject = self.subject(space, key)?;
        let value = Bytes::copy_from_slice(value);
        let id = flowgate_hex::to_hex(&crate::crypto::random_bytes::<16>());
        let jetstream = self.link.jetstream().clone();
        let stream = self.bucket.stream.clone();
        let until = self.until();
        self.link.run(async move {
            // What is expected on the subject: nothing (sequence 0), or the
            // marker a hand-run delete left, to create over.
            let mut expected = 0;
            let mut last_error: Option<KeyStoreError> = None;
            while Instant::now() < until {
                let publish = PublishMessage::build()
                    .payload(value.clone())
                    .message_id(&id)
                    .expected_last_subject_sequence(expected);
                let acked = match jetstream.send_publish(subject.clone(), publish).await {
                    Ok(ack) => ack.await,
                    Err(error) => Err(error),
                };
                match acked {
                    // Written now, or written by an earlier try whose
                    // answer was lost (the servers know the message id).
                    Ok(_) => return Ok(true),
                    Err(error) => {
                        last_error = Some(KeyStoreError::remote("creating a wrapped key", error))
                    }
                }
                // Refused or unanswered: the leader says what is there.
                match last_message(&stream, &subject).await {
                    Ok(Some(message)) if message_id(&message.headers) == Some(id.as_str()) => {
                        return Ok(true);
                    }
                    Ok(Some(message)) if is_value(&message) => return Ok(false),
                    Ok(Some(marker)) => expected = marker.sequence,
                    Ok(None) => expected = 0,
                    Err(error) => {
                        last_error = Some(KeyStoreError::remote("creating a wrapped key", error));
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            Err(last_error
                .unwrap_or_else(|| KeyStoreError::remote("creating a wrapped key", TimedOut)))
        })
    }

    fn delete(&self, space: KeySpace, key: &[u8]) -> Result<bool, KeyStoreError> {
        let subject = self.subject(space, key)?;
        let stream = self.bucket.stream.clone();
        let until = self.until();
        self.link.run(async move {
            // Whether a value is there, asked first: a purge whose answer
            // was lost and is sent again purges nothing the second time.
            let before = retrying("deleting a wrapped key", until, || {
                last_message(&stream, &subject)
            })
            .await?;
            let purged = retrying("deleting a wrapped key", until, || {
                stream.purge().filter(subject.clone()).into_future()
            })
            .await?;
            Ok(before.is_some_and(|message| is_value(&message)) || purged.purged > 0)
        })
    }

    fn scan(
        &self,
        space: KeySpace,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<WrappedEntry>, KeyStoreError> {
        let until = self.until();
        let mut entries = Vec::new();
        for key in self.keys(space, until)? {
            if entries.len() >= limit {
                break;
            }
            if !key.starts_with(prefix) || after.is_some_and(|after| key.as_slice() <= after) {
                continue;
            }
            // Deleted since the listing: not there any more.
            if let Some(value) = self.get(space, &key)? {
                entries.push((key, value));
            }
        }
        Ok(entries)
    }

    fn count(&self, space: KeySpace) -> usize {
        // The trait has no error to give (a metric asks): a failed count is
        // logged and reads as none, after one attempt's worth of waiting.
        match self.keys(space, Instant::now() + Duration::from_secs(5)) {
            Ok(keys) => keys.len(),
            Err(error) => {
                tracing::warn!(error = %error, "counting the key bucket's keys failed");
                0
            }
        }
    }

    fn flush(&self) -> Result<(), KeyStoreError> {
        // Every write above returned after a quorum of the bucket's
        // replicas acknowledged it: there is nothing left to flush.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_keeps_one_replicated_revision_per_key_on_file() {
        let config = KeyBucketSettings::default().bucket_config();
        assert_eq!(config.bucket, "flowgate-keys");
        assert_eq!(config.history, 1);
        assert_eq!(config.num_replicas, 3);
        assert_eq!(config.storage, jetstream::stream::StorageType::File);
    }

    #[test]
    fn keys_are_the_space_and_the_hex_of_the_bytes() {
        assert_eq!(
            names::wrapped_key(KeySpace::Contacts, &[0x00, 0xab, b'.']),
            "contacts.00ab2e"
        );
        assert_eq!(names::wrapped_key(KeySpace::Tenants, &[0xff]), "tenants.ff");
    }
}
