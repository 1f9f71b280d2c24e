//! The real `flowgate serve` as a separate process: a configuration file,
//! a free port, start and wait until ready, kill.
//!
//! The binary's path is the caller's to give (`env!("CARGO_BIN_EXE_flowgate")`
//! in the tests and benchmarks of the package that builds it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::api::Api;

/// A loopback port free now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `count` distinct loopback ports free now. They are held open together
/// while they are chosen, so the kernel cannot hand out the same port twice
/// (which releasing each before asking for the next allows). Another process
/// may still take one before the caller binds it: callers that start
/// several servers check that each one started.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

/// A configuration file for a server on `port`, keeping its data in
/// `data_dir` and sending through the Cloud API at `cloud_api`. `top` adds
/// top-level settings (`workers = 2\n`); `extra` comes after the
/// `[whatsapp]` table's `base_url`, so its first lines may extend that
/// table and tables follow.
pub fn write_config(
    path: &Path,
    port: u16,
    data_dir: &Path,
    cloud_api: &str,
    top: &str,
    extra: &str,
) -> Result<(), Error> {
    std::fs::write(
        path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{top}\
             [whatsapp]\nbase_url = \"{cloud_api}\"\n{extra}",
            data_dir.display(),
        ),
    )?;
    Ok(())
}

/// `binary serve --dev --config <config>`, with `operator_token`, logging
/// warnings as text to nowhere (set stderr to see them).
pub fn serve_command(binary: &Path, config: &Path, operator_token: &str) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["serve", "--dev", "--log-format", "text", "--config"])
        .arg(config)
        .env("FLOWGATE_OPERATOR_TOKEN", operator_token)
        .env("FLOWGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A running server process, killed when dropped (a failing test must not
/// leave one running).
pub struct ServerProcess {
    pub child: Child,
    pub api: Api,
}

impl ServerProcess {
    /// Spawn `command` and wait until the server at `port` is ready.
    pub async fn start(mut command: Command, port: u16) -> Result<ServerProcess, Error> {
        let mut server = ServerProcess {
            child: command.spawn()?,
            api: Api::new(format!("http://127.0.0.1:{port}")),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.api.ready().await {
            // A server that exited (a bad configuration, a port taken) is
            // not waited for.
            if let Some(status) = server.child.try_wait()? {
                return Err(Error::Io(std::io::Error::other(format!(
                    "{command:?} exited ({status}) before it was ready"
                ))));
            }
            if Instant::now() > deadline {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{command:?} did not become ready within a minute"),
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// The service's address.
    pub fn base(&self) -> &str {
        &self.api.base
    }

    /// SIGKILL, and wait for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
