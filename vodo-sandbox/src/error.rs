//! What can go wrong: a plugin refused at load ([`LoadError`]), a call that
//! broke a limit or a rule ([`SandboxViolation`]), or a call that failed on
//! its own terms ([`CallError`]).

use std::fmt;
use std::time::Duration;

/// Why a plugin was refused at load or install time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The component imports a capability the grant does not cover.
    #[error(
        "plugin `{plugin}` imports `{import}` but its grant has no `{capability}` permission: add a `{scope}` scope to plugin.json and have the installer consent, or remove the import"
    )]
    MissingPermission {
        /// The plugin.
        plugin: String,
        /// The import, such as `vodo:plugin/http@0.1.0`.
        import: String,
        /// The capability, such as `network`.
        capability: &'static str,
        /// An example scope that grants it.
        scope: &'static str,
    },
    /// The component imports something no Vodo host provides.
    #[error(
        "plugin `{plugin}` imports `{import}`, which a Vodo host does not provide: plugins may import only `vodo:plugin/*` and WASI 0.2 interfaces"
    )]
    UnknownImport {
        /// The plugin.
        plugin: String,
        /// The import.
        import: String,
    },
    /// The bytes are not a valid WebAssembly component, or it does not
    /// export the `vodo:plugin` world.
    #[error("plugin `{plugin}` is not a valid Vodo component: {reason}")]
    Invalid {
        /// The plugin.
        plugin: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component needs more than the host allows before it even runs.
    #[error(
        "plugin `{plugin}` needs {needed} bytes of memory at start, more than the {limit} bytes its limit allows"
    )]
    TooLarge {
        /// The plugin.
        plugin: String,
        /// Bytes needed at instantiation.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// The component was given by its digest only
    /// ([`Wasm::compiled`](crate::Wasm::compiled)), and this sandbox has no
    /// compiled form of it, in memory or in its cache folder.
    #[error(
        "plugin `{plugin}`: no compiled component {digest} in this sandbox or its cache folder: load it from the component's bytes"
    )]
    NotCompiled {
        /// The plugin.
        plugin: String,
        /// The digest asked for, in hex.
        digest: String,
    },
    /// Reading the component or the cache failed.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox is misconfigured.
    #[error("sandbox configuration: {0}")]
    Config(String),
    /// The plugin has no grant in the installation.
    #[error(
        "plugin `{0}` is not installed in this installation: install it with the installer's consent first"
    )]
    NotInstalled(String),
    /// The grant is for another version than the one being loaded.
    #[error(
        "the grant of `{plugin}` is for version {granted}, not {version}: upgrade to {version} instead of loading it"
    )]
    VersionMismatch {
        /// The plugin.
        plugin: String,
        /// The version the grant is for.
        granted: String,
        /// The version being loaded.
        version: String,
    },
    /// The new version of an upgrade failed its health probe; the running
    /// version stays.
    #[error(
        "version {version} of `{plugin}` failed its health probe, so the running version stays: {reason}"
    )]
    Unhealthy {
        /// The plugin.
        plugin: String,
        /// The version refused.
        version: String,
        /// What the probe returned.
        reason: String,
    },
    /// An upgrade asks for scopes the installer has not consented to.
    #[error("version {version} of `{plugin}` asks for {} that the installer has not consented to: show them `{}` and install with their consent", if scopes.len() == 1 { "a permission" } else { "permissions" }, scopes.join("`, `"))]
    ConsentRequired {
        /// The plugin.
        plugin: String,
        /// The new version.
        version: String,
        /// The scopes that need consent.
        scopes: Vec<String>,
    },
    /// A store of `vodo-core` failed.
    #[error(transparent)]
    Core(#[from] vodo_core::Error),
}

/// A limit or a rule a plugin broke during a call. Each says which, so a host
/// can show it to a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxViolation {
    /// The plugin's memory grew past its limit.
    #[error(
        "memory limit: the plugin asked for {requested} bytes in all, over its limit of {limit} bytes"
    )]
    Memory {
        /// Total bytes the plugin's memories would have had.
        requested: u64,
        /// The limit.
        limit: u64,
    },
    /// The call ran longer than its wall-clock limit.
    #[error("timeout: the call ran longer than {limit:?}")]
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The call used up its CPU budget.
    #[error("CPU budget: the call used all of its {budget} units of fuel")]
    Fuel {
        /// The budget.
        budget: u64,
    },
    /// The plugin's call stack overflowed (runaway recursion).
    #[error("stack overflow: the plugin recursed deeper than its stack allows")]
    Stack,
    /// The plugin tried to reach a host it may not reach.
    #[error("network: request to `{host}` refused: {reason}")]
    Network {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The plugin tried to reach a file outside its folder, or of a type it may not store.
    #[error("filesystem: `{path}` refused: {reason}")]
    Filesystem {
        /// The path as the plugin gave it.
        path: String,
        /// Why.
        reason: String,
    },
    /// The plugin's storage would exceed its quota.
    #[error("storage quota: writing would use {requested} bytes, over the quota of {quota} bytes")]
    StorageQuota {
        /// Bytes the folder would hold.
        requested: u64,
        /// The quota.
        quota: u64,
    },
    /// The plugin called the host API faster than its rate limit allows.
    #[error("rate limit: more than {limit} calls; retry in {retry_after_ms} ms")]
    RateLimit {
        /// The limit, as in the manifest.
        limit: String,
        /// When a call can succeed again.
        retry_after_ms: u64,
    },
    /// The plugin produced more output (result, logs, stdout) than allowed.
    #[error("output limit: the plugin produced more than {limit} bytes of {what}")]
    Output {
        /// What kind of output.
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// The plugin made more host calls in one call than allowed.
    #[error("host-call limit: more than {limit} host calls in one call")]
    HostCalls {
        /// The limit.
        limit: u64,
    },
    /// The plugin passed more bytes into the host than its limits allow, in
    /// one host call or over the whole call.
    #[error("host-call input limit: the plugin passed more than {limit} bytes to the host {per}")]
    HostInput {
        /// The limit in bytes.
        limit: u64,
        /// `in one host call` or `in one call`.
        per: &'static str,
    },
    /// The plugin's folder would hold more files and folders than allowed.
    #[error(
        "storage entries: the plugin's folder may hold at most {limit} files and folders; delete some first"
    )]
    StorageEntries {
        /// The limit.
        limit: usize,
    },
    /// A table or the instance count grew past its limit.
    #[error("resource limit: {0}")]
    Resources(String),
    /// The plugin trapped (a bug in the plugin: unreachable, out-of-bounds access, ...).
    #[error("trap: {0}")]
    Trap(String),
}

impl SandboxViolation {
    /// A short name of the limit or rule, as the audit trail records it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::Timeout { .. } => "timeout",
            Self::Fuel { .. } => "fuel",
            Self::Stack => "stack",
            Self::Network { .. } => "network",
            Self::Filesystem { .. } => "filesystem",
            Self::StorageQuota { .. } => "storage_quota",
            Self::RateLimit { .. } => "rate_limit",
            Self::Output { .. } => "output",
            Self::HostCalls { .. } => "host_calls",
            Self::HostInput { .. } => "host_input",
            Self::StorageEntries { .. } => "storage_entries",
            Self::Resources(_) => "resources",
            Self::Trap(_) => "trap",
        }
    }
}

/// Why a call did not return a result. The first two are the plugin's own
/// doing and count against its health; the others are the platform's and
/// never do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin broke a limit or a rule and was stopped.
    #[error("sandbox violation: {0}")]
    Violation(SandboxViolation),
    /// The plugin ran within its limits and returned an error.
    #[error("plugin error: {0}")]
    Plugin(String),
    /// The platform did not run the plugin: not installed, disabled, its
    /// circuit open, an undeclared route, an event it does not subscribe to,
    /// an import its grant no longer covers (audited, except an open circuit).
    #[error("not run: {0}")]
    Refused(vodo_core::DenyReason),
    /// Every instance slot of the host was in use.
    #[error("not run: the host is at capacity: too many plugin calls at once")]
    AtCapacity,
    /// The host failed to prepare the plugin.
    #[error("not run: the host failed: {0}")]
    Host(String),
}

impl From<SandboxViolation> for CallError {
    fn from(v: SandboxViolation) -> Self {
        CallError::Violation(v)
    }
}

/// The error a host function raises to stop the guest; classified back into
/// a [`SandboxViolation`] when the call returns.
#[derive(Debug, Clone)]
pub(crate) struct Stop(pub SandboxViolation);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Stop {}
