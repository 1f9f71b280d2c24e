//! What a client who holds no secret can make the service keep or do
//! (hardening issue item 11): ids have one spelling, the webhook limiter
//! holds state only for channels that exist, and failed authentications
//! are throttled and audited in aggregate.

use std::time::{Duration, Instant};

use reqwest::Method;

use flowgate::ids::ChannelId;
use flowgate_testkit::api::Api;
use flowgate_testkit::metrics::metric;
use flowgate_testkit::now;
use flowgate_testkit::service::{OPERATOR, TestService};
use flowgate_testkit::webhook::text_message;

/// The value of the sample `name{labels}` (labels as written, in order),
/// which must be there.
fn sample(metrics: &str, name: &str, labels: &str) -> u64 {
    let series = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {series}in:\n{metrics}")) as u64
}

/// Rate-limit cells the webhook limiter holds.
async fn webhook_cells(service: &TestService) -> u64 {
    sample(
        &service.metrics().await,
        "flowgate_rate_limit_keys",
        "limiter=\"webhook\"",
    )
}

/// GET `path` with `token` through `api`: the status and `Retry-After`.
async fn get(api: &Api, path: &str, token: &str) -> (u16, Option<u64>) {
    let response = api
        .http
        .get(format!("{}{path}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

/// Poll until `ready` holds, for at most 20 seconds (the service's
/// upkeep runs every second in these tests).
async fn eventually<T>(what: &str, mut ready: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = ready().await {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `path` with the id after its last `/` spelled otherwise by `respell`
/// (which gets the hex digits after the prefix).
fn respelled(path: &str, respell: impl Fn(&str) -> String) -> String {
    let (base, id) = path.rsplit_once('/').expect("a path ending in an id");
    let (prefix, hex) = id.split_once('_').expect("an id with a prefix");
    format!("{base}/{prefix}_{}", respell(hex))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_in_a_path_has_one_spelling_and_the_others_name_nothing() {
    let service = TestService::start().await;
    let tenant = service.tenant("Shop", "3101").await;
    let body = text_message("3101", "wamid.S1", "16505551234", "Ana", "hi", now());

    // A correctly signed delivery to the channel's id in upper case, or
    // with whitespace around it (as a client sends it, percent-encoded),
    // is for no channel: 404, nothing stored.
    let upper = respelled(&tenant.webhook, str::to_uppercase);
    let spaced = respelled(&tenant.webhook, |hex| format!("{hex}%20"));
    let leading = tenant.webhook.replace("/chn_", "/%20chn_");
    for path in [&upper, &spaced, &leading] {
        let (status, answer) = service.post_webhook(path, &body, &tenant.app_secret).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{path}");
    }
    let metrics = service.metrics().await;
    assert_eq!(
        metric(&metrics, "flowgate_webhook_items_total", "accepted"),
        0
    );
    // The handshake too.
    let (status, _) = service
        .api
        .verify_webhook(&upper, "verify-token", "1")
        .await
        .unwrap();
    assert_eq!(status, 404);

    // A tenant id in upper case names no tenant.
    let path = format!("/v1/operator/tenants/{}", tenant.id);
    let (status, _) = service
        .request(
            Method::GET,
            &respelled(&path, str::to_uppercase),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = service.request(Method::GET, &path, OPERATOR, None).await;
    assert_eq!(status, 200);

    // A key id in upper case names no key: nothing is revoked.
    let other = service.api_key(&tenant, &["read"]).await;
    let key_id = other.split('_').nth(1).unwrap().to_owned();
    let (status, _) = service
        .request(
            Method::DELETE,
            &format!("/v1/api-keys/key_{}", key_id.to_uppercase()),
            &tenant.admin,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = service
        .request(Method::GET, "/v1/tenant", &other, None)
        .await;
    assert_eq!(status, 200, "the key still works");
    // Nor does a token spelled in upper case authenticate.
    let shouted = format!("fgk_{}", other["fgk_".len()..].to_uppercase());
    let (status, _) = service
        .request(Method::GET, "/v1/tenant", &shouted, None)
        .await;
    assert_eq!(status, 401);

    // The canonical spelling works.
    service.deliver(&tenant, &body).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_limiter_holds_cells_only_for_channels_that_exist_and_gives_them_back() {
    let service = TestService::start_with(|config| {
        // A burst of two, and the upkeep every second.
        config.http.webhook_requests_per_second = 1;
        config.http.auth_failure_audit_secs = 1;
    })
    .await;
    let tenant = service.tenant("Shop", "3201").await;
    let body = |n: u32| {
        text_message(
            "3201",
            &format!("wamid.L{n}"),
            "16505551234",
            "Ana",
            "hi",
            now(),
        )
    };

    // A flood of made-up channel ids, and of other spellings of the real
    // one: 404 each, and no cell for any of them (keyed by the raw path,
    // each got one, kept forever).
    let upper = respelled(&tenant.webhook, str::to_uppercase);
    for n in 0..100 {
        let path = format!("/webhooks/whatsapp/{}", ChannelId::generate());
        let (status, _) = service.post_webhook(&path, &body(n), "secret").await;
        assert_eq!(status, 404);
        let (status, _) = service
            .post_webhook(&upper, &body(n), &tenant.app_secret)
            .await;
        assert_eq!(status, 404);
    }
    assert!(
        webhook_cells(&service).await <= 1,
        "only the real channel's"
    );

    // The real channel's allowance is spent and answered 429 with
    // Retry-After; a percent-encoded spelling of its id is the same id
    // (RFC 3986: the same URI) and takes from the same cell.
    let mut statuses = Vec::new();
    for n in 0..6 {
        let delivery = body(100 + n);
        let response = service
            .http
            .post(format!("{}{}", service.base, tenant.webhook))
            .header(
                "x-hub-signature-256",
                flowgate_testkit::webhook::signature(&tenant.app_secret, &delivery),
            )
            .body(delivery)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            let wait: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&wait), "{wait}");
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    let encoded = tenant.webhook.replace("/chn_", "/%63hn_");
    let (status, _) = service
        .post_webhook(&encoded, &body(200), &tenant.app_secret)
        .await;
    assert!(status == 200 || status == 429, "{status}");
    assert_eq!(webhook_cells(&service).await, 1);

    // Once the channel's allowance is whole again, its cell is given back.
    eventually("the channel's cell to be pruned", async || {
        (webhook_cells(&service).await == 0).then_some(())
    })
    .await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_throttled_per_client_and_key_id_and_audited_once_per_period() {
    let service = TestService::start_with(|config| {
        config.http.auth_failures = 3;
        config.http.auth_failure_audit_secs = 1;
    })
    .await;
    let tenant = service.tenant("Shop", "3301").await;
    let reader = service.api_key(&tenant, &["read"]).await;
    let here = &service.api;
    let elsewhere = service.api.from_address("127.0.0.2".parse().unwrap());
    let admin = &tenant.admin;
    let last = if admin.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &admin[..admin.len() - 1]);

    for _ in 0..3 {
        assert_eq!(get(&elsewhere, "/v1/tenant", &wrong).await.0, 401);
    }
    // Refused now, unchecked: even the right key, from that client…
    let (status, retry_after) = get(&elsewhere, "/v1/tenant", admin).await;
    assert_eq!(status, 429);
    let wait = retry_after.expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
    // …the key id from any client…
    assert_eq!(get(here, "/v1/tenant", admin).await.0, 429);
    // …and any key from that client.
    assert_eq!(get(&elsewhere, "/v1/tenant", &reader).await.0, 429);
    // Other clients with other keys are served.
    assert_eq!(get(here, "/v1/tenant", &reader).await.0, 200);

    // The trail has one entry for the three failures and nothing for the
    // refusals; no client address in it.
    let reading = service.api.tenant(reader.clone());
    let entries = eventually("the failures to be audited", async || {
        let entries = reading.audit("auth.failed").await.unwrap();
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let key_id = format!("key_{}", admin.split('_').nth(1).unwrap());
    assert_eq!(
        entry["actor"],
        serde_json::json!({"type": "api-key", "id": key_id})
    );
    assert_eq!(entry["details"]["failures"], 3);
    let sources = entry["details"]["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "one client");
    assert!(!entry.to_string().contains("127.0.0"), "{entry}");

    // The operator token is throttled per client only.
    let third = service.api.from_address("127.0.0.3".parse().unwrap());
    for _ in 0..3 {
        let (status, _) = get(&third, "/v1/operator/tenants", "not-the-operator-token").await;
        assert_eq!(status, 401);
    }
    assert_eq!(get(&third, "/v1/operator/tenants", OPERATOR).await.0, 429);
    assert_eq!(get(here, "/v1/operator/tenants", OPERATOR).await.0, 200);

    let metrics = service.metrics().await;
    assert!(sample(&metrics, "flowgate_auth_refused_total", "face=\"api\"") >= 4);
    assert_eq!(
        sample(
            &metrics,
            "flowgate_auth_throttle_entries",
            "face=\"api\",by=\"key\""
        ),
        1
    );
    service.stop().await;
}
