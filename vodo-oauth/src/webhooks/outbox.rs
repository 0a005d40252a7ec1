//! The durable outbox: endpoints, messages, deliveries and the delivery log
//! in SQLite, so that no event is lost when the host stops mid-delivery.
//!
//! An event is written once as a message, with one delivery row per
//! subscribed endpoint, in one transaction. A worker claims a due delivery
//! by moving its next attempt a lease into the future, sends it, and then
//! records the outcome. If the host dies between sending and recording, the
//! lease runs out and the delivery is sent again with the same
//! `webhook-id`, so a receiver that drops duplicates sees it once.

use std::path::Path;
use std::time::Duration;

use parking_lot::Mutex;
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use vodo_core::{InstallationId, SecretKey, Timestamp};
use vodo_scopes::HookPattern;

use super::rules::{Rule, all_match};
use super::sign::{SignatureScheme, WebhookSecret};
use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, url TEXT NOT NULL, secrets BLOB NOT NULL,
    event_types TEXT NOT NULL, rules TEXT NOT NULL, installation TEXT, owner_email TEXT NOT NULL,
    enabled INTEGER NOT NULL, disabled_reason TEXT, failing_since INTEGER, created_at INTEGER NOT NULL,
    scheme TEXT NOT NULL DEFAULT 'standard'
);
CREATE TABLE IF NOT EXISTS webhook_messages (
    id TEXT PRIMARY KEY, event_type TEXT NOT NULL, installation TEXT, body TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_message ON webhook_deliveries (message_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, message_id);
CREATE INDEX IF NOT EXISTS webhook_messages_newest ON webhook_messages (created_at, id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id INTEGER NOT NULL, message_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL, at INTEGER NOT NULL, status INTEGER, latency_ms INTEGER NOT NULL,
    error TEXT, response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_message ON webhook_attempts (message_id, id);
";

/// A URL an app receives webhooks at.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Stable id.
    pub id: String,
    /// The app (OAuth client) that owns it.
    pub client_id: String,
    /// Where to POST.
    pub url: String,
    /// Signing secrets, newest first (several during a rotation).
    pub secrets: Vec<WebhookSecret>,
    /// Event type patterns it subscribes to (`order.*`, `app.installed`).
    pub event_types: Vec<String>,
    /// Conditions every event must meet.
    pub rules: Vec<Rule>,
    /// Only events of this installation, if set.
    pub installation: Option<InstallationId>,
    /// Who is told when the endpoint is disabled.
    pub owner_email: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed.
    pub failing_since: Option<Timestamp>,
    /// When it was added.
    pub created_at: Timestamp,
    /// How its requests are signed; Standard Webhooks unless the owner's
    /// receiver was written for another platform.
    pub scheme: SignatureScheme,
}

impl Endpoint {
    /// Whether this endpoint, enabled, subscribes to an event of
    /// `event_type` in `installation` whose body meets its rules.
    pub fn wants(
        &self,
        event_type: &str,
        installation: Option<&InstallationId>,
        message: &Value,
    ) -> bool {
        self.enabled
            && self.event_types.iter().any(|p| {
                p == event_type || HookPattern::new(p).is_ok_and(|p| p.matches(event_type))
            })
            && self
                .installation
                .as_ref()
                .is_none_or(|i| Some(i) == installation)
            && all_match(&self.rules, message)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer came.
    Delivered,
    /// Every attempt failed, or the endpoint was disabled.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A delivery a worker has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery row.
    pub delivery_id: i64,
    /// The message id, sent as `webhook-id`.
    pub message_id: String,
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The JSON body.
    pub body: String,
    /// When the message was created (`webhook-timestamp` uses the attempt time).
    pub created_at: Timestamp,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// One attempt, as the delivery log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The delivery row.
    pub delivery_id: i64,
    /// The message.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// When.
    pub at: Timestamp,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Time to the answer or the failure.
    pub latency: Duration,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The first bytes of the answer's body.
    pub response: String,
}

/// A message: one event, sent to every endpoint it was enqueued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The id, sent as `webhook-id` (no `.`).
    pub id: String,
    /// The event type.
    pub event_type: String,
    /// The installation the event belongs to, if any.
    pub installation: Option<InstallationId>,
    /// The JSON body, as sent.
    pub body: String,
    /// When it was created.
    pub created_at: Timestamp,
}

impl Message {
    /// Checks the id: not empty and without `.` (the signature's separator).
    pub fn check(&self) -> Result<()> {
        if self.id.is_empty() || self.id.contains('.') {
            return Err(Error::Invalid(
                "a message id is not empty and has no `.`".into(),
            ));
        }
        Ok(())
    }
}

/// Where endpoints, messages, deliveries and the delivery log live.
/// Implementations must pass `conformance::webhook_outbox`; the durable
/// default is [`SqliteOutbox`], and [`MemoryOutbox`](super::MemoryOutbox) serves tests.
///
/// ```
/// use std::time::Duration;
/// use vodo_core::Timestamp;
/// use vodo_oauth::webhooks::{Endpoint, MemoryOutbox, Message, Outbox, SignatureScheme, WebhookSecret};
///
/// let outbox: Box<dyn Outbox> = Box::new(MemoryOutbox::new());
/// let endpoint = Endpoint {
///     id: "ep_1".into(),
///     client_id: "app_1".into(),
///     url: "https://app.example/hooks".into(),
///     secrets: vec![WebhookSecret::generate()?],
///     event_types: vec!["order.*".into()],
///     rules: Vec::new(),
///     installation: None,
///     owner_email: "dev@app.example".into(),
///     enabled: true,
///     disabled_reason: None,
///     failing_since: None,
///     created_at: Timestamp(0),
///     scheme: SignatureScheme::Standard,
/// };
/// outbox.put_endpoint(&endpoint)?;
/// let message = Message {
///     id: "msg_1".into(),
///     event_type: "order.created".into(),
///     installation: None,
///     body: r#"{"id":"1001"}"#.into(),
///     created_at: Timestamp(0),
/// };
/// outbox.enqueue(&message, &["ep_1".to_owned()])?;
/// // A worker claims what is due for a lease; a second worker in that lease gets nothing.
/// let claimed = outbox.claim_due(Timestamp(1), Duration::from_secs(30), 10)?;
/// assert_eq!(claimed.len(), 1);
/// assert_eq!(claimed[0].endpoint.url, "https://app.example/hooks");
/// assert!(outbox.claim_due(Timestamp(2), Duration::from_secs(30), 10)?.is_empty());
/// # Ok::<(), vodo_oauth::Error>(())
/// ```
pub trait Outbox: std::fmt::Debug + Send + Sync {
    /// Adds or replaces an endpoint.
    fn put_endpoint(&self, endpoint: &Endpoint) -> Result<()>;
    /// An endpoint by id.
    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>>;
    /// Every endpoint, enabled or not, by id.
    fn endpoints(&self) -> Result<Vec<Endpoint>>;
    /// Writes a message and a pending delivery to each of `endpoint_ids`,
    /// due at the message's creation time, all or nothing.
    fn enqueue(&self, message: &Message, endpoint_ids: &[String]) -> Result<()>;
    /// Claims up to `limit` due deliveries, oldest first, leasing each for
    /// `lease`: until it runs out, no other claim returns it.
    fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<Claimed>>;
    /// Logs an attempt and moves its delivery on: delivered, retried at
    /// `next` (when `Some`), or failed; `attempts` is the new count.
    fn record(
        &self,
        attempt: &Attempt,
        delivered: bool,
        next: Option<Timestamp>,
        attempts: u32,
    ) -> Result<()>;
    /// Marks an endpoint failing since `since` (kept if already failing), or healthy with `None`.
    fn set_failing(&self, endpoint_id: &str, since: Option<Timestamp>) -> Result<()>;
    /// Disables an endpoint and fails its pending deliveries.
    fn disable(&self, endpoint_id: &str, reason: &str) -> Result<()>;
    /// Sends a message to an endpoint again, with the same id.
    fn redeliver(&self, message_id: &str, endpoint_id: &str, now: Timestamp) -> Result<()>;
    /// The delivery log of a message, oldest attempt first.
    fn attempts(&self, message_id: &str) -> Result<Vec<Attempt>>;
    /// Where each delivery of a message stands: (endpoint, status, attempts).
    fn deliveries(&self, message_id: &str) -> Result<Vec<(String, DeliveryStatus, u32)>>;
    /// The number of deliveries still pending.
    fn pending(&self) -> Result<usize>;
    /// A message by id.
    fn message(&self, id: &str) -> Result<Option<Message>>;
    /// Messages newest first (by creation time, then id): `limit` of them
    /// after skipping `offset`, for a delivery log's pages.
    fn messages(&self, offset: usize, limit: usize) -> Result<Vec<Message>>;

    /// Messages with a delivery to at least one of `endpoints`, newest
    /// first like [`messages`](Self::messages): a partner's delivery log.
    /// The default scans every message; a store with an index on the
    /// deliveries' endpoints should answer from it.
    fn messages_to(
        &self,
        endpoints: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let (mut skipped, mut scanned) = (0, 0);
        loop {
            let batch = self.messages(scanned, 200)?;
            if batch.is_empty() {
                return Ok(out);
            }
            scanned += batch.len();
            for message in batch {
                let sent = self
                    .deliveries(&message.id)?
                    .iter()
                    .any(|(e, _, _)| endpoints.contains(e));
                if !sent {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                out.push(message);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }

    /// The ids of an app's endpoints.
    fn endpoints_of(&self, client_id: &str) -> Result<Vec<String>> {
        Ok(self
            .endpoints()?
            .into_iter()
            .filter(|e| e.client_id == client_id)
            .map(|e| e.id)
            .collect())
    }
}

/// The outbox in SQLite, with endpoint secrets encrypted at rest.
#[derive(Debug)]
pub struct SqliteOutbox {
    conn: Mutex<Connection>,
    seal: aead::LessSafeKey,
}

fn sealing_key(secret: &SecretKey) -> Result<aead::LessSafeKey> {
    let tag = ring::hmac::sign(&secret.hmac_key(b"vodo webhook secrets v1"), b"aes-256-gcm");
    let key = aead::UnboundKey::new(&aead::AES_256_GCM, &tag.as_ref()[..32])
        .map_err(|_| Error::Internal("cannot build the sealing key".into()))?;
    Ok(aead::LessSafeKey::new(key))
}

fn ts(v: i64) -> Timestamp {
    Timestamp(v)
}

impl SqliteOutbox {
    /// Opens (or creates) the outbox at `path`. Endpoint secrets are
    /// encrypted at rest (AES-256-GCM) under a key derived from `secret`.
    pub fn open(path: impl AsRef<Path>, secret: &SecretKey) -> Result<Self> {
        Self::init(vodo_core::open_sqlite(Some(path.as_ref()))?, secret)
    }

    /// An outbox in memory (not durable), for tests.
    pub fn open_in_memory(secret: &SecretKey) -> Result<Self> {
        Self::init(vodo_core::open_sqlite(None)?, secret)
    }

    fn init(conn: Connection, secret: &SecretKey) -> Result<Self> {
        conn.execute_batch(SCHEMA)?;
        // Outboxes made before signature schemes existed gain the column.
        let has_scheme: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('webhook_endpoints') WHERE name = 'scheme'",
            [],
            |r| r.get(0),
        )?;
        if !has_scheme {
            conn.execute_batch(
                "ALTER TABLE webhook_endpoints ADD COLUMN scheme TEXT NOT NULL DEFAULT 'standard'",
            )?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            seal: sealing_key(secret)?,
        })
    }

    fn seal(&self, secrets: &[WebhookSecret]) -> Result<Vec<u8>> {
        let plain: Vec<String> = secrets.iter().map(WebhookSecret::expose_secret).collect();
        let mut data = plain.join("\n").into_bytes();
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Internal("the system random source failed".into()))?;
        self.seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::empty(),
                &mut data,
            )
            .map_err(|_| Error::Internal("cannot seal a webhook secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    fn unseal(&self, sealed: &[u8]) -> Result<Vec<WebhookSecret>> {
        let bad = || {
            Error::Storage(
                "a webhook secret does not decrypt: wrong host key, or the row was changed".into(),
            )
        };
        if sealed.len() < 12 {
            return Err(bad());
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buf = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, aead::Aad::empty(), &mut buf)
            .map_err(|_| bad())?;
        let text = std::str::from_utf8(plain).map_err(|_| bad())?;
        text.lines().map(WebhookSecret::parse).collect()
    }

    fn finish(
        &self,
        delivery_id: i64,
        status: DeliveryStatus,
        attempts: u32,
        next: Timestamp,
    ) -> Result<()> {
        self.conn.lock().execute(
            "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4 WHERE id = ?1",
            params![delivery_id, status.as_str(), attempts, next.0],
        )?;
        Ok(())
    }
}

impl Outbox for SqliteOutbox {
    fn put_endpoint(&self, e: &Endpoint) -> Result<()> {
        let rules =
            serde_json::to_string(&e.rules).map_err(|err| Error::Invalid(err.to_string()))?;
        let sealed = self.seal(&e.secrets)?;
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO webhook_endpoints
             (id, client_id, url, secrets, event_types, rules, installation, owner_email, enabled, disabled_reason, failing_since, created_at, scheme)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                e.id,
                e.client_id,
                e.url,
                sealed,
                e.event_types.join("\n"),
                rules,
                e.installation.as_ref().map(InstallationId::as_str),
                e.owner_email,
                e.enabled,
                e.disabled_reason,
                e.failing_since.map(|t| t.0),
                e.created_at.0,
                e.scheme.as_str()
            ],
        )?;
        Ok(())
    }

    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        let row = self
            .conn
            .lock()
            .query_row(
                "SELECT id, client_id, url, secrets, event_types, rules, installation, owner_email, enabled,
                        disabled_reason, failing_since, created_at, scheme FROM webhook_endpoints WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, bool>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<i64>>(10)?,
                        r.get::<_, i64>(11)?,
                        r.get::<_, String>(12)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            id,
            client_id,
            url,
            sealed,
            types,
            rules,
            inst,
            owner,
            enabled,
            reason,
            failing,
            created,
            scheme,
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(Endpoint {
            id,
            client_id,
            url,
            secrets: self.unseal(&sealed)?,
            event_types: types.lines().map(str::to_owned).collect(),
            rules: serde_json::from_str(&rules).map_err(|e| Error::Storage(Box::new(e)))?,
            installation: inst.map(InstallationId::new),
            owner_email: owner,
            enabled,
            disabled_reason: reason,
            failing_since: failing.map(ts),
            created_at: ts(created),
            scheme: SignatureScheme::parse(&scheme)?,
        }))
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let ids: Vec<String> = {
            let conn = self.conn.lock();
            let mut stmt = conn.prepare_cached("SELECT id FROM webhook_endpoints ORDER BY id")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        ids.iter()
            .filter_map(|id| self.endpoint(id).transpose())
            .collect()
    }

    fn enqueue(&self, message: &Message, endpoint_ids: &[String]) -> Result<()> {
        if message.id.is_empty() || message.id.contains('.') {
            return Err(Error::Invalid(
                "a message id is not empty and has no `.`".into(),
            ));
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO webhook_messages (id, event_type, installation, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                message.id,
                message.event_type,
                message.installation.as_ref().map(InstallationId::as_str),
                message.body,
                message.created_at.0
            ],
        )?;
        for endpoint in endpoint_ids {
            tx.execute(
                "INSERT INTO webhook_deliveries (message_id, endpoint_id, status, attempts, next_attempt_at)
                 VALUES (?1, ?2, 'pending', 0, ?3)",
                params![message.id, endpoint, message.created_at.0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let rows: Vec<(i64, String, String, u32)> = {
            let mut conn = self.conn.lock();
            let tx = conn.transaction()?;
            let rows: Vec<(i64, String, String, u32)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, message_id, endpoint_id, attempts FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
                )?;
                stmt.query_map(
                    params![now.0, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?
                .collect::<rusqlite::Result<_>>()?
            };
            for (id, ..) in &rows {
                tx.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?2 WHERE id = ?1",
                    params![id, now.plus(lease).0],
                )?;
            }
            tx.commit()?;
            rows
        };
        let mut out = Vec::with_capacity(rows.len());
        for (delivery_id, message_id, endpoint_id, attempts) in rows {
            let (body, created): (String, i64) = self.conn.lock().query_row(
                "SELECT body, created_at FROM webhook_messages WHERE id = ?1",
                params![message_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some(endpoint) = self.endpoint(&endpoint_id)? else {
                self.finish(delivery_id, DeliveryStatus::Failed, attempts, now)?;
                continue;
            };
            out.push(Claimed {
                delivery_id,
                message_id,
                endpoint,
                body,
                created_at: ts(created),
                attempts,
            });
        }
        Ok(out)
    }

    fn record(
        &self,
        attempt: &Attempt,
        delivered: bool,
        next: Option<Timestamp>,
        attempts: u32,
    ) -> Result<()> {
        self.conn.lock().execute(
            "INSERT INTO webhook_attempts (delivery_id, message_id, endpoint_id, at, status, latency_ms, error, response)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                attempt.delivery_id,
                attempt.message_id,
                attempt.endpoint_id,
                attempt.at.0,
                attempt.status,
                i64::try_from(attempt.latency.as_millis()).unwrap_or(i64::MAX),
                attempt.error,
                attempt.response
            ],
        )?;
        let status = match (delivered, next) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        self.finish(
            attempt.delivery_id,
            status,
            attempts,
            next.unwrap_or(attempt.at),
        )
    }

    fn set_failing(&self, endpoint_id: &str, since: Option<Timestamp>) -> Result<()> {
        let conn = self.conn.lock();
        match since {
            Some(t) => conn.execute(
                "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, ?2) WHERE id = ?1",
                params![endpoint_id, t.0],
            )?,
            None => conn.execute("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?1", params![endpoint_id])?,
        };
        Ok(())
    }

    fn disable(&self, endpoint_id: &str, reason: &str) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?2 WHERE id = ?1",
            params![endpoint_id, reason],
        )?;
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = ?1 AND status = 'pending'",
            params![endpoint_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn redeliver(&self, message_id: &str, endpoint_id: &str, now: Timestamp) -> Result<()> {
        let conn = self.conn.lock();
        let exists: bool = conn
            .query_row(
                "SELECT 1 FROM webhook_messages WHERE id = ?1",
                params![message_id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if !exists {
            return Err(Error::NotFound(format!(
                "no webhook message `{message_id}`"
            )));
        }
        conn.execute(
            "INSERT INTO webhook_deliveries (message_id, endpoint_id, status, attempts, next_attempt_at)
             VALUES (?1, ?2, 'pending', 0, ?3)",
            params![message_id, endpoint_id, now.0],
        )?;
        Ok(())
    }

    fn attempts(&self, message_id: &str) -> Result<Vec<Attempt>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT delivery_id, message_id, endpoint_id, at, status, latency_ms, error, response
             FROM webhook_attempts WHERE message_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![message_id], |r| {
                Ok(Attempt {
                    delivery_id: r.get(0)?,
                    message_id: r.get(1)?,
                    endpoint_id: r.get(2)?,
                    at: ts(r.get(3)?),
                    status: r.get(4)?,
                    latency: Duration::from_millis(u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0)),
                    error: r.get(6)?,
                    response: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn deliveries(&self, message_id: &str) -> Result<Vec<(String, DeliveryStatus, u32)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT endpoint_id, status, attempts FROM webhook_deliveries WHERE message_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![message_id], |r| {
                Ok((
                    r.get(0)?,
                    DeliveryStatus::parse(&r.get::<_, String>(1)?),
                    r.get(2)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn message(&self, id: &str) -> Result<Option<Message>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_type, installation, body, created_at FROM webhook_messages WHERE id = ?1",
        )?;
        Ok(stmt.query_row(params![id], message_row).optional()?)
    }

    fn messages(&self, offset: usize, limit: usize) -> Result<Vec<Message>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_type, installation, body, created_at FROM webhook_messages
             ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2",
        )?;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![count(limit), count(offset)], message_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn messages_to(
        &self,
        endpoints: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let ids = serde_json::to_string(endpoints)
            .map_err(|e| Error::Internal(format!("cannot list endpoint ids: {e}")))?;
        let conn = self.conn.lock();
        // From the deliveries' endpoint index to the messages, so that a
        // partner's page reads their own messages only.
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_type, installation, body, created_at FROM webhook_messages
             WHERE id IN (SELECT d.message_id FROM webhook_deliveries d
                          WHERE d.endpoint_id IN (SELECT value FROM json_each(?1)))
             ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![ids, count(limit), count(offset)], message_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn pending(&self) -> Result<usize> {
        let n: i64 = self.conn.lock().query_row(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let installation: Option<String> = r.get(2)?;
    Ok(Message {
        id: r.get(0)?,
        event_type: r.get(1)?,
        installation: installation.map(InstallationId::new),
        body: r.get(3)?,
        created_at: ts(r.get(4)?),
    })
}
