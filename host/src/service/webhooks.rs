//! Accepting a WhatsApp webhook delivery: check its signature with the
//! secret of the channel its path names (never one chosen by the body),
//! parse it, check every item is for one of the tenant's phone numbers,
//! then deduplicate and store its items durably in the inbox and hand them
//! to the workers. Processing happens after the answer; a crash after it
//! loses nothing.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::ServiceInner;
use super::change;
use super::channels::KnownChannel;
use super::committer::{Commit, CommitError};
use super::error::ServiceError;
use super::inbox;
use super::metrics::label;
use crate::channel::whatsapp::{payload, signature};
use crate::data::expiry::DEDUP_DAYS;

/// The answer to an accepted delivery.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Always `ok`.
    pub status: String,
    /// Items stored for processing.
    pub accepted: usize,
    /// Items already received before (not stored again).
    pub duplicates: usize,
    /// Items older than the deduplication window (30 days): dropped, as a
    /// replay of a captured delivery would be.
    pub stale: usize,
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("channel not found")]
    UnknownChannel,
    #[error(transparent)]
    BadSignature(#[from] signature::SignatureError),
    #[error(transparent)]
    Malformed(#[from] payload::PayloadError),
    #[error(
        "the delivery has an item for phone number id {0}, which is not a channel of this tenant"
    )]
    ForeignNumber(String),
    /// Storing failed: WhatsApp should deliver it again.
    #[error("the delivery could not be stored; retry")]
    NotStored(#[source] ServiceError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Accept the delivery `body` for the channel its path names (found by
/// [`super::channels::find`]), signed with `signature` (the `X-Hub-Signature-256`
/// header). `received` is when it arrived.
///
/// Not cancel safe: once its commit is under way, a delivery is handed to
/// a worker only if this runs to the end. A caller whose future may be
/// dropped (an HTTP handler, when the sender hangs up) runs it in a task of
/// its own.
pub async fn accept(
    service: &ServiceInner,
    known: &KnownChannel,
    signature: Option<&str>,
    body: &[u8],
    received: Instant,
) -> Result<Accepted, WebhookError> {
    let refuse = |reason: &str| {
        service
            .metrics
            .webhook_refused
            .get_or_create(&label("reason", reason))
            .inc();
    };
    // The tenant's context holds its channels, secrets opened: no record
    // is read and opened per delivery.
    let (id, tenant) = (&known.id, known.tenant);
    let context = service.contexts.get(&tenant).map_err(ServiceError::from)?;
    let channel = context.channel(id).ok_or(WebhookError::UnknownChannel)?;
    if let Err(error) = signature::verify(channel.app_secret.as_bytes(), body, signature) {
        refuse("signature");
        return Err(error.into());
    }
    let mut delivery = payload::parse(body).inspect_err(|_| refuse("malformed"))?;
    if let Some(foreign) = delivery.items.iter().find(|item| {
        !context
            .channels
            .iter()
            .any(|c| c.phone_number_id == item.phone_number_id())
    }) {
        refuse("foreign-number");
        return Err(WebhookError::ForeignNumber(
            foreign.phone_number_id().to_owned(),
        ));
    }
    let now = service.clock.now();
    // Items older than the deduplication window are dropped: their
    // deduplication records may have expired, so a replayed (captured and
    // correctly signed) old delivery would otherwise be processed again.
    // WhatsApp itself stops retrying after 7 days, well inside it.
    let oldest = now.saturating_sub(u64::from(DEDUP_DAYS) * 86_400);
    let before = delivery.items.len();
    delivery.items.retain(|item| item.timestamp() >= oldest);
    let stale = before - delivery.items.len();
    if stale > 0 {
        service
            .metrics
            .webhook_items
            .get_or_create(&vec![
                ("kind".into(), "any".into()),
                ("outcome".into(), "stale".into()),
            ])
            .inc_by(stale as u64);
    }
    // A delivery naming a new contact writes its index entries on
    // condition that they are still absent; when another delivery wrote
    // them first, the commit is refused and this one looks again.
    let mut attempt = 1;
    let (jobs, committed, unknown) = loop {
        let mut prepared = inbox::Prepared::default();
        for item in &delivery.items {
            // Items go to the channel that owns their phone number (one
            // Meta app may serve several numbers of the same tenant).
            let owner = context
                .channels
                .iter()
                .find(|c| c.phone_number_id == item.phone_number_id())
                .map(|c| c.id)
                .unwrap_or(channel.id);
            let one = payload::Delivery {
                items: vec![item.clone()],
            };
            inbox::prepare(&service.vault, &tenant, &owner, one, now, &mut prepared)
                .map_err(ServiceError::from)?;
        }
        let commit = Commit {
            guarded: std::mem::take(&mut prepared.guarded),
            ..Commit::default()
        };
        match service.committer.commit(commit).await {
            Ok(committed) => break (prepared.jobs, committed, prepared.unknown),
            Err(error) => {
                // Keys made for contacts that were not written are no use.
                for contact in &prepared.created {
                    let _ = service.vault.keys.shred_contact(&tenant, contact);
                }
                if matches!(error, CommitError::Conflict) && attempt < change::ATTEMPTS {
                    attempt += 1;
                    continue;
                }
                tracing::error!(%error, "storing a webhook delivery failed");
                return Err(WebhookError::NotStored(error.into()));
            }
        }
    };
    if unknown > 0 {
        service
            .metrics
            .webhook_items
            .get_or_create(&vec![
                ("kind".into(), "status".into()),
                ("outcome".into(), "unknown-contact".into()),
            ])
            .inc_by(unknown as u64);
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    for (job, applied) in jobs.into_iter().zip(committed.applied) {
        let kind = match job.item.item {
            payload::DeliveryItem::Message(_) => "message",
            payload::DeliveryItem::Status(_) => "status",
        };
        let outcome = if applied { "accepted" } else { "duplicate" };
        service
            .metrics
            .webhook_items
            .get_or_create(&vec![
                ("kind".into(), kind.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        if applied {
            accepted += 1;
            service.dispatch(job, received);
        } else {
            duplicates += 1;
            if job.contact.created {
                // Made for a delivery that was a duplicate after all.
                let _ = service
                    .vault
                    .keys
                    .shred_contact(&job.tenant, &job.contact.id);
            }
        }
    }
    service
        .metrics
        .webhook_ack_seconds
        .observe(received.elapsed().as_secs_f64());
    Ok(Accepted {
        status: "ok".into(),
        // A status about no known contact is taken and dropped: there is
        // nothing to record it against.
        accepted: accepted + unknown,
        duplicates,
        stale,
    })
}
