//! [`Host`]: the components of a Vodo host wired together, as one plain
//! struct of trait objects (the shape of rustls' `CryptoProvider`).
//!
//! Nothing is hidden and nothing has a default of its own: every field is
//! public, a host can build the struct by hand from other implementations
//! (a PostgreSQL registry, a Redis limiter), and the runtime
//! (`vodo_sandbox::Sandbox::new`) takes these very components instead of
//! making its own. The constructors only pick the reference ones.
//!
//! ```
//! use std::sync::Arc;
//! use vodo_core::audit::{AuditSink, MemoryAudit};
//! use vodo_core::health::HealthMonitor;
//! use vodo_core::keys::{ApiKeyManager, MemoryKeyStore};
//! use vodo_core::rate::MemoryRateLimiter;
//! use vodo_core::{Host, MemoryRegistry, Permissions, SecretKey};
//!
//! let secret = SecretKey::generate()?;
//! let audit: Arc<dyn AuditSink> = Arc::new(MemoryAudit::new());
//! let host = Host {
//!     permissions: Arc::new(Permissions::new(Arc::new(MemoryRegistry::new()), audit.clone())),
//!     keys: Arc::new(ApiKeyManager::new(Arc::new(MemoryKeyStore::new()), &secret, audit.clone())),
//!     rate_limits: Arc::new(MemoryRateLimiter::new()),
//!     health: Arc::new(HealthMonitor::default().with_audit(audit.clone())),
//!     audit,
//! };
//! # let _ = host;
//! # Ok::<(), vodo_core::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use vodo_scopes::{PluginScope, Resource};

use crate::audit::{AuditSink, FileAudit, FileAuditOptions, MemoryAudit};
use crate::decision::{Decision, DenyReason};
use crate::health::{HealthMonitor, HealthTracker};
use crate::keys::{ApiKeyManager, ApiKeyStore, KeyError, MemoryKeyStore, VerifiedKey};
use crate::manifest::Manifest;
use crate::permissions::{
    Consent, CurrentGrant, Grant, MemoryRegistry, PermissionRegistry, Permissions,
};
use crate::rate::{MemoryRateLimiter, RateKey, RateLimiter};
use crate::{Error, InstallationId, Result, SecretKey, SqliteStore};

/// The host-side components, wired. Clone it to share them (every field is an `Arc`).
#[derive(Debug, Clone)]
pub struct Host {
    /// Grants and permission checks: the one source of truth for what each
    /// plugin may do, whether it is enabled, and its rate limit.
    pub permissions: Arc<Permissions>,
    /// API keys.
    pub keys: Arc<ApiKeyManager>,
    /// The one rate limiter: API-key requests and plugins' host calls count here.
    pub rate_limits: Arc<dyn RateLimiter>,
    /// Circuit breakers per (installation, plugin).
    pub health: Arc<dyn HealthTracker>,
    /// The audit trail every component writes to.
    pub audit: Arc<dyn AuditSink>,
}

/// Why an API request was refused by [`Host::authorize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The key did not verify.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The resource named is not a resource name (`[a-z][a-z0-9_]*`).
    #[error("`{resource}` is not a platform API resource: {reason}")]
    BadResource {
        /// The name given, shortened.
        resource: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key verified, but the request is denied (audited).
    #[error("{0}")]
    Denied(DenyReason),
}

impl Host {
    /// Every component in memory, auditing to a [`MemoryAudit`]. For tests and demos.
    pub fn in_memory(secret: &SecretKey) -> Self {
        Self::from_stores(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryKeyStore::new()),
            Arc::new(MemoryAudit::new()),
            secret,
        )
    }

    /// Durable components under `dir`: grants and keys in `dir/vodo.db`
    /// (SQLite), the audit trail in the HMAC-chained `dir/audit.jsonl`.
    /// Several processes may open the same folder: the database is shared,
    /// grant changes reach each within its staleness bound, and the audit
    /// file is written under a lock, so the chain never forks.
    pub fn open(dir: &Path, secret: &SecretKey) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let store = Arc::new(SqliteStore::open(dir.join("vodo.db"))?);
        let audit: Arc<dyn AuditSink> = Arc::new(FileAudit::open(
            dir.join("audit.jsonl"),
            secret,
            FileAuditOptions::default(),
        )?);
        Ok(Self::from_stores(store.clone(), store, audit, secret))
    }

    /// The reference components over the given stores: [`Permissions`] over
    /// `registry`, an [`ApiKeyManager`] over `keys`, a [`MemoryRateLimiter`]
    /// and a [`HealthMonitor`] with the default breaker, all auditing to `audit`.
    pub fn from_stores(
        registry: Arc<dyn PermissionRegistry>,
        keys: Arc<dyn ApiKeyStore>,
        audit: Arc<dyn AuditSink>,
        secret: &SecretKey,
    ) -> Self {
        Self {
            permissions: Arc::new(Permissions::new(registry, audit.clone())),
            keys: Arc::new(ApiKeyManager::new(keys, secret, audit.clone())),
            rate_limits: Arc::new(MemoryRateLimiter::new()),
            health: Arc::new(HealthMonitor::default().with_audit(audit.clone())),
            audit,
        }
    }

    /// Records the installer's consent for a plugin that reaches the host
    /// only through its API keys (a plugin that also runs in the sandbox is
    /// installed with `vodo_sandbox::Sandbox::install`, which records the
    /// same grant). See [`Permissions::install`].
    pub fn install(
        &self,
        manifest: &Manifest,
        installation: &InstallationId,
        consent: &Consent,
    ) -> Result<Grant> {
        self.permissions.install(manifest, installation, consent)
    }

    /// Authorizes one platform API request made with an API key, for the
    /// resource `resource` (`products` in `/api/products/...`) and the scope
    /// `scope` it needs (`entities:write:product`).
    ///
    /// The key must verify; the plugin's grant must be enabled and cover the
    /// resource (`api:access` or `api:access:{resource}`) and the scope; the
    /// key's scopes must cover the scope; and neither the key's nor the
    /// plugin's rate limit (the grant's, shared with the plugin's own host
    /// calls) may be exceeded. Every denial is audited.
    pub fn authorize(
        &self,
        key: &str,
        resource: &str,
        scope: &PluginScope,
    ) -> Result<VerifiedKey, AccessError> {
        let verified = self.keys.verify(key)?;
        if let Err(reason) = Resource::new(resource) {
            return Err(AccessError::BadResource {
                resource: resource.chars().take(64).collect(),
                reason,
            });
        }
        self.admit(&verified, scope)?;
        self.permit(&verified, Some(resource), scope)?;
        Ok(verified)
    }

    /// The first half of [`authorize`](Self::authorize), for a key that
    /// verified already (an HTTP layer's): the plugin's grant must exist and
    /// be enabled, and neither the key's nor the plugin's rate limit (the
    /// grant's, shared with the plugin's own host calls) may be exceeded.
    /// `wanted` names what the request was for, in the audit record of a
    /// denial. Returns the grant as it is now.
    pub fn admit(
        &self,
        verified: &VerifiedKey,
        wanted: &dyn std::fmt::Display,
    ) -> Result<Arc<CurrentGrant>, AccessError> {
        let (installation, plugin) = (&verified.installation, &verified.plugin);
        let deny = |reason: DenyReason| {
            AccessError::Denied(self.permissions.deny(
                installation,
                plugin,
                reason,
                wanted.to_string(),
            ))
        };
        let grant = match self.permissions.current(installation, plugin) {
            Err(e) => {
                return Err(deny(DenyReason::StoreUnavailable {
                    error: e.to_string(),
                }));
            }
            Ok(None) => return Err(deny(DenyReason::NotInstalled)),
            Ok(Some(g)) if !g.enabled => return Err(deny(DenyReason::Disabled)),
            Ok(Some(g)) => g,
        };
        if let Some(limit) = grant.rate_limit {
            let checks = [
                RateKey::ApiKey(Arc::clone(&verified.id)),
                RateKey::Plugin(installation.clone(), plugin.clone()),
            ];
            for k in &checks {
                if let Decision::Deny { reason } = self.rate_limits.check(k, limit) {
                    return Err(deny(reason));
                }
            }
        }
        Ok(grant)
    }

    /// The second half of [`authorize`](Self::authorize): the plugin's
    /// grant must cover the platform API `resource` (when the request is
    /// for one) and `scope`, and so must the key's own scopes. Every denial
    /// is audited.
    pub fn permit(
        &self,
        verified: &VerifiedKey,
        resource: Option<&str>,
        scope: &PluginScope,
    ) -> Result<(), AccessError> {
        let (installation, plugin) = (&verified.installation, &verified.plugin);
        if let Some(resource) = resource
            && let Decision::Deny { reason } =
                self.permissions
                    .check_resource(installation, plugin, resource)
        {
            return Err(AccessError::Denied(reason));
        }
        if !verified.scopes.allows(scope) {
            let reason = DenyReason::KeyScope {
                scope: scope.to_string(),
            };
            return Err(AccessError::Denied(self.permissions.deny(
                installation,
                plugin,
                reason,
                scope.to_string(),
            )));
        }
        match self.permissions.check(installation, plugin, scope) {
            Decision::Allow => Ok(()),
            Decision::Deny { reason } => Err(AccessError::Denied(reason)),
        }
    }
}
