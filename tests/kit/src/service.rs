//! A real service in this process: `flowgate::server::serve` on a loopback
//! port, with a temporary data directory and the fake Cloud API, driven over
//! HTTP. The tests' service, and the demo's.
//!
//! The methods for tests panic with the failed request's answer; the
//! `try_` ones, which the demo uses, answer errors.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use flowgate::channel::whatsapp::fake::FakeCloudApi;
use flowgate::clock::Clock;
use flowgate::config::ServiceConfig;
use flowgate::crypto::SecretKey;
use flowgate::data::Vault;

use crate::Error;
use crate::api::{Api, OperatorApi};
use crate::setup::{Install, TenantSpec, TestTenant};

/// The operator token of a [`TestService`] (unless configured otherwise).
pub const OPERATOR: &str = "test-operator-token-0123456789";

/// The configuration of a service on `data_dir`, sending through `fake`,
/// with [`OPERATOR`]'s token: a loopback port chosen by the system, two
/// workers, defaults otherwise.
pub fn test_config(data_dir: &Path, fake: &FakeCloudApi) -> ServiceConfig {
    let mut config = ServiceConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data_dir: data_dir.to_owned(),
        operator_token: OPERATOR.into(),
        workers: 2,
        ..ServiceConfig::default()
    };
    config.whatsapp.base_url = fake.base_url();
    config
}

/// A running service.
pub struct TestService {
    pub api: Api,
    pub base: String,
    pub http: reqwest::Client,
    pub fake: FakeCloudApi,
    pub vault: Vault,
    pub clock: Clock,
    /// The operator's token.
    pub operator_token: String,
    config: ServiceConfig,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Served>>,
}

/// How `server::serve` ended.
type Served = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A service stopped with its data kept (see [`TestService::halt`]).
pub struct StoppedService {
    /// The vault, still open: the records and keys as they are on disk.
    pub vault: Vault,
    pub clock: Clock,
    fake: FakeCloudApi,
    config: ServiceConfig,
    data: tempfile::TempDir,
}

impl StoppedService {
    /// Serve again, on the configured address (the one served before).
    pub async fn start(self) -> TestService {
        self.try_start().await.expect("starting the service again")
    }

    pub async fn try_start(self) -> Result<TestService, Error> {
        let StoppedService {
            vault,
            clock,
            fake,
            config,
            data,
        } = self;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let operator_token = config.operator_token.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = flowgate::server::serve(
            config.clone(),
            vault.clone(),
            clock.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
        );
        let server = tokio::spawn(async move { serving.await.map_err(Into::into) });
        let api = Api::new(base.clone());
        Ok(TestService {
            http: api.http.clone(),
            api,
            base,
            fake,
            vault,
            clock,
            operator_token,
            config,
            data,
            stop: Some(stop),
            server: Some(server),
        })
    }
}

impl TestService {
    pub async fn start() -> TestService {
        TestService::start_with(|_| {}).await
    }

    /// Start with [`test_config`], a small cache and instance pool (tests
    /// run many services side by side), changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServiceConfig)) -> TestService {
        TestService::try_start_with(adjust)
            .await
            .expect("starting the service")
    }

    pub async fn try_start_with(
        adjust: impl FnOnce(&mut ServiceConfig),
    ) -> Result<TestService, Error> {
        let data = tempfile::Builder::new().prefix("flowgate-").tempdir()?;
        let fake = FakeCloudApi::start().await?;
        let mut config = test_config(data.path(), &fake);
        config.store_cache_mb = 64;
        config.max_instances = 32;
        adjust(&mut config);
        config
            .validate()
            .map_err(|e| Error::service("the configuration is invalid", e))?;
        // The master key lives in memory only and dies with the service.
        let vault = flowgate::server::open_vault(&config, SecretKey::generate())
            .map_err(|e| Error::service("opening the data directory", e))?;
        let stopped = StoppedService {
            vault,
            clock: Clock::system(),
            fake,
            config,
            data,
        };
        stopped.try_start().await
    }

    /// Stop gracefully, keeping the data directory and the open vault (so
    /// the master key) for [`StoppedService::start`] on the same address:
    /// an operator's restart, with room in between to look at or change
    /// what is on the disk while no service runs.
    pub async fn halt(self) -> StoppedService {
        let mut config = self.config.clone();
        config.listen = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("the address served");
        let (vault, clock, fake) = (self.vault.clone(), self.clock.clone(), self.fake.clone());
        let data = self.stop().await;
        StoppedService {
            vault,
            clock,
            fake,
            config,
            data,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Stop gracefully and wait. Returns the data directory, which is
    /// deleted when the returned value is dropped.
    pub async fn stop(self) -> tempfile::TempDir {
        self.try_stop().await.expect("stopping the service")
    }

    pub async fn try_stop(mut self) -> Result<tempfile::TempDir, Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .map_err(|e| Error::service("the service task", e))?
                .map_err(|e| Error::service("the service stopped with an error", e))?;
        }
        let placeholder = tempfile::TempDir::new()?;
        Ok(std::mem::replace(&mut self.data, placeholder))
    }

    /// The operator API.
    pub fn operator(&self) -> OperatorApi {
        self.api.operator(&self.operator_token)
    }

    /// Send a request with `token`; any status is an answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.api
            .with_token(token)
            .send(method, path, body)
            .await
            .unwrap()
    }

    /// Send a request with `token` that must succeed: its answer.
    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        self.api
            .with_token(token)
            .call(method, path, body)
            .await
            .unwrap()
    }

    /// Admit a built component to the registry.
    pub async fn upload(&self, name: &str) -> Value {
        self.operator()
            .admit(crate::guests::component(name))
            .await
            .unwrap()
    }

    /// A tenant with a channel (the fake accepts its access token) and no
    /// plugins.
    pub async fn tenant(&self, name: &str, phone_number_id: &str) -> TestTenant {
        self.tenant_with(&TenantSpec::new(name, phone_number_id))
            .await
    }

    /// A tenant set up as `spec` says.
    pub async fn tenant_with(&self, spec: &TenantSpec) -> TestTenant {
        self.try_tenant_with(spec).await.unwrap()
    }

    pub async fn try_tenant_with(&self, spec: &TenantSpec) -> Result<TestTenant, Error> {
        crate::setup::set_up(&self.api, &self.operator_token, &self.fake, spec).await
    }

    /// Install an admitted plugin for a tenant with every declared field
    /// granted.
    pub async fn enable(&self, tenant: &TestTenant, plugin: &str, config: Value) -> Value {
        tenant
            .api
            .install(&Install::new(plugin).config(config))
            .await
            .unwrap()
    }

    /// POST a webhook body signed with `secret`.
    pub async fn post_webhook(&self, path: &str, body: &str, secret: &str) -> (u16, Value) {
        self.api.post_webhook(path, body, secret).await.unwrap()
    }

    /// Deliver a webhook body to the tenant's channel, signed as Meta signs
    /// it; it must be acknowledged.
    pub async fn deliver(&self, tenant: &TestTenant, body: &str) -> Value {
        let (status, answer) = self
            .post_webhook(&tenant.webhook, body, &tenant.app_secret)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The tenant's contact with this WhatsApp id.
    pub async fn contact(&self, tenant: &TestTenant, wa_id: &str) -> Value {
        tenant.api.lookup(wa_id).await.unwrap()
    }

    /// The tenant's audit entries with this action.
    pub async fn audit_of(&self, tenant: &TestTenant, action: &str) -> Vec<Value> {
        tenant.api.audit(action).await.unwrap()
    }

    /// A new API key of the tenant with these scopes: its token.
    pub async fn api_key(&self, tenant: &TestTenant, scopes: &[&str]) -> String {
        let name = format!("{} key", scopes.join("+"));
        tenant.api.create_key(&name, scopes).await.unwrap()
    }

    /// The metrics text (read with the operator's token, as they must be).
    pub async fn metrics(&self) -> String {
        self.operator().metrics().await.unwrap()
    }

    /// Wait until every accepted item is processed and every queued reply
    /// has been sent, failed or dropped.
    pub async fn settle(&self) {
        self.operator()
            .settle(Duration::from_secs(30))
            .await
            .unwrap()
    }
}
