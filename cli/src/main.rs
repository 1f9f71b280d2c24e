//! The `flowgate` command: run the service, drive the demo, and help plugin
//! authors inspect and try their components in the service's own sandbox.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: profiles under the load
/// generator showed glibc malloc (with `malloc_consolidate` and
/// `unlink_chunk`) taking over a third of the committer thread, mostly
/// sled's copy-on-write node updates. See BENCHMARKS.md for the effect.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the service (see `flowgate serve --help` for configuration).
    Serve(cli::serve::ServeArgs),
    /// Master-key tools: generate a key, rotate the master key.
    #[command(subcommand)]
    Keys(cli::serve::KeysCommand),
    /// Retention: sweep expired data now.
    #[command(subcommand)]
    Retention(cli::ops::RetentionCommand),
    /// Backups of the records: create (service running), restore (stopped).
    #[command(subcommand)]
    Backup(cli::ops::BackupCommand),
    /// The audit trail: verify a tenant's hash chain.
    #[command(subcommand)]
    Audit(cli::ops::AuditCommand),
    /// Tenant offboarding: export, schedule deletion, delete.
    #[command(subcommand)]
    Tenant(cli::ops::TenantCommand),
    /// Run the demo: the service on a temporary data directory with a fake
    /// WhatsApp Cloud API, driven through its APIs and signed webhooks.
    Demo(cli::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(command) => {
            cli::init_tracing();
            cli::plugin::run(command)
        }
        Command::Serve(args) => cli::serve::run(args),
        Command::Keys(command) => cli::serve::keys(command),
        Command::Retention(command) => cli::ops::retention(command),
        Command::Backup(command) => cli::ops::backup(command),
        Command::Audit(command) => cli::ops::audit(command),
        Command::Tenant(command) => cli::ops::tenant(command),
        Command::Demo(args) => {
            cli::init_tracing();
            cli::demo::run(args)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
