//! WhatsApp webhook bodies shaped like the real ones (compare
//! `tests/samples/whatsapp`), and their signatures.

use serde_json::{Value, json};

/// The business number's display form in every body.
const DISPLAY_PHONE_NUMBER: &str = "15550783881";

/// A delivery to `phone_number_id` holding `value`'s messages or statuses.
fn delivery(phone_number_id: &str, mut value: Value) -> String {
    value["messaging_product"] = "whatsapp".into();
    value["metadata"] = json!({
        "display_phone_number": DISPLAY_PHONE_NUMBER,
        "phone_number_id": phone_number_id,
    });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
    })
    .to_string()
}

/// A body with one text message `wamid` from `from` (a phone number), whose
/// profile name is `name`, sent at `at`.
pub fn text_message(
    phone_number_id: &str,
    wamid: &str,
    from: &str,
    name: &str,
    text: &str,
    at: u64,
) -> String {
    delivery(
        phone_number_id,
        json!({
            "contacts": [{"profile": {"name": name}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": at.to_string(),
                          "type": "text", "text": {"body": text}}]
        }),
    )
}

/// A body with the status (`delivered`, `read`, …) of the message `wamid`
/// sent to `recipient` (a phone number, or a BSUID), at `at`. WhatsApp
/// echoes the `biz_opaque_callback_data` a message was sent with in its
/// statuses: the service finds its reply by it.
pub fn status(
    phone_number_id: &str,
    wamid: &str,
    recipient: &str,
    status: &str,
    at: u64,
    callback: Option<&str>,
) -> String {
    let mut update = json!({"id": wamid, "status": status, "timestamp": at.to_string()});
    if let Some(callback) = callback {
        update["biz_opaque_callback_data"] = callback.into();
    }
    let field = if recipient.bytes().all(|b| b.is_ascii_digit()) {
        "recipient_id"
    } else {
        "recipient_user_id"
    };
    update[field] = recipient.into();
    delivery(phone_number_id, json!({"statuses": [update]}))
}

/// A `delivered` status for `wamid` (sent with `callback`), now.
pub fn delivered_status(
    phone_number_id: &str,
    wamid: &str,
    recipient: &str,
    callback: Option<&str>,
) -> String {
    status(
        phone_number_id,
        wamid,
        recipient,
        "delivered",
        crate::now(),
        callback,
    )
}

/// The `x-hub-signature-256` header of `body`, as Meta signs it with the
/// app's secret.
pub fn signature(app_secret: &str, body: &str) -> String {
    flowgate::channel::whatsapp::signature::sign(app_secret.as_bytes(), body.as_bytes())
}
