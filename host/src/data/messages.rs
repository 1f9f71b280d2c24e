//! Messages: metadata always, a sealed preview of at most 500 characters,
//! and the full text only when the tenant switched message storage on.
//!
//! Records are sealed with the contact's key (erased with the contact).
//! A reply's status webhooks name it by the callback data it was sent with
//! (its sequence), so no index of WhatsApp ids is kept.

use serde::{Deserialize, Serialize};

use super::expiry::{self, Class};
use super::{DataError, Vault};
use crate::channel::whatsapp::payload::{DeliveryState, MessageKind};
use crate::crypto::{SecretKey, TenantKeys};
use crate::ids::{ContactId, TenantId};
use crate::store::{Batch, Kind};

/// Longest preview kept, in characters.
pub const PREVIEW_CHARS: usize = 500;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A message record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageRecord {
    pub seq: u64,
    pub direction: Direction,
    #[schema(value_type = String)]
    pub kind: MessageKind,
    /// When it was received or queued (seconds since the Unix epoch).
    pub at: u64,
    /// Delivery state of an outbound message.
    #[schema(value_type = Option<String>)]
    pub status: Option<DeliveryState>,
    pub status_at: Option<u64>,
    /// The first 500 characters of the text, if any.
    pub preview: Option<String>,
    /// The full text, only when the tenant stores message content.
    pub content: Option<String>,
    /// What produced an outbound message: an installation id or `system`.
    pub origin: Option<String>,
}

/// The preview of a text: at most [`PREVIEW_CHARS`] characters.
pub fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// Record key: `m` ‖ contact ‖ seq.
pub fn message_key(contact: &ContactId, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(25);
    key.push(b'm');
    key.extend_from_slice(contact.as_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Whose messages: the tenant, its keys, the contact and the contact's key.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    pub tenant: &'a TenantId,
    pub keys: &'a TenantKeys,
    pub contact: &'a ContactId,
    pub contact_key: &'a SecretKey,
}

/// Stage a new message record, with the retention index entries that
/// expire its preview and, later, the record.
pub fn stage(vault: &Vault, batch: &mut Batch, owner: Owner<'_>, record: &MessageRecord) {
    restage(vault, batch, owner, record);
    for (class, at, key) in index_entries(owner.contact, record) {
        expiry::stage_index(batch, owner.tenant, class, at, &key);
    }
}

/// Stage a changed message record (a delivery status): its retention
/// index entries, which depend only on when it was written, stay.
pub fn restage(vault: &Vault, batch: &mut Batch, owner: Owner<'_>, record: &MessageRecord) {
    vault.stage(
        batch,
        owner.contact_key,
        owner.tenant,
        Kind::Messages,
        &message_key(owner.contact, record.seq),
        record,
    );
}

/// The retention index entries of a record: (class, time, target key).
/// An erasure removes them with the record.
pub fn index_entries(contact: &ContactId, record: &MessageRecord) -> Vec<(Class, u64, Vec<u8>)> {
    let key = message_key(contact, record.seq);
    let mut entries = Vec::with_capacity(2);
    if record.preview.is_some() || record.content.is_some() {
        entries.push((Class::Preview, record.at, key.clone()));
    }
    entries.push((Class::Metadata, record.at, key));
    entries
}

/// Load one message record.
pub fn load(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
    contact_key: &SecretKey,
    seq: u64,
) -> Result<Option<MessageRecord>, DataError> {
    vault.read(
        contact_key,
        tenant,
        Kind::Messages,
        &message_key(contact, seq),
    )
}

/// Every message record of a contact, oldest first.
pub fn for_contact(
    vault: &Vault,
    tenant: &TenantId,
    contact: &ContactId,
    contact_key: &SecretKey,
) -> Result<Vec<MessageRecord>, DataError> {
    let prefix = [b"m".as_slice(), contact.as_bytes()].concat();
    let mut records = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(tenant, Kind::Messages, &prefix, after.as_deref(), 512)?;
        if page.is_empty() {
            return Ok(records);
        }
        for (key, sealed) in &page {
            records.push(vault.open(contact_key, tenant, Kind::Messages, key, sealed)?);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_at_500_characters_not_bytes() {
        let long = "é".repeat(600);
        let p = preview(&long);
        assert_eq!(p.chars().count(), 500);
        assert_eq!(preview("short"), "short");
    }
}
