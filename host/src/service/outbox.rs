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
//!
//! # Each reply sent once
//!
//! The Cloud API has no idempotency key: a send whose outcome the service
//! never learned (it was killed, or the connection dropped, after the
//! request left) cannot simply be sent again. So before each send the entry
//! is durably marked *sending*, and the request carries the reply's
//! sequence as `biz_opaque_callback_data`, which WhatsApp echoes in the
//! message's status webhooks. An entry found marked after a restart, or
//! after a send that ended in doubt, is not due again until
//! `whatsapp.confirm_timeout_secs` have passed; a status webhook carrying
//! its callback data within that window settles it as sent (with its
//! wamid) without a second send. Only a send that left no trace at
//! WhatsApp by then is sent again.
//!
//! Only the sender settles entries. A status webhook for an entry marked
//! sending leaves a *confirmation* for it: durable (a record under the
//! tenant, sealed with the tenant's records key) when no send of the entry
//! is running here — the sender then settles it at once — or, while one is
//! running, a note in memory that the send reads if it ends in doubt. (A
//! durable write there could outlive the entry the running send is about to
//! remove.) The one case left: a status that arrives during a send that
//! then ends in doubt, and a crash before that outcome is written; the
//! reply is then sent again after the window.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::ServiceInner;
use super::committer::{Commit, CommitError};
use crate::audit::{Actor, AuditDraft, contact_pseudonym};
use crate::channel::whatsapp::client::{Recipient, SendError};
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
    /// Set durably right before a send: when found set by a later attempt,
    /// the earlier send's outcome is unknown (see the module docs).
    #[serde(default)]
    pub sending_since: Option<u64>,
}

/// The `biz_opaque_callback_data` of a reply: its message sequence, which
/// is also the first part of its outbox key, and which names the reply's
/// message record in its status webhooks. No personal data.
pub fn callback_data(seq: u64) -> String {
    format!("flowgate:{seq}")
}

pub fn parse_callback_data(data: &str) -> Option<u64> {
    let digits = data.strip_prefix("flowgate:")?;
    // Digits only: `u64::from_str` would also take a leading `+`.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
    messages::stage(vault, batch, owner, &record);
    let entry = OutboxEntry {
        channel: reply.channel,
        message_seq: seq,
        text: reply.text,
        origin: reply.origin,
        confirmation: reply.confirmation,
        created_at: reply.now,
        attempts: 0,
        next_attempt_at: reply.now,
        sending_since: None,
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

/// The sender's schedule: which replies are due when, and which are being
/// sent. Replies enter it only once the event that queued them is durable
/// ([`OutboxSignal::release`]) — a reply sent before that could be undone
/// by a crash and sent again by the event's retry — and, at start, from one
/// scan of the outbox. The sender never scans the outbox again: it takes
/// what is due from here.
#[derive(Clone, Default)]
pub struct OutboxSignal {
    notify: Arc<Notify>,
    queue: Arc<Mutex<Queue>>,
    in_flight: Arc<Mutex<HashSet<Vec<u8>>>>,
    /// wamids from status webhooks for sends running right now, by reply
    /// sequence (see the module docs).
    early: Arc<Mutex<HashMap<u64, String>>>,
}

/// Outbox keys by the time they are due (0: at once).
#[derive(Default)]
struct Queue {
    due: std::collections::BTreeSet<(u64, Vec<u8>)>,
    at: HashMap<Vec<u8>, u64>,
}

impl Queue {
    fn schedule(&mut self, key: Vec<u8>, due: u64) {
        if let Some(before) = self.at.insert(key.clone(), due) {
            self.due.remove(&(before, key.clone()));
        }
        self.due.insert((due, key));
    }

    fn forget(&mut self, key: &[u8]) {
        if let Some(before) = self.at.remove(key) {
            self.due.remove(&(before, key.to_vec()));
        }
    }
}

impl OutboxSignal {
    /// Replies whose events are now durable: due at once.
    pub fn release(&self, keys: &[Vec<u8>]) {
        let mut queue = self.queue.lock().expect("outbox lock");
        for key in keys {
            queue.schedule(key.clone(), 0);
        }
        drop(queue);
        self.wake();
    }

    /// Make `key` due at `due` (seconds since the epoch; 0: at once).
    fn schedule(&self, key: &[u8], due: u64) {
        self.queue
            .lock()
            .expect("outbox lock")
            .schedule(key.to_vec(), due);
    }

    /// Claim up to `limit` replies due at `now`, not being sent; and when
    /// the next one not yet due is.
    fn take_due(&self, now: u64, limit: usize) -> (Vec<Vec<u8>>, Option<u64>) {
        let mut queue = self.queue.lock().expect("outbox lock");
        let mut in_flight = self.in_flight.lock().expect("outbox lock");
        let mut taken = Vec::new();
        let mut next = None;
        for (due, key) in &queue.due {
            if *due > now {
                next = Some(*due);
                break;
            }
            if taken.len() >= limit {
                break;
            }
            if in_flight.insert(key.clone()) {
                taken.push(key.clone());
            }
        }
        for key in &taken {
            queue.forget(key);
        }
        (taken, next)
    }

    /// How many replies are scheduled (metrics, tests).
    pub fn scheduled(&self) -> usize {
        self.queue.lock().expect("outbox lock").at.len()
    }

    /// Give a claimed entry back once its send is over. `settled`: the
    /// attempt's outcome is durable (sent, failed for good, refused, or in
    /// doubt with any status it had written down), so a status noted after
    /// the send read its note has nothing left to settle and is dropped
    /// rather than kept in memory for good. Otherwise (the outcome could
    /// not be written) the note stays: the next attempt reads it, and a
    /// send that WhatsApp did accept is not sent again.
    fn unclaim(&self, key: &[u8], settled: bool) {
        let mut in_flight = self.in_flight.lock().expect("outbox lock");
        in_flight.remove(key);
        if settled && let Some(seq) = key.get(..8).and_then(|s| s.try_into().ok()) {
            self.take_early(u64::from_be_bytes(seq));
        }
    }

    fn take_early(&self, seq: u64) -> Option<String> {
        self.early.lock().expect("outbox lock").remove(&seq)
    }

    /// Give a claimed entry back and take any status noted for it, at once:
    /// a status arriving later finds the entry unclaimed and is written
    /// down durably instead (`confirm` holds the same lock).
    fn release_claim(&self, key: &[u8], seq: u64) -> Option<String> {
        let mut in_flight = self.in_flight.lock().expect("outbox lock");
        in_flight.remove(key);
        self.take_early(seq)
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
    if let Err(error) = schedule_outbox(&service) {
        tracing::error!(%error, "reading the outbox failed; queued replies wait for the next start");
    }
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = service.clock.now();
        let room = CONCURRENCY.saturating_sub(tasks.len());
        let (due, next_due) = signal.take_due(now, room);
        for key in due {
            let service = service.clone();
            tasks.spawn(async move {
                let result = send_one(&service, &key).await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "outbox entry not processed; retrying later");
                    service
                        .outbox
                        .schedule(&key, service.clock.now() + RETRY_SECS);
                }
                service.outbox.unclaim(&key, result.is_ok());
            });
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

/// Seconds before an entry whose attempt failed to be read or written is
/// tried again.
const RETRY_SECS: u64 = 5;

/// Schedule every entry the outbox holds, at once: each is read when it
/// is taken, and put back at its own due time if not due yet.
fn schedule_outbox(service: &ServiceInner) -> Result<(), DataError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = service.vault.store.scan(
            &TenantId::SYSTEM,
            Kind::Outbox,
            b"",
            after.as_deref(),
            1024,
        )?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let keys: Vec<Vec<u8>> = page.into_iter().map(|(key, _)| key).collect();
        service.outbox.release(&keys);
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

fn confirmation_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// A status webhook's proof that WhatsApp accepted a reply.
#[derive(Debug, Serialize, Deserialize)]
struct Confirmation {
    wamid: String,
}

/// What a status webhook did for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Not a reply of this tenant marked sending: nothing.
    No,
    /// A confirmation is staged in the batch: schedule this outbox entry
    /// once it is committed.
    Staged(Vec<u8>),
    /// Noted for the send running now.
    Noted,
}

/// Leave a confirmation for the reply a status webhook names by its
/// callback data, if it is one of this tenant's replies marked sending
/// (see the module docs).
pub fn confirm(
    service: &ServiceInner,
    batch: &mut Batch,
    tenant: &TenantId,
    keys: &TenantKeys,
    callback: Option<&str>,
    wamid: &str,
) -> Result<Confirmed, DataError> {
    let Some(seq) = callback.and_then(parse_callback_data) else {
        return Ok(Confirmed::No);
    };
    let vault = &service.vault;
    let found = vault
        .store
        .scan(&TenantId::SYSTEM, Kind::Outbox, &seq.to_be_bytes(), None, 1)?;
    let Some((key, sealed)) = found.into_iter().next() else {
        // Already settled, or never ours.
        return Ok(Confirmed::No);
    };
    // Another tenant's reply: callback data is not a capability.
    if parse_key(&key).is_none_or(|(owner, _)| owner != *tenant) {
        return Ok(Confirmed::No);
    }
    let Some((_, _, _, entry)) = open_entry(vault, &key, &sealed)? else {
        return Ok(Confirmed::No);
    };
    if entry.sending_since.is_none() {
        return Ok(Confirmed::No);
    }
    let signal = &service.outbox;
    // The lock orders this against the claim of a send starting now.
    let in_flight = signal.in_flight.lock().expect("outbox lock");
    if in_flight.contains(&key) {
        signal
            .early
            .lock()
            .expect("outbox lock")
            .insert(seq, wamid.to_owned());
        return Ok(Confirmed::Noted);
    }
    drop(in_flight);
    stage_confirmation(vault, batch, tenant, keys, seq, wamid);
    Ok(Confirmed::Staged(key))
}

fn stage_confirmation(
    vault: &Vault,
    batch: &mut Batch,
    tenant: &TenantId,
    keys: &TenantKeys,
    seq: u64,
    wamid: &str,
) {
    vault.stage(
        batch,
        &keys.records,
        tenant,
        Kind::Outbox,
        &confirmation_key(seq),
        &Confirmation {
            wamid: wamid.to_owned(),
        },
    );
}

/// The durable confirmation of a reply, if a status webhook left one.
fn confirmation(vault: &Vault, tenant: &TenantId, seq: u64) -> Result<Option<String>, DataError> {
    let keys = vault.keys.tenant(tenant)?;
    let key = confirmation_key(seq);
    let Some(sealed) = vault.store.get(tenant, Kind::Outbox, &key)? else {
        return Ok(None);
    };
    let confirmation: Confirmation =
        vault.open(&keys.records, tenant, Kind::Outbox, &key, &sealed)?;
    Ok(Some(confirmation.wamid))
}

/// How a reply left, for the audit trail.
enum Delivered {
    /// The Cloud API answered with the wamid.
    Answered,
    /// A status webhook confirmed a send whose answer was lost.
    Confirmed,
}

async fn send_one(service: &ServiceInner, key: &[u8]) -> Result<(), String> {
    let vault = &service.vault;
    let now = service.clock.now();
    // Read the entry again: the scan's copy may be stale (an earlier
    // attempt may have updated or removed it since).
    let Some(sealed) = vault
        .store
        .get(&TenantId::SYSTEM, Kind::Outbox, key)
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let Some((tenant, contact_id, contact_key, mut entry)) =
        open_entry(vault, key, &sealed).map_err(|e| e.to_string())?
    else {
        // The contact was erased (or the tenant deleted): nothing to send.
        let mut batch = Batch::new();
        batch.delete(TenantId::SYSTEM, Kind::Outbox, key.to_vec());
        commit(service, batch, Vec::new()).await?;
        return Ok(());
    };
    let keys = vault.keys.tenant(&tenant).map_err(|e| e.to_string())?;
    let subject = contact_pseudonym(&keys, &contact_id);
    let outcome = Outcome {
        service,
        key,
        tenant,
        keys: &keys,
        contact: &contact_id,
        contact_key: &contact_key,
        subject: &subject,
        now,
        in_doubt: entry.sending_since.is_some(),
    };
    if entry.sending_since.is_some() {
        // An earlier send's outcome is unknown: did WhatsApp confirm it?
        let confirmed = service
            .outbox
            .take_early(entry.message_seq)
            .map(Ok)
            .or_else(|| confirmation(vault, &tenant, entry.message_seq).transpose())
            .transpose()
            .map_err(|e| e.to_string())?;
        if confirmed.is_some() {
            return outcome.sent(&entry, Delivered::Confirmed).await;
        }
    }
    if entry.next_attempt_at > now {
        // Not due yet (scheduled at once at start, or waiting out a
        // retry's backoff or a send in doubt's confirmation window).
        service.outbox.schedule(key, entry.next_attempt_at);
        return Ok(());
    }
    let contacts = Contacts::of(vault, tenant).map_err(|e| e.to_string())?;
    let loaded = contacts.load(&contact_id).map_err(|e| e.to_string())?;
    let contact = loaded.as_ref().map(|l| &l.contact);
    let refusal = match contact {
        None => Some("contact-erased"),
        Some(c) if c.restricted => Some("restricted"),
        Some(c) if c.opted_out && !entry.confirmation => Some("opted-out"),
        Some(c) if !entry.confirmation && !c.service_window_open(now) => Some("window-closed"),
        _ => None,
    };
    let recipient = contact.and_then(|c| match (&c.wa_id, &c.user_id) {
        (Some(wa_id), _) => Some(Recipient::WaId(wa_id.clone())),
        (None, Some(user_id)) => Some(Recipient::UserId(user_id.clone())),
        (None, None) => None,
    });
    let context = service.contexts.get(&tenant).map_err(|e| e.to_string())?;
    let channel = context.channel(&entry.channel).cloned();
    let (Some(recipient), Some(channel), None) = (recipient, channel, refusal) else {
        let reason = refusal.unwrap_or("no recipient or channel");
        return outcome
            .ended(
                &entry,
                "dropped",
                "message.dropped",
                serde_json::json!({"origin": entry.origin, "reason": reason}),
            )
            .await;
    };
    // Mark the entry as being sent, durably, before the request leaves —
    // on condition that the contact is still as just checked: an opt-out,
    // restriction or erasure committed since then stops the send.
    let mut marking = Batch::new();
    if let Some(loaded) = &loaded {
        contacts.expect_unchanged(&mut marking, loaded);
    }
    let mut noted = Vec::new();
    if entry.sending_since.is_some() {
        // The earlier send left no trace at WhatsApp within the window:
        // send again.
        outcome.count("unconfirmed");
        noted.push(outcome.audit(
            "message.unconfirmed",
            serde_json::json!({"origin": entry.origin, "attempts": entry.attempts}),
        ));
    }
    entry.sending_since = Some(now);
    entry.next_attempt_at = now + service.cloud.config().confirm_timeout_secs;
    outcome.stage_entry(&mut marking, &entry);
    match service.committer.commit(Commit::new(marking, noted)).await {
        Ok(_) => {}
        Err(CommitError::Conflict) => {
            // Nothing was written: check the contact again, at once.
            service.outbox.schedule(key, 0);
            service.outbox.wake();
            return Ok(());
        }
        Err(error) => return Err(error.to_string()),
    }
    let sent = service
        .cloud
        .send_text(
            &channel.phone_number_id,
            &channel.access_token,
            &recipient,
            &entry.text,
            Some(&callback_data(entry.message_seq)),
        )
        .await;
    // A status webhook that arrived during the send, if any.
    let early = service.outbox.take_early(entry.message_seq);
    match sent {
        Ok(_) => outcome.sent(&entry, Delivered::Answered).await,
        Err(error) if error.in_doubt => match early {
            Some(_) => outcome.sent(&entry, Delivered::Confirmed).await,
            None if entry.attempts + 1 < MAX_ATTEMPTS => {
                // Maybe sent: stay marked and wait for the status webhook
                // (the entry is due again only after the window).
                entry.attempts += 1;
                let mut batch = Batch::new();
                outcome.stage_entry(&mut batch, &entry);
                outcome.count("in-doubt");
                commit(service, batch, Vec::new()).await?;
                service.outbox.schedule(key, entry.next_attempt_at);
                // A status that came in meanwhile was noted, not written:
                // write it now, and the sender settles the entry next.
                if let Some(wamid) = service.outbox.release_claim(key, entry.message_seq) {
                    let mut batch = Batch::new();
                    outcome.stage_confirmation(&mut batch, entry.message_seq, &wamid);
                    commit(service, batch, Vec::new()).await?;
                    service.outbox.schedule(key, 0);
                    service.outbox.wake();
                }
                Ok(())
            }
            None => outcome.failed(&entry, &error).await,
        },
        Err(error) if error.retryable && entry.attempts + 1 < MAX_ATTEMPTS => {
            // Refused by the Cloud API: certainly not sent.
            entry.attempts += 1;
            entry.sending_since = None;
            entry.next_attempt_at = now + backoff_secs(entry.attempts);
            let mut batch = Batch::new();
            outcome.stage_entry(&mut batch, &entry);
            outcome.count("retry");
            commit(service, batch, Vec::new()).await?;
            service.outbox.schedule(key, entry.next_attempt_at);
            Ok(())
        }
        Err(error) => outcome.failed(&entry, &error).await,
    }
}

/// Writes the end of a send attempt.
struct Outcome<'a> {
    service: &'a ServiceInner,
    key: &'a [u8],
    tenant: TenantId,
    keys: &'a TenantKeys,
    contact: &'a ContactId,
    contact_key: &'a SecretKey,
    subject: &'a str,
    now: u64,
    /// The entry was marked sending when picked up: a status webhook may
    /// have left a confirmation of it, removed with the entry. (Otherwise
    /// none can exist: confirmations are written only for entries marked
    /// sending and not being sent.)
    in_doubt: bool,
}

impl Outcome<'_> {
    fn audit(&self, action: &str, details: serde_json::Value) -> AuditDraft {
        AuditDraft::new(self.tenant, self.now, Actor::System, action)
            .subject(self.subject.to_owned())
            .details(details)
    }

    fn count(&self, outcome: &str) {
        self.service
            .metrics
            .messages_sent
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
    }

    fn stage_confirmation(&self, batch: &mut Batch, seq: u64, wamid: &str) {
        stage_confirmation(
            &self.service.vault,
            batch,
            &self.tenant,
            self.keys,
            seq,
            wamid,
        );
    }

    fn stage_entry(&self, batch: &mut Batch, entry: &OutboxEntry) {
        batch.put(
            TenantId::SYSTEM,
            Kind::Outbox,
            self.key.to_vec(),
            seal(self.contact_key, &self.tenant, self.key, entry),
        );
    }

    /// Remove the entry (and any confirmation of it), mark its message.
    fn stage_end(&self, batch: &mut Batch, entry: &OutboxEntry, state: DeliveryState) {
        batch.delete(TenantId::SYSTEM, Kind::Outbox, self.key.to_vec());
        if self.in_doubt {
            batch.delete(
                self.tenant,
                Kind::Outbox,
                confirmation_key(entry.message_seq).to_vec(),
            );
        }
        let owner = messages::Owner {
            tenant: &self.tenant,
            keys: self.keys,
            contact: self.contact,
            contact_key: self.contact_key,
        };
        mark_message(
            &self.service.vault,
            batch,
            owner,
            entry.message_seq,
            state,
            self.now,
        );
    }

    async fn sent(&self, entry: &OutboxEntry, how: Delivered) -> Result<(), String> {
        let mut batch = Batch::new();
        self.stage_end(&mut batch, entry, DeliveryState::Sent);
        self.count("sent");
        let mut details = serde_json::json!({
            "origin": entry.origin,
            "chars": entry.text.chars().count(),
            "attempts": entry.attempts + 1,
        });
        if let Delivered::Confirmed = how {
            details["confirmed_by"] = "status".into();
        }
        commit(
            self.service,
            batch,
            vec![self.audit("message.sent", details)],
        )
        .await
    }

    async fn failed(&self, entry: &OutboxEntry, error: &SendError) -> Result<(), String> {
        self.ended(
            entry,
            "failed",
            "message.failed",
            serde_json::json!({
                "origin": entry.origin,
                "attempts": entry.attempts + 1,
                "http_status": error.status,
                "code": error.code,
            }),
        )
        .await
    }

    /// The reply will not be sent: dropped or failed.
    async fn ended(
        &self,
        entry: &OutboxEntry,
        outcome: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), String> {
        let mut batch = Batch::new();
        self.stage_end(&mut batch, entry, DeliveryState::Failed);
        self.count(outcome);
        commit(self.service, batch, vec![self.audit(action, details)]).await
    }
}

fn mark_message(
    vault: &Vault,
    batch: &mut Batch,
    owner: messages::Owner<'_>,
    seq: u64,
    state: DeliveryState,
    now: u64,
) {
    if let Ok(Some(mut record)) =
        messages::load(vault, owner.tenant, owner.contact, owner.contact_key, seq)
    {
        record.status = Some(state);
        record.status_at = Some(now);
        messages::restage(vault, batch, owner, &record);
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
    fn a_status_noted_too_late_is_dropped_once_its_send_is_settled() {
        let signal = OutboxSignal::default();
        let key = entry_key(42, &TenantId::generate(), &ContactId::generate());
        signal.release(std::slice::from_ref(&key));
        assert_eq!(signal.take_due(1, 10).0, vec![key.clone()]);
        signal.schedule(&key, 0);
        assert!(signal.take_due(1, 10).0.is_empty(), "one send at a time");
        // The send read its note (none) and succeeded; then the status
        // webhook came, found the entry claimed, and noted its wamid.
        assert_eq!(signal.take_early(42), None);
        signal.early.lock().unwrap().insert(42, "wamid.late".into());
        signal.unclaim(&key, true);
        assert!(signal.early.lock().unwrap().is_empty());
        assert_eq!(
            signal.take_due(1, 10).0,
            vec![key.clone()],
            "claimable again"
        );

        // An attempt whose outcome could not be written keeps the note for
        // the next attempt.
        signal.early.lock().unwrap().insert(42, "wamid.kept".into());
        signal.unclaim(&key, false);
        assert_eq!(signal.take_early(42).as_deref(), Some("wamid.kept"));
    }

    #[test]
    fn replies_are_taken_when_due_in_order_and_once() {
        let signal = OutboxSignal::default();
        let tenant = TenantId::generate();
        let contact = ContactId::generate();
        let (a, b, c) = (
            entry_key(1, &tenant, &contact),
            entry_key(2, &tenant, &contact),
            entry_key(3, &tenant, &contact),
        );
        signal.schedule(&a, 100);
        signal.schedule(&b, 50);
        signal.release(std::slice::from_ref(&c));
        assert_eq!(signal.scheduled(), 3);
        // At 60: c (at once) and b; a waits, and says when.
        let (due, next) = signal.take_due(60, 10);
        assert_eq!(due, vec![c.clone(), b.clone()]);
        assert_eq!(next, Some(100));
        // Rescheduling replaces the earlier time.
        signal.schedule(&a, 10);
        let (due, next) = signal.take_due(60, 1);
        assert_eq!(due, vec![a.clone()]);
        assert_eq!(next, None);
        assert_eq!(signal.scheduled(), 0);
    }

    #[test]
    fn backoff_doubles_and_caps_at_five_minutes() {
        assert_eq!(backoff_secs(1), 2);
        assert_eq!(backoff_secs(2), 4);
        assert_eq!(backoff_secs(5), 32);
        assert_eq!(backoff_secs(20), 300);
    }

    #[test]
    fn callback_data_round_trips_and_refuses_other_spellings() {
        assert_eq!(parse_callback_data(&callback_data(42)), Some(42));
        assert_eq!(
            parse_callback_data(&callback_data(u64::MAX)),
            Some(u64::MAX)
        );
        for other in [
            "flowgate:",
            "flowgate:+42",
            "flowgate:-1",
            "flowgate: 4",
            "other:42",
            "42",
        ] {
            assert_eq!(parse_callback_data(other), None, "{other}");
        }
    }

    #[test]
    fn entries_queued_before_sends_were_marked_still_open() {
        // An outbox written by an earlier version has no `sending_since`.
        let old = r#"{"channel":"chn_00000000000000000000000000000000","message_seq":7,"text":"hi",
            "origin":"system","confirmation":false,"created_at":1,"attempts":0,"next_attempt_at":1}"#;
        let entry: OutboxEntry = serde_json::from_str(old).unwrap();
        assert_eq!(entry.sending_since, None);
    }
}
