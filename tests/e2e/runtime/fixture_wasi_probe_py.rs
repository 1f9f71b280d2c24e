//! `fixture-wasi-probe-py`: what the deny-all WASI context leaves a Python
//! plugin.

use flowgate_testkit::event::message_event;
use flowgate_testkit::guests::polyglot;

use crate::polyglot::run;
use crate::sandbox::{labels, readings_from};

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
    let labels = labels(&invocation);
    assert_eq!(
        labels[..6],
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
        ]
    );
    // Then the clocks and the random sources: the event's time and seeded
    // randomness (crate::polyglot checks their values).
    assert_eq!(
        readings_from(&labels, 6),
        ["wall", "mono", "urandom", "random"]
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
