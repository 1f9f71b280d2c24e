//! `lead-score`: scores contacts' interest, keeps counts in plugin state,
//! hands off once.

use flowgate::plugin::Action;
use flowgate::view::ProcessingState;
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
fn lead_score_without_consent_sees_no_text() {
    let mut scorer = Harness::new("lead-score", &[]);
    scorer.processing = ProcessingState::default();
    let actions = scorer.message(&contact(&[]), "I want to buy three right now", NOW, true);
    // Only engagement counts: the text was withheld for lack of consent.
    assert!(
        matches!(actions.as_slice(), [Action::SetLeadScore { score: 4, .. }]),
        "{actions:?}"
    );
}
