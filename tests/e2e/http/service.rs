//! The service end to end over HTTP: webhooks in, plugins run, replies out.

use reqwest::Method;
use serde_json::{Value, json};

use flowgate::channel::whatsapp::fake::Stall;
use flowgate::store::Kind;
use flowgate_testkit::metrics::metric;
use flowgate_testkit::now;
use flowgate_testkit::service::{OPERATOR, TestService};
use flowgate_testkit::setup::{Install, TenantSpec, TestTenant};
use flowgate_testkit::webhook::{delivered_status, text_message};

const FAQ: &str = r#"[{"keywords": ["hours", "price", "red"], "reply": "Happy to help, {name}!"}]"#;

/// A tenant whose flow labels pricing questions and answers FAQ entries.
async fn shop(service: &TestService, name: &str, phone: &str) -> TestTenant {
    let spec = TenantSpec::new(name, phone)
        .install(crate::pricing_labels())
        .install(Install::new("auto-reply").config(json!({"faq": FAQ, "cooldown-minutes": "0"})));
    service.tenant_with(&spec).await
}

async fn ready_service() -> TestService {
    let service = TestService::start().await;
    for plugin in ["labeller", "lead-score", "auto-reply"] {
        service.upload(plugin).await;
    }
    service
}

fn contacts_stored(service: &TestService) -> usize {
    service.vault.store.count(Kind::Contacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_runs_through_the_flow_and_replies_are_sent() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1001").await;
    let body = text_message(
        "1001",
        "wamid.A1",
        "16505551234",
        "Ana",
        "What is the price?",
        now(),
    );
    let answer = service.deliver(&tenant, &body).await;
    assert_eq!(answer["accepted"], 1);
    service.settle().await;

    let sent = service.fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "16505551234");
    assert_eq!(sent[0].text, "Happy to help, Ana!");
    assert_eq!(sent[0].phone_number_id, "1001");

    let contact = service.contact(&tenant, "+1 650 555 1234").await;
    assert_eq!(contact["labels"], json!(["pricing"]));
    assert_eq!(contact["profile_name"], "Ana");

    let verify = service
        .ok(Method::GET, "/v1/audit/verify", &tenant.admin, None)
        .await;
    assert_eq!(verify["intact"], true);
    let invoked = service.audit_of(&tenant, "plugin.invoked").await;
    assert_eq!(invoked.len(), 2, "labeller then auto-reply");
    assert_eq!(
        invoked[0]["details"]["disclosed"],
        json!(["user.content.private", "user.behavior.labels"])
    );
    // The audit trail holds no personal data.
    let audit = service
        .ok(Method::GET, "/v1/audit?limit=1000", &tenant.admin, None)
        .await
        .to_string();
    for personal in ["16505551234", "Ana", "price?", "Happy to help"] {
        assert!(!audit.contains(personal), "{personal} in the audit trail");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1002").await;
    let body = text_message("1002", "wamid.S1", "111", "Eve", "hello", now());
    let url = format!("{}{}", service.base, tenant.webhook);
    let cases: Vec<Option<String>> = vec![
        None,
        Some("sha256=".to_owned() + &"0".repeat(64)),
        Some("sha1=abcdef".into()),
        Some("garbage".into()),
        Some(flowgate::channel::whatsapp::signature::sign(
            b"wrong secret",
            body.as_bytes(),
        )),
        // Signed correctly, but over a different body.
        Some(flowgate::channel::whatsapp::signature::sign(
            tenant.app_secret.as_bytes(),
            b"{}",
        )),
    ];
    for header in cases {
        let mut request = service.http.post(&url).body(body.clone());
        if let Some(header) = &header {
            request = request.header("x-hub-signature-256", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_signature");
    }
    assert_eq!(service.vault.store.count(Kind::Inbox), 0);
    assert_eq!(service.vault.store.count(Kind::Dedup), 0);
    assert_eq!(contacts_stored(&service), 0);
    assert!(service.fake.sent().is_empty());
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bodies_get_4xx_and_nothing_is_stored() {
    let service = TestService::start_with(|c| c.http.body_limit_bytes = 4096).await;
    let tenant = service.tenant("Shop", "1003").await;
    let bodies = [
        "{not json".to_owned(),
        r#"{"object":"page","entry":[]}"#.to_owned(),
        r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w","timestamp":"1","type":"text"}]}}]}]}"#.to_owned(),
        text_message("1003", "wamid.M", "1", "X", "hi", 0).replace("\"timestamp\":\"0\"", "\"timestamp\":\"yesterday\""),
    ];
    for body in &bodies {
        let (status, error) = service
            .post_webhook(&tenant.webhook, body, &tenant.app_secret)
            .await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["code"], "malformed_payload");
    }
    let huge = text_message("1003", "wamid.H", "1", "X", &"x".repeat(10_000), now());
    let (status, _) = service
        .post_webhook(&tenant.webhook, &huge, &tenant.app_secret)
        .await;
    assert_eq!(status, 413);
    assert_eq!(service.vault.store.count(Kind::Inbox), 0);
    assert_eq!(contacts_stored(&service), 0);

    // Malformed API requests get the same error shape.
    let (status, error) = service
        .request(
            Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(json!({"plugin": 42})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(error["error"]["code"], "invalid_request");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_deliveries_are_processed_once() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1004").await;
    let body = text_message("1004", "wamid.D1", "222", "Bo", "opening hours?", now());
    let (first, second) = tokio::join!(
        service.deliver(&tenant, &body),
        service.deliver(&tenant, &body)
    );
    let third = service.deliver(&tenant, &body).await;
    let accepted = [&first, &second, &third]
        .iter()
        .map(|a| a["accepted"].as_u64().unwrap())
        .sum::<u64>();
    let duplicates = [&first, &second, &third]
        .iter()
        .map(|a| a["duplicates"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!((accepted, duplicates), (1, 2));
    service.settle().await;
    assert_eq!(service.fake.sent().len(), 1);
    let received = service.audit_of(&tenant, "message.received").await;
    assert_eq!(received.len(), 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_older_than_the_deduplication_window_is_dropped() {
    // A captured, correctly signed delivery replayed after its
    // deduplication record expired (30 days) must not be processed again.
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1005").await;
    let old = now() - 31 * 86_400;
    let body = text_message("1005", "wamid.OLD1", "223", "Bo", "opening hours?", old);
    let answer = service.deliver(&tenant, &body).await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["stale"].as_u64()),
        (Some(0), Some(1)),
        "{answer}"
    );
    // A delivery inside the window is taken as ever.
    let recent = text_message(
        "1005",
        "wamid.NEW1",
        "224",
        "Cy",
        "opening hours?",
        now() - 6 * 86_400,
    );
    let answer = service.deliver(&tenant, &recent).await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    service.settle().await;
    assert!(
        service.fake.sent().is_empty(),
        "nothing answers the old message"
    );
    let lookup = |wa_id: &'static str| {
        service.request(
            Method::POST,
            "/v1/contacts/lookup",
            &tenant.admin,
            Some(json!({ "wa_id": wa_id })),
        )
    };
    assert_eq!(
        lookup("224").await.0,
        200,
        "the recent delivery made its contact"
    );
    let (status, _) = lookup("223").await;
    assert_eq!(status, 404, "the stale delivery made no contact");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_can_reach_another_tenants_data() {
    let service = ready_service().await;
    let a = shop(&service, "A", "2001").await;
    let b = shop(&service, "B", "2002").await;
    service
        .deliver(
            &b,
            &text_message("2002", "wamid.B1", "333", "Cy", "price?", now()),
        )
        .await;
    // B's contact asks for a person: handed off, until B hands it back.
    service
        .deliver(
            &b,
            &text_message(
                "2002",
                "wamid.B2",
                "333",
                "Cy",
                "can I talk to a human?",
                now(),
            ),
        )
        .await;
    service.settle().await;
    let b_contact = service.contact(&b, "333").await;
    let b_contact_id = b_contact["id"].as_str().unwrap();
    assert_eq!(b_contact["handed_off"], true);
    let b_installations = service
        .ok(Method::GET, "/v1/installations", &b.admin, None)
        .await;
    let b_installation = b_installations[0]["id"].as_str().unwrap();
    // B has a data-subject request on record and a second API key.
    let b_request = service
        .ok(
            Method::POST,
            "/v1/dsr/access",
            &b.admin,
            Some(json!({"wa_id": "333"})),
        )
        .await["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_key = service
        .ok(
            Method::POST,
            "/v1/api-keys",
            &b.admin,
            Some(json!({"name": "viewer", "scopes": ["read"]})),
        )
        .await;
    let b_key_id = b_key["key"]["id"].as_str().unwrap();
    let b_key_token = b_key["token"].as_str().unwrap();
    // The data-subject requests, naming B's contact by its id (and, for
    // access, by its number).
    let b_subject = json!({"contact_id": b_contact_id});
    let with_subject = |extra: Value| {
        let mut body = b_subject.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Some(body)
    };

    let forbidden = [
        (Method::GET, format!("/v1/contacts/{b_contact_id}"), None),
        (
            Method::GET,
            format!("/v1/contacts/{b_contact_id}/consent"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/contacts/{b_contact_id}/consent"),
            Some(json!({"decision": "withdrawn"})),
        ),
        (
            Method::POST,
            "/v1/contacts/lookup".to_owned(),
            Some(json!({"wa_id": "333"})),
        ),
        (
            Method::GET,
            format!("/v1/installations/{b_installation}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/installations/{b_installation}"),
            Some(json!({"enabled": false})),
        ),
        (
            Method::DELETE,
            format!("/v1/installations/{b_installation}"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/contacts/{b_contact_id}/hand-back"),
            None,
        ),
        (
            Method::POST,
            "/v1/dsr/access".to_owned(),
            Some(json!({"wa_id": "333"})),
        ),
        (
            Method::POST,
            "/v1/dsr/access".to_owned(),
            with_subject(json!({})),
        ),
        (
            Method::POST,
            "/v1/dsr/rectification".to_owned(),
            with_subject(json!({"changes": {"profile_name": "Mallory"}})),
        ),
        (
            Method::POST,
            "/v1/dsr/restriction".to_owned(),
            with_subject(json!({"restricted": true})),
        ),
        (
            Method::POST,
            "/v1/dsr/objection".to_owned(),
            with_subject(json!({"purpose": "essential", "objecting": true})),
        ),
        (
            Method::POST,
            "/v1/dsr/erasure".to_owned(),
            with_subject(json!({})),
        ),
        (Method::GET, format!("/v1/dsr/{b_request}"), None),
        (Method::DELETE, format!("/v1/api-keys/{b_key_id}"), None),
    ];
    for (method, path, body) in forbidden {
        let (status, answer) = service
            .request(method.clone(), &path, &a.admin, body.clone())
            .await;
        assert_eq!(
            status, 404,
            "{method} {path} {body:?} with tenant A's key: {answer}"
        );
    }
    let listed = service
        .ok(Method::GET, "/v1/contacts", &a.admin, None)
        .await;
    assert_eq!(listed["contacts"], json!([]));
    // A's lists show none of B's requests and keys.
    let requests = service.ok(Method::GET, "/v1/dsr", &a.admin, None).await;
    assert_eq!(requests, json!([]));
    let keys = service
        .ok(Method::GET, "/v1/api-keys", &a.admin, None)
        .await
        .to_string();
    assert!(!keys.contains(b_key_id), "{keys}");
    // And nothing A tried changed B's data: the contact is as it was, still
    // with the person, its request on record, its key working.
    let unchanged = service.contact(&b, "333").await;
    assert_eq!(unchanged["id"], b_contact["id"]);
    assert_eq!(unchanged["handed_off"], true);
    assert_eq!(unchanged["restricted"], false);
    assert_eq!(unchanged["objections"], json!([]));
    assert_eq!(unchanged["profile_name"], "Cy");
    let request = service
        .ok(Method::GET, &format!("/v1/dsr/{b_request}"), &b.admin, None)
        .await;
    assert_eq!(request["kind"], "access");
    let (status, _) = service
        .request(Method::GET, "/v1/installations", b_key_token, None)
        .await;
    assert_eq!(status, 200, "B's key still works");
    let audit = service
        .ok(Method::GET, "/v1/audit?limit=1000", &a.admin, None)
        .await;
    assert!(!audit.to_string().contains(b_contact_id));
    // A's operator routes need the operator token, not a tenant key.
    let (status, _) = service
        .request(Method::GET, "/v1/operator/tenants", &a.admin, None)
        .await;
    assert_eq!(status, 401);

    // Webhooks: B's channel with A's secret; A's channel naming B's number.
    let body = text_message("2002", "wamid.X", "444", "Dee", "hi", now());
    let (status, _) = service.post_webhook(&b.webhook, &body, &a.app_secret).await;
    assert_eq!(status, 401);
    let (status, error) = service.post_webhook(&a.webhook, &body, &a.app_secret).await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        service
            .ok(Method::GET, "/v1/contacts", &b.admin, None)
            .await["contacts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_contact_never_receives_a_message() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1005").await;
    let who = ("555", "Eli");
    let mut n = 0;
    let mut say = |text: &str| {
        n += 1;
        text_message("1005", &format!("wamid.O{n}"), who.0, who.1, text, now())
    };
    // A reply queued before the opt-out but not yet sent (the Cloud API is
    // down) must not go out after it.
    service.fake.fail_next(&[503]);
    service.deliver(&tenant, &say("price please")).await;
    service.deliver(&tenant, &say("STOP")).await;
    service.deliver(&tenant, &say("opening hours?")).await;
    service.deliver(&tenant, &say("stop")).await;
    service
        .deliver(&tenant, &say("do you have it in red?"))
        .await;
    // Let the first reply's backoff pass.
    service.clock.advance(600);
    service.settle().await;

    let sent = service.fake.sent();
    assert_eq!(sent.len(), 1, "only the opt-out confirmation: {sent:?}");
    assert!(sent[0].text.contains("unsubscribed"));
    let dropped = service.audit_of(&tenant, "action.dropped").await;
    assert_eq!(dropped.len(), 2, "two plugin replies refused");
    assert!(json!(dropped).to_string().contains("opted-out"));
    let late = service.audit_of(&tenant, "message.dropped").await;
    assert_eq!(
        late[0]["details"]["reason"], "opted-out",
        "the queued reply was dropped at send time"
    );
    let contact = service.contact(&tenant, "555").await;
    assert_eq!(contact["opted_out"], true);
    let ledger = service
        .ok(
            Method::GET,
            &format!("/v1/contacts/{}/consent", contact["id"].as_str().unwrap()),
            &tenant.admin,
            None,
        )
        .await;
    assert_eq!(
        ledger.as_array().unwrap().len(),
        1,
        "the repeated STOP records nothing new"
    );
    assert_eq!(ledger[0]["decision"], "withdrawn");
    assert_eq!(ledger[0]["source"], "keyword");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_retried_when_the_cloud_api_fails() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1006").await;
    service.fake.fail_next(&[500, 429]);
    service
        .deliver(
            &tenant,
            &text_message("1006", "wamid.R1", "666", "Flo", "price?", now()),
        )
        .await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        service.clock.advance(400);
    }
    service.settle().await;
    assert_eq!(service.fake.sent().len(), 1);
    assert_eq!(service.fake.rejected(), 2);
    let sent = service.audit_of(&tenant, "message.sent").await;
    assert_eq!(sent[0]["details"]["attempts"], 3);
    service.stop().await;
}

/// A service whose Cloud API calls give up after 300 ms (so a stalled
/// send ends in doubt) and whose fake posts status webhooks back.
async fn doubtful_service(phone: &str) -> (TestService, TestTenant) {
    let service = TestService::start_with(|config| {
        config.whatsapp.timeout_ms = 300;
        config.whatsapp.confirm_timeout_secs = 60;
    })
    .await;
    let tenant = shop(&service, "Shop", phone).await;
    service.fake.post_statuses(
        phone,
        &format!("{}{}", service.base, tenant.webhook),
        &tenant.app_secret,
    );
    (service, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_in_doubt_is_settled_by_its_status_webhook_and_not_sent_again() {
    let (service, tenant) = doubtful_service("1011").await;
    // WhatsApp accepts the reply but the answer never reaches the sender.
    service.fake.stall_next(&[Stall::Accepted]);
    service
        .deliver(
            &tenant,
            &text_message("1011", "wamid.D1", "777", "Dee", "price?", now()),
        )
        .await;
    service.settle().await;
    let sent = service.fake.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0]
            .callback
            .as_deref()
            .is_some_and(|c| c.starts_with("flowgate:"))
    );
    // The status webhook came while the send was still waiting for its
    // answer; the send, ending in doubt, found it. (After a restart the
    // status is written down instead: the crash loop test covers that.)
    let settled = service.audit_of(&tenant, "message.sent").await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["details"]["confirmed_by"], "status");
    // Long past the confirmation window, another message wakes the sender:
    // the settled reply is not sent again.
    service.clock.advance(600);
    service
        .deliver(
            &tenant,
            &text_message("1011", "wamid.D2", "777", "Dee", "red?", now()),
        )
        .await;
    service.settle().await;
    assert_eq!(service.fake.sent().len(), 2);
    // The settled send learned its wamid: its later statuses find it.
    service
        .deliver(
            &tenant,
            &delivered_status("1011", &sent[0].wamid, "777", sent[0].callback.as_deref()),
        )
        .await;
    service.settle().await;
    let statuses = service.audit_of(&tenant, "message.status").await;
    assert!(
        statuses
            .iter()
            .any(|s| s["details"]["status"] == "delivered"),
        "{statuses:?}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_lost_in_doubt_is_sent_again_after_the_confirmation_window() {
    let (service, tenant) = doubtful_service("1012").await;
    // The request never reaches WhatsApp, and the sender cannot know.
    service.fake.stall_next(&[Stall::Lost]);
    service
        .deliver(
            &tenant,
            &text_message("1012", "wamid.L1", "888", "Lou", "price?", now()),
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(
        &service.metrics().await,
        "flowgate_messages_sent_total",
        "outcome=\"in-doubt\"",
    ) < 1
    {
        assert!(std::time::Instant::now() < deadline, "no send in doubt");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Within the window nothing is sent again, whatever wakes the sender.
    service.clock.advance(30);
    service
        .deliver(
            &tenant,
            &text_message("1012", "wamid.L2", "999", "Max", "price?", now()),
        )
        .await;
    while service.fake.sent().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the second reply");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(service.fake.sent().len(), 1);
    assert_eq!(service.fake.sent()[0].to, "999");
    // After it, the reply that left no trace is sent again, once.
    service.clock.advance(60);
    service.settle().await;
    let sent = service.fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].to, "888");
    let unconfirmed = service.audit_of(&tenant, "message.unconfirmed").await;
    assert_eq!(unconfirmed.len(), 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_tenant_apis_validate_and_answer_in_one_error_shape() {
    let service = ready_service().await;
    let tenant = service.tenant("Shop", "1007").await;
    // Granting a field the plugin does not declare.
    let (status, error) = service
        .request(Method::POST, "/v1/installations", &tenant.admin,
            Some(json!({"plugin": "labeller", "grants": ["user.contact.phone_number"], "config": {"rules": "[]"}})))
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not declared")
    );
    // A missing required config key.
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(json!({"plugin": "labeller"})),
        )
        .await;
    assert_eq!(status, 400);
    // An unknown plugin.
    let (status, error) = service
        .request(
            Method::POST,
            "/v1/installations",
            &tenant.admin,
            Some(json!({"plugin": "nope"})),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // A read-only key cannot change anything.
    let key = service
        .ok(
            Method::POST,
            "/v1/api-keys",
            &tenant.admin,
            Some(json!({"name": "ro", "scopes": ["read"]})),
        )
        .await;
    let read_only = key["token"].as_str().unwrap();
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/installations",
            read_only,
            Some(json!({"plugin": "labeller"})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        service
            .ok(Method::GET, "/v1/installations", read_only, None)
            .await,
        json!([])
    );
    // Revoked keys stop working.
    service
        .ok(
            Method::DELETE,
            &format!("/v1/api-keys/{}", key["key"]["id"].as_str().unwrap()),
            &tenant.admin,
            None,
        )
        .await;
    let (status, _) = service
        .request(Method::GET, "/v1/installations", read_only, None)
        .await;
    assert_eq!(status, 401);
    // Uploading garbage as a plugin.
    let response = service
        .http
        .post(format!("{}/v1/operator/plugins", service.base))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/wasm")
        .body(b"\0asm\x01\0\0\0garbage".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // The same phone number cannot be added twice.
    let (status, _) = service
        .request(Method::POST, &format!("/v1/operator/tenants/{}/channels", tenant.id), OPERATOR,
            Some(json!({"phone_number_id": "1007", "app_secret": "12345678", "verify_token": "12345678", "access_token": "12345678"})))
        .await;
    assert_eq!(status, 409);
    // Reordering must name every installation.
    let (status, _) = service
        .request(
            Method::PUT,
            "/v1/installations/order",
            &tenant.admin,
            Some(json!({"order": []})),
        )
        .await;
    assert_eq!(status, 200, "an empty flow reordered to empty is fine");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_handshake_checks_the_verify_token() {
    let service = TestService::start().await;
    let tenant = service.tenant("Shop", "1008").await;
    let get = |query: String| {
        let url = format!("{}{}?{query}", service.base, tenant.webhook);
        let http = service.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        get("hub.mode=subscribe&hub.verify_token=verify-token-123&hub.challenge=987".into()).await,
        (200, "987".into())
    );
    assert_eq!(
        get("hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=987".into())
            .await
            .0,
        403
    );
    assert_eq!(
        get("hub.mode=unsubscribe&hub.verify_token=verify-token-123&hub.challenge=9".into())
            .await
            .0,
        403
    );
    let unknown = service
        .http
        .get(format!(
            "{}/webhooks/whatsapp/chn_{}?hub.mode=subscribe",
            service.base,
            "0".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_the_openapi_covers_every_route() {
    let service = TestService::start().await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/nowhere",
        "/v1/tenant",
    ] {
        let response = service
            .http
            .get(format!("{}{path}", service.base))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        for header in [
            "strict-transport-security",
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
            "referrer-policy",
        ] {
            assert!(headers.contains_key(header), "{header} missing on {path}");
        }
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let doc: Value = service
        .http
        .get(format!("{}/openapi.json", service.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/webhooks/whatsapp/{channel_id}",
        "/v1/tenant",
        "/v1/plugins",
        "/v1/installations",
        "/v1/installations/order",
        "/v1/installations/{installation_id}",
        "/v1/contacts",
        "/v1/contacts/lookup",
        "/v1/contacts/{contact_id}",
        "/v1/contacts/{contact_id}/consent",
        "/v1/api-keys",
        "/v1/api-keys/{key_id}",
        "/v1/audit",
        "/v1/audit/verify",
        "/v1/operator/tenants",
        "/v1/operator/tenants/{tenant_id}",
        "/v1/operator/tenants/{tenant_id}/channels",
        "/v1/operator/tenants/{tenant_id}/channels/{channel_id}",
        "/v1/operator/plugins",
        "/v1/operator/plugins/{hash}",
        "/v1/dsr",
        "/v1/dsr/access",
        "/v1/dsr/rectification",
        "/v1/dsr/erasure",
        "/v1/dsr/restriction",
        "/v1/dsr/objection",
        "/v1/dsr/{request_id}",
        "/v1/operator/retention",
        "/v1/operator/tenants/{tenant_id}/offboard",
        "/v1/operator/tenants/{tenant_id}/export",
        "/v1/operator/tenants/{tenant_id}/audit/verify",
        "/v1/operator/backups",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from /openapi.json"
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let service = TestService::start_with(|c| {
        c.http.requests_per_second = 1;
        c.http.burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = service
            .http
            .get(format!("{}/v1/operator/tenants", service.base))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_messages_status_updates_and_bsuid_contacts_are_handled() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "106540352242922").await;
    // A BSUID-only contact writes; the reply goes to the BSUID.
    let bsuid = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/samples/whatsapp/bsuid-only.json"
    ))
    .unwrap()
    .replace("1749418000", &now().to_string())
    .replace("Quanto custa o plano anual?", "what is the price?");
    service.deliver(&tenant, &bsuid).await;
    service.settle().await;
    let sent = service.fake.sent();
    assert_eq!(sent[0].to, "BR.1502576394655843");
    // Its status comes back.
    let status = delivered_status(
        "106540352242922",
        &sent[0].wamid,
        "BR.1502576394655843",
        sent[0].callback.as_deref(),
    );
    service.deliver(&tenant, &status).await;
    // A number change moves the contact to the new number.
    let change = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/samples/whatsapp/system-number-changed.json"
    ))
    .unwrap()
    // Sent now: deliveries older than the deduplication window are dropped.
    .replace("1749417000", &now().to_string());
    service
        .deliver(
            &tenant,
            &text_message(
                "106540352242922",
                "wamid.N0",
                "16505551234",
                "Sheena",
                "hi",
                now(),
            ),
        )
        .await;
    service.deliver(&tenant, &change).await;
    service.settle().await;
    let statuses = service.audit_of(&tenant, "message.status").await;
    assert_eq!(statuses[0]["details"]["status"], "delivered");
    let moved = service.contact(&tenant, "16505559999").await;
    assert_eq!(moved["profile_name"], "Sheena");
    let (status, _) = service
        .request(
            Method::POST,
            "/v1/contacts/lookup",
            &tenant.admin,
            Some(json!({"wa_id": "16505551234"})),
        )
        .await;
    assert_eq!(status, 404);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_events_plugin_calls_and_fuel() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1009").await;
    service
        .deliver(
            &tenant,
            &text_message("1009", "wamid.X1", "777", "Gus", "price", now()),
        )
        .await;
    service.settle().await;
    let metrics = service.metrics().await;
    assert_eq!(metric(&metrics, "flowgate_events_total", "processed"), 1);
    assert_eq!(
        metric(
            &metrics,
            "flowgate_plugin_calls_total",
            "plugin=\"labeller\",outcome=\"ok\""
        ),
        1
    );
    assert!(metric(&metrics, "flowgate_plugin_fuel_total", "labeller") > 0);
    assert!(metrics.contains("flowgate_webhook_ack_seconds_bucket"));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_the_operators_to_read() {
    let service = ready_service().await;
    let tenant = shop(&service, "Shop", "1010").await;
    service
        .deliver(
            &tenant,
            &text_message("1010", "wamid.M1", "778", "Hal", "price", now()),
        )
        .await;
    service.settle().await;
    let scrape = |token: Option<String>| {
        let request = service.http.get(format!("{}/metrics", service.base));
        async move {
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // What a plugin did for whom is no one's to scrape but the operator's:
    // not anyone on the network, not a tenant.
    for (who, token) in [
        ("no token", None),
        ("a tenant's admin key", Some(tenant.admin.clone())),
        ("a wrong token", Some(format!("{OPERATOR}-not"))),
    ] {
        let (status, body) = scrape(token).await;
        assert!(matches!(status, 401 | 403), "{who}: {status} {body}");
        assert!(!body.contains("flowgate_"), "{who} read metrics: {body}");
    }
    let (status, body) = scrape(Some(OPERATOR.to_owned())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(
            &body,
            "flowgate_plugin_calls_total",
            "plugin=\"labeller\",outcome=\"ok\""
        ),
        1
    );
    let doc: Value = service.ok(Method::GET, "/openapi.json", "", None).await;
    assert_eq!(
        doc["paths"]["/metrics"]["get"]["security"],
        json!([{"operator": []}]),
        "documented as the operator's"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_is_confirmed_the_bots_fall_silent_until_handed_back() {
    let service = TestService::start().await;
    let tenant = service
        .tenant_with(&TenantSpec::new("Shop", "5301").install(crate::price_reply()))
        .await;
    service
        .deliver(
            &tenant,
            &text_message(
                "5301",
                "wamid.H1",
                "111",
                "Ana",
                "can I talk to a human?",
                now(),
            ),
        )
        .await;
    service.settle().await;
    let sent = service.fake.sent();
    assert_eq!(
        sent.len(),
        1,
        "the confirmation reaches the contact: {sent:?}"
    );
    assert!(
        sent[0].text.contains("member of our team"),
        "{}",
        sent[0].text
    );
    service
        .deliver(
            &tenant,
            &text_message(
                "5301",
                "wamid.H2",
                "111",
                "Ana",
                "what is the price?",
                now(),
            ),
        )
        .await;
    service.settle().await;
    assert_eq!(
        service.fake.sent().len(),
        1,
        "a human has the conversation now; no more automatic replies"
    );
    // The human is done: the tenant hands the contact back to the bots.
    let contact = service.contact(&tenant, "111").await;
    assert_eq!(contact["handed_off"], true);
    let path = format!("/v1/contacts/{}/hand-back", contact["id"].as_str().unwrap());
    let (status, _) = service
        .request(Method::POST, &path, &tenant.admin, None)
        .await;
    assert_eq!(status, 200);
    let read_only = service.api_key(&tenant, &["read"]).await;
    let (status, _) = service.request(Method::POST, &path, &read_only, None).await;
    assert_eq!(status, 403, "handing back takes an admin key");
    let handed_back = service.ok(Method::POST, &path, &tenant.admin, None).await;
    assert_eq!(handed_back["handed_off"], false);
    let audited = service.audit_of(&tenant, "contact.handed-back").await;
    assert_eq!(audited.len(), 1, "once: the second call changed nothing");
    service
        .deliver(
            &tenant,
            &text_message("5301", "wamid.H3", "111", "Ana", "price again?", now()),
        )
        .await;
    service.settle().await;
    assert_eq!(service.fake.sent().len(), 2, "the bot answers again");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_trips_its_breaker_while_the_rest_of_the_flow_runs() {
    let service = TestService::start_with(|c| c.limits.breaker_failures = 3).await;
    let spec = TenantSpec::new("Shop", "5401")
        .install(Install::new("fixture-hostile").config(json!({"attack": "panic"})))
        .install(crate::price_reply());
    let tenant = service.tenant_with(&spec).await;
    for i in 0..5 {
        service
            .deliver(
                &tenant,
                &text_message(
                    "5401",
                    &format!("wamid.B{i}"),
                    "111",
                    "Ana",
                    "price?",
                    now(),
                ),
            )
            .await;
    }
    service.settle().await;
    assert_eq!(
        service.fake.sent().len(),
        5,
        "the honest plugin answered every time"
    );
    let trail = service.audit_of(&tenant, "breaker.changed").await;
    let changes = &trail;
    assert_eq!(changes.len(), 1, "{trail:?}");
    assert_eq!(changes[0]["details"]["transition"], "opened");
    assert_eq!(changes[0]["details"]["consecutive_failures"], 3);
    let failed = service.audit_of(&tenant, "plugin.failed").await;
    assert_eq!(
        failed.len(),
        5,
        "3 traps, then 2 refused by the open breaker"
    );
    let invoked = service.audit_of(&tenant, "plugin.invoked").await;
    assert!(
        invoked.iter().all(|e| e["details"]["logs"].is_object()),
        "log summaries (levels and sizes, no text): {invoked:?}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_writes_state_then_traps_leaves_no_state_behind() {
    let service = TestService::start().await;
    // The hostile fixture writes a state key, then panics; the scaffolded
    // plugin after it writes its count, and keeps it. (Not lead-score: it
    // rests on consent, which this contact never gave, so it is not run.)
    let spec = TenantSpec::new("Shop", "5501")
        .install(Install::new("fixture-hostile").config(json!({"attack": "state-then-trap"})))
        .install(Install::new("scaffolded").grants(&["user.content.private"]));
    let tenant = service.tenant_with(&spec).await;
    service
        .deliver(
            &tenant,
            &text_message("5501", "wamid.T1", "111", "Ana", "hello", now()),
        )
        .await;
    service.settle().await;
    let failed = service.audit_of(&tenant, "plugin.failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["details"]["error"], "panicked");
    let key = service.api_key(&tenant, &["dsr"]).await;
    let export = service
        .ok(
            Method::POST,
            "/v1/dsr/access",
            &key,
            Some(json!({"wa_id": "111"})),
        )
        .await;
    let kept: Vec<&str> = export["export"]["plugin_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["scaffolded"], "only the plugin that succeeded");
    assert_eq!(
        service.vault.store.count(Kind::PluginState),
        1,
        "no state record for the failed call"
    );
    service.stop().await;
}
