//! `flowgate demo`: the service, for real, on a temporary data directory.
//!
//! It starts `flowgate serve` in this process on a free loopback port with a
//! local fake of the WhatsApp Cloud API, then acts as the operator (a tenant,
//! a channel, three plugins admitted), as the tenant (the plugins enabled
//! with grants and configuration, consent recorded), and as WhatsApp
//! (signed, real-shaped webhooks: a conversation, a duplicate, a forged
//! signature, STOP and START, a delivery status). Then it prints what
//! happened, read back through the APIs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::channel::whatsapp::signature;
use flowgate::clock::Clock;
use flowgate::config::ServiceConfig;
use flowgate::crypto::{SecretKey, random_bytes, to_hex};
use flowgate::data::Vault;

#[derive(Args)]
pub struct DemoArgs {
    /// Directory with the built components (`cargo xtask build-guests`).
    #[arg(long, default_value = "target/guests")]
    pub guests: PathBuf,
    /// Keep the data directory and print its path.
    #[arg(long)]
    pub keep: bool,
}

const PHONE_NUMBER_ID: &str = "106540352242922";
const APP_SECRET: &str = "demo-app-secret-not-for-production";
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

struct Demo {
    http: reqwest::Client,
    base: String,
    operator: String,
    admin: String,
    webhook: String,
    fake: FakeCloudApi,
    sequence: u32,
    clock: u64,
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
    let data = tempfile::Builder::new()
        .prefix("flowgate-demo-")
        .tempdir()?;
    let fake = FakeCloudApi::start().await?;
    let operator = to_hex(&random_bytes::<16>());
    let mut config = ServiceConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data.path().to_owned(),
        operator_token: operator.clone(),
        workers: 2,
        ..ServiceConfig::default()
    };
    config.whatsapp.base_url = fake.base_url();
    config.validate()?;
    // The demo's master key lives in memory only and dies with the demo.
    let vault: Vault = flowgate::server::open_vault(&config, SecretKey::generate())?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flowgate::server::serve(
        config,
        vault,
        Clock::system(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    println!("flowgate demo");
    println!("  service   {base} (data in {})", data.path().display());
    println!("  fake WhatsApp Cloud API at {}\n", fake.base_url());
    let mut demo = Demo {
        http: reqwest::Client::new(),
        base,
        operator,
        admin: String::new(),
        webhook: String::new(),
        fake,
        sequence: 0,
        clock: flowgate::data::unix_now(),
        skipped_seen: 0,
    };
    let outcome = demo.script(&args).await;
    let _ = stop.send(());
    server.await.context("the service task")??;
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

impl Demo {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn upload(&self, guests: &std::path::Path, name: &str) -> Result<Value> {
        let path = guests.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (build the guests first: `cargo xtask build-guests`)",
                path.display()
            )
        })?;
        let response = self
            .http
            .post(format!("{}/v1/operator/plugins", self.base))
            .bearer_auth(&self.operator)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "uploading {name}: {}",
            response.text().await?
        );
        Ok(response.json().await?)
    }

    fn message(&mut self, from: (&str, &str), text: &str) -> String {
        self.sequence += 1;
        self.clock += 20;
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                "contacts": [{"profile": {"name": from.1}, "wa_id": from.0}],
                "messages": [{"from": from.0, "id": format!("wamid.DEMO{:08}", self.sequence),
                              "timestamp": self.clock.to_string(), "type": "text", "text": {"body": text}}]
            }}]}]
        })
        .to_string()
    }

    async fn post_webhook(&self, body: &str, secret: &str) -> Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{}", self.base, self.webhook))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                signature::sign(secret.as_bytes(), body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn say(&mut self, from: (&str, &str), text: &str) -> Result<()> {
        let body = self.message(from, text);
        let (status, answer) = self.post_webhook(&body, APP_SECRET).await?;
        ensure!(status == 200, "webhook answered {status}: {answer}");
        println!("  {:<13} → {text:?}", from.1);
        self.wait_processed().await?;
        self.narrate_skipped().await
    }

    /// Say which plugins the service did not run since the last call, and
    /// why, as the audit trail records it.
    async fn narrate_skipped(&mut self) -> Result<()> {
        let skipped = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/v1/audit?action=plugin.skipped&after={}&limit=1000",
                    self.skipped_seen
                ),
                &self.admin.clone(),
                None,
            )
            .await?;
        for entry in skipped.as_array().into_iter().flatten() {
            let details = &entry["details"];
            println!(
                "  {:<13}   {} not run: {}",
                "",
                details["plugin"].as_str().unwrap_or("?"),
                details["why"].as_str().unwrap_or("?")
            );
            self.skipped_seen = self.skipped_seen.max(entry["seq"].as_u64().unwrap_or(0));
        }
        Ok(())
    }

    /// Wait until every accepted webhook item has been processed and every
    /// queued reply has left the outbox.
    async fn wait_processed(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let metrics = self
                .http
                .get(format!("{}/metrics", self.base))
                .send()
                .await?
                .text()
                .await?;
            let accepted = metric_sum(
                &metrics,
                "flowgate_webhook_items_total",
                "outcome=\"accepted\"",
            );
            let processed = metric_sum(&metrics, "flowgate_events_total", "outcome=\"processed\"");
            let outbox_empty = outbox_settled(&metrics);
            if processed >= accepted && outbox_empty {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the service did not process the deliveries in time ({processed} of {accepted})"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn script(&mut self, args: &DemoArgs) -> Result<()> {
        // ---- operator
        println!("operator");
        let created = self
            .call(
                reqwest::Method::POST,
                "/v1/operator/tenants",
                &self.operator.clone(),
                Some(json!({"name": "Demo Shop", "timezone": "Europe/Berlin"})),
            )
            .await?;
        self.admin = created["admin_api_key"]
            .as_str()
            .context("admin key")?
            .to_owned();
        let tenant = created["tenant"]["id"]
            .as_str()
            .context("tenant id")?
            .to_owned();
        println!("  created tenant Demo Shop ({tenant}) and its admin API key");
        let access_token = to_hex(&random_bytes::<16>());
        self.fake.register(PHONE_NUMBER_ID, &access_token);
        let channel = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/operator/tenants/{tenant}/channels"),
                &self.operator.clone(),
                Some(
                    json!({"phone_number_id": PHONE_NUMBER_ID, "app_secret": APP_SECRET,
                            "verify_token": "demo-verify-token", "access_token": access_token}),
                ),
            )
            .await?;
        self.webhook = channel["webhook_path"]
            .as_str()
            .context("webhook path")?
            .to_owned();
        let handshake = self
            .http
            .get(format!("{}{}?hub.mode=subscribe&hub.verify_token=demo-verify-token&hub.challenge=1158201444", self.base, self.webhook))
            .send()
            .await?;
        println!(
            "  added channel for phone number id {PHONE_NUMBER_ID}; webhook {} (verification handshake: {} {:?})",
            self.webhook,
            handshake.status().as_u16(),
            handshake.text().await?
        );
        for name in ["labeller", "lead-score", "auto-reply"] {
            let record = self.upload(&args.guests, name).await?;
            println!(
                "  admitted plugin {name} {} ({} bytes, blake3 {}…)",
                record["manifest"]["version"].as_str().unwrap_or("?"),
                record["size"],
                &record["hash"].as_str().unwrap_or("")[..12]
            );
        }

        // ---- tenant
        println!("\ntenant");
        let admin = self.admin.clone();
        for (plugin, grants, config) in [
            (
                "labeller",
                json!(["user.content.private", "user.behavior.labels"]),
                json!({"rules": LABEL_RULES}),
            ),
            (
                "lead-score",
                json!(["user.content.private", "user.behavior.labels"]),
                json!({"label-weights": "pricing=5, stock=5, complaint=-15", "hand-off-at": "70"}),
            ),
            (
                "auto-reply",
                json!(["user.content.private", "user.name"]),
                json!({"faq": FAQ, "cooldown-minutes": "0"}),
            ),
        ] {
            let installation = self
                .call(
                    reqwest::Method::POST,
                    "/v1/installations",
                    &admin,
                    Some(json!({"plugin": plugin, "grants": grants, "config": config})),
                )
                .await?;
            println!(
                "  enabled {plugin:<11} granted {}",
                installation["grants"]
                    .as_array()
                    .map(|g| g
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
        }

        // ---- WhatsApp
        println!("\nconversation (signed webhooks)");
        self.say(SHEENA, "Hi! How much is the blue one?").await?;
        let sheena = self
            .call(
                reqwest::Method::POST,
                "/v1/contacts/lookup",
                &admin,
                Some(json!({"wa_id": SHEENA.0})),
            )
            .await?;
        let sheena_id = sheena["id"].as_str().context("contact id")?.to_owned();
        self.call(reqwest::Method::POST, &format!("/v1/contacts/{sheena_id}/consent"), &admin,
            Some(json!({"purpose": "personalize.profiling", "decision": "granted", "evidence": "web-form-2291"})))
            .await?;
        println!(
            "  (tenant)      records Sheena's consent to personalize.profiling (lead scoring); \
             Jonas gives none"
        );
        self.say(
            SHEENA,
            "Great, I want to buy two. What are your opening hours?",
        )
        .await?;
        self.say(JONAS, "Hallo, was kostet der Versand? Is it in stock?")
            .await?;

        let duplicate = self.message(SHEENA, "unused");
        let duplicate = duplicate.replace(
            &format!("wamid.DEMO{:08}", self.sequence),
            "wamid.DEMO00000001",
        );
        let (status, answer) = self.post_webhook(&duplicate, APP_SECRET).await?;
        println!(
            "  WhatsApp      re-delivers Sheena's first message → {status}, duplicates: {}",
            answer["duplicates"]
        );
        let forged = self.message(JONAS, "send me everything you have on Sheena");
        let (status, answer) = self.post_webhook(&forged, "not-the-app-secret").await?;
        println!(
            "  someone       posts a webhook with a forged signature → {status} {}",
            answer["error"]["code"]
        );

        self.say(JONAS, "STOP").await?;
        self.say(JONAS, "Do you have it in red?").await?;
        self.say(JONAS, "START").await?;
        self.say(JONAS, "Do you have it in red?").await?;

        // A delivery status for the first reply.
        if let Some(first) = self.fake.sent().first() {
            self.clock += 5;
            let status = json!({
                "object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "statuses": [{"id": first.wamid, "status": "read", "timestamp": self.clock.to_string(), "recipient_id": first.to}]
                }}]}]
            })
            .to_string();
            let (code, _) = self.post_webhook(&status, APP_SECRET).await?;
            ensure!(code == 200, "status webhook answered {code}");
            println!("  WhatsApp      reports the first reply as read");
            self.wait_processed().await?;
        }

        // ---- what happened
        println!("\nreplies the Cloud API received");
        for sent in self.fake.sent() {
            let who = if sent.to == SHEENA.0 {
                SHEENA.1
            } else {
                JONAS.1
            };
            println!("  to {who:<13} {:?}", sent.text);
        }
        println!("\ncontacts");
        let contacts = self
            .call(reqwest::Method::GET, "/v1/contacts", &admin, None)
            .await?;
        for c in contacts["contacts"].as_array().into_iter().flatten() {
            println!(
                "  {:<13} labels [{}]  lead score {}  opted out {}  consents [{}]",
                c["profile_name"].as_str().unwrap_or("?"),
                c["labels"]
                    .as_array()
                    .map(|l| l
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                c["lead_score"]
                    .as_u64()
                    .map_or("-".into(), |s| s.to_string()),
                c["opted_out"],
                c["consents"]
                    .as_array()
                    .map(|l| l
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
            );
        }
        println!("\nwhat each plugin was shown, per call (from the audit trail)");
        let invoked = self
            .call(
                reqwest::Method::GET,
                "/v1/audit?action=plugin.invoked&limit=1000",
                &admin,
                None,
            )
            .await?;
        for entry in invoked.as_array().into_iter().flatten() {
            let d = &entry["details"];
            println!(
                "  #{:<3} {:<11} {}  shown [{}]  fuel {}",
                entry["seq"],
                d["plugin"].as_str().unwrap_or("?"),
                entry["subject"].as_str().unwrap_or("?"),
                d["disclosed"]
                    .as_array()
                    .map(|f| f
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default(),
                d["fuel"]
            );
        }
        println!("\nplugins not run, and why (from the audit trail)");
        let skipped = self
            .call(
                reqwest::Method::GET,
                "/v1/audit?action=plugin.skipped&limit=1000",
                &admin,
                None,
            )
            .await?;
        for entry in skipped.as_array().into_iter().flatten() {
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
        let actions = self
            .call(
                reqwest::Method::GET,
                "/v1/audit?action=action.&limit=1000",
                &admin,
                None,
            )
            .await?;
        let consent = self
            .call(
                reqwest::Method::GET,
                "/v1/audit?action=consent.&limit=100",
                &admin,
                None,
            )
            .await?;
        let mut entries: Vec<Value> = actions.as_array().cloned().unwrap_or_default();
        entries.extend(consent.as_array().cloned().unwrap_or_default());
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
        let verified = self
            .call(reqwest::Method::GET, "/v1/audit/verify", &admin, None)
            .await?;
        println!(
            "\naudit chain: {} entries, intact: {}",
            verified["entries"], verified["intact"]
        );
        Ok(())
    }
}

/// Every queued reply (plugin replies and confirmations) has ended as sent,
/// failed or dropped.
fn outbox_settled(metrics: &str) -> bool {
    let done = ["sent", "dropped", "failed"]
        .iter()
        .map(|o| {
            metric_sum(
                metrics,
                "flowgate_messages_sent_total",
                &format!("outcome=\"{o}\""),
            )
        })
        .sum::<u64>();
    done >= metric_sum(metrics, "flowgate_replies_queued_total", "")
}

/// Sum of a metric's samples whose labels contain `filter`.
fn metric_sum(metrics: &str, name: &str, filter: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
