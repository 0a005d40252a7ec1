//! Rate limiting: [`RateLimit`] as written in manifests, the
//! [`RateLimiter`] trait every part of the host counts requests through, a
//! do-nothing [`NoRateLimit`], and [`MemoryRateLimiter`], the in-memory GCRA
//! reference implementation (on `governor`, an implementation detail).
//!
//! A plugin's manifest limit applies per installation to **one** budget,
//! [`RateKey::Plugin`]: its API keys' requests ([`Host::authorize`](crate::Host::authorize))
//! and its own host calls inside the sandbox both count against it, so a
//! plugin never gets more than its limit by using both doors.
//!
//! [`MemoryRateLimiter`] keeps one GCRA cell (8 bytes plus the key) per key
//! it has seen, up to a hard bound ([`DEFAULT_MAX_KEYS`]). At the bound,
//! keys whose bucket is full again are evicted first: a full bucket is what
//! a new key would get, so evicting it hands out no extra quota. When none is
//! full, a new key is refused ([`DenyReason::RateLimiterFull`]): the limiter
//! fails closed rather than forget a key that is still being limited.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use governor::clock::{Clock as GovClock, DefaultClock, Reference};
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter as Governor};
use parking_lot::RwLock;

use crate::decision::{Decision, DenyReason};
use crate::{Error, InstallationId, PluginId, Result};

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
    /// `count` per `per`; a count above [`MAX_RATE_COUNT`] is refused.
    pub fn new(count: NonZeroU32, per: Period) -> Result<Self, RateLimitError> {
        if count.get() > MAX_RATE_COUNT {
            return Err(RateLimitError {
                input: format!("{count}/{}", per.name()),
                reason: "the count is above 1,000,000",
            });
        }
        Ok(Self { count, per })
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
    /// A plugin in one installation: the manifest's `rate_limit`, shared by
    /// the plugin's API keys and its host calls.
    Plugin(InstallationId, PluginId),
    /// One API key, by its public id.
    ApiKey(Arc<str>),
}

/// Counts requests against rate limits. Implementations must pass
/// `conformance::rate_limiter` (feature `conformance`); a shared backend
/// (Redis, ...) implements this to limit across processes.
///
/// ```
/// use vodo_core::rate::{MemoryRateLimiter, RateKey, RateLimit, RateLimiter};
/// use vodo_core::{InstallationId, PluginId};
///
/// let limiter: Box<dyn RateLimiter> = Box::new(MemoryRateLimiter::new());
/// let key = RateKey::Plugin(InstallationId::new("shop-1"), PluginId::new("notifier"));
/// let limit: RateLimit = "2/minute".parse()?;
/// assert!(limiter.check(&key, limit).is_allowed());
/// assert!(limiter.check(&key, limit).is_allowed());
/// // The third within the minute is denied, with when to retry.
/// assert!(!limiter.check(&key, limit).is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait RateLimiter: fmt::Debug + Send + Sync {
    /// Counts one request of `key` against `limit`. A denial says when a
    /// retry can succeed ([`DenyReason::RateLimited`]), or that the limiter
    /// cannot track another key ([`DenyReason::RateLimiterFull`]). A denied
    /// request uses up nothing.
    fn check(&self, key: &RateKey, limit: RateLimit) -> Decision;
}

impl<T: RateLimiter + ?Sized> RateLimiter for &T {
    fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        (**self).check(key, limit)
    }
}

impl<T: RateLimiter + ?Sized> RateLimiter for Box<T> {
    fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        (**self).check(key, limit)
    }
}

impl<T: RateLimiter + ?Sized> RateLimiter for Arc<T> {
    fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        (**self).check(key, limit)
    }
}

/// A limiter that allows everything: for hosts that limit elsewhere (a
/// gateway in front), and for benchmarks of what limiting costs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRateLimit;

impl RateLimiter for NoRateLimit {
    fn check(&self, _: &RateKey, _: RateLimit) -> Decision {
        Decision::Allow
    }
}

/// The most keys a [`MemoryRateLimiter`] tracks, by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A theoretical arrival time that no request fits under: what a new key
/// gets when the limiter is full, so that `governor` denies it. Half the
/// range, not all of it: `governor` adds it to the limiter's start (the
/// clock's nanoseconds, which is the machine's uptime for the default
/// clock) to say when to retry, and `u64::MAX` overflowed there (a panic in
/// debug builds, a wrapped "retry in 1 ms" in release). 2^63 ns is 292
/// years, still far past any period, so the refusal reads as
/// [`DenyReason::RateLimiterFull`].
const REFUSED: u64 = u64::MAX / 2;

/// The GCRA cells of one limit: `governor` runs its algorithm over this
/// store, and the limiter reads the cells to find the full buckets.
#[derive(Clone)]
struct Cells {
    map: Arc<DashMap<RateKey, AtomicU64, hashbrown::DefaultHashBuilder>>,
    tracked: Arc<AtomicUsize>,
    max: usize,
}

impl StateStore for Cells {
    type Key = RateKey;

    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(cell) = self.map.get(key) {
            return measure(&cell, &f);
        }
        // A new key takes a place under the bound before it gets a cell.
        if self.tracked.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.tracked.fetch_sub(1, Ordering::AcqRel);
            return f(Some(Nanos::from(REFUSED))).map(|(t, _)| t);
        }
        let cell = match self.map.entry(key.clone()) {
            Entry::Occupied(e) => {
                // Another thread made it first.
                self.tracked.fetch_sub(1, Ordering::AcqRel);
                e.into_ref()
            }
            Entry::Vacant(e) => e.insert(AtomicU64::new(0)),
        };
        measure(&cell, &f)
    }
}

/// One GCRA step on one cell (0 is "never seen", as in `governor`'s own store).
fn measure<T, E>(
    cell: &AtomicU64,
    f: &impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    let arrival = |v: u64| (v != 0).then(|| Nanos::from(v));
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let (result, next) = f(arrival(prev))?;
        match cell.compare_exchange_weak(prev, next.into(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(result),
            Err(now) => prev = now,
        }
    }
}

type Keyed<C> =
    Governor<RateKey, Cells, C, governor::middleware::NoOpMiddleware<<C as GovClock>::Instant>>;

/// One limit's `governor` limiter, its cells, and a time base no earlier
/// than the limiter's own (so a cell is only ever judged full when it is).
struct PerLimit<C: GovClock> {
    governor: Keyed<C>,
    cells: Cells,
    start: C::Instant,
    period: Nanos,
}

/// The in-memory reference [`RateLimiter`]: GCRA per key, one `governor`
/// limiter per distinct [`RateLimit`], a hard bound on tracked keys.
///
/// `check` is lock-free on the hot path apart from a read lock on the small
/// map of limits, and allocates nothing once a key is known. Generic over
/// `governor`'s clock so that tests can drive time.
pub struct MemoryRateLimiter<C: GovClock + Clone + Send + Sync = DefaultClock> {
    clock: C,
    limiters: RwLock<hashbrown::HashMap<RateLimit, Arc<PerLimit<C>>>>,
    tracked: Arc<AtomicUsize>,
    max_keys: usize,
    /// Before this (nanoseconds from `epoch`), a full limiter does not look
    /// for full buckets again: a flood of new keys must not rescan every cell.
    next_scan: AtomicU64,
    epoch: C::Instant,
}

impl<C: GovClock + Clone + Send + Sync> fmt::Debug for MemoryRateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("limits", &self.limiters.read().len())
            .field("tracked_keys", &self.tracked_keys())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl Default for MemoryRateLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter<DefaultClock> {
    /// A limiter on the monotonic clock, tracking up to [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl<C: GovClock + Clone + Send + Sync> MemoryRateLimiter<C> {
    /// A limiter on the given clock, tracking up to [`DEFAULT_MAX_KEYS`] keys.
    pub fn with_clock(clock: C) -> Self {
        let epoch = clock.now();
        Self {
            clock,
            limiters: RwLock::new(hashbrown::HashMap::new()),
            tracked: Arc::new(AtomicUsize::new(0)),
            max_keys: DEFAULT_MAX_KEYS,
            next_scan: AtomicU64::new(0),
            epoch,
        }
    }

    /// Sets the most keys tracked at once; `max` must be at least 1.
    pub fn max_keys(mut self, max: usize) -> Result<Self> {
        if max == 0 {
            return Err(Error::Invalid(
                "`max_keys` of a rate limiter must be at least 1: with none, every request would be refused".into(),
            ));
        }
        self.max_keys = max;
        Ok(self)
    }

    fn limiter(&self, limit: RateLimit) -> Arc<PerLimit<C>> {
        if let Some(l) = self.limiters.read().get(&limit) {
            return Arc::clone(l);
        }
        let mut limiters = self.limiters.write();
        let made = limiters.entry(limit).or_insert_with(|| {
            let cells = Cells {
                map: Arc::new(DashMap::with_hasher(
                    hashbrown::DefaultHashBuilder::default(),
                )),
                tracked: Arc::clone(&self.tracked),
                max: self.max_keys,
            };
            let governor = Governor::new(limit.quota(), cells.clone(), self.clock.clone());
            // Taken after `governor` took its own, so never earlier than it.
            let start = self.clock.now();
            Arc::new(PerLimit {
                governor,
                cells,
                start,
                period: Nanos::from(limit.period().duration()),
            })
        });
        Arc::clone(made)
    }

    /// Evicts every key whose bucket is full again (what a fresh key would
    /// get, so no quota is handed out) and frees their memory. Runs by
    /// itself when the limiter is at its bound; a host may also call it on a
    /// timer. Returns how many keys were evicted.
    pub fn housekeeping(&self) -> usize {
        let limiters: Vec<_> = self.limiters.read().values().cloned().collect();
        let mut evicted = 0;
        for l in limiters {
            let now: u64 = self.clock.now().duration_since(l.start).into();
            let before = l.cells.map.len();
            l.cells
                .map
                .retain(|_, tat| tat.load(Ordering::Acquire) > now);
            let gone = before.saturating_sub(l.cells.map.len());
            self.tracked.fetch_sub(gone, Ordering::AcqRel);
            l.cells.map.shrink_to_fit();
            evicted += gone;
        }
        evicted
    }

    /// The number of keys tracked, over all limits.
    pub fn tracked_keys(&self) -> usize {
        self.tracked.load(Ordering::Acquire)
    }

    /// At the bound, with `key` new: evict full buckets (at most once per
    /// `rescan` while nothing frees up) and say whether there is room now.
    fn make_room(&self, l: &PerLimit<C>, key: &RateKey) -> bool {
        if self.tracked_keys() < self.max_keys || l.cells.map.contains_key(key) {
            return true;
        }
        let now: u64 = self.clock.now().duration_since(self.epoch).into();
        if now >= self.next_scan.load(Ordering::Acquire) {
            let freed = self.housekeeping();
            if freed == 0 {
                // Nothing was full: do not scan again for 10 ms.
                self.next_scan.store(now + 10_000_000, Ordering::Release);
            }
        }
        self.tracked_keys() < self.max_keys
    }
}

impl<C: GovClock + Clone + Send + Sync> MemoryRateLimiter<C> {
    /// One GCRA step of `key` under `l`.
    fn decide(&self, l: &PerLimit<C>, key: &RateKey) -> Decision {
        let full = || Decision::Deny {
            reason: DenyReason::RateLimiterFull {
                max_keys: self.max_keys as u64,
            },
        };
        match l.governor.check_key(key) {
            Ok(()) => Decision::Allow,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                // Only the bound (a new key refused by the store) waits past a period.
                if Nanos::from(wait) > l.period {
                    return full();
                }
                Decision::Deny {
                    reason: DenyReason::RateLimited {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                    },
                }
            }
        }
    }
}

impl<C: GovClock + Clone + Send + Sync> RateLimiter for MemoryRateLimiter<C> {
    fn check(&self, key: &RateKey, limit: RateLimit) -> Decision {
        // The hot path: a known limit, with room or a known key, under the read lock.
        if let Some(l) = self.limiters.read().get(&limit)
            && (self.tracked_keys() < self.max_keys || l.cells.map.contains_key(key))
        {
            return self.decide(l, key);
        }
        let l = self.limiter(limit);
        if !self.make_room(&l, key) {
            return Decision::Deny {
                reason: DenyReason::RateLimiterFull {
                    max_keys: self.max_keys as u64,
                },
            };
        }
        self.decide(&l, key)
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
    fn the_reference_limiter_passes_the_conformance_suite() {
        crate::conformance::rate_limiter(&MemoryRateLimiter::new());
    }

    #[test]
    fn burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let rl = MemoryRateLimiter::with_clock(clock.clone());
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
    fn at_the_bound_full_buckets_are_evicted_first_and_no_quota_is_handed_out() {
        let clock = FakeRelativeClock::default();
        let rl = MemoryRateLimiter::with_clock(clock.clone())
            .max_keys(3)
            .unwrap();
        let limit: RateLimit = "2/second".parse().unwrap();
        // Key 1 spends its whole burst; keys 2 and 3 one request each.
        assert!(rl.check(&key(1), limit).is_allowed());
        assert!(rl.check(&key(1), limit).is_allowed());
        assert!(rl.check(&key(2), limit).is_allowed());
        assert!(rl.check(&key(3), limit).is_allowed());
        assert_eq!(rl.tracked_keys(), 3);
        // Full, and no bucket is full again: a new key is refused, a known one still limited.
        assert_eq!(
            rl.check(&key(4), limit),
            Decision::Deny {
                reason: DenyReason::RateLimiterFull { max_keys: 3 }
            }
        );
        assert!(matches!(
            rl.check(&key(1), limit),
            Decision::Deny {
                reason: DenyReason::RateLimited { .. }
            }
        ));
        // Half a second on, keys 2 and 3 have refilled; key 1 has not (it still owes one).
        clock.advance(Duration::from_millis(500));
        assert!(rl.check(&key(4), limit).is_allowed());
        assert!(rl.check(&key(5), limit).is_allowed());
        assert_eq!(rl.tracked_keys(), 3);
        // Key 1 was not forgotten: evicting it would have given it a fresh burst.
        assert!(rl.check(&key(1), limit).is_allowed());
        assert!(matches!(
            rl.check(&key(1), limit),
            Decision::Deny {
                reason: DenyReason::RateLimited { .. }
            }
        ));
        assert!(MemoryRateLimiter::new().max_keys(0).is_err());
    }

    #[test]
    fn memory_stays_bounded_when_keys_come_and_go() {
        let clock = FakeRelativeClock::default();
        let rl = MemoryRateLimiter::with_clock(clock.clone())
            .max_keys(10_000)
            .unwrap();
        let limit: RateLimit = "100/second".parse().unwrap();
        let mut peak = 0;
        for round in 0..100u64 {
            for i in 0..10_000 {
                assert!(rl.check(&key(round * 1_000_000 + i), limit).is_allowed());
            }
            peak = peak.max(rl.tracked_keys());
            clock.advance(Duration::from_secs(2));
        }
        // 1,000,000 distinct keys went through, every one allowed; never more than the bound held.
        assert_eq!(peak, 10_000);
        assert_eq!(rl.housekeeping(), 10_000);
        assert_eq!(rl.tracked_keys(), 0);
    }

    #[test]
    fn a_new_key_refused_by_the_full_store_is_told_the_limiter_is_full() {
        // What a race does: the check saw room, and by the time its new
        // key reached the store, others had taken the last places. The
        // default clock, whose instants are far from zero, as in production.
        let rl = MemoryRateLimiter::new().max_keys(3).unwrap();
        let limit: RateLimit = "5/day".parse().unwrap();
        for i in 1..=3 {
            assert!(rl.check(&key(i), limit).is_allowed());
        }
        assert_eq!(
            rl.decide(&rl.limiter(limit), &key(4)),
            Decision::Deny {
                reason: DenyReason::RateLimiterFull { max_keys: 3 }
            }
        );
        assert_eq!(rl.tracked_keys(), 3);
    }

    #[test]
    fn the_bound_holds_under_concurrent_new_keys() {
        let rl = MemoryRateLimiter::new().max_keys(100).unwrap();
        let limit: RateLimit = "5/day".parse().unwrap();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let rl = &rl;
                s.spawn(move || {
                    for i in 0..100 {
                        let _ = rl.check(&key(t * 1000 + i), limit);
                    }
                });
            }
        });
        assert_eq!(rl.tracked_keys(), 100);
    }
}
