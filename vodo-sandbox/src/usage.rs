//! What calls use: [`Usage`] per call, [`UsageTotals`] per installed plugin,
//! and the spike check that audits usage close to a limit.

use std::time::Duration;

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
/// nanoseconds, nine read-modify-writes were a measurable share.
#[derive(Debug, Default)]
pub struct UsageTotals(parking_lot::Mutex<UsageSummary>);

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
}

impl UsageTotals {
    pub(crate) fn add(&self, u: &Usage, failed: bool) {
        let mut t = self.0.lock();
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

    /// The totals now.
    pub fn summary(&self) -> UsageSummary {
        *self.0.lock()
    }
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
