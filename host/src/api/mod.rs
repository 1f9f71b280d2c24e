//! The HTTP API.
//!
//! | prefix | who | auth |
//! | --- | --- | --- |
//! | `/webhooks/whatsapp/{channel}` | WhatsApp | `X-Hub-Signature-256` |
//! | `/v1/…` | tenants | tenant API key |
//! | `/v1/operator/…` | the operator | operator token |
//! | `/metrics` | Prometheus | operator token (traffic by plugin: a tenant's, on a small host) |
//! | `/healthz`, `/readyz`, `/openapi.json` | probes | none |
//! | `/console/…` | tenants, in a browser ([`crate::console`]) | session after sign-in with an API key |
//!
//! Handlers are thin: they extract, authenticate, call one function of the
//! service layer ([`crate::service`]) and map its error to an answer.
//!
//! Layers, outermost first: tracing (method, route, status, latency; no
//! bodies, no query strings), the log of internal errors, timeout, security
//! headers on every response.

pub mod auth;
mod blocking_body;
pub mod dsr;
pub mod error;
pub mod operator;
pub mod tenant;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::service::ServiceInner;

/// What handlers share. The rate limits and throttles are the service's
/// ([`crate::admission`]), shared with the console.
#[derive(Clone)]
pub struct ApiState {
    pub service: Arc<ServiceInner>,
}

/// The OpenAPI document of every route.
#[derive(OpenApi)]
#[openapi(
    info(title = "flowgate", description = "Privacy-first host for WhatsApp automation plugins"),
    paths(
        webhook::verify, webhook::receive,
        tenant::get_tenant, tenant::update_tenant, tenant::list_plugins,
        tenant::list_installations, tenant::create_installation, tenant::get_installation,
        tenant::update_installation, tenant::delete_installation, tenant::reorder_installations,
        tenant::list_contacts, tenant::get_contact, tenant::hand_back_contact, tenant::lookup_contact,
        tenant::record_consent, tenant::consent_history,
        tenant::create_api_key, tenant::list_api_keys, tenant::revoke_api_key,
        tenant::query_audit, tenant::verify_audit,
        operator::create_tenant, operator::list_tenants, operator::get_tenant,
        operator::create_channel, operator::list_channels, operator::delete_channel,
        operator::upload_plugin, operator::list_plugins, operator::get_plugin,
        operator::run_retention, operator::offboard, operator::export_tenant, operator::delete_tenant,
        operator::verify_tenant_audit, operator::create_backup,
        dsr::access, dsr::rectification, dsr::erasure, dsr::restriction, dsr::objection, dsr::list, dsr::get,
        healthz, readyz, metrics, openapi_json,
    ),
    modifiers(&SecuritySchemes, &SharedResponses),
    tags(
        (name = "webhook", description = "WhatsApp Cloud API webhooks"),
        (name = "tenant", description = "The tenant's settings"),
        (name = "installations", description = "Plugins a tenant enabled"),
        (name = "contacts", description = "Contacts (personal data; reads are audited)"),
        (name = "consent", description = "The consent ledger"),
        (name = "api-keys", description = "Tenant API keys"),
        (name = "audit", description = "The tamper-evident audit trail"),
        (name = "data-subject requests", description = "Access, rectification, erasure, restriction, objection"),
        (name = "operator", description = "Host operator: tenants, channels, plugin registry"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fgk_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the answers that come from what routes share — the
/// authentication extractors, the rate limiter, the JSON, path and query
/// extractors and the body limit — on every operation they apply to, so
/// that each handler's annotation lists only its own outcomes and a new
/// route cannot forget them. A response an annotation already documents
/// is left as it is.
struct SharedResponses;

impl SharedResponses {
    fn error(description: &str) -> utoipa::openapi::Response {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    }

    fn rate_limited() -> utoipa::openapi::Response {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut response =
            SharedResponses::error("Rate limited; retry after `Retry-After` seconds");
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        );
        response
    }

    fn document(operation: &mut utoipa::openapi::path::Operation) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::security::SecurityRequirement;
        let requires = |scheme: &str| {
            let wanted = SecurityRequirement::new(scheme, Vec::<String>::new());
            operation
                .security
                .as_ref()
                .is_some_and(|all| all.contains(&wanted))
        };
        let tenant_key = requires("api_key");
        let authenticated = tenant_key || requires("operator");
        // Only the authenticated routes parse JSON (through `ApiJson`): the
        // webhook reads its body as raw bytes, which it must, to check the
        // signature, so the JSON extractor's answers are not its answers.
        let json_body = authenticated
            && operation
                .request_body
                .as_ref()
                .is_some_and(|body| body.content.contains_key("application/json"));
        let any_body = operation.request_body.is_some();
        let has = |place: ParameterIn| {
            operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == place)
        };
        let path_params = has(ParameterIn::Path);
        let query_params = has(ParameterIn::Query);

        let mut shared = Vec::new();
        if authenticated {
            shared.push((
                "401",
                SharedResponses::error("Missing or wrong bearer token"),
            ));
            shared.push(("429", SharedResponses::rate_limited()));
        }
        if tenant_key {
            shared.push((
                "403",
                SharedResponses::error("The API key lacks the scope this route needs"),
            ));
        }
        if path_params {
            shared.push((
                "404",
                SharedResponses::error("No such resource (or an id that names none)"),
            ));
        }
        if query_params {
            shared.push((
                "400",
                SharedResponses::error("A query parameter of the wrong type"),
            ));
        }
        if any_body {
            shared.push((
                "413",
                SharedResponses::error("The body exceeds the size limit"),
            ));
        }
        if json_body {
            shared.push(("400", SharedResponses::error("The body is not JSON")));
            shared.push((
                "415",
                SharedResponses::error("The body is not sent as `application/json`"),
            ));
            shared.push((
                "422",
                SharedResponses::error("The JSON does not match the request schema"),
            ));
        }
        for (status, response) in shared {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| response.into());
        }
    }
}

impl utoipa::Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                SharedResponses::document(operation);
            }
        }
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers and the service is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 503, body = error::ErrorBody)))]
pub async fn readyz(State(state): State<ApiState>) -> Result<&'static str, error::AppError> {
    crate::service::operations::readiness(&state.service)?;
    Ok("ready")
}

/// Prometheus metrics, for the operator only: they carry no tenant ids,
/// but count the host's traffic by plugin and outcome, and on a host with
/// few tenants (or a plugin only one tenant runs) that is a tenant's
/// traffic — no one else's business. Scrape with `Authorization: Bearer
/// <operator token>`.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("operator" = [])),
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(_: auth::Operator, State(state): State<ApiState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.service.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

async fn fallback() -> error::AppError {
    error::AppError::not_found("route")
}

/// Every route but the plugin upload (which has its own body limit), as
/// (path, handlers). The router is built from this list, and the test that
/// the OpenAPI document covers every route reads it.
fn routes() -> Vec<(&'static str, MethodRouter<ApiState>)> {
    vec![
        (
            "/webhooks/whatsapp/{channel_id}",
            get(webhook::verify).post(webhook::receive),
        ),
        (
            "/v1/tenant",
            get(tenant::get_tenant).patch(tenant::update_tenant),
        ),
        ("/v1/plugins", get(tenant::list_plugins)),
        (
            "/v1/installations",
            get(tenant::list_installations).post(tenant::create_installation),
        ),
        (
            "/v1/installations/order",
            put(tenant::reorder_installations),
        ),
        (
            "/v1/installations/{installation_id}",
            get(tenant::get_installation)
                .patch(tenant::update_installation)
                .delete(tenant::delete_installation),
        ),
        ("/v1/contacts", get(tenant::list_contacts)),
        ("/v1/contacts/lookup", post(tenant::lookup_contact)),
        ("/v1/contacts/{contact_id}", get(tenant::get_contact)),
        (
            "/v1/contacts/{contact_id}/hand-back",
            post(tenant::hand_back_contact),
        ),
        (
            "/v1/contacts/{contact_id}/consent",
            get(tenant::consent_history).post(tenant::record_consent),
        ),
        (
            "/v1/api-keys",
            get(tenant::list_api_keys).post(tenant::create_api_key),
        ),
        ("/v1/api-keys/{key_id}", delete(tenant::revoke_api_key)),
        ("/v1/audit", get(tenant::query_audit)),
        ("/v1/audit/verify", get(tenant::verify_audit)),
        ("/v1/dsr", get(dsr::list)),
        ("/v1/dsr/access", post(dsr::access)),
        ("/v1/dsr/rectification", post(dsr::rectification)),
        ("/v1/dsr/erasure", post(dsr::erasure)),
        ("/v1/dsr/restriction", post(dsr::restriction)),
        ("/v1/dsr/objection", post(dsr::objection)),
        ("/v1/dsr/{request_id}", get(dsr::get)),
        (
            "/v1/operator/tenants",
            get(operator::list_tenants).post(operator::create_tenant),
        ),
        (
            "/v1/operator/tenants/{tenant_id}",
            get(operator::get_tenant).delete(operator::delete_tenant),
        ),
        (
            "/v1/operator/tenants/{tenant_id}/channels",
            get(operator::list_channels).post(operator::create_channel),
        ),
        (
            "/v1/operator/tenants/{tenant_id}/channels/{channel_id}",
            delete(operator::delete_channel),
        ),
        (
            "/v1/operator/tenants/{tenant_id}/offboard",
            post(operator::offboard),
        ),
        (
            "/v1/operator/tenants/{tenant_id}/export",
            get(operator::export_tenant),
        ),
        (
            "/v1/operator/tenants/{tenant_id}/audit/verify",
            get(operator::verify_tenant_audit),
        ),
        ("/v1/operator/plugins/{hash}", get(operator::get_plugin)),
        ("/v1/operator/retention", post(operator::run_retention)),
        ("/v1/operator/backups", post(operator::create_backup)),
        ("/metrics", get(metrics)),
    ]
}

/// The route of plugin uploads, with the upload body limit.
const UPLOADS: &str = "/v1/operator/plugins";

/// Routes without authentication or a body.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/openapi.json"];

/// Every path the router serves, in the OpenAPI document's spelling.
pub fn route_paths() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = routes().into_iter().map(|(path, _)| path).collect();
    paths.push(UPLOADS);
    paths.extend(PROBES);
    paths
}

/// The API: tenant, operator, webhook and probe routes. The service
/// serves it with the console beside it ([`crate::server::app`]).
pub fn router(service: Arc<ServiceInner>) -> Router {
    let http = service.config.http.clone();
    let state = ApiState { service };
    let uploads = Router::new()
        .route(
            UPLOADS,
            post(operator::upload_plugin).get(operator::list_plugins),
        )
        .layer(DefaultBodyLimit::max(http.plugin_upload_limit_bytes));
    let api = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .layer(DefaultBodyLimit::max(http.body_limit_bytes));
    api.merge(uploads)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .fallback(fallback)
        .with_state(state)
        .layer(
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
                        tracing::info_span!("http", method = %request.method(), route)
                    }),
                )
                .layer(axum::middleware::from_fn(error::log_internal_errors))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(http.request_timeout_ms),
                ))
                .layer(header(
                    "strict-transport-security",
                    "max-age=63072000; includeSubDomains",
                ))
                .layer(header(
                    "content-security-policy",
                    "default-src 'none'; frame-ancestors 'none'",
                ))
                .layer(header("x-frame-options", "DENY"))
                .layer(header("x-content-type-options", "nosniff"))
                .layer(header("referrer-policy", "no-referrer"))
                .layer(header("cache-control", "no-store")),
        )
}

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_openapi_document_names_exactly_the_routes_served() {
        let documented: BTreeSet<String> = ApiDoc::openapi().paths.paths.into_keys().collect();
        let served: BTreeSet<String> = route_paths().into_iter().map(str::to_owned).collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}"
        );
    }
}
