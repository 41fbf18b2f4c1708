//! `connect`: users connect and stay idle. Connects per second, connect latency, and what each
//! idle connection costs the server (VmRSS) and the generator.
//!
//! With `--group-size K` the users first join groups of K (a prepare round: connect, create
//! the groups, disconnect), so each measured connect loads memberships, as a real user's does.
//! The server then has seen these users before: its RSS growth per connection can read low
//! (memory freed by the prepare round is reused), so idle memory is measured without groups.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Bench, Verdict, Window, check_groups};
use crate::population::{self, format_counts};
use crate::report::{self, round};
use crate::usage;

/// How long to let the server's memory settle after the last connect before reading it.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    if let Some(size) = bench.args.group_size {
        prepare_memberships(bench, size).await?;
    }
    let pids = &bench.args.server_pids;
    let rss = || -> Option<u64> {
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|&p| usage::rss_kib(p).ok()).sum()
    };
    let server_before = rss();
    let generator_before = usage::self_rss_kib().ok();

    eprintln!(
        "connecting {} users to {} ({} in flight, sources: {})",
        bench.users,
        bench
            .targets
            .iter()
            .map(|t| t.url.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        bench.plan.concurrency,
        population::describe_sources(&bench.plan.sources)
    );
    let window = Window::open(&bench.watch(), &bench.recorder);
    let population = population::connect(&bench.plan, &bench.shared).await?;
    let connect_usage = window.close(&bench.recorder);
    let r = population.report.clone();
    eprintln!(
        "connected {}/{} in {:.2} s: {}/s, latency p50 {} p99 {} max {} ms",
        r.connected,
        r.attempted,
        r.elapsed.as_secs_f64(),
        r.per_sec(),
        r.latency.p50,
        r.latency.p99,
        r.latency.max
    );
    if !r.failures.is_empty() {
        eprintln!("  failed: {}", format_counts(&r.failures));
    }

    tokio::time::sleep(SETTLE).await;
    let server_connected = rss();
    let generator_connected = usage::self_rss_kib().ok();
    eprintln!("idle for {:.1} s", bench.duration.as_secs_f64());
    let idle_started = Instant::now();
    tokio::time::sleep(bench.duration).await;
    let idle_s = idle_started.elapsed().as_secs_f64();
    let server_idle = rss();
    let alive = population.alive();
    let run = bench.recorder.run_counters();

    let per_conn = |before: Option<u64>, after: Option<u64>| -> Option<f64> {
        let (before, after) = (before?, after?);
        (r.connected > 0).then(|| {
            round(
                (after as f64 - before as f64) * 1024.0 / r.connected as f64,
                0,
            )
        })
    };
    let server_per_conn = per_conn(server_before, server_idle);
    let generator_per_conn = per_conn(generator_before, generator_connected);

    let mut line = bench.header();
    if let Some(size) = bench.args.group_size {
        line.insert("group_size".into(), json!(size));
    }
    line.insert("connected".into(), json!(r.connected));
    line.insert("failed".into(), json!(r.failed()));
    line.insert("failures".into(), report::counts(&r.failures));
    line.insert("connects_per_s".into(), json!(r.per_sec()));
    line.insert(
        "connect_elapsed_s".into(),
        json!(round(r.elapsed.as_secs_f64(), 3)),
    );
    line.insert("connect_ms".into(), report::latency(&r.latency));
    line.insert("connect_concurrency".into(), json!(bench.plan.concurrency));
    line.insert("idle_s".into(), json!(round(idle_s, 1)));
    line.insert("alive_after_idle".into(), json!(alive));
    line.insert("disconnects".into(), report::counts(&run.disconnects));
    if !pids.is_empty() {
        line.insert(
            "server".into(),
            json!({
                "pids": pids,
                "rss_before_kib": server_before,
                "rss_connected_kib": server_connected,
                "rss_idle_kib": server_idle,
                "rss_per_conn_bytes": server_per_conn,
                "connect_cpu_pct": connect_usage.get("server").and_then(|s| s.get("cpu_pct")),
            }),
        );
    }
    line.insert(
        "generator".into(),
        json!({
            "threads": bench.args.threads,
            "rss_kib": generator_connected,
            "rss_per_conn_bytes": generator_per_conn,
            "connect_cpu_pct": connect_usage["generator"]["cpu_pct"],
        }),
    );
    // The machine's load and the watched processes' CPU, over the connect phase.
    for (key, value) in &connect_usage {
        if key == "machine" || key == "watched_cpu_pct" {
            line.insert(key.clone(), value.clone());
        }
    }
    let ok = r.failed() == 0 && alive == r.connected && run.disconnects.is_empty();
    line.insert("ok".into(), json!(ok));
    bench.reporter.emit(&Value::Object(line))?;

    if let Some(bytes) = server_per_conn {
        eprintln!(
            "server RSS {} → {} → {} KiB: {bytes} bytes per connection",
            server_before.unwrap_or(0),
            server_connected.unwrap_or(0),
            server_idle.unwrap_or(0)
        );
    }
    if let Some(bytes) = generator_per_conn {
        eprintln!("generator RSS: {bytes} bytes per connection");
    }
    eprintln!(
        "{alive}/{} connections alive after the idle period",
        r.connected
    );
    if !run.disconnects.is_empty() {
        eprintln!("  disconnects: {}", format_counts(&run.disconnects));
    }

    population.close(Duration::from_secs(5)).await;
    Ok(if ok {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}

/// Puts every user into a group of `size` (consecutive users, as in `chat`), then disconnects
/// them all, so the measured connects find memberships to load.
async fn prepare_memberships(bench: &Bench, size: usize) -> anyhow::Result<()> {
    eprintln!("prepare: every user joins a group of {size}");
    let population = bench.connect_all().await?;
    let groups = population::create_groups(&population.users, size, 16, "bench").await?;
    check_groups(bench.users, &groups)?;
    population.close(Duration::from_secs(5)).await;
    // The server finishes its disconnects (presence, memberships) before the measured round.
    tokio::time::sleep(SETTLE).await;
    eprintln!(
        "prepare: {} groups created, everyone disconnected",
        groups.len()
    );
    Ok(())
}
