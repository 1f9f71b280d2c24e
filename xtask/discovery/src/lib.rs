//! Which guests the repository has, by xtask's rules: the one place they
//! are written, read by `cargo xtask build-guests` (which builds them) and by
//! the test kit's build script (which generates `foreach_guest!`, so that a
//! guest without a component test fails to compile). Also the one place for
//! what both read of a guest xtask could not build ([`skip_note`],
//! [`ALLOW_SKIPPED`]).
//!
//! - A Rust guest is a crate under `plugins/`, `examples/` or `tests/guests/`
//!   whose Cargo.toml says `[package.metadata.flowgate] guest = true`, and
//!   which is a member of this workspace.
//! - A polyglot guest is a directory there with either a `pyproject.toml`
//!   saying `[tool.flowgate] guest = true` and naming the app's `module`,
//!   with the build tool pinned in `[dependency-groups] build`, or a
//!   `package.json` saying `"flowgate": {"guest": true, "source": …}`, with
//!   the build tool pinned in `devDependencies` and a `package-lock.json`
//!   beside it.
//!
//! ```no_run
//! let root = std::path::Path::new(".");
//! for guest in guest_discovery::rust_guests(root)? {
//!     println!("{} in {}", guest.package, guest.dir.display());
//! }
//! for guest in guest_discovery::polyglot_guests(root)? {
//!     println!("{} ({})", guest.name, guest.language.tool());
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The directories whose subdirectories may be guests.
pub const GUEST_DIRS: [&str; 3] = ["plugins", "examples", "tests/guests"];

/// The environment variable that lets what needs a guest xtask could not
/// build (its tool could not be installed) pass without running:
/// `FLOWGATE_ALLOW_SKIPPED_GUESTS=1`. Unset, such a guest fails the tests
/// that need it and `cargo xtask test`.
pub const ALLOW_SKIPPED: &str = "FLOWGATE_ALLOW_SKIPPED_GUESTS";

/// Whether [`ALLOW_SKIPPED`] is set (to anything but `0`).
pub fn skipping_allowed() -> bool {
    std::env::var(ALLOW_SKIPPED).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where xtask writes why it did not build guest `name`, beside the
/// components in `out_dir`.
pub fn skip_note(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!("{name}.skipped"))
}

/// A guest crate of this workspace.
#[derive(Debug, Clone)]
pub struct RustGuest {
    pub package: String,
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct CargoToml {
    package: Option<PackageSection>,
    /// A `[workspace]` table: the crate is a workspace of its own.
    workspace: Option<toml::Value>,
}

#[derive(Deserialize)]
struct PackageSection {
    name: String,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    flowgate: Option<FlowgateMetadata>,
}

#[derive(Deserialize)]
struct FlowgateMetadata {
    #[serde(default)]
    guest: bool,
}

/// Every Rust guest crate in the repository, sorted by package name.
pub fn rust_guests(root: &Path) -> Result<Vec<RustGuest>> {
    let mut guests = Vec::new();
    for dir in GUEST_DIRS {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let crate_dir = entry?.path();
            let manifest = crate_dir.join("Cargo.toml");
            if !manifest.is_file() {
                continue;
            }
            let text = fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let parsed: CargoToml =
                toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
            let Some(package) = parsed.package else {
                continue;
            };
            // The guest build is one `cargo build` over the workspace: a
            // crate outside it (a standalone `flowgate plugin new` crate
            // dropped here, say) would fail the build of every guest.
            if parsed.workspace.is_some() || !is_member(root, dir, &crate_dir) {
                eprintln!(
                    "xtask: skipping {}: not a member of this workspace (add it to \
                     [workspace] members in Cargo.toml, without a [workspace] of its own)",
                    crate_dir.display()
                );
                continue;
            }
            let is_guest = package
                .metadata
                .and_then(|m| m.flowgate)
                .is_some_and(|f| f.guest);
            if is_guest {
                guests.push(RustGuest {
                    package: package.name,
                    dir: crate_dir,
                });
            }
        }
    }
    guests.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(guests)
}

/// Whether the root manifest's workspace members include `crate_dir`
/// (found under `dir`): an exact path or a `dir/*` glob.
fn is_member(root: &Path, dir: &str, crate_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(root.join("Cargo.toml")) else {
        return false;
    };
    let Ok(manifest) = text.parse::<toml::Table>() else {
        return false;
    };
    let Some(name) = crate_dir.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let path = format!("{dir}/{name}");
    let listed = |key: &str| -> Vec<String> {
        manifest
            .get("workspace")
            .and_then(|w| w.get(key))
            .and_then(|m| m.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let matches = |pattern: &String| *pattern == path || *pattern == format!("{dir}/*");
    listed("members").iter().any(matches) && !listed("exclude").contains(&path)
}

/// The language of a guest built by a tool other than cargo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    JavaScript,
}

impl Language {
    /// The tool that builds a component from this language.
    pub fn tool(self) -> &'static str {
        match self {
            Language::Python => "componentize-py",
            Language::JavaScript => "componentize-js",
        }
    }
}

/// A guest written in Python or JavaScript.
#[derive(Debug, Clone)]
pub struct PolyglotGuest {
    pub name: String,
    pub language: Language,
    pub dir: PathBuf,
    /// Python: the app's module name. JavaScript: its source file, relative
    /// to `dir`.
    pub entry: String,
    /// Python: the pinned requirements of the build tool.
    pub requirements: Vec<String>,
}

#[derive(Deserialize)]
struct PyProject {
    project: Option<PyProjectMeta>,
    #[serde(rename = "dependency-groups", default)]
    dependency_groups: BTreeMap<String, Vec<String>>,
    tool: Option<PyTools>,
}

#[derive(Deserialize)]
struct PyProjectMeta {
    name: String,
}

#[derive(Deserialize)]
struct PyTools {
    flowgate: Option<FlowgateSection>,
}

#[derive(Deserialize)]
struct FlowgateSection {
    #[serde(default)]
    guest: bool,
    /// Python: the module holding the `WitWorld` class.
    module: Option<String>,
    /// JavaScript: the ES module exporting `describe` and `handle`.
    source: Option<String>,
}

#[derive(Deserialize)]
struct PackageJson {
    name: Option<String>,
    #[serde(rename = "devDependencies", default)]
    dev_dependencies: BTreeMap<String, String>,
    flowgate: Option<FlowgateSection>,
}

/// Every polyglot guest in the repository, sorted by name.
pub fn polyglot_guests(root: &Path) -> Result<Vec<PolyglotGuest>> {
    let mut guests = Vec::new();
    for parent in GUEST_DIRS {
        let Ok(entries) = fs::read_dir(root.join(parent)) else {
            continue;
        };
        for entry in entries {
            let dir = entry?.path();
            if let Some(guest) = python_guest(&dir)? {
                guests.push(guest);
            } else if let Some(guest) = javascript_guest(&dir)? {
                guests.push(guest);
            }
        }
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

/// The Python guest in `dir`, if it is one.
pub fn python_guest(dir: &Path) -> Result<Option<PolyglotGuest>> {
    let path = dir.join("pyproject.toml");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    let parsed: PyProject =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(flowgate) = parsed.tool.and_then(|t| t.flowgate).filter(|f| f.guest) else {
        return Ok(None);
    };
    let name = parsed
        .project
        .map(|p| p.name)
        .with_context(|| format!("{}: no [project] name", path.display()))?;
    let module = flowgate
        .module
        .with_context(|| format!("{}: [tool.flowgate] names no `module`", path.display()))?;
    let requirements = parsed
        .dependency_groups
        .get("build")
        .cloned()
        .unwrap_or_default();
    if !requirements
        .iter()
        .any(|r| r.starts_with("componentize-py"))
    {
        bail!(
            "{}: [dependency-groups] build must pin componentize-py",
            path.display()
        );
    }
    for requirement in &requirements {
        // Exact pins only: the component must not change because a registry
        // published a new release.
        let (_, version) = requirement.split_once("==").unwrap_or(("", ""));
        if version.is_empty()
            || !version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            bail!(
                "{}: build requirement `{requirement}` must pin an exact version (`name==1.2.3`)",
                path.display()
            );
        }
    }
    Ok(Some(PolyglotGuest {
        name,
        language: Language::Python,
        dir: dir.to_path_buf(),
        entry: module,
        requirements,
    }))
}

/// The JavaScript guest in `dir`, if it is one.
pub fn javascript_guest(dir: &Path) -> Result<Option<PolyglotGuest>> {
    let path = dir.join("package.json");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    let parsed: PackageJson =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(flowgate) = parsed.flowgate.filter(|f| f.guest) else {
        return Ok(None);
    };
    let name = parsed
        .name
        .with_context(|| format!("{}: no `name`", path.display()))?;
    let source = flowgate
        .source
        .with_context(|| format!("{}: `flowgate` names no `source`", path.display()))?;
    if !parsed
        .dev_dependencies
        .contains_key("@bytecodealliance/componentize-js")
    {
        bail!(
            "{}: devDependencies must pin @bytecodealliance/componentize-js",
            path.display()
        );
    }
    for (package, version) in &parsed.dev_dependencies {
        if !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            bail!(
                "{}: devDependency {package} `{version}` must be an exact version",
                path.display()
            );
        }
    }
    if !dir.join("package-lock.json").is_file() {
        bail!(
            "{}: no package-lock.json beside it (run `npm install` there once and commit the lock)",
            path.display()
        );
    }
    Ok(Some(PolyglotGuest {
        name,
        language: Language::JavaScript,
        dir: dir.to_path_buf(),
        entry: source,
        requirements: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("guest-discovery-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pyproject(build: &str) -> String {
        format!(
            "[project]\nname = \"demo-py\"\n\n[dependency-groups]\nbuild = [{build}]\n\n\
             [tool.flowgate]\nguest = true\nmodule = \"app\"\n"
        )
    }

    #[test]
    fn python_guests_need_an_exactly_pinned_componentize_py() {
        let dir = scratch("pins");
        fs::write(
            dir.join("pyproject.toml"),
            pyproject("\"componentize-py==0.25.1\""),
        )
        .unwrap();
        let guest = python_guest(&dir).unwrap().expect("a guest");
        assert_eq!(guest.name, "demo-py");
        assert_eq!(guest.entry, "app");
        assert_eq!(guest.requirements, ["componentize-py==0.25.1"]);

        for loose in ["\"componentize-py>=0.25\"", "\"componentize-py\"", ""] {
            fs::write(dir.join("pyproject.toml"), pyproject(loose)).unwrap();
            assert!(python_guest(&dir).is_err(), "{loose}");
        }
        // Not a flowgate guest: ignored, not an error.
        fs::write(dir.join("pyproject.toml"), "[project]\nname = \"other\"\n").unwrap();
        assert!(python_guest(&dir).unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn javascript_guests_need_exact_versions_and_a_lock() {
        let dir = scratch("js");
        let manifest = |version: &str| {
            format!(
                r#"{{"name": "demo-js", "devDependencies": {{"@bytecodealliance/componentize-js": "{version}"}},
                    "flowgate": {{"guest": true, "source": "app.js"}}}}"#
            )
        };
        fs::write(dir.join("package.json"), manifest("0.23.0")).unwrap();
        assert!(javascript_guest(&dir).is_err(), "no lock file");
        fs::write(dir.join("package-lock.json"), "{}").unwrap();
        let guest = javascript_guest(&dir).unwrap().expect("a guest");
        assert_eq!(
            (guest.name.as_str(), guest.entry.as_str()),
            ("demo-js", "app.js")
        );
        fs::write(dir.join("package.json"), manifest("^0.23.0")).unwrap();
        assert!(javascript_guest(&dir).is_err(), "a range");
        fs::remove_dir_all(&dir).unwrap();
    }
}
