//! Updates through the signed index: each installed plugin's channel,
//! policy and pin; upgrades and rollbacks a person asks for; and the
//! background updater, which applies what each policy allows, health-gated
//! like a manual upgrade, watches the new version in service and rolls it
//! back when it fails, auditing every step.
//!
//! What the updater does for one plugin of one installation, each run:
//!
//! 1. If a version it installed is being watched and the plugin's circuit
//!    has opened since (its calls failing in service), it goes back to the
//!    version before, holds the failed one and audits [`LifecycleChange::RolledBack`].
//! 2. Unless the plugin is pinned or its policy is [`UpdatePolicy::None`],
//!    it takes the newest release the channel and policy allow that is not
//!    yanked and not held. A release that asks for new scopes waits for the
//!    merchant's consent ([`LifecycleChange::UpdateHeld`]); one whose health
//!    probe fails is refused by the sandbox (`UpgradeRefused`) and held; a
//!    healthy one replaces the running version (`Upgraded`) and is watched
//!    for [`UpdaterConfig::watch`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vodo_core::audit::{AuditAction, AuditEvent, AuditSinkExt as _, LifecycleChange};
use vodo_core::health::HealthStatus;
use vodo_core::{Consent, InstallationId, Manifest, PluginId, Timestamp};
use vodo_marketplace::catalog::InstallEvent;
use vodo_marketplace::installer::{Channel, Installation, UpdatePolicy};
use vodo_marketplace::package::Package;
use vodo_sandbox::{LoadError, Wasm};
use vodo_scopes::PluginScope;

use crate::distribution::channel_of;
use crate::error::ServerError;
use crate::platform::Platform;

/// How the background updater runs.
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// How often it looks for updates (and re-signs the index's timestamp
    /// when due). Default 5 minutes.
    pub interval: Duration,
    /// How long a version it installed is watched: if the plugin's circuit
    /// opens within this time, the updater rolls it back. Default 10 minutes.
    pub watch: Duration,
}

impl Default for UpdaterConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            watch: Duration::from_secs(600),
        }
    }
}

/// A release the updater will not install, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The version.
    pub version: String,
    /// Why, for people.
    pub reason: String,
    /// Since when.
    pub at: Timestamp,
}

/// A version the updater installed and is watching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The version it replaced, to go back to.
    pub previous: String,
    /// When it was installed.
    pub since: Timestamp,
    /// When the watch ends.
    pub until: Timestamp,
}

/// How one plugin of one installation is updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSettings {
    /// The releases it follows. Default [`Channel::Stable`].
    pub channel: Channel,
    /// The updates installed without asking. Default [`UpdatePolicy::Minor`].
    pub policy: UpdatePolicy,
    /// Set by a rollback, or by a person: no automatic updates.
    pub pinned: bool,
    /// A release the updater will not install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// A version the updater installed and is watching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<Watch>,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        Self {
            channel: Channel::Stable,
            policy: UpdatePolicy::Minor,
            pinned: false,
            held: None,
            watch: None,
        }
    }
}

/// One release of a plugin in the signed index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its version.
    pub version: semver::Version,
    /// `stable` or `beta`.
    pub channel: &'static str,
    /// Listed but not installable anew.
    pub yanked: bool,
}

/// What the console and the API show of a plugin's updates.
#[derive(Debug, Clone)]
pub struct UpdatesView {
    /// Its settings.
    pub settings: UpdateSettings,
    /// The version running.
    pub current: semver::Version,
    /// Every release in the signed index, beta ones included, oldest first.
    pub releases: Vec<Release>,
    /// The release the policy allows next, if any (it may be held: see
    /// [`UpdateSettings::held`]).
    pub pending: Option<semver::Version>,
    /// What that release asks for beyond the current grant.
    pub pending_consent: Vec<PluginScope>,
}

/// What one run of the updater did for one plugin of one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Upgraded.
    Updated {
        /// The version before.
        from: String,
        /// The version now.
        to: String,
    },
    /// A release was found and not installed.
    Held {
        /// The release.
        version: String,
        /// Why.
        reason: String,
    },
    /// The version it had installed failed in service and was replaced by the one before.
    RolledBack {
        /// The version that failed.
        from: String,
        /// The version running again.
        to: String,
        /// What failed.
        reason: String,
    },
}

/// One line of an updater run's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateReport {
    /// The installation.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// What happened.
    pub outcome: UpdateOutcome,
}

fn version(text: &str) -> Result<semver::Version, ServerError> {
    semver::Version::parse(text)
        .map_err(|e| ServerError::invalid(format!("`{text}` is not a version like 1.2.3: {e}")))
}

impl Platform {
    /// How `plugin` is updated in `installation` (the defaults until set).
    pub fn update_settings(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<UpdateSettings, ServerError> {
        match self.store.update_settings(installation, plugin.as_str())? {
            None => Ok(UpdateSettings::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| ServerError::Store {
                detail: format!("the update settings of `{plugin}` in `{installation}`: {e}"),
            }),
        }
    }

    fn put_settings(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        settings: &UpdateSettings,
    ) -> Result<(), ServerError> {
        let json = serde_json::to_string(settings).map_err(|e| ServerError::Store {
            detail: e.to_string(),
        })?;
        self.store
            .put_update_settings(installation, plugin.as_str(), Some(&json))
    }

    /// Sets the channel, policy and pin of `plugin` in `installation`.
    /// Unpinning also forgets a held release, so that the updater tries it
    /// again.
    pub fn set_update_settings(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        channel: Channel,
        policy: UpdatePolicy,
        pinned: bool,
    ) -> Result<UpdateSettings, ServerError> {
        let _one = self.lifecycle.lock();
        self.current_version(installation, plugin)?;
        let mut settings = self.update_settings(installation, plugin)?;
        if settings.pinned && !pinned {
            settings.held = None;
        }
        settings.channel = channel;
        settings.policy = policy;
        settings.pinned = pinned;
        self.put_settings(installation, plugin, &settings)?;
        Ok(settings)
    }

    /// The version of `plugin` running in `installation`.
    fn current_version(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<semver::Version, ServerError> {
        let grant = self
            .host
            .permissions
            .registry()
            .get(installation, plugin)?
            .ok_or_else(|| {
                ServerError::not_found(format!("the plugin `{plugin}` in `{installation}`"))
            })?;
        version(&grant.plugin_version)
    }

    /// The releases of `plugin` in the signed index, beta ones included, oldest first.
    pub fn releases(&self, plugin: &str) -> Vec<Release> {
        self.index
            .versions(plugin, Channel::Beta)
            .into_iter()
            .map(|(version, yanked)| Release {
                channel: channel_of(&version),
                version,
                yanked,
            })
            .collect()
    }

    /// The newest release of `plugin` on `channel` that can be installed
    /// anew (not yanked).
    pub(crate) fn newest_release(
        &self,
        plugin: &str,
        channel: Channel,
    ) -> Result<semver::Version, ServerError> {
        self.index
            .versions(plugin, channel)
            .into_iter()
            .rev()
            .find(|(_, yanked)| !yanked)
            .map(|(v, _)| v)
            .ok_or_else(|| {
                ServerError::not_found(format!(
                    "an installable release of `{plugin}` on the {} channel",
                    match channel {
                        Channel::Stable => "stable",
                        Channel::Beta => "beta",
                    }
                ))
            })
    }

    /// The release the policy allows next for `plugin`, if any; one that is
    /// held counts only when `with_held`.
    fn pending(
        &self,
        plugin: &PluginId,
        current: &semver::Version,
        settings: &UpdateSettings,
        with_held: bool,
    ) -> Option<semver::Version> {
        let held = settings
            .held
            .as_ref()
            .filter(|_| !with_held)
            .map(|h| h.version.as_str());
        let state = Installation {
            plugin: plugin.to_string(),
            version: current.clone(),
            channel: settings.channel,
            policy: settings.policy,
            pinned: settings.pinned,
        };
        self.index
            .with_installer(|i| i.pending_update(&state))
            .map(|(v, _)| v)
            .filter(|v| Some(v.to_string().as_str()) != held)
    }

    /// What the console and the API show of `plugin`'s updates in `installation`.
    pub fn updates(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<UpdatesView, ServerError> {
        let current = self.current_version(installation, plugin)?;
        let settings = self.update_settings(installation, plugin)?;
        let pending = self.pending(plugin, &current, &settings, true);
        let pending_consent = match &pending {
            Some(v) => {
                let m = self.release_manifest(plugin.as_str(), v)?;
                self.host
                    .permissions
                    .consent_needed(installation, plugin, m.scopes())?
                    .added
            }
            None => Vec::new(),
        };
        Ok(UpdatesView {
            releases: self.releases(plugin.as_str()),
            settings,
            current,
            pending,
            pending_consent,
        })
    }

    /// The manifest of a release, from its verified package.
    pub(crate) fn release_manifest(
        &self,
        plugin: &str,
        version: &semver::Version,
    ) -> Result<Manifest, ServerError> {
        let package = self.index.fetch(plugin, version)?;
        Ok(Manifest::parse(&package.manifest)?)
    }

    /// A listed, not yanked release, verified, with its manifest.
    fn installable(
        &self,
        plugin: &PluginId,
        version: &semver::Version,
    ) -> Result<(Package, Manifest), ServerError> {
        let release = self
            .releases(plugin.as_str())
            .into_iter()
            .find(|r| &r.version == version)
            .ok_or_else(|| {
                ServerError::not_found(format!("`{plugin}` {version} in the signed index"))
            })?;
        if release.yanked {
            return Err(ServerError::invalid(format!(
                "`{plugin}` {version} was yanked: pick another version"
            )));
        }
        let package = self.index.fetch(plugin.as_str(), version)?;
        let manifest = Manifest::parse(&package.manifest)?;
        Ok((package, manifest))
    }

    fn audit_lifecycle(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        change: LifecycleChange,
        detail: String,
    ) {
        self.host.audit.record_or_log(
            &AuditEvent::now(AuditAction::Lifecycle { change, detail })
                .installation(installation)
                .plugin(plugin),
        );
    }

    /// Moves `plugin` in `installation` to `manifest`'s version, health-gated:
    /// the running version stays if the new one fails its probe.
    fn switch(
        &self,
        installation: &InstallationId,
        manifest: &Manifest,
        package: &Package,
    ) -> Result<(), ServerError> {
        self.sandbox.upgrade(
            installation,
            manifest,
            Wasm::bytes(&package.component),
            self.config.limits.clone(),
        )?;
        let version = manifest.version.to_string();
        self.store
            .set_loaded(installation, manifest.slug.as_str(), Some(&version))?;
        self.catalog_event(
            manifest.slug.as_str(),
            &version,
            installation,
            InstallEvent::Installed,
        );
        Ok(())
    }

    /// Upgrades `plugin` in `installation` to `to`, a later release in the
    /// signed index (either channel: a person may choose a beta). A release
    /// that asks for new scopes needs them in `agreed`, exactly as its
    /// consent screen listed them; one that asks for nothing new answers its
    /// health probe first and the running version stays if it fails.
    pub fn upgrade_to(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        to: &semver::Version,
        agreed: &[PluginScope],
        by: &str,
    ) -> Result<(), ServerError> {
        let _one = self.lifecycle.lock();
        let current = self.current_version(installation, plugin)?;
        if to <= &current {
            return Err(ServerError::invalid(format!(
                "{to} is not later than the running {current}: roll back instead"
            )));
        }
        let (package, manifest) = self.installable(plugin, to)?;
        let diff = self
            .host
            .permissions
            .consent_needed(installation, plugin, manifest.scopes())?;
        let mut shown = agreed.to_vec();
        shown.sort();
        if shown != diff.added {
            return Err(ServerError::invalid(format!(
                "the consent given ({}) is not what `{plugin}` {to} asks for beyond its grant ({}): open its consent screen again",
                crate::platform::list(&shown),
                crate::platform::list(&diff.added)
            )));
        }
        if diff.added.is_empty() {
            self.switch(installation, &manifest, &package)?;
        } else {
            self.sandbox.install(
                installation,
                &manifest,
                Wasm::bytes(&package.component),
                &Consent::all(&manifest, by),
                self.config.limits.clone(),
            )?;
            self.store
                .set_loaded(installation, plugin.as_str(), Some(&to.to_string()))?;
            self.catalog_event(
                plugin.as_str(),
                &to.to_string(),
                installation,
                InstallEvent::Installed,
            );
        }
        let mut settings = self.update_settings(installation, plugin)?;
        if settings
            .held
            .as_ref()
            .is_some_and(|h| h.version == to.to_string())
        {
            settings.held = None;
        }
        settings.watch = None;
        self.put_settings(installation, plugin, &settings)
    }

    /// Rolls `plugin` in `installation` back to `to`, an earlier release the
    /// signed index still lists and has not yanked, and pins it there so
    /// that automatic updates do not undo it. The earlier version answers
    /// its health probe first.
    pub fn rollback(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        to: &semver::Version,
        by: &str,
    ) -> Result<(), ServerError> {
        let _one = self.lifecycle.lock();
        let current = self.current_version(installation, plugin)?;
        if to >= &current {
            return Err(ServerError::invalid(format!(
                "{to} is not earlier than the running {current}: upgrade instead"
            )));
        }
        let (package, manifest) = self.installable(plugin, to)?;
        self.switch(installation, &manifest, &package)?;
        let mut settings = self.update_settings(installation, plugin)?;
        settings.pinned = true;
        settings.watch = None;
        self.put_settings(installation, plugin, &settings)?;
        self.audit_lifecycle(
            installation,
            plugin,
            LifecycleChange::RolledBack,
            format!("{current} -> {to} by {by}; automatic updates paused until unpinned"),
        );
        Ok(())
    }

    /// Yanks `plugin` `version` from the signed index: still listed, so
    /// installations can verify it and roll back to other releases, but no
    /// longer installed anew or updated to.
    pub fn yank(
        &self,
        plugin: &str,
        version: &semver::Version,
        by: &str,
    ) -> Result<(), ServerError> {
        if !self.index.lists(plugin, version) {
            return Err(ServerError::not_found(format!(
                "`{plugin}` {version} in the signed index"
            )));
        }
        self.index.yank(plugin, version)?;
        tracing::info!(plugin, %version, by, "a release was yanked");
        Ok(())
    }

    /// Forgets the update settings of an uninstalled plugin.
    pub(crate) fn forget_updates(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<(), ServerError> {
        self.store
            .put_update_settings(installation, plugin.as_str(), None)
    }

    /// One run of the updater over every installed plugin (see the module
    /// docs): re-signs the index's timestamp when due, then for each plugin
    /// rolls back a watched version that failed, or applies the update its
    /// policy allows. One plugin's failure is reported and audited, and the
    /// run goes on with the next.
    pub fn run_updates(&self) -> Result<Vec<UpdateReport>, ServerError> {
        self.index.refresh()?;
        let mut report = Vec::new();
        for (installation, slug, _) in self.store.loaded()? {
            let plugin = PluginId::new(slug);
            let _one = self.lifecycle.lock();
            match self.update_one(&installation, &plugin) {
                Ok(Some(outcome)) => report.push(UpdateReport {
                    installation,
                    plugin,
                    outcome,
                }),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%installation, %plugin, error = %e, "the updater could not check a plugin");
                }
            }
        }
        Ok(report)
    }

    fn update_one(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Option<UpdateOutcome>, ServerError> {
        let Ok(current) = self.current_version(installation, plugin) else {
            return Ok(None);
        };
        let mut settings = self.update_settings(installation, plugin)?;
        let now = Timestamp::now();
        if let Some(watch) = settings.watch.clone() {
            if now >= watch.until {
                settings.watch = None;
                self.put_settings(installation, plugin, &settings)?;
            } else if let Some(reason) = self.failed_since(installation, plugin, watch.since) {
                return self
                    .roll_back_failed(installation, plugin, &current, &watch, reason, settings)
                    .map(Some);
            }
        }
        let Some(next) = self.pending(plugin, &current, &settings, false) else {
            return Ok(None);
        };
        let hold =
            |settings: &mut UpdateSettings, reason: String| -> Result<UpdateOutcome, ServerError> {
                settings.held = Some(Held {
                    version: next.to_string(),
                    reason: reason.clone(),
                    at: now,
                });
                self.put_settings(installation, plugin, settings)?;
                Ok(UpdateOutcome::Held {
                    version: next.to_string(),
                    reason,
                })
            };
        let (package, manifest) = match self.installable(plugin, &next) {
            Ok(found) => found,
            Err(e) => {
                let reason = format!("{next} could not be fetched from the signed index: {e}");
                self.audit_lifecycle(
                    installation,
                    plugin,
                    LifecycleChange::UpdateHeld,
                    reason.clone(),
                );
                return hold(&mut settings, reason).map(Some);
            }
        };
        let diff = self
            .host
            .permissions
            .consent_needed(installation, plugin, manifest.scopes())?;
        if !diff.added.is_empty() {
            let reason = format!(
                "{next} asks for {} beyond the current grant: it waits for the merchant's consent",
                crate::platform::list(&diff.added)
            );
            self.audit_lifecycle(
                installation,
                plugin,
                LifecycleChange::UpdateHeld,
                reason.clone(),
            );
            return hold(&mut settings, reason).map(Some);
        }
        match self.switch(installation, &manifest, &package) {
            Ok(()) => {
                settings.watch = Some(Watch {
                    previous: current.to_string(),
                    since: now,
                    until: now.plus(self.config.updates.watch),
                });
                self.put_settings(installation, plugin, &settings)?;
                Ok(Some(UpdateOutcome::Updated {
                    from: current.to_string(),
                    to: next.to_string(),
                }))
            }
            // The sandbox audited the refusal (`UpgradeRefused`).
            Err(ServerError::Load(e @ LoadError::Unhealthy { .. })) => {
                hold(&mut settings, e.to_string()).map(Some)
            }
            Err(e) => {
                let reason = format!("{next} did not load: {e}");
                self.audit_lifecycle(
                    installation,
                    plugin,
                    LifecycleChange::UpdateHeld,
                    reason.clone(),
                );
                hold(&mut settings, reason).map(Some)
            }
        }
    }

    /// Why a watched version counts as failed: its circuit opened after
    /// `since`.
    fn failed_since(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        since: Timestamp,
    ) -> Option<String> {
        let report = self.host.health.report(installation, plugin);
        // Open, or turned off after repeated trips.
        let open = match report.status {
            HealthStatus::Unhealthy => true,
            HealthStatus::Disabled => report.trips > 0,
            HealthStatus::Healthy | HealthStatus::Degraded => false,
        };
        let last = report.recent_failures.last().filter(|f| f.at >= since)?;
        open.then(|| format!("its circuit opened after the update: {}", last.error))
    }

    fn roll_back_failed(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        current: &semver::Version,
        watch: &Watch,
        reason: String,
        mut settings: UpdateSettings,
    ) -> Result<UpdateOutcome, ServerError> {
        let previous = version(&watch.previous)?;
        let (package, manifest) = self.installable(plugin, &previous)?;
        settings.watch = None;
        settings.held = Some(Held {
            version: current.to_string(),
            reason: reason.clone(),
            at: Timestamp::now(),
        });
        if let Err(e) = self.switch(installation, &manifest, &package) {
            self.put_settings(installation, plugin, &settings)?;
            self.audit_lifecycle(
                installation,
                plugin,
                LifecycleChange::UpdateHeld,
                format!("{current} failed in service ({reason}), and going back to {previous} failed too: {e}"),
            );
            return Err(e);
        }
        // The breaker's failures were the failed version's.
        self.host.health.reset(installation, plugin);
        self.put_settings(installation, plugin, &settings)?;
        self.audit_lifecycle(
            installation,
            plugin,
            LifecycleChange::RolledBack,
            format!("{current} -> {previous} by the updater: {reason}; {current} is held"),
        );
        Ok(UpdateOutcome::RolledBack {
            from: current.to_string(),
            to: previous.to_string(),
            reason,
        })
    }
}
