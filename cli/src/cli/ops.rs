//! Operator commands against a running service (`--url`, operator token
//! from `FLOWGATE_OPERATOR_TOKEN`), and the offline restore.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use flowgate::config::ServiceConfig;
use flowgate::server::{self, MasterKeySource};

/// Where the service is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// The service's base URL.
    #[arg(long, env = "FLOWGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The operator token.
    #[arg(long, env = "FLOWGATE_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl Remote {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        runtime.block_on(async {
            let mut request = reqwest::Client::new()
                .request(method, &url)
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("calling {url}"))?;
            if !response.status().is_success() {
                let status = response.status();
                bail!(
                    "{url} answered {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
            Ok(response)
        })
    }

    fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let response = self.call(method, path, body)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(response.json())?)
    }
}

fn print(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Retention commands.
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Sweep every tenant now: message previews past 90 days, message
    /// metadata past a year, plugin state past 90 days since its last write,
    /// consent records past 7 years (or the tenant's shorter periods).
    Run(Remote),
}

/// Backup commands.
#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Ask the running service for a consistent backup of the records
    /// (sealed, without keys), written to its backup directory.
    Create(Remote),
    /// Restore a backup into a data directory. Stop the service first. The
    /// key ring is kept: records of contacts erased (and tenants deleted)
    /// since the backup are removed, never brought back.
    Restore {
        /// The backup file.
        #[arg(long)]
        input: PathBuf,
        /// The data directory.
        #[arg(long, env = "FLOWGATE_DATA_DIR")]
        data_dir: PathBuf,
        /// File with the master key (or FLOWGATE_MASTER_KEY).
        #[arg(long, env = "FLOWGATE_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
        /// Use the development master key in the data directory.
        #[arg(long)]
        dev: bool,
    },
}

/// Audit commands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check a tenant's audit hash chain (`system` for the operator's).
    Verify {
        /// Tenant id, or `system`.
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Tenant lifecycle commands.
#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Export everything of a tenant as NDJSON.
    Export {
        tenant: String,
        /// Output file (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Schedule a tenant's deletion (at most 30 days ahead).
    Offboard {
        tenant: String,
        /// Days until deletion [default: 30].
        #[arg(long)]
        days: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a tenant now: keys shredded, records purged.
    Delete {
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn retention(command: RetentionCommand) -> Result<ExitCode> {
    match command {
        RetentionCommand::Run(remote) => {
            print(&remote.json(reqwest::Method::POST, "/v1/operator/retention", None)?)
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn backup(command: BackupCommand) -> Result<ExitCode> {
    match command {
        BackupCommand::Create(remote) => {
            print(&remote.json(reqwest::Method::POST, "/v1/operator/backups", None)?)
        }
        BackupCommand::Restore {
            input,
            data_dir,
            master_key_file,
            dev,
        } => {
            let config = ServiceConfig {
                data_dir,
                master_key_file,
                ..ServiceConfig::default()
            };
            let source = if dev {
                MasterKeySource::GenerateInDataDir
            } else {
                MasterKeySource::Configured
            };
            let vault = server::open_vault(&config, server::master_key(&config, source)?)?;
            let summary = flowgate::compliance::backup::restore(&vault, &input)?;
            println!(
                "restored {} records from {}; removed {} records whose keys no longer exist",
                summary.records,
                input.display(),
                summary.unrecoverable_removed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify { tenant, remote } => {
            let result = remote.json(
                reqwest::Method::GET,
                &format!("/v1/operator/tenants/{tenant}/audit/verify"),
                None,
            )?;
            print(&result);
            if result["intact"] != true {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tenant(command: TenantCommand) -> Result<ExitCode> {
    match command {
        TenantCommand::Export {
            tenant,
            output,
            remote,
        } => {
            let response = remote.call(
                reqwest::Method::GET,
                &format!("/v1/operator/tenants/{tenant}/export"),
                None,
            )?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let bytes = runtime.block_on(response.bytes())?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes)?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                }
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
            }
        }
        TenantCommand::Offboard {
            tenant,
            days,
            remote,
        } => print(&remote.json(
            reqwest::Method::POST,
            &format!("/v1/operator/tenants/{tenant}/offboard"),
            Some(serde_json::json!({"days": days})),
        )?),
        TenantCommand::Delete { tenant, remote } => print(&remote.json(
            reqwest::Method::DELETE,
            &format!("/v1/operator/tenants/{tenant}"),
            None,
        )?),
    }
    Ok(ExitCode::SUCCESS)
}
