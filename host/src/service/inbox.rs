//! The durable inbox: webhook deliveries acknowledged but not yet processed.
//!
//! A verified delivery is split into its items (each message, each status).
//! Each item is deduplicated on its WhatsApp id (a keyed hash, per tenant),
//! its contact found or created ([`Contacts::admit`]), and written to the
//! inbox sealed with *that contact's* key — all in one guarded, durable
//! commit before the webhook answers 200. A worker later removes the item
//! in the same commit as the item's effects, on condition that it is still
//! there, so an item is processed exactly once even across crashes.
//!
//! Sealing with the contact's key is what makes an erasure reach items not
//! yet processed: once the key is shredded, an item queued before the
//! erasure (or restored from a backup taken before it) cannot be opened and
//! is dropped — it can never bring the contact back.
//!
//! Inbox keys live under the system tenant so recovery can scan them in one
//! pass: `shard ‖ sequence ‖ tenant ‖ contact`. The shard is a hash of the
//! tenant and the contact, so one contact's items always go to the same
//! worker, in order.

use serde::{Deserialize, Serialize};

use crate::channel::whatsapp::payload::{Delivery, DeliveryItem};
use crate::crypto::{SecretKey, TenantKeys};
use crate::data::contacts::{Admitted, Contacts};
use crate::data::{DataError, Vault, record_context};
use crate::ids::{ChannelId, ContactId, TenantId};
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
    /// The item as stored: the worker's commit removes it only if it is
    /// still exactly this (an erasure may have removed it meanwhile).
    pub sealed: Vec<u8>,
    pub tenant: TenantId,
    /// The contact it is about, with the key it is sealed with.
    pub contact: Admitted,
    pub shard: u8,
    pub item: InboxItem,
}

/// The shard of a contact: one contact's items share a shard.
pub fn shard_of(tenant: &TenantId, contact: &ContactId) -> u8 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(tenant.as_bytes());
    hasher.update(contact.as_bytes());
    hasher.finalize().as_bytes()[0]
}

fn inbox_key(shard: u8, seq: u64, tenant: &TenantId, contact: &ContactId) -> Vec<u8> {
    let mut key = Vec::with_capacity(41);
    key.push(shard);
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(tenant.as_bytes());
    key.extend_from_slice(contact.as_bytes());
    key
}

/// The tenant and contact an inbox key names.
pub fn parse_key(key: &[u8]) -> Option<(TenantId, ContactId)> {
    Some((
        TenantId::from_slice(key.get(9..25)?)?,
        ContactId::from_slice(key.get(25..41)?)?,
    ))
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

/// What a delivery's items become: the guarded writes that put them in the
/// inbox and, in the same order, the jobs to hand to workers for the
/// writes that apply; contacts created for them (to forget if the commit
/// is refused); and how many statuses named no known contact (dropped).
#[derive(Default)]
pub struct Prepared {
    pub guarded: Vec<Guarded>,
    pub jobs: Vec<InboxJob>,
    pub created: Vec<ContactId>,
    pub unknown: usize,
}

/// Prepare a delivery's items for the inbox, adding to `prepared`.
pub fn prepare(
    vault: &Vault,
    tenant: &TenantId,
    channel: &ChannelId,
    delivery: Delivery,
    now: u64,
    prepared: &mut Prepared,
) -> Result<(), DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let contacts = Contacts::of(vault, *tenant)?;
    for item in delivery.items {
        let mut batch = Batch::new();
        let (who, create) = match &item {
            DeliveryItem::Message(m) => (&m.from, true),
            DeliveryItem::Status(s) => (&s.recipient, false),
        };
        let Some(contact) = contacts.admit(
            &mut batch,
            who.wa_id.as_deref(),
            who.user_id.as_deref(),
            create,
        )?
        else {
            // A status about nobody this tenant knows (erased since, or a
            // message this service did not send): nothing to keep.
            prepared.unknown += 1;
            continue;
        };
        if contact.created {
            prepared.created.push(contact.id);
        }
        let shard = shard_of(tenant, &contact.id);
        let key = inbox_key(shard, vault.store.next_id()?, tenant, &contact.id);
        let dedup = dedup_key(&keys, &item);
        let inbox_item = InboxItem {
            channel: *channel,
            received_at: now,
            item,
        };
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
        let sealed = seal(&contact.key, tenant, &key, &inbox_item);
        batch.put(TenantId::SYSTEM, Kind::Inbox, key.clone(), sealed.clone());
        prepared.guarded.push(Guarded {
            tenant: *tenant,
            kind: Kind::Dedup,
            key: dedup,
            batch,
        });
        prepared.jobs.push(InboxJob {
            key,
            sealed,
            tenant: *tenant,
            contact,
            shard,
            item: inbox_item,
        });
    }
    Ok(())
}

fn seal(contact_key: &SecretKey, tenant: &TenantId, key: &[u8], item: &InboxItem) -> Vec<u8> {
    let plain = serde_json::to_vec(item).expect("inbox items serialize");
    contact_key.seal(&record_context(tenant, Kind::Inbox, key), &plain)
}

/// Open an inbox entry found by a recovery scan; `None` when its tenant or
/// contact key is gone (the contact was erased, the tenant deleted): the
/// item is to be dropped.
pub fn open(vault: &Vault, key: &[u8], sealed: &[u8]) -> Result<Option<InboxJob>, DataError> {
    let (tenant, contact) = parse_key(key).ok_or(DataError::Decode {
        kind: "inbox",
        reason: "malformed key".into(),
    })?;
    if !vault.keys.has_tenant(&tenant)? {
        return Ok(None);
    }
    let Some(contact_key) = vault.keys.contact(&tenant, &contact)? else {
        return Ok(None);
    };
    let plain = contact_key
        .open(&record_context(&tenant, Kind::Inbox, key), sealed)
        .map_err(|_| DataError::Sealed { kind: "inbox" })?;
    let item: InboxItem = serde_json::from_slice(&plain).map_err(|e| DataError::Decode {
        kind: "inbox",
        reason: e.to_string(),
    })?;
    Ok(Some(InboxJob {
        key: key.to_vec(),
        sealed: sealed.to_vec(),
        tenant,
        contact: Admitted {
            id: contact,
            key: contact_key,
            created: false,
        },
        shard: key[0],
        item,
    }))
}

/// The inbox keys of one contact's items not yet processed (an erasure
/// removes them with the contact).
pub fn of_contact(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
) -> Result<Vec<Vec<u8>>, DataError> {
    Ok(pending(vault)?
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| parse_key(key) == Some((*tenant, *contact)))
        .collect())
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
