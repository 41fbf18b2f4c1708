//! Wiring: from a configuration to a running server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use confab_sio::SocketIo;
use tokio::net::{TcpListener, TcpSocket};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::attachments::{Blobs, Links};
use crate::auth::{ServerKeys, Verifier};
use crate::bus::Bus;
use crate::chat::{AttachmentSettings, Chat, ChatSettings};
use crate::config::Config;
use crate::http::{AppState, DevLogin, OriginPolicy};
use crate::hub::Hub;
use crate::limits::Limiter;
use crate::realtime::{Realtime, Sessions, SioHandler};
use crate::store::{Store, Writer};

/// How long shutdown waits for sends in flight to be committed.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    sio: SocketIo<SioHandler>,
    local_addr: SocketAddr,
    chat: Chat,
    writer: Writer,
    shutting_down: Arc<AtomicBool>,
    shutdown_grace: Duration,
}

impl Application {
    /// Connects to the database (migrating it), binds the listener and assembles the routes.
    /// Binding happens here, so `port()` is known before serving (tests bind port 0).
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        // The port first: if it is taken, say so before anything is created on disk.
        let listener = listen(config.bind)?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        if !config.database_url_configured {
            // The default database lives in the data directory.
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating data directory {}", config.data_dir.display())
            })?;
        }
        config.ensure_jwt_secret()?;
        // Installed before anything records, so no early sample is lost.
        crate::telemetry::metrics();
        let verifier = Arc::new(Verifier::new(&config.jwt).context("loading JWT keys")?);
        let mut store = Store::connect(
            &config.database_url,
            config.database_max_connections,
            &config.search_language,
        )
        .await?;
        // Webhooks: the transactions record events in the outbox and wake the sender.
        let outbox_written = Arc::new(tokio::sync::Notify::new());
        if config.webhooks.is_some() {
            store.enable_outbox(outbox_written.clone());
        }
        // SQLite has one writer anyway; PostgreSQL commits batches for different conversations
        // in parallel, which overlaps one batch's fsync with the next batch's work.
        let shards = match store {
            Store::Postgres(_) => config.write_shards,
            Store::Sqlite(_) => 1,
        };
        let writer = Writer::start(store.clone(), shards, config.write_batch_max);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let redis_configured = config.redis_url.is_some();
        // With Redis this node joins a cluster; without, it runs alone.
        let (hub, cluster_presence) = match &config.redis_url {
            Some(url) => {
                if matches!(store, Store::Sqlite(_)) {
                    tracing::warn!(
                        "a cluster on SQLite: every node must open the same file, on one machine"
                    );
                }
                let (bus, signals) =
                    Bus::start(url, config.redis_cluster, &config.redis_prefix).await?;
                let presence = bus.presence(config.node_timeout);
                (Hub::new(Some((bus, signals))), Some(presence))
            }
            None => (Hub::new(None), None),
        };
        let attachments = attachment_settings(&config, redis_configured)?;
        let chat = Chat::new(
            store.clone(),
            writer.clone(),
            hub,
            ChatSettings {
                limits: config.limits.clone(),
                typing_ttl: config.typing_ttl,
                presence_grace: config.presence_grace,
                cluster_presence,
                attachments,
            },
        );
        if let Some(webhooks) = config.webhooks.clone() {
            chat.start_webhooks(
                webhooks,
                config.presence_grace,
                outbox_written,
                shutting_down.clone(),
            )
            .context("starting the webhook sender")?;
        }
        let limiter = Limiter::new(&config.rates);
        let realtime = Realtime::new(
            chat.clone(),
            verifier.clone(),
            limiter.clone(),
            Sessions::new(config.session_warning),
            shutting_down.clone(),
        );
        let policy = OriginPolicy::new(
            config.cors_origins.clone(),
            config.checks_host().then(|| config.allowed_hosts.clone()),
        );
        let sio = SocketIo::new(
            confab_sio::Config {
                max_payload: config.limits.max_payload_bytes,
                // confab refuses binary attachments: buffer no more of them than of one message.
                max_attachments_size: config.limits.max_payload_bytes,
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
                connect_timeout: config.sessions.connect_timeout,
                per_message_deflate: config.ws_compression,
                deflate_threshold: config.ws_compression_threshold,
                ..confab_sio::Config::default()
            },
            SioHandler::new(
                realtime,
                policy.clone(),
                config.trusted_proxies.clone(),
                &config.sessions,
            ),
        );

        // The secret is there: generated in local mode, and required by `Config` otherwise.
        let dev_login = config
            .dev_login
            .then(|| config.jwt.secret.as_deref().map(DevLogin::new))
            .flatten();
        let router = crate::http::routes(
            AppState {
                chat: chat.clone(),
                verifier,
                limiter,
                shutting_down: shutting_down.clone(),
                server_keys: Arc::new(ServerKeys::new(&config.server_api_keys)),
            },
            dev_login,
        )
        .layer(DefaultBodyLimit::max(config.limits.max_payload_bytes))
        .layer(cors(&policy))
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::http::origin_guard,
        ));

        Ok(Self {
            listener,
            router,
            sio,
            local_addr,
            chat,
            writer,
            shutting_down,
            shutdown_grace: config.shutdown_grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Which database backs this server (`postgres`, `sqlite`).
    pub fn backend(&self) -> &'static str {
        self.chat.backend()
    }

    /// This node's bus counters, in a cluster.
    pub fn bus_stats(&self) -> Option<Arc<crate::bus::BusStats>> {
        self.chat.bus_stats()
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes.
    ///
    /// Winding down: readiness fails and new sockets are refused, connected clients are told
    /// `server:shutdown` (so they reconnect elsewhere), sends in flight are committed and
    /// acked, and finally every connection is closed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let chat = self.chat.clone();
        let writer = self.writer.clone();
        let shutting_down = self.shutting_down.clone();
        let grace = self.shutdown_grace;
        let wind_down = async move {
            shutdown.await;
            shutting_down.store(true, Ordering::Relaxed);
            let sockets = chat.announce_shutdown();
            tracing::info!(
                sockets,
                "shutting down: told the clients to reconnect elsewhere"
            );
            // Sends already on their way still arrive, are stored and acked; then the rest.
            tokio::time::sleep(grace).await;
            writer.drain(DRAIN_LIMIT).await;
            chat.retire().await;
        };
        // Stopped when serving ends (dropped on return).
        let _probe = crate::telemetry::runtime::probe();
        confab_sio::serve(self.listener, self.sio, self.router, wind_down)
            .await
            .context("serving")
    }
}

/// Where attachments are kept and how their links are signed.
fn attachment_settings(config: &Config, cluster: bool) -> anyhow::Result<AttachmentSettings> {
    let a = &config.attachments;
    let blobs = match a.url.as_deref() {
        None => Blobs::local(&config.data_dir.join("attachments"))?,
        Some(url) if url.starts_with("s3://") => {
            Blobs::s3(url, &a.aws).context("CONFAB_ATTACHMENTS_URL")?
        }
        Some(url) => match url.strip_prefix("file://") {
            Some(dir) => Blobs::local(std::path::Path::new(dir))?,
            None => anyhow::bail!(
                "CONFAB_ATTACHMENTS_URL: {url:?} is not supported: use s3://BUCKET/PREFIX or file:///DIR (or leave it unset for DATA_DIR/attachments)"
            ),
        },
    };
    let links = match (&a.signing_key, &config.jwt.secret) {
        (Some(key), _) => {
            if key.len() < 16 {
                anyhow::bail!("CONFAB_ATTACHMENTS_SIGNING_KEY must be at least 16 bytes");
            }
            Links::new(key.as_bytes(), a.link_ttl_secs)
        }
        (None, Some(secret)) => Links::derive(secret.as_bytes(), a.link_ttl_secs),
        (None, None) => {
            if cluster {
                tracing::warn!(
                    "no CONFAB_ATTACHMENTS_SIGNING_KEY (and no JWT secret to derive one from): download links made by this node work only on this node"
                );
            }
            Links::new(&rand::random::<[u8; 32]>(), a.link_ttl_secs)
        }
    };
    Ok(AttachmentSettings {
        blobs,
        links,
        max_bytes: a.max_bytes,
        unsent_ttl: a.unsent_ttl,
        sweep_every: a.sweep_every,
    })
}

/// Binds with a deep accept queue: a reconnect storm (a node restarting, a network blip) arrives
/// as thousands of connections at once, and the usual 128-entry backlog would drop most of them
/// into a one-second SYN retry.
fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    };
    bind().map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "{addr} is already in use (is another confab, or another server, running there?). \
                 Stop it, or pick another port: CONFAB_BIND={}:{}",
                if addr.is_ipv6() { format!("[{}]", addr.ip()) } else { addr.ip().to_string() },
                addr.port().wrapping_add(1).max(1024)
            ),
            std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
                "{addr}: ports below 1024 need privileges; use a higher port behind a reverse proxy"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "{addr} is not an address of this machine (CONFAB_BIND: use 0.0.0.0 for every interface)"
            ),
            _ => format!("binding {addr}: {e}"),
        };
        anyhow::anyhow!(hint)
    })
}

/// CORS headers for allowlisted origins (the origin guard has already refused the others).
fn cors(policy: &OriginPolicy) -> CorsLayer {
    let origins: Vec<HeaderValue> = policy
        .allowed_origins()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
