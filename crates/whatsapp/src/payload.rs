//! Parsing WhatsApp Cloud API webhook bodies into deliveries.
//!
//! The wire format (`object`, `entry[].changes[].value` with `metadata`,
//! `contacts`, `messages`, `statuses`) is parsed leniently where WhatsApp adds
//! fields over time and strictly where we depend on a field: a body that is
//! not a WhatsApp Business Account webhook is an error, a message kind we do
//! not know yet is kept as `unsupported`.
//!
//! # What becomes message text
//!
//! An inbound message's `text` is what reaches a plugin granted
//! `user.content.private`, so it holds only what the contact wrote or chose,
//! never identifiers WhatsApp attaches ([`MessageKind::carries_text`]):
//!
//! | kind | text |
//! | --- | --- |
//! | `text` | the body the contact typed |
//! | `interactive` | the title of the button or list row chosen (written by the business) |
//! | `button` | the text of the quick-reply button chosen (written by the business) |
//! | `image`, `video`, `document` | the caption the contact typed; never a file name |
//! | `reaction` | the emoji |
//! | `audio`, `sticker` | none |
//! | `location` | none: coordinates, place name and address locate the contact |
//! | `contacts` | none: the shared cards hold other people's names, numbers and e-mail addresses |
//! | `system` | none: WhatsApp's notices name the contact and their old and new numbers ("User A changed from 16505551234 to 16505559999"); a number change re-keys the contact through `new_wa_id` instead |
//! | `unsupported` (orders, flow replies, kinds added later) | none |

use serde::Deserialize;

/// One webhook delivery, flattened: every message and status of every
/// change, each with its contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub items: Vec<DeliveryItem>,
}

/// An inbound message or a status update, for one business phone number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DeliveryItem {
    Message(InboundMessage),
    Status(StatusUpdate),
}

impl DeliveryItem {
    /// The business phone number id the item was sent to or from.
    pub fn phone_number_id(&self) -> &str {
        match self {
            DeliveryItem::Message(m) => &m.phone_number_id,
            DeliveryItem::Status(s) => &s.phone_number_id,
        }
    }

    /// The WhatsApp message id (wamid); a status's id is the id of the
    /// outbound message it reports on.
    pub fn wamid(&self) -> &str {
        match self {
            DeliveryItem::Message(m) => &m.wamid,
            DeliveryItem::Status(s) => &s.wamid,
        }
    }

    /// When WhatsApp says the message was sent or the status happened, in
    /// seconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        match self {
            DeliveryItem::Message(m) => m.timestamp,
            DeliveryItem::Status(s) => s.timestamp,
        }
    }
}

/// Who a message is from or a status is about. WhatsApp may send the phone
/// number (`wa_id`), the business-scoped user id (`user_id`), or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactRef {
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
    pub profile_name: Option<String>,
}

impl ContactRef {
    /// Whether there is any identifier to find the contact by.
    pub fn is_identified(&self) -> bool {
        self.wa_id.is_some() || self.user_id.is_some()
    }
}

/// The kind of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    Unsupported,
}

impl MessageKind {
    /// Whether a message of this kind may carry text to plugins: only kinds
    /// whose text the contact wrote or chose (see the module's table).
    pub fn carries_text(self) -> bool {
        match self {
            MessageKind::Text
            | MessageKind::Interactive
            | MessageKind::Button
            | MessageKind::Image
            | MessageKind::Video
            | MessageKind::Document
            | MessageKind::Reaction => true,
            MessageKind::Audio
            | MessageKind::Sticker
            | MessageKind::Location
            | MessageKind::Contacts
            | MessageKind::System
            | MessageKind::Unsupported => false,
        }
    }

    fn from_type(kind: &str) -> MessageKind {
        match kind {
            "text" => MessageKind::Text,
            "interactive" => MessageKind::Interactive,
            "button" => MessageKind::Button,
            "image" => MessageKind::Image,
            "video" => MessageKind::Video,
            "audio" | "voice" => MessageKind::Audio,
            "document" => MessageKind::Document,
            "sticker" => MessageKind::Sticker,
            "location" => MessageKind::Location,
            "contacts" => MessageKind::Contacts,
            "reaction" => MessageKind::Reaction,
            "system" => MessageKind::System,
            _ => MessageKind::Unsupported,
        }
    }
}

/// An inbound message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundMessage {
    pub phone_number_id: String,
    pub wamid: String,
    pub from: ContactRef,
    /// Seconds since the Unix epoch, as WhatsApp stamped it.
    pub timestamp: u64,
    pub kind: MessageKind,
    /// Body, caption, chosen option title, or reaction emoji; never set for
    /// kinds that do not [carry text](MessageKind::carries_text).
    pub text: Option<String>,
    /// For `system` messages that announce a number change: the new wa_id.
    pub new_wa_id: Option<String>,
}

impl InboundMessage {
    /// The message's text, for kinds that [carry text](MessageKind::carries_text).
    /// The parser sets no other; this also keeps out the text of items
    /// queued by an earlier version, which passed system notices on.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref().filter(|_| self.kind.carries_text())
    }
}

/// A delivery status of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusUpdate {
    pub phone_number_id: String,
    pub wamid: String,
    pub recipient: ContactRef,
    pub status: DeliveryState,
    pub timestamp: u64,
    /// WhatsApp's error codes for a `failed` status.
    pub error_codes: Vec<i64>,
    /// `biz_opaque_callback_data` as given when the message was sent.
    /// (Defaulted: inbox items stored by an earlier version lack it.)
    #[serde(default)]
    pub callback: Option<String>,
}

/// WhatsApp's delivery states.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// Why a body is not a webhook delivery we can process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("`object` is `{0}`, expected `whatsapp_business_account`")]
    WrongObject(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Webhook {
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: Option<String>,
    value: Option<Value>,
}

#[derive(Deserialize)]
struct Value {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<WireContact>,
    #[serde(default)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    statuses: Vec<WireStatus>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct WireContact {
    profile: Option<Profile>,
    wa_id: Option<String>,
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    from: Option<String>,
    from_user_id: Option<String>,
    id: String,
    timestamp: Timestamp,
    #[serde(rename = "type")]
    kind: String,
    text: Option<TextBody>,
    interactive: Option<Interactive>,
    button: Option<Button>,
    image: Option<Media>,
    video: Option<Media>,
    document: Option<Media>,
    reaction: Option<Reaction>,
    system: Option<System>,
}

#[derive(Deserialize)]
struct TextBody {
    body: String,
}

#[derive(Deserialize)]
struct Interactive {
    button_reply: Option<Choice>,
    list_reply: Option<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    title: Option<String>,
}

#[derive(Deserialize)]
struct Button {
    text: Option<String>,
}

#[derive(Deserialize)]
struct Media {
    caption: Option<String>,
}

#[derive(Deserialize)]
struct Reaction {
    emoji: Option<String>,
}

/// A system notice. Its `body` ("User A changed from 16505551234 to
/// 16505559999") is never read: it names the contact and their numbers.
#[derive(Deserialize)]
struct System {
    /// In `user_changed_number` notices: the new WhatsApp id (older
    /// webhook versions call it `new_wa_id`).
    wa_id: Option<String>,
    new_wa_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct WireStatus {
    id: String,
    status: String,
    timestamp: Timestamp,
    recipient_id: Option<String>,
    recipient_user_id: Option<String>,
    #[serde(default)]
    errors: Vec<WireError>,
    biz_opaque_callback_data: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<i64>,
}

/// WhatsApp sends timestamps as decimal strings; accept numbers too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Text(String),
    Number(u64),
}

impl Timestamp {
    fn seconds(&self) -> Result<u64, PayloadError> {
        match self {
            Timestamp::Number(n) => Ok(*n),
            Timestamp::Text(s) => s
                .parse()
                .map_err(|_| PayloadError::Invalid(format!("timestamp `{s}` is not a number"))),
        }
    }
}

/// Parse a webhook body.
pub fn parse(body: &[u8]) -> Result<Delivery, PayloadError> {
    let webhook: Webhook =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    if webhook.object != "whatsapp_business_account" {
        return Err(PayloadError::WrongObject(webhook.object));
    }
    let mut items = Vec::new();
    for change in webhook.entry.into_iter().flat_map(|e| e.changes) {
        // Other fields (account updates, template status…) carry no
        // conversation; they are acknowledged and ignored.
        if change.field.as_deref().is_some_and(|f| f != "messages") {
            continue;
        }
        let Some(value) = change.value else { continue };
        if value.messages.is_empty() && value.statuses.is_empty() {
            continue;
        }
        let phone_number_id = value
            .metadata
            .ok_or_else(|| PayloadError::Invalid("a change has no `metadata`".into()))?
            .phone_number_id;
        let contacts: Vec<ContactRef> = value
            .contacts
            .into_iter()
            .map(|c| ContactRef {
                wa_id: c.wa_id,
                user_id: c.user_id,
                profile_name: c.profile.and_then(|p| p.name),
            })
            .collect();
        for message in value.messages {
            items.push(DeliveryItem::Message(inbound(
                &phone_number_id,
                &contacts,
                message,
            )?));
        }
        for status in value.statuses {
            items.push(DeliveryItem::Status(status_update(
                &phone_number_id,
                status,
            )?));
        }
    }
    Ok(Delivery { items })
}

fn inbound(
    phone_number_id: &str,
    contacts: &[ContactRef],
    message: WireMessage,
) -> Result<InboundMessage, PayloadError> {
    let kind = MessageKind::from_type(&message.kind);
    // Link the message to its `contacts` entry by phone number or BSUID; a
    // delivery with one contact needs no match (system messages carry none).
    let matched = contacts
        .iter()
        .find(|c| {
            (message.from.is_some() && c.wa_id == message.from)
                || (message.from_user_id.is_some() && c.user_id == message.from_user_id)
        })
        .or(if contacts.len() == 1 {
            contacts.first()
        } else {
            None
        });
    let mut from = matched.cloned().unwrap_or_default();
    if from.wa_id.is_none() {
        from.wa_id = message.from.clone();
    }
    if from.user_id.is_none() {
        from.user_id = message.from_user_id.clone();
    }
    let new_wa_id = message
        .system
        .as_ref()
        .filter(|s| s.kind.as_deref() == Some("user_changed_number"))
        .and_then(|s| s.new_wa_id.clone().or_else(|| s.wa_id.clone()));
    if !from.is_identified() {
        return Err(PayloadError::Invalid(format!(
            "message {} has neither `from` nor a contact with `wa_id` or `user_id`",
            message.id
        )));
    }
    let text = match kind {
        MessageKind::Text => message.text.map(|t| t.body),
        MessageKind::Interactive => message
            .interactive
            .and_then(|i| i.button_reply.or(i.list_reply))
            .and_then(|c| c.title),
        MessageKind::Button => message.button.and_then(|b| b.text),
        MessageKind::Image => message.image.and_then(|m| m.caption),
        MessageKind::Video => message.video.and_then(|m| m.caption),
        MessageKind::Document => message.document.and_then(|m| m.caption),
        MessageKind::Reaction => message.reaction.and_then(|r| r.emoji),
        // Kinds that do not carry text (see the module's table).
        MessageKind::Audio
        | MessageKind::Sticker
        | MessageKind::Location
        | MessageKind::Contacts
        | MessageKind::System
        | MessageKind::Unsupported => None,
    };
    debug_assert!(text.is_none() || kind.carries_text());
    Ok(InboundMessage {
        phone_number_id: phone_number_id.to_owned(),
        wamid: message.id,
        from,
        timestamp: message.timestamp.seconds()?,
        kind,
        text,
        new_wa_id,
    })
}

fn status_update(phone_number_id: &str, status: WireStatus) -> Result<StatusUpdate, PayloadError> {
    let state = match status.status.as_str() {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        other => {
            return Err(PayloadError::Invalid(format!(
                "status `{other}` of {} is unknown",
                status.id
            )));
        }
    };
    Ok(StatusUpdate {
        phone_number_id: phone_number_id.to_owned(),
        wamid: status.id,
        recipient: ContactRef {
            wa_id: status.recipient_id,
            user_id: status.recipient_user_id,
            profile_name: None,
        },
        status: state,
        timestamp: status.timestamp.seconds()?,
        error_codes: status.errors.into_iter().filter_map(|e| e.code).collect(),
        callback: status.biz_opaque_callback_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = include_str!("../../../tests/samples/whatsapp/text-message.json");
    const STATUS: &str = include_str!("../../../tests/samples/whatsapp/status-sent.json");

    fn wrap(value: &str) -> String {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},{value}}}}}]}}]}}"#
        )
    }

    #[test]
    fn parses_the_text_sample() {
        let delivery = parse(TEXT.as_bytes()).unwrap();
        let [DeliveryItem::Message(message)] = delivery.items.as_slice() else {
            panic!("expected one message: {delivery:?}");
        };
        assert_eq!(message.phone_number_id, "106540352242922");
        assert_eq!(message.from.wa_id.as_deref(), Some("16505551234"));
        assert_eq!(message.from.profile_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(message.kind, MessageKind::Text);
        assert_eq!(
            message.text.as_deref(),
            Some("Does it come in another color?")
        );
        assert_eq!(message.timestamp, 1_749_416_383);
    }

    #[test]
    fn parses_the_status_sample() {
        let delivery = parse(STATUS.as_bytes()).unwrap();
        let [DeliveryItem::Status(status)] = delivery.items.as_slice() else {
            panic!("expected one status");
        };
        assert_eq!(status.status, DeliveryState::Sent);
        assert_eq!(status.recipient.wa_id.as_deref(), Some("919096053970"));
    }

    #[test]
    fn a_status_carries_back_the_callback_data() {
        let body = wrap(
            r#""statuses":[{"id":"wamid.X","status":"delivered","timestamp":"2","recipient_id":"1","biz_opaque_callback_data":"flowgate:9"}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let [DeliveryItem::Status(status)] = delivery.items.as_slice() else {
            panic!("expected one status");
        };
        assert_eq!(status.callback.as_deref(), Some("flowgate:9"));
        let plain = parse(STATUS.as_bytes()).unwrap();
        let [DeliveryItem::Status(status)] = plain.items.as_slice() else {
            panic!("expected one status");
        };
        assert_eq!(status.callback, None);
    }

    #[test]
    fn interactive_media_reaction_and_unknown_kinds() {
        let body = wrap(
            r#""contacts":[{"profile":{"name":"A"},"wa_id":"111"}],"messages":[
            {"from":"111","id":"w1","timestamp":"1","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"b1","title":"Yes please"}}},
            {"from":"111","id":"w2","timestamp":"2","type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"l1","title":"Size M","description":"d"}}},
            {"from":"111","id":"w3","timestamp":"3","type":"image","image":{"id":"m","mime_type":"image/jpeg","sha256":"x"}},
            {"from":"111","id":"w4","timestamp":"4","type":"image","image":{"id":"m","caption":"my receipt"}},
            {"from":"111","id":"w5","timestamp":"5","type":"reaction","reaction":{"message_id":"w0","emoji":"👍"}},
            {"from":"111","id":"w6","timestamp":"6","type":"order","order":{}},
            {"from":"111","id":"w7","timestamp":"7","type":"audio","audio":{"id":"a","voice":true}}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let got: Vec<(MessageKind, Option<String>)> = delivery
            .items
            .iter()
            .map(|item| match item {
                DeliveryItem::Message(m) => (m.kind, m.text.clone()),
                DeliveryItem::Status(_) => panic!("no statuses here"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (MessageKind::Interactive, Some("Yes please".into())),
                (MessageKind::Interactive, Some("Size M".into())),
                (MessageKind::Image, None),
                (MessageKind::Image, Some("my receipt".into())),
                (MessageKind::Reaction, Some("👍".into())),
                (MessageKind::Unsupported, None),
                (MessageKind::Audio, None),
            ]
        );
    }

    #[test]
    fn system_message_without_contacts_and_bsuid_only_contact() {
        let body = wrap(
            r#""messages":[{"from":"111","id":"sys1","timestamp":"9","type":"system","system":{"body":"User A changed from 111 to 222","wa_id":"222","type":"user_changed_number"}}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let DeliveryItem::Message(message) = &delivery.items[0] else {
            panic!()
        };
        assert_eq!(message.kind, MessageKind::System);
        assert_eq!(message.from.wa_id.as_deref(), Some("111"));
        assert_eq!(message.new_wa_id.as_deref(), Some("222"));

        let body = wrap(
            r#""contacts":[{"profile":{"name":"B"},"user_id":"BR.1502576394655843"}],"messages":[{"id":"w9","timestamp":"9","type":"text","text":{"body":"hi"}}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let DeliveryItem::Message(message) = &delivery.items[0] else {
            panic!()
        };
        assert_eq!(message.from.wa_id, None);
        assert_eq!(message.from.user_id.as_deref(), Some("BR.1502576394655843"));
    }

    /// Every kind the parser accepts, each shaped as WhatsApp sends it with
    /// identifiers inside: only what the contact wrote or chose becomes text.
    #[test]
    fn no_message_kind_carries_identifiers_into_text() {
        let body = wrap(
            r#""contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[
            {"from":"16505551234","id":"k1","timestamp":"1","type":"text","text":{"body":"hello"}},
            {"from":"16505551234","id":"k2","timestamp":"2","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"b1","title":"Yes please"}}},
            {"from":"16505551234","id":"k3","timestamp":"3","type":"button","button":{"payload":"p","text":"Track my order"}},
            {"from":"16505551234","id":"k4","timestamp":"4","type":"image","image":{"id":"m","caption":"my receipt"}},
            {"from":"16505551234","id":"k5","timestamp":"5","type":"video","video":{"id":"m","caption":"the damage"}},
            {"from":"16505551234","id":"k6","timestamp":"6","type":"document","document":{"id":"m","filename":"passport-sheena-nelson.pdf","caption":"as asked"}},
            {"from":"16505551234","id":"k7","timestamp":"7","type":"reaction","reaction":{"message_id":"k1","emoji":"👍"}},
            {"from":"16505551234","id":"k8","timestamp":"8","type":"audio","audio":{"id":"a","voice":true}},
            {"from":"16505551234","id":"k9","timestamp":"9","type":"sticker","sticker":{"id":"s","animated":false}},
            {"from":"16505551234","id":"k10","timestamp":"10","type":"location","location":{"latitude":37.48,"longitude":-122.15,"name":"Sheena's home","address":"1 Hacker Way, Menlo Park"}},
            {"from":"16505551234","id":"k11","timestamp":"11","type":"contacts","contacts":[{"name":{"formatted_name":"Jonas Weber"},"phones":[{"phone":"+49 151 12345678","wa_id":"4915112345678"}],"emails":[{"email":"jonas@example.com"}]}]},
            {"from":"16505551234","id":"k12","timestamp":"12","type":"system","system":{"body":"User Sheena Nelson changed from 16505551234 to 16505559999","wa_id":"16505559999","type":"user_changed_number"}},
            {"from":"16505551234","id":"k13","timestamp":"13","type":"system","system":{"body":"User Sheena Nelson's identity changed","identity":"abc","type":"customer_identity_changed"}},
            {"from":"16505551234","id":"k14","timestamp":"14","type":"order","order":{"catalog_id":"c","text":"for Sheena, call 16505551234"}},
            {"from":"16505551234","id":"k15","timestamp":"15","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{"response_json":"{\"phone\":\"16505551234\"}","body":"Sent"}}}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let got: Vec<(MessageKind, Option<String>)> = delivery
            .items
            .iter()
            .map(|item| match item {
                DeliveryItem::Message(m) => (m.kind, m.text.clone()),
                DeliveryItem::Status(_) => panic!("no statuses here"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (MessageKind::Text, Some("hello".into())),
                (MessageKind::Interactive, Some("Yes please".into())),
                (MessageKind::Button, Some("Track my order".into())),
                (MessageKind::Image, Some("my receipt".into())),
                (MessageKind::Video, Some("the damage".into())),
                (MessageKind::Document, Some("as asked".into())),
                (MessageKind::Reaction, Some("👍".into())),
                (MessageKind::Audio, None),
                (MessageKind::Sticker, None),
                (MessageKind::Location, None),
                (MessageKind::Contacts, None),
                (MessageKind::System, None),
                (MessageKind::System, None),
                (MessageKind::Unsupported, None),
                (MessageKind::Interactive, None),
            ]
        );
        for (kind, text) in &got {
            assert!(text.is_none() || kind.carries_text(), "{kind:?}");
        }
        // The number change itself still reaches the host.
        let DeliveryItem::Message(change) = &delivery.items[11] else {
            panic!()
        };
        assert_eq!(change.new_wa_id.as_deref(), Some("16505559999"));
    }

    #[test]
    fn several_messages_are_matched_to_their_contacts() {
        let body = wrap(
            r#""contacts":[{"profile":{"name":"A"},"wa_id":"111"},{"profile":{"name":"B"},"wa_id":"222"}],"messages":[
            {"from":"222","id":"w1","timestamp":"1","type":"text","text":{"body":"from B"}},
            {"from":"111","id":"w2","timestamp":"2","type":"text","text":{"body":"from A"}}]"#,
        );
        let delivery = parse(body.as_bytes()).unwrap();
        let names: Vec<_> = delivery
            .items
            .iter()
            .map(|item| match item {
                DeliveryItem::Message(m) => m.from.profile_name.clone().unwrap(),
                DeliveryItem::Status(_) => unreachable!(),
            })
            .collect();
        assert_eq!(names, vec!["B", "A"]);
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        assert!(matches!(parse(b"{not json"), Err(PayloadError::Json(_))));
        assert!(matches!(
            parse(br#"{"object":"page","entry":[]}"#),
            Err(PayloadError::WrongObject(_))
        ));
        let no_sender =
            wrap(r#""messages":[{"id":"w","timestamp":"1","type":"text","text":{"body":"x"}}]"#);
        assert!(matches!(
            parse(no_sender.as_bytes()),
            Err(PayloadError::Invalid(_))
        ));
        let bad_time =
            wrap(r#""messages":[{"from":"1","id":"w","timestamp":"soon","type":"text"}]"#);
        assert!(matches!(
            parse(bad_time.as_bytes()),
            Err(PayloadError::Invalid(_))
        ));
        let bad_status = wrap(r#""statuses":[{"id":"w","status":"teleported","timestamp":"1"}]"#);
        assert!(matches!(
            parse(bad_status.as_bytes()),
            Err(PayloadError::Invalid(_))
        ));
    }
}
