//! Loading plugins and changing them: install (with the installer's
//! consent), load (for a grant that exists already), upgrade (behind a
//! health probe), enable, disable, uninstall.
//!
//! Every change of what a plugin may do goes through the host's
//! [`Permissions`](vodo_core::Permissions), which writes the one grant and
//! the one lifecycle record; the sandbox keeps only the compiled component
//! and reads the grant again at every call.

use std::sync::Arc;

use vodo_core::audit::{AuditAction, LifecycleChange};
use vodo_core::manifest::Manifest;
use vodo_core::runtime::InterfaceSet;
use vodo_core::{Consent, CurrentGrant, InstallationId, PluginId};
use vodo_scopes::ScopeSet;
use wasmtime::component::Component;

use crate::call::Mode;
use crate::installed::Installed;
use crate::linking::check_imports;
use crate::storage::{self, Storage};
use crate::usage::UsageTotals;
use crate::warm::WarmPool;
use crate::{Limits, LoadError, Sandbox, cache};

/// The component a load runs: its bytes, or the digest of one this sandbox
/// compiled before.
///
/// `&[u8]` and `&Vec<u8>` convert into it, so `install(.., &wasm, ..)` reads
/// as before. A host that keeps the digest of what it installed
/// ([`Installed::component_hash`]) can load it again after a restart with
/// [`Wasm::compiled`]: the compiled form comes from the cache folder (or
/// from memory) without reading or hashing the component's bytes. The
/// digest names only what this sandbox compiled and stored itself, so it
/// cannot make the sandbox run anything else.
///
/// ```
/// use vodo_sandbox::Wasm;
///
/// let bytes = vec![0u8; 8];
/// let from_bytes: Wasm<'_> = (&bytes).into();
/// assert!(from_bytes.digest().is_none()); // hashed when loaded
/// let again = Wasm::compiled([7; 32]);
/// assert_eq!(again.digest(), Some([7; 32]));
/// ```
#[derive(Clone, Copy)]
pub struct Wasm<'a>(Source<'a>);

#[derive(Clone, Copy)]
enum Source<'a> {
    Bytes(&'a [u8]),
    Hashed(&'a [u8], [u8; 32]),
    Compiled([u8; 32]),
}

impl<'a> Wasm<'a> {
    /// The component's bytes (hashed when loaded, to find or store its
    /// compiled form).
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Self(Source::Bytes(bytes))
    }

    /// The component whose SHA-256 is `digest`, compiled by this sandbox
    /// before: found in memory or in the
    /// [`cache_dir`](crate::SandboxConfig::cache_dir), or refused with
    /// [`LoadError::NotCompiled`].
    pub fn compiled(digest: [u8; 32]) -> Self {
        Self(Source::Compiled(digest))
    }

    /// Bytes whose digest this crate computed already.
    pub(crate) fn hashed(bytes: &'a [u8], hash: [u8; 32]) -> Self {
        Self(Source::Hashed(bytes, hash))
    }

    /// The digest, when known without hashing.
    pub fn digest(&self) -> Option<[u8; 32]> {
        match self.0 {
            Source::Bytes(_) => None,
            Source::Hashed(_, hash) | Source::Compiled(hash) => Some(hash),
        }
    }

    /// The digest (hashing the bytes if it is not known) and the bytes, if any.
    fn resolve(self) -> ([u8; 32], Option<&'a [u8]>) {
        match self.0 {
            Source::Bytes(bytes) => (cache::sha256(bytes), Some(bytes)),
            Source::Hashed(bytes, hash) => (hash, Some(bytes)),
            Source::Compiled(hash) => (hash, None),
        }
    }
}

impl std::fmt::Debug for Wasm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Source::Bytes(b) => write!(f, "Wasm({} bytes)", b.len()),
            Source::Hashed(b, h) => write!(f, "Wasm({} bytes, {})", b.len(), cache::hex(&h)),
            Source::Compiled(h) => write!(f, "Wasm(compiled {})", cache::hex(&h)),
        }
    }
}

impl<'a> From<&'a [u8]> for Wasm<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Self::bytes(bytes)
    }
}

impl<'a> From<&'a Vec<u8>> for Wasm<'a> {
    fn from(bytes: &'a Vec<u8>) -> Self {
        Self::bytes(bytes)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Wasm<'a> {
    fn from(bytes: &'a [u8; N]) -> Self {
        Self::bytes(bytes)
    }
}

impl Sandbox {
    /// The compiled component of `wasm`: from memory, from the cache folder,
    /// or compiled now (and stored in both).
    pub(crate) fn component(
        &self,
        wasm: Wasm<'_>,
    ) -> Result<([u8; 32], Component), cache::CacheError> {
        let (hash, bytes) = wasm.resolve();
        if let Some(c) = self.components.get(&hash) {
            return Ok((hash, c.clone()));
        }
        let component = cache::load(
            self.engine(),
            self.config.cache_dir.as_deref(),
            self.compatibility,
            &hash,
            bytes,
        )?;
        self.components.insert(hash, component.clone());
        Ok((hash, component))
    }

    /// Everything a load does short of making the plugin the one that runs:
    /// the limits checked, the component compiled (or found), its imports
    /// checked against what `scopes` link, its instance template and storage
    /// folder ready.
    fn prepare(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: Wasm<'_>,
        scopes: &ScopeSet,
        limits: Limits,
    ) -> Result<Installed, LoadError> {
        limits.validate(&self.config)?;
        let plugin = manifest.slug.clone();
        let (hash, component) = self.component(wasm).map_err(|e| match e {
            cache::CacheError::Compile(reason) => LoadError::Invalid {
                plugin: plugin.to_string(),
                reason,
            },
            cache::CacheError::NotCompiled(digest) => LoadError::NotCompiled {
                plugin: plugin.to_string(),
                digest: cache::hex(&digest),
            },
            cache::CacheError::Io(path, source) => LoadError::Io { path, source },
        })?;
        let linked = InterfaceSet::granted(scopes);
        check_imports(self, &plugin, &component, linked)?;
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
        let pre = self.pre(hash, &component, linked)?;
        let storage = match (&self.config.storage_root, &manifest.permissions.storage) {
            (Some(root), Some(s)) => {
                let path = storage::folder(root, installation.as_str(), plugin.as_str());
                let lock = storage::lock_file(root, installation.as_str(), plugin.as_str());
                Some(Arc::new(
                    Storage::open(
                        &path,
                        &lock,
                        s.max_size,
                        s.allowed_types.clone(),
                        s.read_only,
                    )
                    .map_err(|source| LoadError::Io {
                        path: path.display().to_string(),
                        source,
                    })?,
                ))
            }
            _ => None,
        };
        Ok(Installed {
            installation: installation.clone(),
            plugin,
            manifest: manifest.clone(),
            limits,
            component_hash: hash,
            component,
            pre,
            linked,
            storage,
            totals: UsageTotals::default(),
            warm: WarmPool::new(Arc::clone(&self.warm)),
            warm_async: WarmPool::new(Arc::clone(&self.warm)),
        })
    }

    /// Makes a prepared plugin the one that runs (replacing any earlier version).
    fn activate(&self, installed: Installed) -> Arc<Installed> {
        let installed = Arc::new(installed);
        let replaced = self
            .installed
            .entry(installed.installation.clone())
            .or_default()
            .insert(installed.plugin.clone(), Arc::clone(&installed));
        if let Some(old) = replaced
            && old.component_hash != installed.component_hash
        {
            self.forget_unused(old.component_hash);
        }
        installed
    }

    /// Installs `wasm`, the component of `manifest`, in `installation` with
    /// the installer's `consent` (which must be within what the manifest
    /// requests) and `limits`: the grant is recorded (one lifecycle record)
    /// and the plugin loaded.
    ///
    /// The component is compiled once per content (and cached on disk when a
    /// cache folder is configured); a component that imports an interface
    /// the consent does not cover is refused with the permission it lacks,
    /// and nothing is recorded. Installing again replaces the grant and the
    /// running plugin (hot reload).
    pub fn install<'a>(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: impl Into<Wasm<'a>>,
        consent: &Consent,
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let prepared =
            self.prepare(installation, manifest, wasm.into(), &consent.scopes, limits)?;
        self.permissions.install(manifest, installation, consent)?;
        Ok(self.activate(prepared))
    }

    /// Loads a plugin whose grant exists already (recorded by another
    /// process, or before a restart), under that grant. Records nothing.
    ///
    /// After a restart, [`Wasm::compiled`] with the digest the host kept
    /// ([`Installed::component_hash`]) loads the compiled form from the
    /// cache folder without reading or hashing the component again.
    pub fn load<'a>(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: impl Into<Wasm<'a>>,
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let grant = self.grant_of(installation, &manifest.slug)?;
        if grant.plugin_version != manifest.version.to_string() {
            return Err(LoadError::VersionMismatch {
                plugin: manifest.slug.to_string(),
                granted: grant.plugin_version.clone(),
                version: manifest.version.to_string(),
            });
        }
        let prepared = self.prepare(installation, manifest, wasm.into(), &grant.scopes, limits)?;
        tracing::info!(installation = %installation, plugin = %manifest.slug, version = %manifest.version, "plugin loaded");
        Ok(self.activate(prepared))
    }

    fn grant_of(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Arc<CurrentGrant>, LoadError> {
        self.permissions
            .current(installation, plugin)?
            .ok_or_else(|| LoadError::NotInstalled(plugin.to_string()))
    }

    /// Upgrades an installed plugin to a new version under its current grant.
    ///
    /// If the new manifest asks for anything the installer has not
    /// consented to, nothing changes and [`LoadError::ConsentRequired`] lists
    /// what to ask for; after consent, call [`install`](Self::install).
    /// Otherwise the new version answers its health probe first, under the
    /// scopes it will get; a probe that fails or traps refuses the upgrade
    /// ([`LoadError::Unhealthy`], audited), counts against the new version
    /// only, and the running version stays. A healthy new version gets
    /// exactly the scopes it requests (a version that asks for less gets
    /// less) and replaces the running one.
    pub fn upgrade<'a>(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        wasm: impl Into<Wasm<'a>>,
        limits: Limits,
    ) -> Result<Arc<Installed>, LoadError> {
        let current = self
            .permissions
            .check_upgrade(manifest, installation)
            .map_err(|e| match e {
                vodo_core::Error::ConsentRequired {
                    plugin,
                    version,
                    scopes,
                } => LoadError::ConsentRequired {
                    plugin,
                    version,
                    scopes,
                },
                vodo_core::Error::NotFound(_) => LoadError::NotInstalled(manifest.slug.to_string()),
                other => LoadError::Core(other),
            })?;
        let next = self.prepare(
            installation,
            manifest,
            wasm.into(),
            manifest.scopes(),
            limits,
        )?;
        let candidate = Arc::new(CurrentGrant {
            scopes: manifest.scopes().clone(),
            enabled: true,
            rate_limit: manifest.limits().rate_limit,
            plugin_version: manifest.version.to_string(),
            interfaces: next.linked,
        });
        if let Err(e) = self.health_call(&next, Mode::Candidate(candidate)).result {
            self.audit_event(
                installation,
                &manifest.slug,
                AuditAction::Lifecycle {
                    change: LifecycleChange::UpgradeRefused,
                    detail: format!(
                        "version {} failed its health probe: {e}; version {} stays",
                        manifest.version, current.plugin_version
                    ),
                },
            );
            return Err(LoadError::Unhealthy {
                plugin: manifest.slug.to_string(),
                version: manifest.version.to_string(),
                reason: e.to_string(),
            });
        }
        self.permissions.upgrade(manifest, installation)?;
        Ok(self.activate(next))
    }

    /// Enables or disables a plugin in an installation: the grant's flag,
    /// the one there is, recorded with `why` (who did it). Enabling also
    /// forgets the plugin's breaker and trips, so a plugin disabled for
    /// tripping too often starts afresh. A disabled plugin's calls are
    /// refused without running it, in this process at once and in others
    /// within the grants' staleness bound.
    pub fn set_enabled(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        enabled: bool,
        why: &str,
    ) -> Result<(), LoadError> {
        self.permissions
            .set_enabled(installation, plugin, enabled, why)?;
        if enabled {
            self.health.reset(installation, plugin);
        }
        Ok(())
    }

    /// Removes a plugin from an installation: its grant (one lifecycle
    /// record), its loaded component, its breaker and its storage folder.
    /// Returns whether it was installed.
    pub fn uninstall(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<bool, LoadError> {
        let removed = match self.installed.get_mut(installation) {
            Some(mut plugins) => plugins.remove(plugin),
            None => None,
        };
        self.installed
            .remove_if(installation, |_, plugins| plugins.is_empty());
        let loaded = removed.is_some();
        if let Some(removed) = removed {
            self.forget_unused(removed.component_hash);
        }
        if let Some(root) = &self.config.storage_root {
            let path = storage::folder(root, installation.as_str(), plugin.as_str());
            let _ = std::fs::remove_file(storage::lock_file(
                root,
                installation.as_str(),
                plugin.as_str(),
            ));
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
        self.health.reset(installation, plugin);
        let granted = self
            .permissions
            .revoke(installation, plugin, "storage removed")?;
        Ok(granted || loaded)
    }

    /// Drops the compiled component `hash` and its instance templates when
    /// no loaded plugin runs it any more, so a sandbox that tries many
    /// packages (the marketplace's review) does not keep them all. A load of
    /// the same component at the same time only compiles (or reads its
    /// cached form) again.
    fn forget_unused(&self, hash: [u8; 32]) {
        let used = self
            .installed
            .iter()
            .any(|e| e.value().values().any(|p| p.component_hash == hash));
        if !used {
            self.components.remove(&hash);
            self.pres.retain(|(h, _), _| *h != hash);
            self.pres_async.retain(|(h, _), _| *h != hash);
        }
    }
}
