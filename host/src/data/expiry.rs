//! How long each class of tenant data is kept, and the expiry index that
//! says when each record was written.
//!
//! The service's maximums are the product's commitments: message previews
//! 90 days, message metadata 1 year, collected reviews 90 days, consent
//! records 7 years. A tenant may shorten a period, never lengthen it.
//!
//! Every record that expires is staged with an index entry of its
//! [`Class`] in the same batch (by the record kinds in this module's
//! siblings, and by the inbox for deduplication records). The retention
//! sweep (`compliance::retention`) reads the index, not the records.

use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::store::{Batch, Kind};

/// The longest each class may be kept, in days.
pub const MAX_PREVIEW_DAYS: u32 = 90;
pub const MAX_METADATA_DAYS: u32 = 365;
pub const MAX_REVIEW_DAYS: u32 = 90;
pub const MAX_CONSENT_DAYS: u32 = 7 * 365 + 2;

/// A tenant's retention periods, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Message previews and stored message content (at most 90).
    pub message_previews_days: u32,
    /// Message metadata: time, kind, direction, delivery status (at most 365).
    pub message_metadata_days: u32,
    /// Reviews collected by plugins (at most 90).
    pub reviews_days: u32,
    /// Consent records (at most 2557, seven years).
    pub consent_records_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            message_previews_days: MAX_PREVIEW_DAYS,
            message_metadata_days: MAX_METADATA_DAYS,
            reviews_days: MAX_REVIEW_DAYS,
            consent_records_days: MAX_CONSENT_DAYS,
        }
    }
}

/// A period longer than the service allows, or zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{class}: {days} days is outside 1..={max}; a tenant may shorten a retention period, not lengthen it"
)]
pub struct RetentionError {
    pub class: &'static str,
    pub days: u32,
    pub max: u32,
}

impl RetentionPolicy {
    /// Check every period against the service's maximums.
    pub fn validate(&self) -> Result<(), RetentionError> {
        let checks = [
            (
                "message_previews_days",
                self.message_previews_days,
                MAX_PREVIEW_DAYS,
            ),
            (
                "message_metadata_days",
                self.message_metadata_days,
                MAX_METADATA_DAYS,
            ),
            ("reviews_days", self.reviews_days, MAX_REVIEW_DAYS),
            (
                "consent_records_days",
                self.consent_records_days,
                MAX_CONSENT_DAYS,
            ),
        ];
        for (class, days, max) in checks {
            if days == 0 || days > max {
                return Err(RetentionError { class, days, max });
            }
        }
        Ok(())
    }
}

/// How long deduplication records are kept: WhatsApp retries a webhook for
/// up to 7 days; a month covers that with room.
pub const DEDUP_DAYS: u32 = 30;

/// A data class in the expiry index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Class {
    /// A message record's preview and stored content.
    Preview = 1,
    /// A message record itself (metadata).
    Metadata = 2,
    /// The WhatsApp-id index entry of an outbound message (with its record).
    WamidIndex = 3,
    /// Plugin state: what plugins collect about a contact (the "collected
    /// reviews" class), kept 90 days after its last write.
    PluginState = 4,
    /// A consent ledger record.
    Consent = 5,
    /// A webhook deduplication record.
    Dedup = 6,
}

impl Class {
    /// Every class, in index order.
    pub const ALL: [Class; 6] = [
        Class::Preview,
        Class::Metadata,
        Class::WamidIndex,
        Class::PluginState,
        Class::Consent,
        Class::Dedup,
    ];

    /// How long records of this class are kept under `policy`, in days.
    pub fn days(self, policy: &RetentionPolicy) -> u32 {
        match self {
            Class::Preview => policy.message_previews_days,
            Class::Metadata | Class::WamidIndex => policy.message_metadata_days,
            Class::PluginState => policy.reviews_days,
            Class::Consent => policy.consent_records_days,
            Class::Dedup => DEDUP_DAYS,
        }
    }

    /// The kind of record an entry of this class points at.
    pub fn kind(self) -> Kind {
        match self {
            Class::Preview | Class::Metadata | Class::WamidIndex => Kind::Messages,
            Class::PluginState => Kind::PluginState,
            Class::Consent => Kind::Consent,
            Class::Dedup => Kind::Dedup,
        }
    }
}

/// The index key: class ‖ time written ‖ target key. Ordered by class, then
/// time, so a sweep reads exactly the entries that are due — its cost
/// follows what expires, not the size of the store — and a shortened period
/// applies to data already written.
fn index_key(class: Class, written_at: u64, target: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + target.len());
    key.push(class as u8);
    key.extend_from_slice(&written_at.to_be_bytes());
    key.extend_from_slice(target);
    key
}

/// The contact an index entry's target belongs to, if any: a message
/// (`m` ‖ contact ‖ seq) or a plugin state (contact ‖ installation).
pub fn target_contact(index_key: &[u8]) -> Option<&[u8]> {
    let class = *index_key.first()?;
    let target = index_key.get(9..)?;
    match class {
        c if c == Class::Preview as u8 || c == Class::Metadata as u8 => (target.first()
            == Some(&b'm'))
        .then(|| target.get(1..17))
        .flatten(),
        c if c == Class::PluginState as u8 => target.get(..16),
        _ => None,
    }
}

/// Stage the removal of an expiry index entry (its record is erased, or
/// rewritten with a later entry).
pub fn stage_unindex(
    batch: &mut Batch,
    tenant: &TenantId,
    class: Class,
    written_at: u64,
    target: &[u8],
) {
    batch.delete(*tenant, Kind::Expiry, index_key(class, written_at, target));
}

/// Stage the index entry of a record written at `written_at`.
pub fn stage_index(
    batch: &mut Batch,
    tenant: &TenantId,
    class: Class,
    written_at: u64,
    target: &[u8],
) {
    batch.put(
        *tenant,
        Kind::Expiry,
        index_key(class, written_at, target),
        Vec::new(),
    );
}

/// The prefix under which a class's entries are listed, oldest first.
pub fn class_prefix(class: Class) -> [u8; 1] {
    [class as u8]
}

/// An index entry read back: when its record was written and the record's
/// key. `None` for a key too short to be an entry.
pub fn parse_entry(index_key: &[u8]) -> Option<(u64, &[u8])> {
    let written_at = u64::from_be_bytes(index_key.get(1..9)?.try_into().expect("8 bytes"));
    Some((written_at, &index_key[9..]))
}

/// Whether an index entry was written at or before `cutoff`.
pub fn due_by(index_key: &[u8], cutoff: u64) -> bool {
    parse_entry(index_key).is_some_and(|(written, _)| written <= cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_may_shrink_but_not_grow() {
        assert!(RetentionPolicy::default().validate().is_ok());
        let shorter = RetentionPolicy {
            message_previews_days: 7,
            ..RetentionPolicy::default()
        };
        assert!(shorter.validate().is_ok());
        let longer = RetentionPolicy {
            message_metadata_days: 400,
            ..RetentionPolicy::default()
        };
        assert_eq!(
            longer.validate().unwrap_err().class,
            "message_metadata_days"
        );
        let zero = RetentionPolicy {
            reviews_days: 0,
            ..RetentionPolicy::default()
        };
        assert!(zero.validate().is_err());
    }
}
