//! [`Host`]: the components of `vodo-core` wired together, as one plain
//! struct of trait objects (the shape of rustls' `CryptoProvider`).
//!
//! Nothing is hidden: every field is public and can be built by hand from
//! other implementations. The constructors only pick the reference ones.

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use vodo_scopes::{PluginScope, ScopeSet};

use crate::audit::{AuditAction, AuditEvent, AuditSink, FileAudit, FileAuditOptions, MemoryAudit};
use crate::decision::{Decision, DenyReason};
use crate::health::HealthMonitor;
use crate::keys::{ApiKeyManager, KeyError, MemoryKeyStore, VerifiedKey};
use crate::manifest::Manifest;
use crate::permissions::{Grant, MemoryRegistry, Permissions};
use crate::rate::{RateKey, RateLimit, RateLimiter};
use crate::{Error, InstallationId, PluginId, Result, SecretKey, SqliteStore};

/// The host-side components, wired.
#[derive(Debug)]
pub struct Host {
    /// Grants and permission checks.
    pub permissions: Arc<Permissions>,
    /// API keys.
    pub keys: Arc<ApiKeyManager>,
    /// Rate limits per plugin installation and per key.
    pub rate_limits: Arc<RateLimiter>,
    /// Circuit breakers.
    pub health: Arc<HealthMonitor>,
    /// The audit trail every component writes to.
    pub audit: Arc<dyn AuditSink>,
    /// The API rate limit each installed plugin's manifest declares.
    limits: DashMap<PluginId, RateLimit>,
}

/// Why an API request was refused by [`Host::authorize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The key did not verify.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key verified, but the request is denied.
    #[error("{0}")]
    Denied(DenyReason),
}

impl Host {
    /// Every component in memory, auditing to a [`MemoryAudit`]. For tests and demos.
    pub fn in_memory(secret: &SecretKey) -> Self {
        let audit: Arc<dyn AuditSink> = Arc::new(MemoryAudit::new());
        Self::wire(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryKeyStore::new()),
            audit,
            secret,
        )
    }

    /// Durable components under `dir`: grants and keys in `dir/vodo.db`
    /// (SQLite), the audit trail in the HMAC-chained `dir/audit.jsonl`.
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
        Ok(Self::wire(store.clone(), store, audit, secret))
    }

    fn wire(
        registry: Arc<dyn crate::PermissionRegistry>,
        keys: Arc<dyn crate::keys::ApiKeyStore>,
        audit: Arc<dyn AuditSink>,
        secret: &SecretKey,
    ) -> Self {
        Self {
            permissions: Arc::new(Permissions::new(registry, audit.clone())),
            keys: Arc::new(ApiKeyManager::new(keys, secret, audit.clone())),
            rate_limits: Arc::new(RateLimiter::new()),
            health: Arc::new(HealthMonitor::default().with_audit(audit.clone())),
            audit,
            limits: DashMap::new(),
        }
    }

    /// Installs a plugin in an installation with the installer's consent to
    /// `consented` scopes, which must be among those the manifest requests
    /// (a host never grants more than was asked for).
    pub fn install(
        &self,
        manifest: &Manifest,
        installation: &InstallationId,
        consented: ScopeSet,
        consenting_user: &str,
    ) -> Result<Grant> {
        if let Some(extra) = consented.iter().find(|s| !manifest.scopes().allows(s)) {
            return Err(Error::Invalid(format!(
                "`{extra}` is not requested by `{}`'s manifest: a grant can only narrow what the manifest asks for",
                manifest.slug
            )));
        }
        if let Some(limit) = manifest.limits().rate_limit {
            self.limits.insert(manifest.slug.clone(), limit);
        }
        self.permissions.grant(
            installation,
            &manifest.slug,
            &manifest.version.to_string(),
            consented,
            consenting_user,
        )
    }

    /// Authorizes one host API request made with an API key: the key must
    /// verify, its rate limit and its plugin's must not be exceeded, and both
    /// the key's scopes and the plugin's grant must cover `scope`.
    pub fn authorize(&self, key: &str, scope: &PluginScope) -> Result<VerifiedKey, AccessError> {
        let verified = self.keys.verify(key)?;
        if let Some(limit) = self.limits.get(&verified.plugin).map(|l| *l) {
            let checks = [
                RateKey::ApiKey(Arc::clone(&verified.id)),
                RateKey::Plugin(verified.installation.clone(), verified.plugin.clone()),
            ];
            for k in &checks {
                if let Decision::Deny { reason } = self.rate_limits.check(k, limit) {
                    return Err(self.denied(&verified, scope, reason));
                }
            }
        }
        if !verified.scopes.allows(scope) {
            let reason = DenyReason::KeyScope {
                scope: scope.to_string(),
            };
            return Err(self.denied(&verified, scope, reason));
        }
        match self
            .permissions
            .check(&verified.installation, &verified.plugin, scope)
        {
            Decision::Allow => Ok(verified),
            Decision::Deny { reason } => Err(AccessError::Denied(reason)),
        }
    }

    /// Audits a denial decided here (the permission checker audits its own).
    fn denied(&self, key: &VerifiedKey, scope: &PluginScope, reason: DenyReason) -> AccessError {
        let event = AuditEvent::now(AuditAction::PermissionDenied {
            scope: scope.to_string(),
            reason: reason.clone(),
        })
        .plugin(&key.plugin)
        .installation(&key.installation);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, "audit sink failed to record a denial");
        }
        AccessError::Denied(reason)
    }
}
