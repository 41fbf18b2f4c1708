//! Reads a confab server's `GET /metrics` (Prometheus text) so a soak can line each second up with
//! how the server's runtime kept up: how busy its workers were and how late woken tasks ran.
//! A server without the endpoint (the Node peer) simply has no such figures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::round;

/// One scrape: each series (`name` or `name{labels}`, as written) and its value.
#[derive(Default)]
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// Parses Prometheus text: `series value` lines; comments and anything else are skipped.
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self(values)
    }

    /// Adds another server's scrape (several --url nodes): every series summed.
    pub fn add(&mut self, other: Scrape) {
        for (series, value) in other.0 {
            *self.0.entry(series).or_default() += value;
        }
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// A histogram's cumulative buckets, by upper bound in seconds (+Inf last).
    fn buckets(&self, histogram: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{histogram}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(series, &count)| {
                let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// Of the samples `histogram` took since `before`: the bounds (seconds) of the bucket of the
    /// largest, and how many were over `over` (a bucket bound). None when it took none.
    fn largest_since(
        &self,
        before: &Scrape,
        histogram: &str,
        over: f64,
    ) -> Option<((f64, f64), u64)> {
        let then = before.buckets(histogram);
        let mut below = 0.0;
        let mut lower = 0.0;
        let mut largest = None;
        let mut over_count = 0.0;
        for (le, cumulative) in self.buckets(histogram) {
            // Cumulative counts: a bucket's own samples are its count less the one below's.
            let cumulative = cumulative - then.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            if cumulative > below {
                largest = Some((lower, le));
            }
            if le > over {
                over_count += cumulative - below;
            }
            below = cumulative;
            lower = le;
        }
        Some((largest?, over_count as u64))
    }

    /// What happened between `before` and this scrape, `wall` apart, as fields of a soak's
    /// per-second entry. Empty when the server has no runtime figures.
    pub fn since(&self, before: &Scrape, wall: Duration) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        let delta = |series: &str| Some(self.get(series)? - before.get(series).unwrap_or(0.0));
        let wall = wall.as_secs_f64().max(1e-9);
        if let Some(busy) = delta("confab_runtime_busy_seconds_total") {
            // Of one core, summed over the workers, as the CPU figure is.
            out.insert(
                "runtime_busy_pct".into(),
                json!(round(busy / wall * 100.0, 1)),
            );
        }
        // The latest wake and the slowest send in this second, as the bounds of their buckets
        // (ms; null: over the last bound).
        let ms = |s: f64| s.is_finite().then(|| round(s * 1000.0, 1));
        if let Some(((lower, upper), over)) =
            self.largest_since(before, "confab_runtime_wake_delay_seconds", 0.010)
        {
            out.insert("wake_ms".into(), json!([ms(lower), ms(upper)]));
            out.insert("wakes_over_10ms".into(), json!(over));
        }
        if let Some(((lower, upper), over)) =
            self.largest_since(before, "confab_send_seconds", 0.050)
        {
            out.insert("server_send_ms".into(), json!([ms(lower), ms(upper)]));
            out.insert("server_sends_over_50ms".into(), json!(over));
        }
        if let (Some(wakes), Some(waited)) = (
            delta("confab_writer_wakes_total"),
            delta("confab_writer_wait_seconds_total"),
        ) && wakes > 0.0
        {
            out.insert(
                "writer_wait_ms_mean".into(),
                json!(round(waited / wakes * 1000.0, 3)),
            );
        }
        if let Some(long) = delta("confab_writer_long_waits_total") {
            out.insert("writer_long_waits".into(), json!(long as u64));
        }
        out
    }
}

/// `GET /metrics` from `addr`, within `limit`. None when the server has no such endpoint or
/// didn't answer in time.
pub async fn fetch(addr: SocketAddr, limit: Duration) -> Option<Scrape> {
    let get = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let answer = String::from_utf8(answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| Scrape::parse(body))
    };
    tokio::time::timeout(limit, get).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(busy: f64, buckets: &[(&str, f64)]) -> Scrape {
        let mut text = format!("# TYPE x gauge\nconfab_runtime_busy_seconds_total {busy}\n");
        for (le, n) in buckets {
            text += &format!("confab_runtime_wake_delay_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        Scrape::parse(&text)
    }

    #[test]
    fn a_second_reports_its_latest_wake_and_the_busy_share() {
        let before = scrape(
            10.0,
            &[
                ("0.001", 40.0),
                ("0.01", 50.0),
                ("0.1", 50.0),
                ("+Inf", 50.0),
            ],
        );
        // 45 on time, 3 between 1 and 10 ms, 2 between 10 and 100 ms.
        let after = scrape(
            11.5,
            &[
                ("0.001", 85.0),
                ("0.01", 98.0),
                ("0.1", 100.0),
                ("+Inf", 100.0),
            ],
        );
        let d = after.since(&before, Duration::from_secs(1));
        assert_eq!(d["runtime_busy_pct"], json!(150.0));
        assert_eq!(d["wake_ms"], json!([10.0, 100.0]));
        assert_eq!(d["wakes_over_10ms"], json!(2));
    }

    #[test]
    fn a_second_reports_its_slowest_send_inside_the_server() {
        let text = |fast: f64, slow: f64| {
            format!(
                "confab_send_seconds_bucket{{le=\"0.05\"}} {fast}\nconfab_send_seconds_bucket{{le=\"0.1\"}} {}\nconfab_send_seconds_bucket{{le=\"+Inf\"}} {}\n",
                fast + slow,
                fast + slow
            )
        };
        let (before, after) = (
            Scrape::parse(&text(10.0, 0.0)),
            Scrape::parse(&text(20.0, 3.0)),
        );
        let d = after.since(&before, Duration::from_secs(1));
        assert_eq!(d["server_send_ms"], json!([50.0, 100.0]));
        assert_eq!(d["server_sends_over_50ms"], json!(3));
        assert!(!d.contains_key("wake_ms"), "no wakes were scraped");
    }

    #[test]
    fn a_wake_past_the_last_bound_has_no_upper_bound() {
        let before = scrape(0.0, &[("0.5", 1.0), ("1", 1.0), ("+Inf", 1.0)]);
        let after = scrape(0.0, &[("0.5", 1.0), ("1", 1.0), ("+Inf", 2.0)]);
        let d = after.since(&before, Duration::from_secs(1));
        assert_eq!(d["wake_ms"], json!([1000.0, null]));
        assert_eq!(d["wakes_over_10ms"], json!(1));
    }

    #[test]
    fn a_server_without_the_figures_adds_nothing() {
        let d = Scrape::parse("other 1\n").since(&Scrape::default(), Duration::from_secs(1));
        assert!(d.is_empty());
    }
}
