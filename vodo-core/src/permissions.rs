//! Grants and permission decisions.
//!
//! A [`Grant`] is what one installation consented to for one plugin: the same
//! plugin installed by two tenants has two grants, each with its own scopes.
//! [`PermissionRegistry`] stores grants; [`Permissions`] answers checks from a
//! cache of compiled [`ScopeSet`]s, fails closed when the store cannot answer,
//! and audits every denial.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use parking_lot::RwLock;
use vodo_scopes::{ConsentDiff, PluginScope, ScopeSet};

use crate::audit::{AuditAction, AuditEvent, AuditSink, LifecycleChange};
use crate::decision::{Decision, DenyReason};
use crate::{Clock, InstallationId, PluginId, Result, SystemClock, Timestamp};

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
    /// Who consented (a user id of the host).
    pub granted_by: String,
    /// When.
    pub granted_at: Timestamp,
    /// Whether the plugin is enabled; a disabled plugin is denied everything.
    pub enabled: bool,
}

/// Where grants live. Implementations must pass
/// `conformance::permission_registry` (feature `conformance`).
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
}

macro_rules! forward_registry {
    ($($ty:ty),*) => {$(
        impl<T: PermissionRegistry + ?Sized> PermissionRegistry for $ty {
            fn put(&self, grant: &Grant) -> Result<()> { (**self).put(grant) }
            fn get(&self, i: &InstallationId, p: &PluginId) -> Result<Option<Grant>> { (**self).get(i, p) }
            fn remove(&self, i: &InstallationId, p: &PluginId) -> Result<bool> { (**self).remove(i, p) }
            fn list(&self, i: &InstallationId) -> Result<Vec<Grant>> { (**self).list(i) }
            fn installations_of(&self, p: &PluginId) -> Result<Vec<InstallationId>> { (**self).installations_of(p) }
        }
    )*};
}
forward_registry!(&T, Box<T>, Arc<T>);

/// A registry that has no grants: every check is denied.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl PermissionRegistry for DenyAll {
    fn put(&self, _: &Grant) -> Result<()> {
        Err(crate::Error::Invalid(
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
}

type Key = (InstallationId, PluginId);

/// The most compiled grants [`Permissions`] keeps before it clears its cache.
pub const MAX_CACHED_GRANTS: usize = 100_000;

/// A borrowed `(installation, plugin)` that looks up an owned key without allocating.
struct KeyRef<'a>(&'a str, &'a str);

impl Hash for KeyRef<'_> {
    // Must hash exactly as `(InstallationId, PluginId)` does: each id hashes as its `str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0.as_str() && self.1 == key.1.as_str()
    }
}

/// Grants in memory.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    grants: RwLock<HashMap<Key, Grant>>,
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
        Ok(())
    }

    fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Option<Grant>> {
        Ok(self
            .grants
            .read()
            .get(&KeyRef(installation.as_str(), plugin.as_str()))
            .cloned())
    }

    fn remove(&self, installation: &InstallationId, plugin: &PluginId) -> Result<bool> {
        Ok(self
            .grants
            .write()
            .remove(&KeyRef(installation.as_str(), plugin.as_str()))
            .is_some())
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
}

/// The compiled state of one grant, as the checker caches it.
#[derive(Debug)]
enum Cached {
    NotInstalled,
    Granted {
        scopes: Arc<ScopeSet>,
        enabled: bool,
    },
}

/// Answers permission checks over a [`PermissionRegistry`].
///
/// Grants are compiled once and cached (negative answers too, so a flood of
/// checks for a plugin that is not installed does not reach the store), up
/// to [`MAX_CACHED_GRANTS`] entries. The
/// cache is updated by this type's own [`grant`](Self::grant),
/// [`revoke`](Self::revoke) and [`set_enabled`](Self::set_enabled); a host
/// that changes the registry behind its back calls
/// [`invalidate`](Self::invalidate).
///
/// Every denial is recorded as `permission_denied`; allowed checks are
/// recorded only with [`audit_allowed`](Self::audit_allowed), since the hot
/// path should not write.
#[derive(Debug)]
pub struct Permissions {
    registry: Arc<dyn PermissionRegistry>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    cache: RwLock<HashMap<Key, Arc<Cached>>>,
    audit_allowed: bool,
}

impl Permissions {
    /// A checker over `registry` that audits to `audit`.
    pub fn new(registry: Arc<dyn PermissionRegistry>, audit: Arc<dyn AuditSink>) -> Self {
        Self {
            registry,
            audit,
            clock: Arc::new(SystemClock),
            cache: RwLock::new(HashMap::new()),
            audit_allowed: false,
        }
    }

    /// Uses `clock` for the times of grants and audit events.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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

    fn lookup(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Arc<Cached>> {
        if let Some(c) = self
            .cache
            .read()
            .get(&KeyRef(installation.as_str(), plugin.as_str()))
        {
            return Ok(Arc::clone(c));
        }
        let cached = Arc::new(match self.registry.get(installation, plugin)? {
            None => Cached::NotInstalled,
            Some(g) => Cached::Granted {
                scopes: Arc::new(g.scopes),
                enabled: g.enabled,
            },
        });
        let mut cache = self.cache.write();
        // Negative answers are cached too, so ids that come and go must not
        // grow the cache without bound: past the cap, start over.
        if cache.len() >= MAX_CACHED_GRANTS {
            cache.clear();
        }
        cache.insert((installation.clone(), plugin.clone()), Arc::clone(&cached));
        Ok(cached)
    }

    /// The compiled scopes granted to a plugin in an installation, if it is
    /// installed and enabled. The sandbox holds this for the length of a call.
    pub fn scopes(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Option<Arc<ScopeSet>>> {
        Ok(match &*self.lookup(installation, plugin)? {
            Cached::Granted {
                scopes,
                enabled: true,
            } => Some(Arc::clone(scopes)),
            _ => None,
        })
    }

    /// Decides whether `plugin` in `installation` may use `scope`.
    pub fn check(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        scope: &PluginScope,
    ) -> Decision {
        let decision = match self.lookup(installation, plugin) {
            Err(e) => Decision::Deny {
                reason: DenyReason::StoreUnavailable {
                    error: e.to_string(),
                },
            },
            Ok(c) => match &*c {
                Cached::NotInstalled => Decision::Deny {
                    reason: DenyReason::NotInstalled,
                },
                Cached::Granted { enabled: false, .. } => Decision::Deny {
                    reason: DenyReason::Disabled,
                },
                Cached::Granted { scopes, .. } if scopes.allows(scope) => Decision::Allow,
                Cached::Granted { .. } => Decision::Deny {
                    reason: DenyReason::missing(scope),
                },
            },
        };
        match &decision {
            Decision::Deny { reason } => self.record(
                installation,
                plugin,
                AuditAction::PermissionDenied {
                    scope: scope.to_string(),
                    reason: reason.clone(),
                },
            ),
            Decision::Allow if self.audit_allowed => self.record(
                installation,
                plugin,
                AuditAction::PermissionChecked {
                    scope: scope.to_string(),
                },
            ),
            Decision::Allow => {}
        }
        decision
    }

    fn record(&self, installation: &InstallationId, plugin: &PluginId, action: AuditAction) {
        let event = AuditEvent::now(action)
            .at(self.clock.now())
            .plugin(plugin)
            .installation(installation);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, "audit sink failed to record a permission event");
        }
    }

    /// Records the installer's consent: stores `scopes` as the grant of
    /// `plugin` in `installation` (replacing any earlier grant) and enables it.
    pub fn grant(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        plugin_version: &str,
        scopes: ScopeSet,
        granted_by: &str,
    ) -> Result<Grant> {
        let existed = self.registry.get(installation, plugin)?.is_some();
        let grant = Grant {
            installation: installation.clone(),
            plugin: plugin.clone(),
            plugin_version: plugin_version.to_owned(),
            scopes,
            granted_by: granted_by.to_owned(),
            granted_at: self.clock.now(),
            enabled: true,
        };
        self.registry.put(&grant)?;
        self.invalidate(installation, plugin);
        self.record(
            installation,
            plugin,
            AuditAction::Lifecycle {
                change: if existed {
                    LifecycleChange::Granted
                } else {
                    LifecycleChange::Installed
                },
                detail: format!(
                    "version {plugin_version}, {} scopes, consent by {granted_by}",
                    grant.scopes.len()
                ),
            },
        );
        Ok(grant)
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

    /// Enables or disables a plugin without touching its scopes.
    pub fn set_enabled(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        enabled: bool,
    ) -> Result<()> {
        let mut grant = self.registry.get(installation, plugin)?.ok_or_else(|| {
            crate::Error::NotFound(format!(
                "plugin `{plugin}` is not installed in `{installation}`: install it first"
            ))
        })?;
        if grant.enabled == enabled {
            return Ok(());
        }
        grant.enabled = enabled;
        self.registry.put(&grant)?;
        self.invalidate(installation, plugin);
        self.record(
            installation,
            plugin,
            AuditAction::Lifecycle {
                change: if enabled {
                    LifecycleChange::Enabled
                } else {
                    LifecycleChange::Disabled
                },
                detail: String::new(),
            },
        );
        Ok(())
    }

    /// Removes a plugin's grant (uninstall). Returns whether it was installed.
    pub fn revoke(&self, installation: &InstallationId, plugin: &PluginId) -> Result<bool> {
        let removed = self.registry.remove(installation, plugin)?;
        self.invalidate(installation, plugin);
        if removed {
            self.record(
                installation,
                plugin,
                AuditAction::Lifecycle {
                    change: LifecycleChange::Uninstalled,
                    detail: String::new(),
                },
            );
        }
        Ok(removed)
    }

    /// Forgets the cached grant of a plugin in an installation.
    pub fn invalidate(&self, installation: &InstallationId, plugin: &PluginId) {
        self.cache
            .write()
            .remove(&KeyRef(installation.as_str(), plugin.as_str()));
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

    #[test]
    fn grants_are_per_installation_and_denials_are_audited() {
        let audit = Arc::new(MemoryAudit::new());
        let p = Permissions::new(Arc::new(MemoryRegistry::new()), audit.clone());
        let (shop1, shop2) = (InstallationId::new("shop-1"), InstallationId::new("shop-2"));
        let plugin = PluginId::new("notifier");
        p.grant(
            &shop1,
            &plugin,
            "1.0.0",
            scopes(&["entities:write:order"]),
            "alice",
        )
        .unwrap();
        p.grant(
            &shop2,
            &plugin,
            "1.0.0",
            scopes(&["entities:read:order"]),
            "bob",
        )
        .unwrap();
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

        p.set_enabled(&shop1, &plugin, false).unwrap();
        assert_eq!(
            p.check(&shop1, &plugin, &write),
            Decision::Deny {
                reason: DenyReason::Disabled
            }
        );
        assert!(p.scopes(&shop1, &plugin).unwrap().is_none());
        p.set_enabled(&shop1, &plugin, true).unwrap();
        assert!(p.revoke(&shop1, &plugin).unwrap());
        assert_eq!(
            p.check(&shop1, &plugin, &write),
            Decision::Deny {
                reason: DenyReason::NotInstalled
            }
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
            Err(crate::Error::Storage("disk on fire".into()))
        }
        fn get(&self, _: &InstallationId, _: &PluginId) -> Result<Option<Grant>> {
            Err(crate::Error::Storage("disk on fire".into()))
        }
        fn remove(&self, _: &InstallationId, _: &PluginId) -> Result<bool> {
            Err(crate::Error::Storage("disk on fire".into()))
        }
        fn list(&self, _: &InstallationId) -> Result<Vec<Grant>> {
            Err(crate::Error::Storage("disk on fire".into()))
        }
        fn installations_of(&self, _: &PluginId) -> Result<Vec<InstallationId>> {
            Err(crate::Error::Storage("disk on fire".into()))
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
        let (i, pl) = (InstallationId::new("i"), PluginId::new("p"));
        let v2 = scopes(&["entities:read:order", "users:read"]);
        assert_eq!(p.consent_needed(&i, &pl, &v2).unwrap().added.len(), 2);
        p.grant(&i, &pl, "1.0.0", scopes(&["entities:write:order"]), "a")
            .unwrap();
        let diff = p.consent_needed(&i, &pl, &v2).unwrap();
        assert_eq!(diff.added, vec!["users:read".parse().unwrap()]);
    }
}
