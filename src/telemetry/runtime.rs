//! How well the async runtime keeps up: how long a woken task waits for a worker thread, how busy
//! the workers are, and how long the message writers wait to run.
//!
//! Why: an ack takes the database's commit plus every wait for a core on the way (the socket's
//! read, the writer's wake-up after the commit, the socket's write). On a host whose cores are
//! shared (with the database, other services, a load generator) those waits can be the larger
//! part of a slow second, and nothing else shows them. docs/bench/notes.md has what they showed.
//!
//! Cost: one task waking 50 times a second, and a wrapper on the writer tasks (a few atomic adds
//! per poll). Connection tasks are not instrumented: a per-task monitor would add its state to
//! every idle connection and shared counters to the hottest path, and the probe's wake delay is
//! the delay any woken task sees.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_metrics::TaskMonitor;

/// How often the probe asks to be woken.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A writer's wait for a core, or a poll of it, counted as long from here.
const LONG: Duration = Duration::from_millis(5);

/// Wraps the message writer tasks (`store::writer`). One per process, as the metrics are.
pub static WRITER: LazyLock<TaskMonitor> = LazyLock::new(|| {
    let mut builder = TaskMonitor::builder();
    builder
        .with_slow_poll_threshold(LONG)
        .with_long_delay_threshold(LONG);
    builder.build()
});

/// Starts the wake-delay probe on the current runtime. It runs until the handle is aborted
/// (`Probe` does so when dropped).
pub fn probe() -> Probe {
    Probe(tokio::spawn(async {
        let late = metrics::histogram!("confab_runtime_wake_delay_seconds");
        let mut deadline = Instant::now() + PROBE_EVERY;
        loop {
            tokio::time::sleep_until(deadline).await;
            let now = Instant::now();
            late.record(now.saturating_duration_since(deadline).as_secs_f64());
            // From now, not from the missed deadline: a stall is one late wake, not a burst of
            // catching up.
            deadline = now + PROBE_EVERY;
        }
    }))
}

/// Stops the probe when dropped.
pub struct Probe(JoinHandle<()>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the runtime's and the writers' figures into the metrics. Called at scrape time, so
/// nothing runs between scrapes.
pub fn record() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let runtime = handle.metrics();
    let workers = runtime.num_workers();
    let busy: Duration = (0..workers)
        .map(|w| runtime.worker_total_busy_duration(w))
        .sum();
    metrics::gauge!("confab_runtime_workers").set(workers as f64);
    // Running totals in seconds are gauges only because `metrics` counters are integers: read
    // them with `rate()` as counters.
    metrics::gauge!("confab_runtime_busy_seconds_total").set(busy.as_secs_f64());
    metrics::gauge!("confab_runtime_tasks").set(runtime.num_alive_tasks() as f64);
    metrics::gauge!("confab_runtime_global_queue_depth").set(runtime.global_queue_depth() as f64);

    let writer = WRITER.cumulative();
    metrics::counter!("confab_writer_wakes_total").absolute(writer.total_scheduled_count);
    metrics::gauge!("confab_writer_wait_seconds_total")
        .set(writer.total_scheduled_duration.as_secs_f64());
    metrics::counter!("confab_writer_long_waits_total").absolute(writer.total_long_delay_count);
    metrics::gauge!("confab_writer_poll_seconds_total")
        .set(writer.total_poll_duration.as_secs_f64());
    metrics::counter!("confab_writer_slow_polls_total").absolute(writer.total_slow_poll_count);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wakes of the probe later than 100 ms so far, from the process's metrics.
    fn late_wakes() -> f64 {
        let text = crate::telemetry::metrics().render();
        let series = |le: &str| -> f64 {
            let prefix = format!("confab_runtime_wake_delay_seconds_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                .unwrap_or(0.0)
        };
        series("+Inf") - series("0.1")
    }

    /// A worker held for 150 ms (a blocking call, a core taken away) shows as a wake later than
    /// 100 ms: the probe measures the wait, it doesn't just tick.
    #[tokio::test(flavor = "current_thread")]
    async fn a_stalled_runtime_shows_as_a_late_wake() {
        crate::telemetry::metrics();
        let before = late_wakes();
        let _probe = probe();
        // Let the probe start and ask for its first wake.
        tokio::time::sleep(Duration::from_millis(5)).await;
        std::thread::sleep(Duration::from_millis(150));
        // Its wake, now due, runs once this task yields.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(late_wakes() > before, "no wake later than 100 ms recorded");
    }
}
