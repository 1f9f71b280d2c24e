//! Building every guest crate into a WebAssembly component.
//!
//! Which crates are guests is `guest_discovery`'s to say. All guests are
//! built in one cargo invocation (so the standard library is built once when
//! it is built from source), then each core module is turned into a
//! component with `wit-component`. Components land in `target/guests/`.
//! Guests written in Python and JavaScript are built after them (see
//! [`crate::polyglot`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use guest_discovery::{GUEST_DIRS, PolyglotGuest, RustGuest};

use crate::polyglot;
use crate::toolchain::{WASM_TARGET, WasmToolchain};

const PROFILE: &str = "guest";

/// Where the components are written.
pub fn output_dir(root: &Path) -> PathBuf {
    root.join("target/guests")
}

/// Build the selected guests (all when `only` is empty) and componentize them.
/// Returns the component paths.
pub fn build(root: &Path, only: &[String]) -> Result<Vec<PathBuf>> {
    let all = guest_discovery::rust_guests(root)?;
    let polyglot = guest_discovery::polyglot_guests(root)?;
    for name in only {
        let known =
            all.iter().any(|g| &g.package == name) || polyglot.iter().any(|g| &g.name == name);
        if !known {
            let known: Vec<&str> = all
                .iter()
                .map(|g| g.package.as_str())
                .chain(polyglot.iter().map(|g| g.name.as_str()))
                .collect();
            bail!("no guest named `{name}`; guests are: {}", known.join(", "));
        }
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|n| n == name);
    let selected: Vec<RustGuest> = all.into_iter().filter(|g| wanted(&g.package)).collect();
    let polyglot: Vec<PolyglotGuest> = polyglot.into_iter().filter(|g| wanted(&g.name)).collect();
    if only.is_empty() && selected.is_empty() {
        bail!("no guest crates found under {}", GUEST_DIRS.join(", "));
    }
    let mut components = build_rust(root, &selected)?;
    polyglot::build(root, &polyglot)?;
    components.extend(
        polyglot
            .iter()
            .map(|g| output_dir(root).join(format!("{}.wasm", g.name)))
            .filter(|path| path.is_file()),
    );
    Ok(components)
}

fn build_rust(root: &Path, selected: &[RustGuest]) -> Result<Vec<PathBuf>> {
    if selected.is_empty() {
        return Ok(Vec::new());
    }

    let toolchain = WasmToolchain::find_or_install()?;
    let started = Instant::now();
    eprintln!(
        "xtask: building {} guest(s) with {}",
        selected.len(),
        toolchain.describe()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = root.join("target/guest-build");
    let mut command = toolchain.cargo_build(Path::new(&cargo));
    command
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["--profile", PROFILE]);
    for guest in selected {
        command.args(["--package", &guest.package]);
    }
    let status = command
        .status()
        .context("running cargo for the wasm guests")?;
    if !status.success() {
        bail!("building the wasm guests failed ({status})");
    }

    let out_dir = output_dir(root);
    fs::create_dir_all(&out_dir)?;
    let mut components = Vec::new();
    for guest in selected {
        let core = target_dir
            .join(WASM_TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", guest.package.replace('-', "_")));
        let component = out_dir.join(format!("{}.wasm", guest.package));
        if is_newer(&component, &core)? {
            components.push(component);
            continue;
        }
        componentize(&core, &component)
            .with_context(|| format!("componentizing guest `{}`", guest.package))?;
        let size = fs::metadata(&component)?.len();
        eprintln!(
            "xtask:   {:<24} {:>8} bytes  {}",
            guest.package,
            size,
            component.display()
        );
        components.push(component);
    }
    eprintln!(
        "xtask: guests ready in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        out_dir.display()
    );
    Ok(components)
}

fn is_newer(output: &Path, input: &Path) -> Result<bool> {
    let modified = |path: &Path| -> Result<Option<SystemTime>> {
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(meta.modified()?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let input_time = modified(input)?
        .with_context(|| format!("cargo reported success but {} is missing", input.display()))?;
    Ok(modified(output)?.is_some_and(|out| out >= input_time))
}

/// Turn a core module (with the component-type section wit-bindgen embeds)
/// into a component. Written to a temporary file first so an interrupted run
/// never leaves a truncated component behind.
fn componentize(core: &Path, component: &Path) -> Result<()> {
    let module = fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()?;
    let partial = component.with_extension("wasm.partial");
    fs::write(&partial, bytes)?;
    fs::rename(&partial, component)?;
    Ok(())
}
