//! The open-loop send schedule: message `i` is due `i / rate` seconds after the start, whatever
//! happened to the messages before it. Latencies are measured from these planned instants, so a
//! server (or a generator) that falls behind shows up as latency instead of as a slower send
//! rate (no "coordinated omission").

use std::time::Duration;

/// `total` sends spread evenly at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    total: u64,
}

impl Schedule {
    /// The sends of `duration` at `rate` per second (at least one when both are positive).
    pub fn new(rate: f64, duration: Duration) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        let total = (rate * duration.as_secs_f64()).floor() as u64;
        Self {
            rate,
            total: if duration.is_zero() { 0 } else { total.max(1) },
        }
    }

    /// Sends per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How many sends the schedule holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When send `i` is due, counted from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * 1e9 / self.rate) as u64)
    }

    /// How many sends are due `elapsed` after the start: those whose offset is at most
    /// `elapsed`, capped at the total. Consistent with [`offset`](Self::offset) by
    /// construction, so the dispatcher never skips or repeats a send.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let mut n = ((elapsed.as_secs_f64() * self.rate).floor() as u64 + 1).min(self.total);
        // Float rounding can put the estimate one off either way; settle it against offset().
        while n < self.total && self.offset(n) <= elapsed {
            n += 1;
        }
        while n > 0 && self.offset(n - 1) > elapsed {
            n -= 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_sends_evenly() {
        let s = Schedule::new(1000.0, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(500), Duration::from_millis(500));
        assert_eq!(s.offset(1999), Duration::from_millis(1999));
    }

    #[test]
    fn due_counts_match_offsets() {
        for rate in [1.0, 3.0, 7.5, 1000.0, 33_333.0] {
            let s = Schedule::new(rate, Duration::from_secs(3));
            let mut previous = 0;
            for ms in (0..3500).step_by(7) {
                let elapsed = Duration::from_millis(ms);
                let due = s.due_by(elapsed);
                assert!(due >= previous, "due counts never go back");
                assert!(due <= s.total());
                if due > 0 {
                    assert!(s.offset(due - 1) <= elapsed, "rate {rate} at {ms} ms");
                }
                if due < s.total() {
                    assert!(s.offset(due) > elapsed, "rate {rate} at {ms} ms");
                }
                previous = due;
            }
            assert_eq!(s.due_by(Duration::from_secs(10)), s.total());
        }
    }

    #[test]
    fn the_first_send_is_due_at_once() {
        let s = Schedule::new(10.0, Duration::from_secs(1));
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_millis(99)), 1);
        assert_eq!(s.due_by(Duration::from_millis(100)), 2);
    }

    #[test]
    fn tiny_schedules() {
        assert_eq!(Schedule::new(0.5, Duration::from_secs(1)).total(), 1);
        assert_eq!(Schedule::new(100.0, Duration::ZERO).total(), 0);
        assert_eq!(
            Schedule::new(100.0, Duration::ZERO).due_by(Duration::from_secs(1)),
            0
        );
    }
}
