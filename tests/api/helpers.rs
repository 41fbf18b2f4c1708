//! The test harness: a real confab server on a random port with its own fresh database, tokens,
//! and a real Socket.IO client.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use confab::config::Config;
use confab::startup::Application;
use confab_sio_client::{Client, ConnectError, ConnectOptions, connect};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const SECRET: &str = "integration-test-secret-0123456789";
/// The host app's server key every test server accepts (`CONFAB_SERVER_API_KEYS`).
pub const SERVER_KEY: &str = "integration-test-server-key-0123456789";
/// How long to wait for an event that should arrive.
pub const EVENT_WAIT: Duration = Duration::from_secs(5);
/// How long to watch for an event that must not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

const PG_ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";
const PG_TEST_DB: &str = "confab_test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server. Dropping it stops the server.
pub struct TestApp {
    pub url: String,
    pub backend: Backend,
    /// This node's bus counters, when it runs in a cluster.
    pub bus_stats: Option<std::sync::Arc<confab::bus::BusStats>>,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

/// Runs a test body once per backend: `sqlite` and `postgres` test functions in a module named
/// after the test.
macro_rules! both_backends {
    ($(async fn $name:ident($app:ident: TestApp) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($app: $crate::helpers::TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                    run(app.expect("sqlite is always available")).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await {
                        run(app).await;
                    }
                }
            }
        )*
    };
}

/// A database URL for a test that starts several servers on one database (a restart, several
/// nodes): a fresh SQLite file in `dir`, or a fresh PostgreSQL schema.
pub async fn shared_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("shared.db").display())),
        Backend::Postgres => fresh_pg_schema().await,
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

/// Starts a server with extra `CONFAB_*` settings (an empty value unsets one of the harness's
/// defaults). `None` only for PostgreSQL outside CI when
/// it is unreachable; in CI an unreachable PostgreSQL fails the test.
pub async fn spawn_app_with(backend: Backend, settings: &[(&str, &str)]) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = match settings.iter().find(|(k, _)| *k == "CONFAB_DATABASE_URL") {
        Some((_, url)) => url.to_string(),
        None => match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("confab.db").display()),
            Backend::Postgres => fresh_pg_schema().await?,
        },
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::from([
        ("CONFAB_BIND".into(), "127.0.0.1:0".into()),
        ("CONFAB_DATA_DIR".into(), dir.path().display().to_string()),
        ("CONFAB_DATABASE_URL".into(), database_url),
        ("CONFAB_JWT_SECRET".into(), SECRET.into()),
        ("CONFAB_DATABASE_MAX_CONNECTIONS".into(), "4".into()),
        // Tests fire bursts far beyond a person's pace; the rate-limit tests set their own.
        ("CONFAB_RATE_SEND".into(), "100000/100000".into()),
        ("CONFAB_RATE_TYPING".into(), "100000/100000".into()),
        ("CONFAB_RATE_OTHER".into(), "100000/100000".into()),
        ("CONFAB_RATE_MEMBERS".into(), "100000/100000".into()),
        ("CONFAB_RATE_CONNECT_PER_IP".into(), "100000/100000".into()),
        ("CONFAB_RATE_SESSION_PER_IP".into(), "100000/100000".into()),
        ("CONFAB_SERVER_API_KEYS".into(), SERVER_KEY.into()),
    ]);
    // An empty value removes a default of the harness (for example the secret, for local
    // mode): confab itself refuses a variable that is set but empty.
    for (k, v) in settings {
        if v.is_empty() {
            vars.remove(*k);
        } else {
            vars.insert((*k).into(), (*v).into());
        }
    }
    let config = Config::load(None, |k| vars.get(k).cloned()).expect("test config");
    init_logs();
    let app = Application::build(config).await.expect("the server starts");
    let addr = app.local_addr();
    let bus_stats = app.bus_stats();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    Some(TestApp {
        url: format!("http://{addr}"),
        backend,
        bus_stats,
        _dir: dir,
        _stop: stop,
    })
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into());
        confab::telemetry::init(&filter, confab::telemetry::LogFormat::Text);
    });
}

/// Whether a missing service must fail the test (CI) rather than skip it (a laptop).
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A schema of its own in the shared test database, so tests are isolated and fast (a schema
/// costs a millisecond; a database, a file copy).
async fn fresh_pg_schema() -> Option<String> {
    use sqlx::Connection;
    static READY: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let ready = *READY
        .get_or_init(|| async {
            let mut admin = match sqlx::PgConnection::connect(PG_ADMIN_URL).await {
                Ok(c) => c,
                Err(e) if !services_required() => {
                    eprintln!("PostgreSQL unreachable ({e}); skipping PostgreSQL tests");
                    return false;
                }
                Err(e) => panic!("PostgreSQL is required in CI and unreachable: {e}"),
            };
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(PG_TEST_DB)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !exists {
                // Several test binaries may race to create it; losing the race is fine.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {PG_TEST_DB}")))
                    .execute(&mut admin)
                    .await;
            }
            drop_old_schemas().await;
            true
        })
        .await;
    if !ready {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("t_{now}_{}", uuid::Uuid::now_v7().simple());
    let base = format!("postgres://root@127.0.0.1:5432/{PG_TEST_DB}");
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connecting to the test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("creating a test schema");
    Some(format!("{base}?options=-c%20search_path%3D{schema}"))
}

/// Schemas left by earlier runs (over an hour old) are dropped, so a developer's database
/// doesn't grow forever. Schema names start with their creation time.
async fn drop_old_schemas() {
    use sqlx::Connection;
    let base = format!("postgres://root@127.0.0.1:5432/{PG_TEST_DB}");
    let Ok(mut conn) = sqlx::PgConnection::connect(&base).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    for name in names {
        let created: Option<u64> = name.split('_').nth(1).and_then(|s| s.parse().ok());
        if created.is_some_and(|t| t < hour_ago) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

impl TestApp {
    /// Another server like this one (same backend) with extra settings.
    pub async fn with(&self, settings: &[(&str, &str)]) -> TestApp {
        spawn_app_with(self.backend, settings)
            .await
            .expect("the backend was available a moment ago")
    }

    /// A valid token for `user`, good for an hour.
    pub fn token(&self, user: &str) -> String {
        let now = chrono_now();
        sign(json!({ "sub": user, "name": format!("User {user}"), "iat": now, "exp": now + 3600 }))
    }

    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(self.url.clone()).ack_timeout(Duration::from_secs(10))
    }

    /// Connects `user` with a valid token; panics if refused.
    pub async fn connect(&self, user: &str) -> Client {
        self.connect_auth(json!({ "token": self.token(user) }))
            .await
            .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
    }

    pub async fn connect_auth(&self, auth: Value) -> Result<Client, ConnectError> {
        connect(self.options().auth(auth)).await
    }

    /// The server's data directory (its SQLite file, and the attachments' bytes).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn http(&self) -> Http {
        Http {
            base: self.url.clone(),
            client: reqwest::Client::new(),
        }
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Signs arbitrary claims with the test secret (HS256).
pub fn sign(claims: Value) -> String {
    sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

pub fn sign_with(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("signing")
}

/// Calls on a connected client that expect a particular outcome.
pub trait ClientExt {
    /// Emits and expects `{ ok: true }`; returns `data`.
    async fn ok(&self, event: &str, payload: Value) -> Value;
    /// Emits and expects `{ ok: false }`; returns `error`.
    async fn fails(&self, event: &str, payload: Value) -> Value;
}

impl ClientExt for Client {
    async fn ok(&self, event: &str, payload: Value) -> Value {
        let reply = self
            .emit_with_ack(event, payload.clone())
            .await
            .unwrap_or_else(|e| panic!("{event} got no ack: {e}"));
        assert_eq!(
            reply["ok"], true,
            "{event} {payload} should succeed, got {reply}"
        );
        reply["data"].clone()
    }

    async fn fails(&self, event: &str, payload: Value) -> Value {
        let reply = self
            .emit_with_ack(event, payload.clone())
            .await
            .unwrap_or_else(|e| panic!("{event} got no ack: {e}"));
        assert_eq!(
            reply["ok"], false,
            "{event} {payload} should fail, got {reply}"
        );
        assert!(reply["error"]["message"].is_string(), "{reply}");
        reply["error"].clone()
    }
}

/// Waits for the next `name` event and returns its payload.
pub async fn expect(client: &mut Client, name: &str) -> Value {
    client
        .expect_event(name, EVENT_WAIT)
        .await
        .unwrap_or_else(|e| panic!("expected {name}: {e}"))
        .data()
        .clone()
}

/// Asserts no `name` event arrives for a while.
pub async fn expect_none(client: &mut Client, name: &str) {
    client
        .expect_no_event(name, QUIET)
        .await
        .unwrap_or_else(|e| panic!("unexpected {name}: {e}"));
}

/// Creates a group owned by `owner` with `members`; returns its id.
pub async fn group(owner: &Client, title: &str, members: &[&str]) -> String {
    let data = owner
        .ok(
            "conversation:create",
            json!({ "kind": "group", "title": title, "member_ids": members }),
        )
        .await;
    data["conversation"]["id"].as_str().unwrap().to_owned()
}

/// Sends a message and returns it.
pub async fn send(client: &Client, conversation: &str, client_id: &str, body: &str) -> Value {
    client
        .ok(
            "message:send",
            json!({ "conversation_id": conversation, "client_id": client_id, "body": body }),
        )
        .await["message"]
        .clone()
}

/// A small HTTP client for the REST API.
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post_raw(path, token, body.to_string()).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.delete(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }

    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: String) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.expect("request")).await
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}
