//! What an installation may see and leave behind, end to end: a
//! consent-based plugin is not run without consent, system notices carry no
//! identifiers, labels are limited to what the manifest declares, and a
//! plugin runs only under the manifest the operator admitted.

use reqwest::Method;
use serde_json::{Value, json};

use flowgate_testkit::now;
use flowgate_testkit::service::TestService;
use flowgate_testkit::setup::{Install, TestTenant};
use flowgate_testkit::webhook::text_message;

/// Enable `plugin` with exactly these grants and this configuration.
async fn enable_with(tenant: &TestTenant, plugin: &str, grants: &[&str], config: Value) -> Value {
    tenant
        .api
        .install(&Install::new(plugin).grants(grants).config(config))
        .await
        .unwrap()
}

/// Everything held about one contact (a data-subject access request).
async fn access(service: &TestService, tenant: &TestTenant, wa_id: &str) -> Value {
    let key = service.api_key(tenant, &["dsr"]).await;
    let answer = service
        .ok(
            Method::POST,
            "/v1/dsr/access",
            &key,
            Some(json!({"wa_id": wa_id})),
        )
        .await;
    answer["export"].clone()
}

/// WhatsApp's notice that a user changed their number: its body names the
/// user and both numbers.
fn number_changed(phone_number_id: &str, from: &str, to: &str, at: u64) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
            "messages": [{"from": from, "id": format!("wamid.change.{to}"), "timestamp": at.to_string(),
                "type": "system", "system": {
                    "body": format!("User Sheena Nelson changed from {from} to {to}"),
                    "wa_id": to, "type": "user_changed_number"}}]
        }}]}]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_change_notice_shows_a_plugin_no_numbers_or_names() {
    let service = TestService::start().await;
    service.upload("labeller").await;
    let tenant = service.tenant("Shop", "7001").await;
    // A labeller granted only the message text, with rules that would catch
    // a number or the name in it.
    enable_with(
        &tenant,
        "labeller",
        &["user.content.private"],
        json!({"rules": r#"[
            {"label": "has-number", "patterns": ["\\d{6,}"]},
            {"label": "named", "keywords": ["sheena", "nelson"]},
            {"label": "changed", "keywords": ["changed"]}
        ]"#}),
    )
    .await;
    service
        .deliver(
            &tenant,
            &text_message("7001", "wamid.P1", "16505551234", "Sheena", "hi", now()),
        )
        .await;
    service
        .deliver(
            &tenant,
            &number_changed("7001", "16505551234", "16505559999", now()),
        )
        .await;
    service.settle().await;

    // The contact moved to the new number (the re-keying stays)…
    let moved = service.contact(&tenant, "16505559999").await;
    assert_eq!(moved["profile_name"], "Sheena");
    // …and the plugin saw no text in the notice: none of its rules matched.
    assert_eq!(moved["labels"], json!([]), "{moved}");
    let invoked = service.audit_of(&tenant, "plugin.invoked").await;
    assert_eq!(invoked.len(), 2, "the labeller ran on both messages");
    // Nor is the notice kept as a message preview.
    let export = access(&service, &tenant, "16505559999").await;
    let messages = export["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1]["kind"], "system");
    assert_eq!(messages[1]["preview"], Value::Null, "{messages:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_based_plugin_is_not_run_for_a_contact_without_consent() {
    let service = TestService::start().await;
    service.upload("lead-score").await;
    let tenant = service.tenant("Shop", "7002").await;
    let scorer = service.enable(&tenant, "lead-score", json!({})).await;
    for (n, text) in ["Hallo, was kostet der Versand?", "I want to buy two"]
        .iter()
        .enumerate()
    {
        service
            .deliver(
                &tenant,
                &text_message(
                    "7002",
                    &format!("wamid.J{n}"),
                    "4915112345678",
                    "Jonas",
                    text,
                    now(),
                ),
            )
            .await;
    }
    service.settle().await;

    // Jonas never consented to profiling: lead-score was not invoked for
    // him, so it kept no count and set no score…
    assert!(service.audit_of(&tenant, "plugin.invoked").await.is_empty());
    let jonas = service.contact(&tenant, "4915112345678").await;
    assert_eq!(jonas["lead_score"], Value::Null, "{jonas}");
    assert_eq!(
        access(&service, &tenant, "4915112345678").await["plugin_state"],
        json!([]),
        "nothing derived is stored"
    );
    // …and the trail says why, in plain words, for each message.
    let skipped = service.audit_of(&tenant, "plugin.skipped").await;
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    let details = &skipped[0]["details"];
    assert_eq!(details["reason"], "no-consent", "{details}");
    assert_eq!(details["purpose"], "personalize.profiling");
    assert_eq!(details["plugin"], "lead-score");
    assert_eq!(skipped[0]["actor"]["id"], scorer["id"]);
    assert_eq!(
        details["why"],
        "the contact has not consented to `personalize.profiling`, \
         which this plugin's processing rests on"
    );

    // Once he consents, it runs: its count starts with that message.
    service
        .ok(
            Method::POST,
            &format!("/v1/contacts/{}/consent", jonas["id"].as_str().unwrap()),
            &tenant.admin,
            Some(json!({"purpose": "personalize.profiling", "decision": "granted", "evidence": "form-7"})),
        )
        .await;
    service
        .deliver(
            &tenant,
            &text_message("7002", "wamid.J9", "4915112345678", "Jonas", "hello", now()),
        )
        .await;
    service.settle().await;
    assert_eq!(service.audit_of(&tenant, "plugin.invoked").await.len(), 1);
    let jonas = service.contact(&tenant, "4915112345678").await;
    assert_eq!(jonas["lead_score"], 4, "one message (+4): {jonas}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_write_identifiers_or_pseudonyms_into_labels() {
    let service = TestService::start().await;
    service.upload("fixture-hostile").await;
    service.upload("labeller").await;
    let tenant = service.tenant("Shop", "7003").await;
    let hostile = enable_with(
        &tenant,
        "fixture-hostile",
        &["user.contact.phone_number"],
        json!({"attack": "label-leak"}),
    )
    .await;
    // A second installation that reads labels: it must not find the other
    // installation's pseudonym, or the number, there.
    enable_with(
        &tenant,
        "labeller",
        &["user.content.private", "user.behavior.labels"],
        json!({"rules": r#"[{"label": "pricing", "keywords": ["price"]}]"#}),
    )
    .await;
    service
        .deliver(
            &tenant,
            &text_message("7003", "wamid.L1", "16505551234", "Ana", "hello", now()),
        )
        .await;
    service.settle().await;
    // The tenant labels Ana `vip` herself.
    let desk = service.api_key(&tenant, &["dsr"]).await;
    service
        .ok(
            Method::POST,
            "/v1/dsr/rectification",
            &desk,
            Some(json!({"wa_id": "16505551234", "changes": {"labels": ["vip"]}})),
        )
        .await;
    service
        .deliver(
            &tenant,
            &text_message("7003", "wamid.L2", "16505551234", "Ana", "hello", now()),
        )
        .await;
    service.settle().await;

    // Only the label the manifest declares was applied; the tenant's `vip`
    // stays.
    let ana_after = service.contact(&tenant, "16505551234").await;
    assert_eq!(
        ana_after["labels"],
        json!(["vip", "survived"]),
        "{ana_after}"
    );
    // Each refused label is audited, by its length only.
    let dropped = service.audit_of(&tenant, "action.dropped").await;
    let undeclared: Vec<&Value> = dropped
        .iter()
        .filter(|e| e["details"]["reason"]["reason"] == "undeclared-label")
        .collect();
    assert_eq!(
        undeclared.len(),
        6,
        "the number, the pseudonym and removing `vip`, for each message: {dropped:?}"
    );
    assert!(undeclared.iter().all(|e| e["actor"]["id"] == hostile["id"]));
    let trail = service
        .ok(Method::GET, "/v1/audit?limit=1000", &tenant.admin, None)
        .await
        .to_string();
    assert!(!trail.contains("16505551234"), "the number in the trail");
    // The tenant sees, before enabling, which labels the plugin may write.
    let registry = service
        .ok(Method::GET, "/v1/plugins", &tenant.admin, None)
        .await;
    let manifest = &registry
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["manifest"]["id"] == "fixture-hostile")
        .unwrap()["manifest"];
    assert!(
        manifest["labels"].as_array().is_some_and(|l| !l.is_empty()),
        "{manifest}"
    );
    let installation = service
        .ok(
            Method::GET,
            &format!("/v1/installations/{}", hostile["id"].as_str().unwrap()),
            &tenant.admin,
            None,
        )
        .await;
    assert_eq!(installation["labels"], manifest["labels"], "{installation}");
    service.stop().await;
}
