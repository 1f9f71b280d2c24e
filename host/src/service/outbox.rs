//! The durable outbox and its sender.
//!
//! A reply is queued in the same commit as the event that produced it, so a
//! reply is never lost and never queued twice. The sender sends queued
//! replies through the Cloud API, retrying with exponential backoff on
//! transient failures, and checks the contact again right before sending:
//! a contact who opted out, was restricted or erased since gets nothing.
//!
//! Entry keys live under the system tenant (`sequence ‖ tenant ‖ contact`);
//! the entry itself is sealed with the contact's key, so erasing the contact
//! also makes its queued replies unreadable.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::ServiceInner;
use super::committer::Commit;
use crate::audit::{Actor, AuditDraft, contact_pseudonym};
use crate::channel::whatsapp::client::Recipient;
use crate::channel::whatsapp::payload::{DeliveryState, MessageKind};
use crate::crypto::{SecretKey, TenantKeys};
use crate::data::contacts::Contacts;
use crate::data::messages::{self, Direction, MessageRecord};
use crate::data::{DataError, Vault, record_context};
use crate::ids::{ChannelId, ContactId, TenantId};
use crate::store::{Batch, Kind};

/// Attempts before a reply is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// Replies sent at once.
const CONCURRENCY: usize = 32;

/// A queued reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub channel: ChannelId,
    /// The message record this reply is.
    pub message_seq: u64,
    pub text: String,
    /// The installation that asked for it, or `system` (confirmations).
    pub origin: String,
    /// A confirmation of an opt-out: the one message an opted-out contact
    /// may receive.
    pub confirmation: bool,
    pub created_at: u64,
    pub attempts: u32,
    pub next_attempt_at: u64,
}

fn entry_key(seq: u64, tenant: &TenantId, contact: &ContactId) -> Vec<u8> {
    [
        &seq.to_be_bytes()[..],
        tenant.as_bytes(),
        contact.as_bytes(),
    ]
    .concat()
}

fn parse_key(key: &[u8]) -> Option<(TenantId, ContactId)> {
    Some((
        TenantId::from_slice(key.get(8..24)?)?,
        ContactId::from_slice(key.get(24..40)?)?,
    ))
}

fn seal(contact_key: &SecretKey, tenant: &TenantId, key: &[u8], entry: &OutboxEntry) -> Vec<u8> {
    let plain = serde_json::to_vec(entry).expect("outbox entries serialize");
    contact_key.seal(&record_context(tenant, Kind::Outbox, key), &plain)
}

/// Everything needed to queue a reply.
pub struct Reply<'a> {
    pub tenant: &'a TenantId,
    pub keys: &'a TenantKeys,
    pub channel: ChannelId,
    pub contact: &'a ContactId,
    pub contact_key: &'a SecretKey,
    pub text: String,
    pub origin: String,
    pub confirmation: bool,
    pub now: u64,
}

/// Stage a reply: its outbound message record and its outbox entry.
/// Returns the entry's key.
pub fn stage_reply(
    vault: &Vault,
    batch: &mut Batch,
    reply: Reply<'_>,
) -> Result<Vec<u8>, DataError> {
    let seq = vault.store.next_id()?;
    let record = MessageRecord {
        seq,
        direction: Direction::Outbound,
        kind: MessageKind::Text,
        at: reply.now,
        status: None,
        status_at: None,
        preview: Some(messages::preview(&reply.text)),
        content: None,
        origin: Some(reply.origin.clone()),
    };
    let owner = messages::Owner {
        tenant: reply.tenant,
        keys: reply.keys,
        contact: reply.contact,
        contact_key: reply.contact_key,
    };
    messages::stage(vault, batch, owner, &record, None);
    let entry = OutboxEntry {
        channel: reply.channel,
        message_seq: seq,
        text: reply.text,
        origin: reply.origin,
        confirmation: reply.confirmation,
        created_at: reply.now,
        attempts: 0,
        next_attempt_at: reply.now,
    };
    let key = entry_key(seq, reply.tenant, reply.contact);
    batch.put(
        TenantId::SYSTEM,
        Kind::Outbox,
        key.clone(),
        seal(reply.contact_key, reply.tenant, &key, &entry),
    );
    Ok(key)
}

/// Wakes the sender and tracks replies in flight and replies not yet
/// durable.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    notify: Arc<Notify>,
    in_flight: Arc<Mutex<HashSet<Vec<u8>>>>,
    /// Entries committed but not yet flushed. A reply is sent only once the
    /// event that queued it is durable: otherwise a crash could undo the
    /// event after its reply went out, and the retried event would send it
    /// again.
    not_durable: Arc<Mutex<HashSet<Vec<u8>>>>,
}

impl OutboxSignal {
    /// Entries about to be committed: hold them back until durable.
    pub fn hold(&self, keys: &[Vec<u8>]) {
        self.not_durable
            .lock()
            .expect("outbox lock")
            .extend(keys.iter().cloned());
    }

    /// The entries are durable: release them to the sender.
    pub fn release(&self, keys: &[Vec<u8>]) {
        let mut held = self.not_durable.lock().expect("outbox lock");
        for key in keys {
            held.remove(key);
        }
        drop(held);
        self.wake();
    }

    /// Tell the sender there is something new.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// How many replies are being sent right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().expect("outbox lock").len()
    }
}

/// Backoff before attempt `attempts + 1`: 2, 4, 8 … seconds, at most 5 min.
pub fn backoff_secs(attempts: u32) -> u64 {
    (1u64 << attempts.min(16)).clamp(2, 300)
}

/// The sender loop. Runs until `shutdown` fires, then lets sends in flight
/// finish.
pub async fn run_sender(service: Arc<ServiceInner>, shutdown: tokio_util::sync::CancellationToken) {
    let signal = service.outbox.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let mut next_due: Option<u64> = None;
        match due_entries(&service) {
            Ok(entries) => {
                for (key, sealed, due_at) in entries {
                    if due_at > service.clock.now() {
                        next_due = Some(next_due.map_or(due_at, |n| n.min(due_at)));
                        continue;
                    }
                    if tasks.len() >= CONCURRENCY {
                        break;
                    }
                    if !signal
                        .in_flight
                        .lock()
                        .expect("outbox lock")
                        .insert(key.clone())
                    {
                        continue;
                    }
                    let service = service.clone();
                    tasks.spawn(async move {
                        let result = send_one(&service, &key, &sealed).await;
                        if let Err(error) = result {
                            tracing::warn!(%error, "outbox entry not processed; retrying later");
                        }
                        service
                            .outbox
                            .in_flight
                            .lock()
                            .expect("outbox lock")
                            .remove(&key);
                    });
                }
            }
            Err(error) => tracing::error!(%error, "reading the outbox failed"),
        }
        let wait = next_due
            .map(|due| Duration::from_secs(due.saturating_sub(service.clock.now()).max(1)))
            .unwrap_or(Duration::from_secs(5))
            .min(Duration::from_secs(5));
        tokio::select! {
            _ = signal.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// An outbox entry as stored, with when it is due.
type Pending = (Vec<u8>, Vec<u8>, u64);

/// Outbox entries not in flight: (key, sealed, due time). The due time is
/// read from the entry, which needs the contact's key.
fn due_entries(service: &ServiceInner) -> Result<Vec<Pending>, DataError> {
    let vault = &service.vault;
    let in_flight = service
        .outbox
        .in_flight
        .lock()
        .expect("outbox lock")
        .clone();
    let mut found = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = vault
            .store
            .scan(&TenantId::SYSTEM, Kind::Outbox, b"", after.as_deref(), 512)?;
        if page.is_empty() {
            return Ok(found);
        }
        after = page.last().map(|(k, _)| k.clone());
        for (key, sealed) in page {
            if in_flight.contains(&key) {
                continue;
            }
            let due = match open_entry(vault, &key, &sealed) {
                Ok(Some((_, _, _, entry))) => entry.next_attempt_at,
                // Erased contact or unreadable entry: let `send_one` drop it.
                Ok(None) | Err(_) => 0,
            };
            found.push((key, sealed, due));
            if found.len() >= 4 * CONCURRENCY {
                return Ok(found);
            }
        }
    }
}

pub type OpenedEntry = (TenantId, ContactId, SecretKey, OutboxEntry);

/// Open an entry found by a scan; `None` when its tenant or contact key is
/// gone. Public for the fuzz targets (`fuzz/`).
pub fn open_entry(
    vault: &Vault,
    key: &[u8],
    sealed: &[u8],
) -> Result<Option<OpenedEntry>, DataError> {
    let Some((tenant, contact)) = parse_key(key) else {
        return Ok(None);
    };
    if !vault.keys.has_tenant(&tenant)? {
        return Ok(None);
    }
    let Some(contact_key) = vault.keys.contact(&tenant, &contact)? else {
        return Ok(None);
    };
    let plain = contact_key
        .open(&record_context(&tenant, Kind::Outbox, key), sealed)
        .map_err(|_| DataError::Sealed { kind: "outbox" })?;
    let entry: OutboxEntry = serde_json::from_slice(&plain).map_err(|e| DataError::Decode {
        kind: "outbox",
        reason: e.to_string(),
    })?;
    Ok(Some((tenant, contact, contact_key, entry)))
}

async fn send_one(service: &ServiceInner, key: &[u8], sealed: &[u8]) -> Result<(), String> {
    let vault = &service.vault;
    let now = service.clock.now();
    let mut batch = Batch::new();
    let Some((tenant, contact_id, contact_key, mut entry)) =
        open_entry(vault, key, sealed).map_err(|e| e.to_string())?
    else {
        // The contact was erased (or the tenant deleted): nothing to send.
        batch.delete(TenantId::SYSTEM, Kind::Outbox, key.to_vec());
        commit(service, batch, Vec::new()).await?;
        return Ok(());
    };
    let keys = vault.keys.tenant(&tenant).map_err(|e| e.to_string())?;
    let owner = messages::Owner {
        tenant: &tenant,
        keys: &keys,
        contact: &contact_id,
        contact_key: &contact_key,
    };
    let subject = contact_pseudonym(&keys, &contact_id);
    let audit = |action: &str, details: serde_json::Value| {
        AuditDraft::new(tenant, now, Actor::System, action)
            .subject(subject.clone())
            .details(details)
    };
    let contacts = Contacts::of(vault, tenant).map_err(|e| e.to_string())?;
    let contact = contacts
        .load(&contact_id)
        .map_err(|e| e.to_string())?
        .map(|l| l.contact);
    let refusal = match &contact {
        None => Some("contact-erased"),
        Some(c) if c.restricted => Some("restricted"),
        Some(c) if c.opted_out && !entry.confirmation => Some("opted-out"),
        Some(c) if !entry.confirmation && !c.service_window_open(now) => Some("window-closed"),
        _ => None,
    };
    let recipient = contact.as_ref().and_then(|c| match (&c.wa_id, &c.user_id) {
        (Some(wa_id), _) => Some(Recipient::WaId(wa_id.clone())),
        (None, Some(user_id)) => Some(Recipient::UserId(user_id.clone())),
        (None, None) => None,
    });
    let context = service.contexts.get(&tenant).map_err(|e| e.to_string())?;
    let channel = context.channel(&entry.channel).cloned();
    let (Some(recipient), Some(channel), None) = (recipient, channel, refusal) else {
        let reason = refusal.unwrap_or("no recipient or channel");
        batch.delete(TenantId::SYSTEM, Kind::Outbox, key.to_vec());
        mark_message(
            vault,
            &mut batch,
            owner,
            entry.message_seq,
            DeliveryState::Failed,
            now,
            None,
        );
        service
            .metrics
            .messages_sent
            .get_or_create(&vec![("outcome".into(), "dropped".into())])
            .inc();
        commit(
            service,
            batch,
            vec![audit(
                "message.dropped",
                serde_json::json!({"origin": entry.origin, "reason": reason}),
            )],
        )
        .await?;
        return Ok(());
    };
    let sent = service
        .cloud
        .send_text(
            &channel.phone_number_id,
            &channel.access_token,
            &recipient,
            &entry.text,
        )
        .await;
    match sent {
        Ok(wamid) => {
            batch.delete(TenantId::SYSTEM, Kind::Outbox, key.to_vec());
            mark_message(
                vault,
                &mut batch,
                owner,
                entry.message_seq,
                DeliveryState::Sent,
                now,
                Some(&wamid),
            );
            service
                .metrics
                .messages_sent
                .get_or_create(&vec![("outcome".into(), "sent".into())])
                .inc();
            commit(
                service,
                batch,
                vec![audit(
                    "message.sent",
                    serde_json::json!({
                        "origin": entry.origin,
                        "chars": entry.text.chars().count(),
                        "attempts": entry.attempts + 1,
                    }),
                )],
            )
            .await
        }
        Err(error) if error.retryable && entry.attempts + 1 < MAX_ATTEMPTS => {
            entry.attempts += 1;
            entry.next_attempt_at = now + backoff_secs(entry.attempts);
            batch.put(
                TenantId::SYSTEM,
                Kind::Outbox,
                key.to_vec(),
                seal(&contact_key, &tenant, key, &entry),
            );
            service
                .metrics
                .messages_sent
                .get_or_create(&vec![("outcome".into(), "retry".into())])
                .inc();
            commit(service, batch, Vec::new()).await
        }
        Err(error) => {
            batch.delete(TenantId::SYSTEM, Kind::Outbox, key.to_vec());
            mark_message(
                vault,
                &mut batch,
                owner,
                entry.message_seq,
                DeliveryState::Failed,
                now,
                None,
            );
            service
                .metrics
                .messages_sent
                .get_or_create(&vec![("outcome".into(), "failed".into())])
                .inc();
            commit(
                service,
                batch,
                vec![audit(
                    "message.failed",
                    serde_json::json!({
                        "origin": entry.origin,
                        "attempts": entry.attempts + 1,
                        "http_status": error.status,
                        "code": error.code,
                    }),
                )],
            )
            .await
        }
    }
}

fn mark_message(
    vault: &Vault,
    batch: &mut Batch,
    owner: messages::Owner<'_>,
    seq: u64,
    state: DeliveryState,
    now: u64,
    wamid: Option<&str>,
) {
    if let Ok(Some(mut record)) =
        messages::load(vault, owner.tenant, owner.contact, owner.contact_key, seq)
    {
        record.status = Some(state);
        record.status_at = Some(now);
        messages::stage(vault, batch, owner, &record, wamid);
    }
}

async fn commit(
    service: &ServiceInner,
    batch: Batch,
    audit: Vec<AuditDraft>,
) -> Result<(), String> {
    service
        .committer
        .commit(Commit::new(batch, audit))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_five_minutes() {
        assert_eq!(backoff_secs(1), 2);
        assert_eq!(backoff_secs(2), 4);
        assert_eq!(backoff_secs(5), 32);
        assert_eq!(backoff_secs(20), 300);
    }
}
