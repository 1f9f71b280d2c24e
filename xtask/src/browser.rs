//! What the tenant console's browser tests need, found or installed:
//! Debian's Chromium and its WebDriver server (`chromium`, `chromium-driver`,
//! installed with apt when missing and xtask runs as root), and axe-core,
//! the accessibility checker the tests inject into each page (installed
//! with npm from `tests/browser/package-lock.json` into `target/browser/`).
//!
//! The tests read where everything is from `FLOWGATE_CHROMIUM`,
//! `FLOWGATE_CHROMEDRIVER` and `FLOWGATE_AXE_JS`, which `cargo xtask test`
//! sets. Nothing here is optional: a browser test that cannot start its
//! browser fails, so a machine without one fails here first, saying why.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::toolchain;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEBIAN_PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// Where the browser tests' tools are.
#[derive(Debug, Clone)]
pub struct BrowserTools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub axe: PathBuf,
}

impl BrowserTools {
    /// Set the variables the browser tests read.
    pub fn export(&self, command: &mut Command) {
        command
            .env("FLOWGATE_CHROMIUM", &self.chromium)
            .env("FLOWGATE_CHROMEDRIVER", &self.chromedriver)
            .env("FLOWGATE_AXE_JS", &self.axe);
    }
}

/// Find Chromium, ChromeDriver and axe-core, installing what is missing.
pub fn find_or_install(root: &Path) -> Result<BrowserTools> {
    let (chromium, chromedriver) = chromium()?;
    let axe = axe_core(root)?;
    Ok(BrowserTools {
        chromium,
        chromedriver,
        axe,
    })
}

fn chromium() -> Result<(PathBuf, PathBuf)> {
    let found = || {
        let chromium = PathBuf::from(CHROMIUM);
        let driver = PathBuf::from(CHROMEDRIVER);
        (chromium.is_file() && driver.is_file()).then_some((chromium, driver))
    };
    if let Some(found) = found() {
        return Ok(found);
    }
    if !toolchain::can_install_with_apt() {
        bail!(
            "the console's browser tests need Chromium and ChromeDriver ({CHROMIUM}, {CHROMEDRIVER}).\n\
             Install them with `apt-get install {}` (as root; xtask does this itself when run as root)",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    eprintln!(
        "xtask: installing Debian's {} for the console's browser tests (one time)",
        DEBIAN_PACKAGES.join(" + ")
    );
    toolchain::apt_install(&DEBIAN_PACKAGES)?;
    found().with_context(|| {
        format!(
            "apt-get installed {} but {CHROMIUM} or {CHROMEDRIVER} is still missing",
            DEBIAN_PACKAGES.join(" ")
        )
    })
}

/// axe-core from the committed lock, installed once per lock.
fn axe_core(root: &Path) -> Result<PathBuf> {
    let source = root.join("tests/browser");
    let dir = root.join("target/browser");
    let script = dir.join("node_modules/axe-core/axe.min.js");
    let lock = fs::read(source.join("package-lock.json"))
        .context("reading tests/browser/package-lock.json")?;
    let marker = dir.join(".installed-lock");
    if script.is_file() && fs::read(&marker).is_ok_and(|installed| installed == lock) {
        return Ok(script);
    }
    let npm = which("npm").context(
        "the console's browser tests need axe-core, installed with npm: no npm on PATH \
         (Debian: `apt-get install npm`)",
    )?;
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        fs::copy(source.join(file), dir.join(file))
            .with_context(|| format!("copying tests/browser/{file}"))?;
    }
    eprintln!(
        "xtask: installing axe-core with npm into {} (once)",
        dir.display()
    );
    // With the lock in place, npm installs exactly the locked version and
    // checks its integrity hash. axe-core has no install script.
    let status = Command::new(npm)
        .current_dir(&dir)
        .args(["install", "--ignore-scripts", "--no-audit", "--no-fund"])
        .args(["--fetch-retries=2", "--fetch-timeout=60000"])
        .status()
        .context("running npm install")?;
    if !status.success() {
        bail!(
            "npm install of axe-core in {} failed ({status})",
            dir.display()
        );
    }
    if !script.is_file() {
        bail!("npm installed axe-core but {} is missing", script.display());
    }
    fs::write(&marker, lock)?;
    Ok(script)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
