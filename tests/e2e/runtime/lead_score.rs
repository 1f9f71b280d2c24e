//! `lead-score`: scores contacts' interest, keeps counts in plugin state,
//! hands off once.

use flowgate::plugin::{Action, Purpose};
use flowgate::view::{self, ProcessingState};
use flowgate_testkit::event::NOW;

use crate::first_party::{Harness, contact};

#[test]
fn lead_score_accumulates_in_state_and_hands_off_once() {
    let mut scorer = Harness::new("lead-score", &[("hand-off-at", "50")]);
    let someone = contact(&[]);
    let first = scorer.message(&someone, "hello", NOW, true);
    assert!(
        matches!(first.as_slice(), [Action::SetLeadScore { score: 4, .. }]),
        "{first:?}"
    );
    let second = scorer.message(
        &someone,
        "I want to buy it, how much? Is it in stock?",
        NOW + 60,
        true,
    );
    assert!(
        matches!(second[0], Action::SetLeadScore { score: 58, .. }),
        "{second:?}"
    );
    assert!(matches!(second[1], Action::HandOff { .. }));
    let third = scorer.message(&someone, "thanks", NOW + 120, true);
    assert!(
        !third.iter().any(|a| matches!(a, Action::HandOff { .. })),
        "hands off only once: {third:?}"
    );
}

#[test]
fn lead_score_is_not_run_without_consent() {
    // Lead scoring is profiling: without the contact's consent the host
    // does not call the plugin at all, so it counts nothing.
    let scorer = Harness::new("lead-score", &[]);
    assert_eq!(
        view::disclose(
            scorer.manifest(),
            &scorer.grants,
            &ProcessingState::default()
        ),
        Err(view::NotProcessed::NoConsent {
            purpose: Purpose::parse("personalize.profiling").unwrap()
        })
    );
}
