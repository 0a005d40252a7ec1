//! What the rest of the platform needs from a plugin runtime: the table of
//! host interfaces ([`Interface`]) and the [`Sandbox`] trait, so that crates
//! such as the marketplace can inspect and try a plugin without depending on
//! the runtime's crate (`vodo-sandbox` implements it).

use std::fmt;
use std::time::Duration;

use vodo_scopes::{Capability, ScopeSet};

use crate::manifest::Manifest;

/// The version of the `vodo:plugin` WIT package this host provides. Guests
/// built against an earlier `0.1.x` link too: its changes are additive.
pub const WIT_VERSION: &str = "0.1.1";

/// An interface of the `vodo:plugin` WIT package: the one table from WIT
/// interface to capability that the linker, the import check and the
/// marketplace's review all read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// `types`: shared types, always linked.
    Types,
    /// `log`: log lines, always linked.
    Log,
    /// `entities`: the host's records (`entities:*`).
    Entities,
    /// `hooks`: emitting hook events (`hooks:trigger*`).
    Hooks,
    /// `storage`: the plugin's own folder (`storage:*`).
    Storage,
    /// `http`: outbound HTTP (`network:outbound:*`).
    Http,
    /// `settings`: the plugin's settings (`settings:*`).
    Settings,
    /// `users`: the host's user records (`users:*`).
    Users,
}

impl Interface {
    /// Every interface, in WIT order.
    pub const ALL: [Interface; 8] = [
        Interface::Types,
        Interface::Log,
        Interface::Entities,
        Interface::Hooks,
        Interface::Storage,
        Interface::Http,
        Interface::Settings,
        Interface::Users,
    ];

    /// The interface's name in the WIT package, such as `entities`.
    pub fn name(self) -> &'static str {
        match self {
            Interface::Types => "types",
            Interface::Log => "log",
            Interface::Entities => "entities",
            Interface::Hooks => "hooks",
            Interface::Storage => "storage",
            Interface::Http => "http",
            Interface::Settings => "settings",
            Interface::Users => "users",
        }
    }

    /// The capability a grant needs for this interface to be linked, or
    /// `None` for those always linked.
    pub fn capability(self) -> Option<Capability> {
        match self {
            Interface::Types | Interface::Log => None,
            Interface::Entities => Some(Capability::Entities),
            Interface::Hooks => Some(Capability::HookTrigger),
            Interface::Storage => Some(Capability::Storage),
            Interface::Http => Some(Capability::Network),
            Interface::Settings => Some(Capability::Settings),
            Interface::Users => Some(Capability::Users),
        }
    }

    /// The permission as people name it, such as `network` or `hooks:trigger`.
    pub fn permission(self) -> &'static str {
        match self {
            Interface::Types => "types",
            Interface::Log => "log",
            Interface::Entities => "entities",
            Interface::Hooks => "hooks:trigger",
            Interface::Storage => "storage",
            Interface::Http => "network",
            Interface::Settings => "settings",
            Interface::Users => "users",
        }
    }

    /// Where the permission is declared in plugin.json.
    pub fn manifest_path(self) -> &'static str {
        match self {
            Interface::Types | Interface::Log => "$",
            Interface::Entities => "$.permissions.entities",
            Interface::Hooks => "$.permissions.hooks",
            Interface::Storage => "$.permissions.storage",
            Interface::Http => "$.permissions.network",
            Interface::Settings => "$.permissions.settings",
            Interface::Users => "$.permissions.users",
        }
    }

    /// The interface a component import names: `Ok(Some(_))` for
    /// `vodo:plugin/{name}[@version]`, `Ok(None)` for WASI 0.2 imports
    /// (`wasi:*`), and `Err(())` for anything a Vodo host does not provide.
    #[allow(clippy::result_unit_err)]
    pub fn of_import(import: &str) -> Result<Option<Interface>, ()> {
        if import.starts_with("wasi:") {
            return Ok(None);
        }
        let name = import.strip_prefix("vodo:plugin/").ok_or(())?;
        let name = name.split('@').next().unwrap_or(name);
        Interface::ALL
            .into_iter()
            .find(|i| i.name() == name)
            .map(Some)
            .ok_or(())
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Interface`]s, as a bit set: which interfaces a grant links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InterfaceSet(u16);

impl InterfaceSet {
    /// The interfaces `scopes` link: those always linked, and each whose
    /// capability some granted scope gives.
    pub fn granted(scopes: &ScopeSet) -> Self {
        Interface::ALL
            .into_iter()
            .filter(|i| i.capability().is_none_or(|c| scopes.has_capability(c)))
            .fold(Self(0), |set, i| Self(set.0 | i.bit()))
    }

    /// Whether `interface` is in the set.
    pub fn contains(self, interface: Interface) -> bool {
        self.0 & interface.bit() != 0
    }

    /// The interfaces in the set, in WIT order.
    pub fn iter(self) -> impl Iterator<Item = Interface> {
        Interface::ALL
            .into_iter()
            .filter(move |i| self.contains(*i))
    }

    /// The set as bits, for cache keys.
    pub fn bits(self) -> u16 {
        self.0
    }
}

/// What a component imports and exports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComponentInfo {
    /// Imported interfaces, such as `vodo:plugin/entities@0.1.1` or `wasi:cli/environment@0.2.0`.
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

/// Why a trial call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrialFailure {
    /// The plugin broke a limit or a rule; `kind` names it (`timeout`, `memory`, ...).
    #[error("sandbox violation ({kind}): {message}")]
    Violation {
        /// Which limit or rule.
        kind: String,
        /// What happened.
        message: String,
    },
    /// The plugin ran and returned an error.
    #[error("plugin error: {0}")]
    Plugin(String),
    /// The runtime did not run it (the event is not subscribed to, the host is at capacity, ...).
    #[error("not run: {0}")]
    NotRun(String),
}

/// One trial call and what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialRun {
    /// The event name sent.
    pub event: String,
    /// `Ok`, or what went wrong.
    pub result: Result<(), TrialFailure>,
    /// Wall-clock time.
    pub wall: Duration,
    /// Fuel used, when metered.
    pub fuel: Option<u64>,
    /// Peak memory in bytes.
    pub peak_memory: u64,
}

/// Why a runtime could not inspect or try a component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The bytes are not a valid component for this host.
    #[error("the component is not valid: {0}")]
    Invalid(String),
    /// The component is valid, but the runtime refuses to load it (an
    /// import without a permission, too much memory at start, ...).
    #[error("the component cannot be loaded: {0}")]
    Refused(String),
    /// The runtime itself failed (a store, a folder).
    #[error("the runtime failed: {0}")]
    Failed(String),
}

/// A plugin runtime, as the platform's other parts see it (`vodo-sandbox`
/// is the real one). A stand-in that refuses every component, as a host
/// without plugins might install:
///
/// ```
/// use vodo_core::runtime::{ComponentInfo, RuntimeError, Sandbox, TrialBudget, TrialRun};
/// use vodo_core::Manifest;
///
/// #[derive(Debug)]
/// struct NoPlugins;
///
/// impl Sandbox for NoPlugins {
///     fn inspect(&self, _wasm: &[u8]) -> Result<ComponentInfo, RuntimeError> {
///         Err(RuntimeError::Refused("this host runs no plugins".into()))
///     }
///     fn trial(
///         &self,
///         _: &Manifest,
///         _: &[u8],
///         _: &TrialBudget,
///         _: &[(String, String)],
///     ) -> Result<Vec<TrialRun>, RuntimeError> {
///         Err(RuntimeError::Refused("this host runs no plugins".into()))
///     }
/// }
///
/// let runtime: Box<dyn Sandbox> = Box::new(NoPlugins);
/// assert!(matches!(runtime.inspect(b"\0asm"), Err(RuntimeError::Refused(_))));
/// ```
pub trait Sandbox: fmt::Debug + Send + Sync {
    /// Validates a component and lists its imports and exports.
    fn inspect(&self, wasm: &[u8]) -> Result<ComponentInfo, RuntimeError>;

    /// Installs the component in a throwaway installation with every scope
    /// its manifest requests, sends it each `(event, payload)` under
    /// `budget` through the same call pipeline as any plugin call, and
    /// removes it. Each trial is isolated: trials of the same component
    /// running at once never see each other's storage.
    fn trial(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        budget: &TrialBudget,
        events: &[(String, String)],
    ) -> Result<Vec<TrialRun>, RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_interfaces_and_grants_to_sets() {
        assert_eq!(
            Interface::of_import("vodo:plugin/http@0.1.0"),
            Ok(Some(Interface::Http))
        );
        assert_eq!(
            Interface::of_import("vodo:plugin/users@0.1.1"),
            Ok(Some(Interface::Users))
        );
        assert_eq!(Interface::of_import("wasi:cli/stdout@0.2.0"), Ok(None));
        assert_eq!(Interface::of_import("vodo:plugin/sockets@0.1.0"), Err(()));
        assert_eq!(Interface::of_import("evil:thing/x"), Err(()));
        let scopes: ScopeSet = ["entities:read:order", "network:outbound:api.example.com"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let set = InterfaceSet::granted(&scopes);
        let linked: Vec<_> = set.iter().map(Interface::name).collect();
        assert_eq!(linked, ["types", "log", "entities", "http"]);
        assert_ne!(set, InterfaceSet::granted(&ScopeSet::new()));
        for i in Interface::ALL {
            assert_eq!(
                Interface::of_import(&format!("vodo:plugin/{}@{WIT_VERSION}", i.name())),
                Ok(Some(i))
            );
        }
    }
}
