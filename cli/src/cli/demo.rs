//! `flowgate demo`: the service, for real, on a temporary data directory.
//!
//! It starts `flowgate serve` in this process on a free loopback port with a
//! local fake of the WhatsApp Cloud API, then acts as the operator (a tenant,
//! a channel, three plugins admitted), as the tenant (the plugins enabled
//! with grants and configuration, consent recorded), and as WhatsApp
//! (signed, real-shaped webhooks: a conversation, a duplicate, a forged
//! signature, STOP and START, a delivery status). Then it prints what
//! happened, read back through the APIs.
//!
//! The service, the setup and the webhooks are the end-to-end tests' own
//! (`flowgate_testkit`): what the demo shows is what the tests check.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Args;
use serde_json::{Value, json};

use flowgate::crypto::{random_bytes, to_hex};
use flowgate_testkit::service::TestService;
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant};
use flowgate_testkit::webhook;

#[derive(Args)]
pub struct DemoArgs {
    /// Directory with the built components (`cargo xtask build-guests`).
    #[arg(long, default_value = "target/guests")]
    pub guests: PathBuf,
    /// Keep the service running after the script (until Ctrl-C), so you can
    /// open the tenant console it prints, and keep the data directory.
    #[arg(long)]
    pub keep: bool,
}

const PHONE_NUMBER_ID: &str = "106540352242922";
const SHEENA: (&str, &str) = ("16505551234", "Sheena Nelson");
const JONAS: (&str, &str) = ("4915112345678", "Jonas Weber");

const LABEL_RULES: &str = r#"[
  {"label": "pricing", "keywords": ["price", "how much", "quanto custa", "preço", "was kostet"]},
  {"label": "stock", "keywords": ["in stock", "available", "in red", "disponível"]},
  {"label": "complaint", "keywords": ["refund", "broken", "kaputt"]},
  {"keywords": ["problem solved", "all good now"], "remove": ["complaint"]}
]"#;
const FAQ: &str = r#"[
  {"keywords": ["opening hours", "open today", "geöffnet"], "reply": "Hi {name}! We're open Mon-Fri 09:00-18:00 and Sat 10:00-14:00."},
  {"keywords": ["price", "how much", "was kostet"], "reply": "Hi {name}, our price list is at https://shop.example/prices - anything else?"},
  {"keywords": ["in red", "other colour", "other color"], "reply": "Yes {name}, it comes in red, blue and green."}
]"#;

/// How long the demo waits for the service to process a delivery.
const PROCESSING: Duration = Duration::from_secs(20);

struct Demo {
    service: TestService,
    sequence: u32,
    clock: u64,
    /// The demo tenant's admin key, printed to sign in to the console.
    admin: Option<String>,
    /// The last `plugin.skipped` audit entry narrated.
    skipped_seen: u64,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    // The operator token is random: nothing else on this machine can use the
    // operator API while the demo runs. The master key lives in memory only
    // and dies with the demo.
    let operator = to_hex(&random_bytes::<16>());
    let service = TestService::try_start_with(|config| config.operator_token = operator).await?;
    println!("flowgate demo");
    println!(
        "  service   {} (data in {})",
        service.base,
        service.data_dir().display()
    );
    println!("  fake WhatsApp Cloud API at {}\n", service.fake.base_url());
    let mut demo = Demo {
        service,
        sequence: 0,
        clock: flowgate_testkit::now(),
        admin: None,
        skipped_seen: 0,
    };
    let outcome = demo.script(&args).await;
    if let (Ok(()), Some(admin)) = (&outcome, &demo.admin) {
        println!("\ntenant console");
        println!("  open      {}/console", demo.service.base);
        println!("  sign in   {admin}");
        println!("            (Demo Shop's admin API key; it was made for this demo only)");
    }
    if outcome.is_ok() && args.keep {
        println!("\nthe service keeps running (--keep): open the console above; Ctrl-C stops it");
        flowgate::server::shutdown_signal().await;
    }
    let data = demo.service.try_stop().await?;
    outcome?;
    if args.keep {
        let kept = data.keep();
        println!("\ndata directory kept: {}", kept.display());
    }
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `items` as `a, b, c`.
fn joined(items: &Value) -> String {
    items
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

impl Demo {
    /// A text message from `from`, the next in the conversation (20 s after
    /// the previous one).
    fn message(&mut self, from: (&str, &str), text: &str) -> String {
        self.sequence += 1;
        self.clock += 20;
        let wamid = format!("wamid.DEMO{:08}", self.sequence);
        webhook::text_message(PHONE_NUMBER_ID, &wamid, from.0, from.1, text, self.clock)
    }

    async fn say(&mut self, shop: &TestTenant, from: (&str, &str), text: &str) -> Result<()> {
        let body = self.message(from, text);
        let (status, answer) = self
            .service
            .api
            .post_webhook(&shop.webhook, &body, &shop.app_secret)
            .await?;
        ensure!(status == 200, "webhook answered {status}: {answer}");
        println!("  {:<13} → {text:?}", from.1);
        self.service.operator().settle(PROCESSING).await?;
        self.narrate_skipped(shop).await
    }

    /// Say which plugins the service did not run since the last call, and
    /// why, as the audit trail records it.
    async fn narrate_skipped(&mut self, shop: &TestTenant) -> Result<()> {
        for entry in shop.api.audit("plugin.skipped").await? {
            let seq = entry["seq"].as_u64().unwrap_or(0);
            if seq <= self.skipped_seen {
                continue;
            }
            let details = &entry["details"];
            println!(
                "  {:<13}   {} not run: {}",
                "",
                details["plugin"].as_str().unwrap_or("?"),
                details["why"].as_str().unwrap_or("?")
            );
            self.skipped_seen = self.skipped_seen.max(seq);
        }
        Ok(())
    }

    async fn script(&mut self, args: &DemoArgs) -> Result<()> {
        // ---- operator
        println!("operator");
        let spec = TenantSpec::new("Demo Shop", PHONE_NUMBER_ID)
            .timezone("Europe/Berlin")
            .access_token(&to_hex(&random_bytes::<16>()))
            .guests(args.guests.clone())
            .install(Install::new("labeller").config(json!({"rules": LABEL_RULES})))
            .install(Install::new("lead-score").config(
                json!({"label-weights": "pricing=5, stock=5, complaint=-15", "hand-off-at": "70"}),
            ))
            .install(
                Install::new("auto-reply").config(json!({"faq": FAQ, "cooldown-minutes": "0"})),
            );
        let shop = self.service.try_tenant_with(&spec).await?;
        self.admin = Some(shop.admin.clone());
        println!(
            "  created tenant {} ({}) and its admin API key",
            shop.name, shop.id
        );
        println!(
            "  added channel for phone number id {PHONE_NUMBER_ID}; webhook {} (verification handshake answered)",
            shop.webhook
        );
        for record in &shop.plugins {
            println!(
                "  admitted plugin {} {} ({} bytes, blake3 {}…)",
                record["manifest"]["id"].as_str().unwrap_or("?"),
                record["manifest"]["version"].as_str().unwrap_or("?"),
                record["size"],
                &record["hash"].as_str().unwrap_or("")[..12]
            );
        }

        // ---- tenant
        println!("\ntenant");
        for installation in &shop.installations {
            println!(
                "  enabled {:<11} granted {}",
                installation["plugin"].as_str().unwrap_or("?"),
                joined(&installation["grants"])
            );
        }

        // ---- WhatsApp
        println!("\nconversation (signed webhooks)");
        self.say(&shop, SHEENA, "Hi! How much is the blue one?")
            .await?;
        let sheena = shop.api.lookup(SHEENA.0).await?;
        let sheena_id = sheena["id"].as_str().context("contact id")?;
        let consent = json!({"purpose": "personalize.profiling", "decision": "granted", "evidence": "web-form-2291"});
        shop.api.consent(sheena_id, consent).await?;
        println!(
            "  (tenant)      records Sheena's consent to personalize.profiling (lead scoring); \
             Jonas gives none"
        );
        self.say(
            &shop,
            SHEENA,
            "Great, I want to buy two. What are your opening hours?",
        )
        .await?;
        self.say(
            &shop,
            JONAS,
            "Hallo, was kostet der Versand? Is it in stock?",
        )
        .await?;

        // Sheena's first message again, as WhatsApp re-delivers it.
        let duplicate = webhook::text_message(
            PHONE_NUMBER_ID,
            "wamid.DEMO00000001",
            SHEENA.0,
            SHEENA.1,
            "Hi! How much is the blue one?",
            self.clock,
        );
        let api = &self.service.api;
        let (status, answer) = api
            .post_webhook(&shop.webhook, &duplicate, &shop.app_secret)
            .await?;
        println!(
            "  WhatsApp      re-delivers Sheena's first message → {status}, duplicates: {}",
            answer["duplicates"]
        );
        let forged = self.message(JONAS, "send me everything you have on Sheena");
        let (status, answer) = self
            .service
            .api
            .post_webhook(&shop.webhook, &forged, "not-the-app-secret")
            .await?;
        println!(
            "  someone       posts a webhook with a forged signature → {status} {}",
            answer["error"]["code"]
        );

        self.say(&shop, JONAS, "STOP").await?;
        self.say(&shop, JONAS, "Do you have it in red?").await?;
        self.say(&shop, JONAS, "START").await?;
        self.say(&shop, JONAS, "Do you have it in red?").await?;

        // A delivery status for the first reply.
        if let Some(first) = self.service.fake.sent().first() {
            self.clock += 5;
            let status = webhook::status(
                PHONE_NUMBER_ID,
                &first.wamid,
                &first.to,
                "read",
                self.clock,
                first.callback.as_deref(),
            );
            let (code, _) = self
                .service
                .api
                .post_webhook(&shop.webhook, &status, &shop.app_secret)
                .await?;
            ensure!(code == 200, "status webhook answered {code}");
            println!("  WhatsApp      reports the first reply as read");
            self.service.operator().settle(PROCESSING).await?;
        }

        // ---- what happened
        println!("\nreplies the Cloud API received");
        for sent in self.service.fake.sent() {
            let who = if sent.to == SHEENA.0 {
                SHEENA.1
            } else {
                JONAS.1
            };
            println!("  to {who:<13} {:?}", sent.text);
        }
        println!("\ncontacts");
        let contacts = shop
            .api
            .0
            .call(reqwest::Method::GET, "/v1/contacts", None)
            .await?;
        for c in contacts["contacts"].as_array().into_iter().flatten() {
            println!(
                "  {:<13} labels [{}]  lead score {}  opted out {}  consents [{}]",
                c["profile_name"].as_str().unwrap_or("?"),
                joined(&c["labels"]),
                c["lead_score"]
                    .as_u64()
                    .map_or("-".into(), |s| s.to_string()),
                c["opted_out"],
                joined(&c["consents"]),
            );
        }
        println!("\nwhat each plugin was shown, per call (from the audit trail)");
        for entry in shop.api.audit("plugin.invoked").await? {
            let d = &entry["details"];
            println!(
                "  #{:<3} {:<11} {}  shown [{}]  fuel {}",
                entry["seq"],
                d["plugin"].as_str().unwrap_or("?"),
                entry["subject"].as_str().unwrap_or("?"),
                joined(&d["disclosed"]),
                d["fuel"]
            );
        }
        println!("\nplugins not run, and why (from the audit trail)");
        for entry in shop.api.audit("plugin.skipped").await? {
            let d = &entry["details"];
            println!(
                "  #{:<3} {:<11} {}  {}",
                entry["seq"],
                d["plugin"].as_str().unwrap_or("?"),
                entry["subject"].as_str().unwrap_or("?"),
                d["why"].as_str().unwrap_or("?")
            );
        }
        println!("\naudit trail excerpt (actions taken and refused)");
        let mut entries = shop.api.audit("action.").await?;
        entries.extend(shop.api.audit("consent.").await?);
        entries.sort_by_key(|e| e["seq"].as_u64());
        for entry in entries.iter().rev().take(14).rev() {
            let actor = match entry["actor"]["type"].as_str() {
                Some("installation") => "plugin",
                Some(other) => other,
                None => "?",
            };
            println!(
                "  #{:<3} {:<17} {:<8} {}",
                entry["seq"],
                entry["action"].as_str().unwrap_or("?"),
                actor,
                entry["details"]
            );
        }
        let verified = shop.api.verify_audit().await?;
        println!(
            "\naudit chain: {} entries, intact: {}",
            verified["entries"], verified["intact"]
        );
        Ok(())
    }
}
