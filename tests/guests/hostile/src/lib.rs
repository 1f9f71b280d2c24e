//! A guest that misbehaves on request, to prove the sandbox contains it.
//!
//! The installation's `attack` config key picks the misbehaviour; `none`
//! behaves (labels the contact `survived`), so one component also shows the
//! runtime still serves honest calls after a hostile one. `burn` is slow
//! but honest: it computes for `rounds` rounds (config) and labels the
//! contact `burnt`.

use std::sync::atomic::{AtomicU64, Ordering};

use flowgate_sdk::{
    Action, Capability, Event, Field, LabelAlphabet, Manifest, Plugin, PluginError, Purpose, log,
    state,
};

pub struct Hostile;

impl Plugin for Hostile {
    fn manifest() -> Manifest {
        Manifest::builder("fixture-hostile", "0.1.0")
            .summary("Misbehaves as configured (test fixture)")
            .purpose(Purpose::ESSENTIAL_SERVICE_OPERATIONS)
            // Only for the `label-leak` attack.
            .field(Field::PhoneNumber)
            .capability(Capability::AddLabel)
            // Declared so that an oversized reply meets the size limit, not
            // the capability check; `forbidden-action` asks for a hand-off.
            .capability(Capability::Reply)
            .capability(Capability::RemoveLabel)
            .label("survived")
            .label("logged")
            .label("burnt")
            .label_pattern("calls:", LabelAlphabet::Digits, 4)
            .config(
                "attack",
                "which misbehaviour to perform",
                false,
                Some("none"),
            )
            .config("rounds", "how long `burn` computes", false, Some("1000000"))
            .build()
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        match event.config("attack").unwrap_or("none") {
            "none" => Ok(vec![Action::add_label("survived")]),
            "loop" => {
                // An infinite loop the optimiser cannot remove.
                let mut n: u64 = event.now;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "burn" => {
                let rounds: u64 = event
                    .config("rounds")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(1_000_000);
                let mut n: u64 = event.now;
                for _ in 0..rounds {
                    n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                Ok(vec![Action::add_label("burnt")])
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xAB; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => Ok(vec![Action::add_label(format!("{}", recurse(event.now)))]),
            "panic" => panic!("the fixture panics on purpose"),
            "huge-reply" => Ok(vec![Action::reply("x".repeat(10 * 1024 * 1024))]),
            "forbidden-action" => Ok(vec![Action::hand_off("this plugin may not hand off")]),
            "too-many-actions" => Ok((0..1000)
                .map(|i| Action::add_label(format!("l{i}")))
                .collect()),
            "long-label" => Ok(vec![Action::add_label("l".repeat(65))]),
            "state-flood" => {
                for i in 0.. {
                    if let Err(error) = state::set(&format!("key-{i}"), b"v") {
                        return Err(PluginError::failed(format!("state refused: {error}")));
                    }
                }
                unreachable!()
            }
            "log-flood" => {
                for i in 0..100_000 {
                    log::info(&format!("line {i}"), &[]);
                }
                Ok(vec![Action::add_label("logged")])
            }
            "error" => Err(PluginError::failed("the fixture fails on purpose")),
            "label-leak" => {
                // Labels are shared with every installation granted them,
                // and outlive a withdrawn consent: write the phone number
                // and this installation's pseudonym into them (another
                // installation reading both could correlate its own
                // pseudonym), and remove a label the tenant set.
                let mut actions = Vec::new();
                if let Some(number) = &event.contact.phone_number {
                    actions.push(Action::add_label(number.clone()));
                }
                actions.push(Action::add_label(event.contact.pseudonym.clone()));
                actions.push(Action::remove_label("vip"));
                actions.push(Action::add_label("survived"));
                Ok(actions)
            }
            "static-counter" => {
                // Counts calls in guest memory: with a fresh instance per
                // event the count is always 1.
                static CALLS: AtomicU64 = AtomicU64::new(0);
                let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(vec![Action::add_label(format!("calls:{calls}"))])
            }
            "state-then-trap" => {
                let _ = state::set("written-before-trap", b"x");
                panic!("trap after writing state")
            }
            other => Err(PluginError::invalid_config(format!(
                "unknown attack `{other}`"
            ))),
        }
    }
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point of the fixture
fn recurse(n: u64) -> u64 {
    // Each frame keeps a buffer alive so the stack, not the optimiser, wins.
    let buffer = std::hint::black_box([n as u8; 256]);
    recurse(n.wrapping_add(1)).wrapping_add(u64::from(buffer[0]))
}

flowgate_sdk::export!(Hostile);
