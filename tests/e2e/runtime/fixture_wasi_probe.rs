//! `fixture-wasi-probe`: a Rust guest built for WASI reaches nothing through
//! the host's deny-all WASI context, and its output is captured.

use flowgate::plugin::Action;
use flowgate::runtime::Call;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::{load, shared_runtime};

#[test]
fn wasi_guests_run_under_a_deny_all_context_with_output_captured() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "fixture-wasi-probe");
    assert!(plugin.uses_wasi);
    let invocation = runtime
        .invoke(&plugin, Call::new(message_event(Some("hi"), &[])))
        .unwrap();
    let labels: Vec<String> = invocation
        .actions
        .iter()
        .map(|a| match a {
            Action::AddLabel { label } => label.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        labels,
        vec!["stdout:ok", "env:0", "args:0", "preopens:0", "dns:denied"]
    );
    let logged: Vec<(&str, &str)> = invocation
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logged,
        vec![
            ("stdout", "probe says hello on stdout"),
            ("stderr", "probe says hello on stderr")
        ]
    );
}
