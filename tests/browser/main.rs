//! The tenant console in a real browser: headless Chromium driven through
//! ChromeDriver, against the real service with real plugins, signed
//! webhooks and the fake Cloud API. Each page is checked with axe-core (no
//! serious or critical violation) and photographed for the docs
//! (`FLOWGATE_UPDATE_SCREENSHOTS=1` writes them into docs/console/).
//!
//! Run with `cargo xtask test` (which installs Chromium, ChromeDriver and
//! axe-core when missing), or by hand after `cargo xtask build-guests` and
//! `eval $(cargo xtask browser-tools)`: `cargo test --test browser`.

mod browser;
mod local;

use serde_json::{Value, json};

use browser::Browser;
use local::{TestService, TestTenant, now, text_message};

const PHONE_NUMBER_ID: &str = "106540352242922";
const ANA: &str = "16505551234";

const RULES: &str = r#"[{"label": "pricing", "keywords": ["how much", "price"]}, {"label": "stock", "keywords": ["in stock"]}]"#;

/// A service with the three first-party plugins admitted and a tenant whose
/// channel Meta has verified.
async fn shop() -> (TestService, TestTenant) {
    let service = TestService::start().await;
    for plugin in ["labeller", "lead-score", "auto-reply"] {
        service.upload(plugin).await;
    }
    let tenant = service.tenant("Loja da Ana", PHONE_NUMBER_ID).await;
    service.verify_webhook(&tenant).await;
    (service, tenant)
}

/// Sign in with a key, as a person would: type it, press Enter.
async fn sign_in(browser: &Browser, key: &str) {
    browser.open("/console").await;
    assert_eq!(browser.path().await, "/console/sign-in");
    let field = browser.find("#token").await;
    field.send_keys(key).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap();
    browser.find("nav[aria-label='Sections']").await;
}

async fn say(service: &TestService, tenant: &TestTenant, wamid: &str, text: &str) {
    let body = text_message(PHONE_NUMBER_ID, wamid, ANA, "Ana Souza", text, now());
    service.deliver(tenant, &body).await;
    service.settle().await;
}

/// Check the page and photograph it.
async fn look(browser: &Browser, name: &str) {
    browser.check_accessibility(name).await;
    browser.screenshot(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_runs_its_flow_answers_requests_and_reads_its_trail_in_the_console() {
    let (service, tenant) = shop().await;
    let browser = Browser::start(&service.base).await;

    // Sign-in page.
    browser.open("/console/sign-in").await;
    look(&browser, "sign-in").await;
    sign_in(&browser, &tenant.admin).await;
    assert_eq!(browser.path().await, "/console/plugins");
    browser.expect_text("No plugin is enabled yet").await;

    // Enable the labeller: grant the message text, configure its rules. A
    // broken rule list is refused with the plugin's own message beside the
    // setting, and what was typed is kept.
    browser.press("Enable labeller").await;
    browser.expect_text("What labeller will see").await;
    browser
        .expect_text("Message text — what the contact wrote")
        .await;
    browser
        .click("input[name='grant'][value='user.content.private']")
        .await;
    browser
        .fill("textarea[name='config.rules']", "[{\"label\": ")
        .await;
    browser.press("Enable plugin").await;
    let error = browser.text_of(".field-error").await;
    assert!(
        error.contains("labeller refused this configuration"),
        "{error}"
    );
    assert!(error.contains("rules"), "{error}");
    assert_eq!(
        browser.value_of("textarea[name='config.rules']").await,
        "[{\"label\": "
    );
    assert!(
        browser
            .find("input[name='grant'][value='user.content.private']")
            .await
            .is_selected()
            .await
            .unwrap(),
        "the grant stays ticked"
    );
    look(&browser, "plugin-config-error").await;
    browser.fill("textarea[name='config.rules']", RULES).await;
    browser.press("Enable plugin").await;
    browser.expect_text("labeller 0.1.0 is enabled").await;

    // Lead scoring is profiling: the checklist says it needs consent.
    browser.open("/console/plugins").await;
    browser.press("Enable lead-score").await;
    browser.expect_text("personalize.profiling").await;
    browser
        .expect_text("it sees the fields above only for contacts who consented")
        .await;
    browser
        .click("input[name='grant'][value='user.content.private']")
        .await;
    browser
        .click("input[name='grant'][value='user.behavior.labels']")
        .await;
    look(&browser, "plugin-enable").await;
    browser.press("Enable plugin").await;
    browser.expect_text("lead-score 0.1.0 is enabled").await;
    look(&browser, "plugins").await;

    // Reorder: lead-score first.
    browser.press("Move up lead-score").await;
    browser.expect_text("The flow's order is saved").await;
    let steps = browser.text_of("ol.flow").await;
    assert!(
        steps.find("lead-score").unwrap() < steps.find("labeller").unwrap(),
        "{steps}"
    );

    // Signed webhooks: the contact appears with the labeller's label.
    say(
        &service,
        &tenant,
        "wamid.1",
        "Hi! How much is the blue one?",
    )
    .await;
    browser.open("/console/contacts").await;
    look(&browser, "contacts").await;
    browser.fill("#wa_id", "+1 650 555 1234").await;
    browser.press("Find contact").await;
    browser.expect_text("Ana Souza").await;
    let labels = browser.text_of("ul.tags").await;
    assert!(labels.contains("pricing"), "{labels}");
    // What each plugin was shown: the labeller the text; lead-score
    // nothing personal, since Ana has not consented to profiling.
    let calls = browser.text_of("table").await;
    assert!(calls.contains("labeller"), "{calls}");
    assert!(calls.contains("Message text"), "{calls}");
    assert!(calls.contains("nothing personal"), "{calls}");
    let contact_page = browser.path().await;

    // Record consent to profiling; the next message is scored.
    browser
        .find("select[name='purpose']")
        .await
        .select_by_value("personalize.profiling")
        .await
        .unwrap();
    browser.press("Record decision").await;
    browser
        .expect_text("The consent decision is recorded")
        .await;
    browser.expect_text("recorded by your team").await;
    say(
        &service,
        &tenant,
        "wamid.2",
        "I want to buy it, is it in stock?",
    )
    .await;
    browser.open(&contact_page).await;
    browser.expect_text("Lead score").await;
    let held = browser.text_of("dl.pairs").await;
    assert!(held.contains("stock"), "{held}");
    assert!(!held.contains("Lead score\nnone"), "scored: {held}");
    look(&browser, "contact").await;

    // Access: the export downloads as JSON.
    browser.open("/console/requests").await;
    browser.fill("#access-subject", ANA).await;
    browser.press("Download the export").await;
    let file = browser.downloaded().await;
    let export: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(export["profile"]["wa_id"], ANA);
    assert!(
        export["profile"]["labels"]
            .as_array()
            .unwrap()
            .contains(&json!("pricing"))
    );

    // Erasure, after a confirmation step.
    browser.open("/console/requests").await;
    browser.expect_text("Access and export").await;
    browser.expect_text("on time").await;
    browser.fill("#erase-subject", ANA).await;
    browser.press("Erase…").await;
    browser.expect_text("This cannot be undone").await;
    look(&browser, "erasure-confirm").await;
    browser.press("Erase the contact").await;
    browser.expect_text("The contact is erased").await;
    let requests = browser.text_of("table").await;
    assert!(requests.contains("Erasure"), "{requests}");
    look(&browser, "requests").await;
    browser.open("/console/contacts").await;
    browser.fill("#wa_id", ANA).await;
    browser.press("Find contact").await;
    browser
        .expect_text("No contact has this phone number")
        .await;

    // The audit trail: the console's own entries, the requests, the chain.
    browser.open("/console/audit?actor=console").await;
    let entries = browser.text_of("table.entries").await;
    for action in [
        "installation.created",
        "installation.reordered",
        "consent.granted",
        "dsr.access",
        "dsr.erasure",
        "auth.signed-in",
    ] {
        assert!(entries.contains(action), "no {action} in\n{entries}");
    }
    browser.open("/console/audit").await;
    browser.fill("#f-action", "plugin.").await;
    browser.press("Show entries").await;
    let plugin_entries = browser
        .text_of_when("table.entries", |t| !t.contains("dsr.erasure"))
        .await;
    assert!(
        plugin_entries.contains("plugin.invoked"),
        "{plugin_entries}"
    );
    assert!(!plugin_entries.contains("dsr.erasure"), "filtered");
    browser.press("Verify the chain now").await;
    browser.expect_text("The chain is intact").await;
    look(&browser, "audit").await;

    // Channel and keys: Meta's verification shows; a key is created and its
    // token shown once.
    browser.open("/console/channel").await;
    browser.expect_text("Verified by Meta on").await;
    let webhook = browser.value_of("#webhook-1").await;
    assert_eq!(webhook, format!("{}{}", service.base, tenant.webhook));
    browser.fill("#key-name", "Support team").await;
    browser.press("Create key").await;
    browser.expect_text("it is shown this once").await;
    let token = browser.value_of("#new-token").await;
    assert!(token.starts_with("fgk_"));
    look(&browser, "channel-and-keys").await;

    // Usage: the calls of each plugin.
    browser.open("/console/usage").await;
    browser.expect_text("labeller").await;
    let usage = browser.text().await;
    assert!(usage.contains("Plugin calls: 2"), "{usage}");
    assert!(usage.contains("Events received: 2"), "{usage}");
    look(&browser, "usage").await;

    // Playground: lead-score, whose purpose rests on consent, is not run
    // for a contact without it, and is shown nothing.
    browser.open("/console/playground").await;
    browser
        .find("#pick")
        .await
        .select_by_label("lead-score 0.1.0")
        .await
        .unwrap();
    browser.press("Choose").await;
    browser.click("#c-none").await;
    browser.press("Run").await;
    browser.expect_text("What happened").await;
    let trace = browser.text_of("#results").await;
    assert!(
        trace.contains("Not run: the contact has not consented to `personalize.profiling`"),
        "not run for want of consent: {trace}"
    );
    assert!(
        !trace.contains("\tdisclosed"),
        "nothing is shown to it: {trace}"
    );
    browser.click("#c-all").await;
    browser.press("Run").await;
    browser.expect_text("set-lead-score").await;
    look(&browser, "playground").await;

    // Sign out: the pages are closed again.
    browser.press("Sign out").await;
    browser.expect_text("You are signed out").await;
    browser.open("/console/plugins").await;
    assert_eq!(browser.path().await, "/console/sign-in");

    browser.close().await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_sees_the_console_but_cannot_change_anything() {
    let (service, tenant) = shop().await;
    let read = service
        .ok(
            reqwest::Method::POST,
            "/v1/api-keys",
            &tenant.admin,
            Some(json!({"name": "auditor", "scopes": ["read"]})),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = Browser::start(&service.base).await;
    sign_in(&browser, &read).await;
    browser.expect_text("Registry").await;
    // Nothing to change is offered…
    assert!(!browser.has("a[href^='/console/plugins/enable']").await);
    browser.open("/console/channel").await;
    assert!(!browser.has("form[action='/console/keys']").await);
    // …and a form forged in the page (with the session's own CSRF token)
    // is refused by the service.
    let hash = service
        .ok(reqwest::Method::GET, "/v1/plugins", &read, None)
        .await[0]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .client
        .execute(
            "const csrf = document.querySelector(\"input[name='csrf']\").value;
             const form = document.createElement('form');
             form.method = 'post';
             form.action = '/console/installations';
             for (const [name, value] of [['csrf', csrf], ['plugin', arguments[0]]]) {
               const input = document.createElement('input');
               input.type = 'hidden'; input.name = name; input.value = value;
               form.appendChild(input);
             }
             document.body.appendChild(form);
             form.submit();",
            vec![json!(hash)],
        )
        .await
        .unwrap();
    browser.expect_text("lacks the `admin` scope").await;
    let installations = service
        .ok(
            reqwest::Method::GET,
            "/v1/installations",
            &tenant.admin,
            None,
        )
        .await;
    assert_eq!(installations, json!([]), "nothing was enabled");
    browser.close().await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_posted_with_a_wrong_csrf_token_is_refused() {
    let (service, tenant) = shop().await;
    let browser = Browser::start(&service.base).await;
    sign_in(&browser, &tenant.admin).await;
    browser.open("/console/channel").await;
    browser
        .client
        .execute(
            "document.querySelector(\"form[action='/console/keys'] input[name='csrf']\").value = 'forged';",
            vec![],
        )
        .await
        .unwrap();
    browser.fill("#key-name", "Planted key").await;
    browser.press("Create key").await;
    browser
        .expect_text("not sent by this console session")
        .await;
    let keys = service
        .ok(reqwest::Method::GET, "/v1/api-keys", &tenant.admin, None)
        .await;
    assert!(
        !keys.to_string().contains("Planted key"),
        "no key was created: {keys}"
    );
    browser.close().await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone_and_works_from_the_keyboard() {
    let (service, tenant) = shop().await;
    let browser = Browser::start(&service.base).await;
    browser.client.set_window_size(390, 844).await.unwrap();
    sign_in(&browser, &tenant.admin).await;
    for path in [
        "/console/plugins",
        "/console/contacts",
        "/console/requests",
        "/console/audit",
        "/console/channel",
        "/console/usage",
        "/console/playground",
    ] {
        browser.open(path).await;
        let overflow = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .unwrap()
            .as_i64()
            .unwrap();
        assert!(overflow <= 0, "{path} is {overflow}px wider than a phone");
    }
    browser.open("/console/plugins").await;
    browser.screenshot("phone-plugins").await;

    // The first Tab reaches the skip link, which shows itself.
    browser
        .find("body")
        .await
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = browser
        .client
        .execute(
            "const e = document.activeElement;
             const r = e.getBoundingClientRect();
             return [e.textContent, r.left >= 0, getComputedStyle(e).outlineStyle];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focused[0], "Skip to the content");
    assert_eq!(focused[1], true, "the skip link is on screen when focused");
    assert_ne!(focused[2], "none", "focus is visible");

    // The accessibility check sees what it should: an image without a text
    // alternative, planted in the page, is reported.
    browser
        .client
        .execute(
            "const img = document.createElement('img'); img.src = '/console/assets/icon.svg'; document.querySelector('main').appendChild(img);",
            vec![],
        )
        .await
        .unwrap();
    let found = browser.serious_violations("a planted image").await;
    assert!(
        found.iter().any(|v| v.contains("image-alt")),
        "axe missed the planted image: {found:?}"
    );
    browser.close().await;
    service.stop().await;
}
