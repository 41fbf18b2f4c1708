//! Configuration: every setting, its default and its environment variable, in one table.
//!
//! Sources, later ones winning: the defaults below, an optional TOML file (`CONFAB_CONFIG` or
//! `--config`), then `CONFAB_*` environment variables. The table is also the configuration
//! reference: `confab config --reference` prints it, and a test keeps docs/CONFIGURATION.md equal to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::auth::JwtKeys;
use crate::domain::Limits;
use crate::http::TrustedProxies;
use crate::limits::RateLimits;
use crate::realtime::SessionLimits;
use crate::telemetry::LogFormat;

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
        doc: "Address and port to listen on (`127.0.0.1:3001`, `[::1]:3001`, or a host name such as `localhost:3001`, resolved once at start). Loopback by default; use `0.0.0.0:3001` to accept remote clients (local mode and dev login then need `dev_login` set explicitly).",
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
        doc: "`redis://host:6379`: run as one node of a cluster sharing Redis (and PostgreSQL). Unset: a single node with in-process fan-out. With `redis_cluster`, one or more seed nodes of the Redis Cluster, comma-separated (`redis://10.0.0.21:6379,redis://10.0.0.22:6379`; a managed service's configuration endpoint is one); confab discovers the rest. A password or user in the first URL is used for every node.",
    },
    Setting {
        key: "redis_cluster",
        default: "false",
        doc: "`true`: `redis_url` is a Redis Cluster (Redis 7 or later, as managed Redis services with cluster mode enabled are). Events then use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`), so each conversation's and user's channel lives on the shard that owns its hash slot and the traffic spreads over the shards; presence keys are spread too. A failover or resharding is followed, and clients are told to `resync` across it.",
    },
    Setting {
        key: "redis_prefix",
        default: "confab",
        doc: "Prefix of every Redis key and channel, so several clusters can share one Redis. With `redis_cluster` it may not contain `{` or `}`: a hash tag would put every channel in one slot, on one shard.",
    },
    Setting {
        key: "node_timeout_secs",
        default: "15",
        doc: "A node whose heartbeat (renewed every third of this) is this old is dead: the others mark its users offline and tell every client to `resync`.",
    },
    Setting {
        key: "jwt_secret",
        default: "",
        doc: "HS256 secret shared with the host app, at least 16 bytes: a dedicated one, generated (`openssl rand -hex 32`) and given to the app as an environment variable, not the app's own session secret (NextAuth's `AUTH_SECRET`). When neither this nor `jwt_public_key` is set, a secret is generated once and kept in `DATA_DIR/jwt-secret` (local mode).",
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
        doc: "Whether the web app at `/` offers \"sign in as …\" (`POST /api/dev/token` mints a token for any user id). Unset: on in local mode only. `true` turns it on with a configured `jwt_secret` too (for demos: anyone who can reach the server can then sign in as anyone); `false` turns it off. On an address other than loopback, local mode starts only with this set explicitly (either way), and an open sign-in is logged as a warning.",
    },
    Setting {
        key: "cors_origins",
        default: "",
        doc: "Comma-separated origins allowed to connect from a browser and call the HTTP API (`https://app.example.com`). Empty: same-origin only.",
    },
    Setting {
        key: "allowed_hosts",
        default: "",
        doc: "In local mode or with dev login on, the only `Host` headers accepted are IP addresses, `localhost` and `*.localhost`, which a DNS-rebinding page can't send; list here the host names you reach this server by otherwise (`demo.example.com`, or `.example.com` for every subdomain). Ignored when neither is on.",
    },
    Setting {
        key: "max_body_chars",
        default: "5000",
        doc: "Longest message body, in characters.",
    },
    Setting {
        key: "max_group_members",
        default: "100000",
        doc: "Most members a group may have, owner included. Building a group costs O(n) in all: conversation objects carry the first 100 members and `member_count` (the rest is paged with `conversation:members:list`), and in a group of more than 100 members joins and departures are not pushed to every member, nor are presence, typing or others' read receipts (docs/PROTOCOL.md, \"Large groups\"). A message still costs one frame per connected member: docs/bench/notes.md has the `fanout` benchmark of a group of 100,000.",
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
        key: "ws_compression",
        default: "true",
        doc: "Accept `permessage-deflate` when a WebSocket client offers it (browsers and the Node client do). Negotiated without context takeover, so a connection keeps no compression state (idle memory is unchanged); costs CPU per compressed message. See \"Wire formats\" in docs/BENCHMARKS.md.",
    },
    Setting {
        key: "ws_compression_threshold_bytes",
        default: "1024",
        doc: "With `ws_compression`, server messages of at least this many bytes are compressed; smaller ones (a chat message is about 300) go as they are.",
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
        doc: "How long before a socket's token expires the server emits `session:expiring` (once per expiry). A session shorter than twice this is warned halfway through what is left instead, so a short token isn't warned at once.",
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
        key: "rate_members",
        default: "20/1000",
        doc: "Per-user budget of members touched by membership requests (each member named in a group create, an add or a remove costs one): rate per second / burst. The burst must hold the largest request (1,000 users, or `max_group_members` - 1 when that is less). It bounds how many memberships, user rows and `conversation:new` events one user can cause, whatever the size of each request; a user fills a group of 100,000 in about 80 minutes at the default rate, while the host app's server API is not limited.",
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
    // The host app's side (server API, moderation, webhooks).
    Setting {
        key: "server_api_keys",
        default: "",
        doc: "Comma-separated keys (each at least 16 characters; generate with `openssl rand -hex 32`) that the host app's backend sends as `Authorization: Bearer <key>` to the server API under `/api/server/` (docs/PROTOCOL.md, \"Server API\"). Several, so a key can be rotated: add the new one, move the app over, remove the old one. Unset: the server API refuses every request.",
    },
    Setting {
        key: "webhook_url",
        default: "",
        doc: "`https://app.example.com/api/confab-webhook`: where confab POSTs webhook events (`message.created` for members who are away, `conversation.created`, `member.added`, `member.removed`; docs/PROTOCOL.md, \"Webhooks\"). Needs `webhook_secret`. Unset: no events are recorded or sent.",
    },
    Setting {
        key: "webhook_secret",
        default: "",
        doc: "The secret (at least 16 characters) that signs each webhook request: `Confab-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">`, which the receiver checks.",
    },
    Setting {
        key: "webhook_all_messages",
        default: "false",
        doc: "`true`: `message.created` for every message. `false`: only for messages with a recipient who has no socket anywhere in the cluster.",
    },
    Setting {
        key: "webhook_retry_hours",
        default: "72",
        doc: "How long an event whose delivery fails (network error, non-2xx answer) is retried, with exponential backoff, before it is given up (kept in the outbox, marked failed, counted in `confab_webhook_failures_total`).",
    },
    Setting {
        key: "webhook_backoff_ms",
        default: "1000",
        doc: "The wait before a failed webhook's first retry; each next wait doubles, up to an hour.",
    },
    Setting {
        key: "webhook_timeout_ms",
        default: "10000",
        doc: "How long one webhook request may take before it counts as failed.",
    },
    // Attachments.
    Setting {
        key: "attachments_url",
        default: "",
        doc: "Where uploaded files are kept. Unset: the directory `DATA_DIR/attachments` (one node, or nodes sharing that directory). `s3://BUCKET/PREFIX` for S3-compatible object storage, with the usual `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and (for other S3-compatible servers) `AWS_ENDPOINT` variables.",
    },
    Setting {
        key: "max_attachment_bytes",
        default: "10485760",
        doc: "Largest file accepted by `POST /api/attachments`, in bytes (10 MiB). Counted as the upload streams to storage: a larger one is refused as soon as it passes this, and nothing of it is kept.",
    },
    Setting {
        key: "rate_upload",
        default: "1/10",
        doc: "Per-user token bucket for `POST /api/attachments`: rate per second / burst (ten files dropped at once, then one a second).",
    },
    Setting {
        key: "attachment_link_ttl_secs",
        default: "600",
        doc: "How long a signed download link (`GET /api/attachments/{id}/link`) lasts: between this and twice this (links made within one period are the same URL, so browsers cache the file).",
    },
    Setting {
        key: "attachments_signing_key",
        default: "",
        doc: "Secret that signs download links, shared by every node of a cluster. Unset: derived from `jwt_secret`; with a public key and no secret, a random key per process (links then work only on the node that made them).",
    },
    Setting {
        key: "unsent_attachment_ttl_secs",
        default: "86400",
        doc: "How long an upload no message has claimed is kept before it is deleted.",
    },
    Setting {
        key: "attachment_sweep_secs",
        default: "60",
        doc: "How often the bytes of deleted attachments (unsent too long, or their message deleted) are removed from storage. A delete also starts a sweep at once.",
    },
    // Search.
    Setting {
        key: "search_language",
        default: "simple",
        doc: "PostgreSQL text search configuration for `message:search` (`SELECT cfgname FROM pg_ts_config` lists them). `simple` (lower-cased words, no stemming) works for every language; `english`, `french`, … add stemming (\"deploys\" finds \"deployed\") and stop words for one language, with an index of their own built on the first start with them. SQLite's index (FTS5, `unicode61`) is the same for every language.",
    },
];

/// Where attachments are kept and their limits (see the settings of the same names).
#[derive(Debug, Clone)]
pub struct AttachmentConfig {
    /// `None`: `DATA_DIR/attachments`.
    pub url: Option<String>,
    pub max_bytes: u64,
    pub link_ttl_secs: u64,
    pub signing_key: Option<String>,
    pub unsent_ttl: Duration,
    pub sweep_every: Duration,
    /// With an `s3://` URL: the AWS variables that are set, by name.
    pub aws: Vec<(String, String)>,
}

/// The AWS variables read for S3 storage (the names the AWS tools use).
const AWS_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
];

/// The parsed configuration.
#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Whether `database_url` was configured (rather than derived from `data_dir`): a
    /// configured SQLite path must exist up to its directory, a typo must not start empty.
    pub database_url_configured: bool,
    pub database_max_connections: u32,
    pub redis_url: Option<String>,
    /// `redis_url` is a Redis Cluster (its seed nodes).
    pub redis_cluster: bool,
    pub redis_prefix: String,
    pub node_timeout: Duration,
    pub jwt: JwtKeys,
    /// Whether `POST /api/dev/token` exists (see the `dev_login` setting).
    pub dev_login: bool,
    pub cors_origins: Vec<String>,
    /// Host names accepted besides IP addresses and `localhost` when the host check is on.
    pub allowed_hosts: Vec<String>,
    /// Whose `X-Forwarded-For` names the client, for the per-address connect limit.
    pub trusted_proxies: TrustedProxies,
    pub limits: Limits,
    pub write_batch_max: usize,
    pub write_shards: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `permessage-deflate` on WebSockets, and the size from which messages are compressed.
    pub ws_compression: bool,
    pub ws_compression_threshold: usize,
    pub shutdown_grace: Duration,
    pub typing_ttl: Duration,
    pub presence_grace: Duration,
    pub session_warning: Duration,
    pub rates: RateLimits,
    pub sessions: SessionLimits,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Keys of the host app's server, for the server API.
    pub server_api_keys: Vec<String>,
    /// Where and how to send webhooks, when configured.
    pub webhooks: Option<crate::chat::webhooks::WebhookSettings>,
    pub attachments: AttachmentConfig,
    pub search_language: String,
    /// Things worth telling the operator that don't stop the start (a misspelled variable, an
    /// open sign-in on a public address). Logged once logging is up.
    pub warnings: Vec<String>,
    /// Every setting's effective value and where it came from, for `confab config`.
    pub effective: Vec<Effective>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    Env,
}

/// One setting as it is in effect, for `confab config`. Secrets and URL passwords are masked.
#[derive(Debug, Clone)]
pub struct Effective {
    pub key: &'static str,
    pub env_name: String,
    pub value: Option<String>,
    pub origin: Origin,
}

impl Config {
    /// Reads the configuration from the process environment and the optional file.
    pub fn from_env(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CONFAB_CONFIG").map(PathBuf::from));
        let mut config = Self::load(file.as_deref(), |name| std::env::var(name).ok())?;
        let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
        config.warnings.extend(unknown_variables(names));
        Ok(config)
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
        let configured_url = src.get("database_url")?;
        let database_url_configured = configured_url.is_some();
        let database_url = configured_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("confab.db").display()));
        let public_key_pem = src
            .get("jwt_public_key")?
            .map(|v| -> anyhow::Result<String> {
                let pem = if v.trim_start().starts_with("-----BEGIN") {
                    v
                } else {
                    std::fs::read_to_string(&v)
                        .with_context(|| format!("CONFAB_JWT_PUBLIC_KEY: reading {v}"))?
                };
                check_public_pem(&pem)?;
                Ok(pem)
            })
            .transpose()?;
        let dev_login = src
            .get("dev_login")?
            .map(|v| {
                v.trim().parse::<bool>().map_err(|_| {
                    anyhow::anyhow!(
                        "CONFAB_DEV_LOGIN: invalid value {v:?}: expected `true` or `false`"
                    )
                })
            })
            .transpose()?;
        let mut config = Self {
            bind: resolve_bind(&src.parse::<String>("bind")?)?,
            database_max_connections: src.parse("database_max_connections")?,
            redis_url: src.get("redis_url")?,
            redis_cluster: src.parse("redis_cluster")?,
            redis_prefix: src.parse("redis_prefix")?,
            node_timeout: Duration::from_secs(src.parse("node_timeout_secs")?),
            jwt: JwtKeys {
                secret: src.get("jwt_secret")?,
                public_key_pem,
                audience: src.get("jwt_audience")?,
                issuer: src.get("jwt_issuer")?,
            },
            dev_login: false,
            cors_origins: list(src.get("cors_origins")?)
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            allowed_hosts: list(src.get("allowed_hosts")?)
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            trusted_proxies: TrustedProxies::parse(
                &src.get("trusted_proxies")?.unwrap_or_default(),
            )
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
            ws_compression: src.parse("ws_compression")?,
            ws_compression_threshold: src.parse("ws_compression_threshold_bytes")?,
            shutdown_grace: Duration::from_millis(src.parse("shutdown_grace_ms")?),
            typing_ttl: Duration::from_millis(src.parse("typing_ttl_ms")?),
            presence_grace: Duration::from_millis(src.parse("presence_grace_ms")?),
            session_warning: Duration::from_secs(src.parse("session_warning_secs")?),
            rates: RateLimits {
                send: src.parse("rate_send")?,
                typing: src.parse("rate_typing")?,
                other: src.parse("rate_other")?,
                members: src.parse("rate_members")?,
                connect_per_ip: src.parse("rate_connect_per_ip")?,
                max_sockets_per_user: src.parse("max_sockets_per_user")?,
                upload: src.parse("rate_upload")?,
            },
            sessions: SessionLimits {
                rate_per_ip: src.parse("rate_session_per_ip")?,
                max_unauthenticated_per_ip: src.parse_positive("max_unauthenticated_per_ip")?,
                max_unauthenticated: src.parse_positive("max_unauthenticated")?,
                connect_timeout: Duration::from_millis(src.parse_positive("connect_timeout_ms")?),
            },
            log_filter: src.parse("log")?,
            log_format: src.parse("log_format")?,
            server_api_keys: server_api_keys(src.get("server_api_keys")?)?,
            webhooks: webhooks(&src)?,
            attachments: AttachmentConfig {
                url: src.get("attachments_url")?,
                max_bytes: src.parse_positive("max_attachment_bytes")?,
                link_ttl_secs: src.parse_positive("attachment_link_ttl_secs")?,
                signing_key: src.get("attachments_signing_key")?,
                unsent_ttl: Duration::from_secs(src.parse_positive("unsent_attachment_ttl_secs")?),
                sweep_every: Duration::from_secs(src.parse_positive("attachment_sweep_secs")?),
                aws: AWS_VARIABLES
                    .iter()
                    .filter_map(|name| env(name).map(|v| ((*name).to_owned(), v)))
                    // `AWS_DEFAULT_REGION` is what the AWS CLI reads; object_store, `AWS_REGION`.
                    .map(|(name, v)| match name.as_str() {
                        "AWS_DEFAULT_REGION" => ("AWS_REGION".to_owned(), v),
                        _ => (name, v),
                    })
                    .collect(),
            },
            search_language: src.parse("search_language")?,
            data_dir,
            database_url,
            database_url_configured,
            warnings: Vec::new(),
            effective: Vec::new(),
        };
        src.check_all_read();
        config.effective = src.effective();
        config.dev_login = dev_login.unwrap_or_else(|| config.local_mode());
        if config.dev_login && !config.local_mode() && config.jwt.secret.is_none() {
            bail!("CONFAB_DEV_LOGIN needs an HS256 secret (CONFAB_JWT_SECRET) to sign tokens with");
        }
        config.check_exposure(dev_login.is_some())?;
        if config.limits.max_group_members < 2 {
            bail!("CONFAB_MAX_GROUP_MEMBERS must be at least 2");
        }
        let members_burst = config.rates.members.burst as usize;
        let largest_request =
            (config.limits.max_group_members - 1).min(crate::protocol::requests::MAX_USER_IDS);
        if members_burst < largest_request {
            bail!(
                "CONFAB_RATE_MEMBERS: a burst of {members_burst} can't admit the largest membership request: it must be at least {largest_request} (the most users one request names, or CONFAB_MAX_GROUP_MEMBERS - 1 when that is less)"
            );
        }
        if config.write_batch_max == 0 {
            bail!("CONFAB_WRITE_BATCH_MAX must be at least 1");
        }
        if config.write_shards == 0 {
            bail!("CONFAB_WRITE_SHARDS must be at least 1");
        }
        config.check_redis()?;
        Ok(config)
    }

    /// Several Redis URLs only make sense as a cluster's seeds, and a hash tag in the prefix
    /// would put every channel of a cluster on one shard.
    fn check_redis(&self) -> anyhow::Result<()> {
        let Some(url) = &self.redis_url else {
            if self.redis_cluster {
                bail!(
                    "CONFAB_REDIS_CLUSTER=true needs CONFAB_REDIS_URL (the cluster's seed nodes)"
                );
            }
            return Ok(());
        };
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        if urls.len() > 1 && !self.redis_cluster {
            bail!(
                "CONFAB_REDIS_URL lists {} URLs: several are the seed nodes of a Redis Cluster; set CONFAB_REDIS_CLUSTER=true (or give one URL)",
                urls.len()
            );
        }
        if self.redis_cluster && self.redis_prefix.contains(['{', '}']) {
            bail!(
                "CONFAB_REDIS_PREFIX {:?}: with CONFAB_REDIS_CLUSTER it may not contain `{{` or `}}` (a hash tag would put every channel in one slot, on one shard)",
                self.redis_prefix
            );
        }
        Ok(())
    }

    /// True when no key was configured, so confab runs with a secret of its own.
    pub fn local_mode(&self) -> bool {
        self.jwt.secret.is_none() && self.jwt.public_key_pem.is_none()
    }

    /// Whether requests must name this server by an address a DNS-rebinding page can't use:
    /// in local mode or with dev login, a page that rebinds its own name to this server would
    /// otherwise be same-origin with it, and could sign in as anyone.
    pub fn checks_host(&self) -> bool {
        self.local_mode() || self.dev_login
    }

    /// Local mode and dev login let anyone who reaches the server act as anyone: fine on
    /// loopback, an explicit choice anywhere else (`dev_login` set, either way).
    fn check_exposure(&mut self, dev_login_explicit: bool) -> anyhow::Result<()> {
        if self.bind.ip().is_loopback() {
            return Ok(());
        }
        let bind = self.bind;
        if self.local_mode() && !dev_login_explicit {
            bail!(
                "CONFAB_BIND={bind} is not a loopback address, and no JWT key is configured (local mode), \
                 which lets anyone who can reach it sign in as anyone. Set CONFAB_JWT_SECRET (or \
                 CONFAB_JWT_PUBLIC_KEY) to the key your app signs tokens with; if CONFAB_JWT_SECRET is \
                 set in your shell, check it isn't empty. For a demo open to everyone, set \
                 CONFAB_DEV_LOGIN=true explicitly."
            );
        }
        if self.dev_login {
            self.warnings.push(format!(
                "dev login is on and the server listens on {bind}: anyone who can reach it can sign in as anyone"
            ));
        } else if self.local_mode() {
            self.warnings.push(format!(
                "local mode on {bind}: only tokens from `confab token` (signed with the generated secret) are accepted"
            ));
        }
        Ok(())
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
        let secret = match self.read_local_secret()? {
            Some(secret) => secret,
            None => {
                let secret = hex::encode(rand::random::<[u8; 32]>());
                write_private(&path, &secret)
                    .with_context(|| format!("writing {}", path.display()))?;
                secret
            }
        };
        self.jwt.secret = Some(secret);
        Ok(())
    }

    /// The secret a local-mode server generated, if it is there. `confab token` uses this and
    /// never creates one: a token signed with a secret no server knows would only be refused.
    pub fn read_local_secret(&self) -> anyhow::Result<Option<String>> {
        let path = self.local_secret_path();
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Where local mode keeps its generated secret.
    pub fn local_secret_path(&self) -> PathBuf {
        self.data_dir.join("jwt-secret")
    }
}

/// Splits a comma-separated setting, dropping empty entries.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The server API's keys: a list where an empty entry (`key1,,key2`, a trailing comma, or a
/// variable expanded to nothing) is refused rather than dropped, since it most likely means a key
/// that was meant to be there is missing; short keys are refused as guessable.
fn server_api_keys(value: Option<String>) -> anyhow::Result<Vec<String>> {
    const MIN_CHARS: usize = 16;
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .enumerate()
        .map(|(i, key)| {
            let key = key.trim();
            if key.is_empty() {
                bail!(
                    "CONFAB_SERVER_API_KEYS: key {} of the list is empty (a stray comma, or a variable that expanded to nothing?)",
                    i + 1
                );
            }
            if key.chars().count() < MIN_CHARS {
                bail!(
                    "CONFAB_SERVER_API_KEYS: key {} is shorter than {MIN_CHARS} characters; generate one with `openssl rand -hex 32`",
                    i + 1
                );
            }
            Ok(key.to_owned())
        })
        .collect()
}

/// The webhook settings: all or nothing (a URL without a secret would send unsigned events).
fn webhooks(src: &Sources<'_>) -> anyhow::Result<Option<crate::chat::webhooks::WebhookSettings>> {
    let url = src.get("webhook_url")?;
    let secret = src.get("webhook_secret")?;
    let all_messages: bool = src.parse("webhook_all_messages")?;
    let retry_hours: u64 = src.parse_positive("webhook_retry_hours")?;
    let backoff_ms: u64 = src.parse_positive("webhook_backoff_ms")?;
    let timeout_ms: u64 = src.parse_positive("webhook_timeout_ms")?;
    let (url, secret) = match (url, secret) {
        (None, None) => return Ok(None),
        (Some(_), None) => bail!(
            "CONFAB_WEBHOOK_URL needs CONFAB_WEBHOOK_SECRET, to sign the events with (generate one with `openssl rand -hex 32`)"
        ),
        (None, Some(_)) => bail!("CONFAB_WEBHOOK_SECRET is set without CONFAB_WEBHOOK_URL"),
        (Some(url), Some(secret)) => (url, secret),
    };
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| anyhow::anyhow!("CONFAB_WEBHOOK_URL: invalid value {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        bail!("CONFAB_WEBHOOK_URL: invalid value {url:?}: expected an http:// or https:// URL");
    }
    if secret.chars().count() < 16 {
        bail!("CONFAB_WEBHOOK_SECRET must be at least 16 characters long");
    }
    Ok(Some(crate::chat::webhooks::WebhookSettings {
        url: parsed.to_string(),
        secret,
        all_messages,
        retry_for: Duration::from_secs(retry_hours * 3600),
        backoff: Duration::from_millis(backoff_ms),
        timeout: Duration::from_millis(timeout_ms),
    }))
}

/// `bind` as an address: `IP:PORT`, or `HOST:PORT` resolved now (the first address found,
/// IPv4 first, as `localhost` is usually meant).
fn resolve_bind(raw: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = raw.parse() {
        return Ok(addr);
    }
    let invalid = || {
        anyhow::anyhow!(
            "CONFAB_BIND: invalid value {raw:?}: expected ADDRESS:PORT, like 127.0.0.1:3001, [::1]:3001 or localhost:3001"
        )
    };
    let (_, port) = raw.rsplit_once(':').ok_or_else(invalid)?;
    port.parse::<u16>().map_err(|_| invalid())?;
    let mut addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(raw)
        .with_context(|| format!("CONFAB_BIND: can't resolve {raw:?}"))?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs
        .into_iter()
        .next()
        .with_context(|| format!("CONFAB_BIND: {raw:?} resolves to no address"))
}

/// A private key where the public one belongs would be accepted by the PEM parser and then
/// refuse every token, with nothing saying why.
fn check_public_pem(pem: &str) -> anyhow::Result<()> {
    if pem.contains("PRIVATE KEY-----") {
        bail!(
            "CONFAB_JWT_PUBLIC_KEY holds a private key. confab needs only the public key: \
             derive it with `openssl pkey -in private.pem -pubout -out public.pem`, and keep the \
             private key with the app that signs tokens"
        );
    }
    if pem.contains("BEGIN CERTIFICATE") {
        bail!(
            "CONFAB_JWT_PUBLIC_KEY holds a certificate; give the public key itself \
             (`openssl x509 -in cert.pem -pubkey -noout`)"
        );
    }
    Ok(())
}

/// `CONFAB_*` variables that are no setting: most likely misspelled, and silently ignored
/// otherwise. Each comes with the closest setting's name.
fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    let known: Vec<String> = SETTINGS.iter().map(Setting::env_name).collect();
    names
        .filter(|n| n.starts_with("CONFAB_") && n != "CONFAB_CONFIG" && !known.contains(n))
        .map(|name| {
            let closest = known
                .iter()
                .min_by_key(|k| edit_distance(k, &name))
                .filter(|k| edit_distance(k, &name) <= 3);
            match closest {
                Some(k) => format!("{name} is not a confab setting (did you mean {k}?); ignored"),
                None => {
                    format!("{name} is not a confab setting; ignored (`confab config` lists them)")
                }
            }
        })
        .collect()
}

/// Levenshtein distance, for "did you mean": the names are short, so the plain table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
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

/// Looks settings up by key and remembers which were read, and from where, so a setting in the
/// table that the code forgets to read is caught by tests, and `confab config` can say where
/// each value came from.
struct Sources<'a> {
    file: BTreeMap<String, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    read: Mutex<BTreeMap<&'static str, (Option<String>, Origin)>>,
}

/// Settings whose values are secrets or may hold one (a password in a URL).
const SENSITIVE: &[&str] = &[
    "jwt_secret",
    "database_url",
    "redis_url",
    "server_api_keys",
    "webhook_secret",
    "webhook_url",
    "attachments_signing_key",
];

impl Sources<'_> {
    fn setting(&self, key: &str) -> &'static Setting {
        SETTINGS
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("setting `{key}` is missing from SETTINGS"))
    }

    /// The value of `key`, or `None` when unset and without a default.
    ///
    /// A variable (or file key) that is set but empty is an error, not "unset": it is how
    /// `CONFAB_JWT_SECRET="$AUTH_SECRET"` looks when `AUTH_SECRET` is missing, and taking it
    /// for unset would quietly give local mode, SQLite or a single node instead.
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let setting = self.setting(key);
        let (value, origin) = match (self.env)(&setting.env_name()) {
            Some(v) => (Some(v), Origin::Env),
            None => match self.file.get(key) {
                Some(v) => (Some(v.clone()), Origin::File),
                None => (
                    Some(setting.default.to_owned()).filter(|d| !d.is_empty()),
                    Origin::Default,
                ),
            },
        };
        if origin != Origin::Default && value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            let place = match origin {
                Origin::Env => setting.env_name(),
                _ => format!("`{key}` in the config file"),
            };
            bail!(
                "{place} is set but empty. Unset it to use the default{}, or give it a value",
                if setting.default.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", setting.default)
                }
            );
        }
        self.read
            .lock()
            .unwrap()
            .insert(setting.key, (value.clone(), origin));
        Ok(value)
    }

    fn parse<T: FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let setting = self.setting(key);
        let raw = self
            .get(key)?
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
            debug_assert!(
                read.contains_key(s.key),
                "setting `{}` is never read",
                s.key
            );
        }
    }

    /// Every setting as read, in table order, with secrets masked.
    fn effective(&self) -> Vec<Effective> {
        let read = self.read.lock().unwrap();
        SETTINGS
            .iter()
            .map(|s| {
                let (value, origin) = read.get(s.key).cloned().unwrap_or((None, Origin::Default));
                let value = value.map(|v| match s.key {
                    "jwt_secret" | "webhook_secret" | "attachments_signing_key" => {
                        format!("(set, {} bytes)", v.len())
                    }
                    "server_api_keys" => format!("(set, {} keys)", v.split(',').count()),
                    k if SENSITIVE.contains(&k) => mask_password(&v),
                    _ => v,
                });
                Effective {
                    key: s.key,
                    env_name: s.env_name(),
                    value,
                    origin,
                }
            })
            .collect()
    }
}

/// `scheme://user:password@host/…` with the password replaced by `***`; each of a
/// comma-separated list of URLs (a Redis Cluster's seeds).
fn mask_password(url: &str) -> String {
    if url.contains(',') {
        return url
            .split(',')
            .map(mask_password)
            .collect::<Vec<_>>()
            .join(",");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The effective settings as a table for people: `confab config`.
pub fn effective_table(config: &Config) -> String {
    let mut out = String::from("# effective settings (confab config --reference describes each)\n");
    for e in &config.effective {
        let origin = match e.origin {
            Origin::Default => "default",
            Origin::File => "file",
            Origin::Env => "env",
        };
        let value = e.value.as_deref().unwrap_or("(unset)");
        out.push_str(&format!("{:<28} {:<8} {value}\n", e.env_name, origin));
    }
    out
}

/// The configuration reference as Markdown, generated from [`SETTINGS`].
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated by `confab config --reference` from the settings table in `src/config.rs`; a test keeps this \
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
            ("CONFAB_JWT_SECRET", "a-secret-of-sixteen-bytes"),
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
    fn a_variable_set_but_empty_is_an_error_not_a_default() {
        // `CONFAB_JWT_SECRET="$AUTH_SECRET"` with AUTH_SECRET unset.
        let err = load(&[("CONFAB_JWT_SECRET", "")]).err().unwrap();
        assert!(
            err.to_string()
                .contains("CONFAB_JWT_SECRET is set but empty"),
            "{err}"
        );
        for var in [
            "CONFAB_DATABASE_URL",
            "CONFAB_REDIS_URL",
            "CONFAB_JWT_AUDIENCE",
            "CONFAB_BIND",
        ] {
            let err = load(&[(var, " ")]).err().unwrap();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn an_open_sign_in_on_a_public_address_must_be_asked_for() {
        // Local mode (which turns dev login on) on every interface: refused, saying what to do.
        let err = load(&[("CONFAB_BIND", "0.0.0.0:3001")]).err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("CONFAB_JWT_SECRET") && text.contains("CONFAB_DEV_LOGIN=true"),
            "{text}"
        );
        // Asked for explicitly: allowed, with a warning.
        let c = load(&[
            ("CONFAB_BIND", "0.0.0.0:3001"),
            ("CONFAB_DEV_LOGIN", "true"),
        ])
        .unwrap();
        assert!(c.dev_login && c.checks_host());
        assert!(
            c.warnings.iter().any(|w| w.contains("sign in as anyone")),
            "{:?}",
            c.warnings
        );
        // A key configured: no sign-in to open, no host check.
        let c = load(&[
            ("CONFAB_BIND", "0.0.0.0:3001"),
            ("CONFAB_JWT_SECRET", "a-secret-of-sixteen-bytes"),
        ])
        .unwrap();
        assert!(!c.dev_login && !c.checks_host() && c.warnings.is_empty());
        // Loopback needs nothing.
        assert!(
            load(&[("CONFAB_BIND", "[::1]:3001")])
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn bind_takes_host_names() {
        let c = load(&[("CONFAB_BIND", "localhost:3005")]).unwrap();
        assert!(c.bind.ip().is_loopback(), "{}", c.bind);
        assert_eq!(c.bind.port(), 3005);
        let err = load(&[("CONFAB_BIND", "localhost")]).err().unwrap();
        assert!(err.to_string().contains("ADDRESS:PORT"), "{err}");
    }

    #[test]
    fn a_private_key_is_not_a_public_key() {
        for pem in [
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----",
        ] {
            let err = load(&[("CONFAB_JWT_PUBLIC_KEY", pem)]).err().unwrap();
            assert!(err.to_string().contains("private key"), "{err}");
        }
    }

    #[test]
    fn misspelled_variables_are_named_with_a_suggestion() {
        let names = [
            "CONFAB_JWT_SECERT",
            "CONFAB_CONFIG",
            "CONFAB_BIND",
            "CONFAB_ZZZZZZZZZZZZ",
            "HOME",
        ];
        let warnings = unknown_variables(names.iter().map(|n| n.to_string()));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("did you mean CONFAB_JWT_SECRET?"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("CONFAB_ZZZZZZZZZZZZ is not a confab setting"));
    }

    #[test]
    fn the_members_budget_must_hold_the_largest_request() {
        let err = load(&[("CONFAB_RATE_MEMBERS", "10/50")]).err().unwrap();
        assert!(err.to_string().contains("CONFAB_RATE_MEMBERS"), "{err}");
        assert!(
            load(&[
                ("CONFAB_RATE_MEMBERS", "10/50"),
                ("CONFAB_MAX_GROUP_MEMBERS", "51")
            ])
            .is_ok()
        );
    }

    #[test]
    fn effective_settings_say_where_they_come_from_and_hide_secrets() {
        let c = load(&[
            ("CONFAB_JWT_SECRET", "a-secret-of-sixteen-bytes"),
            ("CONFAB_DATABASE_URL", "postgres://app:hunter2@db:5432/chat"),
        ])
        .unwrap();
        let table = effective_table(&c);
        assert!(
            !table.contains("hunter2") && !table.contains("a-secret-of"),
            "{table}"
        );
        assert!(table.contains("postgres://app:***@db:5432/chat"), "{table}");
        assert!(table.contains("(set, 25 bytes)"), "{table}");
        let bind = c.effective.iter().find(|e| e.key == "bind").unwrap();
        assert_eq!(
            (bind.origin, bind.value.as_deref()),
            (Origin::Default, Some("127.0.0.1:3001"))
        );
        assert_eq!(mask_password("redis://:pw@r:6379"), "redis://:***@r:6379");
        assert_eq!(
            mask_password("redis://:pw@r1:6379,redis://u:pw@r2:6379"),
            "redis://:***@r1:6379,redis://u:***@r2:6379"
        );
        assert_eq!(mask_password("sqlite://./x.db"), "sqlite://./x.db");
    }

    #[test]
    fn a_redis_cluster_is_asked_for_explicitly_with_its_seeds() {
        let seeds = "redis://10.0.0.1:6379, redis://10.0.0.2:6379";
        let c = load(&[
            ("CONFAB_REDIS_URL", seeds),
            ("CONFAB_REDIS_CLUSTER", "true"),
        ])
        .unwrap();
        assert!(c.redis_cluster);
        assert!(!load(&[]).unwrap().redis_cluster, "one Redis by default");
        let several = load(&[("CONFAB_REDIS_URL", seeds)]).err().unwrap();
        assert!(
            several.to_string().contains("CONFAB_REDIS_CLUSTER=true"),
            "{several}"
        );
        let alone = load(&[("CONFAB_REDIS_CLUSTER", "true")]).err().unwrap();
        assert!(alone.to_string().contains("CONFAB_REDIS_URL"), "{alone}");
        let tagged = load(&[
            ("CONFAB_REDIS_URL", "redis://10.0.0.1:6379"),
            ("CONFAB_REDIS_CLUSTER", "true"),
            ("CONFAB_REDIS_PREFIX", "{chat}"),
        ])
        .err()
        .unwrap();
        assert!(tagged.to_string().contains("one slot"), "{tagged}");
        // One Redis may have any prefix, as before.
        load(&[
            ("CONFAB_REDIS_URL", "redis://10.0.0.1:6379"),
            ("CONFAB_REDIS_PREFIX", "{chat}"),
        ])
        .unwrap();
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
    fn server_api_keys_are_checked_and_hidden() {
        let c = load(&[(
            "CONFAB_SERVER_API_KEYS",
            "key-one-0123456789, key-two-0123456789",
        )])
        .unwrap();
        assert_eq!(
            c.server_api_keys,
            ["key-one-0123456789", "key-two-0123456789"]
        );
        assert!(effective_table(&c).contains("(set, 2 keys)"));
        assert!(!effective_table(&c).contains("key-one"));
        for bad in [
            "key-one-0123456789,,key-two-0123456789",
            "key-one-0123456789,",
        ] {
            let err = load(&[("CONFAB_SERVER_API_KEYS", bad)]).err().unwrap();
            assert!(err.to_string().contains("is empty"), "{err}");
        }
        let err = load(&[("CONFAB_SERVER_API_KEYS", "short")]).err().unwrap();
        assert!(err.to_string().contains("shorter than 16"), "{err}");
        assert!(load(&[]).unwrap().server_api_keys.is_empty());
    }

    #[test]
    fn webhooks_need_a_url_and_a_secret() {
        let url = ("CONFAB_WEBHOOK_URL", "https://app.example/hooks");
        let secret = ("CONFAB_WEBHOOK_SECRET", "whsec-0123456789abcdef");
        assert!(load(&[]).unwrap().webhooks.is_none());
        let c = load(&[url, secret]).unwrap();
        let w = c.webhooks.as_ref().unwrap();
        assert_eq!(w.retry_for, Duration::from_secs(72 * 3600));
        assert!(!effective_table(&c).contains("whsec"));
        for (vars, says) in [
            (vec![url], "needs CONFAB_WEBHOOK_SECRET"),
            (vec![secret], "without CONFAB_WEBHOOK_URL"),
            (vec![("CONFAB_WEBHOOK_URL", "ftp://x/y"), secret], "http"),
            (
                vec![("CONFAB_WEBHOOK_URL", "not a url"), secret],
                "CONFAB_WEBHOOK_URL",
            ),
            (vec![url, ("CONFAB_WEBHOOK_SECRET", "short")], "16"),
            (
                vec![url, secret, ("CONFAB_WEBHOOK_RETRY_HOURS", "0")],
                "at least 1",
            ),
        ] {
            let err = load(&vars).err().unwrap().to_string();
            assert!(err.contains(says), "{err}");
        }
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
            "docs/CONFIGURATION.md is out of date: run `cargo run -- config --reference > docs/CONFIGURATION.md`"
        );
    }
}
