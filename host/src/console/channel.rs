//! Channel and keys: the webhook URL to configure in Meta's app dashboard
//! and whether Meta has verified it; the tenant's API keys, created (the
//! token shown once) and revoked, with their scopes.

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;

use super::web::{Chrome, Posted, Section, Signed, render};
use super::words;
use crate::service::channels;
use crate::service::error::ServiceError;
use crate::service::keys::{self, NewApiKey};
use crate::tenancy::api_keys::Scope;

pub struct ChannelRow {
    pub phone_number_id: String,
    pub webhook_url: String,
    pub verified: Option<String>,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub created: String,
    pub this_session: bool,
}

/// A key just created: its token, shown this once.
pub struct Created {
    pub name: String,
    pub token: String,
}

#[derive(Template)]
#[template(path = "channel.html")]
struct ChannelPage {
    chrome: Chrome,
    channels: Vec<ChannelRow>,
    keys: Vec<KeyRow>,
    created: Option<Created>,
    error: Option<String>,
    name: String,
}

fn page(
    signed: &Signed,
    status: StatusCode,
    created: Option<Created>,
    error: Option<String>,
    name: String,
) -> Response {
    let service = signed.service();
    let caller = &signed.caller;
    let channels = match channels::of_tenant(service, caller) {
        Ok(channels) => channels,
        Err(error) => return signed.failure(error),
    };
    // Keys are the admin's business; other keys see the channel only.
    let keys = if caller.key.allows(Scope::Admin) {
        match keys::list(service, caller) {
            Ok(keys) => keys,
            Err(error) => return signed.failure(error),
        }
    } else {
        Vec::new()
    };
    render(
        status,
        &ChannelPage {
            chrome: signed.chrome(Some(Section::Channel), "Channel and keys"),
            channels: channels
                .iter()
                .map(|c| ChannelRow {
                    phone_number_id: c.phone_number_id.clone(),
                    webhook_url: format!("{}{}", signed.base, c.webhook_path),
                    verified: c.verified_at.map(words::time),
                })
                .collect(),
            keys: keys
                .iter()
                .map(|k| KeyRow {
                    id: k.id.to_string(),
                    name: k.name.clone(),
                    scopes: k
                        .scopes
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    created: words::time(k.created_at),
                    this_session: k.id == caller.key.id,
                })
                .collect(),
            created,
            error,
            name,
        },
    )
}

/// The channel and the keys.
pub async fn index(signed: Signed) -> Response {
    page(&signed, StatusCode::OK, None, None, String::new())
}

/// Create a key; its token is on the answer and nowhere else.
pub async fn create_key(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let scopes: BTreeSet<Scope> = form
        .all("scope")
        .into_iter()
        .filter_map(|s| match s {
            "admin" => Some(Scope::Admin),
            "read" => Some(Scope::Read),
            "dsr" => Some(Scope::Dsr),
            _ => None,
        })
        .collect();
    let name = form.get("name").unwrap_or_default().to_owned();
    let request = NewApiKey {
        name: name.clone(),
        scopes,
    };
    match keys::create(signed.service(), &signed.caller, request).await {
        Ok(created) => page(
            &signed,
            StatusCode::CREATED,
            Some(Created {
                name: created.key.name,
                token: created.token,
            }),
            None,
            String::new(),
        ),
        Err(error @ ServiceError::Invalid(_)) => {
            let message = super::web::describe(&error).1;
            page(&signed, StatusCode::BAD_REQUEST, None, Some(message), name)
        }
        Err(error) => signed.failure(error),
    }
}

/// Revoke a key (the session signed in with it ends on its next request).
pub async fn revoke_key(Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    match keys::revoke(signed.service(), &signed.caller, &id).await {
        Ok(()) => signed.done(
            "/console/channel",
            "The key is revoked: it no longer works, in the API or here.",
        ),
        Err(error) => signed.failure(error),
    }
}
