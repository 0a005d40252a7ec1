//! The host's side: [`Client`] follows the index from a pinned root and
//! refuses rollback, freeze, swapped packages and untrusted keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vodo_core::Timestamp;

use crate::{Result, hex, sha256};

use super::metadata::{
    IndexError, MAX_METADATA_BYTES, MAX_TIMESTAMP_BYTES, Root, Signed, Snapshot, TargetInfo,
    Targets, TimestampMeta, verify_role,
};
use super::repository::{delegated_role, verify_delegated};

/// Where a client gets index files: a folder, a CDN, a test double.
///
/// A host reads the index from wherever it is served; a source over a map
/// (as a test, or a cache, would keep it):
///
/// ```
/// use std::collections::HashMap;
/// use vodo_marketplace::index::{IndexError, Source};
///
/// #[derive(Debug)]
/// struct Files(HashMap<String, Vec<u8>>);
///
/// impl Source for Files {
///     fn fetch(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, IndexError> {
///         // Never more than `max` bytes: a hostile mirror cannot exhaust memory.
///         Ok(self.0.get(name).map(|b| b[..b.len().min(max as usize + 1)].to_vec()))
///     }
/// }
///
/// let source: Box<dyn Source> = Box::new(Files(HashMap::from([("timestamp.json".to_owned(), b"{}".to_vec())])));
/// assert_eq!(source.fetch("timestamp.json", 1024)?, Some(b"{}".to_vec()));
/// assert_eq!(source.fetch("targets/none.vpkg", 1024)?, None);
/// # Ok::<(), IndexError>(())
/// ```
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

pub(super) fn parse<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Malformed {
        file: file.into(),
        reason: e.to_string(),
    })
}

/// Fetches a metadata file that other signed metadata pins by hash, checks
/// the hash before anything else reads the bytes, and parses it.
pub(super) fn fetch_pinned<T: DeserializeOwned>(
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

pub(super) fn fresh(role: &str, expires: Timestamp, now: Timestamp) -> Result<(), IndexError> {
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
