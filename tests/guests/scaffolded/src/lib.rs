//! scaffolded: a flowgate plugin.
//!
//! It labels messages that mention the configured keywords, answers them
//! with the configured reply (only inside WhatsApp's 24-hour service window),
//! counts each contact's messages in plugin state, and hands the
//! conversation to a human when the contact asks for one.
//!
//! Change `manifest()` to declare what you need — a field you do not
//! declare never reaches `handle` — and `handle()` to decide what to do.
//! See docs/plugin-authoring.md in the flowgate repository.

use flowgate_sdk::text::fold;
use flowgate_sdk::{
    Action, Capability, Event, Field, Manifest, Plugin, PluginError, Purpose, state,
};

pub struct Scaffolded;

impl Plugin for Scaffolded {
    fn manifest() -> Manifest {
        Manifest::builder("scaffolded", "0.1.0")
            .summary("Labels and answers questions about the configured keywords")
            .purpose(Purpose::ESSENTIAL_SERVICE)
            .field(Field::MessageText)
            .capability(Capability::Reply)
            .capability(Capability::AddLabel)
            .capability(Capability::HandOff)
            // Every label the plugin may add: the tenant sees them before
            // enabling it, and the host drops any other.
            .label("pricing")
            .config(
                "keywords",
                "Comma-separated words that trigger the reply",
                false,
                Some("price,prices,cost"),
            )
            .config(
                "reply",
                "The answer to send",
                false,
                Some("Our prices are at example.com/prices"),
            )
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let Some(text) = event.text() else {
            return Ok(vec![]); // a status update, or a message without text
        };
        let seen = state::get_u64("messages").unwrap_or(0) + 1;
        state::set_u64("messages", seen).map_err(|e| PluginError::failed(e.to_string()))?;

        let words = fold(text);
        let words: Vec<&str> = words.split(|c: char| !c.is_alphanumeric()).collect();
        if words.contains(&"human") || words.contains(&"agent") {
            return Ok(vec![Action::hand_off(format!(
                "asked for a person after {seen} message(s)"
            ))]);
        }
        let keywords = event.config("keywords").unwrap_or_default();
        let matches = keywords
            .split(',')
            .map(|k| fold(k.trim()))
            .any(|k| !k.is_empty() && words.contains(&k.as_str()));
        if !matches {
            return Ok(vec![]);
        }
        let mut actions = vec![Action::add_label("pricing")];
        // Outside the window WhatsApp only accepts templates: the host would
        // drop the reply, so do not ask for it.
        if event
            .message
            .as_ref()
            .is_some_and(|m| m.service_window_open)
        {
            actions.push(Action::reply(event.config("reply").unwrap_or_default()));
        }
        Ok(actions)
    }
}

flowgate_sdk::export!(Scaffolded);

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_sdk::harness::{self, TestEvent};

    #[test]
    fn answers_and_labels_a_question_about_prices() {
        harness::reset();
        let actions = harness::run::<Scaffolded>(TestEvent::message("What is the PRICE?")).unwrap();
        assert_eq!(
            actions,
            vec![
                Action::add_label("pricing"),
                Action::reply("Our prices are at example.com/prices"),
            ]
        );
    }

    #[test]
    fn never_replies_outside_the_service_window() {
        harness::reset();
        let event = TestEvent::message("price?").window_closed();
        assert_eq!(
            harness::run::<Scaffolded>(event).unwrap(),
            vec![Action::add_label("pricing")]
        );
    }

    #[test]
    fn counts_messages_and_hands_off_on_request() {
        harness::reset();
        harness::run::<Scaffolded>(TestEvent::message("hello")).unwrap();
        let actions =
            harness::run::<Scaffolded>(TestEvent::message("can I talk to a human?")).unwrap();
        assert_eq!(
            actions,
            vec![Action::hand_off("asked for a person after 2 message(s)")]
        );
    }

    #[test]
    fn keywords_come_from_the_configuration() {
        harness::reset();
        let event =
            TestEvent::message("Do you deliver to Lyon?").config("keywords", "deliver,delivery");
        assert_eq!(harness::run::<Scaffolded>(event).unwrap().len(), 2);
    }
}
