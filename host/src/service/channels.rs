//! A tenant's WhatsApp channels (business phone numbers with their Meta app
//! secrets) as the operator adds and removes them, and the verification
//! handshake Meta makes before it sends webhooks.

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::ServiceInner;
use super::caller::TenantCaller;
use super::change::Change;
use super::error::{ServiceError, ServiceResult};
use crate::audit::{Actor, AuditDraft};
use crate::ids::{ChannelId, TenantId};
use crate::store::{Batch, Kind};
use crate::tenancy::api_keys::Scope;
use crate::tenancy::channels::{Channel, ChannelSummary};
use crate::tenancy::tenant::Tenant;

/// A new WhatsApp channel of a tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// WhatsApp's phone number id.
    pub phone_number_id: String,
    /// The Meta app secret (signs webhooks).
    pub app_secret: String,
    /// The verify token for the webhook handshake.
    pub verify_token: String,
    /// A Cloud API access token for sending.
    pub access_token: String,
}

/// A channel id as given in a path: anything that does not parse names no
/// channel.
pub fn parse_id(raw: &str) -> ServiceResult<ChannelId> {
    raw.parse().map_err(|_| ServiceError::NotFound("channel"))
}

/// A channel a webhook path names, found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownChannel {
    pub id: ChannelId,
    pub tenant: TenantId,
}

/// The channel a webhook path names, by its routing entry: one read, and
/// nothing kept. `NotFound` for text that is not a channel id (in its one
/// spelling) or names no channel. The webhook finds the channel before it
/// takes from the channel's rate limit, so that only channels that exist
/// have a cell there.
pub fn find(service: &ServiceInner, raw: &str) -> ServiceResult<KnownChannel> {
    let id = parse_id(raw)?;
    match Channel::tenant_of(&service.vault, &id)? {
        Some(tenant) => Ok(KnownChannel { id, tenant }),
        None => Err(ServiceError::NotFound("channel")),
    }
}

fn require_tenant(service: &ServiceInner, tenant: &TenantId) -> ServiceResult<()> {
    match Tenant::load(&service.vault, tenant)? {
        Some(_) => Ok(()),
        None => Err(ServiceError::NotFound("tenant")),
    }
}

fn audit(service: &ServiceInner, tenant: TenantId, action: &str, id: &ChannelId) -> AuditDraft {
    AuditDraft::new(tenant, service.clock.now(), Actor::Operator, action)
        .details(serde_json::json!({"channel": id}))
}

/// Add a channel to a tenant.
pub async fn create(
    service: &ServiceInner,
    tenant: &TenantId,
    request: NewChannel,
) -> ServiceResult<ChannelSummary> {
    let _no_deletion = service.tenant_deletions.read().await;
    require_tenant(service, tenant)?;
    let phone_number_id = request.phone_number_id.trim();
    if phone_number_id.is_empty()
        || phone_number_id.len() > 64
        || !phone_number_id.chars().all(|c| c.is_ascii_digit())
    {
        return Err(ServiceError::Invalid(
            "phone_number_id must be WhatsApp's numeric id".into(),
        ));
    }
    for (name, value) in [
        ("app_secret", &request.app_secret),
        ("verify_token", &request.verify_token),
        ("access_token", &request.access_token),
    ] {
        if value.trim().len() < 8 || value.len() > 4096 {
            return Err(ServiceError::Invalid(format!(
                "{name} must be 8 to 4096 characters"
            )));
        }
    }
    if Channel::owner_of_phone(&service.vault, phone_number_id)?.is_some() {
        return Err(ServiceError::Conflict(
            "this phone number id already has a channel".into(),
        ));
    }
    let channel = Channel {
        id: ChannelId::generate(),
        tenant: *tenant,
        phone_number_id: phone_number_id.to_owned(),
        app_secret: request.app_secret,
        verify_token: request.verify_token,
        access_token: request.access_token,
        created_at: service.clock.now(),
        verified_at: None,
    };
    let mut batch = Batch::new();
    channel.stage(&service.vault, &mut batch)?;
    let audit = audit(service, *tenant, "channel.created", &channel.id);
    let change = Change::new(batch, vec![audit], channel.summary()).reconfiguring(*tenant);
    Ok(service.commit_change(change).await?.0)
}

/// A tenant's channels (without secrets).
pub async fn list(service: &ServiceInner, tenant: &TenantId) -> ServiceResult<Vec<ChannelSummary>> {
    let _no_deletion = service.tenant_deletions.read().await;
    require_tenant(service, tenant)?;
    Ok(Channel::list(&service.vault, tenant)?
        .iter()
        .map(Channel::summary)
        .collect())
}

/// Remove a channel.
pub async fn delete(
    service: &ServiceInner,
    tenant: &TenantId,
    id: &ChannelId,
) -> ServiceResult<()> {
    let _no_deletion = service.tenant_deletions.read().await;
    let channel =
        Channel::load_for(&service.vault, tenant, id)?.ok_or(ServiceError::NotFound("channel"))?;
    let mut batch = Batch::new();
    channel.stage_removal(&mut batch);
    let audit = audit(service, *tenant, "channel.deleted", id);
    let change = Change::new(batch, vec![audit], ()).reconfiguring(*tenant);
    service.commit_change(change).await?;
    Ok(())
}

/// The caller's own channels, without secrets: what the tenant configures
/// in Meta's app dashboard, and whether Meta has verified it.
pub fn of_tenant(
    service: &ServiceInner,
    caller: &TenantCaller,
) -> ServiceResult<Vec<ChannelSummary>> {
    caller.require(Scope::Read)?;
    Ok(Channel::list(&service.vault, &caller.tenant)?
        .iter()
        .map(Channel::summary)
        .collect())
}

/// Meta's verification handshake: the challenge to echo when the mode is
/// `subscribe` and the verify token is the channel's (compared in constant
/// time); `Forbidden` otherwise. A success is recorded on the channel and
/// audited, so the tenant can see that (and when) Meta verified it.
pub async fn verify_handshake(
    service: &ServiceInner,
    known: &KnownChannel,
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<String>,
) -> ServiceResult<String> {
    let id = &known.id;
    let channel = Channel::load_for(&service.vault, &known.tenant, id)?
        .ok_or(ServiceError::NotFound("channel"))?;
    let token_ok = verify_token
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(channel.verify_token.as_bytes())));
    let challenge = match (mode, token_ok, challenge) {
        (Some("subscribe"), true, Some(challenge)) if challenge.len() <= 256 => challenge,
        _ => return Err(ServiceError::Forbidden("verification failed".into())),
    };
    let tenant = channel.tenant;
    service
        .apply(|| {
            // Expect the record as read: a channel removed meanwhile must
            // not be written back by its verification.
            let stored = service
                .vault
                .store
                .get(&tenant, Kind::Channels, id.as_bytes())?;
            let mut channel = match Channel::load_for(&service.vault, &tenant, id)? {
                Some(channel) => channel,
                None => return Err(ServiceError::NotFound("channel")),
            };
            channel.verified_at = Some(service.clock.now());
            let mut batch = Batch::new();
            batch.expect(tenant, Kind::Channels, id.as_bytes().to_vec(), stored);
            channel.stage(&service.vault, &mut batch)?;
            let audit = AuditDraft::new(
                tenant,
                service.clock.now(),
                Actor::Webhook(id.to_string()),
                "channel.verified",
            )
            .details(serde_json::json!({"channel": id}));
            Ok(Change::new(batch, vec![audit], ()))
        })
        .await?;
    Ok(challenge)
}
