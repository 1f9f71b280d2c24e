//! `flowgate plugin new`: a plugin crate that builds, tests and runs from
//! the first minute.
//!
//! Where the crate goes decides how it depends on the SDK. Where a flowgate
//! checkout's workspace members include it (`plugins/<name>`) it is a
//! member (`flowgate-sdk.workspace = true`) that `cargo xtask build-guests`
//! builds; anywhere else it is a workspace of its own with a path
//! dependency on the SDK, built natively with `cargo test` and for wasm with
//! `cargo build --target wasm32-unknown-unknown`.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

const LIB_RS: &str = include_str!("templates/lib.rs.in");
const CARGO_TOML: &str = include_str!("templates/Cargo.toml.in");
const STANDALONE: &str = include_str!("templates/standalone.toml.in");
const HELLO_EVENT: &str = include_str!("templates/hello.json");

#[derive(Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and hyphens, starting
    /// with a letter (it is the crate name and the manifest id).
    pub name: String,
    /// The directory to create the crate in (as `<dir>/<name>`).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The flowgate SDK (the `sdk/` directory of a flowgate checkout).
    /// Default: the checkout the crate is created in, or the one this
    /// `flowgate` binary was built from.
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// What was created.
pub struct Scaffold {
    pub crate_dir: PathBuf,
    /// Whether the crate is a member of a flowgate workspace.
    pub member: bool,
}

/// Check a plugin name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!(
            "`{name}` is not a plugin name: use 1 to 64 lowercase letters, digits and single \
             hyphens, starting with a letter (for example `order-status`)"
        );
    }
    Ok(())
}

/// `order-status` → `OrderStatus`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The flowgate checkout containing `path`, if any: the nearest ancestor
/// with `sdk/Cargo.toml` naming the `flowgate-sdk` package.
fn checkout_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("sdk/Cargo.toml"))
                .is_ok_and(|manifest| manifest.contains("name = \"flowgate-sdk\""))
        })
        .map(Path::to_path_buf)
}

/// `path` relative to `base` when both are absolute (`../../sdk`), so the
/// generated crate keeps working when the checkout moves with it.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path.iter().collect();
    }
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    relative.extend(&path[common..]);
    relative
}

/// Whether `crate_dir` is matched by the checkout's workspace members
/// (an exact path, or a `dir/*` glob).
fn is_member(root: &Path, crate_dir: &Path) -> bool {
    let Ok(manifest) = std::fs::read_to_string(root.join("Cargo.toml")) else {
        return false;
    };
    let Ok(manifest) = manifest.parse::<toml::Table>() else {
        return false;
    };
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    members
        .iter()
        .filter_map(|m| m.as_str())
        .any(|member| match member.strip_suffix("/*") {
            Some(dir) => crate_dir.parent() == Some(&root.join(dir)),
            None => crate_dir == root.join(member),
        })
}

fn toml_string(path: &Path) -> String {
    format!("{:?}", path.to_string_lossy().replace('\\', "/"))
}

/// Create the crate.
pub fn create(args: &NewArgs) -> Result<Scaffold> {
    validate_name(&args.name)?;
    let cwd = std::env::current_dir()?;
    let parent = cwd.join(&args.dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let parent = parent.canonicalize()?;
    let crate_dir = parent.join(&args.name);
    if crate_dir.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            crate_dir.display()
        );
    }
    let checkout = checkout_of(&parent);
    let member = checkout
        .as_ref()
        .is_some_and(|root| is_member(root, &crate_dir));
    let (sdk, sdk_harness, standalone) = if member {
        (
            "{ workspace = true }".to_owned(),
            "{ workspace = true, features = [\"harness\"] }".to_owned(),
            String::new(),
        )
    } else {
        let sdk_dir = match &args.sdk_path {
            Some(path) => cwd.join(path),
            None => checkout
                .clone()
                .or_else(|| {
                    std::env::current_exe()
                        .ok()
                        .and_then(|exe| checkout_of(&exe))
                })
                .map(|root| root.join("sdk"))
                .context("cannot find the flowgate SDK: pass --sdk-path <flowgate checkout>/sdk")?,
        };
        let sdk_dir = sdk_dir
            .canonicalize()
            .with_context(|| format!("the SDK directory {} does not exist", sdk_dir.display()))?;
        if !std::fs::read_to_string(sdk_dir.join("Cargo.toml"))
            .is_ok_and(|m| m.contains("name = \"flowgate-sdk\""))
        {
            bail!(
                "{} is not the flowgate SDK (no flowgate-sdk Cargo.toml)",
                sdk_dir.display()
            );
        }
        let path = toml_string(&relative(&sdk_dir, &crate_dir));
        (
            format!("{{ path = {path} }}"),
            format!("{{ path = {path}, features = [\"harness\"] }}"),
            STANDALONE.to_owned(),
        )
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{type}}", &type_name(&args.name))
            .replace("{{sdk}}", &sdk)
            .replace("{{sdk_harness}}", &sdk_harness)
            .replace("{{standalone}}", &standalone)
    };
    // Written to a temporary directory and renamed, so a failure leaves no
    // half-made crate behind.
    let partial = parent.join(format!(".{}.partial", args.name));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(partial.join("src"))?;
    std::fs::create_dir_all(partial.join("events"))?;
    std::fs::write(partial.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(partial.join("src/lib.rs"), fill(LIB_RS))?;
    std::fs::write(partial.join("events/hello.json"), HELLO_EVENT)?;
    std::fs::write(partial.join(".gitignore"), "/target\n")?;
    std::fs::rename(&partial, &crate_dir)?;
    Ok(Scaffold { crate_dir, member })
}

/// `flowgate plugin new`.
pub fn run(args: NewArgs) -> Result<std::process::ExitCode> {
    let scaffold = create(&args)?;
    let dir = scaffold.crate_dir.display();
    let name = &args.name;
    let wasm_name = name.replace('-', "_");
    println!("created plugin `{name}` in {dir}");
    println!("  Cargo.toml         the crate (a flowgate guest)");
    println!("  src/lib.rs         the plugin: manifest() and handle(), with native tests");
    println!("  events/hello.json  a sample event for `flowgate plugin run`");
    println!();
    println!("next:");
    println!("  cd {dir}");
    println!("  cargo test                          # native unit tests, no wasm needed");
    if scaffold.member {
        println!(
            "  cargo xtask build-guests {name}     # the component: target/guests/{name}.wasm"
        );
    } else {
        println!(
            "  cargo build --release --target wasm32-unknown-unknown   # needs rustup's wasm target"
        );
        println!(
            "  # the component: target/wasm32-unknown-unknown/release/{wasm_name}.wasm (flowgate"
        );
        println!("  # componentizes it on the way; `flowgate plugin componentize` writes it out).");
        println!(
            "  # Without rustup's target, create the crate under a flowgate checkout's plugins/"
        );
        println!("  # and use `cargo xtask build-guests {name}` there.");
    }
    println!(
        "  flowgate plugin run <component.wasm> --event events/hello.json --grant all --trace"
    );
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_types() {
        for good in ["a", "order-status", "faq2"] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            "Order",
            "2fa",
            "a_b",
            "a--b",
            "end-",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("order-status"), "OrderStatus");
        assert_eq!(type_name("faq2"), "Faq2");
    }

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative(Path::new("/w/flowgate/sdk"), Path::new("/w/mine/hello")),
            PathBuf::from("../../flowgate/sdk")
        );
        assert_eq!(
            relative(Path::new("/w/sdk"), Path::new("/w")),
            PathBuf::from("sdk")
        );
    }
}
