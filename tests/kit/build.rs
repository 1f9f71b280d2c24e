//! Generates `foreach_guest!` from the guests the repository has, as
//! wasmtime's test-programs artifacts crate does: a test file that calls
//! `foreach_guest!(assert_test_exists)` stops compiling when a guest is added
//! without a component test.
//!
//! The list is read here, at build time, with the rules `cargo xtask
//! build-guests` builds by (the `guest-discovery` crate), rather than written
//! by xtask: a guest added to the repository is then noticed by a plain
//! `cargo test` or `cargo clippy`, before any guest is built. Building the
//! components stays xtask's job (it needs a wasm toolchain, pip and npm).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("../..");
    // Guests come and go with directories under these, and with workspace
    // membership.
    println!(
        "cargo::rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    for dir in guest_discovery::GUEST_DIRS {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }

    let mut guests: Vec<(String, &str)> = Vec::new();
    for guest in guest_discovery::rust_guests(&root).expect("finding the Rust guests") {
        guests.push((guest.package, "rust"));
    }
    for guest in guest_discovery::polyglot_guests(&root).expect("finding the polyglot guests") {
        guests.push((guest.name, guest.language.tool()));
    }
    guests.sort();

    let mut code = String::from(
        "/// Invokes `$mac!(name)` once for every guest of the repository, `name`\n\
         /// being the guest's name with `-` as `_` (`fixture_hostile`).\n\
         #[macro_export]\n\
         macro_rules! foreach_guest {\n    ($mac:ident) => {\n",
    );
    for (name, _) in &guests {
        writeln!(code, "        $mac!({});", name.replace('-', "_")).unwrap();
    }
    code.push_str("    };\n}\n\n");
    code.push_str(
        "/// Every guest of the repository: its name and what builds it\n\
         /// (`rust`, `componentize-py`, `componentize-js`).\n\
         pub const GUESTS: &[(&str, &str)] = &[\n",
    );
    for (name, builder) in &guests {
        writeln!(code, "    ({name:?}, {builder:?}),").unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets it")).join("guests.rs");
    std::fs::write(out, code).expect("writing the guest list");
}
