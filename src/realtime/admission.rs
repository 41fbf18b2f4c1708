//! Who may open a Socket.IO session: a per-address rate of new sessions, and caps on the sessions that
//! haven't authenticated yet, per address and in all.
//!
//! A session costs memory before anyone knows who it is, so opening one is limited before its
//! `CONNECT`, where the token is checked (and the per-address connect limit applies too). A session
//! keeps only its [`Admitted`] ticket until its socket connects: the client's address and its place in
//! the count, given back when the ticket drops (the socket connected, or the session ended).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::Rate;

/// How often idle per-address buckets are forgotten.
const CLEANUP: Duration = Duration::from_secs(60);

/// Limits on Socket.IO sessions before they authenticate.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub rate_per_ip: Rate,
    pub max_unauthenticated_per_ip: usize,
    pub max_unauthenticated: usize,
    pub connect_timeout: Duration,
}

/// The limits on new sessions. Cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    opens: DefaultKeyedRateLimiter<IpAddr>,
    unauthenticated: Mutex<Unauthenticated>,
    max_per_address: usize,
    max_total: usize,
}

/// The sessions holding a ticket, by client address and in all.
#[derive(Default)]
struct Unauthenticated {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Why a session was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address opens sessions too fast; it may try again after this many milliseconds.
    RateLimited { retry_after_ms: u64 },
    /// The address holds as many unauthenticated sessions as it may.
    AddressFull,
    /// The node holds as many unauthenticated sessions as it may.
    NodeFull,
}

/// What an unauthenticated session keeps: its client's address, and its place in the count.
pub struct Admitted {
    pub client: IpAddr,
    inner: Arc<Inner>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut waiting = self.inner.lock();
        waiting.total -= 1;
        if let Some(n) = waiting.by_address.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                waiting.by_address.remove(&self.client);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Unauthenticated> {
        self.unauthenticated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Admission {
    pub fn new(limits: &SessionLimits) -> Self {
        let n = |v: u32| NonZeroU32::new(v).expect("rates are validated positive");
        let quota = Quota::per_second(n(limits.rate_per_ip.per_second))
            .allow_burst(n(limits.rate_per_ip.burst));
        let admission = Self {
            inner: Arc::new(Inner {
                opens: RateLimiter::keyed(quota),
                unauthenticated: Mutex::default(),
                max_per_address: limits.max_unauthenticated_per_ip,
                max_total: limits.max_unauthenticated,
            }),
        };
        tokio::spawn(cleanup(Arc::downgrade(&admission.inner)));
        admission
    }

    /// Admits a session from `client`: a token from its bucket, and a place among the unauthenticated
    /// sessions, its own address's and the node's.
    pub fn admit(&self, client: IpAddr) -> Result<Admitted, Refused> {
        let refused = |refusal: Refused| {
            let reason = match refusal {
                Refused::RateLimited { .. } => "rate",
                Refused::AddressFull => "address",
                Refused::NodeFull => "node",
            };
            metrics::counter!("confab_sessions_refused_total", "reason" => reason).increment(1);
            refusal
        };
        self.inner.opens.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Rounded up: retrying after a rounded-down wait would be refused again.
            let retry_after_ms = (wait.as_micros().div_ceil(1000) as u64).max(1);
            refused(Refused::RateLimited { retry_after_ms })
        })?;
        let mut waiting = self.inner.lock();
        if waiting.total >= self.inner.max_total {
            return Err(refused(Refused::NodeFull));
        }
        let mine = waiting.by_address.entry(client).or_default();
        if *mine >= self.inner.max_per_address {
            return Err(refused(Refused::AddressFull));
        }
        *mine += 1;
        waiting.total += 1;
        Ok(Admitted {
            client,
            inner: self.inner.clone(),
        })
    }
}

async fn cleanup(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(CLEANUP);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.opens.retain_recent();
        inner.opens.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(rate: (u32, u32), per_address: usize, total: usize) -> Admission {
        Admission::new(&SessionLimits {
            rate_per_ip: Rate {
                per_second: rate.0,
                burst: rate.1,
            },
            max_unauthenticated_per_ip: per_address,
            max_unauthenticated: total,
            connect_timeout: Duration::from_secs(5),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn an_address_opens_at_its_rate() {
        let a = admission((1, 2), 100, 100);
        let _t1 = a.admit(ip("10.0.0.1")).unwrap();
        let _t2 = a.admit(ip("10.0.0.1")).unwrap();
        let Err(Refused::RateLimited { retry_after_ms }) = a.admit(ip("10.0.0.1")) else {
            panic!("the third session in a burst of two is refused");
        };
        assert!((1..=1000).contains(&retry_after_ms), "{retry_after_ms}");
        a.admit(ip("10.0.0.2"))
            .expect("another address has its own bucket");
    }

    #[tokio::test]
    async fn unauthenticated_sessions_are_capped_per_address_and_in_all_until_their_tickets_drop() {
        let a = admission((1000, 1000), 2, 3);
        let t1 = a.admit(ip("10.0.0.1")).unwrap();
        let t2 = a.admit(ip("10.0.0.1")).unwrap();
        assert!(matches!(a.admit(ip("10.0.0.1")), Err(Refused::AddressFull)));
        let t3 = a.admit(ip("10.0.0.2")).unwrap();
        assert!(matches!(a.admit(ip("10.0.0.3")), Err(Refused::NodeFull)));
        drop(t1);
        let t4 = a.admit(ip("10.0.0.1")).expect("a place was given back");
        drop((t2, t3, t4));
        let waiting = a.inner.lock();
        assert_eq!(waiting.total, 0);
        assert!(waiting.by_address.is_empty(), "no entry is left behind");
    }
}
