//! The signed metadata: the four roles' files, their keys and signatures,
//! and the checks every signed file passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
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

pub(super) fn message(role: &str, canonical: &[u8]) -> Vec<u8> {
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
    pub(super) fn listed_unchanged(&self, path: &str, info: &TargetInfo) -> Result<bool> {
        match self.targets.get(path) {
            None => Ok(false),
            Some(existing) if existing.sha256 == info.sha256 => Ok(true),
            Some(_) => Err(immutable(info)),
        }
    }

    /// Marks a listed version yanked.
    pub(super) fn yank(&mut self, path: &str) -> Result<()> {
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

pub(super) fn canonical<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Structs serialize in declaration order and maps are BTreeMaps: the
    // encoding is deterministic.
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("cannot encode metadata: {e}")))
}

pub(super) fn sign<T: Serialize + Clone>(
    value: &T,
    role: &str,
    keys: &[&SigningKey],
) -> Result<Signed<T>> {
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
pub(super) fn verify_role<T: Serialize>(
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

pub(super) fn immutable(info: &TargetInfo) -> Error {
    Error::Conflict(format!(
        "{} {} is already listed with other content; published versions never change, so publish a new version",
        info.plugin, info.version
    ))
}
