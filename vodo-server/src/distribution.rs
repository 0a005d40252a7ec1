//! The platform's signed index: every package it can install is listed in
//! a TUF-shaped index ([`vodo_marketplace::index`]) kept in the data
//! folder's `index/`, and every install, upgrade and rollback takes its
//! bytes through a verifying [`Client`] that trusts the index's first root.
//! The same files are served under `/index/` for CDNs and other hosts:
//! content-addressed packages and version-named metadata as immutable,
//! `timestamp.json` with a short lifetime, all with strong `ETag`s.
//!
//! A release's channel is its version's: a pre-release (`1.2.0-beta.1`) is
//! published on `beta`, any other version on `stable`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use parking_lot::Mutex;
use tower::ServiceExt as _;
use vodo_core::Timestamp;
use vodo_marketplace::index::{
    Client, DirSource, IndexError, Repository, RoleSigners, SigningKey, TrustedState,
};
use vodo_marketplace::installer::{Channel, Installer};
use vodo_marketplace::package::Package;

use crate::Problem;
use crate::error::ServerError;

/// How long signed targets and snapshots stay valid. A publish signs anew.
pub const TARGETS_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a signed timestamp stays valid; the updater re-signs it when
/// half of this is left, so hosts that follow the index see it stay fresh.
pub const TIMESTAMP_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long the index's first root stays valid.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The `Cache-Control` of files that never change once written.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The `Cache-Control` of `timestamp.json`, the one file that changes in place.
pub const SHORT: &str = "public, max-age=60, must-revalidate";

const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// The channel a release of `version` is published on.
pub fn channel_of(version: &semver::Version) -> &'static str {
    if version.pre.is_empty() {
        "stable"
    } else {
        "beta"
    }
}

/// The signed index of the platform's packages and the host's verified view of it.
pub(crate) struct Distribution {
    dir: PathBuf,
    trust: PathBuf,
    keys: Vec<SigningKey>,
    state: Mutex<State>,
}

struct State {
    repo: Repository,
    client: Client,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Distribution")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl From<IndexError> for ServerError {
    fn from(e: IndexError) -> Self {
        ServerError::Index(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file, owner-only when `private`.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), ServerError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io(&tmp))?;
    std::io::Write::write_all(&mut file, bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The signing key of `role`, made (owner-only) on first start.
fn role_key(dir: &Path, role: &str) -> Result<SigningKey, ServerError> {
    let path = dir.join(format!("{role}.pk8"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(SigningKey::from_pkcs8(&bytes)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate()?;
            write_atomic(&path, key.to_pkcs8(), true)?;
            Ok(key)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

impl Distribution {
    /// Opens the index under `data` (`index/`, its keys in `index-keys/`,
    /// the host's trusted state in `index-trust.json`), creating it on
    /// first start.
    pub(crate) fn open(data: &Path) -> Result<Self, ServerError> {
        let dir = data.join("index");
        let keys_dir = data.join("index-keys");
        std::fs::create_dir_all(&keys_dir).map_err(io(&keys_dir))?;
        let keys = ROLES
            .iter()
            .map(|role| role_key(&keys_dir, role))
            .collect::<Result<Vec<_>, _>>()?;
        let signers = signers(&keys);
        let repo = if dir.join("1.root.json").exists() {
            Repository::open(&dir)?
        } else {
            Repository::create(&dir, &signers, Timestamp::now().plus(ROOT_TTL))?
        };
        let trust = data.join("index-trust.json");
        let client = match std::fs::read(&trust) {
            Ok(bytes) => {
                let state: TrustedState = serde_json::from_slice(&bytes).map_err(|e| {
                    ServerError::invalid(format!(
                        "`{}` is not the index's trusted state ({e}): restore it from a backup; removing it trusts the index's first root again",
                        trust.display()
                    ))
                })?;
                Client::resume(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Client::new(&repo.pinned_root()?)?
            }
            Err(e) => return Err(io(&trust)(e)),
        };
        let me = Self {
            dir,
            trust,
            keys,
            state: Mutex::new(State { repo, client }),
        };
        if me.state.lock().repo.targets().version > 0 {
            me.refresh()?;
        }
        Ok(me)
    }

    /// The folder the index is written to and served from.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lists `package` (already parsed and checked) on its version's channel,
    /// signs the index anew, and brings the host's view up to date. The same
    /// bytes again change nothing; other bytes under a listed version are
    /// refused.
    pub(crate) fn publish(
        &self,
        package: &[u8],
        version: &semver::Version,
    ) -> Result<(), ServerError> {
        let mut state = self.state.lock();
        let signers = signers(&self.keys);
        let before = state.repo.targets().targets.len();
        let path = state.repo.add_package(package, channel_of(version))?;
        let listed = state.repo.targets().targets.len() > before;
        if listed || state.client.target(&path).is_none() {
            state
                .repo
                .publish(&signers, Timestamp::now(), TARGETS_TTL, TIMESTAMP_TTL)?;
        }
        self.follow(&mut state)
    }

    /// Re-signs the timestamp when half its lifetime is gone, and brings
    /// the host's view up to date.
    pub(crate) fn refresh(&self) -> Result<(), ServerError> {
        let mut state = self.state.lock();
        let now = Timestamp::now();
        let stale =
            state.client.state().timestamp.as_ref().is_none_or(|t| {
                t.signed.expires.0 - now.0 < (TIMESTAMP_TTL.as_millis() / 2) as i64
            });
        if stale && state.repo.targets().version > 0 {
            state
                .repo
                .refresh_timestamp(&signers(&self.keys), now, TIMESTAMP_TTL)?;
        }
        self.follow(&mut state)
    }

    fn follow(&self, state: &mut State) -> Result<(), ServerError> {
        state
            .client
            .update(&DirSource(self.dir.clone()), Timestamp::now())?;
        let bytes = serde_json::to_vec(state.client.state())
            .map_err(|e| ServerError::invalid(e.to_string()))?;
        write_atomic(&self.trust, &bytes, false)
    }

    /// Runs `f` with an installer over the verified index.
    pub(crate) fn with_installer<T>(&self, f: impl FnOnce(&Installer<'_>) -> T) -> T {
        let state = self.state.lock();
        let source = DirSource(self.dir.clone());
        f(&Installer::new(&state.client, &source))
    }

    /// The versions of `plugin` on `channel`, oldest first, each with whether it was yanked.
    pub(crate) fn versions(&self, plugin: &str, channel: Channel) -> Vec<(semver::Version, bool)> {
        self.with_installer(|i| {
            i.versions(plugin, channel)
                .into_iter()
                .map(|(v, _, t)| (v, t.yanked))
                .collect()
        })
    }

    /// The package `plugin` `version`, its bytes checked against the signed
    /// length and hash before they are parsed.
    pub(crate) fn fetch(
        &self,
        plugin: &str,
        version: &semver::Version,
    ) -> Result<Package, ServerError> {
        let state = self.state.lock();
        let path = format!("{plugin}/{version}.vpkg");
        let bytes = state
            .client
            .fetch_package(&DirSource(self.dir.clone()), &path)?;
        Ok(Package::parse(&bytes, u64::MAX)?)
    }

    /// Whether `plugin` `version` is listed in the verified index.
    pub(crate) fn lists(&self, plugin: &str, version: &semver::Version) -> bool {
        self.state
            .lock()
            .client
            .target(&format!("{plugin}/{version}.vpkg"))
            .is_some()
    }

    /// Yanks `plugin` `version`: still listed, so installations can verify
    /// it and roll back to others, but no longer installed or updated to.
    pub(crate) fn yank(&self, plugin: &str, version: &semver::Version) -> Result<(), ServerError> {
        let mut state = self.state.lock();
        state.repo.yank(&format!("{plugin}/{version}.vpkg"))?;
        state.repo.publish(
            &signers(&self.keys),
            Timestamp::now(),
            TARGETS_TTL,
            TIMESTAMP_TTL,
        )?;
        self.follow(&mut state)
    }
}

fn signers(keys: &[SigningKey]) -> RoleSigners<'_> {
    let role = |i: usize| keys.get(i).into_iter().collect::<Vec<_>>();
    RoleSigners {
        root: role(0),
        targets: role(1),
        snapshot: role(2),
        timestamp: role(3),
    }
}

/// What an index file name is, for its cache headers: the one file that
/// changes in place, or one that never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    Short,
    Immutable,
}

/// The kind of index file `name` is, if it names one: `timestamp.json`,
/// `N.root.json`, `N.snapshot.json`, `N.targets.json`,
/// `N.{publisher}.targets.json` or `targets/{sha256}.vpkg`.
fn classify(name: &str) -> Option<(Lifetime, Option<&str>)> {
    if name == "timestamp.json" {
        return Some((Lifetime::Short, None));
    }
    if let Some(hash) = name
        .strip_prefix("targets/")
        .and_then(|n| n.strip_suffix(".vpkg"))
    {
        let hex = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        return hex.then_some((Lifetime::Immutable, Some(hash)));
    }
    let rest = name.strip_suffix(".json")?;
    let (version, role) = rest.split_once('.')?;
    let numbered = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    let role_ok = match role {
        "root" | "snapshot" | "targets" => true,
        other => other.strip_suffix(".targets").is_some_and(|publisher| {
            !publisher.is_empty()
                && publisher.len() <= 64
                && publisher
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }),
    };
    (numbered && role_ok).then_some((Lifetime::Immutable, None))
}

/// Whether an `If-None-Match` header value matches the strong tag `etag`.
fn none_match(header: &HeaderValue, etag: &str) -> bool {
    header.to_str().is_ok_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

/// `GET /index/{file}`: one file of the signed index, as a CDN would serve
/// it: a strong `ETag` (the SHA-256 of the bytes), `304` for a matching
/// `If-None-Match`, ranges and `Last-Modified` (tower-http's `ServeFile`),
/// immutable caching for content-addressed packages and version-named
/// metadata, and a one-minute lifetime for `timestamp.json`.
pub(crate) async fn serve_file(dir: PathBuf, name: String, request: Request) -> Response {
    let Some((lifetime, hash)) = classify(&name) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "no_index_file",
            format!("`{name}` is not a file of the signed index: start from /index/timestamp.json"),
        )
        .into_response();
    };
    let path = dir.join(&name);
    let etag = match hash {
        // Stored under the hash of its bytes, which clients check.
        Some(hash) => format!("\"{hash}\""),
        None => match tokio::fs::read(&path).await {
            Ok(bytes) => format!(
                "\"{}\"",
                vodo_core::digest::hex(&vodo_core::digest::sha256(&bytes))
            ),
            Err(_) => String::new(),
        },
    };
    let cache = match lifetime {
        Lifetime::Short => SHORT,
        Lifetime::Immutable => IMMUTABLE,
    };
    let tag = HeaderValue::from_str(&etag)
        .ok()
        .filter(|_| !etag.is_empty());
    if let (Some(tag), Some(inm)) = (&tag, request.headers().get(header::IF_NONE_MATCH))
        && none_match(inm, &etag)
        && tokio::fs::metadata(&path).await.is_ok()
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, tag.clone()),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
        )
            .into_response();
    }
    let served = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await;
    let Ok(response) = served;
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::NOT_FOUND {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "no_index_file",
            format!("the signed index has no `{name}`"),
        )
        .into_response();
    }
    if parts.status.is_success() || parts.status == StatusCode::NOT_MODIFIED {
        if let Some(tag) = tag {
            parts.headers.insert(header::ETAG, tag);
        }
        parts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        parts.headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_index_file_names_are_served() {
        let hash = "ab".repeat(32);
        assert_eq!(classify("timestamp.json"), Some((Lifetime::Short, None)));
        assert_eq!(
            classify(&format!("targets/{hash}.vpkg")),
            Some((Lifetime::Immutable, Some(hash.as_str())))
        );
        for ok in [
            "1.root.json",
            "12.snapshot.json",
            "3.targets.json",
            "2.acme.targets.json",
        ] {
            assert_eq!(classify(ok), Some((Lifetime::Immutable, None)), "{ok}");
        }
        for bad in [
            "../secret.key",
            "targets/../../secret.key",
            "targets/AB.vpkg",
            &format!("targets/{}.vpkg", "g".repeat(64)),
            "index-trust.json",
            "x.root.json",
            ".root.json",
            "1.ACME.targets.json",
            "1.a/b.targets.json",
            "1.root.json.tmp",
            "1.keys.json",
            "",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(none_match(&h("\"a\""), "\"a\""));
        assert!(none_match(&h("\"b\", W/\"a\""), "\"a\""));
        assert!(none_match(&h("*"), "\"a\""));
        assert!(!none_match(&h("\"b\""), "\"a\""));
    }
}
