//! The smallest real plugin, as in the README: it answers "hello" with a
//! greeting, using the contact's name when the tenant grants it.
//!
//! Try it:
//!
//! ```sh
//! cargo xtask build-guests greeter
//! echo '{"text": "Hello", "name": "Ana"}' > /tmp/hello.json
//! cargo run -p flowgate-cli -- plugin run target/guests/greeter.wasm -e /tmp/hello.json --grant all
//! ```

use flowgate_sdk::text::fold;
use flowgate_sdk::{Action, Capability, Event, Field, Manifest, Plugin, PluginError, Purpose};

pub struct Greeter;

impl Plugin for Greeter {
    fn manifest() -> Manifest {
        Manifest::builder("greeter", "0.1.0")
            .summary("Says hello to people who say hello")
            .purpose(Purpose::ESSENTIAL_SERVICE)
            .field(Field::MessageText)
            .field(Field::ProfileName)
            .capability(Capability::Reply)
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let greets = event
            .text()
            .map(|text| fold(text.trim().trim_end_matches(['!', '.'])))
            .is_some_and(|text| ["hello", "hi", "ola", "hallo"].contains(&text.as_str()));
        if !greets {
            return Ok(vec![]);
        }
        let name = event.contact.name.as_deref().unwrap_or("there");
        Ok(vec![Action::reply(format!(
            "Hello {name}! How can we help?"
        ))])
    }
}

flowgate_sdk::export!(Greeter);

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_sdk::harness::{self, TestEvent};

    #[test]
    fn greets_by_name_in_several_languages() {
        for hello in ["Hello!", "olá", "HALLO."] {
            let actions = harness::run::<Greeter>(TestEvent::message(hello).name("Ana")).unwrap();
            assert_eq!(
                actions,
                vec![Action::reply("Hello Ana! How can we help?")],
                "{hello}"
            );
        }
    }

    #[test]
    fn ignores_everything_else() {
        assert_eq!(
            harness::run::<Greeter>(TestEvent::message("hello, how much?")).unwrap(),
            vec![]
        );
    }
}
