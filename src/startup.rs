//! Wiring: from a configuration to a running server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Verifier;
use crate::chat::{Chat, ChatSettings};
use crate::config::Config;
use crate::http::{AppState, DevLogin, OriginPolicy};
use crate::hub::Hub;
use crate::limits::Limiter;
use crate::realtime::{Realtime, Sessions};
use crate::store::{Store, Writer};

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    local_addr: SocketAddr,
    store: Store,
}

impl Application {
    /// Connects to the database (migrating it), binds the listener and assembles the routes.
    /// Binding happens here, so `port()` is known before serving (tests bind port 0).
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        config.ensure_jwt_secret()?;
        let verifier = Arc::new(Verifier::new(&config.jwt).context("loading JWT keys")?);
        let store = Store::connect(&config.database_url, config.database_max_connections).await?;
        // SQLite has one writer anyway; PostgreSQL commits batches for different conversations
        // in parallel, which overlaps one batch's fsync with the next batch's work.
        let shards = match store {
            Store::Postgres(_) => 4,
            Store::Sqlite(_) => 1,
        };
        let writer = Writer::start(store.clone(), shards, config.write_batch_max);
        let chat = Chat::new(
            store.clone(),
            writer,
            Hub::new(),
            ChatSettings {
                limits: config.limits.clone(),
                typing_ttl: config.typing_ttl,
                presence_grace: config.presence_grace,
            },
        );
        let limiter = Limiter::new(&config.rates);
        let realtime = Realtime::new(
            chat.clone(),
            verifier.clone(),
            limiter.clone(),
            Sessions::new(config.session_warning),
        );
        let (sio_layer, _io) = crate::realtime::layer(realtime, config.limits.max_payload_bytes);

        let policy = OriginPolicy::new(config.cors_origins.clone());
        // The secret is there: generated in local mode, and required by `Config` otherwise.
        let dev_login = config
            .dev_login
            .then(|| config.jwt.secret.as_deref().map(DevLogin::new))
            .flatten();
        let router = crate::http::routes(
            AppState {
                chat,
                verifier,
                limiter,
            },
            dev_login,
        )
        .layer(DefaultBodyLimit::max(config.limits.max_payload_bytes))
        .layer(sio_layer)
        .layer(cors(&policy))
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::http::origin_guard,
        ));

        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        Ok(Self {
            listener,
            router,
            local_addr,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving")
    }
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
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
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
