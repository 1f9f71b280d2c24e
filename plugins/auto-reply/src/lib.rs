//! `auto-reply`: FAQ answers, an away message outside business hours, and a
//! hand-off when the contact asks for a person.
//!
//! - `faq`: JSON list of `{"keywords": [...], "reply": "..."}`; the first entry
//!   with a keyword in the message (ignoring case and accents) answers.
//! - `business-hours`: `always`, or `;`-separated entries such as
//!   `mon-fri 09:00-18:00; sat 10:00-14:00` in the tenant's local time
//!   (ranges may cross midnight: `fri 22:00-02:00`). Outside them the
//!   `away-message` is sent instead of FAQ answers.
//! - `cooldown-minutes`: at most one automatic reply per contact per period
//!   (default 60), remembered in the contact's plugin state.
//! - `hand-off-words`: asking for a person hands the conversation to a human
//!   (and says so, within the cool-down rule).
//!
//! Replies may contain `{name}`, replaced by the contact's profile name when
//! the tenant grants it, and by "there" otherwise. The plugin never replies
//! when WhatsApp's 24-hour service window is closed.

use flowgate_sdk::text::{contains_keyword, find_keyword, fold, keyword_list};
use flowgate_sdk::{
    Action, Capability, Event, Field, Manifest, Plugin, PluginError, Purpose, Trigger, log, state,
};
use serde::Deserialize;

const DEFAULT_AWAY: &str = "Thanks for your message, {name}! We're closed right now and will \
    get back to you during business hours.";
const DEFAULT_HAND_OFF_WORDS: &str =
    "human, agent, real person, talk to someone, atendente, humano, pessoa, mitarbeiter, mensch";
const DEFAULT_HAND_OFF_MESSAGE: &str =
    "Sure, {name}, a member of our team will reply here shortly.";

pub struct AutoReply;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaqEntry {
    keywords: Vec<String>,
    reply: String,
}

/// One opening window: minutes since Monday 00:00 local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: u32,
    end: u32,
}

const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `None` means always open.
fn parse_business_hours(spec: &str) -> Result<Option<Vec<Window>>, PluginError> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("always") {
        return Ok(None);
    }
    let bad = |entry: &str, why: &str| {
        PluginError::invalid_config(format!(
            "`business-hours` entry `{entry}`: {why} (expected e.g. `mon-fri 09:00-18:00`)"
        ))
    };
    let mut windows = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (days, hours) = entry
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(entry, "missing hours"))?;
        let day_index = |d: &str| {
            DAYS.iter()
                .position(|day| d.trim().eq_ignore_ascii_case(day))
                .ok_or_else(|| bad(entry, "unknown day"))
        };
        let day_range: Vec<usize> = if days.eq_ignore_ascii_case("daily") {
            (0..7).collect()
        } else if let Some((first, last)) = days.split_once('-') {
            let (first, last) = (day_index(first)?, day_index(last)?);
            if first > last {
                return Err(bad(entry, "day range runs backwards"));
            }
            (first..=last).collect()
        } else {
            vec![day_index(days)?]
        };
        let (open, close) = hours
            .trim()
            .split_once('-')
            .ok_or_else(|| bad(entry, "hours need a start and an end"))?;
        let (open, close) = (
            parse_time(open).ok_or_else(|| bad(entry, "bad opening time"))?,
            parse_time(close).ok_or_else(|| bad(entry, "bad closing time"))?,
        );
        for day in day_range {
            let base = day as u32 * 24 * 60;
            let length = if close > open {
                close - open
            } else {
                24 * 60 - open + close
            };
            windows.push(Window {
                start: base + open,
                end: base + open + length,
            });
        }
    }
    Ok(Some(windows))
}

fn parse_time(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn is_open(windows: &[Window], minute_of_week: u32) -> bool {
    windows.iter().any(|w| {
        // A window running past Sunday midnight continues on Monday.
        (w.start..w.end).contains(&minute_of_week)
            || (w.end > MINUTES_PER_WEEK && minute_of_week < w.end - MINUTES_PER_WEEK)
    })
}

fn personalise(template: &str, event: &Event) -> String {
    let name = event.contact.name.as_deref().unwrap_or("there");
    template.replace("{name}", name)
}

impl Plugin for AutoReply {
    fn manifest() -> Manifest {
        Manifest::builder("auto-reply", "0.1.0")
            .summary(
                "Answers FAQs, sends an away message outside business hours, hands off on request",
            )
            .purpose(Purpose::ESSENTIAL_SERVICE)
            .field(Field::MessageText)
            .field(Field::ProfileName)
            .capability(Capability::Reply)
            .capability(Capability::HandOff)
            .config(
                "faq",
                "JSON list of {\"keywords\": [...], \"reply\": \"...\"}",
                false,
                Some("[]"),
            )
            .config(
                "business-hours",
                "`always`, or e.g. `mon-fri 09:00-18:00; sat 10:00-14:00` (tenant's local time)",
                false,
                Some("always"),
            )
            .config(
                "away-message",
                "reply outside business hours; `{name}` is replaced",
                false,
                Some(DEFAULT_AWAY),
            )
            .config(
                "cooldown-minutes",
                "at most one auto-reply per contact per this many minutes",
                false,
                Some("60"),
            )
            .config(
                "hand-off-words",
                "comma-separated words that ask for a person",
                false,
                Some(DEFAULT_HAND_OFF_WORDS),
            )
            .config(
                "hand-off-message",
                "reply when handing off; `{name}` is replaced",
                false,
                Some(DEFAULT_HAND_OFF_MESSAGE),
            )
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let faq: Vec<FaqEntry> = serde_json::from_str(event.config("faq").unwrap_or("[]"))
            .map_err(|e| {
                PluginError::invalid_config(format!("`faq` is not a valid FAQ list: {e}"))
            })?;
        let hours = parse_business_hours(event.config("business-hours").unwrap_or("always"))?;
        let cooldown_minutes: u64 = event
            .config("cooldown-minutes")
            .unwrap_or("60")
            .trim()
            .parse()
            .map_err(|_| PluginError::invalid_config("`cooldown-minutes` is not a whole number"))?;
        let hand_off_words = keyword_list(
            event
                .config("hand-off-words")
                .unwrap_or(DEFAULT_HAND_OFF_WORDS),
        );

        if event.trigger != Trigger::MessageReceived {
            return Ok(Vec::new());
        }
        let Some(message) = &event.message else {
            return Ok(Vec::new());
        };
        if !message.service_window_open {
            log::info("service window closed; not replying", &[]);
            return Ok(Vec::new());
        }
        let folded = event.text().map(fold).unwrap_or_default();
        let cooling_down = state::get_u64("last-reply")
            .is_some_and(|last| event.now.saturating_sub(last) < cooldown_minutes * 60);

        let mut actions = Vec::new();
        let hand_off = find_keyword(&folded, &hand_off_words).is_some();
        let reply = if hand_off {
            Some(
                event
                    .config("hand-off-message")
                    .unwrap_or(DEFAULT_HAND_OFF_MESSAGE),
            )
        } else if let Some(windows) = &hours
            && !is_open(windows, minute_of_week(&event))
        {
            Some(event.config("away-message").unwrap_or(DEFAULT_AWAY))
        } else {
            faq.iter()
                .find(|entry| {
                    entry
                        .keywords
                        .iter()
                        .any(|k| contains_keyword(&folded, &fold(k.trim())))
                })
                .map(|entry| entry.reply.as_str())
        };
        if let Some(template) = reply {
            if cooling_down {
                log::debug("within the cool-down; not replying", &[]);
            } else {
                state::set_u64("last-reply", event.now)
                    .map_err(|e| PluginError::failed(format!("state: {e}")))?;
                actions.push(Action::reply(personalise(template, &event)));
            }
        }
        // After the reply: the host applies actions in order, and once the
        // conversation is handed off it sends nothing more — the
        // confirmation included.
        if hand_off {
            actions.push(Action::hand_off("The contact asked to talk to a person"));
        }
        Ok(actions)
    }
}

fn minute_of_week(event: &Event) -> u32 {
    let (weekday, minute) = event.local_weekday_and_minute();
    u32::from(weekday) * 24 * 60 + u32::from(minute)
}

flowgate_sdk::export!(AutoReply);

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_sdk::harness::{self, DEFAULT_NOW, Rejection, TestEvent};

    const FAQ: &str = r#"[
        {"keywords": ["opening hours", "open today", "horario"], "reply": "We're open Mon-Fri 9-18, {name}."},
        {"keywords": ["price", "preço"], "reply": "Our price list: https://example.com/prices"}
    ]"#;
    // DEFAULT_NOW is Monday 10:00 UTC.
    const MONDAY_10: u64 = DEFAULT_NOW;

    fn event(text: &str) -> TestEvent {
        TestEvent::message(text).name("Ana").config("faq", FAQ)
    }

    #[test]
    fn answers_faq_with_the_name_when_granted() {
        harness::reset();
        let actions = harness::run::<AutoReply>(event("What are your opening hours?")).unwrap();
        assert_eq!(
            actions,
            vec![Action::reply("We're open Mon-Fri 9-18, Ana.")]
        );
    }

    #[test]
    fn name_placeholder_degrades_without_the_grant() {
        harness::reset();
        let mut e = event("Horário de hoje?").build();
        e.contact.name = None;
        assert_eq!(
            AutoReply::handle(e).unwrap(),
            vec![Action::reply("We're open Mon-Fri 9-18, there.")]
        );
    }

    #[test]
    fn one_reply_per_cooldown() {
        harness::reset();
        assert_eq!(
            harness::run::<AutoReply>(event("price?").at(MONDAY_10))
                .unwrap()
                .len(),
            1
        );
        let soon = harness::run::<AutoReply>(event("price?").at(MONDAY_10 + 59 * 60)).unwrap();
        assert_eq!(soon, vec![]);
        let later = harness::run::<AutoReply>(event("price?").at(MONDAY_10 + 60 * 60)).unwrap();
        assert_eq!(later.len(), 1);
    }

    #[test]
    fn away_message_outside_business_hours_in_local_time() {
        harness::reset();
        let hours = "mon-fri 09:00-18:00";
        // 10:00 UTC is 19:00 in Tokyo: closed.
        let tokyo = event("price?")
            .config("business-hours", hours)
            .timezone("Asia/Tokyo", 9 * 60);
        let actions = harness::run::<AutoReply>(tokyo).unwrap();
        assert_eq!(
            actions,
            vec![Action::reply(DEFAULT_AWAY.replace("{name}", "Ana"))]
        );
        harness::reset();
        // 10:00 UTC is 11:00 in Berlin: open, so the FAQ answers.
        let berlin = event("price?")
            .config("business-hours", hours)
            .timezone("Europe/Berlin", 60);
        let actions = harness::run::<AutoReply>(berlin).unwrap();
        assert_eq!(
            actions,
            vec![Action::reply("Our price list: https://example.com/prices")]
        );
    }

    #[test]
    fn business_hours_cross_midnight_and_the_week_boundary() {
        let windows = parse_business_hours("sun 22:00-02:00").unwrap().unwrap();
        let sunday_23 = 6 * 1440 + 23 * 60;
        let monday_01 = 60;
        let monday_03 = 3 * 60;
        assert!(is_open(&windows, sunday_23));
        assert!(is_open(&windows, monday_01));
        assert!(!is_open(&windows, monday_03));
        assert!(parse_business_hours("always").unwrap().is_none());
    }

    #[test]
    fn never_replies_with_the_window_closed() {
        harness::reset();
        let actions = harness::run::<AutoReply>(event("price?").window_closed()).unwrap();
        assert_eq!(actions, vec![]);
        assert!(harness::state().is_empty(), "no cool-down started");
    }

    #[test]
    fn asking_for_a_person_hands_off() {
        harness::reset();
        let actions = harness::run::<AutoReply>(event("Can I talk to a human please")).unwrap();
        assert_eq!(
            actions,
            vec![
                Action::reply("Sure, Ana, a member of our team will reply here shortly."),
                Action::hand_off("The contact asked to talk to a person"),
            ]
        );
    }

    #[test]
    fn unmatched_messages_get_no_reply() {
        harness::reset();
        assert_eq!(
            harness::run::<AutoReply>(event("hello there")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn bad_configuration_is_reported() {
        for (key, value) in [
            ("faq", "{}"),
            ("business-hours", "weekdays 9-5"),
            ("business-hours", "mon-fri 09:00"),
            ("business-hours", "fri-mon 09:00-17:00"),
            ("business-hours", "mon 25:00-26:00"),
            ("cooldown-minutes", "soon"),
        ] {
            let result = harness::run::<AutoReply>(event("price").config(key, value));
            assert!(
                matches!(
                    result,
                    Err(Rejection::Plugin(PluginError::InvalidConfig(_)))
                ),
                "{key}={value}: {result:?}"
            );
        }
    }
}
