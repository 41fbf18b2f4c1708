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
