//! What a client who holds no secret can make the service keep or do
//! (hardening issue item 11): ids have one spelling, the webhook limiter
//! holds state only for channels that exist, and failed authentications
//! are throttled and audited in aggregate.

use reqwest::Method;

use flowgate_testkit::metrics::metric;
use flowgate_testkit::now;
use flowgate_testkit::service::{OPERATOR, TestService};
use flowgate_testkit::webhook::text_message;

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
