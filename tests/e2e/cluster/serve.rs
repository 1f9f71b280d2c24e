//! `flowgate serve` does not pretend: given a `[cluster]` section, it
//! refuses to start and says cluster serving is not available yet, rather
//! than serve from the embedded store as if the section were not there.

use std::process::Command;

use flowgate_testkit::process::{free_port, write_config};

#[test]
fn serve_refuses_a_cluster_section_saying_cluster_serving_is_not_available_yet() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowgate.toml");
    write_config(
        &config,
        free_port(),
        &dir.path().join("data"),
        "http://127.0.0.1:9",
        "",
        "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnode_name = \"node-a\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--dev", "--config"])
        .arg(&config)
        .env("FLOWGATE_OPERATOR_TOKEN", "operator-token-for-tests")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("cluster serving is not available yet"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "it refused before touching the data directory"
    );
}
