//! The host side of the `flowgate:plugin` WIT world, generated once here and
//! used everywhere else through these re-exports.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../../wit",
});

pub use self::flowgate::plugin::log;
pub use self::flowgate::plugin::state;
pub use self::flowgate::plugin::types;
