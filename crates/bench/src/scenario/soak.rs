//! `soak`: `chat` held at one rate for a long time (ten minutes by default), reported second by
//! second, to find what a short run hides: stalls (a checkpoint, an autovacuum, a compaction)
//! that show as a second whose p99 or max jumps, and memory that keeps growing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Bench, Verdict, chat};
use crate::report::{self, round};
use crate::scrape::{self, Scrape};
use crate::usage;

/// What the watched servers did in one second.
struct Sample {
    rss_kib: u64,
    cpu_pct: f64,
    /// From their `/metrics`: how busy their runtimes were, how late woken tasks ran.
    runtime: serde_json::Map<String, Value>,
}

/// Connects, creates the groups, sends at `--rate` for `--duration`, and reports the whole run
/// plus a series with one entry per second: acks, ack p50/p99/max, the servers' runtime figures
/// (confab's `/metrics`) and (with `--server-pid`) their RSS and CPU.
pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    let group_size = bench.args.group_size.unwrap_or(10);
    let rate = bench.args.rate.unwrap_or(1000.0);
    let population = bench.connect_all().await?;
    let mut load = chat::setup(bench, &population, group_size).await?;

    eprintln!(
        "soaking at {rate} msgs/s for {:.0} s",
        bench.duration.as_secs_f64()
    );
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_every_second(
        bench.args.server_pids.clone(),
        bench.targets.iter().map(|t| t.addr()).collect(),
        samples.clone(),
    ));
    let started_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let outcome = load
        .run_phase(0, rate, bench.duration, bench.grace, &bench.watch())
        .await;
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let pids_empty = bench.args.server_pids.is_empty();
    let run = bench.recorder.run_counters();
    let ok = report::phase_ok(&outcome.result, &run);

    let series: Vec<Value> = outcome
        .result
        .series
        .iter()
        .map(|s| {
            let mut entry =
                json!({ "t": s.t, "acked": s.acked, "p50": s.p50, "p99": s.p99, "max": s.max });
            if let Some(sample) = samples.get(s.t as usize) {
                if !pids_empty {
                    entry["rss_kib"] = json!(sample.rss_kib);
                    entry["server_cpu_pct"] = json!(round(sample.cpu_pct, 1));
                }
                for (key, value) in &sample.runtime {
                    entry[key] = value.clone();
                }
            }
            entry
        })
        .collect();
    let worst = outcome
        .result
        .series
        .iter()
        .max_by(|a, b| a.max.total_cmp(&b.max));
    let mut line = bench.header();
    line.insert("group_size".into(), json!(group_size));
    line.insert("groups".into(), json!(load.group_count()));
    line.extend(report::phase_fields(&outcome.result, &run));
    if !pids_empty {
        line.insert("rss_kib".into(), rss_summary(&samples));
    }
    // So the series can be lined up with the server's and the database's logs.
    line.insert("started_at_unix_ms".into(), json!(started_at_ms));
    line.insert("series".into(), Value::Array(series));
    line.extend(outcome.usage);
    line.insert("ok".into(), json!(ok));
    bench.reporter.emit(&Value::Object(line))?;
    eprintln!(
        "{}",
        report::phase_summary(bench.scenario.name(), &outcome.result, &run)
    );
    if let Some(w) = worst {
        eprintln!(
            "worst second: t={} s (p99 {} ms, max {} ms, {} acks)",
            w.t, w.p99, w.max, w.acked
        );
    }

    population.close(Duration::from_secs(3)).await;
    Ok(if ok {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}

/// Every second from now on, into `samples`: the summed RSS of `pids` and their CPU use in that
/// second (of one core), and what the servers at `addrs` say of their runtimes. Runs until
/// aborted.
async fn sample_every_second(
    pids: Vec<u32>,
    addrs: Vec<SocketAddr>,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = (Instant::now(), cpu(&pids));
    let mut scraped = scrape_all(&addrs).await.map(|s| (Instant::now(), s));
    loop {
        tick.tick().await;
        let now = (Instant::now(), cpu(&pids));
        let wall = now.0.duration_since(last.0).as_secs_f64().max(1e-9);
        let spent = now.1.saturating_sub(last.1).as_secs_f64();
        let rss_kib = pids.iter().filter_map(|&p| usage::rss_kib(p).ok()).sum();
        // A scrape that failed leaves the last good one to compare with: the next second then
        // carries both seconds' wakes.
        let mut runtime = serde_json::Map::new();
        if let Some(scrape) = scrape_all(&addrs).await {
            let at = Instant::now();
            if let Some((then, before)) = &scraped {
                runtime = scrape.since(before, at.duration_since(*then));
            }
            scraped = Some((at, scrape));
        }
        samples.lock().unwrap().push(Sample {
            rss_kib,
            cpu_pct: spent / wall * 100.0,
            runtime,
        });
        last = now;
    }
}

/// The servers' `/metrics`, summed; None unless every one answered in time. None also when
/// there is no server to ask.
async fn scrape_all(addrs: &[SocketAddr]) -> Option<Scrape> {
    let mut all = Scrape::default();
    for &addr in addrs {
        all.add(scrape::fetch(addr, Duration::from_millis(500)).await?);
    }
    (!addrs.is_empty()).then_some(all)
}

fn cpu(pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|&p| usage::process_cpu(p).ok())
        .map(|c| c.total())
        .sum()
}

/// Whether memory levelled off: the most the servers held in the first and the last minute.
fn rss_summary(samples: &[Sample]) -> Value {
    let minute = |s: &[Sample]| s.iter().map(|x| x.rss_kib).max();
    let n = samples.len();
    json!({
        "first_minute_max": minute(&samples[..n.min(60)]),
        "last_minute_max": minute(&samples[n.saturating_sub(60)..]),
        "max": samples.iter().map(|s| s.rss_kib).max(),
    })
}
