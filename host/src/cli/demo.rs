//! `flowgate demo`: the first-party plugins on a real-shaped conversation.
//!
//! Each inbound message runs through the tenant's flow (labeller, then
//! lead-score, then auto-reply) in the real sandbox; labels set by an earlier
//! plugin are visible to a later one when granted. A hostile plugin is
//! installed beside them to show that its failures stay contained.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use flowgate::channel::whatsapp::payload::{self, DeliveryItem};
use flowgate::plugin::{Action, DataField};
use flowgate::runtime::{Call, LoadedPlugin, PluginState, Runtime, RuntimeConfig};
use flowgate::view::{self, ContactData, EventContext, MessageFacts, ProcessingState};

use super::events::SERVICE_WINDOW_SECS;

#[derive(Args)]
pub struct DemoArgs {
    /// Directory with the built components (`cargo xtask build-guests`).
    #[arg(long, default_value = "target/guests")]
    pub guests: PathBuf,
}

const LABEL_RULES: &str = r#"[
  {"label": "pricing", "keywords": ["price", "how much", "quanto custa", "preço", "was kostet"]},
  {"label": "stock", "keywords": ["in stock", "available", "disponível", "verfügbar"]},
  {"label": "complaint", "keywords": ["refund", "broken", "kaputt", "defeito"]},
  {"keywords": ["problem solved", "all good now"], "remove": ["complaint"]}
]"#;
const FAQ: &str = r#"[
  {"keywords": ["opening hours", "open today", "geöffnet", "horário"], "reply": "Hi {name}! We're open Mon-Fri 09:00-18:00 and Sat 10:00-14:00."},
  {"keywords": ["price", "how much", "quanto custa"], "reply": "Hi {name}, our price list is at https://shop.example/prices - anything else?"},
  {"keywords": ["refund"], "reply": "Sorry to hear that, {name}. Reply with your order number and we'll sort out the refund."}
]"#;

struct Installation {
    id: &'static str,
    plugin: Arc<LoadedPlugin>,
    grants: BTreeSet<DataField>,
    config: Vec<(String, String)>,
    state: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

struct Contact {
    data: ContactData,
    handed_off: bool,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let load = |name: &str| -> Result<Arc<LoadedPlugin>> {
        let path = args.guests.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (build the guests first: `cargo xtask build-guests`)",
                path.display()
            )
        })?;
        Ok(runtime.load(&bytes)?)
    };
    println!("flowgate demo: three first-party plugins and one hostile plugin, one tenant\n");
    let mut flow = vec![
        installation("labeller", load("labeller")?, &[("rules", LABEL_RULES)]),
        installation(
            "lead-score",
            load("lead-score")?,
            &[
                ("label-weights", "pricing=5, complaint=-15"),
                ("hand-off-at", "70"),
            ],
        ),
        installation(
            "auto-reply",
            load("auto-reply")?,
            &[("faq", FAQ), ("cooldown-minutes", "0")],
        ),
        installation("hostile", load("fixture-hostile")?, &[("attack", "loop")]),
    ];
    for inst in &flow {
        let m = &inst.plugin.manifest;
        println!(
            "installed {:<11} {} {} ({} bytes, hash {}…), granted: {}",
            inst.id,
            m.id,
            m.version,
            inst.plugin.size,
            &inst.plugin.hash.to_string()[..12],
            list(inst.grants.iter())
        );
    }

    let conversation = conversation();
    let mut contacts: BTreeMap<String, Contact> = BTreeMap::new();
    let pseudonym_key = blake3::derive_key("flowgate demo pseudonyms", b"tenant-demo");
    for (body, note) in conversation {
        println!("\n── {note}");
        let delivery = payload::parse(body.as_bytes())?;
        for item in delivery.items {
            let DeliveryItem::Message(message) = item else {
                continue;
            };
            let key = message
                .from
                .wa_id
                .clone()
                .or(message.from.user_id.clone())
                .unwrap_or_default();
            let contact = contacts.entry(key.clone()).or_insert_with(|| Contact {
                data: ContactData {
                    wa_id: message.from.wa_id.clone(),
                    user_id: message.from.user_id.clone(),
                    profile_name: message.from.profile_name.clone(),
                    labels: Vec::new(),
                    lead_score: None,
                },
                handed_off: false,
            });
            println!(
                "   {} wrote: {:?}",
                contact.data.profile_name.as_deref().unwrap_or("(no name)"),
                message.text.as_deref().unwrap_or("(no text)")
            );
            for inst in &mut flow {
                run_installation(&runtime, inst, contact, &message, &key, &pseudonym_key);
            }
        }
    }
    println!("\n── contacts after the conversation");
    for contact in contacts.values() {
        println!(
            "   {:<16} labels [{}], lead score {}{}",
            contact.data.profile_name.as_deref().unwrap_or("(no name)"),
            contact.data.labels.join(", "),
            contact
                .data
                .lead_score
                .map_or("-".to_string(), |s| s.to_string()),
            if contact.handed_off {
                ", handed off to a human"
            } else {
                ""
            }
        );
    }
    let open = runtime
        .breakers()
        .open_installations(std::time::Instant::now());
    println!(
        "\ncircuit breakers open: {}",
        if open.is_empty() {
            "none".to_string()
        } else {
            open.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn installation(
    id: &'static str,
    plugin: Arc<LoadedPlugin>,
    config: &[(&str, &str)],
) -> Installation {
    // The demo tenant grants each plugin exactly the fields it declares.
    let grants = plugin.manifest.fields.iter().copied().collect();
    Installation {
        id,
        plugin,
        grants,
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        state: BTreeMap::new(),
    }
}

fn run_installation(
    runtime: &Runtime,
    inst: &mut Installation,
    contact: &mut Contact,
    message: &payload::InboundMessage,
    contact_key: &str,
    pseudonym_key: &[u8; 32],
) {
    let manifest = &inst.plugin.manifest;
    // Every demo contact consented to lead scoring when they first wrote.
    let processing = ProcessingState::consenting_to(manifest);
    let disclosure = match view::disclose(manifest, &inst.grants, &processing) {
        Ok(d) => d,
        Err(reason) => {
            println!("   {:<11} not run: {reason}", inst.id);
            return;
        }
    };
    let config = match view::resolve_config(manifest, &inst.config) {
        Ok(config) => config,
        Err(missing) => {
            println!("   {:<11} not run: {missing}", inst.id);
            return;
        }
    };
    let event = view::build_event(
        &disclosure,
        &contact.data,
        EventContext {
            pseudonym: view::pseudonym(pseudonym_key, inst.id, contact_key.as_bytes()),
            message: Some(MessageFacts {
                kind: message.kind,
                text: message.text.clone(),
                received_at: message.timestamp,
                service_window_open: true,
            }),
            status: None,
            config,
            now: message
                .timestamp
                .min(message.timestamp + SERVICE_WINDOW_SECS),
            timezone: "UTC".into(),
            utc_offset_minutes: 0,
        },
    );
    let state = inst.state.entry(contact_key.to_owned()).or_default();
    let call = Call::new(event)
        .installation(inst.id)
        .state(PluginState::new(state.clone()));
    match runtime.invoke(&inst.plugin, call) {
        Ok(invocation) => {
            *state = invocation.state.merged();
            let shown = list(disclosure.disclosed.iter());
            let mut applied = Vec::new();
            for action in invocation.actions {
                applied.push(action.to_string());
                apply(contact, action);
            }
            println!(
                "   {:<11} saw [{shown}] → {} ({} fuel, {:.2} ms)",
                inst.id,
                if applied.is_empty() {
                    "no action".to_string()
                } else {
                    applied.join("; ")
                },
                invocation.fuel,
                invocation.elapsed.as_secs_f64() * 1000.0
            );
        }
        Err(failure) => {
            let breaker = match failure.breaker {
                Some(transition) => format!(" — breaker {transition:?}"),
                None => String::new(),
            };
            println!("   {:<11} contained: {}{breaker}", inst.id, failure.error);
        }
    }
}

fn apply(contact: &mut Contact, action: Action) {
    let data = &mut contact.data;
    match action {
        Action::AddLabel { label } => {
            if !data.labels.contains(&label) {
                data.labels.push(label);
            }
        }
        Action::RemoveLabel { label } => data.labels.retain(|l| l != &label),
        Action::SetLeadScore { score, .. } => data.lead_score = Some(score),
        Action::HandOff { .. } => contact.handed_off = true,
        Action::Reply { .. } => {}
    }
}

fn list<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// A short conversation between two customers and the demo shop, as
/// WhatsApp would deliver it.
fn conversation() -> Vec<(String, &'static str)> {
    let samples = samples_dir();
    let mut bodies = Vec::new();
    if let Ok(sample) = std::fs::read_to_string(samples.join("text-message.json")) {
        bodies.push((sample, "WhatsApp's own sample delivery"));
    }
    let message = |id: u32, wa_id: &str, name: &str, ts: u64, text: &str| {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": [{"from": wa_id, "id": format!("wamid.demo{id:04}"), "timestamp": ts.to_string(),
                              "type": "text", "text": {"body": text}}]
            }}]}]
        });
        body.to_string()
    };
    let t = 1_749_463_200;
    bodies.push((
        message(
            1,
            "16505551234",
            "Sheena Nelson",
            t,
            "Hi! How much is the blue one?",
        ),
        "a price question",
    ));
    bodies.push((
        message(
            2,
            "4915112345678",
            "Jonas Weber",
            t + 30,
            "Hallo, was kostet der Versand? Is it in stock?",
        ),
        "a second customer",
    ));
    bodies.push((
        message(
            3,
            "16505551234",
            "Sheena Nelson",
            t + 90,
            "Great, I want to buy two. What are your opening hours?",
        ),
        "buying intent",
    ));
    bodies.push((
        message(
            4,
            "4915112345678",
            "Jonas Weber",
            t + 400,
            "My last order arrived broken, I want a refund",
        ),
        "a complaint",
    ));
    bodies.push((
        message(
            5,
            "4915112345678",
            "Jonas Weber",
            t + 900,
            "Thanks, problem solved!",
        ),
        "the complaint is resolved",
    ));
    bodies
}

fn samples_dir() -> PathBuf {
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/samples/whatsapp"),
        PathBuf::from("tests/samples/whatsapp"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("tests/samples/whatsapp"))
}
