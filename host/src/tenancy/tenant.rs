//! A tenant: one business using the service.

use serde::{Deserialize, Serialize};

use crate::data::expiry::RetentionPolicy;
use crate::data::{DataError, Vault};
use crate::ids::TenantId;
use crate::store::{Batch, Kind};

const PROFILE_KEY: &[u8] = b"profile";

/// A tenant's profile and settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    #[schema(value_type = String, example = "tnt_0f3a9c1b2d4e5f60718293a4b5c6d7e8")]
    pub id: TenantId,
    /// The business's name, for the operator.
    pub name: String,
    /// IANA time zone for business hours (`Europe/Berlin`).
    pub timezone: String,
    /// Keep the full text of messages (off by default: only metadata and a
    /// sealed preview of at most 500 characters are kept).
    pub store_message_content: bool,
    /// Retention periods; a tenant may shorten them, never lengthen them
    /// past the service's maximums.
    #[serde(default)]
    pub retention: RetentionPolicy,
    pub created_at: u64,
    /// When offboarding was requested: the tenant's data is deleted at this
    /// time (at most 30 days later) unless the operator deletes it sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_due: Option<u64>,
}

/// Why a tenant setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("unknown time zone `{0}` (use an IANA name such as `Europe/Berlin`)")]
    UnknownTimezone(String),
    #[error("the name must be 1 to 100 characters")]
    BadName,
}

/// The UTC offset of an IANA zone at `at`, in minutes.
pub fn utc_offset_minutes(timezone: &str, at: u64) -> Result<i32, TenantError> {
    let zone = jiff::tz::TimeZone::get(timezone)
        .map_err(|_| TenantError::UnknownTimezone(timezone.to_owned()))?;
    let timestamp = jiff::Timestamp::from_second(at as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Ok(zone.to_offset(timestamp).seconds() / 60)
}

impl Tenant {
    /// A new tenant profile, validated.
    pub fn new(id: TenantId, name: &str, timezone: &str, now: u64) -> Result<Tenant, TenantError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(TenantError::BadName);
        }
        utc_offset_minutes(timezone, now)?;
        Ok(Tenant {
            id,
            name: name.to_owned(),
            timezone: timezone.to_owned(),
            store_message_content: false,
            retention: RetentionPolicy::default(),
            created_at: now,
            deletion_due: None,
        })
    }

    /// Stage the profile and the system list entry.
    pub fn stage(&self, vault: &Vault, batch: &mut Batch) -> Result<(), DataError> {
        let keys = vault.keys.tenant(&self.id)?;
        vault.stage(
            batch,
            &keys.records,
            &self.id,
            Kind::Tenants,
            PROFILE_KEY,
            self,
        );
        batch.put(
            TenantId::SYSTEM,
            Kind::Tenants,
            self.id.as_bytes().to_vec(),
            self.created_at.to_be_bytes().to_vec(),
        );
        Ok(())
    }

    /// Load a tenant's profile; `None` for unknown or deleted tenants.
    pub fn load(vault: &Vault, id: &TenantId) -> Result<Option<Tenant>, DataError> {
        if !vault.keys.has_tenant(id)? {
            return Ok(None);
        }
        let keys = vault.keys.tenant(id)?;
        vault.read(&keys.records, id, Kind::Tenants, PROFILE_KEY)
    }

    /// Every tenant id, in id order.
    pub fn list_ids(vault: &Vault) -> Result<Vec<TenantId>, DataError> {
        let mut ids = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page =
                vault
                    .store
                    .scan(&TenantId::SYSTEM, Kind::Tenants, b"", after.as_deref(), 512)?;
            if page.is_empty() {
                return Ok(ids);
            }
            ids.extend(page.iter().filter_map(|(k, _)| TenantId::from_slice(k)));
            after = page.last().map(|(k, _)| k.clone());
        }
    }

    /// The tenant's UTC offset at `at`, in minutes.
    pub fn utc_offset_minutes(&self, at: u64) -> i32 {
        utc_offset_minutes(&self.timezone, at).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_daylight_saving() {
        // 2025-01-15 and 2025-07-15, noon UTC.
        assert_eq!(
            utc_offset_minutes("Europe/Berlin", 1_736_942_400).unwrap(),
            60
        );
        assert_eq!(
            utc_offset_minutes("Europe/Berlin", 1_752_580_800).unwrap(),
            120
        );
        assert_eq!(
            utc_offset_minutes("America/Sao_Paulo", 1_752_580_800).unwrap(),
            -180
        );
        assert!(utc_offset_minutes("Mars/Olympus", 0).is_err());
    }

    #[test]
    fn names_and_zones_are_validated() {
        let id = TenantId::generate();
        assert!(Tenant::new(id, "Shop", "UTC", 0).is_ok());
        assert_eq!(Tenant::new(id, "  ", "UTC", 0), Err(TenantError::BadName));
        assert!(matches!(
            Tenant::new(id, "Shop", "Nowhere/City", 0),
            Err(TenantError::UnknownTimezone(_))
        ));
    }
}
