//! Structured logging into the host.
//!
//! Lines appear in the plugin's own log, which `flowgate plugin run` prints
//! for the author. The service keeps only their level and size: a plugin may
//! log data it was shown, and the host's logs hold no personal data.
//!
//! ```
//! flowgate_sdk::log::info("rule matched", &[("label", "pricing")]);
//! ```

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)] // the usual levels
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Write one line with key-value fields.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    backend::write(level, message, fields)
}

/// Write a debug line.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    write(Level::Debug, message, fields)
}

/// Write an info line.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    write(Level::Info, message, fields)
}

/// Write a warning.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    write(Level::Warn, message, fields)
}

/// Write an error line.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    write(Level::Error, message, fields)
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use super::Level;
    use crate::wit::flowgate::plugin::log as host;

    pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        host::write(level, message, &fields);
    }
}

/// Natively, lines are kept per thread so tests can assert on them
/// (see `harness::logs`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod backend {
    use std::cell::RefCell;

    use super::Level;

    /// One captured line: level, message and fields.
    pub(crate) type Line = (Level, String, Vec<(String, String)>);

    thread_local! {
        pub(crate) static LINES: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    }

    pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LINES.with(|lines| lines.borrow_mut().push((level, message.to_owned(), fields)));
    }
}
