//! Events as the runtime receives them (WIT types), for calling a plugin
//! directly, without the service building the view.

use flowgate::runtime::bindings::types as wit;

/// Monday 2025-06-09 10:00:00 UTC.
pub const NOW: u64 = 1_749_463_200;

/// A message event at [`NOW`] with every field present (contact `Ana`, no
/// labels, the service window open); tests minimise as needed. Without
/// text it is an image.
pub fn message_event(text: Option<&str>, config: &[(&str, &str)]) -> wit::Event {
    wit::Event {
        trigger: wit::Trigger::MessageReceived,
        contact: wit::ContactView {
            pseudonym: "ps_test".into(),
            name: Some("Ana".into()),
            phone_number: None,
            user_id: None,
            labels: Some(vec![]),
            lead_score: None,
        },
        message: Some(wit::MessageView {
            kind: if text.is_some() {
                wit::MessageKind::Text
            } else {
                wit::MessageKind::Image
            },
            text: text.map(str::to_owned),
            received_at: NOW,
            service_window_open: true,
        }),
        status: None,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        now: NOW,
        timezone: "UTC".into(),
        utc_offset_minutes: 0,
    }
}

/// `event` with the contact's labels set to `labels`.
pub fn with_labels(mut event: wit::Event, labels: &[&str]) -> wit::Event {
    event.contact.labels = Some(labels.iter().map(|l| (*l).to_owned()).collect());
    event
}
