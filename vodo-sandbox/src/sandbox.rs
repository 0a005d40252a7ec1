//! [`Sandbox`]: the runtime of one process, built from a [`Host`]'s
//! components. It owns the wasmtime engine, the compiled components and
//! the plugins loaded per installation; the grants, the rate limiter, the
//! circuit breakers and the audit trail are the host's, shared, never its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Semaphore;
use vodo_core::audit::{AuditAction, AuditEvent, AuditSink, AuditSinkExt};
use vodo_core::health::HealthTracker;
use vodo_core::rate::RateLimiter;
use vodo_core::{Host, InstallationId, Permissions, PluginId};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::{Ticker, compatibility_hash, engine};
use crate::host::{HostState, PluginPre};
use crate::host_async::AsyncPluginPre;
use crate::installed::Installed;
use crate::net::{Resolver, SystemResolver};
use crate::services::HostServices;
use crate::warm::WarmBudget;
use crate::{LoadError, SandboxConfig};
use vodo_egress::{Egress, EgressConfig};

/// What every call of every plugin shares, held by one `Arc` so that a
/// call's state takes one reference count, not one per part.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) services: Arc<dyn HostServices>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) rate: Arc<dyn RateLimiter>,
    pub(crate) egress: Arc<Egress>,
    /// Permits of the asynchronous path's blocking host calls.
    pub(crate) blocking: Arc<Semaphore>,
}

/// The plugins' way out: the host's resolver, its private-network rule.
fn plugin_egress(config: &SandboxConfig, resolver: Arc<dyn Resolver>) -> Arc<Egress> {
    let egress = EgressConfig {
        allow_private: config.allow_private_network,
        user_agent: "vodo-plugin".into(),
        reuse_connections: false,
    };
    Arc::new(Egress::new(egress, resolver))
}

/// Runs plugins. One per process: it owns the wasmtime engine, the pooling
/// allocator, the compiled components and the epoch ticker, and reads every
/// plugin's grant, rate limit and health from the [`Host`] it was built with.
pub struct Sandbox {
    engine: Engine,
    pub(crate) config: SandboxConfig,
    pub(crate) shared: Arc<Shared>,
    pub(crate) permissions: Arc<Permissions>,
    pub(crate) health: Arc<dyn HealthTracker>,
    pub(crate) components: DashMap<[u8; 32], Component>,
    pub(crate) pres: DashMap<([u8; 32], u16), PluginPre<HostState>>,
    /// The same, for asynchronous calls.
    pub(crate) pres_async: DashMap<([u8; 32], u16), AsyncPluginPre<HostState>>,
    /// Loaded plugins by installation, then by plugin: an event walks only
    /// its own installation's plugins, however many tenants there are.
    pub(crate) installed: DashMap<InstallationId, BTreeMap<PluginId, Arc<Installed>>>,
    /// Idle warm instances of all plugins, bounded by `config.max_warm`.
    pub(crate) warm: Arc<WarmBudget>,
    /// The engine's [`compatibility_hash`](crate::engine::compatibility_hash),
    /// part of the cache's file names.
    pub(crate) compatibility: u64,
    _ticker: Ticker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .field("installed", &self.len())
            .field("components", &self.components.len())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox with `config` (validated here), over `host`'s components:
    /// its grants are the plugins' permissions, its rate limiter counts
    /// their host calls, its breakers watch their health and its audit trail
    /// records what they do. Plugins reach the host's data through `services`.
    pub fn new(
        config: SandboxConfig,
        host: &Host,
        services: Arc<dyn HostServices>,
    ) -> Result<Self, LoadError> {
        let engine = engine(&config)?;
        let ticker = Ticker::start(&engine, &config)?;
        let compatibility = compatibility_hash(&engine);
        Ok(Self {
            engine,
            shared: Arc::new(Shared {
                services,
                audit: Arc::clone(&host.audit),
                rate: Arc::clone(&host.rate_limits),
                egress: plugin_egress(&config, Arc::new(SystemResolver)),
                blocking: Arc::new(Semaphore::new(config.max_blocking)),
            }),
            permissions: Arc::clone(&host.permissions),
            health: Arc::clone(&host.health),
            components: DashMap::new(),
            pres: DashMap::new(),
            pres_async: DashMap::new(),
            installed: DashMap::new(),
            warm: WarmBudget::new(config.warm_budget()),
            compatibility,
            config,
            _ticker: ticker,
        })
    }

    /// Uses `resolver` for outbound requests instead of the system's.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        Arc::make_mut(&mut self.shared).egress = plugin_egress(&self.config, resolver);
        self
    }

    /// The engine, for hosts that need it (benchmarks, metrics).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration the sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The grants the sandbox reads at every call.
    pub fn permissions(&self) -> &Arc<Permissions> {
        &self.permissions
    }

    /// The circuit breakers the sandbox's calls go through.
    pub fn health(&self) -> &Arc<dyn HealthTracker> {
        &self.health
    }

    /// Warm instances all plugins' pools keep now, idle or serving a call,
    /// at most [`SandboxConfig::warm_budget`].
    pub fn warm_instances(&self) -> u32 {
        self.warm.kept()
    }

    /// The loaded plugin, if any.
    pub fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Option<Arc<Installed>> {
        self.get_by_slug(installation, plugin.as_str())
    }

    /// The loaded plugin of slug `slug` (a request path's segment), if any,
    /// without building a [`PluginId`] for the lookup.
    pub fn get_by_slug(&self, installation: &InstallationId, slug: &str) -> Option<Arc<Installed>> {
        self.installed
            .get(installation)
            .and_then(|plugins| plugins.get(slug).map(Arc::clone))
    }

    /// Every plugin loaded in `installation`, ordered by plugin id.
    pub fn installed_in(&self, installation: &InstallationId) -> Vec<Arc<Installed>> {
        self.installed
            .get(installation)
            .map(|plugins| plugins.values().map(Arc::clone).collect())
            .unwrap_or_default()
    }

    /// Number of loaded (installation, plugin) pairs.
    pub fn len(&self) -> usize {
        self.installed.iter().map(|e| e.value().len()).sum()
    }

    /// Whether nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.installed.iter().all(|e| e.value().is_empty())
    }

    pub(crate) fn audit_event(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        action: AuditAction,
    ) {
        self.shared.audit.record_or_log(
            &AuditEvent::now(action)
                .plugin(plugin)
                .installation(installation),
        );
    }
}
