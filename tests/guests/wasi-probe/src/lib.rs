//! Probes the WASI context the host gives it and reports what it found as
//! labels: environment variables, preopened directories, name lookup, and
//! whether writing to stdout/stderr works (it should, into the plugin log).

wit_bindgen::generate!({
    world: "fixture:wasi-probe/probe",
    path: ["../../../wit", "wit"],
    generate_all,
});

use flowgate::plugin::types::{Capability, LabelAlphabet, LabelPattern, LabelRule};
use wasi::cli::{environment, stderr, stdout};
use wasi::filesystem::preopens;
use wasi::sockets::{instance_network, ip_name_lookup};

struct Probe;

impl Guest for Probe {
    fn describe() -> Manifest {
        Manifest {
            id: "fixture-wasi-probe".into(),
            version: "0.1.0".into(),
            summary: "Reports what WASI lets it see (test fixture)".into(),
            purposes: vec!["essential.service.operations".into()],
            fields: vec![],
            capabilities: vec![Capability::AddLabel],
            config: vec![],
            labels: vec![
                LabelRule::Exact("stdout:ok".into()),
                LabelRule::Exact("stdout:failed".into()),
                count("env:"),
                count("args:"),
                count("preopens:"),
                LabelRule::Exact("dns:allowed".into()),
                LabelRule::Exact("dns:denied".into()),
            ],
        }
    }

    fn handle(_event: Event) -> Result<Vec<Action>, PluginError> {
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
        Ok(vec![
            Action::AddLabel(format!(
                "stdout:{}",
                if out && err { "ok" } else { "failed" }
            )),
            Action::AddLabel(format!("env:{env}")),
            Action::AddLabel(format!("args:{args}")),
            Action::AddLabel(format!("preopens:{dirs}")),
            Action::AddLabel(format!("dns:{lookup}")),
        ])
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
