//! `search`: a database of many messages stored through the server (so indexed as chat
//! indexes them), then one user's one-word searches timed one at a time.
//!
//! The shape follows issue 20's benchmark: a member of 50 conversations searching a corpus of
//! 1,000,000 messages. The corpus is written in a skewed vocabulary (client.rs, `words_body`),
//! so a random word is usually rare and `w0` is in half the messages: the two ends of what a
//! search box gets.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{Bench, Verdict};
use crate::population::{self, Population};
use crate::report;
use crate::stats::{Latency, latency_histogram, record};

/// How many conversations the searching user is a member of.
const SEARCHER_GROUPS: usize = 50;
/// How long one search may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    let group_size = bench.args.group_size.unwrap_or(10);
    let rate = bench.args.rate.unwrap_or(3000.0);
    let messages = bench.args.messages.unwrap_or(1_000_000);
    if !rate.is_finite() || rate <= 0.0 {
        bail!("--rate must be a number above 0");
    }
    let population = bench.connect_all().await?;
    let mut load = super::chat::setup(bench, &population, group_size).await?;
    let searcher_conversations = join_searcher(&population, &mut load).await?;

    // The corpus, sent on chat's open-loop schedule: its figures are chat's, with indexing on.
    let duration = Duration::from_secs_f64(messages as f64 / rate);
    eprintln!(
        "storing {messages} messages at {rate} msgs/s ({:.0} s) in {} groups",
        duration.as_secs_f64(),
        load.group_count()
    );
    let outcome = load
        .run_phase(0, rate, duration, bench.grace, &bench.watch())
        .await;
    let run = bench.recorder.run_counters();
    let stored_ok = report::phase_ok(&outcome.result, &run);
    eprintln!(
        "{}",
        report::phase_summary("search (storing)", &outcome.result, &run)
    );
    load.drain(Duration::from_secs(1), Duration::from_secs(60))
        .await;

    let searcher = population.users[0]
        .as_ref()
        .context("the searching user is not connected")?;
    let mut rng = SmallRng::seed_from_u64(bench.seed);
    let vocabulary = bench.args.vocabulary.max(1);
    let random_words: Vec<String> = (0..bench.args.queries)
        .map(|_| format!("w{}", rng.random_range(0..vocabulary)))
        .collect();
    let common_words = vec!["w0".to_owned(); bench.args.queries.div_ceil(10)];
    eprintln!(
        "searching as a member of {SEARCHER_GROUPS} conversations: {} random words, then `w0` {} times",
        random_words.len(),
        common_words.len()
    );
    let random = time_searches(&searcher.handle, &random_words, &searcher_conversations).await;
    let common = time_searches(&searcher.handle, &common_words, &searcher_conversations).await;
    for (what, s) in [("a random word", &random), ("w0", &common)] {
        let l = Latency::of(&s.latency);
        eprintln!(
            "search, {what}: p50 {} / p99 {} / max {} ms, {:.1} results each, {} failed, {} wrong",
            l.p50,
            l.p99,
            l.max,
            s.results as f64 / s.answered.max(1) as f64,
            s.failed.len(),
            s.wrong.len()
        );
        for problem in s.failed.iter().chain(&s.wrong).take(5) {
            eprintln!("  {problem}");
        }
    }
    let searched_ok = [&random, &common]
        .iter()
        .all(|s| s.failed.is_empty() && s.wrong.is_empty());
    let ok = stored_ok && searched_ok;

    let mut line = bench.header();
    line.insert("group_size".into(), json!(group_size));
    line.insert("groups".into(), json!(load.group_count()));
    line.insert("messages".into(), json!(messages));
    line.insert("vocabulary".into(), json!(vocabulary));
    line.insert("searcher_groups".into(), json!(SEARCHER_GROUPS));
    line.extend(report::phase_fields(&outcome.result, &run));
    line.extend(outcome.usage);
    line.insert("connect".into(), Bench::connect_fields(&population));
    line.insert("search_random".into(), random.to_json());
    line.insert("search_common".into(), common.to_json());
    line.insert("ok".into(), json!(ok));
    bench.reporter.emit(&Value::Object(line))?;

    population.close(Duration::from_secs(3)).await;
    Ok(if ok {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}

/// Adds user 0 (the searcher, already in the first group) to the next groups, up to
/// [`SEARCHER_GROUPS`], and counts them as members so the load expects its deliveries.
/// Returns the searcher's conversation ids.
async fn join_searcher(
    population: &Population,
    load: &mut super::Load,
) -> anyhow::Result<HashSet<String>> {
    let groups = load.groups_mut();
    if groups.len() < SEARCHER_GROUPS {
        bail!(
            "search needs at least {SEARCHER_GROUPS} groups for its searcher: raise --users \
             (groups of --group-size)"
        );
    }
    let searcher = population.users[0]
        .as_ref()
        .context("the searching user is not connected")?;
    for group in &mut groups[1..SEARCHER_GROUPS] {
        let owner = population.users[group.members[0]]
            .as_ref()
            .context("a group owner is not connected")?;
        let answer = owner
            .handle
            .request(
                "conversation:members:add",
                json!({ "conversation_id": group.id, "user_ids": [searcher.id] }),
                Duration::from_secs(30),
            )
            .await?;
        population::envelope_data(&answer, "conversation:members:add")?;
        group.members.push(0);
    }
    Ok(groups[..SEARCHER_GROUPS]
        .iter()
        .map(|g| g.id.clone())
        .collect())
}

/// The outcome of a series of searches.
struct Searches {
    latency: Histogram<u64>,
    answered: u64,
    results: u64,
    /// Searches that failed: an error answer or no answer in time.
    failed: Vec<String>,
    /// Results that should not have been there: another conversation's, or without the word.
    wrong: Vec<String>,
}

impl Searches {
    fn to_json(&self) -> Value {
        json!({
            "queries": self.answered + self.failed.len() as u64,
            "ms": report::latency(&Latency::of(&self.latency)),
            "results_mean": report::round(self.results as f64 / self.answered.max(1) as f64, 1),
            "failed": self.failed.len(),
            "wrong": self.wrong.len(),
        })
    }
}

/// Runs `message:search` for each word in turn, one at a time (the latency of one search, not
/// the throughput of many), and checks each answer.
async fn time_searches(
    handle: &crate::client::Handle,
    words: &[String],
    conversations: &HashSet<String>,
) -> Searches {
    let mut s = Searches {
        latency: latency_histogram(),
        answered: 0,
        results: 0,
        failed: Vec::new(),
        wrong: Vec::new(),
    };
    for word in words {
        let started = Instant::now();
        let answer = handle
            .request("message:search", json!({ "query": word }), QUERY_TIMEOUT)
            .await;
        let took = started.elapsed();
        let data =
            match answer.and_then(|a| population::envelope_data(&a, "message:search").cloned()) {
                Ok(data) => data,
                Err(e) => {
                    s.failed.push(format!("{word}: {e:#}"));
                    continue;
                }
            };
        record(&mut s.latency, took);
        s.answered += 1;
        let results = data["results"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        s.results += results.len() as u64;
        for result in results {
            let message = &result["message"];
            let conversation = message["conversation_id"].as_str().unwrap_or("");
            let body = message["body"].as_str().unwrap_or("");
            if !conversations.contains(conversation) {
                s.wrong
                    .push(format!("{word}: a result from conversation {conversation}"));
            } else if !body.split(' ').any(|w| w == word) {
                s.wrong
                    .push(format!("{word}: a result without it: {body:?}"));
            }
        }
    }
    s
}
