//! Reads a confab server's `GET /metrics` (Prometheus text) so a soak can line each second up with
//! how the server's runtime kept up: how busy its workers were and how late woken tasks ran.
//! A server without the endpoint (the Node peer) simply has no such figures.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One scrape: each series (`name` or `name{labels}`, as written) and its value.
#[derive(Default, Clone)]
pub struct Scrape(HashMap<String, f64>);

const WAKE_BUCKET: &str = "confab_runtime_wake_delay_seconds_bucket{le=\"";

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

    /// The wake-delay histogram's cumulative buckets, by upper bound in seconds (+Inf last).
    fn wake_buckets(&self) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(series, &count)| {
                let le = series.strip_prefix(WAKE_BUCKET)?.strip_suffix("\"}")?;
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
                json!(round1(busy / wall * 100.0)),
            );
        }
        // The latest wake in this second, as the bounds of its bucket (ms; null: over the last).
        let (now, then) = (self.wake_buckets(), before.wake_buckets());
        let per_bucket: Vec<(f64, f64)> = now
            .iter()
            .map(|&(le, count)| {
                let was = then.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
                (le, count - was)
            })
            .collect();
        // Cumulative counts: a bucket's own wakes are its count less the one below's.
        let mut below = 0.0;
        let mut latest = None;
        let mut over_10ms = 0.0;
        for (i, &(le, cumulative)) in per_bucket.iter().enumerate() {
            if cumulative > below {
                let lower = if i == 0 { 0.0 } else { per_bucket[i - 1].0 };
                latest = Some((lower, le));
            }
            if le > 0.010 {
                over_10ms += cumulative - below;
            }
            below = cumulative;
        }
        if let Some((lower, upper)) = latest {
            let ms = |s: f64| s.is_finite().then(|| round1(s * 1000.0));
            out.insert("wake_ms".into(), json!([ms(lower), ms(upper)]));
            out.insert("wakes_over_10ms".into(), json!(over_10ms as u64));
        }
        if let (Some(wakes), Some(waited)) = (
            delta("confab_writer_wakes_total"),
            delta("confab_writer_wait_seconds_total"),
        ) && wakes > 0.0
        {
            out.insert(
                "writer_wait_ms_mean".into(),
                json!(round3(waited / wakes * 1000.0)),
            );
        }
        if let Some(long) = delta("confab_writer_long_waits_total") {
            out.insert("writer_long_waits".into(), json!(long as u64));
        }
        out
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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
