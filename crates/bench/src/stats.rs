//! What a run measures: latency histograms, counters, and the per-message ledger that turns
//! acks and deliveries into `lost`, `duplicates` and last-member latency.
//!
//! Every connection task reports into one [`Recorder`]. A plain mutex is enough: each call
//! holds it for well under a microsecond, and the generator runs on one or two threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::schedule::Schedule;

/// A latency histogram in microseconds, from 1 µs to one hour at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` into a microsecond histogram; values beyond its range count as its maximum.
pub fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record(d.as_micros().clamp(1, u64::MAX as u128) as u64);
}

/// The figures printed for one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Summarises a microsecond histogram (all zero when it is empty).
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
        Self {
            count: hist.len(),
            mean: ms(hist.mean()),
            p50: ms(hist.value_at_quantile(0.50) as f64),
            p99: ms(hist.value_at_quantile(0.99) as f64),
            p999: ms(hist.value_at_quantile(0.999) as f64),
            max: ms(hist.max() as f64),
        }
    }
}

/// How a `message:send` was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Ok,
    /// An error envelope, by its `code`; or a local reason such as `"closed"`.
    Error(String),
}

/// Where one scheduled message stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SlotState {
    #[default]
    Planned,
    Dispatched,
    Acked,
    Failed,
}

/// The ledger entry of one scheduled message.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    state: SlotState,
    /// Deliveries expected once acked: the other members' sockets.
    expected: u32,
    delivered: u32,
}

/// One measured stretch of sending: a `chat` run, or one step of a `sweep`.
struct Phase {
    id: u32,
    start: Instant,
    schedule: Schedule,
    slots: Vec<Slot>,
    dispatched: u64,
    sent: u64,
    acked: u64,
    errors: BTreeMap<String, u64>,
    delivered: u64,
    /// Deliveries still expected for acked messages; zero (with no acks outstanding) means done.
    awaited_deliveries: u64,
    /// Acks outstanding for dispatched messages.
    awaited_acks: u64,
    last_ack: Option<Instant>,
    last_delivery: Option<Instant>,
    send_lag: Histogram<u64>,
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    last_member: Histogram<u64>,
    /// Ack latency by the second its message was planned in, for a series over time.
    by_second: Vec<Histogram<u64>>,
}

/// A histogram for one second of acks: coarser (two significant digits, up to a minute), as a
/// ten-minute run keeps 600 of them.
fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// One second of a phase: how many of its messages were acked, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the phase started.
    pub t: u64,
    pub acked: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Phase {
    fn planned(&self, msg: u32) -> Instant {
        self.start + self.schedule.offset(u64::from(msg))
    }
}

/// The figures of one finished phase.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub rate: f64,
    pub duration: Duration,
    pub scheduled: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub delivered: u64,
    pub expected_deliveries: u64,
    /// Expected deliveries of acked messages that never arrived.
    pub lost: u64,
    /// Deliveries beyond the expected count of a message.
    pub duplicates: u64,
    /// Deliveries of messages that were never acked (failed or unanswered sends).
    pub unacked_delivered: u64,
    /// From the start to the last ack, or the scheduled duration if longer.
    pub ack_span: Duration,
    /// From the start to the last delivery, or the scheduled duration if longer.
    pub delivery_span: Duration,
    pub send_lag: Latency,
    pub ack: Latency,
    pub delivery: Latency,
    pub last_member: Latency,
    /// Ack latency second by second (by planned send time).
    pub series: Vec<Second>,
}

impl PhaseResult {
    pub fn acked_per_sec(&self) -> f64 {
        per_sec(self.acked, self.ack_span)
    }

    pub fn delivered_per_sec(&self) -> f64 {
        per_sec(self.delivered, self.delivery_span)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn per_sec(count: u64, span: Duration) -> f64 {
    if span.is_zero() {
        0.0
    } else {
        (count as f64 / span.as_secs_f64() * 10.0).round() / 10.0
    }
}

/// Counters that span the whole run, not one phase.
#[derive(Debug, Clone, Default)]
pub struct RunCounters {
    /// Connections that ended without the generator asking, by reason.
    pub disconnects: BTreeMap<String, u64>,
    /// `message:new` that arrived with a seq not above the previous one of its conversation on
    /// that socket.
    pub out_of_order: u64,
    /// Acks and deliveries of an earlier phase that arrived late.
    pub stale: u64,
    /// Frames the generator could not make sense of.
    pub unparsed: u64,
}

#[derive(Default)]
struct Inner {
    phase: Option<Phase>,
    run: RunCounters,
    last_activity: Option<Instant>,
}

/// Where connections report what happened; see the module docs.
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
    /// Text frames and their bytes received on all connections: atomics, not the mutex, as
    /// every frame counts.
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The recorder holds plain counters: still usable after a panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a received text frame of `bytes` bytes.
    pub fn frame_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Text frames and bytes received so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.frames_in.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
        )
    }

    /// Starts measuring phase `id`, whose messages follow `schedule` from `start`.
    pub fn begin_phase(&self, id: u32, start: Instant, schedule: Schedule) {
        let slots = vec![Slot::default(); schedule.total() as usize];
        self.lock().phase = Some(Phase {
            id,
            start,
            schedule,
            slots,
            dispatched: 0,
            sent: 0,
            acked: 0,
            errors: BTreeMap::new(),
            delivered: 0,
            awaited_deliveries: 0,
            awaited_acks: 0,
            last_ack: None,
            last_delivery: None,
            send_lag: latency_histogram(),
            ack: latency_histogram(),
            delivery: latency_histogram(),
            last_member: latency_histogram(),
            by_second: Vec::new(),
        });
    }

    /// Message `msg` was handed to a connection; `expected` sockets should receive it.
    pub fn dispatched(&self, phase: u32, msg: u32, expected: u32) {
        let mut inner = self.lock();
        let Some(p) = inner.phase.as_mut().filter(|p| p.id == phase) else {
            return;
        };
        let Some(slot) = p.slots.get_mut(msg as usize) else {
            return;
        };
        if slot.state == SlotState::Planned {
            slot.state = SlotState::Dispatched;
            slot.expected = expected;
            p.dispatched += 1;
            p.awaited_acks += 1;
        }
    }

    /// Message `msg` was written to its socket at `at`.
    pub fn sent(&self, phase: u32, msg: u32, at: Instant) {
        let mut inner = self.lock();
        let Some(p) = inner.phase.as_mut().filter(|p| p.id == phase) else {
            return;
        };
        let lag = at.saturating_duration_since(p.planned(msg));
        record(&mut p.send_lag, lag);
        p.sent += 1;
    }

    /// Message `msg` was answered at `at`.
    pub fn acked(&self, phase: u32, msg: u32, at: Instant, outcome: AckOutcome) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.last_activity = Some(at);
        let Some(p) = inner.phase.as_mut().filter(|p| p.id == phase) else {
            inner.run.stale += 1;
            return;
        };
        let planned = p.planned(msg);
        let Some(slot) = p.slots.get_mut(msg as usize) else {
            inner.run.unparsed += 1;
            return;
        };
        if slot.state != SlotState::Dispatched {
            // Answered twice, or answered after being counted as failed locally.
            return;
        }
        p.awaited_acks -= 1;
        match outcome {
            AckOutcome::Ok => {
                slot.state = SlotState::Acked;
                p.acked += 1;
                p.awaited_deliveries += u64::from(slot.expected.saturating_sub(slot.delivered));
                let latency = at.saturating_duration_since(planned);
                record(&mut p.ack, latency);
                let second = planned.saturating_duration_since(p.start).as_secs() as usize;
                if p.by_second.len() <= second {
                    p.by_second.resize_with(second + 1, second_histogram);
                }
                record(&mut p.by_second[second], latency);
                p.last_ack = Some(at);
            }
            AckOutcome::Error(code) => {
                slot.state = SlotState::Failed;
                *p.errors.entry(code).or_default() += 1;
            }
        }
    }

    /// Message `msg` reached one of its recipients at `at`.
    pub fn delivered(&self, phase: u32, msg: u32, at: Instant) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.last_activity = Some(at);
        let Some(p) = inner.phase.as_mut().filter(|p| p.id == phase) else {
            inner.run.stale += 1;
            return;
        };
        let planned = p.planned(msg);
        let Some(slot) = p.slots.get_mut(msg as usize) else {
            inner.run.unparsed += 1;
            return;
        };
        slot.delivered += 1;
        p.delivered += 1;
        p.last_delivery = Some(at);
        let latency = at.saturating_duration_since(planned);
        record(&mut p.delivery, latency);
        if slot.delivered == slot.expected {
            // The last member to get it: this is the fan-out latency of the message.
            record(&mut p.last_member, latency);
        }
        if slot.state == SlotState::Acked && slot.delivered <= slot.expected {
            p.awaited_deliveries -= 1;
        }
    }

    /// A `message:new` arrived out of seq order (or repeated a seq) on one socket.
    pub fn out_of_order(&self) {
        self.lock().run.out_of_order += 1;
    }

    /// A frame could not be decoded.
    pub fn unparsed(&self) {
        self.lock().run.unparsed += 1;
    }

    /// Something arrived that belongs to no measurement (other events, setup answers).
    pub fn activity(&self, at: Instant) {
        self.lock().last_activity = Some(at);
    }

    /// A connection ended without being asked to.
    pub fn disconnected(&self, reason: &str) {
        *self
            .lock()
            .run
            .disconnects
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Whether the current phase has nothing outstanding: every dispatched message answered and
    /// every expected delivery in. (Messages not yet dispatched don't count.)
    pub fn settled(&self) -> bool {
        self.lock()
            .phase
            .as_ref()
            .is_none_or(|p| p.awaited_acks == 0 && p.awaited_deliveries == 0)
    }

    /// How long since the last ack, delivery or other frame arrived.
    pub fn quiet_for(&self, now: Instant) -> Duration {
        self.lock()
            .last_activity
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }

    /// The run-wide counters so far.
    pub fn run_counters(&self) -> RunCounters {
        self.lock().run.clone()
    }

    /// Ends the current phase: unanswered sends count as `no_ack` errors.
    pub fn end_phase(&self) -> Option<PhaseResult> {
        let mut p = self.lock().phase.take()?;
        let duration = p.schedule.offset(p.schedule.total());
        let mut lost = 0;
        let mut duplicates = 0;
        let mut unacked_delivered = 0;
        let mut expected_deliveries = 0;
        let mut no_ack = 0;
        for slot in &p.slots {
            duplicates += u64::from(slot.delivered.saturating_sub(slot.expected));
            match slot.state {
                SlotState::Acked => {
                    expected_deliveries += u64::from(slot.expected);
                    lost += u64::from(slot.expected.saturating_sub(slot.delivered));
                }
                SlotState::Dispatched => {
                    no_ack += 1;
                    unacked_delivered += u64::from(slot.delivered);
                }
                SlotState::Failed => unacked_delivered += u64::from(slot.delivered),
                SlotState::Planned => {}
            }
        }
        if no_ack > 0 {
            *p.errors.entry("no_ack".into()).or_default() += no_ack;
        }
        let span = |last: Option<Instant>| {
            last.map_or(duration, |t| {
                t.saturating_duration_since(p.start).max(duration)
            })
        };
        Some(PhaseResult {
            rate: p.schedule.rate(),
            duration,
            scheduled: p.schedule.total(),
            sent: p.sent,
            acked: p.acked,
            errors: p.errors,
            delivered: p.delivered,
            expected_deliveries,
            lost,
            duplicates,
            unacked_delivered,
            ack_span: span(p.last_ack),
            delivery_span: span(p.last_delivery),
            send_lag: Latency::of(&p.send_lag),
            ack: Latency::of(&p.ack),
            delivery: Latency::of(&p.delivery),
            last_member: Latency::of(&p.last_member),
            series: p
                .by_second
                .iter()
                .enumerate()
                .map(|(t, h)| {
                    let l = Latency::of(h);
                    Second {
                        t: t as u64,
                        acked: l.count,
                        p50: l.p50,
                        p99: l.p99,
                        max: l.max,
                    }
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_in_milliseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000 {
            h.record(us * 10).unwrap(); // 10 µs … 10 ms
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert!((l.mean - 5.005).abs() < 0.01, "{l:?}");
        assert_eq!(Latency::of(&latency_histogram()).count, 0);
    }

    #[test]
    fn out_of_range_values_saturate() {
        let mut h = latency_histogram();
        record(&mut h, Duration::from_secs(7200));
        record(&mut h, Duration::ZERO);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn ledger_counts_loss_duplicates_and_errors() {
        let r = Recorder::new();
        let start = Instant::now();
        r.begin_phase(1, start, Schedule::new(100.0, Duration::from_millis(40)));
        let t = start + Duration::from_millis(50);
        for msg in 0..4 {
            r.dispatched(1, msg, 2);
            r.sent(1, msg, t);
        }
        assert!(!r.settled());
        // 0: acked, both deliveries (one before the ack).
        r.delivered(1, 0, t);
        r.acked(1, 0, t, AckOutcome::Ok);
        r.delivered(1, 0, t);
        // 1: acked, one delivery lost, then a duplicate of the other.
        r.acked(1, 1, t, AckOutcome::Ok);
        r.delivered(1, 1, t);
        // 2: refused.
        r.acked(1, 2, t, AckOutcome::Error("rate_limited".into()));
        // 3: never answered, but delivered once.
        r.delivered(1, 3, t);
        // A late ack of another phase.
        r.acked(0, 0, t, AckOutcome::Ok);
        assert!(!r.settled());

        let result = r.end_phase().unwrap();
        assert_eq!(result.scheduled, 4);
        assert_eq!((result.sent, result.acked), (4, 2));
        assert_eq!(result.expected_deliveries, 4);
        assert_eq!(result.delivered, 4);
        assert_eq!(result.lost, 1);
        assert_eq!(result.duplicates, 0);
        assert_eq!(result.unacked_delivered, 1);
        assert_eq!(result.errors.get("rate_limited"), Some(&1));
        assert_eq!(result.errors.get("no_ack"), Some(&1));
        assert_eq!(result.error_count(), 2);
        assert_eq!(result.last_member.count, 1);
        assert_eq!(r.run_counters().stale, 1);
        assert!(r.settled(), "no phase, nothing outstanding");
    }

    #[test]
    fn settles_when_everything_arrived() {
        let r = Recorder::new();
        let start = Instant::now();
        r.begin_phase(3, start, Schedule::new(10.0, Duration::from_millis(100)));
        r.dispatched(3, 0, 1);
        r.acked(3, 0, start, AckOutcome::Ok);
        assert!(!r.settled());
        r.delivered(3, 0, start);
        assert!(r.settled());
        r.delivered(3, 0, start);
        let result = r.end_phase().unwrap();
        assert_eq!((result.lost, result.duplicates), (0, 1));
    }

    #[test]
    fn rates_use_the_longer_of_schedule_and_arrivals() {
        let r = Recorder::new();
        let start = Instant::now();
        r.begin_phase(1, start, Schedule::new(10.0, Duration::from_secs(1)));
        for msg in 0..10 {
            r.dispatched(1, msg, 0);
            r.acked(1, msg, start + Duration::from_secs(2), AckOutcome::Ok);
        }
        let result = r.end_phase().unwrap();
        assert_eq!(result.acked_per_sec(), 5.0);
        assert_eq!(result.delivered_per_sec(), 0.0);
    }
}
