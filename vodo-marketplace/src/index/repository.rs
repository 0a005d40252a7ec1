//! The marketplace's side: [`Repository`] writes and signs the index into
//! a folder a CDN serves as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vodo_core::Timestamp;

use vodo_core::digest::unhex;

use crate::{Error, Result, hex, sha256};

use super::metadata::{
    Delegation, IndexError, MetaPin, ROLES, RoleKeys, Root, Signed, SigningKey, Snapshot,
    TargetInfo, Targets, TimestampMeta, immutable, sign, verify_role,
};

/// The marketplace's side: writes and signs the index into a folder that a
/// static file server or CDN serves as it is.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    root: Signed<Root>,
    targets: Targets,
    pub(super) delegated: BTreeMap<String, Signed<Targets>>,
    snapshot_version: u64,
    timestamp_version: u64,
}

/// The keys that sign for each role.
#[derive(Debug)]
pub struct RoleSigners<'a> {
    /// Root keys (kept offline).
    pub root: Vec<&'a SigningKey>,
    /// Targets keys (the review service).
    pub targets: Vec<&'a SigningKey>,
    /// Snapshot key (online).
    pub snapshot: Vec<&'a SigningKey>,
    /// Timestamp key (online).
    pub timestamp: Vec<&'a SigningKey>,
}

impl RoleSigners<'_> {
    fn for_role(&self, role: &str) -> &[&SigningKey] {
        match role {
            "root" => &self.root,
            "targets" => &self.targets,
            "snapshot" => &self.snapshot,
            _ => &self.timestamp,
        }
    }

    fn root_meta(&self, version: u64, expires: Timestamp) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for role in ROLES {
            let signers = self.for_role(role);
            for k in signers {
                keys.insert(k.key_id(), k.public_hex());
            }
            roles.insert(
                role.to_owned(),
                RoleKeys {
                    keyids: signers.iter().map(|k| k.key_id()).collect(),
                    threshold: u32::try_from(signers.len()).unwrap_or(1).max(1),
                },
            );
        }
        Root {
            version,
            expires,
            keys,
            roles,
        }
    }
}

pub(super) fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::storage(format!("cannot write `{}`", path.display()), e)
}

pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(bytes)
}

pub(super) fn check_slug(plugin: &str) -> Result<()> {
    let ok = !plugin.is_empty()
        && plugin.len() <= 64
        && plugin
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !plugin.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`{plugin}` is not a plugin slug: use 1 to 64 of a-z, 0-9 and `-`, not starting with `-`"
        )))
    }
}

pub(super) fn check_publisher_name(name: &str) -> Result<()> {
    check_slug(name).map_err(|_| {
        Error::Invalid(format!(
            "`{name}` is not a publisher name: use 1 to 64 of a-z, 0-9 and `-`"
        ))
    })
}

/// The path and signed facts of a package, after checking the names.
pub(super) fn target_info(
    plugin: &str,
    version: &str,
    channel: &str,
    package: &[u8],
    host_api: Option<String>,
) -> Result<(String, TargetInfo)> {
    check_slug(plugin)?;
    let version = semver::Version::parse(version)
        .map_err(|e| {
            Error::Invalid(format!(
                "`{version}` is not a semver version like 1.2.3: {e}"
            ))
        })?
        .to_string();
    if !matches!(channel, "stable" | "beta") {
        return Err(Error::Invalid(format!(
            "`{channel}` is not a channel: use `stable` or `beta`"
        )));
    }
    Ok((
        format!("{plugin}/{version}.vpkg"),
        TargetInfo {
            length: package.len() as u64,
            sha256: hex(&sha256(package)),
            plugin: plugin.into(),
            version,
            channel: channel.into(),
            yanked: false,
            host_api,
        },
    ))
}

/// [`target_info`] with slug, version and host API from the package's manifest.
pub(super) fn package_target(package: &[u8], channel: &str) -> Result<(String, TargetInfo)> {
    let parsed = crate::package::Package::parse(package, u64::MAX)
        .map_err(|e| Error::Invalid(format!("not a publishable package: {e}")))?;
    let manifest = vodo_core::Manifest::parse(&parsed.manifest).map_err(|e| {
        Error::Invalid(format!(
            "the package's plugin.json is invalid: {}",
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    target_info(
        manifest.slug.as_str(),
        &manifest.version.to_string(),
        channel,
        package,
        manifest.host_api.as_ref().map(ToString::to_string),
    )
}

/// The signature role of a delegated publisher's targets.
pub(super) fn delegated_role(name: &str) -> String {
    format!("targets:{name}")
}

/// Checks a publisher's signed targets against its delegation: enough
/// signatures from its keys, under its own role name, and only its plugins.
pub(super) fn verify_delegated(
    name: &str,
    delegation: &Delegation,
    signed: &Signed<Targets>,
) -> Result<(), IndexError> {
    let role = delegated_role(name);
    let as_root = Root {
        version: 0,
        expires: Timestamp(i64::MAX),
        keys: delegation.keys.clone(),
        roles: BTreeMap::from([(
            role.clone(),
            RoleKeys {
                keyids: delegation.keys.keys().cloned().collect(),
                threshold: delegation.threshold,
            },
        )]),
    };
    verify_role(signed, &role, &as_root)?;
    if !signed.signed.delegations.is_empty() {
        return Err(IndexError::OutsideDelegation {
            publisher: name.into(),
            path: "(delegations)".into(),
        });
    }
    for (path, info) in &signed.signed.targets {
        let own = delegation.plugins.contains(&info.plugin)
            && *path == format!("{}/{}.vpkg", info.plugin, info.version);
        if !own {
            return Err(IndexError::OutsideDelegation {
                publisher: name.into(),
                path: path.clone(),
            });
        }
    }
    Ok(())
}

impl Repository {
    /// Creates a new index in `dir` with root version 1 expiring at `root_expires`.
    pub fn create(dir: &Path, signers: &RoleSigners<'_>, root_expires: Timestamp) -> Result<Self> {
        std::fs::create_dir_all(dir.join("targets")).map_err(io(dir))?;
        let root = sign(&signers.root_meta(1, root_expires), "root", &signers.root)?;
        write_json(&dir.join("1.root.json"), &root)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            root,
            targets: Targets {
                version: 0,
                expires: Timestamp(0),
                targets: BTreeMap::new(),
                delegations: BTreeMap::new(),
            },
            delegated: BTreeMap::new(),
            snapshot_version: 0,
            timestamp_version: 0,
        })
    }

    /// Opens an index that [`create`](Self::create) made in `dir` and
    /// earlier [`publish`](Self::publish)es wrote, to go on from where they
    /// left off: the newest root, the newest targets (with their
    /// delegations), the delegated publishers' targets the newest snapshot
    /// pins, and the snapshot's and timestamp's versions, so that the next
    /// files are numbered after them. Files that do not parse, or a snapshot
    /// whose targets are missing, are [`Error::Tampered`]: the folder was
    /// changed behind the repository's back.
    pub fn open(dir: &Path) -> Result<Self> {
        let newest = |suffix: &str| -> Result<u64> {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| Error::storage(format!("cannot list `{}`", dir.display()), e))?;
            let mut max = 0;
            for entry in entries {
                let entry = entry
                    .map_err(|e| Error::storage(format!("cannot list `{}`", dir.display()), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(n) = name
                    .strip_suffix(suffix)
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    max = max.max(n);
                }
            }
            Ok(max)
        };
        fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::storage(format!("cannot read `{}`", path.display()), e))?;
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::Tampered(format!("`{}` is not index metadata: {e}", path.display()))
            })
        }
        let root_version = newest(".root.json")?;
        if root_version == 0 {
            return Err(Error::NotFound(format!(
                "`{}` holds no index (no `1.root.json`): create one with Repository::create",
                dir.display()
            )));
        }
        let root: Signed<Root> = read(&dir.join(format!("{root_version}.root.json")))?;
        let snapshot_version = newest(".snapshot.json")?;
        let timestamp_version = match std::fs::metadata(dir.join("timestamp.json")) {
            Ok(_) => {
                read::<Signed<TimestampMeta>>(&dir.join("timestamp.json"))?
                    .signed
                    .version
            }
            Err(_) => 0,
        };
        let (targets, delegated) = if snapshot_version == 0 {
            (
                Targets {
                    version: 0,
                    expires: Timestamp(0),
                    targets: BTreeMap::new(),
                    delegations: BTreeMap::new(),
                },
                BTreeMap::new(),
            )
        } else {
            let snapshot: Signed<Snapshot> =
                read(&dir.join(format!("{snapshot_version}.snapshot.json")))?;
            let version = snapshot.signed.targets_version;
            let targets: Signed<Targets> = read(&dir.join(format!("{version}.targets.json")))?;
            if targets.signed.version != version {
                return Err(Error::Tampered(format!(
                    "`{version}.targets.json` holds version {}",
                    targets.signed.version
                )));
            }
            let mut delegated = BTreeMap::new();
            for (name, pin) in &snapshot.signed.delegated {
                let signed: Signed<Targets> =
                    read(&dir.join(format!("{}.{name}.targets.json", pin.version)))?;
                delegated.insert(name.clone(), signed);
            }
            (targets.signed, delegated)
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            root,
            targets,
            delegated,
            snapshot_version,
            timestamp_version,
        })
    }

    /// The current root, to pin in clients.
    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }

    /// The bytes of root version 1, to ship pinned with hosts.
    pub fn pinned_root(&self) -> Result<Vec<u8>> {
        let path = self.dir.join("1.root.json");
        std::fs::read(&path)
            .map_err(|e| Error::storage(format!("cannot read `{}`", path.display()), e))
    }

    /// The signed facts of every package.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Stores a package under `targets/{sha256}.vpkg` and lists it as
    /// `{plugin}/{version}.vpkg`; visible to clients after [`publish`](Self::publish).
    ///
    /// Versions are immutable: adding a listed version again with other
    /// bytes is an [`Error::Conflict`] (the same bytes again change nothing).
    /// `plugin` is a slug (`a-z`, `0-9`, `-`), `version` is semver and
    /// `channel` is `stable` or `beta`. Prefer [`add_package`](Self::add_package),
    /// which reads them from the package's own manifest.
    pub fn add(
        &mut self,
        plugin: &str,
        version: &str,
        channel: &str,
        package: &[u8],
    ) -> Result<String> {
        let (path, info) = target_info(plugin, version, channel, package, None)?;
        self.list(path, info, package)
    }

    /// Adds a Vodo package to `channel` under the slug and version its
    /// manifest declares, recording its `host_api` range in the signed
    /// facts. The package must parse and its manifest must be valid.
    pub fn add_package(&mut self, package: &[u8], channel: &str) -> Result<String> {
        let (path, info) = package_target(package, channel)?;
        self.list(path, info, package)
    }

    fn list(&mut self, path: String, info: TargetInfo, package: &[u8]) -> Result<String> {
        if let Some(owner) = self.delegated_owner(&info.plugin) {
            return Err(Error::Invalid(format!(
                "`{}` is delegated to publisher `{owner}`: its packages are listed in that publisher's signed targets",
                info.plugin
            )));
        }
        if !self.targets.listed_unchanged(&path, &info)? {
            self.store_package(package)?;
            self.targets.targets.insert(path.clone(), info);
        }
        Ok(path)
    }

    /// Stores package bytes under `targets/{sha256}.vpkg` without listing
    /// them (a delegated publisher's signed targets list them); returns the digest.
    pub fn store_package(&self, package: &[u8]) -> Result<String> {
        let digest = hex(&sha256(package));
        let file = self.dir.join("targets").join(format!("{digest}.vpkg"));
        std::fs::write(&file, package).map_err(io(&file))?;
        Ok(digest)
    }

    /// Delegates `plugins` to publisher `name`: from the next
    /// [`publish`](Self::publish), clients take those plugins' packages only
    /// from targets signed by `threshold` of `public_keys` (hex ed25519, as
    /// [`SigningKey::public_hex`] gives), and refuse anything else that
    /// publisher signs. Replaces an earlier delegation of the same name.
    pub fn delegate(
        &mut self,
        name: &str,
        public_keys: &[String],
        threshold: u32,
        plugins: &[&str],
    ) -> Result<()> {
        check_publisher_name(name)?;
        let mut keys = BTreeMap::new();
        for pk in public_keys {
            let bytes = unhex(pk)
                .filter(|b| b.len() == 32)
                .ok_or_else(|| Error::Invalid(format!("`{pk}` is not a hex ed25519 public key")))?;
            keys.insert(hex(&sha256(&bytes)), pk.clone());
        }
        if threshold == 0 || threshold as usize > keys.len() {
            return Err(Error::Invalid(format!(
                "a threshold of {threshold} with {} distinct key(s) can never be met, or is met by nobody: use 1 to {}",
                keys.len(),
                keys.len()
            )));
        }
        for plugin in plugins {
            check_slug(plugin)?;
            if let Some(owner) = self.delegated_owner(plugin).filter(|o| *o != name) {
                return Err(Error::Conflict(format!(
                    "`{plugin}` is already delegated to `{owner}`"
                )));
            }
            if self.targets.targets.values().any(|t| t.plugin == *plugin) {
                return Err(Error::Conflict(format!(
                    "`{plugin}` already has versions in the top-level targets; a plugin is listed in one place"
                )));
            }
        }
        self.targets.delegations.insert(
            name.to_owned(),
            Delegation {
                keys,
                threshold,
                plugins: plugins.iter().map(|p| (*p).to_owned()).collect(),
            },
        );
        Ok(())
    }

    /// Withdraws publisher `name`'s delegation: from the next
    /// [`publish`](Self::publish) clients no longer take its targets.
    /// Returns whether it was delegated to.
    pub fn undelegate(&mut self, name: &str) -> bool {
        self.delegated.remove(name);
        self.targets.delegations.remove(name).is_some()
    }

    /// Takes a publisher's signed targets for the next [`publish`](Self::publish),
    /// after checking them as a client will: signatures from the delegated
    /// keys, only delegated plugins, no version going backwards, no listed
    /// version changed, and every package already stored.
    pub fn accept_delegated(&mut self, name: &str, signed: Signed<Targets>) -> Result<()> {
        let delegation = self
            .targets
            .delegations
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("no publisher `{name}` is delegated to")))?;
        verify_delegated(name, delegation, &signed).map_err(Error::Index)?;
        if let Some(old) = self.delegated.get(name) {
            if signed.signed.version <= old.signed.version {
                return Err(Error::Index(IndexError::Rollback {
                    role: delegated_role(name),
                    trusted: old.signed.version,
                    got: signed.signed.version,
                }));
            }
            for (path, before) in &old.signed.targets {
                match signed.signed.targets.get(path) {
                    Some(now) if now.sha256 == before.sha256 && now.length == before.length => {}
                    _ => return Err(immutable(before)),
                }
            }
        }
        let accepted = self.delegated.get(name);
        for (path, info) in &signed.signed.targets {
            // Packages accepted before were checked then and never change.
            if accepted.is_some_and(|old| old.signed.targets.contains_key(path)) {
                continue;
            }
            let file = self
                .dir
                .join("targets")
                .join(format!("{}.vpkg", info.sha256));
            let stored = std::fs::read(&file).ok();
            if stored.as_deref().map(|b| (b.len() as u64, hex(&sha256(b))))
                != Some((info.length, info.sha256.clone()))
            {
                return Err(Error::Invalid(format!(
                    "`{path}` is not stored (or not as signed): upload the package with store_package first"
                )));
            }
        }
        self.delegated.insert(name.to_owned(), signed);
        Ok(())
    }

    fn delegated_owner(&self, plugin: &str) -> Option<&str> {
        self.targets
            .delegations
            .iter()
            .find(|(_, d)| d.plugins.iter().any(|p| p == plugin))
            .map(|(n, _)| n.as_str())
    }

    /// Yanks a version: still listed (installed hosts can verify and roll
    /// back to others), but clients do not install it anew.
    pub fn yank(&mut self, path: &str) -> Result<()> {
        self.targets.yank(path)
    }

    /// Signs and writes new targets, snapshot and timestamp files.
    pub fn publish(
        &mut self,
        signers: &RoleSigners<'_>,
        now: Timestamp,
        ttl: std::time::Duration,
        timestamp_ttl: std::time::Duration,
    ) -> Result<()> {
        self.targets.version += 1;
        self.targets.expires = now.plus(ttl);
        let targets = sign(&self.targets, "targets", &signers.targets)?;
        let tbytes = write_json(
            &self
                .dir
                .join(format!("{}.targets.json", self.targets.version)),
            &targets,
        )?;
        // Delegations that were withdrawn take their publishers' targets with them.
        let delegations = &self.targets.delegations;
        self.delegated
            .retain(|name, _| delegations.contains_key(name));
        let mut delegated = BTreeMap::new();
        for (name, signed) in &self.delegated {
            // Clients would refuse the whole index once a pinned file expired.
            if signed.signed.expires < now.plus(ttl) {
                return Err(Error::Invalid(format!(
                    "publisher `{name}`'s targets expire at {} (ms), before this snapshot would: ask them to sign again with a longer lifetime, or withdraw the delegation",
                    signed.signed.expires.0
                )));
            }
            let version = signed.signed.version;
            let bytes = write_json(
                &self.dir.join(format!("{version}.{name}.targets.json")),
                signed,
            )?;
            delegated.insert(
                name.clone(),
                MetaPin {
                    version,
                    sha256: hex(&sha256(&bytes)),
                },
            );
        }
        self.snapshot_version += 1;
        let snapshot = Snapshot {
            version: self.snapshot_version,
            expires: now.plus(ttl),
            targets_version: self.targets.version,
            targets_sha256: hex(&sha256(&tbytes)),
            delegated,
        };
        let snapshot = sign(&snapshot, "snapshot", &signers.snapshot)?;
        let sbytes = write_json(
            &self
                .dir
                .join(format!("{}.snapshot.json", self.snapshot_version)),
            &snapshot,
        )?;
        self.write_timestamp(signers, now, timestamp_ttl, hex(&sha256(&sbytes)))
    }

    fn write_timestamp(
        &mut self,
        signers: &RoleSigners<'_>,
        now: Timestamp,
        ttl: std::time::Duration,
        snapshot_sha256: String,
    ) -> Result<()> {
        self.timestamp_version += 1;
        let ts = TimestampMeta {
            version: self.timestamp_version,
            expires: now.plus(ttl),
            snapshot_version: self.snapshot_version,
            snapshot_sha256,
        };
        write_json(
            &self.dir.join("timestamp.json"),
            &sign(&ts, "timestamp", &signers.timestamp)?,
        )?;
        Ok(())
    }

    /// Re-signs the timestamp with a new expiry, nothing else changed (run on a timer).
    pub fn refresh_timestamp(
        &mut self,
        signers: &RoleSigners<'_>,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<()> {
        let snapshot = std::fs::read(
            self.dir
                .join(format!("{}.snapshot.json", self.snapshot_version)),
        )
        .map_err(|e| Error::Invalid(e.to_string()))?;
        self.write_timestamp(signers, now, ttl, hex(&sha256(&snapshot)))
    }

    /// Rotates keys: publishes root N+1 listing `new` signers, signed by the
    /// old root keys and the new ones.
    pub fn rotate(
        &mut self,
        old_root: &[&SigningKey],
        new: &RoleSigners<'_>,
        root_expires: Timestamp,
    ) -> Result<()> {
        let version = self.root.signed.version + 1;
        let meta = new.root_meta(version, root_expires);
        let mut all: Vec<&SigningKey> = old_root.to_vec();
        all.extend(
            new.root
                .iter()
                .copied()
                .filter(|k| !old_root.iter().any(|o| o.key_id() == k.key_id())),
        );
        let root = sign(&meta, "root", &all)?;
        write_json(&self.dir.join(format!("{version}.root.json")), &root)?;
        self.root = root;
        Ok(())
    }
}
