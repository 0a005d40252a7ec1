//! Engine-wide configuration ([`SandboxConfig`]) and per-plugin [`Limits`].

use std::path::PathBuf;
use std::time::Duration;

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
    /// Epoch tick: the resolution of wall-clock timeouts. Default 5 ms.
    pub epoch_tick: Duration,
    /// Folder for compiled components, keyed by content hash. Default `None`
    /// (compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Folder under which each plugin gets its own storage folder
    /// (`{storage_root}/{installation}/{plugin}`). Default `None`: no storage.
    pub storage_root: Option<PathBuf>,
    /// Whether outbound requests may reach loopback, private and link-local
    /// addresses. Default `false` (SSRF protection); tests turn it on.
    pub allow_private_network: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 256,
            max_memory_per_instance: 256 << 20,
            fuel: false,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            storage_root: None,
            allow_private_network: false,
        }
    }
}

/// What one call of one plugin may use. The host's policy sets these; the
/// manifest adds its storage quota and rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of linear memory across the call's instances. Default 64 MiB.
    pub memory: u64,
    /// Wall-clock time per call. Default 1 s.
    pub timeout: Duration,
    /// Fuel per call, if the engine meters fuel. Default `None`.
    pub fuel: Option<u64>,
    /// Elements per table. Default 10,000.
    pub table_elements: u64,
    /// Core instances per call (a component has several). Default 32.
    pub instances: u32,
    /// Bytes a call may return (a result, a response body) and log. Default 1 MiB.
    pub output: u64,
    /// Host calls per call. Default 10,000.
    pub host_calls: u64,
    /// Bytes of an outbound HTTP response body. Default 4 MiB.
    pub http_response: u64,
    /// Time for an outbound HTTP request. Default 5 s.
    pub http_timeout: Duration,
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
            http_response: 4 << 20,
            http_timeout: Duration::from_secs(5),
        }
    }
}
