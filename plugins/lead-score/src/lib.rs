//! `lead-score`: a 0–100 lead score from intent signals, with a reason.
//!
//! The score adds up:
//! - **intent**, accumulated over the conversation and kept in state
//!   (capped at 60): buying words +25, questions about price +15 and about
//!   availability or delivery +10, cooling words ("just looking", "too
//!   expensive") −20;
//! - **engagement**: +4 per message, up to +20 (message count in state);
//! - **labels**, when the tenant grants them: per-label weights from the
//!   `label-weights` config (`vip=15, complaint=-20`).
//!
//! A new score is emitted only when it changes. When it first reaches
//! `hand-off-at` (default 80) the plugin hands the conversation to a human
//! once. Word lists are configurable (comma-separated) and default to
//! English, Portuguese, Spanish and German.
//!
//! Lead scoring is profiling: the purpose is `personalize.profiling`, so the
//! host runs the plugin only for contacts who consented to it. Without that
//! consent it is not called at all: no count, no score. Without the tenant's
//! grant of the message text, only engagement counts.

use flowgate_sdk::text::{find_keyword, fold, keyword_list};
use flowgate_sdk::{
    Action, Capability, Event, Field, Manifest, Plugin, PluginError, Purpose, Trigger, state,
};

// "order" and "i want" alone are left out: "my order arrived broken, I want
// a refund" is no buying signal.
const BUYING: &str = "buy, purchase, place an order, i'd like to order, i'll take, i will take, \
    sign me up, subscribe, comprar, quero comprar, encomendar, kaufen, bestellen, ich nehme";
const PRICE: &str = "price, cost, how much, quote, discount, preco, quanto custa, valor, \
    precio, cuanto cuesta, preis, was kostet, wie viel";
const AVAILABILITY: &str = "in stock, available, availability, deliver, shipping, when can, \
    disponivel, entrega, tem em estoque, disponible, envio, verfugbar, lieferung, auf lager";
const COOLING: &str = "just looking, not interested, too expensive, no thanks, maybe later, \
    refund, broken, cancel, so olhando, nao tenho interesse, muito caro, reembolso, \
    nur schauen, zu teuer, kein interesse, kaputt, erstattung";

const INTENT_CAP: i64 = 60;
const ENGAGEMENT_PER_MESSAGE: i64 = 4;
const ENGAGEMENT_CAP: i64 = 20;

pub struct LeadScore;

struct Signals {
    buying: Vec<String>,
    price: Vec<String>,
    availability: Vec<String>,
    cooling: Vec<String>,
    label_weights: Vec<(String, i64)>,
    hand_off_at: Option<u8>,
}

impl Signals {
    fn from_config(event: &Event) -> Result<Signals, PluginError> {
        let list = |key: &str, default: &str| keyword_list(event.config(key).unwrap_or(default));
        let mut label_weights = Vec::new();
        for entry in event.config("label-weights").unwrap_or("").split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (label, weight) = entry
                .split_once('=')
                .and_then(|(l, w)| Some((l.trim(), w.trim().parse::<i64>().ok()?)))
                .filter(|(_, w)| (-100..=100).contains(w))
                .ok_or_else(|| {
                    PluginError::invalid_config(format!(
                        "`label-weights` entry `{entry}` is not label=weight with weight -100..100"
                    ))
                })?;
            label_weights.push((label.to_owned(), weight));
        }
        let hand_off_at = match event.config("hand-off-at").unwrap_or("80").trim() {
            "off" | "" => None,
            value => Some(
                value
                    .parse::<u8>()
                    .ok()
                    .filter(|v| *v <= 100)
                    .ok_or_else(|| {
                        PluginError::invalid_config(format!(
                            "`hand-off-at` is `{value}`; expected 0..100 or `off`"
                        ))
                    })?,
            ),
        };
        Ok(Signals {
            buying: list("buying-words", BUYING),
            price: list("price-words", PRICE),
            availability: list("availability-words", AVAILABILITY),
            cooling: list("cooling-words", COOLING),
            label_weights,
            hand_off_at,
        })
    }
}

impl Plugin for LeadScore {
    fn manifest() -> Manifest {
        Manifest::builder("lead-score", "0.1.0")
            .summary("Scores leads 0-100 from buying intent, questions and engagement")
            .purpose(Purpose::PERSONALIZE_PROFILING)
            .field(Field::MessageText)
            .field(Field::Labels)
            .capability(Capability::SetLeadScore)
            .capability(Capability::HandOff)
            .config(
                "buying-words",
                "comma-separated words that show buying intent",
                false,
                Some(BUYING),
            )
            .config(
                "price-words",
                "comma-separated words of price questions",
                false,
                Some(PRICE),
            )
            .config(
                "availability-words",
                "comma-separated words of availability and delivery questions",
                false,
                Some(AVAILABILITY),
            )
            .config(
                "cooling-words",
                "comma-separated words that lower intent",
                false,
                Some(COOLING),
            )
            .config(
                "label-weights",
                "label=weight pairs, e.g. `vip=15, complaint=-20`",
                false,
                Some(""),
            )
            .config(
                "hand-off-at",
                "score at which to hand off to a human once, or `off`",
                false,
                Some("80"),
            )
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let signals = Signals::from_config(&event)?;
        if event.trigger != Trigger::MessageReceived {
            return Ok(Vec::new());
        }
        let mut reasons: Vec<String> = Vec::new();

        let mut intent = state::get_u64("intent").unwrap_or(0) as i64;
        if let Some(text) = event.text() {
            let folded = fold(text);
            let mut delta = 0;
            let mut add = |words: &[String], points: i64, what: &str| {
                if let Some(word) = find_keyword(&folded, words) {
                    delta += points;
                    reasons.push(format!("{what} \"{word}\" ({points:+})"));
                }
            };
            add(&signals.buying, 25, "buying word");
            add(&signals.price, 15, "asked about price");
            add(&signals.availability, 10, "asked about availability");
            add(&signals.cooling, -20, "cooling word");
            intent = (intent + delta).clamp(0, INTENT_CAP);
        }
        let messages = state::get_u64("messages").unwrap_or(0) + 1;
        let engagement = (messages as i64 * ENGAGEMENT_PER_MESSAGE).min(ENGAGEMENT_CAP);
        reasons.push(format!("{messages} message(s) (+{engagement})"));
        if intent > 0 {
            reasons.push(format!("intent so far {intent}"));
        }

        let mut label_points = 0;
        for (label, weight) in &signals.label_weights {
            if event.contact.has_label(label) {
                label_points += weight;
                reasons.push(format!("label {label} ({weight:+})"));
            }
        }

        let score = (intent + engagement + label_points).clamp(0, 100) as u8;
        let previous = state::get_u64("score").map(|s| s as u8);
        let record = |key: &str, value: u64| {
            state::set_u64(key, value).map_err(|e| PluginError::failed(format!("state: {e}")))
        };
        record("intent", intent as u64)?;
        record("messages", messages)?;
        record("score", u64::from(score))?;

        let mut actions = Vec::new();
        if previous != Some(score) {
            actions.push(Action::lead_score(score, reasons.join("; ")));
        }
        if let Some(threshold) = signals.hand_off_at
            && score >= threshold
            && state::get("handed-off").is_none()
        {
            record("handed-off", 1)?;
            actions.push(Action::hand_off(format!(
                "Hot lead: score {score} reached the hand-off threshold {threshold}"
            )));
        }
        Ok(actions)
    }
}

flowgate_sdk::export!(LeadScore);

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_sdk::harness::{self, Rejection, TestEvent};

    fn score_of(actions: &[Action]) -> Option<u8> {
        actions.iter().find_map(|a| match a {
            Action::SetLeadScore { score, .. } => Some(*score),
            _ => None,
        })
    }

    #[test]
    fn buying_and_price_questions_raise_the_score_with_reasons() {
        harness::reset();
        let actions =
            harness::run::<LeadScore>(TestEvent::message("I want to buy two, how much?")).unwrap();
        let Action::SetLeadScore { score, reason } = &actions[0] else {
            panic!("{actions:?}")
        };
        // buying 25 + price 15 + one message 4.
        assert_eq!(*score, 44);
        assert!(reason.contains("buying word \"buy\""), "{reason}");
        assert!(
            reason.contains("asked about price \"how much\""),
            "{reason}"
        );
    }

    #[test]
    fn score_accumulates_over_messages_and_is_emitted_only_on_change() {
        harness::reset();
        let first = harness::run::<LeadScore>(TestEvent::message("hello")).unwrap();
        assert_eq!(score_of(&first), Some(4));
        let second =
            harness::run::<LeadScore>(TestEvent::message("Quanto custa? Tem entrega?")).unwrap();
        assert_eq!(score_of(&second), Some(8 + 15 + 10));
        let cooled = harness::run::<LeadScore>(TestEvent::message("hmm, too expensive")).unwrap();
        assert_eq!(score_of(&cooled), Some(12 + 5));
        // Engagement caps at 20; intent stays: the score stops changing.
        for _ in 0..3 {
            harness::run::<LeadScore>(TestEvent::message("ok")).unwrap();
        }
        let settled = harness::run::<LeadScore>(TestEvent::message("ok")).unwrap();
        assert_eq!(settled, vec![], "unchanged score is not re-sent");
    }

    #[test]
    fn complaints_are_not_mistaken_for_buying_intent() {
        harness::reset();
        let actions = harness::run::<LeadScore>(TestEvent::message(
            "My order arrived broken, I want a refund",
        ))
        .unwrap();
        assert_eq!(score_of(&actions), Some(4), "{actions:?}");
    }

    #[test]
    fn labels_weigh_in_only_when_granted_and_configured() {
        harness::reset();
        let event = TestEvent::message("hello")
            .labels(["vip"])
            .config("label-weights", "vip=30, complaint=-20");
        assert_eq!(
            score_of(&harness::run::<LeadScore>(event).unwrap()),
            Some(34)
        );
        harness::reset();
        let mut event = TestEvent::message("hello")
            .config("label-weights", "vip=30")
            .build();
        event.contact.labels = None;
        assert_eq!(score_of(&LeadScore::handle(event).unwrap()), Some(4));
    }

    #[test]
    fn hands_off_once_when_the_threshold_is_reached() {
        harness::reset();
        let hot =
            || TestEvent::message("I want to buy, price? in stock?").config("hand-off-at", "50");
        let first = harness::run::<LeadScore>(hot()).unwrap();
        assert_eq!(score_of(&first), Some(54));
        assert!(matches!(first.last(), Some(Action::HandOff(_))));
        let again = harness::run::<LeadScore>(hot()).unwrap();
        assert!(
            !again.iter().any(|a| matches!(a, Action::HandOff(_))),
            "{again:?}"
        );
    }

    #[test]
    fn is_not_run_for_a_contact_without_consent_to_profiling() {
        harness::reset();
        let result = harness::run::<LeadScore>(
            TestEvent::message("I want to buy two, how much?").without_consent(),
        );
        assert_eq!(
            result,
            Err(Rejection::NotInvoked {
                purpose: Purpose::PERSONALIZE_PROFILING
            })
        );
        assert_eq!(harness::state(), vec![], "nothing counted");
        // Consent to profiling in general covers it.
        let consenting = TestEvent::message("hello").consents([Purpose::custom("personalize")]);
        assert!(harness::run::<LeadScore>(consenting).is_ok());
    }

    #[test]
    fn without_text_only_engagement_counts() {
        harness::reset();
        let mut event = TestEvent::message("I want to buy").build();
        event.message.as_mut().unwrap().text = None;
        assert_eq!(score_of(&LeadScore::handle(event).unwrap()), Some(4));
    }

    #[test]
    fn bad_configuration_is_reported() {
        for (key, value) in [
            ("label-weights", "vip"),
            ("label-weights", "vip=500"),
            ("hand-off-at", "101"),
        ] {
            let result = harness::run::<LeadScore>(TestEvent::message("x").config(key, value));
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
