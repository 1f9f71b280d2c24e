//! `auto-reply`: answers frequently asked questions, once per cool-down.

use flowgate::plugin::{Action, DataField};
use flowgate_testkit::event::NOW;

use crate::first_party::{Harness, contact};

#[test]
fn auto_reply_answers_once_per_cooldown_and_never_outside_the_window() {
    let faq = r#"[{"keywords": ["opening hours"], "reply": "Open 9-18, {name}."}]"#;
    let mut replier = Harness::new("auto-reply", &[("faq", faq), ("cooldown-minutes", "30")]);
    let someone = contact(&[]);
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW, false),
        vec![],
        "window closed"
    );
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW, true),
        vec![Action::Reply {
            text: "Open 9-18, Sheena Nelson.".into()
        }]
    );
    assert_eq!(
        replier.message(&someone, "opening hours?", NOW + 600, true),
        vec![]
    );
    assert_eq!(
        replier
            .message(&someone, "opening hours?", NOW + 1800, true)
            .len(),
        1
    );
}

#[test]
fn auto_reply_without_the_name_grant_does_not_learn_the_name() {
    let faq = r#"[{"keywords": ["hours"], "reply": "Hi {name}!"}]"#;
    let mut replier = Harness::new("auto-reply", &[("faq", faq)]);
    replier.grants.remove(&DataField::ProfileName);
    assert_eq!(
        replier.message(&contact(&[]), "hours?", NOW, true),
        vec![Action::Reply {
            text: "Hi there!".into()
        }]
    );
}
