//! Plain words for what the host knows by identifier: data fields,
//! purposes, capabilities, audit actions and times. The console shows
//! both, the words for people and the identifier for their privacy team.

use crate::plugin::{Capability, DataField, Purpose};

/// What a data field is, in plain words.
pub fn field(field: DataField) -> (&'static str, &'static str) {
    match field {
        DataField::ProfileName => ("Profile name", "the name the contact chose in WhatsApp"),
        DataField::PhoneNumber => ("Phone number", "the contact's WhatsApp number"),
        DataField::UserId => (
            "WhatsApp user id (BSUID)",
            "the id WhatsApp gives the contact for your business",
        ),
        DataField::MessageText => ("Message text", "what the contact wrote"),
        DataField::Labels => ("Labels", "the labels your flow gave the contact"),
        DataField::LeadScore => ("Lead score", "the score your flow gave the contact"),
    }
}

/// A field by identifier, in plain words (the identifier itself when the
/// host does not know it).
pub fn field_name(identifier: &str) -> String {
    match DataField::from_identifier(identifier) {
        Some(f) => field(f).0.to_owned(),
        None => identifier.to_owned(),
    }
}

/// What a purpose is, in plain words.
pub fn purpose(purpose: &Purpose) -> String {
    let id = purpose.as_str();
    let root = id.split('.').next().unwrap_or(id);
    let what = match (root, id) {
        (_, "essential.service") => "providing the service the contact asked for",
        ("essential", _) => "running the service",
        (_, "marketing.communications") => "marketing messages",
        ("marketing", _) => "marketing",
        (_, "personalize.profiling") => "profiling the contact to personalise what they get",
        ("personalize", _) => "personalising what the contact gets",
        ("analytics", _) => "analytics",
        ("functional", _) => "features of the service",
        ("finance", _) => "payments and billing",
        _ => "a purpose the host has no words for",
    };
    what.to_owned()
}

/// What a capability lets a plugin do, in plain words.
pub fn capability(capability: Capability) -> &'static str {
    match capability {
        Capability::Reply => {
            "Reply with a text message (only within WhatsApp's 24-hour window, never to \
             contacts who opted out or restricted processing)"
        }
        Capability::AddLabel => "Add labels to the contact",
        Capability::RemoveLabel => "Remove labels from the contact",
        Capability::SetLeadScore => "Set the contact's lead score",
        Capability::HandOff => {
            "Hand the conversation to a person (no automated replies until you hand it back)"
        }
    }
}

/// Every capability the host knows.
pub const CAPABILITIES: [Capability; 5] = [
    Capability::Reply,
    Capability::AddLabel,
    Capability::RemoveLabel,
    Capability::SetLeadScore,
    Capability::HandOff,
];

/// The capability a form value names.
pub fn capability_named(name: &str) -> Option<Capability> {
    CAPABILITIES.into_iter().find(|c| c.as_str() == name)
}

/// A time (seconds since the Unix epoch) as people read it, in UTC.
pub fn time(at: u64) -> String {
    match jiff::Timestamp::from_second(at as i64) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

/// A date (seconds since the Unix epoch), in UTC.
pub fn date(at: u64) -> String {
    match jiff::Timestamp::from_second(at as i64) {
        Ok(ts) => ts.strftime("%a %Y-%m-%d").to_string(),
        Err(_) => at.to_string(),
    }
}

/// A date or date-time typed into a form (`2026-11-30` or
/// `2026-11-30T18:13`, as `<input type=date|datetime-local>` send them),
/// read as UTC.
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    let datetime: jiff::civil::DateTime = if text.len() == 10 {
        text.parse::<jiff::civil::Date>().ok()?.at(0, 0, 0, 0)
    } else {
        text.parse().ok()?
    };
    let ts = datetime.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    u64::try_from(ts.as_second()).ok()
}

/// A count with thousands separated, for fuel.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_print_in_utc() {
        assert_eq!(time(1_749_463_200), "2025-06-09 10:00 UTC");
        assert_eq!(parse_time("2025-06-09"), Some(1_749_427_200));
        assert_eq!(parse_time("2025-06-09T10:00"), Some(1_749_463_200));
        assert_eq!(parse_time("next tuesday"), None);
        assert_eq!(count(1_234_567), "1 234 567");
        assert_eq!(count(12), "12");
    }
}
