//! Probes the WASI context the host gives it and reports what it found as
//! labels: environment variables, preopened directories, name lookup,
//! whether writing to stdout/stderr works (it should, into the plugin log),
//! the clocks and the random sources.
//!
//! The `wait` config key makes it block on a WASI pollable instead:
//! - `sleep`: a monotonic-clock subscription for five seconds, `block`ed on;
//! - `poll-forever`: `poll` on a subscription to the end of time;
//! - `stdin`: a blocking read of standard input;
//! - `short-sleep`: 100 ms, then the clocks as labels (`slept:`);
//! - `busy-wait`: spin until the monotonic clock has moved by a second.

wit_bindgen::generate!({
    world: "fixture:wasi-probe/probe",
    path: ["../../../wit", "wit"],
    generate_all,
});

use flowgate::plugin::types::{Capability, ConfigKey, LabelAlphabet, LabelPattern, LabelRule};
use wasi::cli::{environment, stderr, stdin, stdout};
use wasi::clocks::{monotonic_clock, wall_clock};
use wasi::filesystem::preopens;
use wasi::io::poll;
use wasi::random::{insecure, insecure_seed, random};
use wasi::sockets::{instance_network, ip_name_lookup};

struct Probe;

const SECOND_NS: u64 = 1_000_000_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The clocks and the random sources, as labels.
fn time_and_chance() -> Vec<Action> {
    let wall = wall_clock::now();
    let (seed_high, _) = insecure_seed::insecure_seed();
    vec![
        Action::AddLabel(format!("wall:{}.{:09}", wall.seconds, wall.nanoseconds)),
        Action::AddLabel(format!("mono:{}", monotonic_clock::now())),
        Action::AddLabel(format!("random:{}", hex(&random::get_random_bytes(8)))),
        Action::AddLabel(format!(
            "insecure:{}",
            hex(&insecure::get_insecure_random_bytes(8))
        )),
        Action::AddLabel(format!("seed:{seed_high:016x}")),
    ]
}

impl Guest for Probe {
    fn describe() -> Manifest {
        Manifest {
            id: "fixture-wasi-probe".into(),
            version: "0.1.0".into(),
            // What describe() sees of the clocks and of chance, for the
            // host to check they are fixed.
            summary: format!(
                "Reports what WASI lets it see (test fixture); described at {} with {}",
                wall_clock::now().seconds,
                hex(&random::get_random_bytes(8)),
            ),
            purposes: vec!["essential.service.operations".into()],
            fields: vec![],
            capabilities: vec![Capability::AddLabel],
            config: vec![ConfigKey {
                name: "wait".into(),
                description: "block on a WASI pollable: sleep, poll-forever, stdin, \
                              short-sleep or busy-wait"
                    .into(),
                required: false,
                default_value: None,
            }],
            // What the probe reports as labels. The readings of the clocks
            // and of chance (`wall:`, `mono:`, `random:`, `insecure:`,
            // `seed:`, `slept:`) are long numbers and hex: no label rule
            // admits them, so the host refuses them, and a test reads them
            // from the refused actions.
            labels: vec![
                LabelRule::Exact("stdout:ok".into()),
                LabelRule::Exact("stdout:failed".into()),
                count("env:"),
                count("args:"),
                count("preopens:"),
                LabelRule::Exact("dns:allowed".into()),
                LabelRule::Exact("dns:denied".into()),
                LabelRule::Exact("stdin:closed".into()),
                LabelRule::Exact("stdin:read".into()),
                LabelRule::Exact("clock moved".into()),
            ],
        }
    }

    fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
        let wait = event
            .config
            .iter()
            .find(|(key, _)| key == "wait")
            .map(|(_, value)| value.as_str());
        match wait {
            None => {}
            Some("sleep") => monotonic_clock::subscribe_duration(5 * SECOND_NS).block(),
            Some("poll-forever") => {
                let forever = monotonic_clock::subscribe_instant(u64::MAX);
                poll::poll(&[&forever]);
            }
            Some("stdin") => {
                let read = stdin::get_stdin().blocking_read(1);
                return Ok(vec![Action::AddLabel(format!(
                    "stdin:{}",
                    if read.is_err() { "closed" } else { "read" }
                ))]);
            }
            Some("short-sleep") => {
                let before = monotonic_clock::now();
                monotonic_clock::subscribe_duration(SECOND_NS / 10).block();
                let mut labels = vec![Action::AddLabel(format!(
                    "slept:{}",
                    monotonic_clock::now() - before
                ))];
                labels.extend(time_and_chance());
                return Ok(labels);
            }
            Some("busy-wait") => {
                let until = monotonic_clock::now() + SECOND_NS;
                while monotonic_clock::now() < until {}
                return Ok(vec![Action::AddLabel("clock moved".into())]);
            }
            Some(other) => return Err(PluginError::InvalidConfig(format!("wait `{other}`?"))),
        }
        let out = stdout::get_stdout()
            .blocking_write_and_flush(b"probe says hello on stdout\n")
            .is_ok();
        let err = stderr::get_stderr()
            .blocking_write_and_flush(b"probe says hello on stderr\n")
            .is_ok();
        let env = environment::get_environment().len();
        let args = environment::get_arguments().len();
        let dirs = preopens::get_directories().len();
        let network = instance_network::instance_network();
        let lookup = match ip_name_lookup::resolve_addresses(&network, "example.com") {
            Ok(_) => "allowed",
            Err(_) => "denied",
        };
        let mut labels = vec![
            Action::AddLabel(format!(
                "stdout:{}",
                if out && err { "ok" } else { "failed" }
            )),
            Action::AddLabel(format!("env:{env}")),
            Action::AddLabel(format!("args:{args}")),
            Action::AddLabel(format!("preopens:{dirs}")),
            Action::AddLabel(format!("dns:{lookup}")),
        ];
        labels.extend(time_and_chance());
        Ok(labels)
    }
}

/// `prefix` and a count of up to four digits.
fn count(prefix: &str) -> LabelRule {
    LabelRule::Pattern(LabelPattern {
        prefix: prefix.into(),
        alphabet: LabelAlphabet::Digits,
        max_length: 4,
    })
}

export!(Probe);
