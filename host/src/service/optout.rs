//! Opt-out and opt-in keywords, handled by the host before any plugin.
//!
//! An exact single-word message (case-insensitive, surrounding whitespace
//! ignored) of STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT withdraws the
//! contact's consent to messages; START, UNSTOP or SUBSCRIBE gives it back.
//! Each change is recorded in the consent ledger and confirmed with one
//! message; repeating the keyword changes nothing and sends nothing.

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

const OPT_OUT: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
const OPT_IN: [&str; 3] = ["START", "UNSTOP", "SUBSCRIBE"];

/// The confirmation sent once after an opt-out.
pub const OPT_OUT_CONFIRMATION: &str =
    "You're unsubscribed and won't get further messages from us. Reply START to subscribe again.";
/// The confirmation sent once after an opt-in.
pub const OPT_IN_CONFIRMATION: &str =
    "You're subscribed again. Reply STOP at any time to unsubscribe.";

/// The keyword a message is, if it is exactly one.
pub fn classify(text: Option<&str>) -> Option<Keyword> {
    let word = text?.trim();
    if word.is_empty() || word.contains(char::is_whitespace) {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    if OPT_OUT.contains(&upper.as_str()) {
        Some(Keyword::OptOut)
    } else if OPT_IN.contains(&upper.as_str()) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_single_words_count() {
        assert_eq!(classify(Some("STOP")), Some(Keyword::OptOut));
        assert_eq!(classify(Some("  stop \n")), Some(Keyword::OptOut));
        assert_eq!(classify(Some("Unsubscribe")), Some(Keyword::OptOut));
        assert_eq!(classify(Some("start")), Some(Keyword::OptIn));
        assert_eq!(classify(Some("please stop")), None);
        assert_eq!(classify(Some("STOPPED")), None);
        assert_eq!(classify(Some("stop!")), None);
        assert_eq!(classify(Some("")), None);
        assert_eq!(classify(None), None);
    }
}
