//! `greeter`, the README's smallest plugin, as a component: it answers a
//! hello with a greeting, by name when the name is shown to it.

use flowgate::plugin::{Action, Capability, DataField};
use flowgate::runtime::Call;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{load, shared_runtime};

fn reply(text: &str) -> Vec<Action> {
    vec![Action::Reply { text: text.into() }]
}

#[test]
fn greeter_answers_a_hello_by_name_and_ignores_everything_else() {
    let runtime = shared_runtime();
    let greeter = load(runtime, "greeter");
    assert_eq!(greeter.manifest.id, "greeter");
    assert_eq!(
        greeter.manifest.fields,
        [DataField::MessageText, DataField::ProfileName]
    );
    assert_eq!(greeter.manifest.capabilities, [Capability::Reply]);
    assert!(!greeter.uses_wasi, "it needs nothing but the event");

    let answer = |text: Option<&str>, name: Option<&str>| {
        let mut event = message_event(text, &[]);
        event.contact.name = name.map(str::to_owned);
        let invocation = runtime.invoke(&greeter, Call::new(event)).unwrap();
        assert!(invocation.refused.is_empty(), "{:?}", invocation.refused);
        invocation.actions
    };
    // Greetings in several languages, ignoring case, accents and a final
    // `!` or `.`.
    for hello in ["Hello!", "olá", "HALLO.", " hi "] {
        assert_eq!(
            answer(Some(hello), Some("Ana")),
            reply("Hello Ana! How can we help?"),
            "{hello}"
        );
    }
    // Without the name (not granted, or not known) it still reads well.
    assert_eq!(
        answer(Some("hello"), None),
        reply("Hello there! How can we help?")
    );
    // Anything more than a greeting, and media without text, get nothing.
    assert_eq!(answer(Some("hello, how much?"), Some("Ana")), []);
    assert_eq!(answer(None, Some("Ana")), []);
}
