//! Output: the JSON line on stdout (and appended to `--json-out`), and the human summary on
//! stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::stats::{Latency, PhaseResult, RunCounters};

/// Where results go.
pub struct Reporter {
    pub json_out: Option<PathBuf>,
}

impl Reporter {
    /// Prints `line` as one compact JSON line on stdout and appends it to `--json-out`.
    pub fn emit(&self, line: &Value) -> anyhow::Result<()> {
        let text = line.to_string();
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}")?;
            stdout.flush()?;
        }
        if let Some(path) = &self.json_out {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// `{"count":…, "mean":…, "p50":…, "p99":…, "p999":…, "max":…}` in milliseconds.
pub fn latency(l: &Latency) -> Value {
    serde_json::to_value(l).expect("plain numbers serialize")
}

/// A map of counts as a JSON object.
pub fn counts(map: &BTreeMap<String, u64>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// The figures of one sending phase, as JSON fields.
pub fn phase_fields(r: &PhaseResult, run: &RunCounters) -> Map<String, Value> {
    let value = json!({
        "rate": round(r.rate, 1),
        "duration_s": round(r.duration.as_secs_f64(), 3),
        "scheduled": r.scheduled,
        "sent": r.sent,
        "acked": r.acked,
        "acked_per_s": r.acked_per_sec(),
        "delivered": r.delivered,
        "delivered_per_s": r.delivered_per_sec(),
        "expected_deliveries": r.expected_deliveries,
        "lost": r.lost,
        "duplicates": r.duplicates,
        "unacked_delivered": r.unacked_delivered,
        "out_of_order": run.out_of_order,
        "errors": counts(&r.errors),
        "ack_ms": latency(&r.ack),
        "delivery_ms": latency(&r.delivery),
        "last_member_ms": latency(&r.last_member),
        "send_lag_ms": latency(&r.send_lag),
        "disconnects": counts(&run.disconnects),
        "stale": run.stale,
        "unparsed": run.unparsed,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// Whether a phase came out clean: nothing lost, duplicated or refused, nobody disconnected.
pub fn phase_ok(r: &PhaseResult, run: &RunCounters) -> bool {
    r.lost == 0 && r.duplicates == 0 && r.error_count() == 0 && run.disconnects.is_empty()
}

/// The human summary of a phase, a few lines for stderr.
pub fn phase_summary(title: &str, r: &PhaseResult, run: &RunCounters) -> String {
    let l = |l: &Latency| {
        format!(
            "p50 {} p99 {} p99.9 {} max {} ms",
            l.p50, l.p99, l.p999, l.max
        )
    };
    let mut out = format!(
        "{title}: {} msgs/s for {:.1} s: {} sent, {} acked ({}/s), {} delivered ({}/s), lost {}, \
         out of order {}\n  ack       {}\n  delivery  {}\n  last recv {}\n  send lag  {}",
        round(r.rate, 1),
        r.duration.as_secs_f64(),
        r.sent,
        r.acked,
        r.acked_per_sec(),
        r.delivered,
        r.delivered_per_sec(),
        r.lost,
        run.out_of_order,
        l(&r.ack),
        l(&r.delivery),
        l(&r.last_member),
        l(&r.send_lag),
    );
    if !r.errors.is_empty() {
        out += &format!(
            "\n  errors: {}",
            crate::population::format_counts(&r.errors)
        );
    }
    if r.duplicates > 0 || r.unacked_delivered > 0 {
        out += &format!(
            "\n  duplicates {}, deliveries of unacked messages {}",
            r.duplicates, r.unacked_delivered
        );
    }
    if !run.disconnects.is_empty() {
        out += &format!(
            "\n  disconnects: {}",
            crate::population::format_counts(&run.disconnects)
        );
    }
    out
}

/// `x` rounded to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result() -> PhaseResult {
        let l = Latency {
            count: 10,
            mean: 1.5,
            p50: 1.2,
            p99: 4.25,
            p999: 4.25,
            max: 4.3,
        };
        PhaseResult {
            rate: 100.0,
            duration: Duration::from_secs(1),
            scheduled: 100,
            sent: 100,
            acked: 99,
            errors: BTreeMap::from([("rate_limited".to_owned(), 1)]),
            delivered: 891,
            expected_deliveries: 891,
            lost: 0,
            duplicates: 0,
            unacked_delivered: 0,
            ack_span: Duration::from_secs(1),
            delivery_span: Duration::from_secs(1),
            send_lag: l,
            ack: l,
            delivery: l,
            last_member: l,
            series: Vec::new(),
        }
    }

    #[test]
    fn phase_json_has_the_figures() {
        let run = RunCounters {
            out_of_order: 2,
            ..RunCounters::default()
        };
        let fields = phase_fields(&result(), &run);
        assert_eq!(fields["acked_per_s"], json!(99.0));
        assert_eq!(fields["lost"], json!(0));
        assert_eq!(fields["out_of_order"], json!(2));
        assert_eq!(fields["errors"], json!({"rate_limited": 1}));
        assert_eq!(
            fields["ack_ms"],
            json!({"count": 10, "mean": 1.5, "p50": 1.2, "p99": 4.25, "p999": 4.25, "max": 4.3})
        );
        // One line, keys in a stable order.
        let line = Value::Object(fields).to_string();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(r#"{"rate":100.0,"duration_s":1.0,"scheduled":100"#),
            "{line}"
        );
        assert!(
            !phase_ok(&result(), &run),
            "an error makes the phase not ok"
        );
    }

    #[test]
    fn summary_mentions_errors() {
        let text = phase_summary("chat", &result(), &RunCounters::default());
        assert!(text.contains("p99 4.25"), "{text}");
        assert!(text.contains("errors: 1 rate_limited"), "{text}");
    }

    #[test]
    fn rounds() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(99.95, 1), 100.0);
    }
}
