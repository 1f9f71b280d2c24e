//! Shared test support: finding the built components and making events.

pub mod service;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use flowgate::runtime::bindings::types as wit;
use flowgate::runtime::{LoadedPlugin, Runtime, RuntimeConfig};

/// Where `cargo xtask build-guests` put the components.
pub fn guests_dir() -> PathBuf {
    std::env::var_os("FLOWGATE_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/guests"))
}

/// The bytes of a built component.
pub fn component(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The end-to-end tests run built components: \
             run them with `cargo xtask test`, or `cargo xtask build-guests` first",
            path.display()
        )
    })
}

/// One runtime shared by the tests of this binary, as the service shares
/// one: the pooling allocator reserves address space per runtime.
pub fn shared_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("runtime"))
}

pub fn load(runtime: &Runtime, name: &str) -> Arc<LoadedPlugin> {
    runtime
        .load(&component(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A message event with every field present; tests minimise as needed.
pub fn message_event(text: Option<&str>, config: &[(&str, &str)]) -> wit::Event {
    wit::Event {
        trigger: wit::Trigger::MessageReceived,
        contact: wit::ContactView {
            pseudonym: "ps_test".into(),
            name: Some("Ana".into()),
            phone_number: None,
            user_id: None,
            labels: Some(vec![]),
            lead_score: None,
        },
        message: Some(wit::MessageView {
            kind: if text.is_some() {
                wit::MessageKind::Text
            } else {
                wit::MessageKind::Image
            },
            text: text.map(str::to_owned),
            received_at: NOW,
            service_window_open: true,
        }),
        status: None,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        now: NOW,
        timezone: "UTC".into(),
        utc_offset_minutes: 0,
    }
}

/// Monday 2025-06-09 10:00:00 UTC.
pub const NOW: u64 = 1_749_463_200;
