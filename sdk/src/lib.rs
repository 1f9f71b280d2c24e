//! Write [flowgate](https://example.invalid/flowgate) plugins in plain Rust.
//!
//! A flowgate plugin is a WebAssembly component that the host runs, sandboxed,
//! on every WhatsApp event of the tenants that enabled it. With this crate a
//! plugin is an ordinary Rust type implementing [`Plugin`], exported with one
//! macro, [`export!`]. The host shows it a minimised view of the contact
//! ([`Contact`]: every personal field is an `Option`) and applies the
//! [`Action`]s it returns after checking them against its [`Manifest`].
//!
//! ```
//! use flowgate_sdk::{Action, Capability, Event, Field, Manifest, Plugin, PluginError, Purpose};
//!
//! struct Greeter;
//!
//! impl Plugin for Greeter {
//!     fn manifest() -> Manifest {
//!         Manifest::builder("greeter", "0.1.0")
//!             .summary("Says hello to people who say hello")
//!             .purpose(Purpose::ESSENTIAL_SERVICE)
//!             .field(Field::MessageText)
//!             .capability(Capability::Reply)
//!             .build()
//!     }
//!
//!     fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
//!         let says_hello = event
//!             .text()
//!             .is_some_and(|text| text.trim().eq_ignore_ascii_case("hello"));
//!         Ok(if says_hello { vec![Action::reply("Hello! How can we help?")] } else { vec![] })
//!     }
//! }
//!
//! flowgate_sdk::export!(Greeter);
//! # fn main() {}
//! ```
//!
//! Build it into a component with `cargo xtask build-guests` in the flowgate
//! repository (or `cargo build --target wasm32-unknown-unknown` followed by
//! componentization), try it with `flowgate plugin run`, and test it natively
//! with the [`harness`] (feature `harness`):
//!
//! ```
//! # use flowgate_sdk::{Action, Event, Manifest, Plugin, PluginError};
//! # struct Greeter;
//! # impl Plugin for Greeter {
//! #     fn manifest() -> Manifest { Manifest::builder("greeter", "0.1.0").build() }
//! #     fn handle(event: Event) -> Result<Vec<Action>, PluginError> {
//! #         Ok(if event.text() == Some("hello") { vec![Action::reply("Hello! How can we help?")] } else { vec![] })
//! #     }
//! # }
//! # #[cfg(feature = "harness")] {
//! use flowgate_sdk::harness::TestEvent;
//!
//! let actions = Greeter::handle(TestEvent::message("hello").build()).unwrap();
//! assert_eq!(actions, vec![Action::reply("Hello! How can we help?")]);
//! # }
//! ```
//!
//! # What a plugin may rely on
//! - `handle` runs in a fresh instance for every event: statics and caches do
//!   not survive between events. Use [`state`] for what must.
//! - There is no clock, network, file system or randomness beyond what
//!   [`Event`] carries ([`Event::now`]). (Plugins in other languages that
//!   import WASI get clocks that start at `event.now` and move only while
//!   they wait, and randomness seeded per installation and event: nothing
//!   of the host's either. See the `plugin` world in `wit/plugin.wit`.)
//! - The host enforces limits on fuel (instructions), wall-clock time, memory,
//!   the number of actions and the length of texts. A plugin that exceeds
//!   them is stopped for that event; repeated failures disable the
//!   installation until its circuit breaker closes again.

#![warn(missing_docs)]

mod action;
mod event;
#[cfg(feature = "harness")]
pub mod harness;
pub mod log;
mod manifest;
pub mod state;
pub mod text;

pub use action::{Action, PluginError};
pub use event::{Contact, DeliveryStatus, Event, Message, MessageKind, Status, Trigger};
pub use manifest::{
    Capability, ConfigKey, Field, LabelAlphabet, LabelRule, Manifest, ManifestBuilder, Purpose,
};

/// The generated bindings of the `flowgate:plugin` WIT world. Not part of the
/// stable API: use the types at the crate root.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "flowgate_sdk::wit",
    });
}

/// A flowgate plugin: what it declares and how it handles an event.
///
/// Both functions are associated functions rather than methods because the
/// host creates a fresh instance for every call: there is no `self` that
/// outlives an event.
pub trait Plugin {
    /// What the plugin is, what data it needs and what it may do. The host
    /// reads it once, at upload, and enforces it on every call; it must not
    /// depend on configuration or state.
    fn manifest() -> Manifest;

    /// Handle one event and return the actions to apply, in order.
    ///
    /// Return [`PluginError::InvalidConfig`] when the installation's
    /// configuration cannot be used, and [`PluginError::Failed`] for anything
    /// else; the contact sees nothing either way.
    fn handle(event: Event) -> Result<Vec<Action>, PluginError>;
}

/// Export a [`Plugin`] as the component's `describe` and `handle` functions.
///
/// Use it once per plugin crate, at the crate root:
///
/// ```
/// # use flowgate_sdk::{Action, Event, Manifest, Plugin, PluginError};
/// struct Noop;
/// impl Plugin for Noop {
///     fn manifest() -> Manifest { Manifest::builder("noop", "1.0.0").build() }
///     fn handle(_: Event) -> Result<Vec<Action>, PluginError> { Ok(vec![]) }
/// }
/// flowgate_sdk::export!(Noop);
/// # fn main() {}
/// ```
///
/// On targets other than `wasm32` the macro expands to a compile-time check
/// that the type implements [`Plugin`] and nothing else, so plugin crates
/// build and unit-test natively.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            // Fails to compile, pointing at the caller's type, when it is not a plugin.
            fn __flowgate_assert_plugin<P: $crate::Plugin>() {}
            let _ = __flowgate_assert_plugin::<$plugin>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __FlowgateExport;
            impl $crate::wit::Guest for __FlowgateExport {
                fn describe() -> $crate::wit::flowgate::plugin::types::Manifest {
                    $crate::__private::describe::<$plugin>()
                }
                fn handle(
                    event: $crate::wit::flowgate::plugin::types::Event,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<$crate::wit::flowgate::plugin::types::Action>,
                    $crate::wit::flowgate::plugin::types::PluginError,
                > {
                    $crate::__private::handle::<$plugin>(event)
                }
            }
    $crate::wit::__export_plugin_world!(__FlowgateExport with_types_in $crate::wit);
        };
    };
}

/// Support for [`export!`]; not part of the stable API.
#[doc(hidden)]
pub mod __private {
    use crate::wit::flowgate::plugin::types as wit;
    use crate::{Event, Plugin};
    pub use std::vec::Vec;

    pub fn describe<P: Plugin>() -> wit::Manifest {
        P::manifest().into()
    }

    pub fn handle<P: Plugin>(event: wit::Event) -> Result<Vec<wit::Action>, wit::PluginError> {
        // The host reports a trap as "panicked: <message>" when the last
        // log line before it carries the `panic` field.
        #[cfg(target_arch = "wasm32")]
        std::panic::set_hook(Box::new(|info| {
            crate::log::write(
                crate::log::Level::Error,
                &info.to_string(),
                &[("panic", "true")],
            );
        }));
        match P::handle(Event::from(event)) {
            Ok(actions) => Ok(actions.into_iter().map(Into::into).collect()),
            Err(error) => Err(error.into()),
        }
    }
}
