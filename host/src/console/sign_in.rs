//! Signing in with an API key, and out.
//!
//! The sign-in form has no session yet to carry a CSRF token, so it gets
//! its own: a random value in a short-lived `SameSite=Strict` cookie and
//! in the form, which must match (a page elsewhere can neither read the
//! cookie nor make the browser send it). That keeps another site from
//! signing a visitor in with the other site's key.

use std::time::Instant;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::ConsoleState;
use super::session::new_token;
use super::web::{
    self, SESSION_COOKIE, SIGN_IN_COOKIE, Signed, bare_failure, cookie, csrf_refused, over_tls,
    render, see_other, set_cookie, with_cookies,
};
use crate::service::caller::Face;
use crate::service::{failed_auth, keys};
use crate::tenancy::api_keys::Scope;

/// How long the sign-in form stays valid.
const FORM_COOKIE_SECS: u64 = 60 * 60;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    csrf: String,
    idle: String,
    absolute: String,
    message: Option<String>,
    error: bool,
}

#[derive(Deserialize)]
pub struct Ended {
    ended: Option<String>,
}

fn page(
    state: &ConsoleState,
    parts: &axum::http::request::Parts,
    status: StatusCode,
    message: Option<String>,
    error: bool,
) -> Response {
    let csrf = new_token();
    let response = render(
        status,
        &SignInPage {
            csrf: csrf.clone(),
            idle: duration(state.service.config.console.idle_timeout_secs),
            absolute: duration(state.service.config.console.absolute_timeout_secs),
            message,
            error,
        },
    );
    with_cookies(
        response,
        vec![set_cookie(
            SIGN_IN_COOKIE,
            &csrf,
            Some(FORM_COOKIE_SECS),
            over_tls(state, parts),
        )],
    )
}

/// A duration as people say it: "30 minutes", "12 hours".
fn duration(secs: u64) -> String {
    let (n, unit) = if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `/console`: the first section the key can use, or the sign-in form.
pub async fn home(signed: Result<Signed, Response>) -> Response {
    match signed {
        Ok(signed) if signed.caller.key.allows(Scope::Read) => see_other("/console/plugins"),
        Ok(_) => see_other("/console/requests"),
        Err(_) => see_other("/console/sign-in"),
    }
}

/// The sign-in form.
pub async fn form(
    State(state): State<ConsoleState>,
    Query(query): Query<Ended>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    if Signed::from_request_parts(&mut parts, &state).await.is_ok() {
        return see_other("/console");
    }
    let message = match query.ended.as_deref() {
        Some("expired") => Some("Your session ended. Sign in again to go on.".to_owned()),
        Some("revoked") => {
            Some("The key you signed in with was revoked. Sign in with another key.".to_owned())
        }
        Some("signed-out") => Some("You are signed out.".to_owned()),
        _ => None,
    };
    page(&state, &parts, StatusCode::OK, message, false)
}

/// Check an API key and start a session.
pub async fn sign_in(State(state): State<ConsoleState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let expected = cookie(&parts.headers, SIGN_IN_COOKIE);
    let address = web::client_address(&state, &parts);
    let secure = over_tls(&state, &parts);
    let form = match web::form_body(Request::from_parts(parts.clone(), body), &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let presented = form.raw("csrf");
    let csrf_ok = expected.is_some_and(|expected| {
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    });
    if !csrf_ok {
        return csrf_refused();
    }
    let token = form.raw("token").trim().to_owned();
    if let Err(throttled) = failed_auth::admit(&state.service, Face::Console, &address, &token) {
        let minutes = throttled.retry_after.as_secs().div_ceil(60).max(1);
        return page(
            &state,
            &parts,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed sign-ins from here or with this key. Wait {minutes} minute{} \
                 and try again.",
                if minutes == 1 { "" } else { "s" }
            )),
            true,
        );
    }
    if token.is_empty() {
        return page(
            &state,
            &parts,
            StatusCode::BAD_REQUEST,
            Some("Paste an API key to sign in.".into()),
            true,
        );
    }
    let caller = match keys::sign_in(&state.service, &token, &address).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return page(
                &state,
                &parts,
                StatusCode::UNAUTHORIZED,
                Some(
                    "That API key was not accepted. Check that you copied all of it \
                     (it starts with fgk_) and that it was not revoked."
                        .into(),
                ),
                true,
            );
        }
        Err(error) => {
            let (status, message) = web::describe(&error);
            return bare_failure(status, message);
        }
    };
    let session = state
        .sessions
        .start(caller.tenant, caller.key.id, Instant::now());
    let home = if caller.key.allows(Scope::Read) {
        "/console/plugins"
    } else {
        "/console/requests"
    };
    with_cookies(
        see_other(home),
        vec![
            set_cookie(SESSION_COOKIE, &session, None, secure),
            set_cookie(SIGN_IN_COOKIE, "", Some(0), secure),
        ],
    )
}

/// End the session.
pub async fn sign_out(State(state): State<ConsoleState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let secure = over_tls(&state, &parts);
    let request = Request::from_parts(parts, body);
    let posted = match web::Posted::from_request(request, &state).await {
        Ok(posted) => posted,
        // Signed out already (or the session expired): say so.
        Err(response) if response.status() == StatusCode::SEE_OTHER => {
            return see_other("/console/sign-in?ended=signed-out");
        }
        Err(response) => return response,
    };
    let signed = posted.signed;
    if let Err(error) = keys::sign_out(&state.service, &signed.caller).await {
        return signed.failure(error);
    }
    state.sessions.end(&signed.token);
    with_cookies(
        see_other("/console/sign-in?ended=signed-out"),
        vec![set_cookie(SESSION_COOKIE, "", Some(0), secure)],
    )
}
