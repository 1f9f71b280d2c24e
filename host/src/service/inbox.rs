//! The durable inbox: webhook deliveries acknowledged but not yet processed.
//!
//! A verified delivery is split into its items (each message, each status).
//! Each item is deduplicated on its WhatsApp id (a keyed hash, per tenant)
//! and written to the inbox, sealed with the tenant's key — all in one
//! guarded, durable commit before the webhook answers 200. A worker later
//! removes the item in the same commit as the item's effects, so an item is
//! processed exactly once even across crashes.
//!
//! Inbox keys live under the system tenant so recovery can scan them in one
//! pass: `shard ‖ sequence ‖ tenant`. The shard is a hash of the tenant and
//! the contact, so one contact's items always go to the same worker, in
//! order.

use serde::{Deserialize, Serialize};

use crate::channel::whatsapp::payload::{Delivery, DeliveryItem};
use crate::crypto::TenantKeys;
use crate::data::{DataError, Vault, record_context};
use crate::ids::{ChannelId, TenantId};
use crate::service::committer::Guarded;
use crate::store::{Batch, Kind};

/// One item waiting in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    pub channel: ChannelId,
    pub received_at: u64,
    pub item: DeliveryItem,
}

/// An item handed to a worker.
#[derive(Debug, Clone)]
pub struct InboxJob {
    /// Its key in the system inbox.
    pub key: Vec<u8>,
    pub tenant: TenantId,
    pub shard: u8,
    pub item: InboxItem,
}

/// The shard of an item: one contact's items share a shard.
pub fn shard_of(tenant: &TenantId, item: &DeliveryItem) -> u8 {
    let who = match item {
        DeliveryItem::Message(m) => m.from.wa_id.as_deref().or(m.from.user_id.as_deref()),
        DeliveryItem::Status(s) => s
            .recipient
            .wa_id
            .as_deref()
            .or(s.recipient.user_id.as_deref()),
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(tenant.as_bytes());
    hasher.update(who.unwrap_or_default().as_bytes());
    hasher.finalize().as_bytes()[0]
}

fn inbox_key(shard: u8, seq: u64, tenant: &TenantId) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.push(shard);
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key
}

/// The deduplication key of an item: its WhatsApp id, and for statuses the
/// state too (one outbound message gets sent, delivered and read).
pub fn dedup_key(keys: &TenantKeys, item: &DeliveryItem) -> Vec<u8> {
    let identity = match item {
        DeliveryItem::Message(m) => format!("message:{}", m.wamid),
        DeliveryItem::Status(s) => format!("status:{}:{:?}", s.wamid, s.status),
    };
    keys.lookup_hash("delivery", &identity).to_vec()
}

/// Prepare the guarded writes that put a delivery's items in the inbox.
/// Returns the writes and, in the same order, the jobs to hand to workers
/// for the writes that apply.
pub fn prepare(
    vault: &Vault,
    tenant: &TenantId,
    channel: &ChannelId,
    delivery: Delivery,
    now: u64,
) -> Result<(Vec<Guarded>, Vec<InboxJob>), DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let mut guarded = Vec::with_capacity(delivery.items.len());
    let mut jobs = Vec::with_capacity(delivery.items.len());
    for item in delivery.items {
        let shard = shard_of(tenant, &item);
        let key = inbox_key(shard, vault.store.next_id()?, tenant);
        let dedup = dedup_key(&keys, &item);
        let inbox_item = InboxItem {
            channel: *channel,
            received_at: now,
            item,
        };
        let mut batch = Batch::new();
        batch.put(
            *tenant,
            Kind::Dedup,
            dedup.clone(),
            now.to_be_bytes().to_vec(),
        );
        crate::data::expiry::stage_index(
            &mut batch,
            tenant,
            crate::data::expiry::Class::Dedup,
            now,
            &dedup,
        );
        batch.put(
            TenantId::SYSTEM,
            Kind::Inbox,
            key.clone(),
            seal(&keys, tenant, &key, &inbox_item),
        );
        guarded.push(Guarded {
            tenant: *tenant,
            kind: Kind::Dedup,
            key: dedup,
            batch,
        });
        jobs.push(InboxJob {
            key,
            tenant: *tenant,
            shard,
            item: inbox_item,
        });
    }
    Ok((guarded, jobs))
}

fn seal(keys: &TenantKeys, tenant: &TenantId, key: &[u8], item: &InboxItem) -> Vec<u8> {
    let plain = serde_json::to_vec(item).expect("inbox items serialize");
    keys.records
        .seal(&record_context(tenant, Kind::Inbox, key), &plain)
}

/// Open an inbox entry found by a recovery scan.
pub fn open(vault: &Vault, key: &[u8], sealed: &[u8]) -> Result<InboxJob, DataError> {
    let tenant = key
        .get(9..25)
        .and_then(TenantId::from_slice)
        .ok_or(DataError::Decode {
            kind: "inbox",
            reason: "malformed key".into(),
        })?;
    let keys = vault.keys.tenant(&tenant)?;
    let plain = keys
        .records
        .open(&record_context(&tenant, Kind::Inbox, key), sealed)
        .map_err(|_| DataError::Sealed { kind: "inbox" })?;
    let item: InboxItem = serde_json::from_slice(&plain).map_err(|e| DataError::Decode {
        kind: "inbox",
        reason: e.to_string(),
    })?;
    Ok(InboxJob {
        key: key.to_vec(),
        tenant,
        shard: key[0],
        item,
    })
}

/// Every inbox entry, in shard and sequence order (recovery after a restart).
pub fn pending(vault: &Vault) -> Result<crate::store::Entries, DataError> {
    let mut entries = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(&TenantId::SYSTEM, Kind::Inbox, b"", after.as_deref(), 1024)?;
        if page.is_empty() {
            return Ok(entries);
        }
        after = page.last().map(|(k, _)| k.clone());
        entries.extend(page);
    }
}
