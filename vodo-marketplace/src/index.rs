//! The signed index: TUF-shaped metadata over content-addressed packages.
//!
//! Four roles sign four files, each with a `version` that only grows and an
//! `expires` time:
//!
//! | role | file | pins |
//! |---|---|---|
//! | root | `N.root.json` | every role's keys and threshold |
//! | targets | `N.targets.json` | each package's length, SHA-256 and facts (plugin, version, channel, yanked, host API range); a listed version never changes |
//! | snapshot | `N.snapshot.json` | the version and hash of the targets file |
//! | timestamp | `timestamp.json` | the version and hash of the snapshot; expires soon |
//!
//! A [`Client`] starts from a pinned root and refuses: a rollback to an
//! older version of any role, a frozen (expired) index, a package whose
//! bytes do not match its signed length and hash, a signature from a key
//! not trusted for that role, and files that never existed together (the
//! hashes chain timestamp → snapshot → targets). Keys rotate by publishing
//! root N+1 signed by a threshold of root N's keys **and** of its own, so
//! installed hosts follow without a new pinned root. Signatures cover a
//! domain-separated message (`vodo-sig-v1:{role}:` + canonical JSON), so a
//! signature for one role never verifies as another.
//!
//! Packages are stored as `targets/{sha256}.vpkg`: immutable, content
//! addressed, safe for any CDN to cache. Only `timestamp.json` changes in place.
//!
//! **Delegation to publishers.** The targets role may delegate named plugins
//! to a publisher's own keys ([`Repository::delegate`]). The publisher signs
//! the targets of those plugins itself ([`Publisher`]), under the role
//! `targets:{publisher}`, into `N.{publisher}.targets.json`, which the
//! snapshot pins by version and hash like the top-level targets. Clients
//! check those signatures against the delegation and refuse any entry
//! outside the publisher's plugins ([`IndexError::OutsideDelegation`]), so
//! the marketplace lists a publisher's packages without holding its key, and
//! a publisher's key signs for nobody else's plugins.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vodo_core::Timestamp;

use vodo_core::digest::unhex;

use crate::{Error, Result, hex, sha256};

/// Names of the four roles.
pub const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];
/// The largest `timestamp.json` a client downloads.
pub const MAX_TIMESTAMP_BYTES: u64 = 16 << 10;
/// The largest root, snapshot or targets file a client downloads.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// An ed25519 signing key. `Debug` is redacted.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, [redacted])", self.key_id())
    }
}

impl SigningKey {
    /// A fresh key.
    pub fn generate() -> Result<Self> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::Invalid("cannot generate an ed25519 key".into()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key from its PKCS#8 (v2) document, as [`to_pkcs8`](Self::to_pkcs8) wrote it.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| Error::Invalid("not an ed25519 PKCS#8 v2 key".into()))?;
        Ok(Self {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The PKCS#8 document, to store the key offline.
    pub fn to_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as hex.
    pub fn public_hex(&self) -> String {
        hex(self.pair.public_key().as_ref())
    }

    /// The key id: hex SHA-256 of the public key.
    pub fn key_id(&self) -> String {
        hex(&sha256(self.pair.public_key().as_ref()))
    }

    fn sign(&self, role: &str, canonical: &[u8]) -> Sig {
        Sig {
            keyid: self.key_id(),
            sig: hex(self.pair.sign(&message(role, canonical)).as_ref()),
        }
    }
}

fn message(role: &str, canonical: &[u8]) -> Vec<u8> {
    let mut m = format!("vodo-sig-v1:{role}:").into_bytes();
    m.extend_from_slice(canonical);
    m
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig {
    /// The signing key's id.
    pub keyid: String,
    /// The signature, hex.
    pub sig: String,
}

/// A role's keys and how many must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key ids trusted for the role.
    pub keyids: Vec<String>,
    /// Distinct valid signatures needed.
    pub threshold: u32,
}

/// The root: every role's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Only grows.
    pub version: u64,
    /// When it stops being trusted.
    pub expires: Timestamp,
    /// Public keys (hex) by key id.
    pub keys: BTreeMap<String, String>,
    /// Keys and threshold per role.
    pub roles: BTreeMap<String, RoleKeys>,
}

/// Facts about one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Exact length in bytes.
    pub length: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// The plugin.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// `stable` or `beta`.
    pub channel: String,
    /// Yanked: listed (so installed hosts can still verify it) but not installable anew.
    pub yanked: bool,
    /// The host API range the plugin's manifest declares (`host_api`), so
    /// a client can pass over versions its host cannot run before it
    /// downloads them. Absent for packages added as raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_api: Option<String>,
}

/// The targets role's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Only grows.
    pub version: u64,
    /// When it stops being trusted.
    pub expires: Timestamp,
    /// Packages by path (`{plugin}/{version}.vpkg`).
    pub targets: BTreeMap<String, TargetInfo>,
    /// Publishers trusted to sign the targets of their own plugins, by name
    /// (top-level targets only; a publisher cannot delegate further).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delegations: BTreeMap<String, Delegation>,
}

impl Targets {
    /// Whether `path` is already listed with exactly `info`'s bytes; an
    /// [`Error::Conflict`] when it is listed with other bytes, since a listed
    /// version never changes.
    fn listed_unchanged(&self, path: &str, info: &TargetInfo) -> Result<bool> {
        match self.targets.get(path) {
            None => Ok(false),
            Some(existing) if existing.sha256 == info.sha256 => Ok(true),
            Some(_) => Err(immutable(info)),
        }
    }

    /// Marks a listed version yanked.
    fn yank(&mut self, path: &str) -> Result<()> {
        self.targets
            .get_mut(path)
            .map(|t| t.yanked = true)
            .ok_or_else(|| Error::NotFound(format!("no target `{path}`")))
    }
}

/// A publisher's delegation: its keys, and the plugins it alone lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// Public keys (hex) by key id.
    pub keys: BTreeMap<String, String>,
    /// Distinct valid signatures needed.
    pub threshold: u32,
    /// The plugin slugs it lists.
    pub plugins: Vec<String>,
}

/// The version and hash a snapshot pins a delegated targets file at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaPin {
    /// Its version.
    pub version: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// The snapshot role's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Only grows.
    pub version: u64,
    /// When it stops being trusted.
    pub expires: Timestamp,
    /// The targets file it pins.
    pub targets_version: u64,
    /// Its SHA-256, hex.
    pub targets_sha256: String,
    /// Each delegated publisher's targets file, by publisher.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delegated: BTreeMap<String, MetaPin>,
}

/// The timestamp role's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampMeta {
    /// Only grows.
    pub version: u64,
    /// When it stops being trusted; short.
    pub expires: Timestamp,
    /// The snapshot file it pins.
    pub snapshot_version: u64,
    /// Its SHA-256, hex.
    pub snapshot_sha256: String,
}

/// A signed metadata file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The metadata.
    pub signed: T,
    /// Signatures over `vodo-sig-v1:{role}:` + the canonical JSON of `signed`.
    pub signatures: Vec<Sig>,
}

fn canonical<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Structs serialize in declaration order and maps are BTreeMaps: the
    // encoding is deterministic.
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("cannot encode metadata: {e}")))
}

fn sign<T: Serialize + Clone>(value: &T, role: &str, keys: &[&SigningKey]) -> Result<Signed<T>> {
    let bytes = canonical(value)?;
    Ok(Signed {
        signed: value.clone(),
        signatures: keys.iter().map(|k| k.sign(role, &bytes)).collect(),
    })
}

/// Why the index or a package was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Too few valid signatures from keys trusted for the role.
    #[error("`{role}` metadata is not signed by {threshold} trusted key(s) (found {valid})")]
    Signature {
        /// The role.
        role: String,
        /// Valid signatures found.
        valid: u32,
        /// Needed.
        threshold: u32,
    },
    /// A version older than one already trusted.
    #[error("rollback refused: `{role}` version {got} is older than the trusted version {trusted}")]
    Rollback {
        /// The role.
        role: String,
        /// The trusted version.
        trusted: u64,
        /// The version offered.
        got: u64,
    },
    /// Expired metadata: the index may be frozen.
    #[error(
        "`{role}` metadata expired at {expires}: the index may be frozen; retry later or contact the marketplace"
    )]
    Expired {
        /// The role.
        role: String,
        /// When it expired.
        expires: Timestamp,
    },
    /// A file's bytes do not match the hash or length that signed metadata gives.
    #[error("`{file}` does not match its signed length and hash: it was swapped or corrupted")]
    Mismatch {
        /// The file.
        file: String,
    },
    /// A version other than the one the pinning metadata names.
    #[error("`{file}` has version {got} but version {expected} was pinned")]
    WrongVersion {
        /// The file.
        file: String,
        /// The pinned version.
        expected: u64,
        /// The version found.
        got: u64,
    },
    /// A file is missing or unreadable.
    #[error("cannot fetch `{0}`")]
    Missing(String),
    /// A file is larger than allowed.
    #[error("`{0}` is larger than allowed")]
    TooLarge(String),
    /// A file does not parse.
    #[error("`{file}` is malformed: {reason}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// No such package in the signed targets.
    #[error("`{0}` is not in the signed index")]
    UnknownTarget(String),
    /// A publisher signed for something it was not delegated.
    #[error("publisher `{publisher}` signed `{path}`, which is not one of its plugins")]
    OutsideDelegation {
        /// The publisher.
        publisher: String,
        /// What it signed.
        path: String,
    },
}

/// Checks that `signed` carries `threshold` distinct valid signatures from
/// keys `root` trusts for `role`. Unknown and duplicate key ids never count.
fn verify_role<T: Serialize>(
    signed: &Signed<T>,
    role: &str,
    root: &Root,
) -> Result<(), IndexError> {
    let bad = |valid| IndexError::Signature {
        role: role.into(),
        valid,
        threshold: root.roles.get(role).map_or(1, |r| r.threshold),
    };
    let Some(keys) = root.roles.get(role) else {
        return Err(bad(0));
    };
    let msg = message(
        role,
        &canonical(&signed.signed).map_err(|e| IndexError::Malformed {
            file: role.into(),
            reason: e.to_string(),
        })?,
    );
    let mut counted = BTreeSet::new();
    for s in &signed.signatures {
        if !keys.keyids.contains(&s.keyid) || counted.contains(&s.keyid) {
            continue;
        }
        let (Some(pk), Some(sig)) = (root.keys.get(&s.keyid).and_then(unhex), unhex(&s.sig)) else {
            continue;
        };
        // The key id must really be the hash of the key it names.
        if hex(&sha256(&pk)) != s.keyid {
            continue;
        }
        if UnparsedPublicKey::new(&ED25519, &pk)
            .verify(&msg, &sig)
            .is_ok()
        {
            counted.insert(s.keyid.clone());
        }
    }
    let valid = u32::try_from(counted.len()).unwrap_or(u32::MAX);
    if keys.threshold == 0 || valid < keys.threshold {
        return Err(bad(valid));
    }
    Ok(())
}

/// The marketplace's side: writes and signs the index into a folder that a
/// static file server or CDN serves as it is.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    root: Signed<Root>,
    targets: Targets,
    delegated: BTreeMap<String, Signed<Targets>>,
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

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::storage(format!("cannot write `{}`", path.display()), e)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(bytes)
}

fn check_slug(plugin: &str) -> Result<()> {
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

fn check_publisher_name(name: &str) -> Result<()> {
    check_slug(name).map_err(|_| {
        Error::Invalid(format!(
            "`{name}` is not a publisher name: use 1 to 64 of a-z, 0-9 and `-`"
        ))
    })
}

fn immutable(info: &TargetInfo) -> Error {
    Error::Conflict(format!(
        "{} {} is already listed with other content; published versions never change, so publish a new version",
        info.plugin, info.version
    ))
}

/// The path and signed facts of a package, after checking the names.
fn target_info(
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
fn package_target(package: &[u8], channel: &str) -> Result<(String, TargetInfo)> {
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
fn delegated_role(name: &str) -> String {
    format!("targets:{name}")
}

/// Checks a publisher's signed targets against its delegation: enough
/// signatures from its keys, under its own role name, and only its plugins.
fn verify_delegated(
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

/// A publisher's side of a delegation: the targets it signs for its own
/// plugins, with its own keys, kept away from the marketplace.
#[derive(Debug, Clone)]
pub struct Publisher {
    name: String,
    targets: Targets,
}

impl Publisher {
    /// A publisher starting its first targets.
    pub fn new(name: &str) -> Result<Self> {
        check_publisher_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            targets: Targets {
                version: 0,
                expires: Timestamp(0),
                targets: BTreeMap::new(),
                delegations: BTreeMap::new(),
            },
        })
    }

    /// A publisher continuing from the targets it signed last.
    pub fn resume(name: &str, last: &Signed<Targets>) -> Result<Self> {
        let mut p = Self::new(name)?;
        p.targets = last.signed.clone();
        Ok(p)
    }

    /// Lists a package under the slug and version its manifest declares;
    /// a listed version never changes.
    pub fn add_package(&mut self, package: &[u8], channel: &str) -> Result<String> {
        let (path, info) = package_target(package, channel)?;
        if !self.targets.listed_unchanged(&path, &info)? {
            self.targets.targets.insert(path.clone(), info);
        }
        Ok(path)
    }

    /// Yanks one of its versions.
    pub fn yank(&mut self, path: &str) -> Result<()> {
        self.targets.yank(path)
    }

    /// Signs the next version of its targets, valid for `ttl` from `now`.
    pub fn sign(
        &mut self,
        keys: &[&SigningKey],
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<Signed<Targets>> {
        self.targets.version += 1;
        self.targets.expires = now.plus(ttl);
        sign(&self.targets, &delegated_role(&self.name), keys)
    }
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

/// Where a client gets index files: a folder, a CDN, a test double.
pub trait Source: fmt::Debug + Send + Sync {
    /// The file `name` (relative, as `timestamp.json` or `targets/{sha}.vpkg`),
    /// at most `max` bytes, or `None` if it does not exist.
    fn fetch(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, IndexError>;
}

/// Index files in a local folder (or a mounted copy of the CDN's).
#[derive(Debug, Clone)]
pub struct DirSource(pub PathBuf);

impl Source for DirSource {
    fn fetch(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, IndexError> {
        if name.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(IndexError::Missing(name.into()));
        }
        let path = self.0.join(name);
        match std::fs::metadata(&path) {
            Err(_) => Ok(None),
            Ok(m) if m.len() > max => Err(IndexError::TooLarge(name.into())),
            Ok(_) => std::fs::read(&path)
                .map(Some)
                .map_err(|_| IndexError::Missing(name.into())),
        }
    }
}

/// What a client trusts, persisted between updates so that nothing it has
/// seen can be rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedState {
    /// The newest verified root.
    pub root: Signed<Root>,
    /// The newest verified timestamp.
    pub timestamp: Option<Signed<TimestampMeta>>,
    /// The newest verified snapshot.
    pub snapshot: Option<Signed<Snapshot>>,
    /// The newest verified targets.
    pub targets: Option<Signed<Targets>>,
    /// The newest verified targets of each delegated publisher.
    #[serde(default)]
    pub delegated: BTreeMap<String, Signed<Targets>>,
}

fn parse<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Malformed {
        file: file.into(),
        reason: e.to_string(),
    })
}

/// Fetches a metadata file that other signed metadata pins by hash, checks
/// the hash before anything else reads the bytes, and parses it.
fn fetch_pinned<T: DeserializeOwned>(
    source: &dyn Source,
    file: &str,
    sha256_hex: &str,
) -> Result<T, IndexError> {
    let bytes = source
        .fetch(file, MAX_METADATA_BYTES)?
        .ok_or_else(|| IndexError::Missing(file.into()))?;
    if hex(&sha256(&bytes)) != sha256_hex {
        return Err(IndexError::Mismatch { file: file.into() });
    }
    parse(file, &bytes)
}

fn fresh(role: &str, expires: Timestamp, now: Timestamp) -> Result<(), IndexError> {
    if now >= expires {
        return Err(IndexError::Expired {
            role: role.into(),
            expires,
        });
    }
    Ok(())
}

/// The host's side: verifies the index and the packages it lists.
#[derive(Debug, Clone)]
pub struct Client {
    state: TrustedState,
}

impl Client {
    /// A client that trusts `pinned_root` (root version 1, shipped with the host).
    pub fn new(pinned_root: &[u8]) -> Result<Self, IndexError> {
        let root: Signed<Root> = parse("1.root.json", pinned_root)?;
        verify_role(&root, "root", &root.signed)?;
        Ok(Self {
            state: TrustedState {
                root,
                timestamp: None,
                snapshot: None,
                targets: None,
                delegated: BTreeMap::new(),
            },
        })
    }

    /// A client resuming from persisted state.
    pub fn resume(state: TrustedState) -> Self {
        Self { state }
    }

    /// The state to persist after an update.
    pub fn state(&self) -> &TrustedState {
        &self.state
    }

    /// Brings the trusted index up to date from `source` at time `now`,
    /// refusing rollbacks, frozen or mixed metadata and untrusted signatures.
    /// On error the trusted state is unchanged.
    pub fn update(&mut self, source: &dyn Source, now: Timestamp) -> Result<(), IndexError> {
        let mut state = self.state.clone();
        // 1. Walk the root chain.
        loop {
            let next = state.root.signed.version + 1;
            let name = format!("{next}.root.json");
            let Some(bytes) = source.fetch(&name, MAX_METADATA_BYTES)? else {
                break;
            };
            let root: Signed<Root> = parse(&name, &bytes)?;
            verify_role(&root, "root", &state.root.signed)?;
            verify_role(&root, "root", &root.signed)?;
            if root.signed.version != next {
                return Err(IndexError::WrongVersion {
                    file: name,
                    expected: next,
                    got: root.signed.version,
                });
            }
            let rotated =
                |role: &str| state.root.signed.roles.get(role) != root.signed.roles.get(role);
            if rotated("timestamp") || rotated("snapshot") {
                // Fast-forward recovery: versions signed by old keys no longer bind.
                state.timestamp = None;
                state.snapshot = None;
            }
            state.root = root;
        }
        fresh("root", state.root.signed.expires, now)?;
        let root = state.root.signed.clone();

        // 2. Timestamp.
        let bytes = source
            .fetch("timestamp.json", MAX_TIMESTAMP_BYTES)?
            .ok_or_else(|| IndexError::Missing("timestamp.json".into()))?;
        let ts: Signed<TimestampMeta> = parse("timestamp.json", &bytes)?;
        verify_role(&ts, "timestamp", &root)?;
        if let Some(trusted) = &state.timestamp {
            if ts.signed.version < trusted.signed.version {
                return Err(IndexError::Rollback {
                    role: "timestamp".into(),
                    trusted: trusted.signed.version,
                    got: ts.signed.version,
                });
            }
            if ts.signed.snapshot_version < trusted.signed.snapshot_version {
                return Err(IndexError::Rollback {
                    role: "snapshot".into(),
                    trusted: trusted.signed.snapshot_version,
                    got: ts.signed.snapshot_version,
                });
            }
        }
        fresh("timestamp", ts.signed.expires, now)?;

        // 3. Snapshot, pinned by the timestamp's hash (checked before signatures).
        let name = format!("{}.snapshot.json", ts.signed.snapshot_version);
        let snapshot: Signed<Snapshot> = fetch_pinned(source, &name, &ts.signed.snapshot_sha256)?;
        verify_role(&snapshot, "snapshot", &root)?;
        if snapshot.signed.version != ts.signed.snapshot_version {
            return Err(IndexError::WrongVersion {
                file: name,
                expected: ts.signed.snapshot_version,
                got: snapshot.signed.version,
            });
        }
        if let Some(trusted) = &state.snapshot
            && snapshot.signed.targets_version < trusted.signed.targets_version
        {
            return Err(IndexError::Rollback {
                role: "targets".into(),
                trusted: trusted.signed.targets_version,
                got: snapshot.signed.targets_version,
            });
        }
        fresh("snapshot", snapshot.signed.expires, now)?;

        // 4. Targets, pinned by the snapshot's hash.
        let name = format!("{}.targets.json", snapshot.signed.targets_version);
        let targets: Signed<Targets> =
            fetch_pinned(source, &name, &snapshot.signed.targets_sha256)?;
        verify_role(&targets, "targets", &root)?;
        // Also against the trusted targets themselves: a key rotation drops the
        // trusted snapshot, but never lets the targets go backwards.
        if let Some(trusted) = &state.targets
            && targets.signed.version < trusted.signed.version
        {
            return Err(IndexError::Rollback {
                role: "targets".into(),
                trusted: trusted.signed.version,
                got: targets.signed.version,
            });
        }
        if targets.signed.version != snapshot.signed.targets_version {
            return Err(IndexError::WrongVersion {
                file: name,
                expected: snapshot.signed.targets_version,
                got: targets.signed.version,
            });
        }
        fresh("targets", targets.signed.expires, now)?;

        // 5. Each delegated publisher's targets, pinned by the snapshot and
        // checked against the delegation in the targets just verified.
        let mut delegated = BTreeMap::new();
        for (name, delegation) in &targets.signed.delegations {
            let role = delegated_role(name);
            let pin =
                snapshot.signed.delegated.get(name).ok_or_else(|| {
                    IndexError::Missing(format!("the snapshot's pin of `{role}`"))
                })?;
            if let Some(trusted) = state.delegated.get(name)
                && pin.version < trusted.signed.version
            {
                return Err(IndexError::Rollback {
                    role,
                    trusted: trusted.signed.version,
                    got: pin.version,
                });
            }
            let file = format!("{}.{name}.targets.json", pin.version);
            let signed: Signed<Targets> = fetch_pinned(source, &file, &pin.sha256)?;
            verify_delegated(name, delegation, &signed)?;
            if signed.signed.version != pin.version {
                return Err(IndexError::WrongVersion {
                    file,
                    expected: pin.version,
                    got: signed.signed.version,
                });
            }
            fresh(&role, signed.signed.expires, now)?;
            delegated.insert(name.clone(), signed);
        }

        state.timestamp = Some(ts);
        state.snapshot = Some(snapshot);
        state.targets = Some(targets);
        state.delegated = delegated;
        self.state = state;
        Ok(())
    }

    /// The verified facts of a package, from the top-level targets or, for
    /// a delegated plugin, from its publisher's.
    pub fn target(&self, path: &str) -> Option<&TargetInfo> {
        self.state
            .targets
            .as_ref()
            .and_then(|t| t.signed.targets.get(path))
            .or_else(|| {
                self.state
                    .delegated
                    .values()
                    .find_map(|t| t.signed.targets.get(path))
            })
    }

    /// Every verified package: the top-level targets, then each delegated
    /// publisher's (each verified to list only its own plugins).
    pub fn targets(&self) -> impl Iterator<Item = (&String, &TargetInfo)> {
        self.state
            .targets
            .iter()
            .flat_map(|t| t.signed.targets.iter())
            .chain(
                self.state
                    .delegated
                    .values()
                    .flat_map(|t| t.signed.targets.iter()),
            )
    }

    /// Downloads a package (at most its signed length) and checks its hash.
    pub fn fetch_package(&self, source: &dyn Source, path: &str) -> Result<Vec<u8>, IndexError> {
        let info = self
            .target(path)
            .ok_or_else(|| IndexError::UnknownTarget(path.into()))?;
        let name = format!("targets/{}.vpkg", info.sha256);
        let bytes = source
            .fetch(&name, info.length)?
            .ok_or_else(|| IndexError::Missing(name.clone()))?;
        if bytes.len() as u64 != info.length || hex(&sha256(&bytes)) != info.sha256 {
            return Err(IndexError::Mismatch { file: path.into() });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn plugin_package(slug: &str, version: &str) -> Vec<u8> {
        crate::package::Package {
            manifest: format!(
                r#"{{"name":"P","slug":"{slug}","version":"{version}","description":"d","author":"A","license":"MIT","entry":"p.wasm","host_api":"^0.1"}}"#
            ),
            readme: String::new(),
            samples: Vec::new(),
            component: slug.as_bytes().to_vec(),
        }
        .to_bytes()
    }

    /// A marketplace whose own checks were bypassed (a compromised or buggy
    /// server) still cannot make clients accept what a publisher did not
    /// sign for its own plugins: the client checks again.
    #[test]
    fn clients_check_delegations_themselves() {
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate().unwrap()).collect();
        let signers = RoleSigners {
            root: vec![&keys[0]],
            targets: vec![&keys[1]],
            snapshot: vec![&keys[2]],
            timestamp: vec![&keys[3]],
        };
        let publisher_key = &keys[4];
        let dir = tempfile::tempdir().unwrap();
        let source = DirSource(dir.path().to_path_buf());
        let mut repo = Repository::create(dir.path(), &signers, T0.plus(365 * DAY)).unwrap();
        repo.add_package(&plugin_package("market-app", "1.0.0"), "stable")
            .unwrap();
        repo.delegate("acme", &[publisher_key.public_hex()], 1, &["acme-chat"])
            .unwrap();
        let mut acme = Publisher::new("acme").unwrap();
        let own = plugin_package("acme-chat", "1.0.0");
        acme.add_package(&own, "stable").unwrap();
        repo.store_package(&own).unwrap();
        repo.accept_delegated("acme", acme.sign(&[publisher_key], T0, 365 * DAY).unwrap())
            .unwrap();
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
        client.update(&source, T0).unwrap();
        assert_eq!(
            client
                .fetch_package(&source, "acme-chat/1.0.0.vpkg")
                .unwrap(),
            own
        );

        // The publisher's key signs a package of someone else's plugin, and
        // the server skips its own check.
        let mut rogue = Publisher::resume("acme", &repo.delegated["acme"]).unwrap();
        let hijack = plugin_package("market-app", "9.0.0");
        rogue.add_package(&hijack, "stable").unwrap();
        let signed = rogue.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        assert!(matches!(
            repo.accept_delegated("acme", signed.clone()),
            Err(Error::Index(IndexError::OutsideDelegation { .. }))
        ));
        repo.store_package(&hijack).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        let before = client.state().clone();
        let e = client.update(&source, T0).unwrap_err();
        assert!(
            matches!(&e, IndexError::OutsideDelegation { path, .. } if path == "market-app/9.0.0.vpkg"),
            "{e}"
        );
        assert_eq!(client.state(), &before);

        // Targets for acme signed by the marketplace's own targets key, not acme's.
        let mut forged = Publisher::resume("acme", &before.delegated["acme"]).unwrap();
        let signed = forged.sign(&[&keys[1]], T0, 365 * DAY).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Signature { role, valid: 0, .. }) if role == "targets:acme"
        ));

        // A signature acme made for another role (its name reused as a
        // top-level role) does not verify as acme's targets: domain separation.
        let mut other = Publisher::resume("other", &before.delegated["acme"]).unwrap();
        let signed = other.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Signature { role, .. }) if role == "targets:acme"
        ));

        // An older acme file pinned again: a rollback.
        repo.delegated
            .insert("acme".into(), before.delegated["acme"].clone());
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        client.update(&source, T0).unwrap();
        let mut newer = Publisher::resume("acme", &before.delegated["acme"]).unwrap();
        newer.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        let v3 = newer.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        repo.accept_delegated("acme", v3).unwrap();
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        client.update(&source, T0).unwrap();
        repo.delegated
            .insert("acme".into(), before.delegated["acme"].clone());
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Rollback { role, trusted: 3, got: 1 }) if role == "targets:acme"
        ));
    }
}
