//! Configuration: every setting, its default and its environment variable, in one table.
//!
//! Sources, later ones winning: the defaults below, an optional TOML file (`CONFAB_CONFIG` or
//! `--config`), then `CONFAB_*` environment variables. The table is also the configuration
//! reference: `confab config` prints it, and a test keeps docs/CONFIGURATION.md equal to it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::auth::JwtKeys;
use crate::http::TrustedProxies;

/// One configuration setting.
pub struct Setting {
    /// The key in the config file; the environment variable is `CONFAB_` + the key in capitals.
    pub key: &'static str,
    /// The default as text; empty means "not set".
    pub default: &'static str,
    pub doc: &'static str,
}

impl Setting {
    pub fn env_name(&self) -> String {
        format!("CONFAB_{}", self.key.to_ascii_uppercase())
    }
}

/// Every setting confab reads. Keep entries grouped by subsystem.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "bind",
        default: "127.0.0.1:3001",
        doc: "Address and port to listen on. Loopback by default; use `0.0.0.0:3001` to accept remote clients.",
    },
    Setting {
        key: "data_dir",
        default: "./confab-data",
        doc: "Directory for local state: the SQLite database (by default) and the generated JWT secret. Created if missing.",
    },
    Setting {
        key: "database_url",
        default: "",
        doc: "`sqlite://PATH` or `postgres://…`. Default: `sqlite://DATA_DIR/confab.db`. A SQLite file that doesn't exist is created.",
    },
    Setting {
        key: "database_max_connections",
        default: "16",
        doc: "Size of the database connection pool (for SQLite: the readers; there is always one writer).",
    },
    Setting {
        key: "redis_url",
        default: "",
        doc: "`redis://host:6379`: run as one node of a cluster sharing Redis (and PostgreSQL). Unset: a single node with in-process fan-out.",
    },
    Setting {
        key: "redis_prefix",
        default: "confab",
        doc: "Prefix of every Redis key and channel, so several clusters can share one Redis.",
    },
    Setting {
        key: "node_timeout_secs",
        default: "15",
        doc: "A node whose heartbeat (renewed every third of this) is this old is dead: the others mark its users offline and tell every client to `resync`.",
    },
    Setting {
        key: "jwt_secret",
        default: "",
        doc: "HS256 secret shared with the host app (for example its NextAuth secret), at least 16 bytes. When neither this nor `jwt_public_key` is set, a secret is generated once and kept in `DATA_DIR/jwt-secret` (local mode).",
    },
    Setting {
        key: "jwt_public_key",
        default: "",
        doc: "PEM public key (RSA for RS256, P-256 for ES256) for apps that sign tokens with a private key; the PEM text itself or a path to a file.",
    },
    Setting {
        key: "jwt_audience",
        default: "",
        doc: "When set, tokens must carry this `aud` claim.",
    },
    Setting {
        key: "jwt_issuer",
        default: "",
        doc: "When set, tokens must carry this `iss` claim.",
    },
    Setting {
        key: "dev_login",
        default: "",
        doc: "Whether the web app at `/` offers \"sign in as …\" (`POST /api/dev/token` mints a token for any user id). Unset: on in local mode only. `true` turns it on with a configured `jwt_secret` too (for demos: anyone who can reach the server can then sign in as anyone); `false` turns it off.",
    },
    Setting {
        key: "cors_origins",
        default: "",
        doc: "Comma-separated origins allowed to connect from a browser and call the HTTP API (`https://app.example.com`). Empty: same-origin only.",
    },
    Setting {
        key: "max_body_chars",
        default: "5000",
        doc: "Longest message body, in characters.",
    },
    Setting {
        key: "max_group_members",
        default: "1000",
        doc: "Most members a group may have, owner included. Raise it with care: `conversation:new` carries the whole member list to each member, so creating a group of n sends n² list entries (measured: about 80 MiB for a group of 1,000, 2 GiB for 5,000; see the notes in docs/BENCHMARKS.md). Later membership changes send the others only what changed, and a message costs one frame per member.",
    },
    Setting {
        key: "max_payload_bytes",
        default: "65536",
        doc: "Largest Socket.IO message (WebSocket frame or polling request body) and HTTP request body accepted, in bytes.",
    },
    Setting {
        key: "ping_interval_ms",
        default: "25000",
        doc: "How often the server pings each socket (Socket.IO `pingInterval`).",
    },
    Setting {
        key: "ping_timeout_ms",
        default: "20000",
        doc: "How long the server waits for a pong before it closes the socket (`pingTimeout`); a silent client counts as gone after interval + timeout.",
    },
    Setting {
        key: "shutdown_grace_ms",
        default: "1000",
        doc: "On SIGTERM: after `server:shutdown` is sent, how long sockets stay open so sends already on their way are still stored and acked.",
    },
    Setting {
        key: "write_batch_max",
        default: "512",
        doc: "Most messages committed in one database transaction by the group-commit writer.",
    },
    Setting {
        key: "write_shards",
        default: "2",
        doc: "Group-commit writers committing in parallel on PostgreSQL (a conversation always uses the same one). Fewer make bigger batches and fewer commits, which is what a busy database needs (on 2 cores, 2 beat 4 in latency and database CPU at every rate measured); more overlap one commit's wait with the next batch, for a database with cores to spare. SQLite always has one.",
    },
    Setting {
        key: "typing_ttl_ms",
        default: "6000",
        doc: "How long a `typing:start` lasts without a repeat before the server sends `typing: false`.",
    },
    Setting {
        key: "presence_grace_ms",
        default: "3000",
        doc: "How long after a user's last socket closes before they are announced offline (a tab reload is not an absence).",
    },
    Setting {
        key: "session_warning_secs",
        default: "60",
        doc: "How long before a socket's token expires the server emits `session:expiring`.",
    },
    Setting {
        key: "rate_send",
        default: "20/40",
        doc: "Per-user token bucket for `message:send` (and the HTTP send): rate per second / burst.",
    },
    Setting {
        key: "rate_typing",
        default: "5/10",
        doc: "Per-user token bucket for `typing:start` and `typing:stop`: rate per second / burst.",
    },
    Setting {
        key: "rate_other",
        default: "30/60",
        doc: "Per-user token bucket for every other event and API call: rate per second / burst.",
    },
    Setting {
        key: "rate_connect_per_ip",
        default: "20/40",
        doc: "Socket.IO connection attempts per client IP address: rate per second / burst.",
    },
    Setting {
        key: "rate_session_per_ip",
        default: "20/40",
        doc: "New Socket.IO sessions (a WebSocket, or a polling handshake) per client IP address, before any token is seen: rate per second / burst. Over it: HTTP `429` with `Retry-After`.",
    },
    Setting {
        key: "max_unauthenticated_per_ip",
        default: "32",
        doc: "Most sessions one client IP address may hold open without having connected (no successful Socket.IO `CONNECT` yet). Over it: HTTP `429`.",
    },
    Setting {
        key: "max_unauthenticated",
        default: "5000",
        doc: "Most sessions without a successful `CONNECT` on this server in all. Over it: HTTP `503` with `Retry-After`.",
    },
    Setting {
        key: "connect_timeout_ms",
        default: "5000",
        doc: "How long a session may stay unauthenticated: its Socket.IO `CONNECT`, with a valid token, must have succeeded this long after the session opened, or the session is closed.",
    },
    Setting {
        key: "trusted_proxies",
        default: "",
        doc: "Comma-separated addresses and CIDR ranges of reverse proxies (`10.0.0.0/8, ::1`). A connection from one of them is counted, for `rate_connect_per_ip`, `rate_session_per_ip` and `max_unauthenticated_per_ip`, against the client address its `X-Forwarded-For` gives (the rightmost entry that isn't a trusted proxy). Empty: the TCP peer is the client.",
    },
    Setting {
        key: "max_sockets_per_user",
        default: "50",
        doc: "Most sockets one user may have connected to one server process at once.",
    },
    Setting {
        key: "log",
        default: "info",
        doc: "Log filter in `tracing` syntax, for example `info,confab=debug`.",
    },
    Setting {
        key: "log_format",
        default: "text",
        doc: "`text` for people, `json` for log pipelines.",
    },
];

/// A token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (rate, burst) = s.split_once('/').unwrap_or((s, s));
        let per_second: u32 = rate
            .trim()
            .parse()
            .context("expected RATE/BURST, like 20/40")?;
        let burst: u32 = burst
            .trim()
            .parse()
            .context("expected RATE/BURST, like 20/40")?;
        if per_second == 0 || burst == 0 {
            bail!("rate and burst must be positive");
        }
        Ok(Self { per_second, burst })
    }
}

/// Rate limits per user and per address.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub send: Rate,
    pub typing: Rate,
    pub other: Rate,
    pub connect_per_ip: Rate,
    pub max_sockets_per_user: usize,
}

/// Limits on Socket.IO sessions before they authenticate.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub rate_per_ip: Rate,
    pub max_unauthenticated_per_ip: usize,
    pub max_unauthenticated: usize,
    pub connect_timeout: Duration,
}

/// Limits on what clients may send.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_chars: usize,
    pub max_group_members: usize,
    pub max_payload_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => bail!("expected `text` or `json`"),
        }
    }
}

/// The parsed configuration.
#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub node_timeout: Duration,
    pub jwt: JwtKeys,
    /// Whether `POST /api/dev/token` exists (see the `dev_login` setting).
    pub dev_login: bool,
    pub cors_origins: Vec<String>,
    /// Whose `X-Forwarded-For` names the client, for the per-address connect limit.
    pub trusted_proxies: TrustedProxies,
    pub limits: Limits,
    pub write_batch_max: usize,
    pub write_shards: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub shutdown_grace: Duration,
    pub typing_ttl: Duration,
    pub presence_grace: Duration,
    pub session_warning: Duration,
    pub rates: RateLimits,
    pub sessions: SessionLimits,
    pub log_filter: String,
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the configuration from the process environment and the optional file.
    pub fn from_env(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CONFAB_CONFIG").map(PathBuf::from));
        Self::load(file.as_deref(), |name| std::env::var(name).ok())
    }

    /// Reads the configuration from a file and a variable lookup (the environment, or a map in
    /// tests).
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let file_values = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let src = Sources {
            file: file_values,
            env: &env,
            read: Mutex::default(),
        };
        let data_dir: PathBuf = src.parse("data_dir")?;
        let database_url = src
            .get("database_url")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("confab.db").display()));
        let public_key_pem = src
            .get("jwt_public_key")
            .map(|v| -> anyhow::Result<String> {
                if v.trim_start().starts_with("-----BEGIN") {
                    Ok(v)
                } else {
                    std::fs::read_to_string(&v)
                        .with_context(|| format!("CONFAB_JWT_PUBLIC_KEY: reading {v}"))
                }
            })
            .transpose()?;
        let dev_login = src
            .get("dev_login")
            .map(|v| {
                v.trim().parse::<bool>().map_err(|_| {
                    anyhow::anyhow!(
                        "CONFAB_DEV_LOGIN: invalid value {v:?}: expected `true` or `false`"
                    )
                })
            })
            .transpose()?;
        let mut config = Self {
            bind: src.parse("bind")?,
            database_max_connections: src.parse("database_max_connections")?,
            redis_url: src.get("redis_url"),
            redis_prefix: src.parse("redis_prefix")?,
            node_timeout: Duration::from_secs(src.parse("node_timeout_secs")?),
            jwt: JwtKeys {
                secret: src.get("jwt_secret"),
                public_key_pem,
                audience: src.get("jwt_audience"),
                issuer: src.get("jwt_issuer"),
            },
            dev_login: false,
            cors_origins: src
                .get("cors_origins")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            trusted_proxies: TrustedProxies::parse(&src.get("trusted_proxies").unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("CONFAB_TRUSTED_PROXIES: {e}"))?,
            limits: Limits {
                max_body_chars: src.parse("max_body_chars")?,
                max_group_members: src.parse("max_group_members")?,
                max_payload_bytes: src.parse("max_payload_bytes")?,
            },
            write_batch_max: src.parse("write_batch_max")?,
            write_shards: src.parse("write_shards")?,
            ping_interval: Duration::from_millis(src.parse("ping_interval_ms")?),
            ping_timeout: Duration::from_millis(src.parse("ping_timeout_ms")?),
            shutdown_grace: Duration::from_millis(src.parse("shutdown_grace_ms")?),
            typing_ttl: Duration::from_millis(src.parse("typing_ttl_ms")?),
            presence_grace: Duration::from_millis(src.parse("presence_grace_ms")?),
            session_warning: Duration::from_secs(src.parse("session_warning_secs")?),
            rates: RateLimits {
                send: src.parse("rate_send")?,
                typing: src.parse("rate_typing")?,
                other: src.parse("rate_other")?,
                connect_per_ip: src.parse("rate_connect_per_ip")?,
                max_sockets_per_user: src.parse("max_sockets_per_user")?,
            },
            sessions: SessionLimits {
                rate_per_ip: src.parse("rate_session_per_ip")?,
                max_unauthenticated_per_ip: src.parse_positive("max_unauthenticated_per_ip")?,
                max_unauthenticated: src.parse_positive("max_unauthenticated")?,
                connect_timeout: Duration::from_millis(src.parse_positive("connect_timeout_ms")?),
            },
            log_filter: src.parse("log")?,
            log_format: src.parse("log_format")?,
            data_dir,
            database_url,
        };
        src.check_all_read();
        config.dev_login = dev_login.unwrap_or_else(|| config.local_mode());
        if config.dev_login && !config.local_mode() && config.jwt.secret.is_none() {
            bail!("CONFAB_DEV_LOGIN needs an HS256 secret (CONFAB_JWT_SECRET) to sign tokens with");
        }
        if config.limits.max_group_members < 2 {
            bail!("CONFAB_MAX_GROUP_MEMBERS must be at least 2");
        }
        if config.write_batch_max == 0 {
            bail!("CONFAB_WRITE_BATCH_MAX must be at least 1");
        }
        if config.write_shards == 0 {
            bail!("CONFAB_WRITE_SHARDS must be at least 1");
        }
        Ok(config)
    }

    /// True when no key was configured, so confab runs with a secret of its own.
    pub fn local_mode(&self) -> bool {
        self.jwt.secret.is_none() && self.jwt.public_key_pem.is_none()
    }

    /// In local mode, loads the generated secret from the data directory, creating it the first
    /// time, so tokens minted by `confab token` survive restarts.
    pub fn ensure_jwt_secret(&mut self) -> anyhow::Result<()> {
        if !self.local_mode() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data directory {}", self.data_dir.display()))?;
        let path = self.data_dir.join("jwt-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = hex::encode(rand::random::<[u8; 32]>());
                write_private(&path, &secret)
                    .with_context(|| format!("writing {}", path.display()))?;
                secret
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        self.jwt.secret = Some(secret);
        Ok(())
    }
}

/// Writes a file only its owner can read: it holds a signing secret.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn read_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !SETTINGS.iter().any(|s| s.key == key) {
            bail!("config file {}: unknown setting `{key}`", path.display());
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// Looks settings up by key and remembers which were read, so a setting in the table that the
/// code forgets to read is caught by tests.
struct Sources<'a> {
    file: BTreeMap<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    read: Mutex<BTreeSet<&'static str>>,
}

impl Sources<'_> {
    fn setting(&self, key: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("setting `{key}` is missing from SETTINGS"))
    }

    /// The value of `key`, or `None` when unset (an empty value counts as unset).
    fn get(&self, key: &str) -> Option<String> {
        let setting = self.setting(key);
        self.read.lock().unwrap().insert(setting.key);
        (self.env)(&setting.env_name())
            .or_else(|| self.file.get(key).cloned())
            .or_else(|| Some(setting.default.to_owned()))
            .filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let setting = self.setting(key);
        let raw = self
            .get(key)
            .with_context(|| format!("{} must be set", setting.env_name()))?;
        raw.trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: invalid value {raw:?}: {e}", setting.env_name()))
    }

    /// A count or duration that must be at least 1 (0 would refuse everyone).
    fn parse_positive<T: FromStr + Default + PartialEq>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let value: T = self.parse(key)?;
        if value == T::default() {
            bail!("{}: must be at least 1", self.setting(key).env_name());
        }
        Ok(value)
    }

    fn check_all_read(&self) {
        let read = self.read.lock().unwrap();
        for s in SETTINGS {
            debug_assert!(read.contains(s.key), "setting `{}` is never read", s.key);
        }
    }
}

/// The configuration reference as Markdown, generated from [`SETTINGS`].
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated by `confab config` from the settings table in `src/config.rs`; a test keeps this \
         file equal to it.\n\n\
         Settings come from, later ones winning: the defaults, a TOML file named by `--config` or \
         `CONFAB_CONFIG` (keys as in the first column), and environment variables.\n\n\
         | key | environment | default | meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let default = if s.default.is_empty() {
            "(unset)".to_owned()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            s.key,
            s.env_name(),
            default,
            s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_are_local_and_embedded() {
        let c = load(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:3001");
        assert_eq!(c.database_url, "sqlite://./confab-data/confab.db");
        assert!(c.local_mode());
        assert!(c.cors_origins.is_empty());
        assert_eq!(c.limits.max_body_chars, 5000);
    }

    #[test]
    fn env_overrides_and_bad_values_name_the_variable() {
        let c = load(&[
            ("CONFAB_BIND", "0.0.0.0:9000"),
            (
                "CONFAB_CORS_ORIGINS",
                "https://a.example, https://b.example/",
            ),
        ])
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
        let err = load(&[("CONFAB_MAX_BODY_CHARS", "lots")]).err().unwrap();
        assert!(err.to_string().contains("CONFAB_MAX_BODY_CHARS"), "{err}");
        let err = load(&[("CONFAB_TRUSTED_PROXIES", "10.0.0.0/8, lb.internal")])
            .err()
            .unwrap();
        assert!(err.to_string().contains("CONFAB_TRUSTED_PROXIES"), "{err}");
        assert!(err.to_string().contains("lb.internal"), "{err}");
    }

    #[test]
    fn dev_login_is_on_in_local_mode_only_unless_set() {
        assert!(load(&[]).unwrap().dev_login);
        let secret = ("CONFAB_JWT_SECRET", "a-secret-of-sixteen-bytes");
        assert!(!load(&[secret]).unwrap().dev_login);
        assert!(
            load(&[secret, ("CONFAB_DEV_LOGIN", "true")])
                .unwrap()
                .dev_login
        );
        assert!(!load(&[("CONFAB_DEV_LOGIN", "false")]).unwrap().dev_login);
        let err = load(&[("CONFAB_DEV_LOGIN", "yes")]).err().unwrap();
        assert!(err.to_string().contains("CONFAB_DEV_LOGIN"), "{err}");
        let pem = ("CONFAB_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----");
        assert!(load(&[pem, ("CONFAB_DEV_LOGIN", "true")]).is_err());
    }

    #[test]
    fn file_values_lose_to_env() {
        let dir = std::env::temp_dir().join(format!("confab-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("confab.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:4000\"\nmax_body_chars = 100\n").unwrap();
        let c = Config::load(Some(&path), |k| {
            (k == "CONFAB_MAX_BODY_CHARS").then(|| "200".to_owned())
        })
        .unwrap();
        assert_eq!(c.bind.port(), 4000);
        assert_eq!(c.limits.max_body_chars, 200);
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        assert!(Config::load(Some(&path), |_| None).is_err());
    }

    #[test]
    fn the_reference_document_matches_the_settings_table() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/CONFIGURATION.md"
        ))
        .unwrap_or_default();
        assert!(
            doc == reference_markdown(),
            "docs/CONFIGURATION.md is out of date: run `cargo run -- config > docs/CONFIGURATION.md`"
        );
    }
}
