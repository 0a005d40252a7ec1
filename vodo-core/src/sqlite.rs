//! [`SqliteStore`]: the durable default for grants, API keys and the audit
//! trail, in one embedded SQLite database (bundled, nothing to install).
//!
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed
//! write survives a crash of the process, and readers never block the
//! writer. One connection behind a mutex serves all calls; the store traits
//! are synchronous, so async hosts call them from a blocking pool.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use vodo_scopes::{PluginScope, ScopeSet};

use crate::audit::{AuditEvent, AuditFilter, AuditLog, AuditRecord, AuditSink};
use crate::keys::{ApiKeyRecord, ApiKeyStore};
use crate::permissions::{Grant, PermissionRegistry};
use crate::rate::RateLimit;
use crate::{Error, InstallationId, PluginId, Result, Timestamp};

const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS grants (
    installation   TEXT NOT NULL,
    plugin         TEXT NOT NULL,
    plugin_version TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    granted_by     TEXT NOT NULL,
    granted_at     INTEGER NOT NULL,
    enabled        INTEGER NOT NULL,
    rate_limit     TEXT,
    PRIMARY KEY (installation, plugin)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grants_by_plugin ON grants (plugin, installation);

CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL,
    installation TEXT NOT NULL,
    plugin       TEXT NOT NULL,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    replaced_by  TEXT,
    usage_count  INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_owner ON api_keys (installation, plugin, created_at);

CREATE TABLE IF NOT EXISTS audit (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    plugin       TEXT,
    installation TEXT,
    kind         TEXT NOT NULL,
    event        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_plugin ON audit (plugin, at);
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit (kind, at);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('grants_generation', 0);
";

/// Schema 1 to 2: the manifest's rate limit is stored with the grant, and
/// a generation counter tells other processes' caches that grants changed.
/// Grants written before schema 2 carry no rate limit until the plugin is
/// installed or upgraded again.
const MIGRATE_1_TO_2: &str = "ALTER TABLE grants ADD COLUMN rate_limit TEXT;";

/// Opens a SQLite connection the way every Vodo store does: at `path` in
/// WAL mode with `synchronous = NORMAL` (a committed write survives a crash
/// of the process; readers never block the writer), or private in memory
/// with `None`; either way with a 5 s busy timeout.
pub fn open_sqlite(path: Option<&Path>) -> rusqlite::Result<Connection> {
    let conn = match path {
        Some(p) => {
            let conn = Connection::open(p)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn
        }
        None => Connection::open_in_memory()?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Grants, API keys and audit records in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::init(open_sqlite(Some(path.as_ref()))?)
    }

    /// A private database in memory, gone when the store is dropped.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(open_sqlite(None)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::Invalid(format!(
                "the database has schema version {version}, newer than the {SCHEMA_VERSION} this build knows: upgrade Vodo"
            )));
        }
        if version == 1 {
            conn.execute_batch(MIGRATE_1_TO_2)?;
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

fn scopes_to_text(scopes: &ScopeSet) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn scopes_from_text(text: &str) -> Result<ScopeSet> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<PluginScope>().map_err(|e| {
                Error::Storage(format!("a stored scope does not parse ({e}); the database was changed by hand or by a newer version").into())
            })
        })
        .collect()
}

type GrantRow = (Grant, String, Option<String>);

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok((
        Grant {
            installation: InstallationId::new(row.get::<_, String>(0)?),
            plugin: PluginId::new(row.get::<_, String>(1)?),
            plugin_version: row.get(2)?,
            scopes: ScopeSet::new(),
            rate_limit: None,
            granted_by: row.get(4)?,
            granted_at: Timestamp(row.get(5)?),
            enabled: row.get(6)?,
        },
        row.get(3)?,
        row.get(7)?,
    ))
}

fn finish_grant((mut grant, scopes, rate): GrantRow) -> Result<Grant> {
    grant.scopes = scopes_from_text(&scopes)?;
    grant.rate_limit = rate
        .map(|r| {
            r.parse::<RateLimit>().map_err(|e| {
                Error::Storage(format!("a stored rate limit does not parse ({e}); the database was changed by hand or by a newer version").into())
            })
        })
        .transpose()?;
    Ok(grant)
}

const GRANT_COLUMNS: &str =
    "installation, plugin, plugin_version, scopes, granted_by, granted_at, enabled, rate_limit";

const BUMP_GENERATION: &str = "UPDATE meta SET value = value + 1 WHERE key = 'grants_generation'";

impl PermissionRegistry for SqliteStore {
    fn put(&self, g: &Grant) -> Result<()> {
        let mut conn = self.conn.lock();
        // The grant and the generation change together, or not at all.
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO grants (installation, plugin, plugin_version, scopes, granted_by, granted_at, enabled, rate_limit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (installation, plugin) DO UPDATE SET
               plugin_version = excluded.plugin_version, scopes = excluded.scopes,
               granted_by = excluded.granted_by, granted_at = excluded.granted_at,
               enabled = excluded.enabled, rate_limit = excluded.rate_limit",
            params![
                g.installation.as_str(),
                g.plugin.as_str(),
                g.plugin_version,
                scopes_to_text(&g.scopes),
                g.granted_by,
                g.granted_at.0,
                g.enabled,
                g.rate_limit.map(|r| r.to_string()),
            ],
        )?;
        tx.execute(BUMP_GENERATION, [])?;
        tx.commit()?;
        Ok(())
    }

    fn get(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Option<Grant>> {
        let row = self
            .conn
            .lock()
            .query_row(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE installation = ?1 AND plugin = ?2"
                ),
                params![installation.as_str(), plugin.as_str()],
                grant_from_row,
            )
            .optional()?;
        row.map(finish_grant).transpose()
    }

    fn remove(&self, installation: &InstallationId, plugin: &PluginId) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM grants WHERE installation = ?1 AND plugin = ?2",
            params![installation.as_str(), plugin.as_str()],
        )?;
        if n > 0 {
            tx.execute(BUMP_GENERATION, [])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn list(&self, installation: &InstallationId) -> Result<Vec<Grant>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE installation = ?1 ORDER BY plugin"
        ))?;
        let rows = stmt
            .query_map(params![installation.as_str()], grant_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish_grant).collect()
    }

    fn installations_of(&self, plugin: &PluginId) -> Result<Vec<InstallationId>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT installation FROM grants WHERE plugin = ?1 ORDER BY installation",
        )?;
        let rows = stmt
            .query_map(params![plugin.as_str()], |r| {
                r.get::<_, String>(0).map(InstallationId::new)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn generation(&self) -> Result<u64> {
        let g: i64 = self.conn.lock().query_row(
            "SELECT value FROM meta WHERE key = 'grants_generation'",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(g).unwrap_or(0))
    }
}

const KEY_COLUMNS: &str = "id, hash, installation, plugin, name, scopes, created_at, expires_at, revoked_at, replaced_by, usage_count, last_used_at";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<(ApiKeyRecord, String)> {
    let hash: Vec<u8> = row.get(1)?;
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    Ok((
        ApiKeyRecord {
            id: row.get(0)?,
            hash: h,
            installation: InstallationId::new(row.get::<_, String>(2)?),
            plugin: PluginId::new(row.get::<_, String>(3)?),
            name: row.get(4)?,
            scopes: ScopeSet::new(),
            created_at: Timestamp(row.get(6)?),
            expires_at: row.get::<_, Option<i64>>(7)?.map(Timestamp),
            revoked_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
            replaced_by: row.get(9)?,
            usage_count: u64::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
            last_used_at: row.get::<_, Option<i64>>(11)?.map(Timestamp),
        },
        row.get(5)?,
    ))
}

fn finish_key((mut record, scopes): (ApiKeyRecord, String)) -> Result<ApiKeyRecord> {
    record.scopes = scopes_from_text(&scopes)?;
    Ok(record)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Runs `sql` with a key record's columns as `?1` to `?12`, in `KEY_COLUMNS` order.
fn write_key(conn: &Connection, sql: &str, r: &ApiKeyRecord) -> rusqlite::Result<usize> {
    conn.execute(
        sql,
        params![
            r.id,
            &r.hash[..],
            r.installation.as_str(),
            r.plugin.as_str(),
            r.name,
            scopes_to_text(&r.scopes),
            r.created_at.0,
            r.expires_at.map(|t| t.0),
            r.revoked_at.map(|t| t.0),
            r.replaced_by,
            count(r.usage_count),
            r.last_used_at.map(|t| t.0),
        ],
    )
}

/// Whether a conditional write to key `id` changed it (`n` rows): when it
/// did not, the key must exist for that to be an answer rather than an error.
fn key_changed(conn: &rusqlite::Connection, id: &str, n: usize) -> Result<bool> {
    if n > 0 {
        return Ok(true);
    }
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)",
        params![id],
        |row| row.get(0),
    )?;
    if exists {
        Ok(false)
    } else {
        Err(Error::NotFound(format!("no API key `{id}`")))
    }
}

impl ApiKeyStore for SqliteStore {
    fn insert(&self, r: &ApiKeyRecord) -> Result<()> {
        let result = write_key(
            &self.conn.lock(),
            &format!(
                "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            r,
        );
        match result {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Invalid(format!(
                    "API key id `{}` exists already",
                    r.id
                )))
            }
            other => other.map(drop).map_err(Error::from),
        }
    }

    fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                params![id],
                key_from_row,
            )
            .optional()?;
        row.map(finish_key).transpose()
    }

    fn revoke(&self, id: &str, at: Timestamp) -> Result<bool> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at.0],
        )?;
        key_changed(&conn, id, n)
    }

    fn replace(&self, id: &str, successor: &str, until: Timestamp) -> Result<bool> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE api_keys SET replaced_by = ?2, expires_at = MIN(COALESCE(expires_at, ?3), ?3)
             WHERE id = ?1 AND revoked_at IS NULL AND replaced_by IS NULL",
            params![id, successor, until.0],
        )?;
        key_changed(&conn, id, n)
    }

    fn list(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Vec<ApiKeyRecord>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE installation = ?1 AND plugin = ?2 ORDER BY created_at, id"
        ))?;
        let rows = stmt
            .query_map(
                params![installation.as_str(), plugin.as_str()],
                key_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(finish_key).collect()
    }

    fn record_usage(&self, id: &str, uses: u64, last_used: Timestamp) -> Result<()> {
        let n = self.conn.lock().execute(
            "UPDATE api_keys SET usage_count = usage_count + ?2,
               last_used_at = MAX(COALESCE(last_used_at, ?3), ?3)
             WHERE id = ?1",
            params![id, count(uses), last_used.0],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!("no API key `{id}`")));
        }
        Ok(())
    }
}

fn insert_event(conn: &Connection, event: &AuditEvent) -> Result<()> {
    let json = serde_json::to_string(event)
        .map_err(|e| Error::Invalid(format!("cannot serialize audit event: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO audit (at, plugin, installation, kind, event) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.at.0,
        event.plugin.as_ref().map(PluginId::as_str),
        event.installation.as_ref().map(InstallationId::as_str),
        event.kind().as_str(),
        json
    ])?;
    Ok(())
}

impl AuditSink for SqliteStore {
    fn record(&self, event: &AuditEvent) -> Result<()> {
        insert_event(&self.conn.lock(), event)
    }

    fn record_all(&self, events: &[AuditEvent]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for e in events {
            insert_event(&tx, e)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl AuditLog for SqliteStore {
    fn query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut sql = String::from("SELECT seq, event FROM audit WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(p) = &f.plugin {
            arg(&mut sql, " AND plugin = ?", p.as_str().to_owned().into());
        }
        if let Some(i) = &f.installation {
            arg(
                &mut sql,
                " AND installation = ?",
                i.as_str().to_owned().into(),
            );
        }
        if let Some(t) = f.from {
            arg(&mut sql, " AND at >= ?", t.0.into());
        }
        if let Some(t) = f.until {
            arg(&mut sql, " AND at < ?", t.0.into());
        }
        if let Some(s) = f.after_seq {
            arg(&mut sql, " AND seq > ?", count(s).into());
        }
        if !f.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for (n, k) in f.kinds.iter().enumerate() {
                if n > 0 {
                    sql.push(',');
                }
                arg(&mut sql, "?", k.as_str().to_owned().into());
            }
            sql.push(')');
        }
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = f.limit {
            arg(&mut sql, " LIMIT ?", count(limit as u64).into());
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(seq, json)| {
                let event = serde_json::from_str(&json).map_err(|e| {
                    Error::Storage(format!("audit record {seq} does not parse: {e}").into())
                })?;
                Ok(AuditRecord {
                    seq: u64::try_from(seq).unwrap_or(0),
                    event,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_suites_pass_on_sqlite() {
        let store = SqliteStore::open_in_memory().unwrap();
        crate::conformance::permission_registry(&store);
        crate::conformance::api_key_store(&store);
        crate::conformance::audit_log(&store);
    }

    #[test]
    fn key_changes_race_safely_through_one_and_through_two_connections() {
        let dir = tempfile::tempdir().unwrap();
        let one = SqliteStore::open(dir.path().join("one.db")).unwrap();
        crate::conformance::api_key_store_races(&[&one]);
        // Two connections to one file, as two processes would have.
        let path = dir.path().join("two.db");
        let (a, b) = (
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        );
        crate::conformance::api_key_store_races(&[&a, &b]);
    }

    #[test]
    fn data_survives_reopening_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vodo.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            crate::conformance::permission_registry(&store);
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(
            !PermissionRegistry::list(&store, &InstallationId::new("conf-shop-1"))
                .unwrap()
                .is_empty()
        );
        drop(store);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("upgrade Vodo"), "{e}");
    }

    #[test]
    fn a_schema_1_database_is_migrated_and_keeps_its_grants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vodo.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE grants (installation TEXT NOT NULL, plugin TEXT NOT NULL,
                   plugin_version TEXT NOT NULL, scopes TEXT NOT NULL, granted_by TEXT NOT NULL,
                   granted_at INTEGER NOT NULL, enabled INTEGER NOT NULL,
                   PRIMARY KEY (installation, plugin)) WITHOUT ROWID;
                 INSERT INTO grants VALUES ('shop', 'p', '1.0.0', 'entities:read', 'me', 5, 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let g = PermissionRegistry::get(&store, &"shop".into(), &"p".into())
            .unwrap()
            .unwrap();
        assert_eq!((g.rate_limit, g.scopes.len()), (None, 1));
        let before = store.generation().unwrap();
        PermissionRegistry::put(
            &store,
            &Grant {
                rate_limit: "5/minute".parse().ok(),
                ..g
            },
        )
        .unwrap();
        assert_eq!(store.generation().unwrap(), before + 1);
        let g = PermissionRegistry::get(&store, &"shop".into(), &"p".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            g.rate_limit.map(|r| r.to_string()).as_deref(),
            Some("5/minute")
        );
    }

    #[test]
    fn a_corrupted_scope_fails_closed() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .conn
            .lock()
            .execute(
                "INSERT INTO grants VALUES ('i', 'p', '1', 'entities:read\nroot:all', 'x', 0, 1, NULL)",
                [],
            )
            .unwrap();
        assert!(PermissionRegistry::get(&store, &"i".into(), &"p".into()).is_err());
    }
}
