//! [`Sandbox`]: one engine per process, plugins installed per installation,
//! and calls that come back as a result and a [`Usage`], or a
//! [`SandboxViolation`].

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use vodo_core::audit::{AuditAction, AuditEvent, AuditSink, LifecycleChange};
use vodo_core::manifest::Manifest;
use vodo_core::rate::RateLimiter;
use vodo_core::{InstallationId, PluginId};
use vodo_scopes::{Capability, ScopeSet};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx};

use crate::cache;
use crate::error::Stop;
use crate::host::{self, CallCtx, HostState, Limiter, Plugin, PluginPre, Request, Response};
use crate::net::{Resolver, SystemResolver};
use crate::services::HostServices;
use crate::storage::{self, Storage};
use crate::{CallError, Limits, LoadError, SandboxConfig, SandboxViolation};

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
    /// Bytes the plugin passed to the host (arguments of host calls).
    pub bytes_in: u64,
    /// Bytes the host passed to the plugin (results of host calls).
    pub bytes_out: u64,
}

/// What all calls of one installed plugin have used since it was installed.
#[derive(Debug, Default)]
pub struct UsageTotals {
    calls: AtomicU64,
    failures: AtomicU64,
    wall_micros: AtomicU64,
    fuel: AtomicU64,
    host_calls: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    peak_memory: AtomicU64,
}

/// A snapshot of [`UsageTotals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSummary {
    /// Calls made.
    pub calls: u64,
    /// Calls that ended in a violation or a plugin error.
    pub failures: u64,
    /// Wall-clock time in all calls.
    pub wall: Duration,
    /// Fuel consumed in all calls (zero without fuel metering).
    pub fuel: u64,
    /// Host calls in all calls.
    pub host_calls: u64,
    /// Bytes from the plugin to the host.
    pub bytes_in: u64,
    /// Bytes from the host to the plugin.
    pub bytes_out: u64,
    /// The highest peak memory of any call.
    pub peak_memory: u64,
}

impl UsageTotals {
    fn add(&self, u: &Usage, failed: bool) {
        let r = Ordering::Relaxed;
        self.calls.fetch_add(1, r);
        self.failures.fetch_add(u64::from(failed), r);
        self.wall_micros
            .fetch_add(u64::try_from(u.wall.as_micros()).unwrap_or(u64::MAX), r);
        self.fuel.fetch_add(u.fuel.unwrap_or(0), r);
        self.host_calls.fetch_add(u.host_calls, r);
        self.bytes_in.fetch_add(u.bytes_in, r);
        self.bytes_out.fetch_add(u.bytes_out, r);
        self.peak_memory.fetch_max(u.peak_memory, r);
    }

    /// The totals now.
    pub fn summary(&self) -> UsageSummary {
        let r = Ordering::Relaxed;
        UsageSummary {
            calls: self.calls.load(r),
            failures: self.failures.load(r),
            wall: Duration::from_micros(self.wall_micros.load(r)),
            fuel: self.fuel.load(r),
            host_calls: self.host_calls.load(r),
            bytes_in: self.bytes_in.load(r),
            bytes_out: self.bytes_out.load(r),
            peak_memory: self.peak_memory.load(r),
        }
    }
}

/// The outcome of one call and what it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<T> {
    /// The plugin's answer, or why there is none.
    pub result: Result<T, CallError>,
    /// What the call used (zero if it did not run).
    pub usage: Usage,
}

/// A plugin installed in one installation, ready to run.
pub struct Installed {
    /// The installation.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// Its manifest.
    pub manifest: Manifest,
    /// The scopes the installer granted.
    pub scopes: Arc<ScopeSet>,
    /// The limits of each call.
    pub limits: Limits,
    /// SHA-256 of the component.
    pub component_hash: [u8; 32],
    pre: PluginPre<HostState>,
    storage: Option<Arc<Storage>>,
    enabled: std::sync::atomic::AtomicBool,
    totals: UsageTotals,
}

impl Installed {
    /// What this plugin's calls have used since it was installed.
    pub fn usage(&self) -> UsageSummary {
        self.totals.summary()
    }

    /// Whether the plugin runs; a disabled plugin's calls are not run.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("installation", &self.installation)
            .field("plugin", &self.plugin)
            .field("scopes", &self.scopes)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The capabilities a grant links, as a small bit set: the key of the
/// linker and `InstancePre` cache (the exact scopes are checked per call).
fn linked_capabilities(scopes: &ScopeSet) -> u16 {
    [
        Capability::Entities,
        Capability::HookTrigger,
        Capability::Storage,
        Capability::Network,
        Capability::Settings,
        Capability::Users,
    ]
    .iter()
    .enumerate()
    .filter(|(_, c)| scopes.has_capability(**c))
    .fold(0, |bits, (i, _)| bits | (1 << i))
}

/// Stops the epoch ticker when the sandbox is dropped.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs plugins. One per process: it owns the wasmtime engine, the pooling
/// allocator, the compiled components and the epoch ticker.
pub struct Sandbox {
    engine: Engine,
    config: SandboxConfig,
    services: Arc<dyn HostServices>,
    audit: Arc<dyn AuditSink>,
    rate: Arc<RateLimiter>,
    resolver: Arc<dyn Resolver>,
    components: DashMap<[u8; 32], Component>,
    pres: DashMap<([u8; 32], u16), PluginPre<HostState>>,
    /// Installed plugins by installation, then by plugin: an event walks only
    /// its own installation's plugins, however many tenants there are.
    installed: DashMap<InstallationId, BTreeMap<PluginId, Arc<Installed>>>,
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

/// Builds the engine the sandbox uses; public so that benchmarks can measure
/// raw wasmtime on the very same configuration.
pub fn engine(config: &SandboxConfig) -> Result<Engine, LoadError> {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .consume_fuel(config.fuel)
        .max_wasm_stack(config.max_wasm_stack);
    let n = config.max_concurrent.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(4))
        .total_tables(n.saturating_mul(16))
        .max_memory_size(usize::try_from(config.max_memory_per_instance).unwrap_or(usize::MAX))
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_unused_warm_slots(n.min(100));
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| LoadError::Config(format!("{e:#}")))
}

impl Sandbox {
    /// A sandbox with `config`, whose plugins reach the host through
    /// `services` and whose denials and violations go to `audit`.
    pub fn new(
        config: SandboxConfig,
        services: Arc<dyn HostServices>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, LoadError> {
        if config.epoch_tick.is_zero() {
            return Err(LoadError::Config("`epoch_tick` must be above zero".into()));
        }
        let engine = engine(&config)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let tick = config.epoch_tick;
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("vodo-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| LoadError::Config(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            engine,
            services,
            audit,
            rate: Arc::new(RateLimiter::new()),
            resolver: Arc::new(SystemResolver),
            components: DashMap::new(),
            pres: DashMap::new(),
            installed: DashMap::new(),
            config,
            _ticker: Ticker { stop },
        })
    }

    /// Uses `resolver` for outbound requests instead of the system's.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Shares a rate limiter with the rest of the host.
    pub fn with_rate_limiter(mut self, rate: Arc<RateLimiter>) -> Self {
        self.rate = rate;
        self
    }

    /// The engine, for hosts that need it (benchmarks, metrics).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn ticks_for(&self, timeout: Duration) -> u64 {
        let tick = self.config.epoch_tick.as_nanos().max(1);
        u64::try_from(timeout.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn component(
        &self,
        plugin: &PluginId,
        wasm: &[u8],
    ) -> Result<([u8; 32], Component), LoadError> {
        let hash = cache::sha256(wasm);
        if let Some(c) = self.components.get(&hash) {
            return Ok((hash, c.clone()));
        }
        let component = cache::load(&self.engine, self.config.cache_dir.as_deref(), &hash, wasm)
            .map_err(|e| match e {
                cache::CacheError::Compile(reason) => LoadError::Invalid {
                    plugin: plugin.to_string(),
                    reason,
                },
                cache::CacheError::Io(path, source) => LoadError::Io { path, source },
            })?;
        self.components.insert(hash, component.clone());
        Ok((hash, component))
    }

    fn check_imports(
        &self,
        plugin: &PluginId,
        component: &Component,
        scopes: &ScopeSet,
    ) -> Result<(), LoadError> {
        for (name, _) in component.component_type().imports(&self.engine) {
            if name.starts_with("wasi:") {
                continue;
            }
            let interface = name
                .strip_prefix("vodo:plugin/")
                .map(|rest| rest.split('@').next().unwrap_or(rest));
            let unknown = || LoadError::UnknownImport {
                plugin: plugin.to_string(),
                import: name.to_owned(),
            };
            let Some(interface) = interface else {
                return Err(unknown());
            };
            match vodo_core::runtime::interface_capability(interface) {
                Err(()) => return Err(unknown()),
                Ok(None) => {}
                Ok(Some((cap, label))) if !scopes.has_capability(cap) => {
                    return Err(LoadError::MissingPermission {
                        plugin: plugin.to_string(),
                        import: name.to_owned(),
                        capability: label,
                        scope: cap.example_scope(),
                    });
                }
                Ok(Some(_)) => {}
            }
        }
        Ok(())
    }

    fn pre(
        &self,
        hash: [u8; 32],
        component: &Component,
        scopes: &ScopeSet,
    ) -> Result<PluginPre<HostState>, LoadError> {
        let caps = linked_capabilities(scopes);
        if let Some(p) = self.pres.get(&(hash, caps)) {
            return Ok(p.clone());
        }
        let link_err = |e: wasmtime::Error| LoadError::Config(format!("linking: {e:#}"));
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_err)?;
        type H = HasSelf<HostState>;
        host::vodo::plugin::types::add_to_linker::<HostState, H>(&mut linker, |s| s)
            .map_err(link_err)?;
        host::vodo::plugin::log::add_to_linker::<HostState, H>(&mut linker, |s| s)
            .map_err(link_err)?;
        if scopes.has_capability(Capability::Entities) {
            host::vodo::plugin::entities::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        if scopes.has_capability(Capability::HookTrigger) {
            host::vodo::plugin::hooks::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        if scopes.has_capability(Capability::Storage) {
            host::vodo::plugin::storage::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        if scopes.has_capability(Capability::Network) {
            host::vodo::plugin::http::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        if scopes.has_capability(Capability::Settings) {
            host::vodo::plugin::settings::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        if scopes.has_capability(Capability::Users) {
            host::vodo::plugin::users::add_to_linker::<HostState, H>(&mut linker, |s| s)
                .map_err(link_err)?;
        }
        let pre = linker
            .instantiate_pre(component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::Config(format!("preparing the instance: {e:#}")))?;
        self.pres.insert((hash, caps), pre.clone());
        Ok(pre)
    }

    /// Installs `wasm`, the component of `manifest`, in `installation` with
    /// the scopes the installer `granted` (which must be among those the
    /// manifest requests) and `limits`.
    ///
    /// The component is compiled once per content (and cached on disk when
    /// a cache folder is configured); a component that imports an interface
    /// its grant does not cover is refused with the permission it lacks.
    /// Installing again replaces the plugin (upgrade, hot reload).
    pub fn install(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: &[u8],
        granted: ScopeSet,
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let prepared = self.prepare(installation, manifest, wasm, granted, limits)?;
        Ok(self.activate(prepared))
    }

    /// Everything an install does short of making the plugin the one that runs.
    fn prepare(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: &[u8],
        granted: ScopeSet,
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let plugin = manifest.slug.clone();
        if let Some(extra) = granted.iter().find(|s| !manifest.scopes().allows(s)) {
            return Err(LoadError::Config(format!(
                "`{extra}` is not requested by the manifest of `{plugin}`: a grant can only narrow what the manifest asks for"
            )));
        }
        if limits.fuel.is_some() && !self.config.fuel {
            return Err(LoadError::Config(
                "limits ask for a fuel budget but the sandbox was built without `fuel`: set `SandboxConfig::fuel`".into(),
            ));
        }
        let (hash, component) = self.component(&plugin, wasm)?;
        self.check_imports(&plugin, &component, &granted)?;
        if let Some(r) = component.resources_required() {
            let needed = r.max_initial_memory_size.unwrap_or(0);
            if needed > limits.memory {
                return Err(LoadError::TooLarge {
                    plugin: plugin.to_string(),
                    needed,
                    limit: limits.memory,
                });
            }
        }
        let pre = self.pre(hash, &component, &granted)?;
        let storage = match (&self.config.storage_root, &manifest.permissions.storage) {
            (Some(root), Some(s)) if granted.has_capability(Capability::Storage) => {
                let path = storage::folder(root, installation.as_str(), plugin.as_str());
                let read_only =
                    s.read_only || !granted.allows(&vodo_scopes::PluginScope::StorageWrite);
                Some(Arc::new(
                    Storage::open(&path, s.max_size, s.allowed_types.clone(), read_only).map_err(
                        |source| LoadError::Io {
                            path: path.display().to_string(),
                            source,
                        },
                    )?,
                ))
            }
            _ => None,
        };
        Ok(Arc::new(Installed {
            installation: installation.clone(),
            plugin,
            manifest: manifest.clone(),
            scopes: Arc::new(granted),
            limits,
            component_hash: hash,
            pre,
            storage,
            enabled: std::sync::atomic::AtomicBool::new(true),
            totals: UsageTotals::default(),
        }))
    }

    /// Makes a prepared plugin the one that runs (replacing any earlier version).
    fn activate(&self, installed: Arc<Installed>) -> Arc<Installed> {
        let (installation, plugin) = (&installed.installation, &installed.plugin);
        let previous = self
            .installed
            .entry(installation.clone())
            .or_default()
            .insert(plugin.clone(), Arc::clone(&installed));
        let change = if previous.is_some() {
            LifecycleChange::Upgraded
        } else {
            LifecycleChange::Installed
        };
        self.audit_event(
            installation,
            plugin,
            AuditAction::Lifecycle {
                change,
                detail: format!(
                    "version {}, component {}",
                    installed.manifest.version,
                    &crate::cache::hex(&installed.component_hash)[..16]
                ),
            },
        );
        installed
    }

    /// Upgrades an installed plugin to a new version under its current grant.
    ///
    /// If the new manifest asks for anything the installer has not
    /// consented to, nothing changes and [`LoadError::ConsentRequired`] lists
    /// what to ask for; after consent, call [`install`](Self::install) with
    /// the new grant. Otherwise the new version runs with exactly the scopes
    /// it requests (a version that asks for less gets less), once it has
    /// answered its health probe: a new version whose probe fails or traps
    /// is refused with [`LoadError::Unhealthy`], audited, and the running
    /// version stays.
    pub fn upgrade(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: &[u8],
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let current = self
            .get(installation, &manifest.slug)
            .ok_or_else(|| LoadError::NotInstalled(manifest.slug.to_string()))?;
        let diff = vodo_scopes::ConsentDiff::between(&current.scopes, manifest.scopes());
        if diff.needs_consent() {
            return Err(LoadError::ConsentRequired {
                plugin: manifest.slug.to_string(),
                version: manifest.version.to_string(),
                scopes: diff.added.iter().map(ToString::to_string).collect(),
            });
        }
        let next = self.prepare(
            installation,
            manifest,
            wasm,
            manifest.scopes().clone(),
            limits,
        )?;
        // The new version answers its health probe before it replaces the
        // running one; if it does not, the running one stays.
        if let Err(e) = self.call_health(&next).result {
            self.audit_event(
                installation,
                &manifest.slug,
                AuditAction::Lifecycle {
                    change: LifecycleChange::UpgradeRefused,
                    detail: format!(
                        "version {} failed its health probe: {e}; version {} stays",
                        manifest.version, current.manifest.version
                    ),
                },
            );
            return Err(LoadError::Unhealthy {
                plugin: manifest.slug.to_string(),
                version: manifest.version.to_string(),
                reason: e.to_string(),
            });
        }
        Ok(self.activate(next))
    }

    /// Enables or disables an installed plugin; a disabled plugin's calls
    /// return [`CallError::NotRun`] without running it.
    pub fn set_enabled(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        enabled: bool,
    ) -> Result<(), LoadError> {
        let p = self
            .get(installation, plugin)
            .ok_or_else(|| LoadError::NotInstalled(plugin.to_string()))?;
        if p.enabled
            .swap(enabled, std::sync::atomic::Ordering::Relaxed)
            != enabled
        {
            let change = if enabled {
                LifecycleChange::Enabled
            } else {
                LifecycleChange::Disabled
            };
            self.audit_event(
                installation,
                plugin,
                AuditAction::Lifecycle {
                    change,
                    detail: String::new(),
                },
            );
        }
        Ok(())
    }

    /// Removes a plugin from an installation and deletes its storage folder.
    /// Returns whether it was installed.
    pub fn uninstall(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<bool, LoadError> {
        let removed = match self.installed.get_mut(installation) {
            Some(mut plugins) => plugins.remove(plugin).is_some(),
            None => false,
        };
        self.installed
            .remove_if(installation, |_, plugins| plugins.is_empty());
        if let Some(root) = &self.config.storage_root {
            let path = storage::folder(root, installation.as_str(), plugin.as_str());
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(LoadError::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        if removed {
            self.audit_event(
                installation,
                plugin,
                AuditAction::Lifecycle {
                    change: LifecycleChange::Uninstalled,
                    detail: "storage removed".into(),
                },
            );
        }
        Ok(removed)
    }

    /// The installed plugin, if any.
    pub fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Option<Arc<Installed>> {
        self.installed
            .get(installation)
            .and_then(|plugins| plugins.get(plugin).map(Arc::clone))
    }

    /// Every plugin installed in `installation`, ordered by plugin id.
    pub fn installed_in(&self, installation: &InstallationId) -> Vec<Arc<Installed>> {
        self.installed
            .get(installation)
            .map(|plugins| plugins.values().map(Arc::clone).collect())
            .unwrap_or_default()
    }

    /// Number of installed (installation, plugin) pairs.
    pub fn len(&self) -> usize {
        self.installed.iter().map(|e| e.value().len()).sum()
    }

    /// Whether nothing is installed.
    pub fn is_empty(&self) -> bool {
        self.installed.iter().all(|e| e.value().is_empty())
    }

    fn audit_event(&self, installation: &InstallationId, plugin: &PluginId, action: AuditAction) {
        let event = AuditEvent::now(action)
            .plugin(plugin)
            .installation(installation);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, "audit sink failed");
        }
    }

    /// Delivers a hook event to a plugin's `on-event` export.
    pub fn call_event(&self, plugin: &Installed, name: &str, payload: &str) -> Call<()> {
        self.run(
            plugin,
            |store, p| p.call_on_event(store, name, payload),
            |_| 0,
        )
    }

    /// Sends a request to one of the plugin's endpoints.
    pub fn call_request(&self, plugin: &Installed, request: &Request) -> Call<Response> {
        self.run(
            plugin,
            |store, p| p.call_on_request(store, request),
            |r: &Response| r.body.len() as u64,
        )
    }

    /// Calls the plugin's health probe.
    pub fn call_health(&self, plugin: &Installed) -> Call<()> {
        self.run(plugin, |store, p| p.call_health(store), |_| 0)
    }

    fn store(&self, plugin: &Installed) -> Store<HostState> {
        let limits = &plugin.limits;
        let output = usize::try_from(limits.output).unwrap_or(usize::MAX);
        // Deny by default: no args, no env, no preopened folders, no sockets;
        // stdout and stderr are captured and bounded.
        let pipes = [MemoryOutputPipe::new(output), MemoryOutputPipe::new(output)];
        let wasi = WasiCtx::builder()
            .stdout(pipes[0].clone())
            .stderr(pipes[1].clone())
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(10_000);
        let rate = plugin
            .manifest
            .limits()
            .rate_limit
            .map(|r| (Arc::clone(&self.rate), r));
        let state = HostState {
            wasi,
            pipes,
            table,
            limiter: Limiter {
                max_memory: limits.memory,
                max_table_elements: limits.table_elements,
                max_instances: limits.instances as usize,
                ..Limiter::default()
            },
            call: CallCtx {
                plugin: plugin.plugin.clone(),
                installation: plugin.installation.clone(),
                scopes: Arc::clone(&plugin.scopes),
                services: Arc::clone(&self.services),
                audit: Arc::clone(&self.audit),
                limits: limits.clone(),
                storage: plugin.storage.clone(),
                rate,
                resolver: Arc::clone(&self.resolver),
                allow_private: self.config.allow_private_network,
                deadline: Instant::now() + limits.timeout,
                host_calls: 0,
                bytes_in: 0,
                bytes_out: 0,
                logged: 0,
                stopped: None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.ticks_for(limits.timeout));
        store
    }

    fn run<T>(
        &self,
        plugin: &Installed,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<Result<T, String>>,
        output_size: impl Fn(&T) -> u64,
    ) -> Call<T> {
        if !plugin.is_enabled() {
            return Call {
                result: Err(CallError::NotRun(format!(
                    "plugin `{}` is disabled",
                    plugin.plugin
                ))),
                usage: Usage::default(),
            };
        }
        let start = Instant::now();
        let mut store = self.store(plugin);
        let fuel_budget = if self.config.fuel {
            let budget = plugin.limits.fuel.unwrap_or(u64::MAX);
            // Fuel is enabled on this engine, so setting it cannot fail.
            let _ = store.set_fuel(budget);
            Some(budget)
        } else {
            None
        };
        let outcome = plugin
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&mut store, &instance));
        let state = store.data();
        let usage = Usage {
            wall: start.elapsed(),
            fuel: fuel_budget.map(|b| b - store.get_fuel().unwrap_or(0)),
            peak_memory: state.limiter.peak,
            host_calls: state.call.host_calls,
            bytes_in: state.call.bytes_in,
            bytes_out: state.call.bytes_out,
        };
        let result = match outcome {
            Ok(Ok(value)) => {
                let size = output_size(&value);
                if size > plugin.limits.output {
                    Err(CallError::Violation(SandboxViolation::Output {
                        what: "result",
                        limit: plugin.limits.output,
                    }))
                } else {
                    Ok(value)
                }
            }
            Ok(Err(message)) => {
                if message.len() as u64 > plugin.limits.output {
                    Err(CallError::Violation(SandboxViolation::Output {
                        what: "error message",
                        limit: plugin.limits.output,
                    }))
                } else {
                    Err(CallError::Plugin(message))
                }
            }
            Err(e) => Err(self.classify(e, state, plugin, fuel_budget)),
        };
        if let Err(CallError::Violation(v)) = &result {
            // Permission denials were audited with their scope where they happened.
            if !matches!(v, SandboxViolation::Permission { .. }) || state.call.stopped.is_none() {
                self.audit_event(
                    &plugin.installation,
                    &plugin.plugin,
                    AuditAction::SandboxViolation {
                        violation: v.kind().into(),
                        detail: v.to_string(),
                    },
                );
            }
        }
        self.spikes(plugin, &usage);
        plugin.totals.add(&usage, result.is_err());
        Call { result, usage }
    }

    /// Records usage near a limit as a resource spike.
    fn spikes(&self, plugin: &Installed, usage: &Usage) {
        let l = &plugin.limits;
        let checks = [
            ("memory_bytes", usage.peak_memory, l.memory),
            (
                "wall_ms",
                u64::try_from(usage.wall.as_millis()).unwrap_or(u64::MAX),
                u64::try_from(l.timeout.as_millis()).unwrap_or(u64::MAX),
            ),
            ("host_calls", usage.host_calls, l.host_calls),
        ];
        for (resource, value, limit) in checks {
            // At or above 80% of a limit that was not broken (a broken one is a violation).
            let threshold = u64::try_from(u128::from(limit) * 8 / 10).unwrap_or(u64::MAX);
            if value >= threshold.max(1) && value <= limit {
                self.audit_event(
                    &plugin.installation,
                    &plugin.plugin,
                    AuditAction::ResourceSpike {
                        resource: resource.into(),
                        value,
                        threshold,
                    },
                );
            }
        }
    }

    fn classify(
        &self,
        e: wasmtime::Error,
        state: &HostState,
        plugin: &Installed,
        fuel: Option<u64>,
    ) -> CallError {
        if let Some(Stop(v)) = e.downcast_ref::<Stop>() {
            return CallError::Violation(v.clone());
        }
        if let Some(v) = state
            .call
            .stopped
            .clone()
            .or_else(|| state.limiter.denied.clone())
        {
            return CallError::Violation(v);
        }
        // A guest whose stdout or stderr filled up usually panics on the
        // failed write; the full pipe is the cause, not the panic.
        if state
            .pipes
            .iter()
            .any(|p| p.contents().len() as u64 >= plugin.limits.output)
        {
            return CallError::Violation(SandboxViolation::Output {
                what: "stdout or stderr",
                limit: plugin.limits.output,
            });
        }
        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return CallError::NotRun(
                "the host is at capacity: too many plugin calls at once".into(),
            );
        }
        if let Some(trap) = e.downcast_ref::<Trap>() {
            return CallError::Violation(match *trap {
                Trap::Interrupt => SandboxViolation::Timeout {
                    limit: plugin.limits.timeout,
                },
                Trap::OutOfFuel => SandboxViolation::Fuel {
                    budget: fuel.unwrap_or(0),
                },
                Trap::StackOverflow => SandboxViolation::Stack,
                other => SandboxViolation::Trap(other.to_string()),
            });
        }
        let message = format!("{e:#}");
        // The three limits wasmtime reports only as messages; each has a test.
        if message.contains("write beyond capacity of MemoryOutputPipe") {
            return CallError::Violation(SandboxViolation::Output {
                what: "stdout or stderr",
                limit: plugin.limits.output,
            });
        }
        if message.contains("resource limit exceeded") {
            return CallError::Violation(SandboxViolation::Resources(message));
        }
        if message.contains("memory minimum size") {
            return CallError::Violation(SandboxViolation::Memory {
                requested: 0,
                limit: plugin.limits.memory,
            });
        }
        CallError::Violation(SandboxViolation::Trap(message))
    }
}

/// A stable name for the engine's configuration, part of cache keys.
pub(crate) fn compatibility_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

impl vodo_core::runtime::Sandbox for Sandbox {
    fn inspect(&self, wasm: &[u8]) -> Result<vodo_core::runtime::ComponentInfo, String> {
        let component = Component::new(&self.engine, wasm).map_err(|e| format!("{e:#}"))?;
        let ty = component.component_type();
        Ok(vodo_core::runtime::ComponentInfo {
            imports: ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_owned())
                .collect(),
            exports: ty
                .exports(&self.engine)
                .map(|(n, _)| n.to_owned())
                .collect(),
            initial_memory: component
                .resources_required()
                .and_then(|r| r.max_initial_memory_size)
                .unwrap_or(0),
        })
    }

    fn trial(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        budget: &vodo_core::runtime::TrialBudget,
        events: &[(String, String)],
    ) -> Result<Vec<vodo_core::runtime::TrialRun>, String> {
        // Every trial gets its own installation, so its own empty storage
        // folder: two reviews of the same package running at once must not
        // share (and remove) each other's files.
        static TRIALS: AtomicU64 = AtomicU64::new(0);
        let digest = crate::cache::hex(&crate::cache::sha256(wasm));
        let installation = InstallationId::new(format!(
            "__trial__{}-{}",
            digest.get(..16).unwrap_or(&digest),
            TRIALS.fetch_add(1, Ordering::Relaxed)
        ));
        let limits = Limits {
            memory: budget.memory,
            timeout: budget.timeout,
            fuel: budget.fuel.filter(|_| self.config.fuel),
            ..Limits::default()
        };
        let plugin = self
            .install(
                &installation,
                manifest,
                wasm,
                manifest.scopes().clone(),
                limits,
            )
            .map_err(|e| e.to_string())?;
        let runs = events
            .iter()
            .map(|(event, payload)| {
                let call = self.call_event(&plugin, event, payload);
                vodo_core::runtime::TrialRun {
                    event: event.clone(),
                    result: call.result.map_err(|e| e.to_string()),
                    wall: call.usage.wall,
                    fuel: call.usage.fuel,
                    peak_memory: call.usage.peak_memory,
                }
            })
            .collect();
        self.uninstall(&installation, &plugin.plugin)
            .map_err(|e| e.to_string())?;
        if let Some(root) = &self.config.storage_root {
            // The trial's installation folder is now empty and never used again.
            let _ = std::fs::remove_dir(storage::installation_folder(root, installation.as_str()));
        }
        Ok(runs)
    }
}
