//! The `flowgate` command: run the service, drive the demo, and help plugin
//! authors inspect and try their components in the service's own sandbox.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// flowgate runs tenants' WhatsApp automation plugins as sandboxed
/// WebAssembly components, showing each plugin only the consent-checked
/// contact data it declared and was granted.
#[derive(Parser)]
#[command(name = "flowgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and try plugin components (for plugin authors).
    #[command(subcommand)]
    Plugin(cli::plugin::PluginCommand),
    /// Run the demo: the first-party plugins on a real-shaped WhatsApp
    /// conversation, showing what each plugin was shown and what it did.
    Demo(cli::demo::DemoArgs),
}

fn main() -> ExitCode {
    cli::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(command) => cli::plugin::run(command),
        Command::Demo(args) => cli::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
