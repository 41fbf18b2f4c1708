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
    let outcome = load
        .run_phase(0, rate, bench.duration, bench.grace, &bench.watch())
        .await;
    let run = bench.recorder.run_counters();
    let ok = report::phase_ok(&outcome.result, &run);

    let mut line = bench.header();
    line.insert("group_size".into(), json!(group_size));
    line.insert("groups".into(), json!(load.group_count()));
    line.extend(report::phase_fields(&outcome.result, &run));
    line.insert("connect".into(), Bench::connect_fields(&population));
    line.extend(outcome.usage);
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
