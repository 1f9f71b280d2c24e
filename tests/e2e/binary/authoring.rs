//! The flow author's path: scaffold a plugin, test it natively, build it,
//! run it with a trace of what it was shown and why.
//!
//! `tests/guests/scaffolded` is what `flowgate plugin new scaffolded
//! --dir tests/guests` creates; the guest build compiles it like any
//! plugin, so these tests cover the scaffold from template to component.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flowgate_testkit::guests::guests_dir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn flowgate_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("running flowgate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fixture() -> PathBuf {
    repo().join("tests/guests/scaffolded")
}

#[test]
fn plugin_new_scaffolds_a_crate_whose_native_tests_pass() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = repo().join("sdk");
    let created = flowgate_in(
        dir.path(),
        &[
            "plugin",
            "new",
            "scaffolded",
            "--sdk-path",
            sdk.to_str().unwrap(),
        ],
    );
    assert!(created.status.success(), "{}", text(&created));
    assert!(
        text(&created).contains("cargo test"),
        "next steps are printed"
    );
    let crate_dir = dir.path().join("scaffolded");
    // The committed fixture is exactly what the generator makes today.
    for file in ["src/lib.rs", "events/hello.json"] {
        assert_eq!(
            std::fs::read_to_string(crate_dir.join(file)).unwrap(),
            std::fs::read_to_string(fixture().join(file)).unwrap(),
            "{file} drifted from tests/guests/scaffolded: regenerate the fixture"
        );
    }
    // Outside a checkout the crate is a workspace of its own.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"), "{manifest}");
    assert!(manifest.contains("guest = true"));

    // Its native tests pass with plain `cargo test` (the workspace's lock
    // file pins the same dependency versions; the target directory is kept
    // between runs so this costs seconds after the first).
    std::fs::copy(repo().join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tested = Command::new(cargo)
        .current_dir(&crate_dir)
        .args(["test", "--quiet"])
        .env("CARGO_TARGET_DIR", repo().join("target/scaffold-test"))
        .output()
        .unwrap();
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(
        text(&tested).contains("4 passed"),
        "the example's four tests ran: {}",
        text(&tested)
    );

    // Again: refused, nothing overwritten. A bad name: refused with advice.
    let again = flowgate_in(dir.path(), &["plugin", "new", "scaffolded"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let bad = flowgate_in(dir.path(), &["plugin", "new", "Order_Status"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("lowercase letters"), "{}", text(&bad));
    assert!(!dir.path().join("Order_Status").exists());
}

#[test]
fn the_scaffolded_plugin_runs_and_the_trace_explains_every_field() {
    let component = guests_dir().join("scaffolded.wasm");
    let event = fixture().join("events/hello.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "run",
            component.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--trace",
        ];
        args.extend_from_slice(extra);
        let output = flowgate_in(&repo(), &args);
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };

    let granted = run(&["--grant", "all"]);
    assert!(
        granted.contains("action     add-label \"pricing\""),
        "{granted}"
    );
    assert!(granted.contains("action     reply"), "{granted}");
    let line = |out: &str, field: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(field))
            .unwrap_or_else(|| panic!("no trace line for {field}: {out}"))
            .to_owned()
    };
    assert!(
        line(&granted, "user.content.private").contains("disclosed  \"Hi! What is the price"),
        "{granted}"
    );
    assert!(line(&granted, "user.name").contains("not declared"));

    let ungranted = run(&[]);
    assert!(line(&ungranted, "user.content.private").contains("not granted by the tenant"));
    assert!(ungranted.contains("actions    (none)"), "no text, no match");

    let restricted = run(&["--grant", "all", "--restricted"]);
    assert!(line(&restricted, "user.content.private").contains("restricted"));
    assert!(restricted.contains("not invoked"), "{restricted}");

    let objected = run(&["--grant", "all", "--object", "essential"]);
    assert!(
        line(&objected, "user.content.private").contains("objected to `essential`"),
        "{objected}"
    );

    // Consent: lead-score's purpose needs it, so without it the plugin is
    // not invoked at all (as in the service), and the trace says why.
    let lead_score = guests_dir().join("lead-score.wasm");
    let lead_score = lead_score.to_str().unwrap();
    let event = event.to_str().unwrap();
    let output = flowgate_in(
        &repo(),
        &[
            "plugin",
            "run",
            lead_score,
            "--event",
            event,
            "--grant",
            "all",
            "--no-consent",
            "--trace",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let printed = text(&output);
    assert!(
        printed.contains(
            "not invoked: the contact has not consented to `personalize.profiling`, \
             which this plugin's processing rests on"
        ),
        "{printed}"
    );
    assert!(!printed.contains("action "), "{printed}");
    let output = flowgate_in(
        &repo(),
        &[
            "plugin",
            "run",
            lead_score,
            "--event",
            event,
            "--grant",
            "all",
            "--no-consent",
            "--trace",
            "--json",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["invoked"], false, "{reports}");
    assert_eq!(reports[0]["actions"], serde_json::json!([]), "{reports}");
    assert_eq!(reports[0]["state_changes"], serde_json::json!({}));
    assert_eq!(reports[0]["fuel"], 0);
    let trace = reports[0]["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 6, "every field the host knows");
    let text_field = trace
        .iter()
        .find(|t| t["field"] == "user.content.private")
        .unwrap();
    assert_eq!(text_field["disclosed"], false);
    assert_eq!(text_field["absent"]["reason"], "no-consent");
    assert_eq!(text_field["absent"]["purpose"], "personalize.profiling");
}

#[test]
fn run_and_componentize_accept_the_core_module_cargo_builds() {
    let core = guests_dir()
        .join("../guest-build/wasm32-unknown-unknown/guest/scaffolded.wasm")
        .canonicalize()
        .expect("the guest build leaves the core module of the scaffolded plugin");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scaffolded.wasm");
    let made = flowgate_in(
        &repo(),
        &[
            "plugin",
            "componentize",
            core.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(guests_dir().join("scaffolded.wasm")).unwrap(),
        "the same component as the guest build"
    );
    let event = fixture().join("events/hello.json");
    let ran = flowgate_in(
        &repo(),
        &[
            "plugin",
            "run",
            core.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--grant",
            "all",
        ],
    );
    assert!(ran.status.success(), "{}", text(&ran));
    assert!(text(&ran).contains("action     reply"), "{}", text(&ran));

    // Not wasm at all: a clear error.
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm\x01\0\0\0junk").unwrap();
    let junk = flowgate_in(
        &repo(),
        &[
            "plugin",
            "componentize",
            dir.path().join("junk.wasm").to_str().unwrap(),
            "--out",
            dir.path().join("x.wasm").to_str().unwrap(),
        ],
    );
    assert!(!junk.status.success());
    assert!(
        text(&junk).contains("does not componentize"),
        "{}",
        text(&junk)
    );
}
