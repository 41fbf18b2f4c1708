//! `chat` and `multinode`: users in groups, a fixed total send rate from random members.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Bench, Load, Verdict, check_groups};
use crate::population;
use crate::report;

/// Connects, creates the groups, runs one phase at `--rate` and reports it.
pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    let group_size = bench.args.group_size.unwrap_or(10);
    let rate = bench.args.rate.unwrap_or(1000.0);
    let population = bench.connect_all().await?;
    let mut load = setup(bench, &population, group_size).await?;

    eprintln!(
        "sending {rate} msgs/s for {:.1} s from random members",
        bench.duration.as_secs_f64()
    );
    let wire_before = wire_bytes();
    let outcome = load
        .run_phase(0, rate, bench.duration, bench.grace, &bench.watch())
        .await;
    let (wire_in, wire_out) = {
        let now = wire_bytes();
        (now.0 - wire_before.0, now.1 - wire_before.1)
    };
    let run = bench.recorder.run_counters();
    let ok = report::phase_ok(&outcome.result, &run);

    let mut line = bench.header();
    line.insert("group_size".into(), json!(group_size));
    line.insert("groups".into(), json!(load.group_count()));
    line.extend(report::phase_fields(&outcome.result, &run));
    line.insert("connect".into(), Bench::connect_fields(&population));
    line.extend(outcome.usage);
    // TCP payload during the phase (frames, compressed or not, as they crossed the wire).
    line.insert("wire_in_bytes".into(), json!(wire_in));
    line.insert("wire_out_bytes".into(), json!(wire_out));
    line.insert("parser".into(), json!(bench.args.parser));
    line.insert("deflate".into(), json!(bench.args.deflate));
    eprintln!(
        "wire ({} parser{}): {wire_in} bytes server → clients, {wire_out} bytes clients → server",
        bench.args.parser,
        if bench.args.deflate {
            ", deflate offered"
        } else {
            ""
        }
    );
    line.insert("ok".into(), json!(ok));
    bench.reporter.emit(&Value::Object(line))?;
    eprintln!(
        "{}",
        report::phase_summary(bench.scenario.name(), &outcome.result, &run)
    );

    population.close(Duration::from_secs(3)).await;
    Ok(if ok {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}

fn wire_bytes() -> (u64, u64) {
    use std::sync::atomic::Ordering;
    (
        crate::wire::BYTES_IN.load(Ordering::Relaxed),
        crate::wire::BYTES_OUT.load(Ordering::Relaxed),
    )
}

/// Creates groups of `group_size` and waits `--settle` for the servers to finish joining them.
pub async fn setup(
    bench: &Bench,
    population: &population::Population,
    group_size: usize,
) -> anyhow::Result<Load> {
    let started = std::time::Instant::now();
    let groups = population::create_groups(&population.users, group_size, 16, "bench").await?;
    check_groups(bench.users, &groups)?;
    eprintln!(
        "created {} groups of {group_size} in {:.2} s",
        groups.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(super::secs("--settle", bench.args.settle)?).await;
    Ok(Load::new(
        population,
        groups,
        bench.seed,
        bench.recorder.clone(),
    ))
}
