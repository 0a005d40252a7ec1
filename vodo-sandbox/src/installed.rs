//! [`Installed`]: a plugin's compiled component, loaded in one
//! installation. The data the lifecycle makes and the call pipeline runs;
//! it depends on neither.

use std::sync::Arc;

use vodo_core::manifest::Manifest;
use vodo_core::runtime::InterfaceSet;
use vodo_core::{InstallationId, PluginId};
use wasmtime::component::Component;

use crate::Limits;
use crate::host::{HostState, Plugin, PluginPre};
use crate::host_async::AsyncPlugin;
use crate::storage::Storage;
use crate::usage::{UsageSummary, UsageTotals};
use crate::warm::WarmPool;

/// A plugin loaded in one installation, ready to run. What it may do is
/// not here: every call reads the installation's current grant.
pub struct Installed {
    /// The installation.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// Its manifest.
    pub manifest: Manifest,
    /// The limits of each call.
    pub limits: Limits,
    /// SHA-256 of the component.
    pub component_hash: [u8; 32],
    pub(crate) component: Component,
    /// The instance template for the interfaces `linked`; a call whose grant
    /// links others prepares (or finds) another.
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) linked: InterfaceSet,
    pub(crate) storage: Option<Arc<Storage>>,
    pub(crate) totals: UsageTotals,
    /// Idle warm instances, when `limits.reuse` asks for them: those of
    /// synchronous calls and those of asynchronous ones.
    pub(crate) warm: WarmPool<Plugin>,
    pub(crate) warm_async: WarmPool<AsyncPlugin>,
}

impl Installed {
    /// What this plugin's calls have used since it was loaded.
    pub fn usage(&self) -> UsageSummary {
        self.totals.summary()
    }

    /// Calls and failures of each of the last
    /// [`SERIES_MINUTES`](crate::SERIES_MINUTES) minutes, oldest first.
    pub fn usage_series(&self) -> Vec<crate::MinuteUsage> {
        self.totals.series()
    }

    /// Warm instances idle in this plugin's pool now (always 0 with
    /// [`Reuse::Fresh`](crate::Reuse::Fresh)).
    pub fn warm_instances(&self) -> usize {
        self.warm.len() + self.warm_async.len()
    }
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("installation", &self.installation)
            .field("plugin", &self.plugin)
            .field("version", &self.manifest.version.to_string())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
