//! Processes for cluster and fault tests: a private Redis server and a private PostgreSQL that
//! can be stopped and restarted, and confab nodes as real child processes that can be killed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::services_required;

/// A free TCP port on loopback (bound and released: good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The resident set size of process `pid` in KiB. A measurement that can't be made fails the
/// test: a bound checked against zero would pass whatever happened.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A Redis server of the test's own, on a random port, keeping nothing on disk.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` outside CI when `redis-server` isn't installed.
    pub async fn start() -> Option<Self> {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        if !server.launch().await {
            return None;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(e) if !services_required() => {
                eprintln!("redis-server not available ({e}); skipping");
                return false;
            }
            Err(e) => panic!("redis-server is required in CI: {e}"),
        }
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (losing every key, as a real Redis without persistence would).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.launch().await);
    }
}

/// A confab node as a child process.
pub struct NodeProcess {
    pub url: String,
    child: Child,
    /// Every line it has written to stdout or stderr so far, in arrival order per stream.
    output: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts the `confab` binary with these `CONFAB_*` settings (plus a random port) and
    /// waits until it listens.
    pub async fn start(settings: &[(&str, &str)]) -> Self {
        Self::start_program(env!("CARGO_BIN_EXE_confab"), settings).await
    }

    /// Like [`NodeProcess::start`], with another build of confab.
    pub async fn start_program(program: &str, settings: &[(&str, &str)]) -> Self {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CONFAB_BIND", format!("127.0.0.1:{}", free_port()))
            .env("CONFAB_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in settings {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("starting confab");
        let output = Arc::new(Mutex::new(Vec::new()));
        // Drain stderr all along (so the pipe never fills), keeping its lines.
        let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = errors.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kept = output.clone();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                kept.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            panic!("confab exited before listening");
        })
        .await
        .expect("confab started in time");
        let kept = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Self { url, child, output }
    }

    /// The lines the node has written so far (stdout and stderr).
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL: no goodbye, nothing flushed.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then the exit status (waiting at most `limit`).
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 15) };
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()?
            .ok()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
    fn geteuid() -> u32;
}

/// A PostgreSQL cluster of the test's own (initdb in a temp dir, a random port, trust auth), so
/// a test can stop and restart it without disturbing the shared server other tests use.
pub struct PgServer {
    pub port: u16,
    bin: PathBuf,
    /// Holds `data/` (the cluster), the Unix socket and the log.
    base: tempfile::TempDir,
    /// As root, PostgreSQL's tools run as the `postgres` user (the server refuses root).
    as_postgres: bool,
}

impl PgServer {
    /// `None` outside CI when PostgreSQL's server binaries aren't installed.
    pub async fn start() -> Option<Self> {
        let Some(bin) = pg_bindir() else {
            if services_required() {
                panic!("initdb is required in CI (looked in /usr/lib/postgresql/*/bin and PATH)");
            }
            eprintln!("initdb not found; skipping a test that needs a PostgreSQL of its own");
            return None;
        };
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { geteuid() } == 0;
        let base = tempfile::Builder::new()
            .prefix("confab-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let status = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(base.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL dir to postgres");
        }
        let server = Self {
            port: free_port(),
            bin,
            base,
            as_postgres,
        };
        let data = server.data_dir();
        server
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "confab",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            )
            .await;
        server.launch().await;
        Some(server)
    }

    /// The URL nodes connect with (as superuser `confab`, to the `postgres` database).
    pub fn url(&self) -> String {
        format!("postgres://confab@127.0.0.1:{}/postgres", self.port)
    }

    fn data_dir(&self) -> String {
        self.base.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's tools (as `postgres` when we are root) and checks it succeeded.
    async fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn launch(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB",
            self.port,
            self.base.path().display()
        );
        let log = self.base.path().join("log").display().to_string();
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start",
            ],
        )
        .await;
    }

    /// Kills the server the hard way (`-m immediate`: no checkpoint, connections cut), as a
    /// crash or a failover would.
    pub async fn stop(&mut self) {
        let data = self.data_dir();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
            .await;
    }

    /// Starts it again on the same port (after crash recovery) and waits until it accepts.
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Synchronous: the runtime may be shutting down. Ignores failure (already stopped).
        let program = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where `initdb` and `pg_ctl` live: Debian's versioned dir (newest first), else PATH.
fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(dir) = dirs.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    })
}

/// A Redis Cluster of the test's own: three primaries and a replica of each, on random ports,
/// keeping nothing on disk, with a 1 s node timeout so a killed primary's replica takes over in
/// a few seconds. Every server is killed when this is dropped (a failed test included).
pub struct RedisCluster {
    /// Client ports, in the order the servers were started.
    pub ports: Vec<u16>,
    servers: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    /// The id of its primary (replicas).
    pub replica_of: Option<String>,
    /// Slot ranges it serves (primaries).
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// `None` outside CI when `redis-server` isn't installed.
    pub async fn start() -> Option<Self> {
        let mut cluster = Self::reserve();
        cluster.launch().await.then_some(cluster)
    }

    /// Chooses the ports, starting nothing yet (to configure confab before the cluster runs).
    pub fn reserve() -> Self {
        // The cluster bus port is the client port + 10000 by default, which a random port may
        // push past 65535: each gets a free one of its own (`cluster-port`, Redis 7).
        let mut ports = Vec::new();
        while ports.len() < 12 {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        Self {
            ports,
            servers: Vec::new(),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts the servers and makes them a cluster. `false` outside CI when `redis-server`
    /// isn't installed.
    pub async fn launch(&mut self) -> bool {
        let dir = self._dir.path().to_owned();
        let (ports, bus_ports) = self.ports.split_at(6);
        let (ports, bus_ports) = (ports.to_vec(), bus_ports.to_vec());
        let mut servers = Vec::new();
        for (port, bus) in ports.iter().zip(&bus_ports) {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "1000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => servers.push(Some(child)),
                Err(e) if !services_required() => {
                    eprintln!("redis-server not available ({e}); skipping");
                    return false;
                }
                Err(e) => panic!("redis-server is required in CI: {e}"),
            }
        }
        self.ports = ports;
        self.servers = servers;
        for &port in &self.ports {
            wait_for_port(port).await;
        }
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli (installed with redis-server)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        self.wait_healthy().await;
        true
    }

    /// Seed URLs for `CONFAB_REDIS_URL`: two of the nodes, as an operator would list them.
    pub fn seeds(&self) -> String {
        format!(
            "redis://127.0.0.1:{},redis://127.0.0.1:{}",
            self.ports[0], self.ports[1]
        )
    }

    fn live_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.servers)
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| *p)
    }

    /// A connection to one server.
    pub async fn conn(&self, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connecting to redis on {port}: {e}"))
    }

    /// `CLUSTER NODES` as one live server sees it.
    pub async fn nodes(&self, port: u16) -> Vec<ClusterNode> {
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut self.conn(port).await)
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f[1]
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap();
                let slots = f[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .map(|s| match s.split_once('-') {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => (s.parse().unwrap(), s.parse().unwrap()),
                    })
                    .collect();
                ClusterNode {
                    id: f[0].to_owned(),
                    port,
                    primary: f[2].contains("master"),
                    failed: f[2].contains("fail"),
                    replica_of: (f[3] != "-").then(|| f[3].to_owned()),
                    slots,
                }
            })
            .collect()
    }

    /// The hash slot of `key`, as Redis computes it.
    pub async fn slot(&self, key: &str) -> u16 {
        let port = self.live_ports().next().unwrap();
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut self.conn(port).await)
            .await
            .unwrap()
    }

    /// The primary that serves `key`'s slot now.
    pub async fn owner(&self, key: &str) -> ClusterNode {
        let slot = self.slot(key).await;
        let port = self.live_ports().next().unwrap();
        self.nodes(port)
            .await
            .into_iter()
            .find(|n| {
                n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Kills the server on `port` (SIGKILL to its process: no goodbye to the cluster).
    pub async fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        let mut child = self.servers[i].take().expect("running");
        child.kill().await.unwrap();
    }

    /// Waits until every live server says the cluster is ok, every slot is served by a live
    /// primary, and every live replica's link to its primary is up (a replica that isn't
    /// caught up can't take over).
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.health_problem().await {
                None => return,
                Some(problem) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the Redis cluster did not become healthy: {problem}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn health_problem(&self) -> Option<String> {
        let live: Vec<u16> = self.live_ports().collect();
        for &port in &live {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut self.conn(port).await)
                .await
                .unwrap();
            if !info.contains("cluster_state:ok") {
                return Some(format!("{port}: not cluster_state:ok"));
            }
            let nodes = self.nodes(port).await;
            let mut served = 0;
            for n in nodes.iter().filter(|n| n.primary && !n.slots.is_empty()) {
                if n.failed || !live.contains(&n.port) {
                    return Some(format!("{port} sees slots on {} (dead)", n.port));
                }
                served += n
                    .slots
                    .iter()
                    .map(|(a, b)| (b - a + 1) as usize)
                    .sum::<usize>();
            }
            if served != 16384 {
                return Some(format!("{port} sees {served} slots served"));
            }
            if !nodes.iter().any(|n| n.port == port && n.primary) {
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut self.conn(port).await)
                    .await
                    .unwrap();
                if !replication.contains("master_link_status:up") {
                    return Some(format!("replica {port} not linked"));
                }
            }
        }
        None
    }
}

async fn wait_for_port(port: u16) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis-server did not start on port {port}");
}
