//! Engine-wide configuration ([`SandboxConfig`]) and per-plugin [`Limits`],
//! each validated once (the config when the sandbox is built, limits when a
//! plugin is installed): an impossible setting is an error that names it,
//! never corrected silently.

use std::path::PathBuf;
use std::time::Duration;

use crate::LoadError;

/// How the one engine of a process is set up. Every default is listed; all
/// of them deny rather than allow.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Instances that may run at once (pooling allocator slots). Default 256.
    pub max_concurrent: u32,
    /// Largest linear memory any plugin may have, the pool's per-slot
    /// ceiling. Default 256 MiB.
    pub max_memory_per_instance: u64,
    /// Whether fuel metering is compiled in, so that [`Limits::fuel`]
    /// can give a deterministic CPU budget. Costs speed on every call.
    /// Default `false`.
    pub fuel: bool,
    /// Wasm stack per call. Default 512 KiB.
    pub max_wasm_stack: usize,
    /// How often a running plugin is interrupted to compare its deadline
    /// with the monotonic clock: the resolution of wall-clock timeouts.
    /// Default 5 ms.
    pub epoch_tick: Duration,
    /// Threads [`Sandbox::dispatch`](crate::Sandbox::dispatch) runs one
    /// event's deliveries on. Default: the number of cores.
    pub dispatch_threads: usize,
    /// Folder for compiled components, keyed by content hash. Default `None`
    /// (compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Folder under which each plugin gets its own storage folder
    /// (`{storage_root}/{installation}/{plugin}`). Default `None`: no storage.
    pub storage_root: Option<PathBuf>,
    /// Whether outbound requests may reach loopback, private and link-local
    /// addresses. Default `false` (SSRF protection); tests turn it on.
    pub allow_private_network: bool,
    /// Warm instances the whole sandbox may keep between calls, over all
    /// plugins whose [`Limits::reuse`] asks for them. Each holds a pool slot
    /// and its linear memory, so it is taken from
    /// [`max_concurrent`](Self::max_concurrent): calls always have
    /// `max_concurrent - max_warm` slots of their own. Default `None`: a
    /// quarter of `max_concurrent` (64 of the default 256).
    pub max_warm: Option<u32>,
    /// Bytes of each linear memory (and table) kept resident when its pool
    /// slot is freed: reset in place (on Linux 6.7 and later only the pages
    /// the call dirtied, found with the `PAGEMAP_SCAN` ioctl) instead of
    /// being handed back to the kernel with `madvise`, whose TLB shootdowns
    /// made two threads slower than one (BENCHMARKS.md, "Why two threads
    /// were slower than one"). It costs up to this much resident memory per
    /// pool slot that has been used. Default 1 MiB where the kernel has
    /// `PAGEMAP_SCAN`; elsewhere 0 (hands everything back), because resetting
    /// a whole MiB with `memset` on every call was measured slower still.
    pub keep_resident: usize,
    /// Host calls that may wait on I/O (outbound HTTP, the plugin's folder,
    /// host services whose [`waits`](crate::HostServices::waits) is `true`)
    /// running at once on the asynchronous call path, over the whole
    /// sandbox. They run on tokio's blocking threads; past this bound a host
    /// call waits its turn, so plugins cannot take all of the host's
    /// blocking threads. While it waits its plugin is suspended and its
    /// deadline is not checked: a request that starts after its deadline
    /// fails at once, but a storage or service call still runs, so size
    /// this to the I/O the host can serve. Default 64.
    pub max_blocking: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 256,
            max_memory_per_instance: 256 << 20,
            fuel: false,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(5),
            dispatch_threads: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            cache_dir: None,
            storage_root: None,
            allow_private_network: false,
            max_warm: None,
            keep_resident: if pagemap_scan() { 1 << 20 } else { 0 },
            max_blocking: 64,
        }
    }
}

/// Whether this kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7 and later),
/// with which wasmtime resets only the pages a call dirtied.
fn pagemap_scan() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 7)
}

fn invalid(message: String) -> LoadError {
    LoadError::Config(message)
}

impl SandboxConfig {
    /// Refuses a configuration that cannot work, naming the settings.
    pub fn validate(&self) -> Result<(), LoadError> {
        let zero =
            |name: &str, why: &str| Err(invalid(format!("`SandboxConfig::{name}` is zero: {why}")));
        if self.max_concurrent == 0 {
            return zero(
                "max_concurrent",
                "the pool needs at least 1 slot to run a plugin",
            );
        }
        if self.max_memory_per_instance == 0 {
            return zero(
                "max_memory_per_instance",
                "a plugin needs some memory, such as 64 MiB",
            );
        }
        if self.max_wasm_stack == 0 {
            return zero("max_wasm_stack", "a call needs a stack, such as 512 KiB");
        }
        if self.epoch_tick.is_zero() {
            return zero(
                "epoch_tick",
                "timeouts are checked every tick, such as 5 ms",
            );
        }
        if self.max_blocking == 0 {
            return zero(
                "max_blocking",
                "async calls run host I/O on at least 1 blocking thread, such as 64",
            );
        }
        if self.dispatch_threads == 0 {
            return zero("dispatch_threads", "dispatch needs at least 1 thread");
        }
        if (self.max_concurrent as usize) < self.dispatch_threads {
            return Err(invalid(format!(
                "`SandboxConfig::max_concurrent` ({}) is below `dispatch_threads` ({}): dispatch would run more calls at once than the pool has slots; raise `max_concurrent` or lower `dispatch_threads`",
                self.max_concurrent, self.dispatch_threads
            )));
        }
        if let Some(warm) = self.max_warm
            && warm >= self.max_concurrent
        {
            return Err(invalid(format!(
                "`SandboxConfig::max_warm` ({warm}) leaves no pool slot of `max_concurrent` ({}) for calls: warm instances hold their slots; lower `max_warm` or raise `max_concurrent`",
                self.max_concurrent
            )));
        }
        Ok(())
    }

    /// The number of warm instances the sandbox keeps at most.
    pub fn warm_budget(&self) -> u32 {
        self.max_warm.unwrap_or(self.max_concurrent / 4)
    }
}

/// Whether a plugin's calls each get a fresh instance or reuse a warm one.
///
/// A fresh instance per call (the default) is the strongest isolation: no
/// state of one call, not even a global variable, can reach the next. A warm
/// instance skips instantiation (most of the cost of a small call), at the
/// price that the plugin's memory and globals persist **between calls of the
/// same plugin version in the same installation**, as in Extism's reused
/// plugins and in `wasmtime serve`'s reuse mode. Never across installations
/// or versions: each (installation, plugin version) has its own pool.
///
/// Every call still gets its own deadline, fuel, output and host-call
/// budgets and usage figures, under the grant as it is now; the memory limit
/// holds over the instance's whole life (memory a plugin keeps counts
/// against its next calls). An instance is dropped after any trap,
/// violation or timeout, after `calls` calls, once it is older than `age`,
/// and when the grant links other host interfaces than it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reuse {
    /// A fresh instance for every call.
    #[default]
    Fresh,
    /// Reuse instances, at most `pool` of them idle for this plugin in this
    /// installation (concurrent calls never share one: a call takes an
    /// instance out of the pool, or makes a fresh one, and gives it back).
    Warm {
        /// Calls an instance serves before it is dropped.
        calls: u32,
        /// How long an instance lives from its first call.
        age: Duration,
        /// Idle instances kept for this plugin in this installation.
        pool: u32,
    },
}

impl Reuse {
    /// Warm instances with the usual bounds: 1,000 calls, 60 s, and a pool
    /// of as many instances as the machine has cores.
    pub fn warm() -> Self {
        Self::Warm {
            calls: 1_000,
            age: Duration::from_secs(60),
            pool: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }
}

/// What one call of one plugin may use. The host's policy sets these; the
/// manifest adds its storage quota and rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of linear memory across the call's instances. Default 64 MiB.
    pub memory: u64,
    /// Wall-clock time per call, measured on the monotonic clock. Default 1 s.
    pub timeout: Duration,
    /// Fuel per call, if the engine meters fuel. Default `None`.
    pub fuel: Option<u64>,
    /// Elements per table. Default 10,000.
    pub table_elements: u64,
    /// Core instances per call (a component has several). Default 32.
    pub instances: u32,
    /// Bytes a call may return (a result, a response body), log, and write
    /// to stdout and stderr (counted together). Default 1 MiB.
    pub output: u64,
    /// Host calls per call. Default 10,000.
    pub host_calls: u64,
    /// Bytes the plugin may pass into the host in one host call (an entity
    /// document, a hook payload, a file, a request body), counted as the
    /// arguments arrive. Default 4 MiB.
    pub host_call_input: u64,
    /// Bytes the plugin may pass into the host over the whole call, the
    /// total over its host calls. Default 16 MiB.
    pub host_input: u64,
    /// Bytes of an outbound HTTP response, status line and headers
    /// included. Default 4 MiB.
    pub http_response: u64,
    /// Time for an outbound HTTP request, from the host call to the last
    /// byte: resolving, connecting, TLS, upload and download. Never more
    /// than what is left of the plugin call. Default 5 s.
    pub http_timeout: Duration,
    /// A fresh instance per call, or warm instances reused between calls.
    /// Default [`Reuse::Fresh`].
    pub reuse: Reuse,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 64 << 20,
            timeout: Duration::from_secs(1),
            fuel: None,
            table_elements: 10_000,
            instances: 32,
            output: 1 << 20,
            host_calls: 10_000,
            host_call_input: 4 << 20,
            host_input: 16 << 20,
            http_response: 4 << 20,
            http_timeout: Duration::from_secs(5),
            reuse: Reuse::Fresh,
        }
    }
}

impl Limits {
    /// Refuses limits that cannot work on a sandbox built with `config`,
    /// naming the settings.
    pub fn validate(&self, config: &SandboxConfig) -> Result<(), LoadError> {
        let zeros = [
            ("memory", self.memory == 0),
            ("timeout", self.timeout.is_zero()),
            ("fuel", self.fuel == Some(0)),
            ("table_elements", self.table_elements == 0),
            ("instances", self.instances == 0),
            ("output", self.output == 0),
            ("host_calls", self.host_calls == 0),
            ("host_call_input", self.host_call_input == 0),
            ("host_input", self.host_input == 0),
            ("http_response", self.http_response == 0),
            ("http_timeout", self.http_timeout.is_zero()),
        ];
        if let Some((name, _)) = zeros.iter().find(|(_, zero)| *zero) {
            return Err(invalid(format!(
                "`Limits::{name}` is zero: a plugin could not run at all; give it a budget"
            )));
        }
        if self.host_call_input > self.host_input {
            return Err(invalid(format!(
                "`Limits::host_call_input` ({} bytes) is above `Limits::host_input` ({} bytes), the budget of the whole call: lower the first or raise the second",
                self.host_call_input, self.host_input
            )));
        }
        if self.fuel.is_some() && !config.fuel {
            return Err(invalid(
                "`Limits::fuel` asks for a fuel budget but the sandbox was built without `SandboxConfig::fuel`: turn it on, or set `fuel: None`".into(),
            ));
        }
        if self.timeout < config.epoch_tick {
            return Err(invalid(format!(
                "`Limits::timeout` ({:?}) is shorter than one `SandboxConfig::epoch_tick` ({:?}): the deadline is checked once per tick; lengthen the timeout or shorten the tick",
                self.timeout, config.epoch_tick
            )));
        }
        if let Reuse::Warm { calls, age, pool } = self.reuse
            && (calls == 0 || age.is_zero() || pool == 0)
        {
            return Err(invalid(format!(
                "`Limits::reuse` asks for warm instances with calls: {calls}, age: {age:?}, pool: {pool}: none of them may be zero; use `Reuse::Fresh` for no reuse"
            )));
        }
        if self.memory > config.max_memory_per_instance {
            return Err(invalid(format!(
                "`Limits::memory` ({} bytes) is above `SandboxConfig::max_memory_per_instance` ({} bytes): a memory cannot grow past its pool slot; lower the limit or raise the slot",
                self.memory, config.max_memory_per_instance
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: &SandboxConfig, limits: &Limits) -> String {
        match config.validate().and_then(|()| limits.validate(config)) {
            Err(e) => e.to_string(),
            Ok(()) => String::from("accepted"),
        }
    }

    #[test]
    fn impossible_settings_are_errors_that_name_them() {
        let ok = SandboxConfig::default();
        assert_eq!(refused(&ok, &Limits::default()), "accepted");
        for (config, names) in [
            (
                SandboxConfig {
                    max_concurrent: 0,
                    ..ok.clone()
                },
                vec!["max_concurrent"],
            ),
            (
                SandboxConfig {
                    epoch_tick: Duration::ZERO,
                    ..ok.clone()
                },
                vec!["epoch_tick"],
            ),
            (
                SandboxConfig {
                    max_concurrent: 2,
                    dispatch_threads: 4,
                    ..ok.clone()
                },
                vec!["max_concurrent` (2)", "dispatch_threads` (4)"],
            ),
        ] {
            let e = refused(&config, &Limits::default());
            for n in names {
                assert!(e.contains(n), "{e}");
            }
        }
        for (limits, names) in [
            (
                Limits {
                    memory: 0,
                    ..Limits::default()
                },
                vec!["`Limits::memory` is zero"],
            ),
            (
                Limits {
                    host_calls: 0,
                    ..Limits::default()
                },
                vec!["`Limits::host_calls` is zero"],
            ),
            (
                Limits {
                    timeout: Duration::from_millis(2),
                    ..Limits::default()
                },
                vec![
                    "`Limits::timeout` (2ms)",
                    "`SandboxConfig::epoch_tick` (5ms)",
                ],
            ),
            (
                Limits {
                    fuel: Some(10),
                    ..Limits::default()
                },
                vec!["`SandboxConfig::fuel`"],
            ),
            (
                Limits {
                    memory: 1 << 30,
                    ..Limits::default()
                },
                vec!["`Limits::memory`", "max_memory_per_instance"],
            ),
        ] {
            let e = refused(&ok, &limits);
            for n in names {
                assert!(e.contains(n), "{e}");
            }
        }
    }
}
