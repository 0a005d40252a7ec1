//! Grants and permission decisions.
//!
//! A [`Grant`] is what one installation consented to for one plugin: the same
//! plugin installed by two tenants has two grants, each with its own scopes.
//! The grant is the **one source of truth** for what a plugin may do, whether
//! it is enabled, and its API rate limit: the sandbox, the API-key checks and
//! every later part of the platform read it here, at call time.
//!
//! [`PermissionRegistry`] stores grants; [`Permissions`] answers checks from
//! a cache of compiled grants ([`CurrentGrant`]), fails closed when the store
//! cannot answer, audits every denial, and writes the one lifecycle record of
//! each change.
//!
//! # Staleness
//!
//! A change made through a [`Permissions`] reaches its own checks at once.
//! A change made through another one over the same store (another process
//! on the same SQLite file, a CLI command beside a server) is seen within the
//! [staleness](Permissions::with_staleness) bound, one second by default: at
//! most once per bound a check asks the store for its
//! [generation](PermissionRegistry::generation), a counter every change
//! bumps, and forgets the whole cache when it moved.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Mutex, RwLock};
use vodo_scopes::{ConsentDiff, PluginScope, ScopeSet};

use crate::audit::{AuditAction, AuditEvent, AuditSink, AuditSinkExt, LifecycleChange};
use crate::decision::{Decision, DenyReason};
use crate::ids::{PairKey, PairRef};
use crate::manifest::Manifest;
use crate::rate::RateLimit;
use crate::runtime::InterfaceSet;
use crate::{Clock, Error, InstallationId, PluginId, Result, SystemClock, Timestamp};

/// What an installation consented to for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The installation (tenant) that consented.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// The plugin version the consent was given for.
    pub plugin_version: String,
    /// The scopes granted.
    pub scopes: ScopeSet,
    /// The platform API rate limit of the plugin's manifest, per
    /// installation; stored with the grant so that it survives a restart.
    pub rate_limit: Option<RateLimit>,
    /// Who consented (a user id of the host).
    pub granted_by: String,
    /// When.
    pub granted_at: Timestamp,
    /// Whether the plugin is enabled; a disabled plugin is denied everything.
    pub enabled: bool,
}

/// Where grants live. Implementations must pass
/// `conformance::permission_registry` (feature `conformance`).
///
/// ```
/// use vodo_core::permissions::{Grant, MemoryRegistry, PermissionRegistry};
/// use vodo_core::{InstallationId, PluginId, Timestamp};
///
/// let registry: Box<dyn PermissionRegistry> = Box::new(MemoryRegistry::new());
/// let (shop, plugin) = (InstallationId::new("shop-1"), PluginId::new("notifier"));
/// let before = registry.generation()?;
/// registry.put(&Grant {
///     installation: shop.clone(),
///     plugin: plugin.clone(),
///     plugin_version: "1.0.0".into(),
///     scopes: ["entities:read:order".parse()?].into_iter().collect(),
///     rate_limit: None,
///     granted_by: "owner@shop".into(),
///     granted_at: Timestamp(0),
///     enabled: true,
/// })?;
/// assert_ne!(registry.generation()?, before, "caches see the change");
/// let grant = registry.get(&shop, &plugin)?.unwrap();
/// assert!(grant.scopes.allows(&"entities:read:order".parse()?));
/// assert_eq!(registry.installations_of(&plugin)?, [shop.clone()]);
/// assert!(registry.remove(&shop, &plugin)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait PermissionRegistry: fmt::Debug + Send + Sync {
    /// Inserts or replaces the grant of `(grant.installation, grant.plugin)`.
    fn put(&self, grant: &Grant) -> Result<()>;
    /// The grant of a plugin in an installation.
    fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Option<Grant>>;
    /// Removes a grant; returns whether there was one.
    fn remove(&self, installation: &InstallationId, plugin: &PluginId) -> Result<bool>;
    /// Every grant of an installation, by plugin id.
    fn list(&self, installation: &InstallationId) -> Result<Vec<Grant>>;
    /// Every installation that has granted a plugin, sorted.
    fn installations_of(&self, plugin: &PluginId) -> Result<Vec<InstallationId>>;
    /// A number that changes whenever any grant is put or removed, by any
    /// process sharing the store: caches compare it to know they are stale.
    fn generation(&self) -> Result<u64>;
}

macro_rules! forward_registry {
    ($($ty:ty),*) => {$(
        impl<T: PermissionRegistry + ?Sized> PermissionRegistry for $ty {
            fn put(&self, grant: &Grant) -> Result<()> { (**self).put(grant) }
            fn get(&self, i: &InstallationId, p: &PluginId) -> Result<Option<Grant>> { (**self).get(i, p) }
            fn remove(&self, i: &InstallationId, p: &PluginId) -> Result<bool> { (**self).remove(i, p) }
            fn list(&self, i: &InstallationId) -> Result<Vec<Grant>> { (**self).list(i) }
            fn installations_of(&self, p: &PluginId) -> Result<Vec<InstallationId>> { (**self).installations_of(p) }
            fn generation(&self) -> Result<u64> { (**self).generation() }
        }
    )*};
}
forward_registry!(&T, Box<T>, Arc<T>);

/// A registry that has no grants: every check is denied.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl PermissionRegistry for DenyAll {
    fn put(&self, _: &Grant) -> Result<()> {
        Err(Error::Invalid(
            "the `DenyAll` registry stores no grants: use `MemoryRegistry` or `SqliteStore`".into(),
        ))
    }
    fn get(&self, _: &InstallationId, _: &PluginId) -> Result<Option<Grant>> {
        Ok(None)
    }
    fn remove(&self, _: &InstallationId, _: &PluginId) -> Result<bool> {
        Ok(false)
    }
    fn list(&self, _: &InstallationId) -> Result<Vec<Grant>> {
        Ok(Vec::new())
    }
    fn installations_of(&self, _: &PluginId) -> Result<Vec<InstallationId>> {
        Ok(Vec::new())
    }
    fn generation(&self) -> Result<u64> {
        Ok(0)
    }
}

/// The most compiled grants [`Permissions`] keeps before it clears its cache.
pub const MAX_CACHED_GRANTS: usize = 100_000;

/// How long a change made by another process may take to reach this one's
/// checks, by default.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(1);

/// Grants in memory.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    grants: RwLock<HashMap<PairKey, Grant>>,
    generation: AtomicU64,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PermissionRegistry for MemoryRegistry {
    fn put(&self, grant: &Grant) -> Result<()> {
        self.grants.write().insert(
            (grant.installation.clone(), grant.plugin.clone()),
            grant.clone(),
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Option<Grant>> {
        Ok(self
            .grants
            .read()
            .get(&PairRef::of(installation, plugin))
            .cloned())
    }

    fn remove(&self, installation: &InstallationId, plugin: &PluginId) -> Result<bool> {
        let removed = self
            .grants
            .write()
            .remove(&PairRef::of(installation, plugin))
            .is_some();
        if removed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(removed)
    }

    fn list(&self, installation: &InstallationId) -> Result<Vec<Grant>> {
        let mut out: Vec<Grant> = self
            .grants
            .read()
            .values()
            .filter(|g| &g.installation == installation)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        Ok(out)
    }

    fn installations_of(&self, plugin: &PluginId) -> Result<Vec<InstallationId>> {
        let mut out: Vec<InstallationId> = self
            .grants
            .read()
            .keys()
            .filter(|(_, p)| p == plugin)
            .map(|(i, _)| i.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    fn generation(&self) -> Result<u64> {
        Ok(self.generation.load(Ordering::Acquire))
    }
}

/// A grant as the checks use it: compiled once, shared by `Arc`, read at
/// every call. The sandbox holds one for the length of a call.
#[derive(Debug)]
pub struct CurrentGrant {
    /// The scopes granted, compiled.
    pub scopes: ScopeSet,
    /// Whether the plugin is enabled.
    pub enabled: bool,
    /// The platform API rate limit, per installation.
    pub rate_limit: Option<RateLimit>,
    /// The version the consent was for.
    pub plugin_version: String,
    /// The host interfaces the scopes link.
    pub interfaces: InterfaceSet,
}

/// An installer's consent to what a manifest requests: all of it, or less.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The scopes consented to; each must be among the manifest's.
    pub scopes: ScopeSet,
    /// Who consented (a user id of the host).
    pub by: String,
}

impl Consent {
    /// Consent to everything `manifest` requests.
    pub fn all(manifest: &Manifest, by: impl Into<String>) -> Self {
        Self {
            scopes: manifest.scopes().clone(),
            by: by.into(),
        }
    }

    /// Consent to `scopes` only.
    pub fn to(scopes: ScopeSet, by: impl Into<String>) -> Self {
        Self {
            scopes,
            by: by.into(),
        }
    }
}

/// Answers permission checks over a [`PermissionRegistry`] and records
/// every change of a grant.
///
/// Grants are compiled once and cached (negative answers too, so a flood of
/// checks for a plugin that is not installed does not reach the store), up
/// to [`MAX_CACHED_GRANTS`] entries. This type's own changes update the cache
/// at once; changes by another process over the same store are seen within
/// the [staleness](Self::with_staleness) bound (see the module docs).
///
/// Every denial is recorded as `permission_denied`; allowed checks are
/// recorded only with [`audit_allowed`](Self::audit_allowed), since the hot
/// path should not write. Each change of a grant writes exactly one
/// `lifecycle` record.
pub struct Permissions {
    registry: Arc<dyn PermissionRegistry>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    cache: RwLock<HashMap<PairKey, Option<Arc<CurrentGrant>>>>,
    audit_allowed: bool,
    staleness: Duration,
    /// When the store's generation is asked for next, in ms from `epoch`.
    next_sync: AtomicU64,
    generation: AtomicU64,
    sync: Mutex<()>,
    epoch: Instant,
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permissions")
            .field("registry", &self.registry)
            .field("cached", &self.cache.read().len())
            .field("staleness", &self.staleness)
            .finish_non_exhaustive()
    }
}

impl Permissions {
    /// A checker over `registry` that audits to `audit`, with the default
    /// staleness ([`DEFAULT_STALENESS`]).
    pub fn new(registry: Arc<dyn PermissionRegistry>, audit: Arc<dyn AuditSink>) -> Self {
        let generation = registry.generation().unwrap_or(u64::MAX);
        Self {
            registry,
            audit,
            clock: Arc::new(SystemClock),
            cache: RwLock::new(HashMap::new()),
            audit_allowed: false,
            staleness: DEFAULT_STALENESS,
            next_sync: AtomicU64::new(0),
            generation: AtomicU64::new(generation),
            sync: Mutex::new(()),
            epoch: Instant::now(),
        }
    }

    /// Uses `clock` for the times of grants and audit events.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long a change made by another process over the same store
    /// may take to be seen here. Zero asks the store on every check.
    pub fn with_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// Also records every allowed check (off by default).
    pub fn audit_allowed(mut self, yes: bool) -> Self {
        self.audit_allowed = yes;
        self
    }

    /// The registry behind this checker.
    pub fn registry(&self) -> &Arc<dyn PermissionRegistry> {
        &self.registry
    }

    /// The staleness bound (see the module docs).
    pub fn staleness(&self) -> Duration {
        self.staleness
    }

    /// At most once per staleness bound: forget the cache if the store's
    /// generation moved (another process changed a grant).
    fn sync_if_due(&self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch);
        let now = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        if now < self.next_sync.load(Ordering::Acquire) {
            return;
        }
        let Some(_one) = self.sync.try_lock() else {
            return; // another thread is asking
        };
        let step = u64::try_from(self.staleness.as_millis()).unwrap_or(u64::MAX);
        self.next_sync
            .store(now.saturating_add(step), Ordering::Release);
        match self.registry.generation() {
            Ok(g) if g == self.generation.load(Ordering::Acquire) => {}
            Ok(g) => {
                self.cache.write().clear();
                self.generation.store(g, Ordering::Release);
            }
            Err(e) => {
                // The store cannot answer: forget what it said, so that checks
                // ask it (and fail closed) instead of trusting old answers.
                tracing::warn!(error = %e, "permission store generation unavailable");
                self.cache.write().clear();
                self.next_sync.store(0, Ordering::Release);
            }
        }
    }

    /// The current grant of a plugin in an installation, compiled; `None` if
    /// it is not installed. Allocation-free once cached.
    pub fn current(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Option<Arc<CurrentGrant>>> {
        self.current_at(installation, plugin, Instant::now())
    }

    /// [`current`](Self::current), for a caller that has just read the
    /// clock (`now`): the sandbox reads it once per call.
    pub fn current_at(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        now: Instant,
    ) -> Result<Option<Arc<CurrentGrant>>> {
        self.sync_if_due(now);
        if let Some(c) = self.cache.read().get(&PairRef::of(installation, plugin)) {
            return Ok(c.clone());
        }
        let compiled = self.registry.get(installation, plugin)?.map(|g| {
            Arc::new(CurrentGrant {
                interfaces: InterfaceSet::granted(&g.scopes),
                scopes: g.scopes,
                enabled: g.enabled,
                rate_limit: g.rate_limit,
                plugin_version: g.plugin_version,
            })
        });
        let mut cache = self.cache.write();
        // Negative answers are cached too, so ids that come and go must not
        // grow the cache without bound: past the cap, start over.
        if cache.len() >= MAX_CACHED_GRANTS {
            cache.clear();
        }
        cache.insert((installation.clone(), plugin.clone()), compiled.clone());
        Ok(compiled)
    }

    /// Decides whether `plugin` in `installation` may use `scope`; every
    /// denial is audited.
    pub fn check(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        scope: &PluginScope,
    ) -> Decision {
        self.decide(
            installation,
            plugin,
            |s| s.allows(scope),
            || scope.to_string(),
        )
    }

    /// Decides whether `plugin` in `installation` may call the platform API
    /// resource `resource` (`products` in `/api/products/...`): its grant
    /// needs `api:access` or `api:access:{resource}`.
    pub fn check_resource(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        resource: &str,
    ) -> Decision {
        self.decide(
            installation,
            plugin,
            |s| s.can_access_resource(resource),
            || format!("api:access:{resource}"),
        )
    }

    /// The shape of every check: the grant must exist, be enabled, and pass
    /// `allowed`; denials are audited with the scope `wanted` names.
    fn decide(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        allowed: impl FnOnce(&ScopeSet) -> bool,
        wanted: impl FnOnce() -> String,
    ) -> Decision {
        let refused = match self.current(installation, plugin) {
            Err(e) => DenyReason::StoreUnavailable {
                error: e.to_string(),
            },
            Ok(None) => DenyReason::NotInstalled,
            Ok(Some(g)) if !g.enabled => DenyReason::Disabled,
            Ok(Some(g)) => {
                if allowed(&g.scopes) {
                    if self.audit_allowed {
                        self.record(
                            installation,
                            plugin,
                            AuditAction::PermissionChecked { scope: wanted() },
                        );
                    }
                    return Decision::Allow;
                }
                let scope = wanted();
                let reason = DenyReason::MissingScope {
                    scope: scope.clone(),
                };
                return Decision::Deny {
                    reason: self.deny(installation, plugin, reason, scope),
                };
            }
        };
        Decision::Deny {
            reason: self.deny(installation, plugin, refused, wanted()),
        }
    }

    /// Audits a denial of `scope` decided elsewhere (a rate limit, an API
    /// key's own scopes) and returns its reason.
    pub fn deny(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        reason: DenyReason,
        scope: String,
    ) -> DenyReason {
        self.record(
            installation,
            plugin,
            AuditAction::PermissionDenied {
                scope,
                reason: reason.clone(),
            },
        );
        reason
    }

    fn record(&self, installation: &InstallationId, plugin: &PluginId, action: AuditAction) {
        self.audit.record_or_log(
            &AuditEvent::now(action)
                .at(self.clock.now())
                .plugin(plugin)
                .installation(installation),
        );
    }

    /// Stores a grant, updates the cache and writes the one lifecycle record.
    fn store(&self, grant: Grant, change: LifecycleChange, detail: String) -> Result<Grant> {
        self.registry.put(&grant)?;
        self.invalidate(&grant.installation, &grant.plugin);
        self.record(
            &grant.installation,
            &grant.plugin,
            AuditAction::Lifecycle { change, detail },
        );
        Ok(grant)
    }

    /// Records the installer's consent to (part of) what `manifest` asks
    /// for in `installation`, replacing any earlier grant, enabled. The
    /// lifecycle record says `installed`, `upgraded` (an earlier version was
    /// installed) or `granted` (the same version, a new consent).
    ///
    /// The consent must be within the manifest: a host never grants more
    /// than was asked for. The manifest's rate limit is stored with the grant.
    pub fn install(
        &self,
        manifest: &Manifest,
        installation: &InstallationId,
        consent: &Consent,
    ) -> Result<Grant> {
        if let Some(extra) = consent.scopes.iter().find(|s| !manifest.scopes().allows(s)) {
            return Err(Error::Invalid(format!(
                "`{extra}` is not requested by `{}`'s manifest: a grant can only narrow what the manifest asks for",
                manifest.slug
            )));
        }
        let previous = self.registry.get(installation, &manifest.slug)?;
        let grant = Grant {
            installation: installation.clone(),
            plugin: manifest.slug.clone(),
            plugin_version: manifest.version.to_string(),
            scopes: consent.scopes.clone(),
            rate_limit: manifest.limits().rate_limit,
            granted_by: consent.by.clone(),
            granted_at: self.clock.now(),
            enabled: true,
        };
        let detail = format!(
            "version {}, {} of {} requested scopes, consent by {}",
            grant.plugin_version,
            grant.scopes.len(),
            manifest.scopes().len(),
            grant.granted_by
        );
        let change = match previous {
            None => LifecycleChange::Installed,
            Some(p) if p.plugin_version != grant.plugin_version => LifecycleChange::Upgraded,
            Some(_) => LifecycleChange::Granted,
        };
        self.store(grant, change, detail)
    }

    /// Moves the grant of an installed plugin to a new version of its
    /// manifest, which must ask for nothing the installer has not consented
    /// to ([`Error::ConsentRequired`] lists what to ask for). The new version
    /// gets exactly what it requests (a version that asks for less gets
    /// less), its rate limit, and keeps its enabled state.
    pub fn upgrade(&self, manifest: &Manifest, installation: &InstallationId) -> Result<Grant> {
        let current = self.check_upgrade(manifest, installation)?;
        let detail = format!(
            "version {} -> {}, {} scopes",
            current.plugin_version,
            manifest.version,
            manifest.scopes().len()
        );
        let grant = Grant {
            plugin_version: manifest.version.to_string(),
            scopes: manifest.scopes().clone(),
            rate_limit: manifest.limits().rate_limit,
            ..current
        };
        self.store(grant, LifecycleChange::Upgraded, detail)
    }

    /// The current grant of the plugin `manifest` describes, if its new
    /// version may replace it without new consent: [`Error::ConsentRequired`]
    /// lists what the installer must consent to first, [`Error::NotFound`]
    /// says the plugin is not installed.
    pub fn check_upgrade(
        &self,
        manifest: &Manifest,
        installation: &InstallationId,
    ) -> Result<Grant> {
        let current = self
            .registry
            .get(installation, &manifest.slug)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "plugin `{}` is not installed in `{installation}`: install it with the installer's consent first",
                    manifest.slug
                ))
            })?;
        let diff = ConsentDiff::between(&current.scopes, manifest.scopes());
        if diff.needs_consent() {
            return Err(Error::ConsentRequired {
                plugin: manifest.slug.to_string(),
                version: manifest.version.to_string(),
                scopes: diff.added.iter().map(ToString::to_string).collect(),
            });
        }
        Ok(current)
    }

    /// Which of `requested` the installation has not yet consented to (all
    /// of them if the plugin is not installed).
    pub fn consent_needed(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        requested: &ScopeSet,
    ) -> Result<ConsentDiff> {
        let granted = self
            .registry
            .get(installation, plugin)?
            .map(|g| g.scopes)
            .unwrap_or_default();
        Ok(ConsentDiff::between(&granted, requested))
    }

    /// Enables or disables a plugin without touching its scopes; `why` goes
    /// into the lifecycle record (who did it, or what did). Returns whether
    /// anything changed.
    pub fn set_enabled(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        enabled: bool,
        why: &str,
    ) -> Result<bool> {
        let grant = self.registry.get(installation, plugin)?.ok_or_else(|| {
            Error::NotFound(format!(
                "plugin `{plugin}` is not installed in `{installation}`: install it first"
            ))
        })?;
        if grant.enabled == enabled {
            return Ok(false);
        }
        let change = if enabled {
            LifecycleChange::Enabled
        } else {
            LifecycleChange::Disabled
        };
        self.store(Grant { enabled, ..grant }, change, why.to_owned())?;
        Ok(true)
    }

    /// Removes a plugin's grant (uninstall); `detail` goes into the
    /// lifecycle record. Returns whether it was installed.
    pub fn revoke(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        detail: &str,
    ) -> Result<bool> {
        let removed = self.registry.remove(installation, plugin)?;
        self.invalidate(installation, plugin);
        if removed {
            self.record(
                installation,
                plugin,
                AuditAction::Lifecycle {
                    change: LifecycleChange::Uninstalled,
                    detail: detail.to_owned(),
                },
            );
        }
        Ok(removed)
    }

    /// Forgets the cached grant of a plugin in an installation.
    pub fn invalidate(&self, installation: &InstallationId, plugin: &PluginId) {
        self.cache
            .write()
            .remove(&PairRef::of(installation, plugin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditKind, MemoryAudit};

    fn scopes(v: &[&str]) -> ScopeSet {
        v.iter()
            .map(|s| s.parse::<PluginScope>().unwrap())
            .collect()
    }

    fn manifest(slug: &str, permissions: &str) -> Manifest {
        Manifest::parse(&format!(
            r#"{{"name":"N","slug":"{slug}","version":"1.0.0","permissions":{permissions}}}"#
        ))
        .unwrap()
    }

    fn lifecycle(audit: &MemoryAudit) -> Vec<LifecycleChange> {
        audit
            .records()
            .into_iter()
            .filter_map(|r| match r.event.action {
                AuditAction::Lifecycle { change, .. } => Some(change),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn grants_are_per_installation_and_denials_are_audited() {
        let audit = Arc::new(MemoryAudit::new());
        let p = Permissions::new(Arc::new(MemoryRegistry::new()), audit.clone());
        let (shop1, shop2) = (InstallationId::new("shop-1"), InstallationId::new("shop-2"));
        let m = manifest("notifier", r#"{"entities":["write:order"]}"#);
        p.install(&m, &shop1, &Consent::all(&m, "alice")).unwrap();
        p.install(
            &m,
            &shop2,
            &Consent::to(scopes(&["entities:read:order"]), "bob"),
        )
        .unwrap();
        let plugin = m.slug.clone();
        let write: PluginScope = "entities:write:order".parse().unwrap();
        assert_eq!(p.check(&shop1, &plugin, &write), Decision::Allow);
        assert_eq!(
            p.check(&shop2, &plugin, &write),
            Decision::Deny {
                reason: DenyReason::missing(&write)
            }
        );
        assert_eq!(
            p.check(&InstallationId::new("shop-3"), &plugin, &write),
            Decision::Deny {
                reason: DenyReason::NotInstalled
            }
        );
        let denied = audit
            .records()
            .into_iter()
            .filter(|r| r.event.kind() == AuditKind::PermissionDenied)
            .count();
        assert_eq!(denied, 2);

        assert!(p.set_enabled(&shop1, &plugin, false, "merchant").unwrap());
        assert!(!p.set_enabled(&shop1, &plugin, false, "merchant").unwrap());
        assert_eq!(
            p.check(&shop1, &plugin, &write),
            Decision::Deny {
                reason: DenyReason::Disabled
            }
        );
        assert!(!p.current(&shop1, &plugin).unwrap().unwrap().enabled);
        p.set_enabled(&shop1, &plugin, true, "merchant").unwrap();
        assert!(p.revoke(&shop1, &plugin, "").unwrap());
        assert_eq!(
            p.check(&shop1, &plugin, &write),
            Decision::Deny {
                reason: DenyReason::NotInstalled
            }
        );
        use LifecycleChange::*;
        assert_eq!(
            lifecycle(&audit),
            [Installed, Installed, Disabled, Enabled, Uninstalled],
            "one lifecycle record per change"
        );
    }

    #[test]
    fn a_grant_is_within_the_manifest_and_keeps_its_rate_limit() {
        let p = Permissions::new(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryAudit::new()),
        );
        let m = manifest(
            "api-user",
            r#"{"entities":["read:order"],"api":{"rate_limit":"5/minute","endpoints":["orders"]}}"#,
        );
        let shop = InstallationId::new("shop");
        let greedy = Consent::to(scopes(&["entities:write:order"]), "owner");
        let e = p.install(&m, &shop, &greedy).unwrap_err().to_string();
        assert!(e.contains("can only narrow"), "{e}");
        let g = p.install(&m, &shop, &Consent::all(&m, "owner")).unwrap();
        assert_eq!(
            g.rate_limit.map(|r| r.to_string()).as_deref(),
            Some("5/minute")
        );
        let current = p.current(&shop, &m.slug).unwrap().unwrap();
        assert_eq!(current.rate_limit, g.rate_limit);
        assert_eq!(p.check_resource(&shop, &m.slug, "orders"), Decision::Allow);
        assert_eq!(
            p.check_resource(&shop, &m.slug, "customers"),
            Decision::Deny {
                reason: DenyReason::MissingScope {
                    scope: "api:access:customers".into()
                }
            }
        );
    }

    #[test]
    fn upgrades_need_consent_for_more_and_narrow_to_what_they_ask() {
        let audit = Arc::new(MemoryAudit::new());
        let p = Permissions::new(Arc::new(MemoryRegistry::new()), audit.clone());
        let shop = InstallationId::new("shop");
        let v1 = manifest("plug", r#"{"entities":["write:order","read:customer"]}"#);
        p.install(&v1, &shop, &Consent::all(&v1, "owner")).unwrap();
        let greedy = manifest("plug", r#"{"entities":["write:order","write:customer"]}"#);
        match p.upgrade(&greedy, &shop) {
            Err(Error::ConsentRequired { scopes, .. }) => {
                assert_eq!(scopes, ["entities:write:customer"])
            }
            other => panic!("{other:?}"),
        }
        let modest = manifest("plug", r#"{"entities":["read:order"]}"#);
        let g = p.upgrade(&modest, &shop).unwrap();
        assert_eq!(g.scopes, scopes(&["entities:read:order"]));
        assert!(
            !p.check(
                &shop,
                &"plug".into(),
                &"entities:write:order".parse().unwrap()
            )
            .is_allowed()
        );
        assert_eq!(lifecycle(&audit).last(), Some(&LifecycleChange::Upgraded));
    }

    #[test]
    fn a_change_through_another_checker_over_the_same_store_is_seen_within_the_staleness() {
        let registry: Arc<dyn PermissionRegistry> = Arc::new(MemoryRegistry::new());
        let here = Permissions::new(registry.clone(), Arc::new(crate::audit::NoAudit))
            .with_staleness(Duration::from_millis(50));
        let there = Permissions::new(registry, Arc::new(crate::audit::NoAudit));
        let m = manifest("plug", r#"{"entities":["read:order"]}"#);
        let shop = InstallationId::new("shop");
        there
            .install(&m, &shop, &Consent::all(&m, "owner"))
            .unwrap();
        let read: PluginScope = "entities:read:order".parse().unwrap();
        // Not installed a moment ago, from here's point of view, until it syncs.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(here.check(&shop, &m.slug, &read), Decision::Allow);
        there
            .set_enabled(&shop, &m.slug, false, "elsewhere")
            .unwrap();
        let start = Instant::now();
        while here.check(&shop, &m.slug, &read).is_allowed() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "never saw the change"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            start.elapsed() < Duration::from_millis(50 + 200),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_cache_stays_bounded_under_a_flood_of_unknown_installations() {
        let p = Permissions::new(
            Arc::new(MemoryRegistry::new()),
            Arc::new(crate::audit::NoAudit),
        );
        let scope: PluginScope = "api:access".parse().unwrap();
        for i in 0..(MAX_CACHED_GRANTS + 10) {
            let _ = p.check(&InstallationId::new(format!("i{i}")), &"p".into(), &scope);
        }
        assert!(p.cache.read().len() <= MAX_CACHED_GRANTS);
    }

    #[derive(Debug)]
    struct Broken;
    impl PermissionRegistry for Broken {
        fn put(&self, _: &Grant) -> Result<()> {
            Err(Error::Storage("disk on fire".into()))
        }
        fn get(&self, _: &InstallationId, _: &PluginId) -> Result<Option<Grant>> {
            Err(Error::Storage("disk on fire".into()))
        }
        fn remove(&self, _: &InstallationId, _: &PluginId) -> Result<bool> {
            Err(Error::Storage("disk on fire".into()))
        }
        fn list(&self, _: &InstallationId) -> Result<Vec<Grant>> {
            Err(Error::Storage("disk on fire".into()))
        }
        fn installations_of(&self, _: &PluginId) -> Result<Vec<InstallationId>> {
            Err(Error::Storage("disk on fire".into()))
        }
        fn generation(&self) -> Result<u64> {
            Err(Error::Storage("disk on fire".into()))
        }
    }

    #[test]
    fn a_failing_store_fails_closed() {
        let p = Permissions::new(Arc::new(Broken), Arc::new(crate::audit::NoAudit));
        let d = p.check(&"i".into(), &"p".into(), &"api:access".parse().unwrap());
        assert!(matches!(
            d,
            Decision::Deny {
                reason: DenyReason::StoreUnavailable { .. }
            }
        ));
    }

    #[test]
    fn consent_needed_on_upgrade() {
        let p = Permissions::new(
            Arc::new(MemoryRegistry::new()),
            Arc::new(crate::audit::NoAudit),
        );
        let i = InstallationId::new("i");
        let m = manifest("plug", r#"{"entities":["write:order"]}"#);
        let v2 = scopes(&["entities:read:order", "users:read"]);
        assert_eq!(p.consent_needed(&i, &m.slug, &v2).unwrap().added.len(), 2);
        p.install(&m, &i, &Consent::all(&m, "a")).unwrap();
        let diff = p.consent_needed(&i, &m.slug, &v2).unwrap();
        assert_eq!(diff.added, vec!["users:read".parse().unwrap()]);
    }
}
