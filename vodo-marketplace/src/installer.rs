//! Installing from the signed index: versions, channels, automatic updates
//! by policy, rollback, and yanked versions.
//!
//! Every package comes through the verified [`Client`]: its bytes match the
//! signed length and hash before they are parsed. Automatic updates never
//! move to a lower version. A rollback is the installer's explicit choice of
//! an earlier version that the current signed index still lists (and has not
//! yanked); it pins the installation so automatic updates do not undo it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::index::{Client, Source, TargetInfo};
use crate::package::Package;
use crate::{Error, Result};

/// Which releases an installation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Stable releases only.
    Stable,
    /// Beta and stable releases.
    Beta,
}

impl Channel {
    fn accepts(self, channel: &str) -> bool {
        match self {
            Channel::Stable => channel == "stable",
            Channel::Beta => channel == "stable" || channel == "beta",
        }
    }
}

/// Which updates are installed without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePolicy {
    /// None: updates only when asked.
    None,
    /// Patch releases (1.2.3 to 1.2.4).
    Patch,
    /// Minor and patch releases (1.2.3 to 1.3.0), never a new major.
    Minor,
}

/// A plugin installed in a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// The plugin.
    pub plugin: String,
    /// The version running.
    pub version: semver::Version,
    /// The channel followed.
    pub channel: Channel,
    /// The update policy.
    pub policy: UpdatePolicy,
    /// Set by a rollback: automatic updates stop until unpinned.
    pub pinned: bool,
}

impl fmt::Display for Installation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.plugin, self.version)
    }
}

/// Installs and updates plugins from a verified index.
#[derive(Debug)]
pub struct Installer<'a> {
    client: &'a Client,
    source: &'a dyn Source,
    host_api: Option<semver::Version>,
}

impl<'a> Installer<'a> {
    /// An installer reading the verified `client` state and downloading from `source`.
    pub fn new(client: &'a Client, source: &'a dyn Source) -> Self {
        Self {
            client,
            source,
            host_api: None,
        }
    }

    /// Installs, updates and rolls back only to versions whose signed
    /// `host_api` range admits `version`, the host API this host runs.
    /// Versions listed without a range are taken to run anywhere.
    pub fn with_host_api(mut self, version: semver::Version) -> Self {
        self.host_api = Some(version);
        self
    }

    /// Why this host cannot run a target, if it cannot.
    fn incompatible(&self, target: &TargetInfo) -> Option<String> {
        let (host, wanted) = (self.host_api.as_ref()?, target.host_api.as_ref()?);
        match semver::VersionReq::parse(wanted) {
            Ok(req) if req.matches(host) => None,
            Ok(_) => Some(format!(
                "{} {} needs host API `{wanted}`; this host runs {host}",
                target.plugin, target.version
            )),
            Err(_) => Some(format!(
                "{} {} declares an unreadable host API range `{wanted}`",
                target.plugin, target.version
            )),
        }
    }

    /// The versions of `plugin` on `channel`, oldest first, with their paths
    /// (yanked ones included, marked).
    pub fn versions(
        &self,
        plugin: &str,
        channel: Channel,
    ) -> Vec<(semver::Version, String, TargetInfo)> {
        let mut out: Vec<_> = self
            .client
            .targets()
            .filter(|(_, t)| t.plugin == plugin && channel.accepts(&t.channel))
            .filter_map(|(path, t)| {
                semver::Version::parse(&t.version)
                    .ok()
                    .map(|v| (v, path.clone(), t.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn fetch(&self, path: &str) -> Result<Package> {
        let bytes = self.client.fetch_package(self.source, path)?;
        Package::parse(&bytes, u64::MAX)
            .map_err(|e| Error::Invalid(format!("package `{path}`: {e}")))
    }

    /// Installs the newest version of `plugin` on `channel` that is not yanked.
    pub fn install_latest(
        &self,
        plugin: &str,
        channel: Channel,
        policy: UpdatePolicy,
    ) -> Result<(Installation, Package)> {
        let (version, path, _) = self
            .versions(plugin, channel)
            .into_iter()
            .rev()
            .find(|(_, _, t)| !t.yanked && self.incompatible(t).is_none())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no installable version of `{plugin}` on the {channel:?} channel{}",
                    if self.host_api.is_some() {
                        " for this host's API"
                    } else {
                        ""
                    }
                ))
            })?;
        let package = self.fetch(&path)?;
        Ok((
            Installation {
                plugin: plugin.into(),
                version,
                channel,
                policy,
                pinned: false,
            },
            package,
        ))
    }

    /// The update the policy allows now, if any: the newest version above
    /// the installed one, on the channel, not yanked, within the policy.
    pub fn pending_update(&self, installation: &Installation) -> Option<(semver::Version, String)> {
        if installation.pinned || installation.policy == UpdatePolicy::None {
            return None;
        }
        let current = &installation.version;
        self.versions(&installation.plugin, installation.channel)
            .into_iter()
            .rev()
            .filter(|(v, _, t)| !t.yanked && v > current && self.incompatible(t).is_none())
            .find(|(v, _, _)| match installation.policy {
                UpdatePolicy::Patch => v.major == current.major && v.minor == current.minor,
                UpdatePolicy::Minor => v.major == current.major,
                UpdatePolicy::None => false,
            })
            .map(|(v, p, _)| (v, p))
    }

    /// Applies the update the policy allows, if any, and returns its package.
    pub fn update(&self, installation: &mut Installation) -> Result<Option<Package>> {
        let Some((version, path)) = self.pending_update(installation) else {
            return Ok(None);
        };
        let package = self.fetch(&path)?;
        installation.version = version;
        Ok(Some(package))
    }

    /// Rolls an installation back to an earlier `version` that the signed
    /// index still lists and has not yanked, and pins it there.
    pub fn rollback(
        &self,
        installation: &mut Installation,
        version: &semver::Version,
    ) -> Result<Package> {
        if version >= &installation.version {
            return Err(Error::Invalid(format!(
                "{version} is not earlier than the installed {}: use an update",
                installation.version
            )));
        }
        let (_, path, info) = self
            .versions(&installation.plugin, Channel::Beta)
            .into_iter()
            .find(|(v, _, _)| v == version)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} {version} is not in the signed index",
                    installation.plugin
                ))
            })?;
        if info.yanked {
            return Err(Error::Invalid(format!(
                "{} {version} was yanked: pick another version",
                installation.plugin
            )));
        }
        if let Some(why) = self.incompatible(&info) {
            return Err(Error::Invalid(format!("{why}: pick another version")));
        }
        let package = self.fetch(&path)?;
        installation.version = version.clone();
        installation.pinned = true;
        Ok(package)
    }
}
