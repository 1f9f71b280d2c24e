//! `fixture-wasi-probe-py`: what the deny-all WASI context leaves a Python
//! plugin.

use flowgate::plugin::Action;
use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::polyglot;

use crate::polyglot::run;

#[test]
fn python_plugins_reach_nothing_through_the_deny_all_wasi_context() {
    let Some(plugin) = polyglot("fixture-wasi-probe-py") else {
        return;
    };
    // CPython for WASI imports sockets, files and the environment; the host
    // links them all, to a context that denies them.
    for import in ["wasi:filesystem/", "wasi:sockets/", "wasi:cli/environment"] {
        assert!(
            plugin.imports.iter().any(|i| i.starts_with(import)),
            "{import} in {:?}",
            plugin.imports
        );
    }
    let invocation = run(&plugin, message_event(Some("hi"), &[])).unwrap();
    let labels: Vec<&str> = invocation
        .actions
        .iter()
        .map(|a| match a {
            Action::AddLabel { label } => label.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        labels,
        [
            // No preopened directory: not even the app's own source, which
            // was readable when the component was built.
            "file:denied:FileNotFoundError",
            "listdir:denied:FileNotFoundError",
            "env:0",
            "connect:denied:PermissionError",
            "dns:denied:LookupError",
            // Modules not imported at build time cannot be loaded later.
            "late-import:denied:ModuleNotFoundError",
            // The clock is the host's real one: harmless, and plugins are
            // told to use `event.now` instead.
            "clock:ok",
        ]
    );
    // print() lands in the plugin's log, not on the host's terminal.
    assert_eq!(
        invocation
            .logs
            .iter()
            .map(|l| (l.level, l.message.as_str()))
            .collect::<Vec<_>>(),
        [("stdout", "probe says hello on stdout")]
    );
}
