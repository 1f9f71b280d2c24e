//! Finding (and on a fresh Debian machine, installing) a Rust toolchain that
//! can build `wasm32-unknown-unknown`.
//!
//! Two routes, tried in order:
//! 1. rustup's `wasm32-unknown-unknown` target for the active toolchain: the
//!    ordinary route on a developer's machine (`rustup target add`).
//! 2. Debian's `rustc-web` compiler with the `rust-web-src` sources, building
//!    the standard library from source (`-Zbuild-std`). This is the route on
//!    machines whose rustup cannot download targets; as root with apt, the
//!    packages are installed when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_STD_SOURCES: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_PACKAGES: [&str; 2] = ["rustc-web", "rust-web-src"];

/// How to invoke cargo for the wasm target.
#[derive(Debug, Clone)]
pub enum WasmToolchain {
    /// rustup has the target for the active toolchain.
    Rustup,
    /// Debian's compiler with std built from source.
    Debian { rustc: PathBuf, linker: PathBuf },
}

impl WasmToolchain {
    /// Find a toolchain, installing Debian's when that is the only way.
    pub fn find_or_install() -> Result<WasmToolchain> {
        if rustup_has_target() {
            return Ok(WasmToolchain::Rustup);
        }
        if let Some(found) = debian_toolchain()? {
            return Ok(found);
        }
        if can_install_with_apt() {
            eprintln!(
                "xtask: no {WASM_TARGET} target in rustup; installing Debian's {} (one time)",
                DEBIAN_PACKAGES.join(" + ")
            );
            install_debian_packages()?;
            if let Some(found) = debian_toolchain()? {
                return Ok(found);
            }
        }
        bail!(
            "no Rust toolchain that can build {WASM_TARGET} was found.\n\
             Either:\n  \
             - with rustup and a network: `rustup target add {WASM_TARGET}`, or\n  \
             - on Debian 12: `apt-get install {}` (as root; xtask does this itself when run as root)",
            DEBIAN_PACKAGES.join(" ")
        )
    }

    /// A `cargo build` command for the wasm target, with the environment this
    /// toolchain needs.
    pub fn cargo_build(&self, cargo: &Path) -> Command {
        let mut command = Command::new(cargo);
        command.arg("build").arg("--target").arg(WASM_TARGET);
        // Build scripts and proc-macros of guests must not pick up a wrapper
        // or flags meant for the host toolchain.
        command.env_remove("RUSTC_WRAPPER").env_remove("RUSTFLAGS");
        match self {
            WasmToolchain::Rustup => {}
            WasmToolchain::Debian { rustc, linker } => {
                command
                    .env("RUSTC", rustc)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                    .arg("-Zbuild-std=std,panic_abort");
            }
        }
        command
    }

    pub fn describe(&self) -> String {
        match self {
            WasmToolchain::Rustup => format!("rustup target {WASM_TARGET}"),
            WasmToolchain::Debian { rustc, .. } => {
                format!("Debian rustc-web ({}) with build-std", rustc.display())
            }
        }
    }
}

fn rustup_has_target() -> bool {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return false;
    };
    output.status.success()
        && String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|line| line.trim() == WASM_TARGET)
}

fn debian_toolchain() -> Result<Option<WasmToolchain>> {
    let rustc = PathBuf::from(DEBIAN_RUSTC);
    if !rustc.exists() || !Path::new(DEBIAN_STD_SOURCES).exists() {
        return Ok(None);
    }
    let Some(linker) = find_wasm_linker() else {
        bail!(
            "Debian's rustc-web is installed but no wasm linker was found: \
             looked for rust-lld in the sysroot of the `rustc` on PATH, then for \
             rust-lld and wasm-ld on PATH; install rustup's toolchain or Debian's `lld`"
        );
    };
    Ok(Some(WasmToolchain::Debian { rustc, linker }))
}

/// rustc-web ships no linker of its own; rustup's toolchain carries
/// `rust-lld`, which links wasm when rustc asks for the wasm flavour.
fn find_wasm_linker() -> Option<PathBuf> {
    let host_sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let in_sysroot = host_sysroot
        .map(|sysroot| sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"));
    let on_path = ["rust-lld", "wasm-ld"].into_iter().filter_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    });
    in_sysroot
        .into_iter()
        .chain(on_path)
        .find(|path| path.is_file())
}

/// Whether xtask may install Debian packages itself: running as root on a
/// machine with apt.
pub fn can_install_with_apt() -> bool {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    is_root && Path::new("/usr/bin/apt-get").exists()
}

fn install_debian_packages() -> Result<()> {
    apt_install(&DEBIAN_PACKAGES)
}

/// `apt-get update`, then install `packages` (without recommended ones).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running apt-get {}", args.join(" ")))?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    // The package lists of a fresh machine may be empty or stale.
    run(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages);
    run(&install)
}
