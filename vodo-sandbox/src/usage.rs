//! What calls use: [`Usage`] per call, [`UsageTotals`] per installed plugin,
//! and the spike check that audits usage close to a limit.

use std::time::{Duration, Instant};

use vodo_core::audit::AuditAction;

use crate::Limits;

/// What one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Wall-clock time, instantiation included.
    pub wall: Duration,
    /// Fuel consumed, when the engine meters fuel.
    pub fuel: Option<u64>,
    /// Peak bytes of linear memory across the call's instances.
    pub peak_memory: u64,
    /// Host calls made.
    pub host_calls: u64,
    /// Host calls the platform refused (a permission or a rate limit); the
    /// plugin was told and the refusal audited.
    pub denied_host_calls: u64,
    /// Host calls a host service could not serve (it was unavailable).
    pub failed_host_calls: u64,
    /// Bytes the plugin passed to the host (arguments of host calls).
    pub bytes_in: u64,
    /// Bytes the host passed to the plugin (results of host calls).
    pub bytes_out: u64,
}

/// What all calls of one installed plugin have used since it was installed.
///
/// One short lock per call (two atomic operations), not one atomic
/// operation per figure: on a warm instance, whose call costs a few hundred
/// nanoseconds, nine read-modify-writes were a measurable share. Under the
/// same lock go a histogram of call times (for percentiles) and the calls
/// and failures of each of the last [`SERIES_MINUTES`] minutes.
#[derive(Debug, Default)]
pub struct UsageTotals(parking_lot::Mutex<Totals>);

/// How many minutes [`UsageTotals::series`] covers.
pub const SERIES_MINUTES: usize = 60;

/// Octaves of microseconds the histogram covers (2^40 µs is 12 days), each
/// split into four buckets: a percentile is within 25% of the true value.
const OCTAVES: usize = 40;
const BUCKETS: usize = OCTAVES * 4;

#[derive(Debug)]
struct Totals {
    summary: UsageSummary,
    histogram: [u64; BUCKETS],
    minutes: [MinuteUsage; SERIES_MINUTES],
    /// An instant and the wall clock then (ms since the epoch): a call's
    /// minute comes from the instant it ended, which the call has already
    /// read, so counting it reads no clock.
    base: (Instant, i64),
}

impl Default for Totals {
    fn default() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        Self {
            summary: UsageSummary::default(),
            histogram: [0; BUCKETS],
            minutes: [MinuteUsage::default(); SERIES_MINUTES],
            base: (Instant::now(), unix_ms),
        }
    }
}

impl Totals {
    /// The minute (since the epoch) of `at`.
    fn minute_of(&self, at: Instant) -> i64 {
        let since =
            i64::try_from(at.saturating_duration_since(self.base.0).as_millis()).unwrap_or(0);
        (self.base.1 + since).div_euclid(60_000)
    }
}

/// The calls of one plugin in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteUsage {
    /// The minute, as minutes since the Unix epoch.
    pub minute: i64,
    /// Calls that ended in it.
    pub calls: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
}

/// The histogram bucket of a call that took `micros`.
fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return usize::try_from(micros).unwrap_or(0);
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let sub = usize::try_from((micros >> (octave - 2)) & 3).unwrap_or(0);
    (octave * 4 + sub).min(BUCKETS - 1)
}

/// The upper bound, in microseconds, of bucket `i`.
fn bucket_top(i: usize) -> u64 {
    if i < 4 {
        return i as u64;
    }
    let (octave, sub) = (i / 4, (i % 4) as u64);
    (5 + sub) << (octave - 2)
}

/// A snapshot of [`UsageTotals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSummary {
    /// Calls run.
    pub calls: u64,
    /// Calls that ended in a violation or a plugin error.
    pub failures: u64,
    /// Wall-clock time in all calls.
    pub wall: Duration,
    /// Fuel consumed in all calls (zero without fuel metering).
    pub fuel: u64,
    /// Host calls in all calls.
    pub host_calls: u64,
    /// Host calls the platform refused, in all calls.
    pub denied_host_calls: u64,
    /// Bytes from the plugin to the host.
    pub bytes_in: u64,
    /// Bytes from the host to the plugin.
    pub bytes_out: u64,
    /// The highest peak memory of any call.
    pub peak_memory: u64,
    /// The median call time (within 25%).
    pub p50: Duration,
    /// The 99th-percentile call time (within 25%): 99 calls in 100 took
    /// at most this long.
    pub p99: Duration,
}

impl UsageTotals {
    /// Counts a call that ended at `ended`.
    pub(crate) fn add(&self, u: &Usage, failed: bool, ended: Instant) {
        let micros = u64::try_from(u.wall.as_micros()).unwrap_or(u64::MAX);
        let mut all = self.0.lock();
        let minute = all.minute_of(ended);
        all.histogram[bucket(micros)] += 1;
        let slot = &mut all.minutes
            [usize::try_from(minute.rem_euclid(SERIES_MINUTES as i64)).unwrap_or(0)];
        if slot.minute != minute {
            *slot = MinuteUsage {
                minute,
                calls: 0,
                failures: 0,
            };
        }
        slot.calls += 1;
        slot.failures += u64::from(failed);
        let t = &mut all.summary;
        t.calls += 1;
        t.failures += u64::from(failed);
        t.wall = t.wall.saturating_add(u.wall);
        t.fuel = t.fuel.saturating_add(u.fuel.unwrap_or(0));
        t.host_calls = t.host_calls.saturating_add(u.host_calls);
        t.denied_host_calls = t.denied_host_calls.saturating_add(u.denied_host_calls);
        t.bytes_in = t.bytes_in.saturating_add(u.bytes_in);
        t.bytes_out = t.bytes_out.saturating_add(u.bytes_out);
        t.peak_memory = t.peak_memory.max(u.peak_memory);
    }

    /// The totals now, with the call-time percentiles.
    pub fn summary(&self) -> UsageSummary {
        let all = self.0.lock();
        let mut summary = all.summary;
        summary.p50 = percentile(&all.histogram, summary.calls, 50);
        summary.p99 = percentile(&all.histogram, summary.calls, 99);
        summary
    }

    /// Calls and failures of each of the last [`SERIES_MINUTES`] minutes,
    /// oldest first, the current minute last (minutes without calls as zeros).
    pub fn series(&self) -> Vec<MinuteUsage> {
        let all = self.0.lock();
        let now = all.minute_of(Instant::now());
        (0..SERIES_MINUTES as i64)
            .rev()
            .map(|ago| {
                let minute = now - ago;
                let slot = all.minutes
                    [usize::try_from(minute.rem_euclid(SERIES_MINUTES as i64)).unwrap_or(0)];
                if slot.minute == minute {
                    slot
                } else {
                    MinuteUsage {
                        minute,
                        calls: 0,
                        failures: 0,
                    }
                }
            })
            .collect()
    }
}

/// The time within which `pct`% of `calls` calls finished, from the histogram.
fn percentile(histogram: &[u64; BUCKETS], calls: u64, pct: u64) -> Duration {
    if calls == 0 {
        return Duration::ZERO;
    }
    let wanted = (calls * pct).div_ceil(100).max(1);
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= wanted {
            return Duration::from_micros(bucket_top(i));
        }
    }
    Duration::from_micros(bucket_top(BUCKETS - 1))
}

/// The usage of a call at or above 80% of a limit it did not break (a
/// broken one is a violation), as resource-spike audit actions.
pub(crate) fn spikes(usage: &Usage, limits: &Limits) -> impl Iterator<Item = AuditAction> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    [
        ("memory_bytes", usage.peak_memory, limits.memory),
        ("wall_ms", millis(usage.wall), millis(limits.timeout)),
        ("host_calls", usage.host_calls, limits.host_calls),
    ]
    .into_iter()
    .filter_map(|(resource, value, limit)| {
        // 80% of the limit, rounded down, without a 128-bit division on every call.
        let threshold = limit - limit.div_ceil(5);
        (value >= threshold.max(1) && value <= limit).then(|| AuditAction::ResourceSpike {
            resource: resource.into(),
            value,
            threshold,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_time_and_their_tops_bound_it_within_a_quarter() {
        let mut last = 0;
        for micros in (0..10_000u64).chain([123_456, 9_999_999, u64::MAX / 2, u64::MAX]) {
            let b = bucket(micros);
            assert!(b >= last, "buckets grow with the time");
            last = b;
            if b < BUCKETS - 1 {
                let top = bucket_top(b);
                assert!(top >= micros, "{micros} µs is under its bucket's top {top}");
                assert!(
                    top as f64 <= micros.max(1) as f64 * 1.25 + 1.0,
                    "{micros} µs: top {top}"
                );
            }
        }
    }

    #[test]
    fn percentiles_come_from_the_calls_times() {
        let totals = UsageTotals::default();
        let call = |ms: u64| Usage {
            wall: Duration::from_millis(ms),
            ..Usage::default()
        };
        for _ in 0..98 {
            totals.add(&call(10), false, Instant::now());
        }
        totals.add(&call(500), true, Instant::now());
        totals.add(&call(500), true, Instant::now());
        let s = totals.summary();
        assert_eq!((s.calls, s.failures), (100, 2));
        let within = |d: Duration, ms: u64| {
            let m = d.as_secs_f64() * 1000.0;
            m >= ms as f64 && m <= ms as f64 * 1.25
        };
        assert!(within(s.p50, 10), "{:?}", s.p50);
        assert!(within(s.p99, 500), "{:?}", s.p99);
        let series = totals.series();
        assert_eq!(series.len(), SERIES_MINUTES);
        let now = series.last().unwrap();
        // The calls land in this minute, or the previous one if it just turned.
        let recent: u64 = series.iter().rev().take(2).map(|m| m.calls).sum();
        assert_eq!(recent, 100, "{now:?}");
        assert_eq!(series.iter().map(|m| m.failures).sum::<u64>(), 2);
        assert!(series.windows(2).all(|w| w[1].minute == w[0].minute + 1));
    }

    #[test]
    fn the_spike_threshold_is_eighty_percent_rounded_down() {
        for limit in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            6,
            9,
            10,
            11,
            999,
            1_000,
            u64::MAX / 2,
            u64::MAX,
        ] {
            let expected = u64::try_from(u128::from(limit) * 8 / 10).unwrap();
            assert_eq!(limit - limit.div_ceil(5), expected, "{limit}");
        }
    }
}
