//! [`ServerStore`]: the server's own data in one SQLite database: the
//! people who sign in and their sessions, the installations it serves, the
//! packages it can install, and the data plugins reach through the host
//! interfaces (entities, users, settings), which it serves as
//! [`HostServices`].

use std::collections::VecDeque;
use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use vodo_core::{InstallationId, PluginId, Timestamp};
use vodo_sandbox::{HostServices, LogLevel, ServiceError, ServiceResult};

use crate::error::ServerError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    email TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    installation TEXT,
    password TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    email TEXT NOT NULL REFERENCES accounts(email) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS installations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packages (
    slug TEXT NOT NULL,
    version TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    sample_event TEXT,
    sample_payload TEXT,
    added INTEGER NOT NULL,
    PRIMARY KEY (slug, version)
);
CREATE TABLE IF NOT EXISTS loaded (
    installation TEXT NOT NULL,
    slug TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (installation, slug)
);
CREATE TABLE IF NOT EXISTS entities (
    installation TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (installation, kind, id)
);
CREATE TABLE IF NOT EXISTS users (
    installation TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (installation, id)
);
CREATE TABLE IF NOT EXISTS settings (
    installation TEXT NOT NULL,
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (installation, plugin, key)
);
CREATE TABLE IF NOT EXISTS partner_accounts (
    email TEXT PRIMARY KEY,
    partner_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    installation TEXT NOT NULL,
    plugin TEXT NOT NULL,
    settings TEXT NOT NULL,
    PRIMARY KEY (installation, plugin)
);
CREATE TABLE IF NOT EXISTS plugin_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    installation TEXT NOT NULL,
    plugin TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plugin_logs_by_plugin ON plugin_logs (installation, plugin, seq);
CREATE TABLE IF NOT EXISTS triggered (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    installation TEXT NOT NULL,
    plugin TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

/// Plugins' log lines the store keeps in memory for the console, newest last.
pub const LOG_LINES: usize = 1000;

/// Log lines kept in the database: older ones are removed as new ones come.
pub const STORED_LOG_LINES: i64 = 100_000;

/// Log lines waiting to be written at most; past it the oldest waiting are
/// dropped (and counted), so a plugin that logs in a loop cannot grow the
/// server's memory while the database is slow.
const PENDING_LOG_LINES: usize = 10_000;

/// Which stored log lines [`ServerStore::query_logs`] returns.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this installation.
    pub installation: Option<InstallationId>,
    /// Only this plugin.
    pub plugin: Option<PluginId>,
    /// Only lines after this sequence number (the `seq` of the last line
    /// seen, to follow the log).
    pub after: Option<u64>,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Only this level and above (`debug` < `info` < `warn` < `error`).
    pub level: Option<String>,
    /// At most this many, the oldest first (default and cap 1000).
    pub limit: Option<usize>,
}

/// A stored log line: its position in the log and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLog {
    /// Its sequence number, increasing.
    pub seq: u64,
    /// The line.
    pub line: LogLine,
}

/// One account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountRow {
    pub email: String,
    pub role: String,
    pub installation: Option<String>,
    pub password: String,
}

/// One session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRow {
    pub email: String,
    pub csrf: String,
    pub expires: i64,
}

/// A package the server can install: its manifest and component digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRow {
    /// The plugin's slug.
    pub slug: String,
    /// Its version.
    pub version: String,
    /// Its `plugin.json`.
    pub manifest: String,
    /// SHA-256 of its component, hex; the bytes are in the packages folder.
    pub digest: String,
    /// An event the console's "send a test event" sends, and its payload.
    pub sample: Option<(String, String)>,
}

/// A plugin's log line, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the host received it.
    pub at: Timestamp,
    /// The installation the plugin ran in.
    pub installation: InstallationId,
    /// The plugin.
    pub plugin: PluginId,
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The line.
    pub message: String,
}

/// The server's SQLite database (WAL mode, shared by the server's threads
/// behind one connection).
#[derive(Debug)]
pub struct ServerStore {
    conn: Mutex<Connection>,
    logs: Mutex<VecDeque<LogLine>>,
    /// Lines not yet in the database, and how many were dropped.
    pending: Mutex<(VecDeque<LogLine>, u64)>,
}

fn unavailable(e: rusqlite::Error) -> ServiceError {
    ServiceError::Unavailable(format!("the server's database: {e}"))
}

impl ServerStore {
    /// Writes a record, and says whether it is new (`true`) or replaced
    /// one (`false`): both in one statement, so two writers of the same new
    /// record cannot both see it as new.
    pub fn write_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<bool> {
        if serde_json::from_str::<serde::de::IgnoredAny>(json).is_err() {
            return Err(ServiceError::Invalid(format!(
                "the {kind} `{id}` is not JSON"
            )));
        }
        let conn = self.conn.lock();
        let replaced = conn
            .execute(
                "UPDATE entities SET json = ?4 WHERE installation = ?1 AND kind = ?2 AND id = ?3",
                params![installation.as_str(), kind, id, json],
            )
            .map_err(unavailable)?;
        if replaced == 0 {
            conn.execute(
                "INSERT INTO entities (installation, kind, id, json) VALUES (?1, ?2, ?3, ?4)",
                params![installation.as_str(), kind, id, json],
            )
            .map_err(unavailable)?;
        }
        Ok(replaced == 0)
    }

    /// Every setting of `plugin` in `installation`, by key.
    pub fn settings(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Vec<(String, String)>, ServerError> {
        let conn = self.conn.lock();
        let mut q = conn
            .prepare(
                "SELECT key, value FROM settings WHERE installation = ?1 AND plugin = ?2 ORDER BY key",
            )
            .map_err(ServerError::store)?;
        let rows = q
            .query_map(params![installation.as_str(), plugin.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(ServerError::store)?;
        rows.map(|r| r.map_err(ServerError::store)).collect()
    }

    /// The OAuth partner a partner account acts as, if it has one yet.
    pub fn partner_of(&self, email: &str) -> Result<Option<String>, ServerError> {
        self.conn
            .lock()
            .query_row(
                "SELECT partner_id FROM partner_accounts WHERE email = ?1",
                params![email],
                |r| r.get(0),
            )
            .optional()
            .map_err(ServerError::store)
    }

    /// Every OAuth partner a partner account acts as.
    pub fn partner_ids(&self) -> Result<Vec<String>, ServerError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT partner_id FROM partner_accounts ORDER BY email")
            .map_err(ServerError::store)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(ServerError::store)?;
        Ok(rows)
    }

    /// Links a partner account to its OAuth partner.
    pub fn set_partner_of(&self, email: &str, partner_id: &str) -> Result<(), ServerError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO partner_accounts (email, partner_id) VALUES (?1, ?2)
                 ON CONFLICT(email) DO UPDATE SET partner_id = ?2",
                params![email, partner_id],
            )
            .map(|_| ())
            .map_err(ServerError::store)
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let conn = vodo_core::open_sqlite(Some(path)).map_err(|e| ServerError::Store {
            detail: format!("cannot open `{}`: {e}", path.display()),
        })?;
        Self::with(conn)
    }

    /// A private database in memory, for tests.
    pub fn in_memory() -> Result<Self, ServerError> {
        let conn = vodo_core::open_sqlite(None).map_err(ServerError::store)?;
        Self::with(conn)
    }

    fn with(conn: Connection) -> Result<Self, ServerError> {
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(ServerError::store)?;
        Ok(Self {
            conn: Mutex::new(conn),
            logs: Mutex::new(VecDeque::new()),
            pending: Mutex::new((VecDeque::new(), 0)),
        })
    }

    pub(crate) fn put_account(&self, a: &AccountRow) -> Result<(), ServerError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO accounts (email, role, installation, password, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(email) DO UPDATE SET role = ?2, installation = ?3, password = ?4",
                params![
                    a.email,
                    a.role,
                    a.installation,
                    a.password,
                    Timestamp::now().0
                ],
            )
            .map_err(ServerError::store)?;
        Ok(())
    }

    pub(crate) fn account(&self, email: &str) -> Result<Option<AccountRow>, ServerError> {
        self.conn
            .lock()
            .query_row(
                "SELECT email, role, installation, password FROM accounts WHERE email = ?1",
                params![email],
                |r| {
                    Ok(AccountRow {
                        email: r.get(0)?,
                        role: r.get(1)?,
                        installation: r.get(2)?,
                        password: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(ServerError::store)
    }

    /// Number of accounts.
    pub fn accounts(&self) -> Result<u64, ServerError> {
        self.conn
            .lock()
            .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))
            .map_err(ServerError::store)
    }

    pub(crate) fn put_session(&self, token_hash: &[u8], s: &SessionRow) -> Result<(), ServerError> {
        let conn = self.conn.lock();
        conn.execute(
            "DELETE FROM sessions WHERE expires < ?1",
            params![Timestamp::now().0],
        )
        .and_then(|_| {
            conn.execute(
                "INSERT INTO sessions (token_hash, email, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, s.email, s.csrf, s.expires],
            )
        })
        .map_err(ServerError::store)?;
        Ok(())
    }

    pub(crate) fn session(&self, token_hash: &[u8]) -> Result<Option<SessionRow>, ServerError> {
        self.conn
            .lock()
            .query_row(
                "SELECT email, csrf, expires FROM sessions WHERE token_hash = ?1",
                params![token_hash],
                |r| {
                    Ok(SessionRow {
                        email: r.get(0)?,
                        csrf: r.get(1)?,
                        expires: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(ServerError::store)
    }

    /// Sets `email`'s password hash and ends every session of the account
    /// but `keep` (the one that changed it), in one transaction; `false`
    /// when the account's hash is no longer `expected` (changed meanwhile).
    pub(crate) fn change_password(
        &self,
        email: &str,
        expected: &str,
        hash: &str,
        keep: &[u8],
    ) -> Result<bool, ServerError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(ServerError::store)?;
        let changed = tx
            .execute(
                "UPDATE accounts SET password = ?3 WHERE email = ?1 AND password = ?2",
                params![email, expected, hash],
            )
            .map_err(ServerError::store)?;
        if changed == 0 {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM sessions WHERE email = ?1 AND token_hash <> ?2",
            params![email, keep],
        )
        .map_err(ServerError::store)?;
        tx.commit().map_err(ServerError::store)?;
        Ok(true)
    }

    pub(crate) fn delete_session(&self, token_hash: &[u8]) -> Result<(), ServerError> {
        self.conn
            .lock()
            .execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash],
            )
            .map_err(ServerError::store)?;
        Ok(())
    }

    /// Records installation `id` under its id as its name, unless it is
    /// known already (its name is kept).
    pub fn ensure_installation(&self, id: &InstallationId) -> Result<(), ServerError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO installations (id, name, created) VALUES (?1, ?1, ?2)
                 ON CONFLICT(id) DO NOTHING",
                params![id.as_str(), Timestamp::now().0],
            )
            .map_err(ServerError::store)?;
        Ok(())
    }

    /// Records an installation the server serves, with its name (replaced
    /// if it was known).
    pub fn put_installation(&self, id: &InstallationId, name: &str) -> Result<(), ServerError> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO installations (id, name, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET name = ?2",
                params![id.as_str(), name, Timestamp::now().0],
            )
            .map_err(ServerError::store)?;
        Ok(())
    }

    /// The installations the server serves, with their names, by id.
    pub fn installations(&self) -> Result<Vec<(InstallationId, String)>, ServerError> {
        let conn = self.conn.lock();
        let mut q = conn
            .prepare("SELECT id, name FROM installations ORDER BY id")
            .map_err(ServerError::store)?;
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(ServerError::store)?;
        rows.map(|r| {
            r.map(|(id, name)| (InstallationId::new(id), name))
                .map_err(ServerError::store)
        })
        .collect()
    }

    pub(crate) fn put_package(&self, p: &PackageRow) -> Result<(), ServerError> {
        let (event, payload) = p.sample.clone().unzip();
        self.conn
            .lock()
            .execute(
                "INSERT INTO packages (slug, version, manifest, digest, sample_event, sample_payload, added)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(slug, version) DO UPDATE SET manifest = ?3, digest = ?4, sample_event = ?5, sample_payload = ?6",
                params![p.slug, p.version, p.manifest, p.digest, event, payload, Timestamp::now().0],
            )
            .map_err(ServerError::store)?;
        Ok(())
    }

    /// Every package, by slug then version as added.
    pub fn packages(&self) -> Result<Vec<PackageRow>, ServerError> {
        let conn = self.conn.lock();
        let mut q = conn
            .prepare(
                "SELECT slug, version, manifest, digest, sample_event, sample_payload
                 FROM packages ORDER BY slug, added",
            )
            .map_err(ServerError::store)?;
        let rows = q
            .query_map([], |r| {
                let event: Option<String> = r.get(4)?;
                let payload: Option<String> = r.get(5)?;
                Ok(PackageRow {
                    slug: r.get(0)?,
                    version: r.get(1)?,
                    manifest: r.get(2)?,
                    digest: r.get(3)?,
                    sample: event.zip(payload),
                })
            })
            .map_err(ServerError::store)?;
        rows.map(|r| r.map_err(ServerError::store)).collect()
    }

    pub(crate) fn set_loaded(
        &self,
        installation: &InstallationId,
        slug: &str,
        version: Option<&str>,
    ) -> Result<(), ServerError> {
        let conn = self.conn.lock();
        match version {
            Some(v) => conn.execute(
                "INSERT INTO loaded (installation, slug, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT(installation, slug) DO UPDATE SET version = ?3",
                params![installation.as_str(), slug, v],
            ),
            None => conn.execute(
                "DELETE FROM loaded WHERE installation = ?1 AND slug = ?2",
                params![installation.as_str(), slug],
            ),
        }
        .map_err(ServerError::store)?;
        Ok(())
    }

    pub(crate) fn loaded(&self) -> Result<Vec<(InstallationId, String, String)>, ServerError> {
        let conn = self.conn.lock();
        let mut q = conn
            .prepare("SELECT installation, slug, version FROM loaded ORDER BY installation, slug")
            .map_err(ServerError::store)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    InstallationId::new(r.get::<_, String>(0)?),
                    r.get(1)?,
                    r.get(2)?,
                ))
            })
            .map_err(ServerError::store)?;
        rows.map(|r| r.map_err(ServerError::store)).collect()
    }

    /// The update settings of `plugin` in `installation` (JSON), if set.
    pub(crate) fn update_settings(
        &self,
        installation: &InstallationId,
        plugin: &str,
    ) -> Result<Option<String>, ServerError> {
        self.conn
            .lock()
            .query_row(
                "SELECT settings FROM updates WHERE installation = ?1 AND plugin = ?2",
                params![installation.as_str(), plugin],
                |r| r.get(0),
            )
            .optional()
            .map_err(ServerError::store)
    }

    /// Sets (or, with `None`, forgets) the update settings of `plugin` in `installation`.
    pub(crate) fn put_update_settings(
        &self,
        installation: &InstallationId,
        plugin: &str,
        settings: Option<&str>,
    ) -> Result<(), ServerError> {
        let conn = self.conn.lock();
        match settings {
            Some(json) => conn.execute(
                "INSERT INTO updates (installation, plugin, settings) VALUES (?1, ?2, ?3)
                 ON CONFLICT(installation, plugin) DO UPDATE SET settings = ?3",
                params![installation.as_str(), plugin, json],
            ),
            None => conn.execute(
                "DELETE FROM updates WHERE installation = ?1 AND plugin = ?2",
                params![installation.as_str(), plugin],
            ),
        }
        .map_err(ServerError::store)?;
        Ok(())
    }

    /// The plugins' most recent log lines (at most [`LOG_LINES`]), oldest
    /// first, of the `installations` given (a person sees only those they
    /// manage) and of `plugin` or of all.
    pub fn logs(
        &self,
        installations: &[InstallationId],
        plugin: Option<&PluginId>,
    ) -> Vec<LogLine> {
        self.logs
            .lock()
            .iter()
            .filter(|l| installations.contains(&l.installation))
            .filter(|l| plugin.is_none_or(|p| &l.plugin == p))
            .cloned()
            .collect()
    }

    /// Writes the log lines waiting in memory to the database, in one
    /// transaction, and removes the oldest beyond [`STORED_LOG_LINES`].
    /// The server calls it twice a second and before every query; returns
    /// how many lines it wrote.
    pub fn flush_logs(&self) -> Result<usize, ServerError> {
        let (lines, dropped) = {
            let mut pending = self.pending.lock();
            (
                std::mem::take(&mut pending.0),
                std::mem::take(&mut pending.1),
            )
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "plugin log lines were dropped: the database fell behind"
            );
        }
        if lines.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(ServerError::store)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO plugin_logs (at, installation, plugin, level, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(ServerError::store)?;
            for l in &lines {
                insert
                    .execute(params![
                        l.at.as_millis(),
                        l.installation.as_str(),
                        l.plugin.as_str(),
                        l.level,
                        l.message
                    ])
                    .map_err(ServerError::store)?;
            }
        }
        tx.execute(
            "DELETE FROM plugin_logs WHERE seq <= (SELECT MAX(seq) FROM plugin_logs) - ?1",
            params![STORED_LOG_LINES],
        )
        .map_err(ServerError::store)?;
        tx.commit().map_err(ServerError::store)?;
        Ok(lines.len())
    }

    /// Stored log lines matching `q`, oldest first (lines still waiting in
    /// memory are written first).
    pub fn query_logs(&self, q: &LogQuery) -> Result<Vec<StoredLog>, ServerError> {
        self.flush_logs()?;
        const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
        let levels: Vec<&str> = match q.level.as_deref() {
            None => LEVELS.to_vec(),
            Some(l) => match LEVELS.iter().position(|x| *x == l) {
                Some(i) => LEVELS[i..].to_vec(),
                None => {
                    return Err(ServerError::invalid(format!(
                        "the level `{}` is not one of debug, info, warn, error",
                        crate::problem::shorten(l)
                    )));
                }
            },
        };
        let limit = q.limit.unwrap_or(1000).min(1000);
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at, installation, plugin, level, message FROM plugin_logs
                 WHERE (?1 IS NULL OR installation = ?1) AND (?2 IS NULL OR plugin = ?2)
                   AND seq > ?3 AND at >= ?4 AND level IN (SELECT value FROM json_each(?5))
                 ORDER BY seq LIMIT ?6",
            )
            .map_err(ServerError::store)?;
        let levels =
            serde_json::to_string(&levels).map_err(|e| ServerError::invalid(e.to_string()))?;
        let rows = stmt
            .query_map(
                params![
                    q.installation.as_ref().map(InstallationId::as_str),
                    q.plugin.as_ref().map(PluginId::as_str),
                    i64::try_from(q.after.unwrap_or(0)).unwrap_or(i64::MAX),
                    q.since.map_or(i64::MIN, |t| t.as_millis()),
                    levels,
                    i64::try_from(limit).unwrap_or(1000),
                ],
                |r| {
                    let level: String = r.get(4)?;
                    Ok(StoredLog {
                        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        line: LogLine {
                            at: Timestamp(r.get(1)?),
                            installation: InstallationId::new(r.get::<_, String>(2)?),
                            plugin: PluginId::new(r.get::<_, String>(3)?),
                            level: LEVELS
                                .iter()
                                .find(|l| **l == level)
                                .copied()
                                .unwrap_or("info"),
                            message: r.get(5)?,
                        },
                    })
                },
            )
            .map_err(ServerError::store)?;
        rows.collect::<Result<_, _>>().map_err(ServerError::store)
    }

    /// Hook events plugins triggered in `installation`, newest first.
    pub fn triggered(
        &self,
        installation: &InstallationId,
        limit: usize,
    ) -> Result<Vec<(PluginId, String, String)>, ServerError> {
        let conn = self.conn.lock();
        let mut q = conn
            .prepare(
                "SELECT plugin, name, payload FROM triggered WHERE installation = ?1
                 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(ServerError::store)?;
        let rows = q
            .query_map(
                params![
                    installation.as_str(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| Ok((PluginId::new(r.get::<_, String>(0)?), r.get(1)?, r.get(2)?)),
            )
            .map_err(ServerError::store)?;
        rows.map(|r| r.map_err(ServerError::store)).collect()
    }
}

impl HostServices for ServerStore {
    fn get_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<Option<String>> {
        self.conn
            .lock()
            .query_row(
                "SELECT json FROM entities WHERE installation = ?1 AND kind = ?2 AND id = ?3",
                params![installation.as_str(), kind, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
    }

    fn put_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
        json: &str,
    ) -> ServiceResult<()> {
        self.write_entity(installation, kind, id, json).map(|_| ())
    }

    fn delete_entity(
        &self,
        installation: &InstallationId,
        kind: &str,
        id: &str,
    ) -> ServiceResult<bool> {
        let n = self
            .conn
            .lock()
            .execute(
                "DELETE FROM entities WHERE installation = ?1 AND kind = ?2 AND id = ?3",
                params![installation.as_str(), kind, id],
            )
            .map_err(unavailable)?;
        Ok(n > 0)
    }

    fn trigger_hook(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        name: &str,
        payload: &str,
    ) -> ServiceResult<()> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO triggered (installation, plugin, name, payload, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![installation.as_str(), plugin.as_str(), name, payload, Timestamp::now().0],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    fn get_user(&self, installation: &InstallationId, id: &str) -> ServiceResult<Option<String>> {
        self.conn
            .lock()
            .query_row(
                "SELECT json FROM users WHERE installation = ?1 AND id = ?2",
                params![installation.as_str(), id],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
    }

    fn put_user(&self, installation: &InstallationId, id: &str, json: &str) -> ServiceResult<()> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO users (installation, id, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT(installation, id) DO UPDATE SET json = ?3",
                params![installation.as_str(), id, json],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    fn get_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
    ) -> ServiceResult<Option<String>> {
        self.conn
            .lock()
            .query_row(
                "SELECT value FROM settings WHERE installation = ?1 AND plugin = ?2 AND key = ?3",
                params![installation.as_str(), plugin.as_str(), key],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
    }

    fn set_setting(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        key: &str,
        value: &str,
    ) -> ServiceResult<()> {
        self.conn
            .lock()
            .execute(
                "INSERT INTO settings (installation, plugin, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(installation, plugin, key) DO UPDATE SET value = ?4",
                params![installation.as_str(), plugin.as_str(), key, value],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    /// Kept in memory (the newest [`LOG_LINES`]), queued for the database
    /// ([`flush_logs`](ServerStore::flush_logs) writes them) and sent to
    /// `tracing`. Never waits on the database.
    fn log(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
        level: LogLevel,
        message: &str,
    ) {
        let level = level.as_str();
        tracing::info!(target: "vodo::plugin", %installation, plugin = %plugin, level, "{message}");
        let line = LogLine {
            at: Timestamp::now(),
            installation: installation.clone(),
            plugin: plugin.clone(),
            level,
            message: message.to_owned(),
        };
        {
            let mut pending = self.pending.lock();
            if pending.0.len() >= PENDING_LOG_LINES {
                pending.0.pop_front();
                pending.1 += 1;
            }
            pending.0.push_back(line.clone());
        }
        let mut logs = self.logs.lock();
        if logs.len() == LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(line);
    }
}
