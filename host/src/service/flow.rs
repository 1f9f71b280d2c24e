//! Processing one inbox item: the tenant's flow on one event.
//!
//! For a message: find or create the contact, record the message (metadata
//! and a sealed preview), handle opt-out keywords before anything else, then
//! run each enabled installation in order on a freshly built, minimised
//! view. Every action is checked — granted capability, opt-out,
//! restriction, hand-off, service window — then applied or dropped, and
//! either way audited. Labels and scores applied by an earlier plugin are
//! visible to a later one when it was granted them. Everything the event
//! changes, including removing it from the inbox, goes into one commit.
//!
//! The tenant's plugins share one budget per event (`tenant_limits`
//! `event_fuel` and `event_time_ms`): each call may use at most what is
//! left of it, and once it is spent the remaining plugins are skipped and
//! audited, so enabling many copies of a slow plugin does not multiply what
//! one event may take of the shared workers.

use std::time::{Duration, Instant};

use super::ServiceInner;
use super::committer::Commit;
use super::context::{FlowStep, TenantContext};
use super::inbox::InboxJob;
use super::optout::{self, Keyword};
use super::outbox::{self, Reply};
use crate::audit::{Actor, AuditDraft, contact_pseudonym};
use crate::channel::whatsapp::payload::{DeliveryItem, InboundMessage, StatusUpdate};
use crate::crypto::TenantKeys;
use crate::data::DataError;
use crate::data::consent::{ConsentLedger, ConsentRecord, Decision, Source, Subject};
use crate::data::contacts::{Admitted, Contacts, LeadScore, LoadedContact};
use crate::data::messages::{self, Direction, MessageRecord};
use crate::data::plugin_state;
use crate::ids::TenantId;
use crate::plugin::{Action, Refusal};
use crate::runtime::{Budget, Call, PluginState, Seed};
use crate::store::{Batch, Kind};
use crate::tenancy::installations::Trigger;
use crate::view::{self, EventContext, MessageFacts};

/// Why an item could not be processed now. Transient errors are retried;
/// the item stays in the inbox.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Keys(#[from] crate::crypto::KeyRingError),
    #[error(transparent)]
    Context(#[from] super::context::ContextError),
}

/// The outcome of processing: what to commit, and whether replies were
/// queued (so the sender is woken after the commit).
pub struct Processed {
    pub commit: Commit,
    /// Outbox keys of the replies this event queued.
    pub replies: Vec<Vec<u8>>,
    /// Outbox entries whose sends in doubt a status webhook confirmed: the
    /// sender settles them once this is committed.
    pub confirmed: Vec<Vec<u8>>,
    /// Copies of the commit's audit entries that record something already
    /// done in memory whatever becomes of this commit (a breaker opening):
    /// if the commit is refused and the item processed again, they must
    /// still reach the trail, since the change will not happen twice.
    pub lasting: Vec<AuditDraft>,
}

struct Event<'a> {
    service: &'a ServiceInner,
    tenant: TenantId,
    keys: std::sync::Arc<TenantKeys>,
    context: std::sync::Arc<TenantContext>,
    now: u64,
    batch: Batch,
    audit: Vec<AuditDraft>,
    lasting: Vec<AuditDraft>,
    replies: Vec<Vec<u8>>,
    confirmed: Vec<Vec<u8>>,
    /// The inbox key of the item: what tells this event apart when seeding
    /// the plugins' randomness.
    item_key: Vec<u8>,
    /// What the tenant's plugins have used of the event's budget so far.
    spent: Budget,
}

impl Event<'_> {
    fn note(
        &mut self,
        actor: Actor,
        action: &str,
        subject: Option<&str>,
        details: serde_json::Value,
    ) {
        let mut draft = AuditDraft::new(self.tenant, self.now, actor, action).details(details);
        draft.subject = subject.map(str::to_owned);
        self.audit.push(draft);
    }

    /// Note a breaker's change (see [`Processed::lasting`]).
    fn note_breaker(
        &mut self,
        installation: &crate::ids::InstallationId,
        transition: crate::runtime::BreakerTransition,
    ) {
        self.note(
            Actor::System,
            "breaker.changed",
            None,
            breaker_details(installation, transition),
        );
        self.lasting.extend(self.audit.last().cloned());
    }
}

/// Process one inbox item into a commit.
pub fn process(service: &ServiceInner, job: &InboxJob) -> Result<Processed, ProcessError> {
    let nothing = |batch| Processed {
        commit: Commit::new(batch, Vec::new()),
        replies: Vec::new(),
        confirmed: Vec::new(),
        lasting: Vec::new(),
    };
    let stored = service
        .vault
        .store
        .get(&TenantId::SYSTEM, Kind::Inbox, &job.key)?;
    if stored.as_ref() != Some(&job.sealed) {
        // Gone since it was queued: processed already (a redone attempt),
        // or removed with its contact by an erasure.
        return Ok(nothing(Batch::new()));
    }
    // Removed with the effects, on condition it is still there: an
    // erasure committed meanwhile refuses this commit, and the item is
    // looked at again (and found gone).
    let mut batch = Batch::new();
    batch.expect(
        TenantId::SYSTEM,
        Kind::Inbox,
        job.key.clone(),
        Some(job.sealed.clone()),
    );
    batch.delete(TenantId::SYSTEM, Kind::Inbox, job.key.clone());
    let context = match service.contexts.get(&job.tenant) {
        Ok(context) => context,
        // The tenant was deleted after the delivery was acknowledged.
        Err(super::context::ContextError::UnknownTenant(_)) => return Ok(nothing(batch)),
        Err(error) => return Err(error.into()),
    };
    let mut event = Event {
        service,
        tenant: job.tenant,
        keys: service.vault.keys.tenant(&job.tenant)?,
        context,
        now: service.clock.now(),
        batch,
        audit: Vec::new(),
        lasting: Vec::new(),
        replies: Vec::new(),
        confirmed: Vec::new(),
        item_key: job.key.clone(),
        spent: Budget {
            fuel: 0,
            time: Duration::ZERO,
        },
    };
    let channel = job.item.channel;
    match &job.item.item {
        DeliveryItem::Message(message) => on_message(&mut event, channel, &job.contact, message)?,
        DeliveryItem::Status(status) => on_status(&mut event, channel, &job.contact, status)?,
    }
    Ok(Processed {
        replies: event.replies,
        confirmed: event.confirmed,
        commit: Commit::new(event.batch, event.audit),
        lasting: event.lasting,
    })
}

fn on_message(
    event: &mut Event<'_>,
    channel: crate::ids::ChannelId,
    contact: &Admitted,
    message: &InboundMessage,
) -> Result<(), ProcessError> {
    let vault = &event.service.vault;
    let contacts = Contacts::of(vault, event.tenant)?;
    let mut loaded = contacts.resolve_admitted(
        contact,
        message.from.wa_id.as_deref(),
        message.from.user_id.as_deref(),
        message.from.profile_name.as_deref(),
        message.timestamp,
    )?;
    if let Some(new_wa_id) = &message.new_wa_id {
        contacts.change_number(&mut loaded, new_wa_id);
    }
    let subject = contact_pseudonym(&event.keys, &loaded.contact.id);
    if loaded.is_new() {
        event.note(
            Actor::Webhook(channel.to_string()),
            "contact.created",
            Some(&subject),
            serde_json::Value::Null,
        );
    }

    // The message itself: metadata, a sealed preview, content if enabled.
    let record = MessageRecord {
        seq: vault.store.next_id()?,
        direction: Direction::Inbound,
        kind: message.kind,
        at: message.timestamp,
        status: None,
        status_at: None,
        preview: message.text().map(messages::preview),
        content: message
            .text()
            .filter(|_| event.context.tenant.store_message_content)
            .map(str::to_owned),
        origin: None,
    };
    let owner = messages::Owner {
        tenant: &event.tenant,
        keys: &event.keys,
        contact: &loaded.contact.id,
        contact_key: &loaded.key,
    };
    messages::stage(vault, &mut event.batch, owner, &record);
    event.note(
        Actor::Webhook(channel.to_string()),
        "message.received",
        Some(&subject),
        serde_json::json!({
            "kind": message.kind,
            "chars": message.text().map_or(0, |t| t.chars().count()),
        }),
    );

    if let Some(keyword) = optout::classify(message.text()) {
        on_keyword(
            event,
            channel,
            &mut loaded,
            keyword,
            &message.wamid,
            &subject,
        )?;
    } else if loaded.contact.restricted {
        event.note(
            Actor::System,
            "processing.restricted",
            Some(&subject),
            serde_json::Value::Null,
        );
    } else {
        let facts = MessageFacts {
            kind: message.kind,
            text: message.text().map(str::to_owned),
            received_at: message.timestamp,
            service_window_open: loaded.contact.service_window_open(event.now),
        };
        let context = event.context.clone();
        for step in context
            .flow
            .iter()
            .filter(|s| s.installation.triggers.contains(&Trigger::MessageReceived))
        {
            run_step(
                event,
                channel,
                step,
                &mut loaded,
                Some(facts.clone()),
                None,
                &subject,
            )?;
        }
    }
    contacts.stage(&mut event.batch, &loaded);
    Ok(())
}

fn on_keyword(
    event: &mut Event<'_>,
    channel: crate::ids::ChannelId,
    loaded: &mut LoadedContact,
    keyword: Keyword,
    wamid: &str,
    subject: &str,
) -> Result<(), ProcessError> {
    let vault = &event.service.vault;
    let changes = match keyword {
        Keyword::OptOut => !loaded.contact.opted_out,
        Keyword::OptIn => loaded.contact.opted_out,
    };
    if !changes {
        // Confirm once: a repeated keyword is recorded but not answered.
        event.note(
            Actor::Contact,
            "consent.keyword-repeated",
            Some(subject),
            serde_json::json!({"keyword": format!("{keyword:?}")}),
        );
        return Ok(());
    }
    let ledger = ConsentLedger::of(vault, event.tenant)?;
    let decision = match keyword {
        Keyword::OptOut => Decision::Withdrawn,
        Keyword::OptIn => Decision::Granted,
    };
    ledger.stage_append(
        &mut event.batch,
        &ConsentRecord {
            contact: loaded.contact.id,
            subject: Subject::Messaging,
            decision,
            source: Source::Keyword,
            evidence: Some(ledger.evidence("whatsapp-message", wamid)),
            at: event.now,
        },
    )?;
    loaded.contact.opted_out = keyword == Keyword::OptOut;
    let (action, text) = match keyword {
        Keyword::OptOut => ("consent.withdrawn", optout::OPT_OUT_CONFIRMATION),
        Keyword::OptIn => ("consent.granted", optout::OPT_IN_CONFIRMATION),
    };
    event.note(
        Actor::Contact,
        action,
        Some(subject),
        serde_json::json!({"subject": "messaging", "source": "keyword"}),
    );
    let key = outbox::stage_reply(
        vault,
        &mut event.batch,
        Reply {
            tenant: &event.tenant,
            keys: &event.keys,
            channel,
            contact: &loaded.contact.id,
            contact_key: &loaded.key,
            text: text.to_owned(),
            origin: "system".into(),
            confirmation: true,
            now: event.now,
        },
    )?;
    event.replies.push(key);
    Ok(())
}

fn on_status(
    event: &mut Event<'_>,
    channel: crate::ids::ChannelId,
    contact: &Admitted,
    status: &StatusUpdate,
) -> Result<(), ProcessError> {
    let vault = &event.service.vault;
    // Replies carry their message's sequence as callback data, which
    // WhatsApp echoes in their statuses: that names the message. A status
    // without it is about a message this service did not send.
    let Some(seq) = status
        .callback
        .as_deref()
        .and_then(outbox::parse_callback_data)
    else {
        return Ok(());
    };
    // A reply whose send ended in doubt: this status confirms it (the
    // sender settles it).
    let confirmed = outbox::confirm(
        event.service,
        &mut event.batch,
        &event.tenant,
        &event.keys,
        status.callback.as_deref(),
        &status.wamid,
    )?;
    match confirmed {
        outbox::Confirmed::No => {}
        outbox::Confirmed::Staged(key) => {
            event.confirmed.push(key);
            return Ok(());
        }
        outbox::Confirmed::Noted => return Ok(()),
    }
    let contact_id = contact.id;
    let contacts = Contacts::of(vault, event.tenant)?;
    let Some(mut loaded) = contacts.load(&contact_id)? else {
        return Ok(());
    };
    let subject = contact_pseudonym(&event.keys, &contact_id);
    let Some(mut record) = messages::load(vault, &event.tenant, &contact_id, &loaded.key, seq)?
    else {
        // Expired, or not a message of this contact.
        return Ok(());
    };
    record.status = Some(status.status);
    record.status_at = Some(status.timestamp);
    let owner = messages::Owner {
        tenant: &event.tenant,
        keys: &event.keys,
        contact: &contact_id,
        contact_key: &loaded.key,
    };
    messages::restage(vault, &mut event.batch, owner, &record);
    event.note(
        Actor::System,
        "message.status",
        Some(&subject),
        serde_json::json!({"status": status.status, "errors": status.error_codes}),
    );
    if loaded.contact.restricted {
        contacts.expect_unchanged(&mut event.batch, &loaded);
        return Ok(());
    }
    let context = event.context.clone();
    let steps = context
        .flow
        .iter()
        .filter(|s| s.installation.triggers.contains(&Trigger::StatusUpdate));
    for step in steps {
        run_step(
            event,
            channel,
            step,
            &mut loaded,
            None,
            Some((status.status, status.timestamp)),
            &subject,
        )?;
    }
    // Most statuses change nothing about the contact: rewriting its record
    // anyway would make every concurrent API change to it start again.
    if loaded.is_changed() {
        contacts.stage(&mut event.batch, &loaded);
    } else {
        contacts.expect_unchanged(&mut event.batch, &loaded);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one call per installation, from two places
fn run_step(
    event: &mut Event<'_>,
    channel: crate::ids::ChannelId,
    step: &FlowStep,
    loaded: &mut LoadedContact,
    message: Option<MessageFacts>,
    status: Option<(crate::channel::whatsapp::payload::DeliveryState, u64)>,
    subject: &str,
) -> Result<(), ProcessError> {
    let service = event.service;
    let installation = &step.installation;
    let manifest = &step.plugin.manifest;
    let actor = Actor::Installation(installation.id.to_string());
    let disclosure = match view::disclose(
        manifest,
        &installation.grants,
        &loaded.contact.processing_state(),
    ) {
        Ok(disclosure) => disclosure,
        Err(reason) => {
            event.note(
                actor,
                "plugin.skipped",
                Some(subject),
                skipped_details(manifest, &reason),
            );
            return Ok(());
        }
    };
    let config = match view::resolve_config(manifest, &installation.config_pairs()) {
        Ok(config) => config,
        Err(missing) => {
            event.note(
                actor,
                "plugin.misconfigured",
                Some(subject),
                serde_json::json!({"error": missing.to_string()}),
            );
            return Ok(());
        }
    };
    let Some(budget) = event.remaining_budget() else {
        service
            .metrics
            .plugin_skips
            .get_or_create(&vec![("reason".into(), "event-budget".into())])
            .inc();
        event.note(
            actor,
            "plugin.skipped",
            Some(subject),
            serde_json::json!({
                "reason": "event-budget",
                "plugin": manifest.id,
                "fuel_spent": event.spent.fuel,
                "ms_spent": event.spent.time.as_millis() as u64,
            }),
        );
        return Ok(());
    };
    let tenant_profile = &event.context.tenant;
    let built = view::build_event(
        &disclosure,
        &loaded.contact.view_data(),
        EventContext {
            pseudonym: view::pseudonym(
                &event.keys.pseudonyms,
                &installation.id.to_string(),
                loaded.contact.id.as_bytes(),
            ),
            message,
            status,
            config,
            now: event.now,
            timezone: tenant_profile.timezone.clone(),
            utc_offset_minutes: tenant_profile.utc_offset_minutes(event.now),
        },
    );
    let vault = &service.vault;
    let state = plugin_state::load_state(
        vault,
        &event.tenant,
        &installation.id,
        &loaded.contact.id,
        &loaded.key,
    )?;
    let started = Instant::now();
    let seed = sandbox_seed(&event.keys, &installation.id, &event.item_key);
    let result = service.runtime.invoke(
        &step.plugin,
        Call::new(built)
            .installation(installation.id.to_string())
            .state(PluginState::new(state.entries))
            .seed(seed)
            .within(budget),
    );
    let (fuel, elapsed) = match &result {
        Ok(invocation) => (invocation.fuel, invocation.elapsed),
        Err(failure) => (failure.fuel, failure.elapsed),
    };
    event.spent.fuel += fuel;
    event.spent.time += elapsed;
    service
        .metrics
        .observe_call(&manifest.id, &result, started.elapsed());
    let disclosed: Vec<&str> = disclosure.disclosed.iter().map(|f| f.as_str()).collect();
    match result {
        Err(failure) => {
            event.note(
                actor.clone(),
                "plugin.failed",
                Some(subject),
                serde_json::json!({
                    "plugin": manifest.id,
                    "version": manifest.version,
                    "disclosed": disclosed,
                    "error": failure.error.kind(),
                    "fuel": failure.fuel,
                    "logs": log_summary(&failure.logs),
                }),
            );
            if let Some(transition) = failure.breaker {
                event.note_breaker(&installation.id, transition);
            }
        }
        Ok(invocation) => {
            if !invocation.state.changes().is_empty() {
                let slot = plugin_state::Slot {
                    tenant: &event.tenant,
                    installation: &installation.id,
                    contact: &loaded.contact.id,
                    contact_key: &loaded.key,
                };
                plugin_state::restage(
                    vault,
                    &mut event.batch,
                    slot,
                    invocation.state.merged(),
                    state.written_at,
                    event.now,
                );
            }
            event.note(
                actor.clone(),
                "plugin.invoked",
                Some(subject),
                serde_json::json!({
                    "plugin": manifest.id,
                    "version": manifest.version,
                    "disclosed": disclosed,
                    "actions": invocation.actions.len() + invocation.refused.len(),
                    "fuel": invocation.fuel,
                    "micros": invocation.elapsed.as_micros() as u64,
                    "logs": log_summary(&invocation.logs),
                }),
            );
            if let Some(transition) = invocation.breaker {
                event.note_breaker(&installation.id, transition);
            }
            for (action, refusal) in invocation.refused {
                drop_action(event, &actor, subject, &action, &refusal);
            }
            for action in invocation.actions {
                apply_action(event, channel, step, loaded, action, &actor, subject)?;
            }
        }
    }
    Ok(())
}

impl Event<'_> {
    /// What is left of the tenant's budget for this event, or `None` when
    /// some of it is spent out.
    fn remaining_budget(&self) -> Option<Budget> {
        let limits = &self.service.config.tenant_limits;
        let fuel = limits.event_fuel.saturating_sub(self.spent.fuel);
        let time = Duration::from_millis(limits.event_time_ms).saturating_sub(self.spent.time);
        (fuel > 0 && !time.is_zero()).then_some(Budget { fuel, time })
    }
}

/// The seed of a plugin call's WASI randomness: keyed by a tenant secret
/// (unpredictable to the plugin), distinct per installation and per event,
/// the same when the event is processed again.
fn sandbox_seed(
    keys: &TenantKeys,
    installation: &crate::ids::InstallationId,
    item_key: &[u8],
) -> Seed {
    let mut hasher = blake3::Hasher::new_keyed(&keys.secrets);
    hasher.update(b"flowgate 2026 plugin call seed\0");
    hasher.update(installation.to_string().as_bytes());
    hasher.update(b"\0");
    hasher.update(item_key);
    Seed(*hasher.finalize().as_bytes())
}

/// Why an installation was not run for a contact, for the audit trail:
/// the reason's code and purposes (`{"reason": "no-consent", "purpose":
/// "personalize.profiling"}`), the plugin, and `why` in plain words.
fn skipped_details(
    manifest: &crate::plugin::Manifest,
    reason: &view::NotProcessed,
) -> serde_json::Value {
    let mut details = serde_json::json!({
        "plugin": manifest.id,
        "version": manifest.version,
        "why": reason.to_string(),
    });
    if let (Some(details), serde_json::Value::Object(reason)) =
        (details.as_object_mut(), serde_json::json!(reason))
    {
        details.extend(reason);
    }
    details
}

/// What the audit trail keeps of a call's log: lines per level and their
/// size, never the text (a plugin may log what it was shown).
fn log_summary(logs: &[crate::runtime::LogLine]) -> serde_json::Value {
    let mut levels = std::collections::BTreeMap::<&str, (u64, u64)>::new();
    for line in logs {
        let entry = levels.entry(line.level).or_default();
        entry.0 += 1;
        entry.1 += line.message.len() as u64;
    }
    levels
        .into_iter()
        .map(|(level, (lines, bytes))| {
            (
                level.to_owned(),
                serde_json::json!({"lines": lines, "bytes": bytes}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A breaker's change as structured audit details.
fn breaker_details(
    installation: &crate::ids::InstallationId,
    transition: crate::runtime::BreakerTransition,
) -> serde_json::Value {
    match transition {
        crate::runtime::BreakerTransition::Opened {
            consecutive_failures,
        } => serde_json::json!({
            "installation": installation,
            "transition": "opened",
            "consecutive_failures": consecutive_failures,
        }),
        crate::runtime::BreakerTransition::Closed => {
            serde_json::json!({"installation": installation, "transition": "closed"})
        }
    }
}

fn drop_action(
    event: &mut Event<'_>,
    actor: &Actor,
    subject: &str,
    action: &Action,
    refusal: &Refusal,
) {
    event
        .service
        .metrics
        .actions
        .get_or_create(&vec![("outcome".into(), "dropped".into())])
        .inc();
    event.note(
        actor.clone(),
        "action.dropped",
        Some(subject),
        serde_json::json!({"action": action.redacted(), "reason": refusal}),
    );
}

fn apply_action(
    event: &mut Event<'_>,
    channel: crate::ids::ChannelId,
    step: &FlowStep,
    loaded: &mut LoadedContact,
    action: Action,
    actor: &Actor,
    subject: &str,
) -> Result<(), ProcessError> {
    let capability = action.capability();
    if !step.installation.capabilities.contains(&capability) {
        drop_action(
            event,
            actor,
            subject,
            &action,
            &Refusal::NotGranted { capability },
        );
        return Ok(());
    }
    let contact = &mut loaded.contact;
    match &action {
        Action::Reply { text } => {
            let refusal = if contact.opted_out {
                Some(Refusal::OptedOut)
            } else if contact.restricted {
                Some(Refusal::Restricted)
            } else if contact.handed_off {
                Some(Refusal::HandedOff)
            } else if !contact.service_window_open(event.now) {
                Some(Refusal::WindowClosed)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                drop_action(event, actor, subject, &action, &refusal);
                return Ok(());
            }
            let key = outbox::stage_reply(
                &event.service.vault,
                &mut event.batch,
                Reply {
                    tenant: &event.tenant,
                    keys: &event.keys,
                    channel,
                    contact: &contact.id,
                    contact_key: &loaded.key,
                    text: text.clone(),
                    origin: step.installation.id.to_string(),
                    confirmation: false,
                    now: event.now,
                },
            )?;
            event.replies.push(key);
        }
        Action::AddLabel { label } => {
            if !contact.labels.contains(label) {
                contact.labels.push(label.clone());
            }
        }
        Action::RemoveLabel { label } => contact.labels.retain(|l| l != label),
        Action::SetLeadScore { score, reason } => {
            contact.lead_score = Some(LeadScore {
                score: *score,
                reason: reason.clone(),
                by: step.installation.id.to_string(),
                at: event.now,
            });
        }
        Action::HandOff { .. } => contact.handed_off = true,
    }
    event
        .service
        .metrics
        .actions
        .get_or_create(&vec![("outcome".into(), "applied".into())])
        .inc();
    event.note(
        actor.clone(),
        "action.applied",
        Some(subject),
        serde_json::json!({"action": action.redacted()}),
    );
    Ok(())
}
