//! [`Sandbox`]: what the rest of the platform needs from a plugin runtime,
//! so that crates such as the marketplace can inspect and try a plugin
//! without depending on the runtime's crate (`vodo-sandbox` implements it).

use std::fmt;
use std::time::Duration;

use vodo_scopes::Capability;

use crate::manifest::Manifest;

/// The interfaces of the `vodo:plugin` WIT package and what importing each
/// needs: `Ok(None)` for those always linked (`types`, `log`),
/// `Ok(Some((capability, permission name)))` for a capability, and `Err(())`
/// for a name the package does not have.
#[allow(clippy::result_unit_err)]
pub fn interface_capability(interface: &str) -> Result<Option<(Capability, &'static str)>, ()> {
    Ok(Some(match interface {
        "types" | "log" => return Ok(None),
        "entities" => (Capability::Entities, "entities"),
        "hooks" => (Capability::HookTrigger, "hooks:trigger"),
        "storage" => (Capability::Storage, "storage"),
        "http" => (Capability::Network, "network"),
        "settings" => (Capability::Settings, "settings"),
        "users" => (Capability::Users, "users"),
        _ => return Err(()),
    }))
}

/// What a component imports and exports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentInfo {
    /// Imported interfaces, such as `vodo:plugin/entities@0.1.0` or `wasi:cli/environment@0.2.0`.
    pub imports: Vec<String>,
    /// Exported functions and interfaces.
    pub exports: Vec<String>,
    /// Bytes of memory the component needs before it runs.
    pub initial_memory: u64,
}

/// The budget of each trial call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBudget {
    /// Fuel per call, if the runtime meters fuel.
    pub fuel: Option<u64>,
    /// Memory per call, in bytes.
    pub memory: u64,
    /// Wall-clock time per call.
    pub timeout: Duration,
}

/// One trial call and what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialRun {
    /// The event name sent.
    pub event: String,
    /// `Ok`, or what went wrong (a violation or the plugin's error).
    pub result: Result<(), String>,
    /// Wall-clock time.
    pub wall: Duration,
    /// Fuel used, when metered.
    pub fuel: Option<u64>,
    /// Peak memory in bytes.
    pub peak_memory: u64,
}

/// A plugin runtime, as the platform's other parts see it.
pub trait Sandbox: fmt::Debug + Send + Sync {
    /// Validates a component and lists its imports and exports.
    fn inspect(&self, wasm: &[u8]) -> Result<ComponentInfo, String>;

    /// Installs the component in a throwaway installation with every scope
    /// its manifest requests, sends it each `(event, payload)` under
    /// `budget`, and removes it. Each trial is isolated: trials of the same
    /// component running at once never see each other's storage.
    fn trial(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        budget: &TrialBudget,
        events: &[(String, String)],
    ) -> Result<Vec<TrialRun>, String>;
}
