//! Typed clients of a running service's HTTP API: [`Api`] (the address, for
//! what needs no token: webhooks, health), [`OperatorApi`] (metrics
//! included: they are the operator's) and [`TenantApi`].
//!
//! Answers are JSON [`Value`]s: tests assert on the documented shapes.
//! Every method answers [`Error::Status`] for a status outside 2xx; use
//! [`Client::send`] to look at error answers.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::Error;
use crate::metrics::Progress;

/// A service's address and an HTTP client for it.
#[derive(Clone, Debug)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    /// How long a call keeps asking again while the service answers 503
    /// or refuses connections; none by default (see [`Api::patient`]).
    patience: Duration,
}

/// Pause between the attempts of a patient client, at most.
const PATIENT_PAUSE: Duration = Duration::from_millis(200);

/// A request as errors name it: `POST /v1/installations`.
fn named(method: &Method, path: &str) -> String {
    format!("{method} {path}")
}

/// `value[field]` as a string, or an [`Error::Answer`].
fn field(value: &Value, request: &str, missing: &'static str) -> Result<String, Error> {
    let mut found = value;
    for part in missing.split('.') {
        found = &found[part];
    }
    found
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Answer {
            request: request.to_owned(),
            missing,
            body: value.to_string(),
        })
}

impl Api {
    /// The service at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.into(),
            patience: Duration::ZERO,
        }
    }

    /// The service at `base`, through `http` (a client tuned for load).
    pub fn with_client(base: impl Into<String>, http: reqwest::Client) -> Api {
        Api {
            http,
            base: base.into(),
            patience: Duration::ZERO,
        }
    }

    /// The same client, asking again for up to `within` while the service
    /// answers 503 or cannot be reached, as a well-behaved client of a
    /// cluster does while work moves between nodes (a node that lost its
    /// lease exits and is started again by its supervisor).
    pub fn patient(&self, within: Duration) -> Api {
        Api {
            patience: within,
            ..self.clone()
        }
    }

    /// Run `attempt` until it answers something other than 503 or a
    /// connection refused, or the client's patience is spent.
    async fn with_patience<F, Fut>(&self, mut attempt: F) -> Result<(u16, Value), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(u16, Value), Error>>,
    {
        let deadline = Instant::now() + self.patience;
        loop {
            let answer = attempt().await;
            let again = match &answer {
                Ok((status, _)) => *status == 503,
                Err(Error::Http { source, .. }) => source.is_connect(),
                Err(_) => false,
            };
            if !again || Instant::now() >= deadline {
                return answer;
            }
            tokio::time::sleep(PATIENT_PAUSE).await;
        }
    }

    /// The same service as a client at another local address (such as
    /// `127.0.0.2`): another client to the service's per-address counts.
    pub fn from_address(&self, local: std::net::IpAddr) -> Api {
        Api {
            http: reqwest::Client::builder()
                .local_address(local)
                .build()
                .expect("an HTTP client"),
            base: self.base.clone(),
            patience: self.patience,
        }
    }

    /// A client that authenticates with `token`.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            api: self.clone(),
            token: token.into(),
        }
    }

    /// The operator API, with the operator's token.
    pub fn operator(&self, token: impl Into<String>) -> OperatorApi {
        OperatorApi(self.with_token(token))
    }

    /// A tenant's API, with one of its API keys.
    pub fn tenant(&self, key: impl Into<String>) -> TenantApi {
        TenantApi(self.with_token(key))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST a webhook body signed with `app_secret`: the status and the
    /// JSON answer (`null` when there is none).
    pub async fn post_webhook(
        &self,
        path: &str,
        body: &str,
        app_secret: &str,
    ) -> Result<(u16, Value), Error> {
        self.with_patience(|| async {
            let request = named(&Method::POST, path);
            let response = self
                .http
                .post(self.url(path))
                .header("content-type", "application/json")
                .header(
                    "x-hub-signature-256",
                    crate::webhook::signature(app_secret, body),
                )
                .body(body.to_owned())
                // A server killed under the request must not hang the caller.
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|source| Error::Http { request, source })?;
            let status = response.status().as_u16();
            Ok((status, response.json().await.unwrap_or(Value::Null)))
        })
        .await
    }

    /// Meta's verification handshake on a channel's webhook: the status and
    /// the text of the answer.
    pub async fn verify_webhook(
        &self,
        path: &str,
        verify_token: &str,
        challenge: &str,
    ) -> Result<(u16, String), Error> {
        let request = named(&Method::GET, path);
        let response = self
            .http
            .get(self.url(path))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", verify_token),
                ("hub.challenge", challenge),
            ])
            .send()
            .await
            .map_err(|source| Error::Http {
                request: request.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|source| Error::Http { request, source })?;
        Ok((status, text))
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }
}

/// A client that authenticates with a bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    pub api: Api,
    pub token: String,
}

impl Client {
    /// Send a request; any status is an answer: (status, JSON body, or the
    /// body as a JSON string when it is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Error> {
        self.api
            .with_patience(|| async {
                let request = named(&method, path);
                let mut builder = self
                    .api
                    .http
                    .request(method.clone(), self.api.url(path))
                    .bearer_auth(&self.token);
                if let Some(body) = &body {
                    builder = builder.json(body);
                }
                let answer = async {
                    let response = builder.send().await?;
                    let status = response.status().as_u16();
                    Ok((status, response.text().await?))
                };
                let (status, text) = answer
                    .await
                    .map_err(|source| Error::Http { request, source })?;
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                Ok((status, value))
            })
            .await
    }

    /// Send a request that must succeed: its JSON answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let (status, value) = self.send(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            return Err(Error::Status {
                request: named(&method, path),
                status,
                body: value.to_string(),
            });
        }
        Ok(value)
    }

    /// GET a list and answer its items.
    async fn list(&self, path: &str) -> Result<Vec<Value>, Error> {
        let value = self.call(Method::GET, path, None).await?;
        match value {
            Value::Array(items) => Ok(items),
            other => Err(Error::Answer {
                request: named(&Method::GET, path),
                missing: "a list",
                body: other.to_string(),
            }),
        }
    }
}

/// A tenant as the operator API creates it.
#[derive(Clone, Debug)]
pub struct CreatedTenant {
    pub id: String,
    /// Its first admin API key.
    pub admin_key: String,
}

/// A WhatsApp phone number, as the operator adds it to a tenant.
#[derive(Clone, Debug)]
pub struct ChannelSpec {
    pub phone_number_id: String,
    pub app_secret: String,
    pub verify_token: String,
    pub access_token: String,
}

/// The operator API (`/v1/operator/…`, and `/metrics`).
#[derive(Clone, Debug)]
pub struct OperatorApi(pub Client);

impl OperatorApi {
    /// The metrics text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let request = named(&Method::GET, "/metrics");
        let response = self
            .0
            .api
            .http
            .get(self.0.api.url("/metrics"))
            .bearer_auth(&self.0.token)
            .send()
            .await
            .map_err(|source| Error::Http {
                request: request.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| Error::Http {
            request: request.clone(),
            source,
        })?;
        // An error's body read as metrics is all zeros: "settled".
        if status != 200 {
            return Err(Error::Status {
                request,
                status,
                body: text,
            });
        }
        Ok(text)
    }

    /// Wait until every accepted webhook item is processed and every queued
    /// reply has been sent, failed or dropped.
    pub async fn settle(&self, within: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + within;
        loop {
            let progress = match self.metrics().await {
                Ok(metrics) => Some(Progress::of(&metrics)),
                // Polling spends the operator's rate allowance too: wait
                // for more rather than fail.
                Err(Error::Status { status: 429, .. }) => None,
                Err(error) => return Err(error),
            };
            if progress.is_some_and(|p| p.settled()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotSettled {
                    seconds: within.as_secs(),
                    progress: progress.map_or_else(|| "rate limited".to_owned(), |p| p.to_string()),
                });
            }
            let pause = if progress.is_some() { 20 } else { 250 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// Create a tenant (in `timezone`, or the default).
    pub async fn create_tenant(
        &self,
        name: &str,
        timezone: Option<&str>,
    ) -> Result<CreatedTenant, Error> {
        let mut body = json!({"name": name});
        if let Some(timezone) = timezone {
            body["timezone"] = timezone.into();
        }
        let path = "/v1/operator/tenants";
        let created = self.0.call(Method::POST, path, Some(body)).await?;
        let request = named(&Method::POST, path);
        Ok(CreatedTenant {
            id: field(&created, &request, "tenant.id")?,
            admin_key: field(&created, &request, "admin_api_key")?,
        })
    }

    /// Add a channel to a tenant: its webhook path.
    pub async fn add_channel(&self, tenant: &str, channel: &ChannelSpec) -> Result<String, Error> {
        let path = format!("/v1/operator/tenants/{tenant}/channels");
        let body = json!({
            "phone_number_id": channel.phone_number_id,
            "app_secret": channel.app_secret,
            "verify_token": channel.verify_token,
            "access_token": channel.access_token,
        });
        let added = self.0.call(Method::POST, &path, Some(body)).await?;
        field(&added, &named(&Method::POST, &path), "webhook_path")
    }

    /// Admit a component to the registry (again: the same record): the
    /// plugin record.
    pub async fn admit(&self, component: Vec<u8>) -> Result<Value, Error> {
        let path = "/v1/operator/plugins";
        let request = named(&Method::POST, path);
        let response = self
            .0
            .api
            .http
            .post(self.0.api.url(path))
            .bearer_auth(&self.0.token)
            .header("content-type", "application/wasm")
            .body(component)
            .send()
            .await
            .map_err(|source| Error::Http {
                request: request.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| Error::Http {
            request: request.clone(),
            source,
        })?;
        if !(200..300).contains(&status) {
            return Err(Error::Status {
                request,
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|_| Error::Answer {
            request,
            missing: "a plugin record",
            body: text,
        })
    }
}

/// A tenant's API (`/v1/…`), with one of its keys.
#[derive(Clone, Debug)]
pub struct TenantApi(pub Client);

impl TenantApi {
    /// The plugins the tenant may install (manifests and hashes).
    pub async fn plugins(&self) -> Result<Vec<Value>, Error> {
        self.0.list("/v1/plugins").await
    }

    /// Install a plugin: the installation.
    pub async fn install(&self, install: &crate::setup::Install) -> Result<Value, Error> {
        let grants = match &install.grants {
            Some(grants) => json!(grants),
            // Every field the plugin declares.
            None => {
                let plugins = self.plugins().await?;
                let record = plugins
                    .iter()
                    .find(|r| r["manifest"]["id"] == install.plugin.as_str())
                    .ok_or_else(|| Error::Answer {
                        request: named(&Method::GET, "/v1/plugins"),
                        missing: "the plugin",
                        body: format!("{} is not in the registry", install.plugin),
                    })?;
                record["manifest"]["fields"].clone()
            }
        };
        let body = json!({"plugin": install.plugin, "grants": grants, "config": install.config});
        self.0
            .call(Method::POST, "/v1/installations", Some(body))
            .await
    }

    /// The contact with this WhatsApp id.
    pub async fn lookup(&self, wa_id: &str) -> Result<Value, Error> {
        self.0
            .call(
                Method::POST,
                "/v1/contacts/lookup",
                Some(json!({"wa_id": wa_id})),
            )
            .await
    }

    /// Record a consent decision for a contact.
    pub async fn consent(&self, contact_id: &str, decision: Value) -> Result<Value, Error> {
        let path = format!("/v1/contacts/{contact_id}/consent");
        self.0.call(Method::POST, &path, Some(decision)).await
    }

    /// Record that the contact with this WhatsApp id consented to
    /// `purpose`.
    pub async fn consent_by_number(&self, wa_id: &str, purpose: &str) -> Result<Value, Error> {
        let contact = self.lookup(wa_id).await?;
        let id = field(&contact, "POST /v1/contacts/lookup", "id")?;
        self.consent(&id, json!({"purpose": purpose, "decision": "granted"}))
            .await
    }

    /// The audit entries whose action starts with `action` (up to 1,000).
    pub async fn audit(&self, action: &str) -> Result<Vec<Value>, Error> {
        self.0
            .list(&format!("/v1/audit?action={action}&limit=1000"))
            .await
    }

    /// Verify the tenant's audit chain.
    pub async fn verify_audit(&self) -> Result<Value, Error> {
        self.0.call(Method::GET, "/v1/audit/verify", None).await
    }

    /// Create an API key with these scopes: its token.
    pub async fn create_key(&self, name: &str, scopes: &[&str]) -> Result<String, Error> {
        let path = "/v1/api-keys";
        let created = self
            .0
            .call(
                Method::POST,
                path,
                Some(json!({"name": name, "scopes": scopes})),
            )
            .await?;
        field(&created, &named(&Method::POST, path), "token")
    }
}
