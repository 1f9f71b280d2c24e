//! `flowgate serve` checks a `[cluster]` section before it touches
//! anything: a value this version cannot serve is refused, naming the
//! field and why.

use std::process::Command;

use flowgate_testkit::process::{free_port, write_config};

#[test]
fn serve_refuses_an_unservable_cluster_section_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowgate.toml");
    write_config(
        &config,
        free_port(),
        &dir.path().join("data"),
        "http://127.0.0.1:9",
        "",
        "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nnode_name = \"node-a\"\npartitions = 32\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("FLOWGATE_OPERATOR_TOKEN", "operator-token-for-tests")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(stderr.contains("cluster.partitions"), "{stderr}");
    assert!(stderr.contains("serves one partition"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "it refused before touching the data directory"
    );
}
