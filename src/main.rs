//! The `confab` command: run the server, mint a token, print the configuration reference.

use std::path::PathBuf;
use std::time::Duration;

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use confab::config::{Config, effective_table, reference_markdown};
use confab::startup::Application;

#[derive(Parser)]
#[command(name = "confab", version, about = "A real-time chat server")]
struct Cli {
    /// A TOML configuration file (environment variables override it).
    #[arg(long, global = true, env = "CONFAB_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a token signed with the configured (or generated) HS256 secret.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// The display name (`name`).
        #[arg(long)]
        name: Option<String>,
        /// How long the token is valid: `90s`, `30m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Print the settings in effect (from defaults, the file and the environment), secrets
    /// masked; `--reference` prints what every setting means instead.
    Config {
        /// Print the configuration reference (every setting, its default and variable).
        #[arg(long)]
        reference: bool,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /api/openapi.json).
    Openapi,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a number with a unit, like 1h: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// Errors end the process with their chain of causes on one line, not a `Debug` dump (which
/// prints a backtrace whenever `RUST_BACKTRACE` is set, as it often is on developer machines).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab: can't start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config { reference: true } => {
            print!("{}", reference_markdown());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", confab::http::openapi::document());
            Ok(())
        }
        Command::Config { reference: false } => {
            let config = Config::from_env(cli.config.as_deref())?;
            warn_to_stderr(&config);
            print!("{}", effective_table(&config));
            Ok(())
        }
        Command::Token { sub, name, ttl } => {
            let config = Config::from_env(cli.config.as_deref())?;
            warn_to_stderr(&config);
            let secret = match (&config.jwt.secret, config.local_mode()) {
                (Some(secret), _) => secret.clone(),
                (None, true) => config.read_local_secret()?.with_context(|| {
                    format!(
                        "no secret to sign with: no JWT key is configured, and there is no local-mode \
                         secret at {path}. A local-mode server creates that file on its first start; \
                         run this command where you run the server (or set CONFAB_DATA_DIR to its \
                         data directory), or set CONFAB_JWT_SECRET to the secret it uses",
                        path = std::path::absolute(config.local_secret_path())
                            .unwrap_or_else(|_| config.local_secret_path())
                            .display()
                    )
                })?,
                (None, false) => bail!(
                    "no HS256 secret: tokens for this server are signed by the app's private key"
                ),
            };
            let token = confab::auth::mint(&secret, &sub, name.as_deref(), ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::Serve => serve(Config::from_env(cli.config.as_deref())?).await,
    }
}

fn warn_to_stderr(config: &Config) {
    for warning in &config.warnings {
        eprintln!("confab: warning: {warning}");
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    confab::telemetry::init(&config.log_filter, config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let local = config.local_mode();
    let app = Application::build(config).await.context("can't start")?;
    tracing::info!(
        "confab listening on http://{} ({} storage)",
        app.local_addr(),
        app.backend()
    );
    tracing::info!("web app at http://{}/", app.local_addr());
    if local {
        tracing::info!(
            "local mode: sign in from the web app, or mint a token with `confab token --sub alice` (from a checkout: `cargo run --release -- token --sub alice`)"
        );
    }
    app.run_until_stopped().await
}
