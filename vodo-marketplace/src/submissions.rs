//! The submission desk: where developers hand in packages and reviewers
//! take them through the [`workflow`](crate::workflow), kept in a
//! [`SubmissionStore`].
//!
//! - A draft pins the SHA-256 of its package, and the package bytes are kept
//!   by that digest. [`Desk::package`] hands a reviewer those bytes and checks
//!   them against the pinned digest on every read, so a reviewer sees exactly
//!   what was submitted, even if the store was written to behind the desk's
//!   back.
//! - The automated review runs on every submission (the move from Draft to
//!   Submitted), on the stored bytes, and its report travels with the
//!   submission. A report with errors sends the submission straight back:
//!   the [`AUTOMATED_REVIEW`] reviewer takes it into review and rejects it
//!   with the errors as feedback, so the developer hears at once and no
//!   person spends time on it. A clean one waits for a human reviewer.
//! - A plugin slug belongs to the developer who first submitted it, and a
//!   version that was approved or published is never submitted again.
//! - Moves are compare-and-swap on the history: when two reviewers act on the
//!   same submission at once, one wins and the other gets
//!   [`Error::Conflict`] instead of silently overwriting the first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};
use vodo_core::Timestamp;
use vodo_core::manifest::Manifest;
use vodo_core::runtime::Sandbox;

use crate::package::Package;
use crate::review::{Policy, review};
use crate::workflow::{Actor, Role, State, Submission, Transition};
use crate::{Error, Result, hex, sha256};

/// The id under which the automated review records its moves.
pub const AUTOMATED_REVIEW: &str = "automated-review";

/// Which submissions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionFilter {
    /// Only in this state (a reviewer's queue is `Some(Submitted)`).
    pub state: Option<State>,
    /// Only of this plugin slug.
    pub plugin: Option<String>,
    /// Only of this developer.
    pub owner: Option<String>,
}

impl SubmissionFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Submission) -> bool {
        self.state.is_none_or(|st| s.state == st)
            && self.plugin.as_ref().is_none_or(|p| *p == s.plugin)
            && self.owner.as_ref().is_none_or(|o| *o == s.owner)
    }
}

/// Where submissions and the packages they pin live. Implementations must
/// pass `conformance::submission_store`.
///
/// ```
/// use vodo_marketplace::submissions::{MemorySubmissions, SubmissionStore};
///
/// let store: Box<dyn SubmissionStore> = Box::new(MemorySubmissions::new());
/// // A slug is its first claimant's: the second developer is told whose it is.
/// assert_eq!(store.claim("gift-messages", "ana@example.com")?, "ana@example.com");
/// assert_eq!(store.claim("gift-messages", "bob@example.com")?, "ana@example.com");
/// // Packages are kept by their SHA-256, as submissions pin them.
/// store.put_package("ab12", b"package bytes")?;
/// assert_eq!(store.package("ab12")?.as_deref(), Some(&b"package bytes"[..]));
/// assert_eq!(store.package("cd34")?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait SubmissionStore: fmt::Debug + Send + Sync {
    /// Keeps package bytes under their SHA-256 (lowercase hex). Storing the
    /// same digest again is a no-op.
    fn put_package(&self, sha256: &str, bytes: &[u8]) -> Result<()>;
    /// The bytes kept under a digest.
    fn package(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
    /// Adds a new submission; [`Error::Conflict`] when the id is taken.
    fn create(&self, submission: &Submission) -> Result<()>;
    /// A submission by id.
    fn get(&self, id: &str) -> Result<Option<Submission>>;
    /// Replaces a submission, but only if its stored history still has
    /// `expected_moves` entries. `false` when someone else moved it first
    /// (or it does not exist); nothing is written then.
    fn update(&self, submission: &Submission, expected_moves: usize) -> Result<bool>;
    /// The submissions that pass `filter`, oldest first (by creation time, then id).
    fn list(&self, filter: &SubmissionFilter) -> Result<Vec<Submission>>;
    /// Records `owner` as the owner of the plugin slug `plugin` unless the
    /// slug has one already, atomically; returns the owner of record.
    fn claim(&self, plugin: &str, owner: &str) -> Result<String>;
}

#[derive(Debug, Default)]
struct MemInner {
    submissions: BTreeMap<String, Submission>,
    packages: HashMap<String, Vec<u8>>,
    owners: HashMap<String, String>,
}

/// Submissions in memory.
#[derive(Debug, Default)]
pub struct MemorySubmissions {
    inner: Mutex<MemInner>,
}

impl MemorySubmissions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SubmissionStore for MemorySubmissions {
    fn put_package(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        self.inner
            .lock()
            .packages
            .entry(sha256.to_owned())
            .or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn package(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().packages.get(sha256).cloned())
    }

    fn create(&self, s: &Submission) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.submissions.contains_key(&s.id) {
            return Err(Error::Conflict(format!(
                "a submission with id `{}` exists",
                s.id
            )));
        }
        inner.submissions.insert(s.id.clone(), s.clone());
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Submission>> {
        Ok(self.inner.lock().submissions.get(id).cloned())
    }

    fn update(&self, s: &Submission, expected_moves: usize) -> Result<bool> {
        let mut inner = self.inner.lock();
        match inner.submissions.get_mut(&s.id) {
            Some(current) if current.history.len() == expected_moves => {
                *current = s.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn list(&self, filter: &SubmissionFilter) -> Result<Vec<Submission>> {
        let mut out: Vec<Submission> = self
            .inner
            .lock()
            .submissions
            .values()
            .filter(|s| filter.matches(s))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    fn claim(&self, plugin: &str, owner: &str) -> Result<String> {
        Ok(self
            .inner
            .lock()
            .owners
            .entry(plugin.to_owned())
            .or_insert_with(|| owner.to_owned())
            .clone())
    }
}

/// Submissions in SQLite.
#[derive(Debug)]
pub struct SqliteSubmissions {
    conn: Mutex<Connection>,
}

fn sql(e: rusqlite::Error) -> Error {
    Error::storage("submission store", e)
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Draft => "draft",
        State::Submitted => "submitted",
        State::InReview => "in_review",
        State::Testing => "testing",
        State::Approved => "approved",
        State::Published => "published",
        State::Rejected => "rejected",
    }
}

impl SqliteSubmissions {
    /// Opens (or creates) the store at `path`; `None` for a private one in memory.
    pub fn open(path: Option<&std::path::Path>) -> Result<Self> {
        let conn = vodo_core::open_sqlite(path).map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS market_packages (sha256 TEXT PRIMARY KEY, bytes BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS market_submissions (
                id TEXT PRIMARY KEY, owner TEXT NOT NULL, plugin TEXT NOT NULL, state TEXT NOT NULL,
                created INTEGER NOT NULL, moves INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS market_submissions_by_state ON market_submissions (state, created, id);
             CREATE INDEX IF NOT EXISTS market_submissions_by_plugin ON market_submissions (plugin, created, id);
             CREATE TABLE IF NOT EXISTS market_plugin_owners (plugin TEXT PRIMARY KEY, owner TEXT NOT NULL);",
        )
        .map_err(sql)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn body(s: &Submission) -> Result<String> {
        serde_json::to_string(s).map_err(|e| Error::Invalid(e.to_string()))
    }

    fn parse(body: &str) -> Result<Submission> {
        serde_json::from_str(body).map_err(|e| {
            Error::Invalid(format!(
                "submission store: a stored submission is unreadable: {e}"
            ))
        })
    }
}

impl SubmissionStore for SqliteSubmissions {
    fn put_package(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        self.conn
            .lock()
            .execute(
                "INSERT OR IGNORE INTO market_packages (sha256, bytes) VALUES (?1, ?2)",
                params![sha256, bytes],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn package(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.conn
            .lock()
            .query_row(
                "SELECT bytes FROM market_packages WHERE sha256 = ?1",
                params![sha256],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    fn create(&self, s: &Submission) -> Result<()> {
        let body = Self::body(s)?;
        let inserted = self
            .conn
            .lock()
            .execute(
                "INSERT OR IGNORE INTO market_submissions (id, owner, plugin, state, created, moves, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.owner,
                    s.plugin,
                    state_name(s.state),
                    s.created.0,
                    s.history.len() as i64,
                    body
                ],
            )
            .map_err(sql)?;
        if inserted == 0 {
            return Err(Error::Conflict(format!(
                "a submission with id `{}` exists",
                s.id
            )));
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Submission>> {
        let body: Option<String> = self
            .conn
            .lock()
            .query_row(
                "SELECT body FROM market_submissions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        body.as_deref().map(Self::parse).transpose()
    }

    fn update(&self, s: &Submission, expected_moves: usize) -> Result<bool> {
        let body = Self::body(s)?;
        let changed = self
            .conn
            .lock()
            .execute(
                "UPDATE market_submissions SET owner = ?2, plugin = ?3, state = ?4, created = ?5,
                 moves = ?6, body = ?7 WHERE id = ?1 AND moves = ?8",
                params![
                    s.id,
                    s.owner,
                    s.plugin,
                    state_name(s.state),
                    s.created.0,
                    s.history.len() as i64,
                    body,
                    expected_moves as i64
                ],
            )
            .map_err(sql)?;
        Ok(changed == 1)
    }

    fn list(&self, filter: &SubmissionFilter) -> Result<Vec<Submission>> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT body FROM market_submissions
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR plugin = ?2) AND (?3 IS NULL OR owner = ?3)
                 ORDER BY created, id",
            )
            .map_err(sql)?;
        let bodies: Vec<String> = stmt
            .query_map(
                params![
                    filter.state.map(state_name),
                    filter.plugin.as_deref(),
                    filter.owner.as_deref()
                ],
                |r| r.get(0),
            )
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        bodies.iter().map(|b| Self::parse(b)).collect()
    }

    fn claim(&self, plugin: &str, owner: &str) -> Result<String> {
        let conn = self.conn.lock();
        conn.execute(
            "INSERT OR IGNORE INTO market_plugin_owners (plugin, owner) VALUES (?1, ?2)",
            params![plugin, owner],
        )
        .map_err(sql)?;
        conn.query_row(
            "SELECT owner FROM market_plugin_owners WHERE plugin = ?1",
            params![plugin],
            |r| r.get(0),
        )
        .map_err(sql)
    }
}

/// The submission desk: the workflow over a store, with the automated review
/// run on every submission.
#[derive(Debug, Clone)]
pub struct Desk {
    store: Arc<dyn SubmissionStore>,
    policy: Arc<Policy>,
    sandbox: Arc<dyn Sandbox>,
}

impl Desk {
    /// A desk over `store` that reviews with `policy` in `sandbox`.
    pub fn new(store: Arc<dyn SubmissionStore>, policy: Policy, sandbox: Arc<dyn Sandbox>) -> Self {
        Self {
            store,
            policy: Arc::new(policy),
            sandbox,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SubmissionStore> {
        &self.store
    }

    /// Makes a draft of `developer`'s package. The package must parse (its
    /// manifest names the plugin and version); the slug must be new or
    /// already the developer's, and the version must not have been approved
    /// or published before.
    pub fn draft(&self, developer: &Actor, package: &[u8], now: Timestamp) -> Result<Submission> {
        if developer.role != Role::Developer {
            return Err(Error::Invalid(format!(
                "drafts are made by developers; `{}` acts as {:?}",
                developer.id, developer.role
            )));
        }
        let (plugin, version) = Self::identify(package, self.policy.max_package_bytes)?;
        self.check_claim(developer, &plugin, &version, None)?;
        let digest = hex(&sha256(package));
        self.store.put_package(&digest, package)?;
        let submission =
            Submission::new(&new_id()?, &developer.id, &plugin, &version, &digest, now);
        self.store.create(&submission)?;
        Ok(submission)
    }

    /// Replaces the package of a draft (a new attempt after a rejection, or
    /// a fix before submitting). Only the owner may, and only in Draft; the
    /// old report is dropped and the change is recorded in the history.
    pub fn revise(
        &self,
        id: &str,
        developer: &Actor,
        package: &[u8],
        now: Timestamp,
    ) -> Result<Submission> {
        let (mut s, moves) = self.load(id)?;
        if developer.role != Role::Developer || developer.id != s.owner {
            return Err(Error::Workflow(crate::workflow::WorkflowError::NotOwner {
                actor: developer.id.clone(),
                owner: s.owner.clone(),
            }));
        }
        if s.state != State::Draft {
            return Err(Error::Invalid(format!(
                "only a draft takes a new package; this submission is {:?} (a rejected one goes back to Draft first)",
                s.state
            )));
        }
        let (plugin, version) = Self::identify(package, self.policy.max_package_bytes)?;
        if plugin != s.plugin {
            return Err(Error::Invalid(format!(
                "this submission is for `{}`, the new package is `{plugin}`; make a new draft for another plugin",
                s.plugin
            )));
        }
        self.check_claim(developer, &plugin, &version, Some(id))?;
        let digest = hex(&sha256(package));
        self.store.put_package(&digest, package)?;
        s.history.push(Transition {
            from: State::Draft,
            to: State::Draft,
            by: developer.id.clone(),
            role: Role::Developer,
            at: now,
            reason: format!("new package {digest} (version {version})"),
        });
        s.version = version;
        s.package_sha256 = digest;
        s.report = None;
        self.save(&s, moves)?;
        Ok(s)
    }

    /// Submits a draft for review: runs the automated review on the stored
    /// package, attaches its report, and moves the submission to Submitted.
    /// When the report has errors, the submission goes on to Rejected at
    /// once (through InReview, by [`AUTOMATED_REVIEW`]) with the errors as
    /// its feedback.
    pub fn submit(&self, id: &str, developer: &Actor, now: Timestamp) -> Result<Submission> {
        let (mut s, moves) = self.load(id)?;
        // Check the move before spending a sandbox trial on it.
        let mut probe = s.clone();
        probe.transition(State::Submitted, developer, "", now)?;
        let bytes = self.package_of(&s)?;
        let (report, _) = review(&bytes, &self.policy, self.sandbox.as_ref());
        let errors: Vec<String> = report
            .errors()
            .map(|f| format!("{} at {}: {}", f.check, f.location, f.message))
            .collect();
        s.report = Some(report);
        s.transition(State::Submitted, developer, "", now)?;
        if !errors.is_empty() {
            let bot = Actor {
                id: AUTOMATED_REVIEW.into(),
                role: Role::Reviewer,
            };
            s.transition(State::InReview, &bot, "the automated review ran", now)?;
            s.transition(
                State::Rejected,
                &bot,
                &format!(
                    "the automated review found {} error(s): {}",
                    errors.len(),
                    errors.join("; ")
                ),
                now,
            )?;
        }
        self.save(&s, moves)?;
        Ok(s)
    }

    /// Moves a submission as `actor` (see [`Submission::transition`]).
    pub fn transition(
        &self,
        id: &str,
        to: State,
        actor: &Actor,
        reason: &str,
        now: Timestamp,
    ) -> Result<Submission> {
        if to == State::Submitted {
            return self.submit(id, actor, now);
        }
        let (mut s, moves) = self.load(id)?;
        s.transition(to, actor, reason, now)?;
        self.save(&s, moves)?;
        Ok(s)
    }

    /// A submission by id.
    pub fn get(&self, id: &str) -> Result<Submission> {
        Ok(self.load(id)?.0)
    }

    /// The exact package a submission pins, checked against its digest.
    pub fn package(&self, id: &str) -> Result<Vec<u8>> {
        let (s, _) = self.load(id)?;
        self.package_of(&s)
    }

    /// The submissions that pass `filter`, oldest first.
    pub fn list(&self, filter: &SubmissionFilter) -> Result<Vec<Submission>> {
        self.store.list(filter)
    }

    fn load(&self, id: &str) -> Result<(Submission, usize)> {
        let s = self
            .store
            .get(id)?
            .ok_or_else(|| Error::NotFound(format!("no submission `{id}`")))?;
        let moves = s.history.len();
        Ok((s, moves))
    }

    fn save(&self, s: &Submission, moves: usize) -> Result<()> {
        if self.store.update(s, moves)? {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "submission `{}` was changed by someone else meanwhile; reload it and try again",
                s.id
            )))
        }
    }

    fn package_of(&self, s: &Submission) -> Result<Vec<u8>> {
        let bytes = self.store.package(&s.package_sha256)?.ok_or_else(|| {
            Error::NotFound(format!(
                "the package {} of submission `{}` is missing from the store",
                s.package_sha256, s.id
            ))
        })?;
        let actual = hex(&sha256(&bytes));
        if actual != s.package_sha256 {
            return Err(Error::Tampered(format!(
                "the stored package of submission `{}` hashes to {actual}, not the {} it was submitted with",
                s.id, s.package_sha256
            )));
        }
        Ok(bytes)
    }

    /// The plugin slug and version a package names.
    fn identify(package: &[u8], max: u64) -> Result<(String, String)> {
        let parsed = Package::parse(package, max)
            .map_err(|e| Error::Invalid(format!("the package cannot be read: {e}")))?;
        let manifest = Manifest::parse(&parsed.manifest).map_err(|e| {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            Error::Invalid(format!(
                "the package's plugin.json is invalid (run `vodo plugin:validate`): {}",
                problems.join("; ")
            ))
        })?;
        Ok((
            manifest.slug.as_str().to_owned(),
            manifest.version.to_string(),
        ))
    }

    /// Refuses a slug another developer holds, and a version already approved
    /// or published (other than by submission `except`).
    fn check_claim(
        &self,
        developer: &Actor,
        plugin: &str,
        version: &str,
        except: Option<&str>,
    ) -> Result<()> {
        // The first developer to draft a slug owns it; the store decides
        // atomically, so two developers racing for a new slug cannot both win.
        let owner = self.store.claim(plugin, &developer.id)?;
        if owner != developer.id {
            return Err(Error::Invalid(format!(
                "the plugin slug `{plugin}` belongs to another developer (`{owner}`); choose another slug"
            )));
        }
        let existing = self.store.list(&SubmissionFilter {
            plugin: Some(plugin.to_owned()),
            ..SubmissionFilter::default()
        })?;
        let taken = existing.iter().any(|s| {
            Some(s.id.as_str()) != except
                && s.version == version
                && matches!(s.state, State::Approved | State::Published)
        });
        if taken {
            return Err(Error::Invalid(format!(
                "version {version} of `{plugin}` was already approved; published versions never change, so bump the version"
            )));
        }
        Ok(())
    }
}

/// A fresh submission id: `sub_` and 16 random bytes in hex.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("the system random number generator failed".into()))?;
    Ok(format!("sub_{}", hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        crate::conformance::submission_store(&MemorySubmissions::new());
    }

    #[test]
    fn sqlite_store_passes_the_conformance_suite() {
        crate::conformance::submission_store(&SqliteSubmissions::open(None).unwrap());
    }

    #[test]
    fn sqlite_submissions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("market.db");
        let s = Submission::new("sub_1", "alice", "p", "1.0.0", "ab", Timestamp(5));
        SqliteSubmissions::open(Some(&path))
            .unwrap()
            .create(&s)
            .unwrap();
        let again = SqliteSubmissions::open(Some(&path)).unwrap();
        assert_eq!(again.get("sub_1").unwrap(), Some(s));
    }
}
