//! The processor's promises, end to end: each data-subject right over HTTP,
//! retention with a time-travelling clock, tamper detection in the audit
//! trail, backups that never bring an erased contact back, offboarding.

use reqwest::Method;
use serde_json::{Value, json};

use flowgate::audit::{self, AuditEntry};
use flowgate::store::Kind;

use flowgate_testkit::disk::{self, OpenFileWatch};
use flowgate_testkit::metrics::metric;
use flowgate_testkit::now;
use flowgate_testkit::service::{OPERATOR, TestService};
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant};
use flowgate_testkit::webhook::text_message;

const DAY: i64 = 86_400;

/// A service with the three plugins; a tenant whose flow runs them all; two
/// customers who wrote; Ana consented to lead scoring.
async fn setup() -> (TestService, TestTenant) {
    let service = TestService::start().await;
    let spec = TenantSpec::new("Shop", "5001")
        .install(crate::pricing_labels())
        .install(Install::new("lead-score"))
        .install(crate::price_reply());
    let tenant = service.tenant_with(&spec).await;
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.C1", "111", "Ana", "hello", now()),
        )
        .await;
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.C2", "222", "Ben", "hello", now()),
        )
        .await;
    service.settle().await;
    let ana = service.contact(&tenant, "111").await;
    let decision =
        json!({"purpose": "personalize.profiling", "decision": "granted", "evidence": "form-1"});
    tenant
        .api
        .consent(ana["id"].as_str().unwrap(), decision)
        .await
        .unwrap();
    service
        .deliver(
            &tenant,
            &text_message(
                "5001",
                "wamid.C3",
                "111",
                "Ana",
                "what is the price?",
                now(),
            ),
        )
        .await;
    service.settle().await;
    (service, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_exports_everything_held_about_one_contact() {
    let (service, tenant) = setup().await;
    let key = service.api_key(&tenant, &["dsr"]).await;
    let answer = service
        .ok(
            Method::POST,
            "/v1/dsr/access",
            &key,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    let export = &answer["export"];
    assert_eq!(export["schema"], "flowgate.contact-export/1");
    assert_eq!(export["profile"]["wa_id"], "111");
    assert_eq!(export["profile"]["profile_name"], "Ana");
    assert_eq!(export["profile"]["labels"], json!(["pricing"]));
    assert!(
        export["profile"]["lead_score"]["reason"]
            .as_str()
            .unwrap()
            .contains("price")
    );
    let messages = export["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "two inbound, one reply: {messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m["preview"] == "what is the price?")
    );
    assert!(
        messages
            .iter()
            .any(|m| m["direction"] == "outbound" && m["preview"] == "Prices: example.com")
    );
    assert_eq!(
        export["consent_ledger"][0]["purpose"],
        "personalize.profiling"
    );
    assert_eq!(export["consent_ledger"][0]["decision"], "granted");
    let states = export["plugin_state"].as_array().unwrap();
    assert_eq!(states.len(), 2, "lead-score's and auto-reply's state");
    let lead_score = states
        .iter()
        .find(|s| s["plugin"] == "lead-score")
        .expect("lead-score's state, named by plugin");
    assert!(lead_score["entries"]["messages"]["hex"].is_string());
    assert!(
        lead_score["entries"]["messages"]["text"].is_null(),
        "a binary counter is not passed off as text"
    );
    assert!(
        states
            .iter()
            .any(|s| s["entries"]["last-reply"]["hex"].is_string())
    );
    let audit = export["audit"].as_array().unwrap();
    assert!(audit.iter().any(|e| e["action"] == "plugin.invoked"));
    assert!(
        audit
            .iter()
            .all(|e| e["subject"] == export["audit_pseudonym"])
    );
    // Nothing about the other contact.
    assert!(!export.to_string().contains("Ben"));
    // The request is recorded and audited; a key without the dsr scope
    // cannot make it.
    let requests = service.ok(Method::GET, "/v1/dsr", &key, None).await;
    assert_eq!(requests[0]["kind"], "access");
    assert_eq!(requests[0]["status"], "completed");
    let audited = service.audit_of(&tenant, "dsr.access").await;
    assert_eq!(audited.len(), 1);
    let reader = service.api_key(&tenant, &["read"]).await;
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/dsr/access",
            &reader,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/dsr/access",
            &key,
            Some(json!({"wa_id": "999"})),
        )
        .await;
    assert_eq!(status, 404);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rectification_restriction_and_objection_take_effect() {
    let (service, tenant) = setup().await;
    let key = service.api_key(&tenant, &["dsr"]).await;
    let fixed = service
        .ok(Method::POST, "/v1/dsr/rectification", &key,
            Some(json!({"wa_id": "111", "changes": {"profile_name": "Ana Souza", "labels": ["vip"], "clear_lead_score": true}})))
        .await;
    assert_eq!(fixed["profile"]["profile_name"], "Ana Souza");
    assert_eq!(fixed["profile"]["labels"], json!(["vip"]));
    assert_eq!(fixed["profile"]["lead_score"], Value::Null);
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/dsr/rectification",
            &key,
            Some(json!({"wa_id": "111", "changes": {}})),
        )
        .await;
    assert_eq!(status, 400);

    // Restricted: kept, not processed — no plugin runs, nothing is sent.
    service
        .ok(
            Method::POST,
            "/v1/dsr/restriction",
            &key,
            Some(json!({"wa_id": "111", "restricted": true})),
        )
        .await;
    let sent_before = service.fake.sent().len();
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.R1", "111", "Ana", "price again?", now()),
        )
        .await;
    service.settle().await;
    assert_eq!(service.fake.sent().len(), sent_before);
    let restricted = service.audit_of(&tenant, "processing.restricted").await;
    assert_eq!(restricted.len(), 1);
    service
        .ok(
            Method::POST,
            "/v1/dsr/restriction",
            &key,
            Some(json!({"wa_id": "111", "restricted": false})),
        )
        .await;

    // Objecting to `personalize` stops lead scoring only.
    service
        .ok(
            Method::POST,
            "/v1/dsr/objection",
            &key,
            Some(json!({"wa_id": "111", "purpose": "personalize", "objecting": true})),
        )
        .await;
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.R2", "111", "Ana", "price?", now()),
        )
        .await;
    service.settle().await;
    let skipped = service.audit_of(&tenant, "plugin.skipped").await;
    // (Earlier entries are lead-score not run for messages written before
    // Ana consented to profiling.)
    let objected: Vec<&Value> = skipped
        .iter()
        .filter(|e| e["details"]["reason"] == "objected")
        .collect();
    assert_eq!(objected.len(), 1, "{skipped:?}");
    assert_eq!(objected[0]["details"]["objection"], "personalize");
    assert_eq!(objected[0]["details"]["plugin"], "lead-score");
    assert_eq!(
        service.fake.sent().len(),
        sent_before + 1,
        "auto-reply still answers"
    );
    let kinds: Vec<String> = service
        .ok(Method::GET, "/v1/dsr", &key, None)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "rectification",
            "restriction",
            "lift-restriction",
            "objection"
        ]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_every_record_and_shreds_the_key() {
    let (service, tenant) = setup().await;
    let key = service.api_key(&tenant, &["dsr"]).await;
    let ana = service.contact(&tenant, "111").await;
    let ana_id: flowgate::ids::ContactId = ana["id"].as_str().unwrap().parse().unwrap();
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let consent_before = service.vault.store.count(Kind::Consent);
    let request = service
        .ok(
            Method::POST,
            "/v1/dsr/erasure",
            &key,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    assert_eq!(request["kind"], "erasure");
    assert!(request["details"]["messages"].as_u64().unwrap() >= 3);

    let vault = &service.vault;
    assert!(
        vault.keys.contact(&tenant_id, &ana_id).unwrap().is_none(),
        "key shredded"
    );
    let message_prefix = [b"m".as_slice(), ana_id.as_bytes()].concat();
    assert!(
        vault
            .store
            .scan(&tenant_id, Kind::Messages, &message_prefix, None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        vault
            .store
            .scan(&tenant_id, Kind::PluginState, ana_id.as_bytes(), None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        vault
            .store
            .get(&tenant_id, Kind::Contacts, ana_id.as_bytes())
            .unwrap()
            .is_none()
    );
    assert_eq!(
        vault.store.count(Kind::Consent),
        consent_before,
        "consent proof is kept"
    );
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/contacts/lookup",
            &tenant.admin,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    assert_eq!(status, 404);
    // The other contact is untouched; a new message makes a new contact.
    service.contact(&tenant, "222").await;
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.E9", "111", "Ana", "hello again", now()),
        )
        .await;
    service.settle().await;
    let again = service.contact(&tenant, "111").await;
    assert_ne!(again["id"], ana["id"]);
    assert_eq!(again["labels"], json!([]));
    let answer = service
        .ok(
            Method::POST,
            "/v1/dsr/access",
            &key,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    assert_eq!(
        answer["export"]["messages"].as_array().unwrap().len(),
        1,
        "no history survives"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expires_each_class_on_time_as_the_clock_travels() {
    let (service, tenant) = setup().await;
    let key = service.api_key(&tenant, &["dsr"]).await;
    let export = |service: &TestService| {
        let key = key.clone();
        let http = service.http.clone();
        let base = service.base.clone();
        async move {
            http.post(format!("{base}/v1/dsr/access"))
                .bearer_auth(key)
                .json(&json!({"wa_id": "111"}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["export"]
                .clone()
        }
    };
    let run = |service: &TestService| {
        let http = service.http.clone();
        let base = service.base.clone();
        async move {
            http.post(format!("{base}/v1/operator/retention"))
                .bearer_auth(OPERATOR)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Nothing is due yet.
    let first = run(&service).await;
    assert_eq!(first["retention"][0]["report"]["messages_deleted"], 0);

    service.clock.advance(91 * DAY);
    let after_90 = run(&service).await;
    let report = &after_90["retention"][0]["report"];
    assert!(
        report["previews_cleared"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert!(
        report["plugin_states_deleted"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let exported = export(&service).await;
    assert!(
        exported["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["preview"].is_null())
    );
    assert!(
        !exported["messages"].as_array().unwrap().is_empty(),
        "metadata stays a year"
    );
    assert!(exported["plugin_state"].as_array().unwrap().is_empty());

    service.clock.advance(275 * DAY);
    run(&service).await;
    let exported = export(&service).await;
    assert!(
        exported["messages"].as_array().unwrap().is_empty(),
        "metadata gone after a year"
    );
    assert_eq!(
        exported["consent_ledger"].as_array().unwrap().len(),
        1,
        "consent kept 7 years"
    );

    service.clock.advance(7 * 365 * DAY);
    run(&service).await;
    let exported = export(&service).await;
    assert!(exported["consent_ledger"].as_array().unwrap().is_empty());
    let runs = service.audit_of(&tenant, "retention.run").await;
    assert!(runs.len() >= 3);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_may_shorten_retention_but_not_lengthen_it() {
    let (service, tenant) = setup().await;
    let (status, error) = service
        .request(
            Method::PATCH,
            "/v1/tenant",
            &tenant.admin,
            Some(json!({"retention": {"message_previews_days": 120}})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    service
        .ok(
            Method::PATCH,
            "/v1/tenant",
            &tenant.admin,
            Some(json!({"retention": {"message_previews_days": 7}})),
        )
        .await;
    service.clock.advance(8 * DAY);
    let run = service
        .ok(Method::POST, "/v1/operator/retention", OPERATOR, None)
        .await;
    assert!(
        run["retention"][0]["report"]["previews_cleared"]
            .as_u64()
            .unwrap()
            >= 3
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_outlives_its_expired_consent_record() {
    let (service, tenant) = setup().await;
    service
        .ok(
            Method::PATCH,
            "/v1/tenant",
            &tenant.admin,
            Some(json!({"retention": {"consent_records_days": 1}})),
        )
        .await;
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.STOP1", "111", "Ana", "STOP", now()),
        )
        .await;
    service.settle().await;
    assert_eq!(service.contact(&tenant, "111").await["opted_out"], true);
    // The STOP record expires and is swept away...
    service.clock.advance(2 * DAY);
    let run = service
        .ok(Method::POST, "/v1/operator/retention", OPERATOR, None)
        .await;
    assert!(
        run["retention"][0]["report"]["consent_records_deleted"]
            .as_u64()
            .unwrap()
            >= 1,
        "{run}"
    );
    // ... then the tenant records an unrelated consent: the opt-out stands.
    let id = service.contact(&tenant, "111").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after = service
        .ok(
            Method::POST,
            &format!("/v1/contacts/{id}/consent"),
            &tenant.admin,
            Some(json!({"purpose": "personalize.profiling", "decision": "granted"})),
        )
        .await;
    assert_eq!(after["opted_out"], true, "{after}");
    assert_eq!(after["consents"], json!(["personalize.profiling"]));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_or_deleted_audit_entry_is_detected() {
    let (service, tenant) = setup().await;
    let verified = service
        .ok(Method::GET, "/v1/audit/verify", &tenant.admin, None)
        .await;
    assert_eq!(verified["intact"], true);
    let total = verified["entries"].as_u64().unwrap();
    assert!(total > 10);

    // Someone with the keys rewrites entry 5 to hide what a plugin was shown.
    let vault = &service.vault;
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let keys = vault.keys.tenant(&tenant_id).unwrap();
    let key = audit::entry_key(5);
    let mut entry: AuditEntry = vault
        .read(&keys.records, &tenant_id, Kind::Audit, &key)
        .unwrap()
        .unwrap();
    entry.details = json!({"nothing": "to see"});
    let mut batch = flowgate::store::Batch::new();
    vault.stage(
        &mut batch,
        &keys.records,
        &tenant_id,
        Kind::Audit,
        &key,
        &entry,
    );
    vault.store.commit(&batch).unwrap();
    let broken = service
        .ok(Method::GET, "/v1/audit/verify", &tenant.admin, None)
        .await;
    assert_eq!(broken["intact"], false);
    assert_eq!(broken["broken_at"], 5);
    assert!(broken["reason"].as_str().unwrap().contains("edited"));

    // The operator's CLI path sees the same.
    let via_operator = service
        .ok(
            Method::GET,
            &format!("/v1/operator/tenants/{}/audit/verify", tenant.id),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(via_operator["intact"], false);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_breaks_the_chain_at_that_point() {
    let (service, tenant) = setup().await;
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let mut batch = flowgate::store::Batch::new();
    batch.delete(tenant_id, Kind::Audit, audit::entry_key(7));
    service.vault.store.commit(&batch).unwrap();
    let broken = service
        .ok(Method::GET, "/v1/audit/verify", &tenant.admin, None)
        .await;
    assert_eq!(broken["intact"], false);
    assert_eq!(broken["broken_at"], 7);
    assert!(broken["reason"].as_str().unwrap().contains("deleted"));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_audit_entries_is_reported_as_truncation() {
    let (service, tenant) = setup().await;
    let whole = tenant.api.verify_audit().await.unwrap();
    assert_eq!(
        (&whole["intact"], &whole["truncated"]),
        (&json!(true), &json!(false))
    );
    let total = whole["entries"].as_u64().unwrap();
    assert_eq!(whole["head"], total, "{whole}");

    // While the service is stopped, someone with access to its data
    // directory deletes the three newest entries: what is left is a whole,
    // shorter chain.
    let stopped = service.halt().await;
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let mut batch = flowgate::store::Batch::new();
    for seq in total - 2..=total {
        batch.delete(tenant_id, Kind::Audit, audit::entry_key(seq));
    }
    stopped.vault.store.commit(&batch).unwrap();
    let service = stopped.start().await;

    let cut = tenant.api.verify_audit().await.unwrap();
    assert_eq!(
        (&cut["intact"], &cut["truncated"]),
        (&json!(false), &json!(true)),
        "{cut}"
    );
    assert_eq!(cut["entries"], total - 3);
    assert_eq!(cut["broken_at"], total - 2);
    assert_eq!(cut["head"], total);
    let reason = cut["reason"].as_str().unwrap();
    assert!(reason.contains("truncated"), "{reason}");
    assert!(
        reason.contains(&format!("entries {} to {total} are missing", total - 2)),
        "{reason}"
    );
    let via_operator = service
        .ok(
            Method::GET,
            &format!("/v1/operator/tenants/{}/audit/verify", tenant.id),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(via_operator, cut);

    // The service writes on after the sealed head, not after what is left:
    // new entries do not make the shortened chain whole again.
    service
        .deliver(
            &tenant,
            &text_message("5001", "wamid.C4", "222", "Ben", "hello again", now()),
        )
        .await;
    service.settle().await;
    let later = tenant.api.verify_audit().await.unwrap();
    assert_eq!(later["intact"], false, "{later}");
    assert_eq!(later["broken_at"], total - 2);
    assert!(
        later["reason"].as_str().unwrap().contains("deleted"),
        "{later}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_never_brings_an_erased_contact_back() {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_owned();
    let service = TestService::start_with(move |c| c.backup_dir = dir).await;
    for plugin in ["labeller", "lead-score", "auto-reply"] {
        service.upload(plugin).await;
    }
    let tenant = service
        .tenant_with(&TenantSpec::new("Shop", "5002").install(Install::new("lead-score")))
        .await;
    for (i, who) in ["111", "222"].iter().enumerate() {
        let body = text_message(
            "5002",
            &format!("wamid.B{i}"),
            who,
            "Quintessa",
            "my cobalt teapot",
            now(),
        );
        service.deliver(&tenant, &body).await;
    }
    service.settle().await;
    let ana = service.contact(&tenant, "111").await;
    let ana_id: flowgate::ids::ContactId = ana["id"].as_str().unwrap().parse().unwrap();

    let backup = service
        .ok(Method::POST, "/v1/operator/backups", OPERATOR, None)
        .await;
    let path = std::path::PathBuf::from(backup["path"].as_str().unwrap());
    assert!(backup["summary"]["records"].as_u64().unwrap() > 10);
    // Only the service's user may read it, whatever the umask.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "a backup is readable by its owner only"
    );
    // The backup holds no plaintext.
    let bytes = std::fs::read(&path).unwrap();
    for needle in [b"Quintessa".as_slice(), b"cobalt teapot"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }

    let key = service.api_key(&tenant, &["dsr"]).await;
    service
        .ok(
            Method::POST,
            "/v1/dsr/erasure",
            &key,
            Some(json!({"wa_id": "111"})),
        )
        .await;

    let vault = service.vault.clone();
    // The service stops (as an operator stops it before a restore); its
    // data directory must outlive it for the restore.
    let _data = service.stop().await;
    let restored = flowgate::compliance::backup::restore(&vault, &path).unwrap();
    assert!(
        restored.unrecoverable_removed > 0,
        "the erased contact's records were in the backup"
    );
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let contacts = flowgate::data::contacts::Contacts::of(&vault, tenant_id).unwrap();
    assert!(
        contacts.find(Some("111"), None).unwrap().is_none(),
        "its index entry is gone"
    );
    assert!(contacts.load(&ana_id).unwrap().is_none());
    assert!(
        vault
            .store
            .get(&tenant_id, Kind::Contacts, ana_id.as_bytes())
            .unwrap()
            .is_none()
    );
    let ben = contacts
        .find_and_load(Some("222"), None)
        .unwrap()
        .expect("the other contact is back");
    assert_eq!(ben.contact.wa_id.as_deref(), Some("222"));
    assert!(flowgate::audit::verify(&vault, &tenant_id).unwrap().intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_exports_then_deletes_the_tenant() {
    let (service, tenant) = setup().await;
    let other = service.tenant("Other", "5003").await;
    let response = service
        .http
        .get(format!(
            "{}/v1/operator/tenants/{}/export",
            service.base, tenant.id
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |kind: &str| lines.iter().filter(|l| l["type"] == kind).count();
    assert_eq!(count("tenant"), 1);
    assert_eq!(count("installation"), 3);
    assert_eq!(count("channel"), 1);
    assert_eq!(count("contact"), 2);
    assert!(count("audit") > 10);
    assert!(
        !text.contains("app-secret-of-Shop"),
        "no channel secrets in the export"
    );

    let scheduled = service
        .ok(
            Method::POST,
            &format!("/v1/operator/tenants/{}/offboard", tenant.id),
            OPERATOR,
            Some(json!({})),
        )
        .await;
    assert!(scheduled["deletion_due"].as_u64().unwrap() <= now() + 30 * 86_400 + 5);
    let (status, _) = service
        .request(
            Method::POST,
            &format!("/v1/operator/tenants/{}/offboard", tenant.id),
            OPERATOR,
            Some(json!({"days": 45})),
        )
        .await;
    assert_eq!(status, 400, "never later than 30 days");

    // The 30 days pass; the maintenance run deletes the tenant.
    service.clock.advance(31 * DAY);
    let duties = service
        .ok(Method::POST, "/v1/operator/retention", OPERATOR, None)
        .await;
    assert_eq!(duties["deleted_tenants"], json!([tenant.id]));
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    for kind in Kind::ALL {
        assert!(
            service
                .vault
                .store
                .scan(&tenant_id, kind, b"", None, 1)
                .unwrap()
                .is_empty(),
            "{kind:?} left"
        );
    }
    assert!(!service.vault.keys.has_tenant(&tenant_id).unwrap());
    let (status, _) = service
        .request(Method::GET, "/v1/tenant", &tenant.admin, None)
        .await;
    assert_eq!(status, 401, "its API keys are gone");
    let (status, _) = service
        .post_webhook(
            &tenant.webhook,
            &text_message("5001", "wamid.Z", "1", "Z", "hi", now()),
            &tenant.app_secret,
        )
        .await;
    assert_eq!(status, 404, "its channel is gone");
    // The other tenant is untouched; the system chain recorded the deletion.
    service
        .ok(Method::GET, "/v1/tenant", &other.admin, None)
        .await;
    let system = service
        .ok(
            Method::GET,
            "/v1/operator/tenants/system/audit/verify",
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(system["intact"], true);
    // Deletion on demand, without the wait.
    let deleted = service
        .ok(
            Method::DELETE,
            &format!("/v1/operator/tenants/{}", other.id),
            OPERATOR,
            None,
        )
        .await;
    assert!(deleted["records"].as_u64().unwrap() > 0, "{deleted}");
    let (status, _) = service
        .request(Method::GET, "/v1/tenant", &other.admin, None)
        .await;
    assert_eq!(status, 401);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_export_puts_no_plaintext_personal_data_on_the_disk() {
    // The export holds every contact's number and name in clear: it may be
    // spooled to disk on its way out, but only sealed.
    const NUMBER: &str = "4915730094718";
    const NAME: &str = "Quintessa Marchbanks";
    let service = TestService::start().await;
    let tenant = service.tenant("Shop", "5005").await;
    service
        .deliver(
            &tenant,
            &text_message("5005", "wamid.Q", NUMBER, NAME, "hello", now()),
        )
        .await;
    // Others, so that writing the export takes a while: a temporary file,
    // were there one, stays open long enough to be seen.
    for i in 0..40 {
        let from = format!("4915730095{i:03}");
        let body = text_message("5005", &format!("wamid.O{i}"), &from, "Other", "hi", now());
        service.deliver(&tenant, &body).await;
    }
    service.settle().await;

    let watch = OpenFileWatch::start(&[NUMBER, NAME]);
    let export = service
        .operator()
        .0
        .call(
            Method::GET,
            &format!("/v1/operator/tenants/{}/export", tenant.id),
            None,
        )
        .await
        .unwrap();
    let watched = watch.stop();
    let export = export.as_str().expect("NDJSON, not one JSON value");
    assert!(
        export.contains(NUMBER) && export.contains(NAME),
        "the export itself holds them"
    );
    assert!(watched.looks > 1, "the watch looked");
    assert!(
        watched.found.is_empty(),
        "plaintext in files the service held open: {:?}",
        watched.found
    );
    let data = service.data_dir().to_owned();
    assert_eq!(
        disk::files_holding(&data, &[NUMBER, NAME]),
        Vec::new(),
        "plaintext in the data directory"
    );
    service.stop().await;
}

/// A tenant whose flow holds each event for about a second (a plugin that
/// loops until its deadline, failing), so a data-subject request can land
/// while an event for the same contact is being processed; and that
/// contact, seen once. The plugin's breaker opens after `breaker_failures`.
async fn slow_flow(
    wa_id: &str,
    breaker_failures: u32,
) -> (TestService, TestTenant, String, String) {
    let service = TestService::start_with(|c| {
        c.limits.fuel = u64::MAX / 2;
        c.limits.deadline_ms = 1_000;
        c.limits.breaker_failures = breaker_failures;
        // The tenant's budget per event must not end the loop first.
        c.tenant_limits.event_fuel = u64::MAX / 2;
    })
    .await;
    let spec = TenantSpec::new("Shop", "5601")
        .install(Install::new("fixture-hostile").config(json!({"attack": "loop"})));
    let tenant = service.tenant_with(&spec).await;
    service
        .deliver(
            &tenant,
            &text_message("5601", "wamid.S1", wa_id, "Cleo", "hello", now()),
        )
        .await;
    service.settle().await;
    let id = service.contact(&tenant, wa_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = service.api_key(&tenant, &["dsr"]).await;
    // The second event: acknowledged at once, then held by the plugin with
    // the contact's record read.
    service
        .deliver(
            &tenant,
            &text_message("5601", "wamid.S2", wa_id, "Cleo", "again", now()),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    (service, tenant, id, key)
}

/// Whether a commit was refused for a changed record: proof the request
/// really landed while the event was in flight.
async fn conflicts(service: &TestService) -> u64 {
    metric(
        &service.metrics().await,
        "flowgate_commit_conflicts_total",
        "",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_made_while_an_event_is_processed_is_not_undone_by_it() {
    // The second failure opens the breaker, in the attempt the restriction
    // makes the service redo.
    let (service, tenant, id, key) = slow_flow("333", 2).await;
    service
        .ok(
            Method::POST,
            "/v1/dsr/restriction",
            &key,
            Some(json!({"wa_id": "333", "restricted": true})),
        )
        .await;
    service.settle().await;
    assert!(
        conflicts(&service).await >= 1,
        "the event was still in flight"
    );
    let after = service.contact(&tenant, "333").await;
    assert_eq!(after["id"], id.as_str());
    assert_eq!(
        after["restricted"], true,
        "the event's write, computed before the restriction, must not clear it"
    );
    // The redone attempt (restricted: no plugin runs) still records the
    // breaker opening that the refused attempt caused.
    let opened = service.audit_of(&tenant, "breaker.changed").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["details"]["transition"], "opened");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_made_while_an_event_is_processed_leaves_nothing_behind() {
    let (service, tenant, id, key) = slow_flow("444", 100).await;
    service
        .ok(
            Method::POST,
            "/v1/dsr/erasure",
            &key,
            Some(json!({"wa_id": "444"})),
        )
        .await;
    service.settle().await;
    assert!(
        conflicts(&service).await >= 1,
        "the event was still in flight"
    );
    let old: flowgate::ids::ContactId = id.parse().unwrap();
    let tenant_id: flowgate::ids::TenantId = tenant.id.parse().unwrap();
    let store = &service.vault.store;
    assert!(
        store
            .get(&tenant_id, Kind::Contacts, old.as_bytes())
            .unwrap()
            .is_none(),
        "the erased contact's record is not written back"
    );
    let messages = store
        .scan(
            &tenant_id,
            Kind::Messages,
            &[b"m".as_slice(), old.as_bytes()].concat(),
            None,
            100,
        )
        .unwrap();
    assert!(
        messages.is_empty(),
        "no message stored under the erased contact"
    );
    // No trace names it: no retention-index entry (they carry the contact
    // id and the times it wrote), no queued delivery, and no key.
    let index = store
        .scan(&tenant_id, Kind::Expiry, b"", None, 10_000)
        .unwrap();
    assert!(
        index.iter().all(|(key, _)| {
            flowgate::data::expiry::target_contact(key) != Some(old.as_bytes())
        }),
        "a retention-index entry still names the erased contact"
    );
    let inbox = store
        .scan(
            &flowgate::ids::TenantId::SYSTEM,
            Kind::Inbox,
            b"",
            None,
            10_000,
        )
        .unwrap();
    assert!(
        inbox
            .iter()
            .all(|(key, _)| key.get(25..41) != Some(old.as_bytes()))
    );
    assert!(
        service
            .vault
            .keys
            .contact(&tenant_id, &old)
            .unwrap()
            .is_none()
    );
    // The message that arrived before the erasure and waited behind the
    // slow event went with the contact: nothing brings the contact back.
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/contacts/lookup",
            &tenant.admin,
            Some(json!({"wa_id": "444"})),
        )
        .await;
    assert_eq!(status, 404, "the erased contact is not re-created");
    service.stop().await;
}
