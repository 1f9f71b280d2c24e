//! `flowgate plugin inspect` and `flowgate plugin run`: a plugin author's
//! view of a component, in the same sandbox and with the same limits as the
//! service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use flowgate::crypto::{decode_hex, to_hex};
use flowgate::plugin::{DataField, Manifest, Purpose};
use flowgate::runtime::{Limits, LoadedPlugin, Runtime, RuntimeConfig};
use flowgate::trial::{self, EventReport, StateByContact, TrialSettings, preview};
use flowgate::view::{self, ProcessingState, Withheld};

/// Now, in seconds since the Unix epoch: the time of a simple event that
/// names none.
fn unix_now() -> u64 {
    flowgate::clock::Clock::system().now()
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a component's manifest, imports, size and content hash.
    Inspect(InspectArgs),
    /// Run a component on an event file, exactly as the service would, and
    /// print the actions, the fields disclosed, the fuel used and the time.
    ///
    /// The event file is either a WhatsApp webhook body (each message and
    /// status in it is one event, run in order with the plugin's state
    /// carried between them) or a simple JSON event such as
    /// {"text": "how much?", "name": "Ana", "labels": ["vip"]}.
    Run(RunArgs),
    /// Create a plugin crate: a working example plugin with native unit
    /// tests and a sample event, ready for `cargo test`, the guest build and
    /// `flowgate plugin run`.
    New(super::scaffold::NewArgs),
    /// Turn a core WebAssembly module built with plain cargo
    /// (`--target wasm32-unknown-unknown`) into the component the service
    /// accepts. `run` and `inspect` do this by themselves.
    Componentize(ComponentizeArgs),
}

#[derive(Args)]
pub struct ComponentizeArgs {
    /// The core module (.wasm) cargo built.
    pub module: PathBuf,
    /// Where to write the component.
    #[arg(long, short)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    /// The event file (webhook body or simple event JSON).
    #[arg(long, short)]
    pub event: PathBuf,
    /// Set a config key: `--config key=value`, or `--config key=@file` to read
    /// the value from a file. Repeatable.
    #[arg(long = "config", short, value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Grant a data field, such as `user.content.private`; `all` grants every
    /// field the manifest declares. Repeatable; nothing is granted by default.
    #[arg(long = "grant", short, value_name = "FIELD")]
    pub grants: Vec<String>,
    /// Run as for a contact who gave no consent: a plugin with a purpose
    /// that needs consent (marketing.*, personalize.*, analytics.*, …) is
    /// then not invoked at all, as in the service.
    #[arg(long)]
    pub no_consent: bool,
    /// A JSON file with the plugin's state per contact pseudonym
    /// ({"ps_…": {"key": "hex bytes"}}), read before and written after the
    /// run, to carry state between runs.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The event time in seconds since the Unix epoch (default: the message's
    /// own time, so the service window is open).
    #[arg(long)]
    pub now: Option<u64>,
    /// Run as for a contact who consented to this purpose only (instead of
    /// every purpose of the manifest); a plugin with another purpose that
    /// needs consent is not invoked. Repeatable.
    #[arg(
        long = "consent",
        value_name = "PURPOSE",
        conflicts_with = "no_consent"
    )]
    pub consents: Vec<String>,
    /// Run as for a contact who restricted processing (the plugin is not
    /// run).
    #[arg(long)]
    pub restricted: bool,
    /// Run as for a contact who objected to this purpose (plugins with it,
    /// or a narrower one, are not run). Repeatable.
    #[arg(long = "object", value_name = "PURPOSE")]
    pub objections: Vec<String>,
    /// Explain the view: for every data field, whether it was disclosed (and
    /// its value) or why it is absent — not declared, not granted, not
    /// consented, restricted, objected — and, when the plugin is not
    /// invoked at all, why.
    #[arg(long)]
    pub trace: bool,
    /// Fuel budget per call (default: the service's).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Compile the component even when its compiled code is cached. The
    /// cache is $FLOWGATE_CODE_CACHE, else $XDG_CACHE_HOME/flowgate/code,
    /// else ~/.cache/flowgate/code: a second run of a Python or JavaScript
    /// plugin then starts in a fraction of a second instead of seconds.
    #[arg(long)]
    pub no_code_cache: bool,
}

/// Where `plugin run` keeps compiled components: the user's own cache.
fn user_code_cache() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("FLOWGATE_CODE_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("flowgate/code")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/flowgate/code")))
}

pub fn run(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::Inspect(args) => inspect(args),
        PluginCommand::Run(args) => run_events(args),
        PluginCommand::New(args) => super::scaffold::run(args),
        PluginCommand::Componentize(args) => {
            let bytes = read_component(&args.module)?;
            std::fs::write(&args.out, &bytes)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "{} ({} bytes, content hash {})",
                args.out.display(),
                bytes.len(),
                blake3::hash(&bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Read a component; a core module (what `cargo build --target
/// wasm32-unknown-unknown` makes, with the component type wit-bindgen
/// embeds) is componentized on the way, as `cargo xtask build-guests` does.
fn read_component(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Both start with `\0asm`; the version field tells a core module (1)
    // from a component.
    if bytes.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        return Ok(bytes);
    }
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| {
            format!(
                "{} is a core module that does not componentize; was it built from a crate using flowgate-sdk?",
                path.display()
            )
        })
}

fn load(runtime: &Runtime, path: &Path) -> Result<(std::sync::Arc<LoadedPlugin>, f64)> {
    let bytes = read_component(path)?;
    let started = Instant::now();
    let plugin = runtime
        .load(&bytes)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((plugin, started.elapsed().as_secs_f64() * 1000.0))
}

#[derive(Serialize)]
struct InspectReport<'a> {
    file: String,
    hash: String,
    size_bytes: usize,
    compile_ms: f64,
    describe_fuel: u64,
    uses_wasi: bool,
    imports: &'a [String],
    manifest: &'a Manifest,
}

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let (plugin, compile_ms) = load(&runtime, &args.component)?;
    let report = InspectReport {
        file: args.component.display().to_string(),
        hash: plugin.hash.to_string(),
        size_bytes: plugin.size,
        compile_ms,
        describe_fuel: plugin.describe_fuel,
        uses_wasi: plugin.uses_wasi,
        imports: &plugin.imports,
        manifest: &plugin.manifest,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let m = &plugin.manifest;
    println!("{} {}  {}", m.id, m.version, m.summary);
    println!(
        "  file          {} ({} bytes)",
        report.file, report.size_bytes
    );
    println!("  content hash  {}", report.hash);
    println!(
        "  compiled in   {compile_ms:.1} ms; describe() used {} fuel",
        report.describe_fuel
    );
    println!("  purposes      {}", join(m.purposes.iter()));
    println!("  fields        {}", join(m.fields.iter()));
    println!("  capabilities  {}", join(m.capabilities.iter()));
    println!("  labels        {}", join(m.labels.iter()));
    println!("  imports       {}", plugin.imports.join(", "));
    if plugin.uses_wasi {
        println!(
            "  WASI          imported; runs under a deny-all context (no files, sockets, env)"
        );
    }
    if m.config.is_empty() {
        println!("  config        (none)");
    } else {
        println!("  config");
        for key in &m.config {
            let requirement = match (&key.default_value, key.required) {
                (_, true) => "required".to_string(),
                (Some(default), false) => format!("default {}", preview(default, 60)),
                (None, false) => "optional".to_string(),
            };
            println!("    {:<20} {} [{requirement}]", key.name, key.description);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let joined: Vec<String> = items.map(|i| i.to_string()).collect();
    if joined.is_empty() {
        "(none)".into()
    } else {
        joined.join(", ")
    }
}

fn parse_config(entries: &[String]) -> Result<Vec<(String, String)>> {
    entries
        .iter()
        .map(|entry| {
            let (key, value) = entry
                .split_once('=')
                .with_context(|| format!("--config `{entry}` is not key=value"))?;
            let value = match value.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading config value for `{key}` from {path}"))?,
                None => value.to_owned(),
            };
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

fn parse_grants(entries: &[String], manifest: &Manifest) -> Result<BTreeSet<DataField>> {
    let mut grants = BTreeSet::new();
    for entry in entries.iter().flat_map(|e| e.split(',')).map(str::trim) {
        if entry == "all" {
            grants.extend(manifest.fields.iter().copied());
            continue;
        }
        let field = DataField::from_identifier(entry).with_context(|| {
            let known: Vec<&str> = DataField::ALL.iter().map(|f| f.as_str()).collect();
            format!(
                "--grant `{entry}` is not a data field; known: {}",
                known.join(", ")
            )
        })?;
        grants.insert(field);
    }
    Ok(grants)
}

fn read_state(path: Option<&Path>) -> Result<StateByContact> {
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(path)?;
    let hex: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{} is not a JSON object of contacts to objects of hex strings",
                path.display()
            )
        })?;
    hex.into_iter()
        .map(|(contact, entries)| {
            let entries = entries
                .into_iter()
                .map(|(key, value)| {
                    let bytes = decode_hex(&value)
                        .with_context(|| format!("state value of `{key}` is not hex"))?;
                    Ok((key, bytes))
                })
                .collect::<Result<_>>()?;
            Ok((contact, entries))
        })
        .collect()
}

fn write_state(path: &Path, state: &StateByContact) -> Result<()> {
    let hex: BTreeMap<&String, BTreeMap<&String, String>> = state
        .iter()
        .map(|(contact, entries)| {
            (
                contact,
                entries.iter().map(|(k, v)| (k, to_hex(v))).collect(),
            )
        })
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&hex)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn run_events(args: RunArgs) -> Result<ExitCode> {
    let mut limits = Limits::default();
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    let mut runtime = Runtime::new(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })?;
    if let (false, Some(dir)) = (args.no_code_cache, user_code_cache()) {
        runtime = runtime.with_code_cache(dir);
    }
    let (plugin, compile_ms) = load(&runtime, &args.component)?;
    let manifest = &plugin.manifest;
    let event_bytes =
        std::fs::read(&args.event).with_context(|| format!("reading {}", args.event.display()))?;
    let specs = trial::parse(&event_bytes, args.now, unix_now())
        .with_context(|| format!("reading events from {}", args.event.display()))?;
    let grants = parse_grants(&args.grants, manifest)?;
    let config = view::resolve_config(manifest, &parse_config(&args.config)?)?;
    let purposes = |entries: &[String], flag: &str| -> Result<Vec<Purpose>> {
        entries
            .iter()
            .map(|p| {
                Purpose::parse(p)
                    .map_err(|e| anyhow::anyhow!("--{flag} `{p}` is not a purpose: {e}"))
            })
            .collect()
    };
    let mut processing = if args.no_consent {
        ProcessingState::default()
    } else if !args.consents.is_empty() {
        ProcessingState {
            consents: purposes(&args.consents, "consent")?,
            ..ProcessingState::default()
        }
    } else {
        ProcessingState::consenting_to(manifest)
    };
    processing.restricted = args.restricted;
    processing.objections = purposes(&args.objections, "object")?;
    let mut state = read_state(args.state.as_deref())?;
    let settings = TrialSettings {
        grants,
        processing,
        config,
        trace: args.trace,
        // Pseudonyms in the CLI use a fixed key: stable across runs,
        // unrelated to any service's.
        pseudonym_key: blake3::derive_key("flowgate plugin run pseudonyms", b""),
    };

    if !args.json {
        println!(
            "{} {} ({}), loaded in {compile_ms:.1} ms",
            manifest.id,
            manifest.version,
            &plugin.hash.to_string()[..16]
        );
    }
    let mut reports = Vec::new();
    let mut failed = false;
    for (index, spec) in specs.into_iter().enumerate() {
        let report = trial::run_one(&runtime, &plugin, index + 1, spec, &settings, &mut state);
        failed |= report.error.is_some();
        if !args.json {
            print_report(&report);
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if let Some(path) = &args.state {
        write_state(path, &state)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &EventReport) {
    println!("\nevent {}  contact {}", report.event, report.pseudonym);
    if let Some(trace) = &report.trace {
        println!("  trace");
        for field in trace {
            let name = field.field.field.as_str();
            match (&field.why, &field.value) {
                (Some(why), _) => println!("    {name:<26} absent     {why}"),
                (None, Some(value)) => println!("    {name:<26} disclosed  {value}"),
                (None, None) => println!("    {name:<26} disclosed  (no value in this event)"),
            }
        }
    }
    if let Some(reason) = &report.not_processed {
        println!("  not invoked: {reason}");
        return;
    }
    println!("  disclosed  {}", join(report.disclosed.iter()));
    let withheld: Vec<String> = report
        .withheld
        .iter()
        .map(|(field, why)| {
            let why = match why {
                Withheld::NotDeclared => "not declared",
                Withheld::NotGranted => "not granted",
            };
            format!("{field} ({why})")
        })
        .collect();
    if !withheld.is_empty() && report.trace.is_none() {
        println!("  withheld   {}", withheld.join(", "));
    }
    if let Some(error) = &report.error {
        println!("  FAILED     {error}");
    }
    if report.actions.is_empty() && report.error.is_none() {
        println!("  actions    (none)");
    }
    for action in &report.actions {
        println!("  action     {action}");
    }
    for (action, refusal) in &report.refused {
        println!("  refused    {} — {refusal}", action.redacted());
    }
    for (key, change) in &report.state_changes {
        match change {
            Some(value) => println!("  state      {key} = {value}"),
            None => println!("  state      {key} deleted"),
        }
    }
    for line in &report.logs {
        println!("  log        [{}] {}", line.level, line.message);
    }
    println!(
        "  fuel       {}   time {:.3} ms",
        report.fuel, report.elapsed_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            decode_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        // A sign is not a digit (`u8::from_str_radix` would take `+f`).
        assert_eq!(decode_hex("+f"), None);
    }

    #[test]
    fn config_values_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        std::fs::write(&path, "[1]").unwrap();
        let parsed = parse_config(&[format!("rules=@{}", path.display()), "a=b=c".into()]).unwrap();
        assert_eq!(
            parsed,
            vec![("rules".into(), "[1]".into()), ("a".into(), "b=c".into())]
        );
        assert!(parse_config(&["novalue".into()]).is_err());
    }
}
