//! A native test harness: unit-test a plugin with plain `cargo test`, no wasm.
//!
//! Enable it for tests only:
//!
//! ```toml
//! [dev-dependencies]
//! flowgate-sdk = { version = "0.1", features = ["harness"] }
//! ```
//!
//! [`TestEvent`] builds events the way the host does, and [`run`] calls a
//! plugin the way the host does: a plugin whose purposes rest on consent the
//! contact has not given is not called at all ([`TestEvent::without_consent`]),
//! fields the manifest did not declare are withheld, configuration defaults
//! are filled in, and the returned actions are checked against the
//! manifest's capabilities, its labels and the host's limits.
//!
//! ```
//! use flowgate_sdk::harness::{self, TestEvent};
//! use flowgate_sdk::{Action, Capability, Event, Field, Manifest, Plugin, PluginError};
//!
//! struct Echo;
//! impl Plugin for Echo {
//!     fn manifest() -> Manifest {
//!         Manifest::builder("echo", "1.0.0")
//!             .field(Field::MessageText)
//!             .capability(Capability::Reply)
//!             .build()
//!     }
//!     fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
//!         Ok(event.text().map(Action::reply).into_iter().collect())
//!     }
//! }
//!
//! harness::reset();
//! let actions = harness::run::<Echo>(TestEvent::message("ping").name("Ana")).unwrap();
//! assert_eq!(actions, vec![Action::reply("ping")]);
//! ```
//!
//! State and logs are per test thread; call [`reset`] at the start of a test
//! that depends on them being empty.

use std::fmt;

use crate::log::Level;
use crate::{
    Action, Capability, Contact, DeliveryStatus, Event, Field, Message, MessageKind, Plugin,
    PluginError, Purpose, Status, Trigger,
};

/// The host's limits, mirrored so native tests fail where the service would.
pub mod limits {
    /// Maximum characters in a reply (WhatsApp's text limit).
    pub const MAX_REPLY_CHARS: usize = 4096;
    /// Maximum characters in a label.
    pub const MAX_LABEL_CHARS: usize = 64;
    /// Maximum characters in a hand-off note or lead-score reason.
    pub const MAX_NOTE_CHARS: usize = 1024;
    /// Maximum actions per call.
    pub const MAX_ACTIONS: usize = 16;
}

/// A default "now" for test events: Monday 2025-06-09 10:00:00 UTC.
pub const DEFAULT_NOW: u64 = 1_749_463_200;

/// Builds an [`Event`] for a test, with every field disclosed unless the test
/// says otherwise, for a contact who consented to every purpose of the plugin
/// unless the test says otherwise. [`run`] then withholds what the manifest
/// did not declare.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestEvent {
    event: Event,
    /// The purposes the contact consented to; `None`: every purpose of the
    /// plugin's manifest.
    consents: Option<Vec<Purpose>>,
}

impl TestEvent {
    /// A text message from a contact, inside the service window.
    pub fn message(text: &str) -> TestEvent {
        TestEvent::of_kind(MessageKind::Text, Some(text))
    }

    /// A message of any kind, with optional text (caption, chosen option).
    pub fn of_kind(kind: MessageKind, text: Option<&str>) -> TestEvent {
        TestEvent {
            consents: None,
            event: Event {
                trigger: Trigger::MessageReceived,
                contact: TestEvent::default_contact(),
                message: Some(Message {
                    kind,
                    text: text.map(str::to_owned),
                    received_at: DEFAULT_NOW,
                    service_window_open: true,
                }),
                status: None,
                config: Vec::new(),
                now: DEFAULT_NOW,
                timezone: "UTC".into(),
                utc_offset_minutes: 0,
            },
        }
    }

    /// A delivery-status update.
    pub fn status(status: DeliveryStatus) -> TestEvent {
        let mut test = TestEvent::message("");
        test.event.trigger = Trigger::StatusUpdate;
        test.event.message = None;
        test.event.status = Some(Status {
            status,
            at: DEFAULT_NOW,
        });
        test
    }

    fn default_contact() -> Contact {
        Contact {
            pseudonym: "pseudonym-test-contact".into(),
            name: Some("Test Contact".into()),
            phone_number: Some("15550001111".into()),
            user_id: None,
            labels: Some(Vec::new()),
            lead_score: None,
        }
    }

    /// Set the contact's profile name.
    pub fn name(mut self, name: &str) -> Self {
        self.event.contact.name = Some(name.into());
        self
    }

    /// Set the contact's phone number (WhatsApp id).
    pub fn phone_number(mut self, number: &str) -> Self {
        self.event.contact.phone_number = Some(number.into());
        self
    }

    /// Set the contact's business-scoped user id.
    pub fn user_id(mut self, user_id: &str) -> Self {
        self.event.contact.user_id = Some(user_id.into());
        self
    }

    /// Set the contact's labels.
    pub fn labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event.contact.labels = Some(labels.into_iter().map(Into::into).collect());
        self
    }

    /// Set the contact's lead score.
    pub fn lead_score(mut self, score: u8) -> Self {
        self.event.contact.lead_score = Some(score);
        self
    }

    /// Set the contact's pseudonym.
    pub fn pseudonym(mut self, pseudonym: &str) -> Self {
        self.event.contact.pseudonym = pseudonym.into();
        self
    }

    /// Set a configuration value.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.event.config.retain(|(name, _)| name != key);
        self.event.config.push((key.into(), value.into()));
        self
    }

    /// Set "now" (seconds since the Unix epoch); the message is received then.
    pub fn at(mut self, now: u64) -> Self {
        self.event.now = now;
        if let Some(message) = &mut self.event.message {
            message.received_at = now;
        }
        if let Some(status) = &mut self.event.status {
            status.at = now;
        }
        self
    }

    /// Set the tenant's time zone and its current UTC offset in minutes.
    pub fn timezone(mut self, name: &str, utc_offset_minutes: i32) -> Self {
        self.event.timezone = name.into();
        self.event.utc_offset_minutes = utc_offset_minutes;
        self
    }

    /// The contact consented to these purposes only (by default: to every
    /// purpose of the plugin). A consent to a broader purpose covers the
    /// narrower ones, as in the host.
    pub fn consents<I: IntoIterator<Item = Purpose>>(mut self, purposes: I) -> Self {
        self.consents = Some(purposes.into_iter().collect());
        self
    }

    /// The contact consented to nothing: [`run`] does not call a plugin with
    /// a purpose that rests on consent ([`Purpose::requires_consent`]) and
    /// answers [`Rejection::NotInvoked`], as the host does not call it.
    pub fn without_consent(self) -> Self {
        self.consents(Vec::new())
    }

    /// Mark WhatsApp's 24-hour service window as closed.
    pub fn window_closed(mut self) -> Self {
        if let Some(message) = &mut self.event.message {
            message.service_window_open = false;
        }
        self
    }

    /// The event as built, without the host's minimisation.
    pub fn build(self) -> Event {
        self.event
    }
}

impl From<TestEvent> for Event {
    fn from(test: TestEvent) -> Event {
        test.build()
    }
}

impl From<Event> for TestEvent {
    /// An event as built, for a contact who consented to every purpose.
    fn from(event: Event) -> TestEvent {
        TestEvent {
            event,
            consents: None,
        }
    }
}

/// Why [`run`] did not call the plugin, or refused its answer, as the host
/// would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The plugin was not called: one of its purposes rests on consent the
    /// contact has not given (see [`TestEvent::without_consent`]).
    NotInvoked {
        /// The purpose without consent.
        purpose: Purpose,
    },
    /// The plugin returned an error.
    Plugin(PluginError),
    /// An action the manifest did not declare.
    Undeclared(Action),
    /// A label the manifest's labels do not allow (the host drops it).
    UndeclaredLabel(Action),
    /// An action over the host's size limits.
    TooLong(Action),
    /// More actions than the host accepts per call.
    TooManyActions(usize),
    /// A required configuration key has neither a value nor a default.
    MissingConfig(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotInvoked { purpose } => write!(
                f,
                "not invoked: the contact has not consented to `{}`, which this plugin's processing rests on",
                purpose.as_str()
            ),
            Rejection::Plugin(error) => write!(f, "plugin error: {error}"),
            Rejection::Undeclared(action) => write!(f, "undeclared capability: {action:?}"),
            Rejection::UndeclaredLabel(action) => {
                write!(f, "a label the manifest does not declare: {action:?}")
            }
            Rejection::TooLong(action) => write!(f, "over the host's length limit: {action:?}"),
            Rejection::TooManyActions(n) => {
                write!(f, "{n} actions, the host accepts {}", limits::MAX_ACTIONS)
            }
            Rejection::MissingConfig(key) => write!(f, "required config key `{key}` not set"),
        }
    }
}

impl std::error::Error for Rejection {}

/// Call `P::handle` as the host would: not at all for a contact without
/// consent to one of the plugin's consent-based purposes, otherwise with
/// undeclared fields withheld and configuration defaults filled in; then
/// check the actions against the manifest's capabilities and the host's
/// limits.
pub fn run<P: Plugin>(event: impl Into<TestEvent>) -> Result<Vec<Action>, Rejection> {
    let manifest = P::manifest();
    let TestEvent {
        mut event,
        consents,
    } = event.into();
    if let Some(consents) = consents
        && let Some(purpose) = manifest
            .purposes
            .iter()
            .find(|p| p.requires_consent() && !consents.iter().any(|c| p.is_within(c)))
    {
        return Err(Rejection::NotInvoked {
            purpose: purpose.clone(),
        });
    }
    let declared = |field| manifest.fields.contains(&field);
    let contact = &mut event.contact;
    if !declared(Field::ProfileName) {
        contact.name = None;
    }
    if !declared(Field::PhoneNumber) {
        contact.phone_number = None;
    }
    if !declared(Field::UserId) {
        contact.user_id = None;
    }
    if !declared(Field::Labels) {
        contact.labels = None;
    }
    if !declared(Field::LeadScore) {
        contact.lead_score = None;
    }
    if !declared(Field::MessageText)
        && let Some(message) = &mut event.message
    {
        message.text = None;
    }
    for key in &manifest.config {
        if event.config(&key.name).is_some() {
            continue;
        }
        match &key.default_value {
            Some(default) => event.config.push((key.name.clone(), default.clone())),
            None if key.required => return Err(Rejection::MissingConfig(key.name.clone())),
            None => {}
        }
    }
    let actions = P::handle(event).map_err(Rejection::Plugin)?;
    if actions.len() > limits::MAX_ACTIONS {
        return Err(Rejection::TooManyActions(actions.len()));
    }
    for action in &actions {
        let (capability, chars, limit) = match action {
            Action::Reply(text) => (
                Capability::Reply,
                text.chars().count(),
                limits::MAX_REPLY_CHARS,
            ),
            Action::AddLabel(label) => (
                Capability::AddLabel,
                label.chars().count(),
                limits::MAX_LABEL_CHARS,
            ),
            Action::RemoveLabel(label) => (
                Capability::RemoveLabel,
                label.chars().count(),
                limits::MAX_LABEL_CHARS,
            ),
            Action::SetLeadScore { reason, .. } => (
                Capability::SetLeadScore,
                reason.chars().count(),
                limits::MAX_NOTE_CHARS,
            ),
            Action::HandOff(note) => (
                Capability::HandOff,
                note.chars().count(),
                limits::MAX_NOTE_CHARS,
            ),
        };
        if !manifest.capabilities.contains(&capability) {
            return Err(Rejection::Undeclared(action.clone()));
        }
        if chars > limit {
            return Err(Rejection::TooLong(action.clone()));
        }
        if let Action::AddLabel(label) | Action::RemoveLabel(label) = action
            && !manifest.allows_label(label)
        {
            return Err(Rejection::UndeclaredLabel(action.clone()));
        }
    }
    Ok(actions)
}

/// Clear this thread's state and logs.
pub fn reset() {
    crate::state::backend::STATE.with(|state| state.borrow_mut().clear());
    crate::log::backend::LINES.with(|lines| lines.borrow_mut().clear());
}

/// Replace this thread's state (to run `handle` on a given state, as the
/// host would load it).
pub fn set_state<I: IntoIterator<Item = (String, Vec<u8>)>>(entries: I) {
    crate::state::backend::STATE.with(|state| {
        let mut state = state.borrow_mut();
        state.clear();
        state.extend(entries);
    });
}

/// This thread's state, as (key, value) pairs in key order.
pub fn state() -> Vec<(String, Vec<u8>)> {
    crate::state::backend::STATE.with(|state| {
        state
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The lines logged on this thread since the last [`reset`], as (level, message).
pub fn logs() -> Vec<(Level, String)> {
    crate::log::backend::LINES.with(|lines| {
        lines
            .borrow()
            .iter()
            .map(|(level, message, _)| (*level, message.clone()))
            .collect()
    })
}
