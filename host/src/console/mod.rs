//! The tenant console at `/console`: the web pages where a tenant enables
//! plugins (seeing first exactly which fields each will be shown), finds a
//! contact and sees what every plugin was shown about them, answers
//! data-subject requests, reads its audit trail, manages its keys, watches
//! its usage and tries plugins in a playground.
//!
//! A second thin face over the service, beside the HTTP API
//! ([`crate::api`]): every page reads through, and every form acts
//! through, the same functions of [`crate::service`] as the API, with the
//! caller's face set to [`Face::Console`](crate::service::caller::Face)
//! so the audit trail names the console. Scopes are the service's: the
//! console hides what a key cannot use, and the service refuses it anyway.
//!
//! Pages are rendered on the server from askama templates
//! (`console/templates/`); the style sheet and a small script are compiled
//! into the binary (`console/assets/`). Everything works without the
//! script. The routes carry their own Content-Security-Policy: scripts,
//! styles, images and forms from the console itself only, nothing inline.
//!
//! Signing in with an API key makes a server-side session
//! ([`session`]); failed sign-ins are throttled, apart from the API's but
//! by the same mechanism ([`crate::service::failed_auth`]); every form
//! carries the session's CSRF token ([`web::Posted`]).

mod audit;
mod channel;
mod contacts;
mod playground;
mod plugins;
mod requests;
pub mod session;
mod sign_in;
mod usage;
mod web;
mod words;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::service::ServiceInner;
use session::Sessions;

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub service: Arc<ServiceInner>,
    pub sessions: Arc<Sessions>,
}

/// The console's Content-Security-Policy: its own scripts, styles, images
/// and form targets only; nothing inline, no frames, no other origins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Largest form accepted (the playground takes a webhook body).
const BODY_LIMIT: usize = 256 << 10;

const STYLE: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/icon.svg");

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            ("content-type", content_type),
            // Assets change only with the binary; an hour is short enough
            // for an upgrade to show.
            ("cache-control", "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    web::bare_failure(
        StatusCode::NOT_FOUND,
        "There is no such page in the console. Use the links at the top to find your way.",
    )
}

/// The console's routes, with their own state and layers; mounted by
/// `server::app` beside the API.
pub fn router(service: Arc<ServiceInner>) -> Router {
    let config = service.config.console.clone();
    let timeout = Duration::from_millis(service.config.http.request_timeout_ms);
    let state = ConsoleState {
        sessions: Arc::new(Sessions::new(&config)),
        service,
    };
    let assets = Router::new()
        .route("/console/assets/console.css", get(style))
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/icon.svg", get(icon));
    let pages = Router::new()
        .route("/console", get(sign_in::home))
        .route("/console/", get(sign_in::home))
        .route(
            "/console/sign-in",
            get(sign_in::form).post(sign_in::sign_in),
        )
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/plugins", get(plugins::index))
        .route("/console/plugins/enable", get(plugins::enable_form))
        .route("/console/installations", post(plugins::create))
        .route(
            "/console/installations/{id}",
            get(plugins::edit_form).post(plugins::update),
        )
        .route(
            "/console/installations/{id}/enabled",
            post(plugins::set_enabled),
        )
        .route("/console/installations/{id}/move", post(plugins::move_step))
        .route("/console/contacts", get(contacts::search))
        .route("/console/contacts/find", post(contacts::find))
        .route("/console/contacts/{id}", get(contacts::show))
        .route("/console/contacts/{id}/consent", post(contacts::consent))
        .route(
            "/console/contacts/{id}/hand-back",
            post(contacts::hand_back),
        )
        .route("/console/requests", get(requests::index))
        .route("/console/requests/access", post(requests::access))
        .route(
            "/console/requests/rectification",
            post(requests::rectification),
        )
        .route("/console/requests/erasure", post(requests::erasure))
        .route("/console/requests/restriction", post(requests::restriction))
        .route("/console/requests/objection", post(requests::objection))
        .route("/console/requests/consent", post(requests::consent))
        .route("/console/audit", get(audit::index))
        .route("/console/channel", get(channel::index))
        .route("/console/keys", post(channel::create_key))
        .route("/console/keys/{id}/revoke", post(channel::revoke_key))
        .route("/console/usage", get(usage::index))
        .route(
            "/console/playground",
            get(playground::form).post(playground::run),
        )
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(header("cache-control", "no-store"));
    pages.merge(assets).with_state(state).layer(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    // The matched route, not the URI: no ids or query
                    // strings in the logs.
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    tracing::info_span!("console", method = %request.method(), route)
                }),
            )
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                timeout,
            ))
            .layer(header(
                "strict-transport-security",
                "max-age=63072000; includeSubDomains",
            ))
            .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
            .layer(header("x-frame-options", "DENY"))
            .layer(header("x-content-type-options", "nosniff"))
            .layer(header("referrer-policy", "no-referrer"))
            .layer(header("cross-origin-opener-policy", "same-origin")),
    )
}

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}
