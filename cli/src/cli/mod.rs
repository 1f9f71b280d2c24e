//! Subcommands of the `flowgate` binary.

pub mod demo;
pub mod ops;
pub mod plugin;
pub mod scaffold;
pub mod serve;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr; `RUST_LOG` (or `FLOWGATE_LOG`) sets the filter.
pub fn init_tracing() {
    let filter = std::env::var("FLOWGATE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
