//! `sweep`: `chat` at increasing rates on one set of connections and groups, to find the
//! sustainable throughput: the highest rate whose p99 ack latency stays within the bound with
//! nothing lost and no failed sends.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Bench, Verdict};
use crate::report::{self, round};
use crate::stats::PhaseResult;

/// The lowest rate an automatic sweep goes down to before giving up.
const MIN_RATE: f64 = 10.0;

/// Which rate to try next.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// Try these in order (`--rates`).
    List {
        rates: Vec<f64>,
        next: usize,
        best: Option<f64>,
    },
    /// Double from the start while steps pass; after the first failure, bisect between the
    /// best pass and the lowest failure until they are within `precision` of each other.
    Auto {
        next: Option<f64>,
        best: Option<f64>,
        lowest_fail: Option<f64>,
        max_rate: f64,
        precision: f64,
    },
}

impl Search {
    pub fn list(rates: Vec<f64>) -> Self {
        Search::List {
            rates,
            next: 0,
            best: None,
        }
    }

    pub fn auto(start: f64, max_rate: f64, precision: f64) -> Self {
        Search::Auto {
            next: Some(start.min(max_rate)),
            best: None,
            lowest_fail: None,
            max_rate,
            precision,
        }
    }

    /// The rate of the next step, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        match self {
            Search::List { rates, next, .. } => rates.get(*next).copied(),
            Search::Auto { next, .. } => *next,
        }
    }

    /// The highest rate that passed so far.
    pub fn best(&self) -> Option<f64> {
        match self {
            Search::List { best, .. } | Search::Auto { best, .. } => *best,
        }
    }

    /// Records the outcome of the step at `rate` and works out the next one.
    pub fn record(&mut self, rate: f64, passed: bool) {
        match self {
            Search::List { next, best, .. } => {
                *next += 1;
                if passed && best.is_none_or(|b| rate > b) {
                    *best = Some(rate);
                }
            }
            Search::Auto {
                next,
                best,
                lowest_fail,
                max_rate,
                precision,
            } => {
                if passed {
                    if best.is_none_or(|b| rate > b) {
                        *best = Some(rate);
                    }
                } else if lowest_fail.is_none_or(|f| rate < f) {
                    *lowest_fail = Some(rate);
                }
                *next = match (*best, *lowest_fail) {
                    // Still climbing: double, up to the cap.
                    (Some(b), None) => (b < *max_rate).then(|| (b * 2.0).min(*max_rate)),
                    // Nothing passed yet: halve, down to the floor.
                    (None, Some(f)) => (f / 2.0 >= MIN_RATE).then(|| (f / 2.0).round()),
                    (Some(b), Some(f)) => {
                        let mid = ((b + f) / 2.0).round();
                        (f - b > b * *precision && mid > b && mid < f).then_some(mid)
                    }
                    (None, None) => None,
                };
            }
        }
    }
}

/// Whether a step passes: p99 ack latency within the bound, nothing lost, no failed sends.
pub fn passes(result: &PhaseResult, p99_bound_ms: f64) -> bool {
    result.lost == 0
        && result.error_count() == 0
        && result.acked > 0
        && result.ack.p99 <= p99_bound_ms
}

pub async fn run(bench: &Bench) -> anyhow::Result<Verdict> {
    let args = &bench.args;
    let group_size = args.group_size.unwrap_or(10);
    let mut search = if args.rates.is_empty() {
        Search::auto(args.rate.unwrap_or(1000.0), args.max_rate, args.precision)
    } else {
        Search::list(args.rates.clone())
    };
    let population = bench.connect_all().await?;
    let mut load = super::chat::setup(bench, &population, group_size).await?;

    let mut steps = Vec::new();
    let mut step: u32 = 0;
    while let Some(rate) = search.next_rate() {
        if steps.len() >= args.max_steps {
            eprintln!("stopping after --max-steps {}", args.max_steps);
            break;
        }
        eprintln!(
            "step {step}: {rate} msgs/s for {:.1} s",
            bench.duration.as_secs_f64()
        );
        let outcome = load
            .run_phase(step, rate, bench.duration, bench.grace, &bench.watch())
            .await;
        let passed = passes(&outcome.result, args.p99_bound_ms);
        search.record(rate, passed);

        let run = bench.recorder.run_counters();
        let mut line = bench.header();
        line.insert("step".into(), json!(step));
        line.insert("group_size".into(), json!(group_size));
        line.insert("groups".into(), json!(load.group_count()));
        line.extend(report::phase_fields(&outcome.result, &run));
        line.extend(outcome.usage);
        line.insert("p99_bound_ms".into(), json!(args.p99_bound_ms));
        line.insert("passed".into(), json!(passed));
        bench.reporter.emit(&Value::Object(line))?;
        eprintln!(
            "{}\n  → {}",
            report::phase_summary(&format!("step {step}"), &outcome.result, &run),
            if passed { "pass" } else { "FAIL" }
        );
        steps.push(json!({
            "rate": round(rate, 1),
            "passed": passed,
            "ack_p99_ms": outcome.result.ack.p99,
            "acked_per_s": outcome.result.acked_per_sec(),
            "lost": outcome.result.lost,
            "errors": outcome.result.error_count(),
        }));
        step += 1;
        if !outcome.settled {
            // An overloaded step leaves a backlog in the server; let it drain first.
            load.drain(Duration::from_secs(1), Duration::from_secs(60))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let best = search.best();
    let mut line = bench.header();
    line.insert("result".into(), json!("sustainable_rate"));
    line.insert("group_size".into(), json!(group_size));
    line.insert("p99_bound_ms".into(), json!(args.p99_bound_ms));
    line.insert(
        "step_duration_s".into(),
        json!(bench.duration.as_secs_f64()),
    );
    line.insert("sustainable_rate".into(), json!(best));
    line.insert("steps".into(), Value::Array(steps));
    line.insert("connect".into(), Bench::connect_fields(&population));
    bench.reporter.emit(&Value::Object(line))?;
    match best {
        Some(rate) => eprintln!(
            "sustainable: {rate} msgs/s (p99 ack ≤ {} ms, nothing lost)",
            args.p99_bound_ms
        ),
        None => eprintln!(
            "no rate passed (p99 ack ≤ {} ms, nothing lost)",
            args.p99_bound_ms
        ),
    }

    population.close(Duration::from_secs(3)).await;
    Ok(if best.is_some() {
        Verdict::Clean
    } else {
        Verdict::Problems
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server that sustains up to `capacity`; returns the rates tried.
    fn simulate(mut search: Search, capacity: f64) -> (Vec<f64>, Option<f64>) {
        let mut tried = Vec::new();
        while let Some(rate) = search.next_rate() {
            assert!(tried.len() < 50, "the search must end: {tried:?}");
            tried.push(rate);
            search.record(rate, rate <= capacity);
        }
        (tried, search.best())
    }

    #[test]
    fn doubles_then_bisects() {
        let (tried, best) = simulate(Search::auto(1000.0, 100_000.0, 0.1), 5000.0);
        assert_eq!(&tried[..4], &[1000.0, 2000.0, 4000.0, 8000.0]);
        assert_eq!(tried[4], 6000.0);
        let best = best.unwrap();
        assert!((4500.0..=5000.0).contains(&best), "{best} from {tried:?}");
    }

    #[test]
    fn halves_when_the_start_fails() {
        let (tried, best) = simulate(Search::auto(1000.0, 100_000.0, 0.1), 300.0);
        assert_eq!(&tried[..3], &[1000.0, 500.0, 250.0]);
        let best = best.unwrap();
        assert!((250.0..=300.0).contains(&best), "{best} from {tried:?}");
    }

    #[test]
    fn stops_at_the_cap_and_the_floor() {
        let (tried, best) = simulate(Search::auto(1000.0, 3000.0, 0.1), 1e9);
        assert_eq!(tried, vec![1000.0, 2000.0, 3000.0]);
        assert_eq!(best, Some(3000.0));
        let (tried, best) = simulate(Search::auto(100.0, 3000.0, 0.1), 1.0);
        assert_eq!(tried, vec![100.0, 50.0, 25.0, 13.0]);
        assert_eq!(best, None);
    }

    #[test]
    fn lists_run_in_order_and_keep_the_best_pass() {
        let (tried, best) = simulate(Search::list(vec![500.0, 4000.0, 1000.0]), 2000.0);
        assert_eq!(tried, vec![500.0, 4000.0, 1000.0]);
        assert_eq!(best, Some(1000.0));
    }
}
