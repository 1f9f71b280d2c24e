//! The console driven through the service's whole router, as a browser
//! would drive it but without one: sign-in, sessions, CSRF, scopes, the
//! security headers. The browser tests (`tests/browser`) drive the same
//! pages in Chromium, with plugins and webhooks.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::service::caller::Face;
use crate::service::keys::{self, NewApiKey};
use crate::service::tenants::{self, NewTenant};
use crate::service::{Service, ServiceInner};
use crate::tenancy::api_keys::Scope;

struct Console {
    service: Option<Service>,
    app: axum::Router,
    admin_key: String,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start() -> Console {
        Console::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut ServiceConfig)) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let vault = crate::data::test_vault(dir.path());
        // As `server::open_vault` does: the operator's own audit chain.
        vault
            .keys
            .create_tenant(&crate::ids::TenantId::SYSTEM)
            .unwrap();
        let mut config = ServiceConfig {
            data_dir: dir.path().to_owned(),
            operator_token: "operator-token-for-tests".into(),
            workers: 1,
            ..ServiceConfig::default()
        };
        configure(&mut config);
        let service = Service::start(config, vault, Clock::system()).unwrap();
        let created = tenants::create(
            &service.inner,
            NewTenant {
                name: "Loja da Ana".into(),
                timezone: None,
            },
        )
        .await
        .unwrap();
        Console {
            app: crate::api::router(service.inner.clone())
                .merge(super::router(service.inner.clone())),
            service: Some(service),
            admin_key: created.admin_api_key,
            _dir: dir,
        }
    }

    fn inner(&self) -> &Arc<ServiceInner> {
        &self.service.as_ref().unwrap().inner
    }

    async fn key(&self, scopes: &[Scope]) -> String {
        let admin = keys::authenticate(self.inner(), &self.admin_key, Face::Api)
            .unwrap()
            .unwrap();
        keys::create(
            self.inner(),
            &admin,
            NewApiKey {
                name: "team".into(),
                scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
            },
        )
        .await
        .unwrap()
        .token
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::get(path);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let body = serde_urlencoded::to_string(form).unwrap();
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Sign in with `token`: the session cookie and the session's CSRF
    /// token (read from the page it lands on).
    async fn sign_in(&self, token: &str) -> (String, String) {
        let form = self.get("/console/sign-in", None).await;
        let pre = form.cookie("flowgate_console_sign_in").unwrap();
        let csrf = form.hidden("csrf").unwrap();
        let signed_in = self
            .post(
                "/console/sign-in",
                Some(&format!("flowgate_console_sign_in={pre}")),
                &[("csrf", &csrf), ("token", token)],
            )
            .await;
        assert_eq!(
            signed_in.status,
            StatusCode::SEE_OTHER,
            "{}",
            signed_in.body
        );
        let session = format!(
            "flowgate_console={}",
            signed_in.cookie("flowgate_console").unwrap()
        );
        let landing = signed_in.location().unwrap();
        let page = self.get(&landing, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{landing}: {}", page.body);
        let csrf = page.hidden("csrf").unwrap();
        (session, csrf)
    }

    async fn stop(mut self) {
        self.service.take().unwrap().shutdown().await;
    }
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: String,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn location(&self) -> Option<String> {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_owned())
    }
}

#[tokio::test]
async fn signing_in_makes_a_strict_http_only_session_and_signing_out_ends_it() {
    let console = Console::start().await;
    let (session, csrf) = console.sign_in(&console.admin_key).await;

    let plugins = console.get("/console/plugins", Some(&session)).await;
    assert_eq!(plugins.status, StatusCode::OK);
    assert!(plugins.body.contains("Loja da Ana"), "the tenant is named");
    assert!(plugins.body.contains("Your flow"));
    // The page's policy allows the console's own script and style only.
    let csp = plugins.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(plugins.headers["cache-control"], "no-store");
    assert!(!plugins.body.contains("<script>"), "no inline script");
    assert!(!plugins.body.contains("style=\""), "no inline style");

    // The sign-in set the cookie HttpOnly, SameSite=Strict, not Secure over
    // plain HTTP.
    let form = console.get("/console/sign-in", None).await;
    let pre = form.cookie("flowgate_console_sign_in").unwrap();
    let again = console
        .post(
            "/console/sign-in",
            Some(&format!("flowgate_console_sign_in={pre}")),
            &[
                ("csrf", &form.hidden("csrf").unwrap()),
                ("token", &console.admin_key),
            ],
        )
        .await;
    let cookie = again.set_cookie("flowgate_console").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("Secure"));
    assert!(
        !cookie.contains(&console.admin_key),
        "the key stays on the server"
    );

    let out = console
        .post("/console/sign-out", Some(&session), &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = console.get("/console/plugins", Some(&session)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location().unwrap(), "/console/sign-in");

    // The trail names the console as the channel of the sign-in and out.
    let admin = keys::authenticate(console.inner(), &console.admin_key, Face::Api)
        .unwrap()
        .unwrap();
    let entries = crate::service::trail::query(
        console.inner(),
        &admin,
        &crate::audit::AuditFilter {
            actor: Some("console".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"auth.signed-in"), "{actions:?}");
    assert!(actions.contains(&"auth.signed-out"), "{actions:?}");
    console.stop().await;
}

#[tokio::test]
async fn the_cookie_is_secure_behind_tls() {
    let console = Console::start().await;
    let form = console.get("/console/sign-in", None).await;
    let pre = form.cookie("flowgate_console_sign_in").unwrap();
    let request = Request::post("/console/sign-in")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("flowgate_console_sign_in={pre}"))
        .header("x-forwarded-proto", "https")
        .body(Body::from(
            serde_urlencoded::to_string([
                ("csrf", form.hidden("csrf").unwrap()),
                ("token", console.admin_key.clone()),
            ])
            .unwrap(),
        ))
        .unwrap();
    let answer = console.send(request).await;
    assert!(
        answer
            .set_cookie("flowgate_console")
            .unwrap()
            .contains("; Secure")
    );
    console.stop().await;
}

#[tokio::test]
async fn a_form_with_a_wrong_csrf_token_changes_nothing() {
    let console = Console::start().await;
    let (session, csrf) = console.sign_in(&console.admin_key).await;
    for wrong in ["", "0000", &csrf[..csrf.len() - 1]] {
        let answer = console
            .post(
                "/console/keys",
                Some(&session),
                &[("csrf", wrong), ("name", "intruder"), ("scope", "admin")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert!(answer.body.contains("nothing was done"));
    }
    let keys = console.get("/console/channel", Some(&session)).await;
    assert!(!keys.body.contains("intruder"));
    // With the right token the same form works.
    let created = console
        .post(
            "/console/keys",
            Some(&session),
            &[("csrf", &csrf), ("name", "CRM sync"), ("scope", "read")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.body.contains("fgk_"), "the token is shown once");
    // The sign-in form's own token is checked too.
    let form = console.get("/console/sign-in", None).await;
    let pre = form.cookie("flowgate_console_sign_in").unwrap();
    let forged = console
        .post(
            "/console/sign-in",
            Some(&format!("flowgate_console_sign_in={pre}")),
            &[("csrf", "forged"), ("token", &console.admin_key)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie("flowgate_console").is_none());
    console.stop().await;
}

#[tokio::test]
async fn a_read_key_sees_but_cannot_change_and_a_dsr_key_reaches_only_requests() {
    let console = Console::start().await;
    let read = console.key(&[Scope::Read]).await;
    let (session, csrf) = console.sign_in(&read).await;
    let plugins = console.get("/console/plugins", Some(&session)).await;
    assert_eq!(plugins.status, StatusCode::OK);
    let channel = console.get("/console/channel", Some(&session)).await;
    assert!(
        !channel.body.contains("Create a key"),
        "the key form is hidden"
    );
    // Refused by the service even when posted by hand.
    let refused = console
        .post(
            "/console/keys",
            Some(&session),
            &[("csrf", &csrf), ("name", "sneaky"), ("scope", "admin")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("lacks the `admin` scope"));

    let dsr = console.key(&[Scope::Dsr]).await;
    let form = console.get("/console/sign-in", None).await;
    let pre = form.cookie("flowgate_console_sign_in").unwrap();
    let signed_in = console
        .post(
            "/console/sign-in",
            Some(&format!("flowgate_console_sign_in={pre}")),
            &[("csrf", &form.hidden("csrf").unwrap()), ("token", &dsr)],
        )
        .await;
    assert_eq!(signed_in.location().unwrap(), "/console/requests");
    let session = format!(
        "flowgate_console={}",
        signed_in.cookie("flowgate_console").unwrap()
    );
    let requests = console.get("/console/requests", Some(&session)).await;
    assert_eq!(requests.status, StatusCode::OK);
    assert!(requests.body.contains("Erasure"));
    assert!(
        !requests.body.contains("href=\"/console/plugins\""),
        "only the requests are offered"
    );
    let contacts = console.get("/console/contacts", Some(&session)).await;
    assert_eq!(contacts.status, StatusCode::OK, "the search form shows…");
    let found = console
        .post(
            "/console/contacts/find",
            Some(&session),
            &[
                ("csrf", &requests.hidden("csrf").unwrap()),
                ("wa_id", "16505551234"),
            ],
        )
        .await;
    assert_eq!(
        found.status,
        StatusCode::FORBIDDEN,
        "…but the service refuses"
    );
    console.stop().await;
}

#[tokio::test]
async fn a_revoked_key_ends_its_sessions_at_once() {
    let console = Console::start().await;
    let team = console.key(&[Scope::Read]).await;
    let (session, _) = console.sign_in(&team).await;
    let (admin_session, admin_csrf) = console.sign_in(&console.admin_key).await;
    let key_id = crate::tenancy::api_keys::key_id_of(&team).unwrap();
    let revoked = console
        .post(
            &format!("/console/keys/{key_id}/revoke"),
            Some(&admin_session),
            &[("csrf", &admin_csrf)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let after = console.get("/console/plugins", Some(&session)).await;
    assert_eq!(
        after.location().as_deref(),
        Some("/console/sign-in?ended=revoked")
    );
    console.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_without_checking_the_key() {
    let console = Console::start_with(|config| {
        config.console.sign_in_failures = 3;
    })
    .await;
    let attempt = |token: String| {
        let console = &console;
        async move {
            let form = console.get("/console/sign-in", None).await;
            let pre = form.cookie("flowgate_console_sign_in").unwrap();
            console
                .post(
                    "/console/sign-in",
                    Some(&format!("flowgate_console_sign_in={pre}")),
                    &[("csrf", &form.hidden("csrf").unwrap()), ("token", &token)],
                )
                .await
        }
    };
    let wrong = format!("{}0", &console.admin_key[..console.admin_key.len() - 1]);
    for _ in 0..3 {
        let answer = attempt(wrong.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(answer.body.contains("was not accepted"));
    }
    // Now even the right key is refused, from here and for this key id.
    let throttled = attempt(console.admin_key.clone()).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.body.contains("Too many failed sign-ins"));
    assert!(throttled.cookie("flowgate_console").is_none());
    console.stop().await;
}

#[tokio::test]
async fn assets_are_served_from_the_binary_and_unknown_pages_are_html() {
    let console = Console::start().await;
    let css = console.get("/console/assets/console.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains(":focus-visible"));
    let js = console.get("/console/assets/console.js", None).await;
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = console.get("/console/nowhere", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("no such page"));
    // The API keeps its own, stricter policy.
    let api = console.get("/healthz", None).await;
    assert_eq!(
        api.headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    // Without a session every page leads to the sign-in.
    let page = console.get("/console/audit", None).await;
    assert_eq!(page.location().as_deref(), Some("/console/sign-in"));
    console.stop().await;
}

#[tokio::test]
async fn pages_render_for_an_admin_with_nothing_set_up() {
    let console = Console::start().await;
    let (session, _) = console.sign_in(&console.admin_key).await;
    for (path, expected) in [
        ("/console/plugins", "The registry is empty"),
        ("/console/contacts", "Find contact"),
        ("/console/requests", "No request yet"),
        ("/console/audit", "auth.signed-in"),
        ("/console/audit?verify=1", "The chain is intact"),
        ("/console/channel", "No WhatsApp number is connected yet"),
        ("/console/usage", "No plugin has run in this period"),
        ("/console/usage?window=month", "Last 30 days"),
        ("/console/playground", "there is no plugin to try"),
    ] {
        let page = console.get(path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains(expected), "{path} lacks {expected:?}");
    }
    let bad = console
        .get("/console/audit?from=yesterday", Some(&session))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not a date"));
    console.stop().await;
}

#[tokio::test]
async fn a_consent_form_records_for_the_subject_named_and_an_unknown_one_is_said_plainly() {
    let console = Console::start().await;
    let (session, csrf) = console.sign_in(&console.admin_key).await;
    let answer = console
        .post(
            "/console/requests/consent",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("subject", "+1 650 555 1234"),
                ("purpose", "marketing.communications"),
                ("decision", "granted"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.contains("No contact has this phone number"));
    console.stop().await;
}

#[tokio::test]
async fn the_audit_page_says_when_the_newest_entries_are_gone() {
    use crate::audit::{entry_key, head};
    use crate::store::{Batch, Kind};
    let console = Console::start().await;
    let (session, _) = console.sign_in(&console.admin_key).await;
    let tenant = keys::authenticate(console.inner(), &console.admin_key, Face::Api)
        .unwrap()
        .unwrap()
        .tenant;
    let vault = &console.inner().vault;
    let last = head::last_seq(vault, &tenant).unwrap();
    assert!(last >= 3, "the tenant's creation and the sign-in");
    let mut batch = Batch::new();
    batch.delete(tenant, Kind::Audit, entry_key(last));
    vault.store.commit(&batch).unwrap();
    let page = console.get("/console/audit?verify=1", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("cut short"), "{}", page.body);
    assert!(
        page.body.contains(&format!("entry {last} is missing")),
        "{}",
        page.body
    );
    assert!(!page.body.contains("The chain is intact"));
    console.stop().await;
}
