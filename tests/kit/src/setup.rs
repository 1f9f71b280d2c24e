//! Setting up a tenant the way an operator and a tenant do, over the APIs:
//! the one place this is written, for the tests, the benchmarks and the
//! demo.
//!
//! [`set_up`] creates the tenant, adds its WhatsApp channel (registering the
//! channel's access token with the fake Cloud API), checks the channel's
//! webhook verification handshake, admits the plugins of its flow to the
//! registry and installs them in order.

use std::path::PathBuf;

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use serde_json::{Value, json};

use crate::Error;
use crate::api::{Api, ChannelSpec, TenantApi};

/// A plugin to install.
#[derive(Clone, Debug)]
pub struct Install {
    /// The plugin's id, which is also its built component's name.
    pub plugin: String,
    /// The data fields granted; `None` grants every field it declares.
    pub grants: Option<Vec<String>>,
    /// Its configuration.
    pub config: Value,
}

impl Install {
    /// `plugin` with every declared field granted and no configuration.
    pub fn new(plugin: &str) -> Install {
        Install {
            plugin: plugin.to_owned(),
            grants: None,
            config: json!({}),
        }
    }

    /// With this configuration (a JSON object of strings).
    pub fn config(mut self, config: Value) -> Install {
        self.config = config;
        self
    }

    /// Granting only these fields.
    pub fn grants(mut self, fields: &[&str]) -> Install {
        self.grants = Some(fields.iter().map(|f| (*f).to_owned()).collect());
        self
    }
}

/// What to set up.
#[derive(Clone, Debug)]
pub struct TenantSpec {
    pub name: String,
    /// The tenant's time zone; the service's default when `None`.
    pub timezone: Option<String>,
    pub channel: ChannelSpec,
    /// The flow, in order.
    pub installs: Vec<Install>,
    /// Where the components of the flow's plugins are.
    pub guests: PathBuf,
}

impl TenantSpec {
    /// A tenant `name` whose channel is `phone_number_id`, with secrets
    /// derived from its name, an empty flow, and the built guests.
    pub fn new(name: &str, phone_number_id: &str) -> TenantSpec {
        TenantSpec {
            name: name.to_owned(),
            timezone: None,
            channel: ChannelSpec {
                phone_number_id: phone_number_id.to_owned(),
                app_secret: format!("app-secret-of-{name}"),
                verify_token: "verify-token-123".to_owned(),
                access_token: format!("access-token-of-{name}"),
            },
            installs: Vec::new(),
            guests: crate::guests::guests_dir(),
        }
    }

    /// In this time zone.
    pub fn timezone(mut self, timezone: &str) -> TenantSpec {
        self.timezone = Some(timezone.to_owned());
        self
    }

    /// With this channel access token (what the Cloud API accepts).
    pub fn access_token(mut self, token: &str) -> TenantSpec {
        self.channel.access_token = token.to_owned();
        self
    }

    /// Plugins' components from `dir`.
    pub fn guests(mut self, dir: PathBuf) -> TenantSpec {
        self.guests = dir;
        self
    }

    /// Add a plugin at the end of the flow.
    pub fn install(mut self, install: Install) -> TenantSpec {
        self.installs.push(install);
        self
    }
}

/// A tenant that was set up.
#[derive(Clone, Debug)]
pub struct TestTenant {
    pub id: String,
    pub name: String,
    /// Its admin API key.
    pub admin: String,
    /// Its API, with the admin key.
    pub api: TenantApi,
    pub phone_number_id: String,
    /// Its channel's webhook path.
    pub webhook: String,
    pub app_secret: String,
    /// The registry records of the flow's plugins, in flow order.
    pub plugins: Vec<Value>,
    /// The flow's installations, in order.
    pub installations: Vec<Value>,
}

/// The challenge the handshake sends: Meta's is a number.
const CHALLENGE: &str = "1158201444";

/// Set up `spec` on the service at `api`, as the operator (`operator_token`)
/// and then as the tenant.
pub async fn set_up(
    api: &Api,
    operator_token: &str,
    fake: &FakeCloudApi,
    spec: &TenantSpec,
) -> Result<TestTenant, Error> {
    let operator = api.operator(operator_token);
    let created = operator
        .create_tenant(&spec.name, spec.timezone.as_deref())
        .await?;
    fake.register(&spec.channel.phone_number_id, &spec.channel.access_token);
    let webhook = operator.add_channel(&created.id, &spec.channel).await?;
    let (status, body) = api
        .verify_webhook(&webhook, &spec.channel.verify_token, CHALLENGE)
        .await?;
    if status != 200 || body != CHALLENGE {
        return Err(Error::Verification {
            path: webhook,
            status,
            body,
        });
    }
    let tenant = api.tenant(&created.admin_key);
    let mut plugins = Vec::new();
    let mut installations = Vec::new();
    for install in &spec.installs {
        let component = crate::guests::read_component(&spec.guests, &install.plugin)?;
        plugins.push(operator.admit(component).await?);
        installations.push(tenant.install(install).await?);
    }
    Ok(TestTenant {
        id: created.id,
        name: spec.name.clone(),
        admin: created.admin_key,
        api: tenant,
        phone_number_id: spec.channel.phone_number_id.clone(),
        webhook,
        app_secret: spec.channel.app_secret.clone(),
        plugins,
        installations,
    })
}
