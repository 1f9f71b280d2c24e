//! The HTTP layer: the service in this process (`flowgate_testkit::service`),
//! driven over its APIs and signed webhooks like its users drive it, with
//! the fake Cloud API on the other side.

mod api_fuzz;
mod compliance;
mod floods;
mod privacy;
mod service;

use flowgate_testkit::setup::Install;
use serde_json::json;

/// auto-reply answering questions about prices, with no cool-down.
fn price_reply() -> Install {
    Install::new("auto-reply").config(json!({
        "faq": r#"[{"keywords": ["price"], "reply": "Prices: example.com"}]"#,
        "cooldown-minutes": "0",
    }))
}

/// labeller labelling questions about prices `pricing`.
fn pricing_labels() -> Install {
    Install::new("labeller")
        .config(json!({"rules": r#"[{"label": "pricing", "keywords": ["price"]}]"#}))
}
