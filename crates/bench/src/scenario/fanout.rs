//! `fanout`: every user in one large group; each message goes to all other members, and the
//! figure that matters is the latency to the last of them.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::{Bench, Load, Verdict, check_groups};
use crate::population;
use crate::report;

pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    let rate = bench.args.rate.unwrap_or(10.0);
    if bench.args.group_size.is_some_and(|k| k != bench.users) {
        eprintln!("note: fanout puts all --users in one group; --group-size is ignored");
    }
    let population = bench.connect_all().await?;

    let started = Instant::now();
    let (_, bytes_before) = bench.recorder.traffic();
    let members: Vec<usize> = (0..bench.users).collect();
    let group = population::create_group(&population.users, members, "bench fanout").await?;
    let group_members = bench.args.group_members.unwrap_or(bench.users);
    if group_members < bench.users {
        anyhow::bail!("--group-members must be at least --users");
    }
    let away: Vec<String> = (0..group_members - bench.users)
        .map(|i| format!("{}-away-{i}", bench.plan.user_prefix))
        .collect();
    if !away.is_empty() {
        let owner = population.users[0]
            .as_ref()
            .context("the group's owner is not connected")?;
        for chunk in away.chunks(population::ADD_CHUNK) {
            let answer = owner
                .handle
                .request(
                    "conversation:members:add",
                    json!({ "conversation_id": group.conversation.id, "user_ids": chunk }),
                    population::SETUP_TIMEOUT,
                )
                .await?;
            population::envelope_data(&answer, "conversation:members:add")?;
        }
    }
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!(
        "created one group of {group_members} ({} connected) in {setup_s:.2} s",
        bench.users
    );
    let groups = vec![group];
    check_groups(bench.users, &groups)?;
    // Adding members sends every existing member of a small group a conversation:members; let
    // that traffic pass before measuring, or it shows up as delivery latency.
    tokio::time::sleep(super::secs("--settle", bench.args.settle)?).await;
    let mut load = Load::new(&population, groups, bench.seed, bench.recorder.clone());
    load.drain(Duration::from_secs(1), Duration::from_secs(60))
        .await;
    // What creating the group sent the members (conversation:new, conversation:members).
    let setup_mib = (bench.recorder.traffic().1 - bytes_before) as f64 / (1024.0 * 1024.0);
    eprintln!("the members received {setup_mib:.1} MiB of events while the group was built");

    eprintln!(
        "sending {rate} msgs/s for {:.1} s to {} members each ({} of them connected)",
        bench.duration.as_secs_f64(),
        group_members - 1,
        bench.users - 1
    );
    let outcome = load
        .run_phase(0, rate, bench.duration, bench.grace, &bench.watch())
        .await;
    let run = bench.recorder.run_counters();
    let ok = report::phase_ok(&outcome.result, &run);

    let mut line = bench.header();
    line.insert("group_size".into(), json!(group_members));
    line.insert("connected_members".into(), json!(bench.users));
    line.insert("groups".into(), json!(1));
    line.insert("setup_s".into(), json!(report::round(setup_s, 3)));
    line.insert("setup_mib_in".into(), json!(report::round(setup_mib, 1)));
    line.extend(report::phase_fields(&outcome.result, &run));
    line.insert("connect".into(), Bench::connect_fields(&population));
    line.extend(outcome.usage);
    line.insert("ok".into(), json!(ok));
    bench.reporter.emit(&Value::Object(line))?;
    eprintln!("{}", report::phase_summary("fanout", &outcome.result, &run));

    population.close(Duration::from_secs(3)).await;
    Ok(if ok {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}
