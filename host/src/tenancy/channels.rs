//! WhatsApp channels: a tenant's business phone numbers and their secrets.
//!
//! The webhook URL names the channel (`/webhooks/whatsapp/{channel_id}`),
//! so the app secret that checks a delivery's signature is chosen from the
//! path — never from the unverified body. The app secret, verify token and
//! access token are sealed with the tenant's key.

use serde::{Deserialize, Serialize};

use crate::data::{DataError, Vault};
use crate::ids::{ChannelId, TenantId};
use crate::store::{Batch, Kind};

/// A channel with its secrets, as held in memory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    pub tenant: TenantId,
    /// WhatsApp's id of the business phone number (`metadata.phone_number_id`).
    pub phone_number_id: String,
    /// Meta app secret: the key of `X-Hub-Signature-256`.
    pub app_secret: String,
    /// The token Meta echoes in the webhook verification handshake.
    pub verify_token: String,
    /// Bearer token for the Cloud API.
    pub access_token: String,
    pub created_at: u64,
    /// When Meta's webhook verification handshake last succeeded (absent
    /// for channels stored before this was recorded).
    #[serde(default)]
    pub verified_at: Option<u64>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// What the API shows of a channel: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelSummary {
    #[schema(value_type = String)]
    pub id: ChannelId,
    #[schema(value_type = String)]
    pub tenant: TenantId,
    pub phone_number_id: String,
    /// The webhook path to configure in Meta's app dashboard.
    pub webhook_path: String,
    pub created_at: u64,
    /// When Meta's webhook verification handshake last succeeded; `null`
    /// until Meta has verified the webhook.
    pub verified_at: Option<u64>,
}

impl Channel {
    /// The path Meta must call for this channel.
    pub fn webhook_path(&self) -> String {
        format!("/webhooks/whatsapp/{}", self.id)
    }

    /// The channel without its secrets.
    pub fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            id: self.id,
            tenant: self.tenant,
            phone_number_id: self.phone_number_id.clone(),
            webhook_path: self.webhook_path(),
            created_at: self.created_at,
            verified_at: self.verified_at,
        }
    }

    fn route_key(id: &ChannelId) -> Vec<u8> {
        [b"c".as_slice(), id.as_bytes()].concat()
    }

    fn phone_key(phone_number_id: &str) -> Vec<u8> {
        [b"p".as_slice(), phone_number_id.as_bytes()].concat()
    }

    /// Stage the channel and its routing entries.
    pub fn stage(&self, vault: &Vault, batch: &mut Batch) -> Result<(), DataError> {
        let keys = vault.keys.tenant(&self.tenant)?;
        vault.stage(
            batch,
            &keys.records,
            &self.tenant,
            Kind::Channels,
            self.id.as_bytes(),
            self,
        );
        batch.put(
            TenantId::SYSTEM,
            Kind::Channels,
            Channel::route_key(&self.id),
            self.tenant.as_bytes().to_vec(),
        );
        batch.put(
            TenantId::SYSTEM,
            Kind::Channels,
            Channel::phone_key(&self.phone_number_id),
            [self.tenant.as_bytes().as_slice(), self.id.as_bytes()].concat(),
        );
        Ok(())
    }

    /// Stage the channel's removal.
    pub fn stage_removal(&self, batch: &mut Batch) {
        batch.delete(self.tenant, Kind::Channels, self.id.as_bytes().to_vec());
        batch.delete(
            TenantId::SYSTEM,
            Kind::Channels,
            Channel::route_key(&self.id),
        );
        batch.delete(
            TenantId::SYSTEM,
            Kind::Channels,
            Channel::phone_key(&self.phone_number_id),
        );
    }

    /// The tenant whose channel a webhook path names (a routing entry: no
    /// record is opened).
    pub fn tenant_of(vault: &Vault, id: &ChannelId) -> Result<Option<TenantId>, DataError> {
        Ok(vault
            .store
            .get(&TenantId::SYSTEM, Kind::Channels, &Channel::route_key(id))?
            .and_then(|t| TenantId::from_slice(&t)))
    }

    /// The channel a webhook path names.
    pub fn load(vault: &Vault, id: &ChannelId) -> Result<Option<Channel>, DataError> {
        match Channel::tenant_of(vault, id)? {
            Some(tenant) => Channel::load_for(vault, &tenant, id),
            None => Ok(None),
        }
    }

    /// A channel of a known tenant.
    pub fn load_for(
        vault: &Vault,
        tenant: &TenantId,
        id: &ChannelId,
    ) -> Result<Option<Channel>, DataError> {
        if !vault.keys.has_tenant(tenant)? {
            return Ok(None);
        }
        let keys = vault.keys.tenant(tenant)?;
        vault.read(&keys.records, tenant, Kind::Channels, id.as_bytes())
    }

    /// Which tenant already uses a phone number id.
    pub fn owner_of_phone(
        vault: &Vault,
        phone_number_id: &str,
    ) -> Result<Option<TenantId>, DataError> {
        Ok(vault
            .store
            .get(
                &TenantId::SYSTEM,
                Kind::Channels,
                &Channel::phone_key(phone_number_id),
            )?
            .and_then(|v| TenantId::from_slice(&v[..16.min(v.len())])))
    }

    /// A tenant's channels.
    pub fn list(vault: &Vault, tenant: &TenantId) -> Result<Vec<Channel>, DataError> {
        super::read_all(vault, tenant, Kind::Channels, b"")
    }
}
