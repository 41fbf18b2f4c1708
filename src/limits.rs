//! Rate limits: per-user token buckets for events and API calls, and a per-address bucket for
//! connection attempts. Buckets are per server process; a user's sockets share them.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};

use crate::domain::UserId;
use crate::error::Error;
use crate::protocol::{Bucket, Request};

/// A token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (rate, burst) = s.split_once('/').unwrap_or((s, s));
        let number = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| "expected RATE/BURST, like 20/40".to_owned())
        };
        let (per_second, burst) = (number(rate)?, number(burst)?);
        if per_second == 0 || burst == 0 {
            return Err("rate and burst must be positive".into());
        }
        Ok(Self { per_second, burst })
    }
}

/// Rate limits per user and per address.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub send: Rate,
    pub typing: Rate,
    pub other: Rate,
    /// Members touched by membership requests (see the `rate_members` setting).
    pub members: Rate,
    pub connect_per_ip: Rate,
    pub max_sockets_per_user: usize,
    /// Uploads (`POST /api/attachments`).
    pub upload: Rate,
}

/// How often idle buckets are forgotten, so memory follows active users.
const CLEANUP: Duration = Duration::from_secs(60);

/// All the limiters. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    send: Arc<DefaultKeyedRateLimiter<UserId>>,
    typing: Arc<DefaultKeyedRateLimiter<UserId>>,
    other: Arc<DefaultKeyedRateLimiter<UserId>>,
    members: Arc<DefaultKeyedRateLimiter<UserId>>,
    connect: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    pub max_sockets_per_user: usize,
    upload: Arc<DefaultKeyedRateLimiter<UserId>>,
}

fn quota(rate: Rate) -> Quota {
    let n = |v: u32| NonZeroU32::new(v).expect("rates are validated positive");
    Quota::per_second(n(rate.per_second)).allow_burst(n(rate.burst))
}

impl Limiter {
    pub fn new(rates: &RateLimits) -> Self {
        let limiter = Self {
            send: Arc::new(RateLimiter::keyed(quota(rates.send))),
            typing: Arc::new(RateLimiter::keyed(quota(rates.typing))),
            other: Arc::new(RateLimiter::keyed(quota(rates.other))),
            members: Arc::new(RateLimiter::keyed(quota(rates.members))),
            connect: Arc::new(RateLimiter::keyed(quota(rates.connect_per_ip))),
            max_sockets_per_user: rates.max_sockets_per_user,
            upload: Arc::new(RateLimiter::keyed(quota(rates.upload))),
        };
        tokio::spawn(cleanup(
            [
                Arc::downgrade(&limiter.send),
                Arc::downgrade(&limiter.typing),
                Arc::downgrade(&limiter.other),
                Arc::downgrade(&limiter.members),
                Arc::downgrade(&limiter.upload),
            ],
            Arc::downgrade(&limiter.connect),
        ));
        limiter
    }

    /// Takes a token from `user`'s bucket, or says how long to wait.
    pub fn check(&self, user: &UserId, bucket: Bucket) -> Result<(), Error> {
        self.charge(user, bucket, 1)
    }

    /// Admits a request: a token from its bucket, and what it costs from the members budget.
    /// (A socket's event is checked against its bucket before its payload is read; its
    /// members cost is charged once it is parsed, by [`Limiter::charge_members`].)
    pub fn admit(&self, user: &UserId, request: &Request) -> Result<(), Error> {
        self.check(user, request.bucket())?;
        self.charge_members(user, request)
    }

    /// Charges a parsed request's members cost (nothing for most requests).
    pub fn charge_members(&self, user: &UserId, request: &Request) -> Result<(), Error> {
        self.charge(user, Bucket::Members, request.members_touched())
    }

    /// Takes `cost` tokens from `user`'s bucket at once, or none and says how long to wait. A
    /// cost the bucket can never hold is refused as too large.
    fn charge(&self, user: &UserId, bucket: Bucket, cost: usize) -> Result<(), Error> {
        let limiter = match bucket {
            Bucket::Send => &self.send,
            Bucket::Typing => &self.typing,
            Bucket::Other => &self.other,
            Bucket::Members => &self.members,
        };
        let Some(n) = u32::try_from(cost).ok().and_then(NonZeroU32::new) else {
            return if cost == 0 {
                Ok(())
            } else {
                Err(Error::too_large(
                    "user_ids",
                    "too many members in one request",
                ))
            };
        };
        match limiter.check_key_n(user, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                metrics::counter!("confab_rate_limited_total", "bucket" => bucket.label())
                    .increment(1);
                Err(Error::RateLimited {
                    retry_after_ms: wait_ms(&not_until),
                })
            }
            Err(insufficient) => Err(Error::too_large(
                "user_ids",
                format!("one request may touch at most {} members", insufficient.0),
            )),
        }
    }

    /// Takes a token from `user`'s upload bucket, or says how long to wait.
    pub fn check_upload(&self, user: &UserId) -> Result<(), Error> {
        take(&self.upload, user).map_err(|retry_after_ms| {
            metrics::counter!("confab_rate_limited_total", "bucket" => "Upload").increment(1);
            Error::RateLimited { retry_after_ms }
        })
    }

    /// Takes a token for a connection attempt from `ip`; `Err` holds the wait in milliseconds.
    pub fn check_connect(&self, ip: IpAddr) -> Result<(), u64> {
        take(&self.connect, &ip).inspect_err(|_| {
            metrics::counter!("confab_rate_limited_total", "bucket" => "Connect").increment(1);
        })
    }
}

fn take<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), u64> {
    limiter
        .check_key(key)
        .map_err(|not_until| wait_ms(&not_until))
}

fn wait_ms(not_until: &NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    // Round up: retrying after a rounded-down wait would be refused again.
    (wait.as_micros().div_ceil(1000) as u64).max(1)
}

type Weak<K> = std::sync::Weak<DefaultKeyedRateLimiter<K>>;

async fn cleanup(per_user: [Weak<UserId>; 5], connect: Weak<IpAddr>) {
    let mut tick = tokio::time::interval(CLEANUP);
    loop {
        tick.tick().await;
        let Some(connect) = connect.upgrade() else {
            return;
        };
        for limiter in per_user.iter().filter_map(std::sync::Weak::upgrade) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        connect.retain_recent();
        connect.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_allowed_then_refused_with_a_wait() {
        let rate = Rate {
            per_second: 2,
            burst: 3,
        };
        let limiter = Limiter::new(&RateLimits {
            send: rate,
            typing: rate,
            other: rate,
            members: rate,
            connect_per_ip: rate,
            max_sockets_per_user: 1,
            upload: rate,
        });
        let alice = UserId::parse("alice").unwrap();
        for _ in 0..3 {
            limiter.check(&alice, Bucket::Send).unwrap();
        }
        let Err(Error::RateLimited { retry_after_ms }) = limiter.check(&alice, Bucket::Send) else {
            panic!("the fourth send should be refused");
        };
        assert!((1..=500).contains(&retry_after_ms), "{retry_after_ms}");
        // Other users and other buckets are unaffected.
        limiter
            .check(&UserId::parse("bob").unwrap(), Bucket::Send)
            .unwrap();
        limiter.check(&alice, Bucket::Other).unwrap();
    }
}
