use crate::wit::flowgate::plugin::types as wit;

/// One call's input: the trigger, the minimised contact, the message or
/// status, and the installation's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Why the plugin is being called.
    pub trigger: Trigger,
    /// The contact, minimised to what this installation may see.
    pub contact: Contact,
    /// The inbound message, for [`Trigger::MessageReceived`].
    pub message: Option<Message>,
    /// The status report, for [`Trigger::StatusUpdate`].
    pub status: Option<Status>,
    /// The installation's configuration as `(key, value)` pairs; see
    /// [`Event::config`].
    pub config: Vec<(String, String)>,
    /// When the host built the event, in seconds since the Unix epoch (UTC).
    pub now: u64,
    /// The tenant's IANA time zone, such as `Europe/Berlin`.
    pub timezone: String,
    /// The tenant's offset from UTC at [`Event::now`], in minutes.
    pub utc_offset_minutes: i32,
}

impl Event {
    /// The message text, when there is a message with text and the plugin may
    /// see it (field `user.content.private`).
    pub fn text(&self) -> Option<&str> {
        self.message.as_ref()?.text.as_deref()
    }

    /// The value of a configuration key (the tenant's, or the manifest's
    /// default).
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The tenant's local time at [`Event::now`] as (weekday, minute of the
    /// day): weekday 0 is Monday, minute 0 is midnight.
    ///
    /// ```
    /// # use flowgate_sdk::{Contact, Event, Trigger};
    /// let event = Event {
    ///     now: 1_749_416_383, // Sunday 2025-06-08 20:59:43 UTC
    ///     utc_offset_minutes: 120,
    ///     # trigger: Trigger::MessageReceived, contact: Contact::default(), message: None,
    ///     # status: None, config: vec![], timezone: "Europe/Berlin".into(),
    /// };
    /// assert_eq!(event.local_weekday_and_minute(), (6, 22 * 60 + 59)); // Sunday 22:59 in Berlin
    /// ```
    pub fn local_weekday_and_minute(&self) -> (u8, u16) {
        let local = self.now as i64 + i64::from(self.utc_offset_minutes) * 60;
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
        let weekday = (days + 3).rem_euclid(7) as u8;
        (weekday, minute)
    }
}

/// Why the plugin is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The contact sent a message.
    MessageReceived,
    /// WhatsApp reported the status of a message the business sent.
    StatusUpdate,
}

/// The contact as this installation may see it. Every personal field is an
/// `Option`: `Some` only when declared in the manifest, granted by the tenant
/// and permitted by the contact's consent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// A stable pseudonym, distinct per installation. Always present.
    pub pseudonym: String,
    /// The WhatsApp profile name (`user.name`).
    pub name: Option<String>,
    /// The WhatsApp id / phone number without `+` (`user.contact.phone_number`).
    pub phone_number: Option<String>,
    /// The business-scoped user id (`user.unique_id`).
    pub user_id: Option<String>,
    /// The contact's labels (`user.behavior.labels`).
    pub labels: Option<Vec<String>>,
    /// The contact's lead score, 0 to 100 (`user.behavior.lead_score`).
    pub lead_score: Option<u8>,
}

impl Contact {
    /// Whether the contact carries this label. `false` when labels are not
    /// disclosed to the plugin.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels
            .as_ref()
            .is_some_and(|labels| labels.iter().any(|l| l == label))
    }
}

/// The inbound message, minimised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The kind of message.
    pub kind: MessageKind,
    /// Body, caption, chosen option or reaction emoji, when present and
    /// disclosed: only what the contact wrote or chose. System notices,
    /// locations and shared contacts never have text (they identify people).
    pub text: Option<String>,
    /// When WhatsApp received it, in seconds since the Unix epoch.
    pub received_at: u64,
    /// Whether a free-form reply may be sent now (WhatsApp's 24-hour window).
    pub service_window_open: bool,
}

/// The kind of an inbound WhatsApp message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the WhatsApp message type of the same name
pub enum MessageKind {
    Text,
    Interactive,
    Button,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Location,
    Contacts,
    Reaction,
    System,
    /// A kind this host does not know yet.
    Unsupported,
}

/// A status report about a message the business sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The new delivery state.
    pub status: DeliveryStatus,
    /// When it happened, in seconds since the Unix epoch.
    pub at: u64,
}

/// The delivery state of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // WhatsApp's own status names
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl From<wit::Event> for Event {
    fn from(event: wit::Event) -> Self {
        Event {
            trigger: match event.trigger {
                wit::Trigger::MessageReceived => Trigger::MessageReceived,
                wit::Trigger::StatusUpdate => Trigger::StatusUpdate,
            },
            contact: Contact {
                pseudonym: event.contact.pseudonym,
                name: event.contact.name,
                phone_number: event.contact.phone_number,
                user_id: event.contact.user_id,
                labels: event.contact.labels,
                lead_score: event.contact.lead_score,
            },
            message: event.message.map(|message| Message {
                kind: message.kind.into(),
                text: message.text,
                received_at: message.received_at,
                service_window_open: message.service_window_open,
            }),
            status: event.status.map(|status| Status {
                status: match status.status {
                    wit::DeliveryStatus::Sent => DeliveryStatus::Sent,
                    wit::DeliveryStatus::Delivered => DeliveryStatus::Delivered,
                    wit::DeliveryStatus::Read => DeliveryStatus::Read,
                    wit::DeliveryStatus::Failed => DeliveryStatus::Failed,
                },
                at: status.at,
            }),
            config: event.config,
            now: event.now,
            timezone: event.timezone,
            utc_offset_minutes: event.utc_offset_minutes,
        }
    }
}

impl From<wit::MessageKind> for MessageKind {
    fn from(kind: wit::MessageKind) -> Self {
        match kind {
            wit::MessageKind::Text => MessageKind::Text,
            wit::MessageKind::Interactive => MessageKind::Interactive,
            wit::MessageKind::Button => MessageKind::Button,
            wit::MessageKind::Image => MessageKind::Image,
            wit::MessageKind::Video => MessageKind::Video,
            wit::MessageKind::Audio => MessageKind::Audio,
            wit::MessageKind::Document => MessageKind::Document,
            wit::MessageKind::Sticker => MessageKind::Sticker,
            wit::MessageKind::Location => MessageKind::Location,
            wit::MessageKind::Contacts => MessageKind::Contacts,
            wit::MessageKind::Reaction => MessageKind::Reaction,
            wit::MessageKind::System => MessageKind::System,
            wit::MessageKind::Unsupported => MessageKind::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: u64, offset: i32) -> Event {
        Event {
            trigger: Trigger::MessageReceived,
            contact: Contact::default(),
            message: None,
            status: None,
            config: vec![("greeting".into(), "hi".into())],
            now,
            timezone: "UTC".into(),
            utc_offset_minutes: offset,
        }
    }

    #[test]
    fn local_time_crosses_midnight_both_ways() {
        // Thursday 1970-01-01 00:30 UTC.
        assert_eq!(at(1800, 0).local_weekday_and_minute(), (3, 30));
        // Minus one hour: Wednesday 23:30.
        assert_eq!(at(1800, -60).local_weekday_and_minute(), (2, 23 * 60 + 30));
    }

    #[test]
    fn config_lookup() {
        assert_eq!(at(0, 0).config("greeting"), Some("hi"));
        assert_eq!(at(0, 0).config("missing"), None);
    }
}
