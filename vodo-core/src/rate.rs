//! Rate limiting: [`RateLimit`] as written in manifests, and a keyed GCRA
//! [`RateLimiter`] on `governor` whose memory stays bounded.
//!
//! Each plugin declares its own limit, so one `governor` keyed limiter is
//! kept per distinct limit (a handful in practice), and each holds one GCRA
//! cell (8 bytes plus the key) per plugin, installation or API key it has
//! seen recently. A key whose cell is indistinguishable from a fresh one
//! carries no information and is dropped by housekeeping, which runs
//! automatically once the number of tracked keys passes a bound, so millions
//! of keys coming and going cost memory only for those active within one
//! period.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock as GovClock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use parking_lot::RwLock;

use crate::decision::{Decision, DenyReason};
use crate::{InstallationId, PluginId};

/// A rate as written in a manifest: `100/minute`.
///
/// Units are `second`, `minute`, `hour` and `day`; the count is 1 to
/// 1,000,000. The whole count may be used in a burst, and it refills evenly
/// over the period (GCRA): `100/minute` allows 100 at once, then one more
/// every 600 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    count: NonZeroU32,
    per: Period,
}

/// The period of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl Period {
    /// The period's length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
            Period::Day => 86_400,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// The largest count a [`RateLimit`] accepts.
pub const MAX_RATE_COUNT: u32 = 1_000_000;

impl RateLimit {
    /// `count` per `per`.
    pub fn new(count: NonZeroU32, per: Period) -> Self {
        Self {
            count: count.min(NonZeroU32::new(MAX_RATE_COUNT).unwrap_or(NonZeroU32::MIN)),
            per,
        }
    }

    /// The number of requests per period.
    pub fn count(self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub fn period(self) -> Period {
        self.per
    }

    fn quota(self) -> Quota {
        let interval = self.per.duration() / self.count.get();
        // `interval` is at least 1 µs (1 s / 1,000,000), so `with_period` never fails.
        Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.name())
    }
}

/// Why a rate limit string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a rate limit: {reason}; write a count and a unit, such as `100/minute` (units: `second`, `minute`, `hour`, `day`)"
)]
pub struct RateLimitError {
    input: String,
    reason: &'static str,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(s: &str) -> Result<Self, RateLimitError> {
        let err = |reason| RateLimitError {
            input: s.chars().take(40).collect(),
            reason,
        };
        let (count, unit) = s.split_once('/').ok_or_else(|| err("there is no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        let count = NonZeroU32::new(count).ok_or_else(|| err("a count of zero allows nothing"))?;
        if count.get() > MAX_RATE_COUNT {
            return Err(err("the count is above 1,000,000"));
        }
        let per = match unit.trim() {
            "second" => Period::Second,
            "minute" => Period::Minute,
            "hour" => Period::Hour,
            "day" => Period::Day,
            _ => return Err(err("the unit is unknown")),
        };
        Ok(Self { count, per })
    }
}

/// What is being limited.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A plugin in one installation (the manifest's `rate_limit` applies per installation).
    Plugin(InstallationId, PluginId),
    /// One API key, by its public id.
    ApiKey(Arc<str>),
}

type Keyed<C> = Governor<
    RateKey,
    DashMapStateStore<RateKey>,
    C,
    governor::middleware::NoOpMiddleware<<C as GovClock>::Instant>,
>;

/// A keyed GCRA rate limiter with one quota per distinct [`RateLimit`].
///
/// `check` is lock-free on the hot path apart from a read lock on the small
/// map of quotas. Generic over `governor`'s clock so that tests can drive time.
pub struct RateLimiter<C: GovClock = DefaultClock> {
    clock: C,
    limiters: RwLock<HashMap<RateLimit, Arc<Keyed<C>>>>,
    max_keys: usize,
    checks: AtomicUsize,
}

impl<C: GovClock + Clone> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limiters.read().len())
            .field("tracked_keys", &self.tracked_keys())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Default for RateLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

/// How many keys may be tracked before housekeeping runs, by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl RateLimiter<DefaultClock> {
    /// A limiter on the monotonic clock, tracking up to [`DEFAULT_MAX_KEYS`]
    /// keys between housekeeping runs.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl<C: GovClock + Clone> RateLimiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::new(HashMap::new()),
            max_keys: DEFAULT_MAX_KEYS,
            checks: AtomicUsize::new(0),
        }
    }

    /// Sets how many keys may be tracked before housekeeping drops the idle ones.
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max.max(1);
        self
    }

    /// Counts one request of `key` against `limit`.
    pub fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        let outcome = {
            let limiters = self.limiters.read();
            match limiters.get(&limit) {
                Some(l) => l.check_key(key),
                None => {
                    drop(limiters);
                    let l = Arc::clone(self.limiters.write().entry(limit).or_insert_with(|| {
                        Arc::new(Governor::dashmap_with_clock(
                            limit.quota(),
                            self.clock.clone(),
                        ))
                    }));
                    l.check_key(key)
                }
            }
        };
        // Housekeeping is amortized: a cheap counter decides when to look at the size.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.housekeeping_if_needed();
        }
        match outcome {
            Ok(()) => Decision::Allow,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision::Deny {
                    reason: DenyReason::RateLimited {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                    },
                }
            }
        }
    }

    fn housekeeping_if_needed(&self) {
        if self.tracked_keys() > self.max_keys {
            self.housekeeping();
        }
    }

    /// Drops every key whose state is the same as a fresh key's, and frees
    /// the memory. Runs by itself when more than `max_keys` are tracked; a
    /// host may also call it on a timer.
    pub fn housekeeping(&self) {
        let limiters: Vec<_> = self.limiters.read().values().cloned().collect();
        for l in limiters {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// The number of keys with live state, over all limits.
    pub fn tracked_keys(&self) -> usize {
        self.limiters.read().values().map(|l| l.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn key(i: u64) -> RateKey {
        RateKey::Plugin(
            InstallationId::new("shop-1"),
            PluginId::new(format!("p{i}")),
        )
    }

    #[test]
    fn parses_and_displays() {
        for s in ["1/second", "100/minute", "5000/hour", "1000000/day"] {
            assert_eq!(s.parse::<RateLimit>().unwrap().to_string(), s);
        }
        for bad in [
            "",
            "100",
            "0/minute",
            "-1/minute",
            "100/fortnight",
            "1000001/second",
            "x/day",
        ] {
            let e = bad.parse::<RateLimit>().unwrap_err().to_string();
            assert!(e.contains("such as `100/minute`"), "{e}");
        }
    }

    #[test]
    fn burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(clock.clone());
        let limit: RateLimit = "3/second".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(rl.check(&key(1), limit), Decision::Allow);
        }
        let Decision::Deny {
            reason: DenyReason::RateLimited { retry_after_ms },
        } = rl.check(&key(1), limit)
        else {
            panic!("fourth call allowed");
        };
        assert!((1..=334).contains(&retry_after_ms), "{retry_after_ms}");
        // Another key and another limit are independent.
        assert_eq!(rl.check(&key(2), limit), Decision::Allow);
        assert_eq!(
            rl.check(&key(1), "10/second".parse().unwrap()),
            Decision::Allow
        );
        clock.advance(Duration::from_millis(334));
        assert_eq!(rl.check(&key(1), limit), Decision::Allow);
    }

    #[test]
    fn memory_stays_bounded_when_keys_come_and_go() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(clock.clone()).max_keys(10_000);
        let limit: RateLimit = "100/second".parse().unwrap();
        let mut peak = 0;
        for round in 0..100u64 {
            for i in 0..10_000 {
                let _ = rl.check(&key(round * 1_000_000 + i), limit);
            }
            peak = peak.max(rl.tracked_keys());
            clock.advance(Duration::from_secs(2));
        }
        // 1,000,000 distinct keys went through; at most two rounds' worth are ever held.
        assert!(peak <= 20_000 + 1024, "peak {peak}");
        rl.housekeeping();
        assert_eq!(rl.tracked_keys(), 0);
    }
}
