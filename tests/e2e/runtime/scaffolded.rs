//! `scaffolded`, the plugin `flowgate plugin new` creates, as a component
//! configured with its defaults the way the service configures it.

use flowgate::plugin::Action;
use flowgate::runtime::{Call, PluginState};
use flowgate::view;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{load, shared_runtime};

#[test]
fn scaffolded_labels_and_answers_prices_counts_messages_and_hands_off() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "scaffolded");
    let config = view::resolve_config(&plugin.manifest, &[]).expect("the defaults suffice");
    let mut state = PluginState::default();
    let mut send = |text: &str, window_open: bool| {
        let mut event = message_event(Some(text), &[]);
        event.config = config.clone();
        event.message.as_mut().unwrap().service_window_open = window_open;
        let invocation = runtime
            .invoke(&plugin, Call::new(event).state(state.clone()))
            .unwrap();
        assert!(invocation.refused.is_empty(), "{:?}", invocation.refused);
        state = PluginState::new(invocation.state.merged());
        invocation.actions
    };
    // The committed event file's question.
    assert_eq!(
        send("Hi! What is the price of the blue jacket?", true),
        [
            Action::AddLabel {
                label: "pricing".into()
            },
            Action::Reply {
                text: "Our prices are at example.com/prices".into()
            }
        ]
    );
    // Outside the service window: the label, no reply.
    assert_eq!(
        send("prices?", false),
        [Action::AddLabel {
            label: "pricing".into()
        }]
    );
    assert_eq!(send("thanks", true), []);
    // The count lives in the plugin's state, carried from call to call.
    assert_eq!(
        send("can I talk to a human?", true),
        [Action::HandOff {
            note: "asked for a person after 4 message(s)".into()
        }]
    );
}
