//! Retention periods per data class.
//!
//! The service's maximums are the product's commitments: message previews
//! 90 days, message metadata 1 year, collected reviews 90 days, consent
//! records 7 years. A tenant may shorten a period, never lengthen it.

use serde::{Deserialize, Serialize};

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
