//! The console's request plumbing: cookies, the signed-in caller, forms
//! with their CSRF check, pages and error pages. Handlers in the page
//! modules take [`Signed`] (a GET by a signed-in browser) or [`Posted`] (a
//! form it sent, CSRF token checked), call the service, and render.

use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::ConsoleState;
use super::session::{Ended, Notice, Session};
use crate::admission::address::ClientAddress;
use crate::service::ServiceInner;
use crate::service::caller::TenantCaller;
use crate::service::committer::CommitError;
use crate::service::error::ServiceError;
use crate::service::{keys, settings};
use crate::tenancy::api_keys::Scope;

/// The session cookie.
pub const SESSION_COOKIE: &str = "flowgate_console";
/// The sign-in form's CSRF cookie (before there is a session).
pub const SIGN_IN_COOKIE: &str = "flowgate_console_sign_in";

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request came over TLS (or the operator says it always
/// does): the cookie is then marked `Secure`. `X-Forwarded-Proto` is
/// believed: a client that lies about it only makes its own cookie
/// stricter.
pub fn over_tls(state: &ConsoleState, parts: &Parts) -> bool {
    state.service.config.console.secure_cookie
        || parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The client's address, for throttling sign-ins: as the API sees it
/// ([`ClientAddress::of_request`]).
pub fn client_address(state: &ConsoleState, parts: &Parts) -> ClientAddress {
    ClientAddress::of_request(parts, &state.service.config)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the console;
/// `max_age` 0 deletes it, `None` makes it last as long as the browser.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie values are hex")
}

/// The URL the service is reached at, as the browser reached it (for the
/// webhook URL shown to configure in Meta's dashboard).
pub fn public_base(state: &ConsoleState, parts: &Parts) -> String {
    let scheme = if over_tls(state, parts) {
        "https"
    } else {
        "http"
    };
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// A redirect after a form (303: the browser follows with a GET).
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_str(location).expect("a path"))],
    )
        .into_response()
}

/// Render a template as a page with `status`.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering a console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// One link of the navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every signed-in page shows around its content.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub tenant: Option<String>,
    pub key_name: String,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub notice: Option<Notice>,
    pub can_admin: bool,
    pub can_dsr: bool,
}

/// The console's sections, in the navigation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Plugins,
    Contacts,
    Requests,
    Audit,
    Channel,
    Usage,
    Playground,
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Plugins,
        Section::Contacts,
        Section::Requests,
        Section::Audit,
        Section::Channel,
        Section::Usage,
        Section::Playground,
    ];

    fn link(self) -> (&'static str, &'static str) {
        match self {
            Section::Plugins => ("/console/plugins", "Plugins"),
            Section::Contacts => ("/console/contacts", "Contacts"),
            Section::Requests => ("/console/requests", "Data-subject requests"),
            Section::Audit => ("/console/audit", "Audit trail"),
            Section::Channel => ("/console/channel", "Channel and keys"),
            Section::Usage => ("/console/usage", "Usage"),
            Section::Playground => ("/console/playground", "Playground"),
        }
    }

    /// Whether a key can use the section at all (the service refuses the
    /// rest anyway; the navigation does not offer it). A `dsr` key reaches
    /// the data-subject requests, and consent there, only.
    pub fn open_to(self, caller: &TenantCaller) -> bool {
        match self {
            Section::Requests => caller.key.allows(Scope::Dsr) || caller.key.allows(Scope::Read),
            _ => caller.key.allows(Scope::Read),
        }
    }
}

/// A signed-in browser's request.
pub struct Signed {
    pub state: ConsoleState,
    pub caller: TenantCaller,
    pub session: Session,
    /// The session token (from the cookie), to end the session or leave a
    /// notice for its next page.
    pub token: String,
    /// The URL the browser reached the service at.
    pub base: String,
}

impl Signed {
    pub fn service(&self) -> &Arc<ServiceInner> {
        &self.state.service
    }

    /// The page frame for `section`.
    pub fn chrome(&self, section: Option<Section>, title: impl Into<String>) -> Chrome {
        let caller = &self.caller;
        let tenant = settings::profile(&self.state.service, caller)
            .ok()
            .map(|t| t.name);
        Chrome {
            title: title.into(),
            tenant,
            key_name: caller.key.name.clone(),
            nav: Section::ALL
                .into_iter()
                .filter(|s| s.open_to(caller))
                .map(|s| {
                    let (href, label) = s.link();
                    NavItem {
                        href,
                        label,
                        current: Some(s) == section,
                    }
                })
                .collect(),
            csrf: self.session.csrf.clone(),
            notice: self.session.notice.clone(),
            can_admin: caller.key.allows(Scope::Admin),
            can_dsr: caller.key.allows(Scope::Dsr),
        }
    }

    /// Redirect to `location`, which shows `text` once.
    pub fn done(&self, location: &str, text: impl Into<String>) -> Response {
        self.state.sessions.notify(
            &self.token,
            Notice {
                text: text.into(),
                error: false,
            },
        );
        see_other(location)
    }

    /// The error page for a refused action, inside the console's frame.
    pub fn failure(&self, error: ServiceError) -> Response {
        let (status, message) = describe(&error);
        render(
            status,
            &ErrorPage {
                chrome: Some(self.chrome(None, "Not done")),
                heading: heading(status),
                message,
            },
        )
    }
}

/// A failed request before there is a frame (or outside one).
pub fn bare_failure(status: StatusCode, message: impl Into<String>) -> Response {
    render(
        status,
        &ErrorPage {
            chrome: None,
            heading: heading(status),
            message: message.into(),
        },
    )
}

fn heading(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "Changed meanwhile",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::SERVICE_UNAVAILABLE => "Not available right now",
        status if status.is_server_error() => "Something went wrong",
        _ => "Not done",
    }
}

/// How a refused action reads to a person, with its status.
pub fn describe(error: &ServiceError) -> (StatusCode, String) {
    match error {
        ServiceError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            format!("No such {what} here. It may have been removed, or the link is wrong."),
        ),
        ServiceError::Forbidden(message) => (
            StatusCode::FORBIDDEN,
            format!("The API key you signed in with cannot do this ({message})."),
        ),
        ServiceError::Invalid(message) | ServiceError::InvalidConfig { message, .. } => {
            (StatusCode::BAD_REQUEST, capitalise(message))
        }
        ServiceError::Conflict(message) => (StatusCode::CONFLICT, capitalise(message)),
        ServiceError::InvalidPlugin(message) => {
            (StatusCode::UNPROCESSABLE_ENTITY, capitalise(message))
        }
        ServiceError::Unavailable(message) => {
            (StatusCode::SERVICE_UNAVAILABLE, capitalise(message))
        }
        ServiceError::Commit(CommitError::Conflict) => (
            StatusCode::CONFLICT,
            "The record changed while your request was handled. Nothing was saved; send it again."
                .into(),
        ),
        internal => {
            tracing::error!(error = %internal, "a console action failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side; it has been logged. Try again in a moment."
                    .into(),
            )
        }
    }
}

fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => {
            let mut text: String = first.to_uppercase().chain(chars).collect();
            if !text.ends_with('.') {
                text.push('.');
            }
            text
        }
        None => String::new(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Option<Chrome>,
    pub heading: &'static str,
    pub message: String,
}

/// Where a browser without a live session goes.
fn to_sign_in(ended: Ended) -> Response {
    match ended {
        Ended::Expired => see_other("/console/sign-in?ended=expired"),
        Ended::Unknown => see_other("/console/sign-in"),
    }
}

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Signed, Response> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(to_sign_in(Ended::Unknown))?;
        let session = state
            .sessions
            .resume(&token, Instant::now())
            .map_err(to_sign_in)?;
        let caller = match keys::session_caller(&state.service, &session.tenant, &session.key) {
            Ok(Some(caller)) => caller,
            Ok(None) => {
                // The key was revoked (or its tenant deleted) meanwhile.
                state.sessions.end(&token);
                return Err(see_other("/console/sign-in?ended=revoked"));
            }
            Err(error) => {
                let (status, message) = describe(&error);
                return Err(bare_failure(status, message));
            }
        };
        Ok(Signed {
            base: public_base(state, parts),
            state: state.clone(),
            caller,
            session,
            token,
        })
    }
}

/// A form's fields, in the order sent.
#[derive(Debug, Clone, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Parse an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Option<FormData> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .ok()
            .map(FormData)
    }

    /// The first value of a field, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The first value of a field as sent (not trimmed), or "".
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// Every value of a field (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Whether a checkbox (or a `yes`) was sent.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("on" | "yes" | "true" | "1"))
    }
}

/// A form a signed-in browser sent, its CSRF token checked. A handler
/// cannot read a form's fields without it: there is no unchecked form.
pub struct Posted {
    pub signed: Signed,
    pub form: FormData,
}

/// The answer to a form whose CSRF token is missing or wrong.
pub fn csrf_refused() -> Response {
    tracing::info!("a console form was refused: missing or wrong CSRF token");
    bare_failure(
        StatusCode::FORBIDDEN,
        "This form was not sent by this console session (its security token is missing or \
         wrong), so nothing was done. Go back, reload the page and send it again.",
    )
}

/// Read a form body (`application/x-www-form-urlencoded`).
pub async fn form_body(request: Request, state: &ConsoleState) -> Result<FormData, Response> {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(bare_failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The console takes forms only.",
        ));
    }
    let body = Bytes::from_request(request, state).await.map_err(|_| {
        bare_failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "What you sent is larger than the console accepts.",
        )
    })?;
    FormData::parse(&body)
        .ok_or_else(|| bare_failure(StatusCode::BAD_REQUEST, "The form could not be read."))
}

impl FromRequest<ConsoleState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Posted, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let form = form_body(Request::from_parts(parts, body), state).await?;
        if !signed.session.csrf_matches(form.raw("csrf")) {
            return Err(csrf_refused());
        }
        Ok(Posted { signed, form })
    }
}

/// Cookies to set on a response.
pub fn with_cookies(mut response: Response, cookies: Vec<HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}
