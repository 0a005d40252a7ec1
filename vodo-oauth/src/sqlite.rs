//! [`SqliteStore`]: the durable default for partners, apps, consents, codes
//! and tokens. Secrets are stored only as hashes.

use std::path::Path;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, Row, params};
use vodo_core::digest::{hex, unhex32};
use vodo_core::{InstallationId, Timestamp};
use vodo_scopes::{PluginScope, ScopeSet};

use crate::Result;
use crate::model::{
    AccountScope, AccountScopes, AuthCode, Client, ClientKind, Consent, DeviceCode, DeviceDecision,
    DevicePoll, Partner, SecretHash, Token, TokenKind,
};
use crate::store::{OAuthStore, Redemption, poll_step};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oauth_partners (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_clients (
    id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    secrets TEXT NOT NULL, redirect_uris TEXT NOT NULL, scopes TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oauth_clients_by_partner ON oauth_clients (partner_id, id);
CREATE TABLE IF NOT EXISTS oauth_consents (
    installation TEXT NOT NULL, client_id TEXT NOT NULL, scopes TEXT NOT NULL, offline INTEGER NOT NULL,
    granted_by TEXT NOT NULL, granted_at INTEGER NOT NULL, PRIMARY KEY (installation, client_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oauth_codes (
    hash BLOB PRIMARY KEY, client_id TEXT NOT NULL, installation TEXT NOT NULL, subject TEXT NOT NULL,
    redirect_uri TEXT NOT NULL, scopes TEXT NOT NULL, offline INTEGER NOT NULL, challenge TEXT NOT NULL,
    expires_at INTEGER NOT NULL, family TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oauth_tokens (
    hash BLOB PRIMARY KEY, kind TEXT NOT NULL, client_id TEXT NOT NULL, installation TEXT,
    subject TEXT NOT NULL, scopes TEXT NOT NULL, offline INTEGER NOT NULL, family TEXT NOT NULL,
    issued_at INTEGER NOT NULL, expires_at INTEGER, revoked INTEGER NOT NULL, used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS oauth_tokens_by_family ON oauth_tokens (family);
CREATE INDEX IF NOT EXISTS oauth_tokens_by_client ON oauth_tokens (client_id);
CREATE TABLE IF NOT EXISTS oauth_device_codes (
    hash BLOB PRIMARY KEY, user_code TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL,
    scopes TEXT NOT NULL, offline INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    interval_secs INTEGER NOT NULL, last_poll INTEGER, decision TEXT NOT NULL, subject TEXT,
    redeemed INTEGER NOT NULL, family TEXT NOT NULL
) WITHOUT ROWID;
";

/// The authorization server's data in one SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::init(vodo_core::open_sqlite(Some(path.as_ref()))?)
    }

    /// A private database in memory.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(vodo_core::open_sqlite(None)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

fn scopes_text(s: &ScopeSet) -> String {
    scopes_text_with(s, &AccountScopes::new())
}

/// Plugin scopes and account scopes share one column: the two vocabularies
/// do not overlap, so a row written before account scopes existed reads the same.
fn scopes_text_with(s: &ScopeSet, account: &AccountScopes) -> String {
    s.iter()
        .map(ToString::to_string)
        .chain(account.iter().map(ToString::to_string))
        .collect::<Vec<_>>()
        .join(" ")
}

fn scopes_parse(s: &str) -> rusqlite::Result<ScopeSet> {
    Ok(scopes_parse_with(s)?.0)
}

fn scopes_parse_with(s: &str) -> rusqlite::Result<(ScopeSet, AccountScopes)> {
    let mut plugin = Vec::new();
    let mut account = AccountScopes::new();
    for x in s.split(' ').filter(|x| !x.is_empty()) {
        if let Some(a) = AccountScope::parse(x) {
            account.insert(a);
            continue;
        }
        plugin.push(x.parse::<PluginScope>().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?);
    }
    Ok((plugin.into_iter().collect(), account))
}

fn secrets_text(secrets: &[SecretHash]) -> String {
    secrets
        .iter()
        .map(|s| {
            format!(
                "{},{},{}",
                hex(&s.hash),
                s.created_at.0,
                s.expires_at.map(|t| t.0.to_string()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn secrets_parse(s: &str) -> rusqlite::Result<Vec<SecretHash>> {
    let bad = || {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            "bad secret hash row".into(),
        )
    };
    s.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split(',');
            let hash = f.next().and_then(unhex32).ok_or_else(bad)?;
            let created = f.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let expires = match f.next() {
                Some("") | None => None,
                Some(x) => Some(Timestamp(x.parse().map_err(|_| bad())?)),
            };
            Ok(SecretHash {
                hash,
                created_at: Timestamp(created),
                expires_at: expires,
            })
        })
        .collect()
}

fn blob32(row: &Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = row.get(i)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "not 32 bytes".into(),
        )
    })
}

fn client_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    let kind: String = row.get(3)?;
    let (scopes, account_scopes) = scopes_parse_with(&row.get::<_, String>(6)?)?;
    Ok(Client {
        id: row.get(0)?,
        partner_id: row.get(1)?,
        name: row.get(2)?,
        kind: ClientKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                "bad client kind".into(),
            )
        })?,
        secrets: secrets_parse(&row.get::<_, String>(4)?)?,
        redirect_uris: row
            .get::<_, String>(5)?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        scopes,
        account_scopes,
        created_at: Timestamp(row.get(7)?),
    })
}

const CLIENT_COLUMNS: &str =
    "id, partner_id, name, kind, secrets, redirect_uris, scopes, created_at";
const CODE_COLUMNS: &str = "hash, client_id, installation, subject, redirect_uri, scopes, offline, challenge, expires_at, family";
const TOKEN_COLUMNS: &str = "hash, kind, client_id, installation, subject, scopes, offline, family, issued_at, expires_at, revoked, used";

const DEVICE_COLUMNS: &str = "hash, user_code, client_id, scopes, offline, expires_at, interval_secs, last_poll, decision, subject, redeemed, family";

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceCode> {
    let decision: String = row.get(8)?;
    let subject: Option<String> = row.get(9)?;
    let decision = match (decision.as_str(), subject) {
        ("pending", _) => DeviceDecision::Pending,
        ("denied", _) => DeviceDecision::Denied,
        ("approved", Some(subject)) => DeviceDecision::Approved { subject },
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                "bad device decision".into(),
            ));
        }
    };
    Ok(DeviceCode {
        hash: blob32(row, 0)?,
        user_code: row.get(1)?,
        client_id: row.get(2)?,
        account_scopes: scopes_parse_with(&row.get::<_, String>(3)?)?.1,
        offline_access: row.get(4)?,
        expires_at: Timestamp(row.get(5)?),
        interval_secs: row.get(6)?,
        last_poll: row.get::<_, Option<i64>>(7)?.map(Timestamp),
        decision,
        redeemed: row.get(10)?,
        family: row.get(11)?,
    })
}

fn decision_columns(d: &DeviceDecision) -> (&'static str, Option<&str>) {
    match d {
        DeviceDecision::Pending => ("pending", None),
        DeviceDecision::Denied => ("denied", None),
        DeviceDecision::Approved { subject } => ("approved", Some(subject.as_str())),
    }
}

fn code_row(row: &Row<'_>) -> rusqlite::Result<AuthCode> {
    Ok(AuthCode {
        hash: blob32(row, 0)?,
        client_id: row.get(1)?,
        installation: InstallationId::new(row.get::<_, String>(2)?),
        subject: row.get(3)?,
        redirect_uri: row.get(4)?,
        scopes: scopes_parse(&row.get::<_, String>(5)?)?,
        offline_access: row.get(6)?,
        code_challenge: row.get(7)?,
        expires_at: Timestamp(row.get(8)?),
        family: row.get(9)?,
    })
}

fn token_row(row: &Row<'_>) -> rusqlite::Result<Token> {
    let kind: String = row.get(1)?;
    let (scopes, account_scopes) = scopes_parse_with(&row.get::<_, String>(5)?)?;
    Ok(Token {
        hash: blob32(row, 0)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                "bad token kind".into(),
            )
        })?,
        client_id: row.get(2)?,
        installation: row.get::<_, Option<String>>(3)?.map(InstallationId::new),
        subject: row.get(4)?,
        scopes,
        account_scopes,
        offline_access: row.get(6)?,
        family: row.get(7)?,
        issued_at: Timestamp(row.get(8)?),
        expires_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        revoked: row.get(10)?,
        used: row.get(11)?,
    })
}

impl OAuthStore for SqliteStore {
    fn put_partner(&self, p: &Partner) -> Result<()> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO oauth_partners (id, name, email, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![p.id, p.name, p.email, p.created_at.0],
        )?;
        Ok(())
    }

    fn get_partner(&self, id: &str) -> Result<Option<Partner>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT id, name, email, created_at FROM oauth_partners WHERE id = ?1",
                params![id],
                |r| {
                    Ok(Partner {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        email: r.get(2)?,
                        created_at: Timestamp(r.get(3)?),
                    })
                },
            )
            .optional()?)
    }

    fn put_client(&self, c: &Client) -> Result<()> {
        self.conn.lock().execute(
            &format!("INSERT OR REPLACE INTO oauth_clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                c.id,
                c.partner_id,
                c.name,
                c.kind.as_str(),
                secrets_text(&c.secrets),
                c.redirect_uris.join("\n"),
                scopes_text_with(&c.scopes, &c.account_scopes),
                c.created_at.0
            ],
        )?;
        Ok(())
    }

    fn get_client(&self, id: &str) -> Result<Option<Client>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = ?1"),
                params![id],
                client_row,
            )
            .optional()?)
    }

    fn list_clients(&self, partner_id: &str) -> Result<Vec<Client>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE partner_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt
            .query_map(params![partner_id], client_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn delete_client(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM oauth_clients WHERE id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM oauth_consents WHERE client_id = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM oauth_tokens WHERE client_id = ?1", params![id])?;
        tx.execute("DELETE FROM oauth_codes WHERE client_id = ?1", params![id])?;
        tx.execute(
            "DELETE FROM oauth_device_codes WHERE client_id = ?1",
            params![id],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn put_consent(&self, c: &Consent) -> Result<()> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO oauth_consents (installation, client_id, scopes, offline, granted_by, granted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                c.installation.as_str(),
                c.client_id,
                scopes_text(&c.scopes),
                c.offline_access,
                c.granted_by,
                c.granted_at.0
            ],
        )?;
        Ok(())
    }

    fn get_consent(
        &self,
        installation: &InstallationId,
        client_id: &str,
    ) -> Result<Option<Consent>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT installation, client_id, scopes, offline, granted_by, granted_at FROM oauth_consents
                 WHERE installation = ?1 AND client_id = ?2",
                params![installation.as_str(), client_id],
                |r| {
                    Ok(Consent {
                        installation: InstallationId::new(r.get::<_, String>(0)?),
                        client_id: r.get(1)?,
                        scopes: scopes_parse(&r.get::<_, String>(2)?)?,
                        offline_access: r.get(3)?,
                        granted_by: r.get(4)?,
                        granted_at: Timestamp(r.get(5)?),
                    })
                },
            )
            .optional()?)
    }

    fn delete_consent(&self, installation: &InstallationId, client_id: &str) -> Result<bool> {
        let n = self.conn.lock().execute(
            "DELETE FROM oauth_consents WHERE installation = ?1 AND client_id = ?2",
            params![installation.as_str(), client_id],
        )?;
        Ok(n > 0)
    }

    fn list_consents(&self, installation: &InstallationId) -> Result<Vec<Consent>> {
        let conn = self.conn.lock();
        let mut q = conn.prepare(
            "SELECT installation, client_id, scopes, offline, granted_by, granted_at FROM oauth_consents
             WHERE installation = ?1 ORDER BY client_id",
        )?;
        let rows = q.query_map(params![installation.as_str()], |r| {
            Ok(Consent {
                installation: InstallationId::new(r.get::<_, String>(0)?),
                client_id: r.get(1)?,
                scopes: scopes_parse(&r.get::<_, String>(2)?)?,
                offline_access: r.get(3)?,
                granted_by: r.get(4)?,
                granted_at: Timestamp(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn put_code(&self, c: &AuthCode) -> Result<()> {
        self.conn.lock().execute(
            &format!("INSERT INTO oauth_codes ({CODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                &c.hash[..],
                c.client_id,
                c.installation.as_str(),
                c.subject,
                c.redirect_uri,
                scopes_text(&c.scopes),
                c.offline_access,
                c.code_challenge,
                c.expires_at.0,
                c.family
            ],
        )?;
        Ok(())
    }

    fn redeem_code(&self, hash: &[u8; 32]) -> Result<Redemption<AuthCode>> {
        let conn = self.conn.lock();
        let fresh = conn.execute(
            "UPDATE oauth_codes SET used = 1 WHERE hash = ?1 AND used = 0",
            params![&hash[..]],
        )? == 1;
        let code = conn
            .query_row(
                &format!("SELECT {CODE_COLUMNS} FROM oauth_codes WHERE hash = ?1"),
                params![&hash[..]],
                code_row,
            )
            .optional()?;
        Ok(match (code, fresh) {
            (None, _) => Redemption::Unknown,
            (Some(c), true) => Redemption::Fresh(c),
            (Some(c), false) => Redemption::Reused(c),
        })
    }

    fn put_token(&self, t: &Token) -> Result<()> {
        self.conn.lock().execute(
            &format!("INSERT INTO oauth_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                &t.hash[..],
                t.kind.as_str(),
                t.client_id,
                t.installation.as_ref().map(InstallationId::as_str),
                t.subject,
                scopes_text_with(&t.scopes, &t.account_scopes),
                t.offline_access,
                t.family,
                t.issued_at.0,
                t.expires_at.map(|e| e.0),
                t.revoked,
                t.used
            ],
        )?;
        Ok(())
    }

    fn get_token(&self, hash: &[u8; 32]) -> Result<Option<Token>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE hash = ?1"),
                params![&hash[..]],
                token_row,
            )
            .optional()?)
    }

    fn use_refresh_token(&self, hash: &[u8; 32]) -> Result<Redemption<Token>> {
        let conn = self.conn.lock();
        let fresh = conn.execute(
            "UPDATE oauth_tokens SET used = 1 WHERE hash = ?1 AND kind = 'refresh_token' AND used = 0",
            params![&hash[..]],
        )? == 1;
        let token = conn
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE hash = ?1 AND kind = 'refresh_token'"),
                params![&hash[..]],
                token_row,
            )
            .optional()?;
        Ok(match (token, fresh) {
            (None, _) => Redemption::Unknown,
            (Some(t), true) => Redemption::Fresh(t),
            (Some(t), false) => Redemption::Reused(t),
        })
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool> {
        let n = self.conn.lock().execute(
            "UPDATE oauth_tokens SET revoked = 1 WHERE hash = ?1",
            params![&hash[..]],
        )?;
        Ok(n > 0)
    }

    fn revoke_family(&self, family: &str) -> Result<usize> {
        let n = self.conn.lock().execute(
            "UPDATE oauth_tokens SET revoked = 1 WHERE family = ?1 AND revoked = 0",
            params![family],
        )?;
        Ok(n)
    }

    fn revoke_installation(&self, installation: &InstallationId, client_id: &str) -> Result<usize> {
        let n = self.conn.lock().execute(
            "UPDATE oauth_tokens SET revoked = 1 WHERE installation = ?1 AND client_id = ?2 AND revoked = 0",
            params![installation.as_str(), client_id],
        )?;
        Ok(n)
    }

    fn put_device_code(&self, c: &DeviceCode) -> Result<()> {
        let (decision, subject) = decision_columns(&c.decision);
        self.conn.lock().execute(
            &format!("INSERT INTO oauth_device_codes ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                &c.hash[..],
                c.user_code,
                c.client_id,
                scopes_text_with(&ScopeSet::default(), &c.account_scopes),
                c.offline_access,
                c.expires_at.0,
                c.interval_secs,
                c.last_poll.map(|t| t.0),
                decision,
                subject,
                c.redeemed,
                c.family
            ],
        )?;
        Ok(())
    }

    fn get_device_code(&self, user_code: &str) -> Result<Option<DeviceCode>> {
        Ok(self
            .conn
            .lock()
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM oauth_device_codes WHERE user_code = ?1"),
                params![user_code],
                device_row,
            )
            .optional()?)
    }

    fn decide_device_code(
        &self,
        user_code: &str,
        decision: &DeviceDecision,
        now: Timestamp,
    ) -> Result<bool> {
        let (name, subject) = decision_columns(decision);
        let n = self.conn.lock().execute(
            "UPDATE oauth_device_codes SET decision = ?2, subject = ?3 \
             WHERE user_code = ?1 AND decision = 'pending' AND expires_at > ?4",
            params![user_code, name, subject, now.0],
        )?;
        Ok(n == 1)
    }

    fn poll_device_code(
        &self,
        hash: &[u8; 32],
        client_id: &str,
        now: Timestamp,
    ) -> Result<DevicePoll> {
        let mut conn = self.conn.lock();
        // IMMEDIATE: another process polling the same code waits, so two
        // polls never both redeem it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let code = tx
            .query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM oauth_device_codes WHERE hash = ?1"),
                params![&hash[..]],
                device_row,
            )
            .optional()?;
        let Some(mut code) = code.filter(|c| c.client_id == client_id) else {
            return Ok(DevicePoll::Unknown);
        };
        let poll = poll_step(&mut code, now);
        tx.execute(
            "UPDATE oauth_device_codes SET last_poll = ?2, interval_secs = ?3, redeemed = ?4 WHERE hash = ?1",
            params![&hash[..], code.last_poll.map(|t| t.0), code.interval_secs, code.redeemed],
        )?;
        tx.commit()?;
        Ok(poll)
    }
}
