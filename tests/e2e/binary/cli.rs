//! The author CLI, run as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

use flowgate_testkit::guests::guests_dir;

fn flowgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(args)
        .output()
        .expect("running flowgate")
}

fn guest(name: &str) -> String {
    guests_dir()
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/samples/whatsapp")
        .join(name)
        .display()
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn inspect_shows_manifest_hash_and_imports() {
    let output = flowgate(&["plugin", "inspect", &guest("lead-score")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("lead-score 0.1.0"), "{text}");
    assert!(text.contains("personalize.profiling"));
    assert!(text.contains("flowgate:plugin/state@0.1.0"));

    let json = flowgate(&["plugin", "inspect", &guest("lead-score"), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let bytes = std::fs::read(guest("lead-score")).unwrap();
    assert_eq!(report["hash"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(report["size_bytes"], bytes.len());
    assert_eq!(report["manifest"]["fields"][0], "user.content.private");
}

#[test]
fn run_prints_actions_disclosure_fuel_and_time() {
    let output = flowgate(&[
        "plugin",
        "run",
        &guest("labeller"),
        "--event",
        &sample("text-message.json"),
        "--config",
        r#"rules=[{"label":"colour","keywords":["color"]}]"#,
        "--grant",
        "user.content.private",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("action     add-label \"colour\""), "{text}");
    assert!(text.contains("disclosed  user.content.private"), "{text}");
    assert!(
        text.contains("user.behavior.labels (not granted)"),
        "{text}"
    );
    assert!(text.contains("fuel"), "{text}");
    assert!(
        !text.contains("16505551234"),
        "the phone number is not disclosed"
    );
}

#[test]
fn run_without_grants_shows_nothing_personal() {
    let output = flowgate(&[
        "plugin",
        "run",
        &guest("labeller"),
        "-e",
        &sample("text-message.json"),
        "-c",
        r#"rules=[{"label":"colour","keywords":["color"]}]"#,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["disclosed"], serde_json::json!([]));
    assert_eq!(
        reports[0]["actions"],
        serde_json::json!([]),
        "no text, no label"
    );
}

#[test]
fn run_reports_a_contained_failure_with_exit_code_1() {
    let output = flowgate(&[
        "plugin",
        "run",
        &guest("fixture-hostile"),
        "-e",
        &sample("text-message.json"),
        "-c",
        "attack=loop",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("FAILED     ran out of fuel"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn run_carries_state_between_runs_in_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    for expected in ["set-lead-score 4 ", "set-lead-score 8 "] {
        let output = flowgate(&[
            "plugin",
            "run",
            &guest("lead-score"),
            "-e",
            &sample("image-no-caption.json"),
            "--state",
            state,
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).contains(expected), "{}", stdout(&output));
    }
}

#[test]
fn a_failed_run_leaves_the_state_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let counted = flowgate(&[
        "plugin",
        "run",
        &guest("lead-score"),
        "-e",
        &sample("image-no-caption.json"),
        "--state",
        state,
    ]);
    assert!(counted.status.success(), "{}", stderr(&counted));
    let before = std::fs::read_to_string(state).unwrap();
    assert!(before.contains("messages"), "{before}");
    // The hostile fixture writes a state key for the same contact, then
    // panics: the write is discarded with the call.
    let failed = flowgate(&[
        "plugin",
        "run",
        &guest("fixture-hostile"),
        "-e",
        &sample("image-no-caption.json"),
        "-c",
        "attack=state-then-trap",
        "--state",
        state,
    ]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stdout(&failed).contains("FAILED     panicked"),
        "{}",
        stdout(&failed)
    );
    assert!(
        !stdout(&failed).contains("written-before-trap"),
        "{}",
        stdout(&failed)
    );
    // Nothing of the failed call is kept: lead-score's entries are as they
    // were, and the hostile plugin (another pseudonym for the contact) has
    // none.
    let parse = |text: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(text).unwrap()
    };
    let (before, after) = (
        parse(&before),
        parse(&std::fs::read_to_string(state).unwrap()),
    );
    for (contact, entries) in &after {
        match before.get(contact) {
            Some(kept) => assert_eq!(entries, kept, "{contact}"),
            None => assert_eq!(entries, &serde_json::json!({}), "{contact}"),
        }
    }
    assert_eq!(after.len(), 2, "{after:?}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let missing = flowgate(&["plugin", "inspect", "/nonexistent/plugin.wasm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("reading /nonexistent/plugin.wasm"));

    let undeclared = flowgate(&["plugin", "inspect", &guest("fixture-undeclared-import")]);
    assert_eq!(undeclared.status.code(), Some(1));
    assert!(stderr(&undeclared).contains("`fixture:undeclared/network`"));

    let dir = tempfile::tempdir().unwrap();
    let bad_event = dir.path().join("event.json");
    std::fs::write(&bad_event, "{\"txet\": \"typo\"}").unwrap();
    let output = flowgate(&[
        "plugin",
        "run",
        &guest("fixture-trivial"),
        "-e",
        bad_event.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("neither a WhatsApp webhook body nor a simple event"));

    let output = flowgate(&[
        "plugin",
        "run",
        &guest("fixture-trivial"),
        "-e",
        &sample("text-message.json"),
        "--grant",
        "user.email",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("known: user.name"),
        "{}",
        stderr(&output)
    );

    let output = flowgate(&[
        "plugin",
        "run",
        &guest("labeller"),
        "-e",
        &sample("text-message.json"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("required config key `rules`"),
        "{}",
        stderr(&output)
    );
}

/// The report of the issue: `flowgate plugin run` on a Python plugin whose
/// `handle` calls `time.sleep(5)` said "exceeded its 500 ms deadline" after
/// holding the call for 5,005 ms. The same for a JavaScript plugin awaiting
/// a timer and a Rust one blocking on a WASI pollable.
#[test]
fn run_stops_a_plugin_that_sleeps_at_its_deadline() {
    for name in [
        "fixture-wasi-probe",
        "fixture-wasi-probe-py",
        "fixture-wasi-probe-js",
    ] {
        if !guests_dir().join(format!("{name}.wasm")).is_file()
            && guests_dir().join(format!("{name}.skipped")).is_file()
        {
            // xtask could not build it here; the runtime tests say so.
            continue;
        }
        let output = flowgate(&[
            "plugin",
            "run",
            &guest(name),
            "-e",
            &sample("text-message.json"),
            "-c",
            "wait=sleep",
            "--json",
        ]);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
        let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            reports[0]["error"],
            serde_json::json!({"kind": "deadline", "deadline_ms": 500}),
            "{name}"
        );
        let elapsed = reports[0]["elapsed_ms"].as_f64().unwrap();
        assert!(elapsed < 1_000.0, "{name}: the call took {elapsed} ms");
    }
}
