//! API keys: issued with a recognisable prefix and an offline checksum,
//! stored only as an HMAC, verified in constant time.
//!
//! # Format
//!
//! `vodo_` + 8 characters of key id + 32 characters of secret + 6 characters
//! of checksum, all base62 (`0-9A-Za-z`): 51 characters in all, such as
//! `vodo_3kTq9ZbW...`. The secret holds 190 bits of entropy. The checksum is
//! the CRC-32 of everything before it, so a secret scanner can tell a real
//! leaked key from a random string offline, with the pattern
//! `vodo_[0-9A-Za-z]{46}` and one CRC, without asking the host (the scheme
//! GitHub uses for its tokens). The id is public and names the key in logs,
//! audit records and the UI; the secret is never stored: the store keeps
//! HMAC-SHA256 of it under a key derived from the host's [`SecretKey`].
//!
//! # Life of a key
//!
//! [`ApiKeyManager::issue`] creates a key with scopes and an optional
//! expiry. [`rotate`](ApiKeyManager::rotate) issues its successor and leaves
//! the old key working for a grace period; [`revoke`](ApiKeyManager::revoke)
//! ends a key at once. [`verify`](ApiKeyManager::verify) answers from an
//! in-memory cache after the first use, counts uses and the last-use time in
//! memory, and [`flush_usage`](ApiKeyManager::flush_usage) writes the counts
//! to the store (call it on a timer) and records one `key_used` audit event
//! per key with its count, so the hot path never writes.
//!
//! # Concurrency
//!
//! Every change of a stored key is one conditional write in the store
//! ([`ApiKeyStore::revoke`], [`ApiKeyStore::replace`]) and usage is an
//! increment ([`ApiKeyStore::record_usage`]): a revocation racing a rotation
//! leaves the key revoked, two rotations racing leave one successor, and no
//! use is lost. A revocation through this manager is seen by its next
//! `verify` at once. One made through another manager or process (over the
//! same store) is seen within the cache's staleness bound,
//! [`DEFAULT_KEY_STALENESS`] (1 s) unless
//! [`with_staleness`](ApiKeyManager::with_staleness) sets another: a cached
//! key older than that is read again from the store before it is accepted.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::RwLock;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use vodo_scopes::ScopeSet;
use zeroize::Zeroizing;

use crate::audit::{AuditAction, AuditEvent, AuditSink, AuditSinkExt};
use crate::{Clock, Error, InstallationId, PluginId, Result, SecretKey, SystemClock, Timestamp};

/// How long a manager trusts its cached copy of a key before reading the
/// store again: the longest a revocation made elsewhere can go unseen.
pub const DEFAULT_KEY_STALENESS: Duration = Duration::from_secs(1);

/// The prefix every key starts with.
pub const KEY_PREFIX: &str = "vodo_";
const ID_LEN: usize = 8;
const SECRET_LEN: usize = 32;
const CHECK_LEN: usize = 6;
/// The length of a key string.
pub const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + SECRET_LEN + CHECK_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PURPOSE: &[u8] = b"vodo api key v1";

/// A key in clear, as handed to its owner once. `Debug` prints
/// `[redacted]`; the string is zeroed on drop.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// The key string, to show to its owner once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        &self.0[KEY_PREFIX.len()..KEY_PREFIX.len() + ID_LEN]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({KEY_PREFIX}{}[redacted])", self.id())
    }
}

/// Why a presented key was refused. Exhaustive on purpose: this is the
/// authorization path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not shaped like a Vodo key.
    #[error("not a Vodo API key: {0}; a key is `vodo_` followed by 46 letters and digits")]
    Malformed(&'static str),
    /// Shaped like a key, but the checksum does not match (a typo or a made-up key).
    #[error("the API key's checksum does not match: it was mistyped or truncated; copy it again")]
    BadChecksum,
    /// No such key, or the secret does not match.
    #[error("unknown API key: check that it was copied whole and has not been deleted")]
    Unknown,
    /// The key was revoked.
    #[error("API key `{id}` was revoked: issue a new one")]
    Revoked {
        /// The key's id.
        id: String,
    },
    /// The key expired.
    #[error("API key `{id}` expired: issue a new one")]
    Expired {
        /// The key's id.
        id: String,
    },
    /// The key was rotated and its grace period is over.
    #[error(
        "API key `{id}` was rotated and its grace period is over: use its replacement `{replaced_by}`"
    )]
    Rotated {
        /// The key's id.
        id: String,
        /// The id of the key that replaced it.
        replaced_by: String,
    },
    /// The key store could not answer; the key is refused to fail closed.
    #[error("the API key store is unavailable: {0}")]
    StoreUnavailable(String),
}

/// A key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id (8 base62 characters).
    pub id: String,
    /// HMAC-SHA256 of the secret.
    pub hash: [u8; 32],
    /// The installation the key belongs to.
    pub installation: InstallationId,
    /// The plugin the key acts for.
    pub plugin: PluginId,
    /// A label for people.
    pub name: String,
    /// What the key may do.
    pub scopes: ScopeSet,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// The key that replaced it on rotation.
    pub replaced_by: Option<String>,
    /// Number of successful verifications written to the store.
    pub usage_count: u64,
    /// Last successful verification written to the store.
    pub last_used_at: Option<Timestamp>,
}

/// Where key records live. Shaped for `Arc<dyn ApiKeyStore>`; implementations
/// must pass `conformance::api_key_store` (feature `conformance`).
///
/// ```
/// use vodo_core::keys::{ApiKeyRecord, ApiKeyStore, MemoryKeyStore};
/// use vodo_core::{InstallationId, PluginId, Timestamp};
///
/// let store: Box<dyn ApiKeyStore> = Box::new(MemoryKeyStore::new());
/// let record = ApiKeyRecord {
///     id: "k1".into(),
///     hash: [7; 32],
///     installation: InstallationId::new("shop-1"),
///     plugin: PluginId::new("notifier"),
///     name: "ci".into(),
///     scopes: Default::default(),
///     created_at: Timestamp(0),
///     expires_at: None,
///     revoked_at: None,
///     replaced_by: None,
///     usage_count: 0,
///     last_used_at: None,
/// };
/// store.insert(&record)?;
/// assert!(store.insert(&record).is_err(), "ids are unique");
/// store.record_usage("k1", 3, Timestamp(10))?;
/// assert_eq!(store.get("k1")?.unwrap().usage_count, 3);
/// // Revoking is one conditional write: only the first call revokes.
/// assert!(store.revoke("k1", Timestamp(20))?);
/// assert!(!store.revoke("k1", Timestamp(30))?);
/// assert_eq!(store.get("k1")?.unwrap().revoked_at, Some(Timestamp(20)));
/// # Ok::<(), vodo_core::Error>(())
/// ```
pub trait ApiKeyStore: fmt::Debug + Send + Sync {
    /// Adds a record; fails if the id exists.
    fn insert(&self, record: &ApiKeyRecord) -> Result<()>;
    /// The record with this id.
    fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Sets `revoked_at` to `at` if the key is not revoked yet, in one
    /// conditional write. `Ok(true)` if this call revoked it, `Ok(false)` if
    /// it was revoked already; [`Error::NotFound`] if there is no such key.
    fn revoke(&self, id: &str, at: Timestamp) -> Result<bool>;
    /// Marks the key replaced by `successor` and working until `until` at
    /// the latest (an earlier expiry stays), if it is neither revoked nor
    /// replaced yet, in one conditional write. `Ok(true)` if this call
    /// replaced it, `Ok(false)` if it was revoked or replaced already;
    /// [`Error::NotFound`] if there is no such key.
    fn replace(&self, id: &str, successor: &str, until: Timestamp) -> Result<bool>;
    /// The keys of a plugin in an installation, oldest first.
    fn list(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Vec<ApiKeyRecord>>;
    /// Adds `uses` to the usage count and moves the last-use time forward.
    fn record_usage(&self, id: &str, uses: u64, last_used: Timestamp) -> Result<()>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<T: ApiKeyStore + ?Sized> ApiKeyStore for $ty {
            fn insert(&self, record: &ApiKeyRecord) -> Result<()> { (**self).insert(record) }
            fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>> { (**self).get(id) }
            fn revoke(&self, id: &str, at: Timestamp) -> Result<bool> { (**self).revoke(id, at) }
            fn replace(&self, id: &str, successor: &str, until: Timestamp) -> Result<bool> {
                (**self).replace(id, successor, until)
            }
            fn list(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Vec<ApiKeyRecord>> {
                (**self).list(installation, plugin)
            }
            fn record_usage(&self, id: &str, uses: u64, last_used: Timestamp) -> Result<()> {
                (**self).record_usage(id, uses, last_used)
            }
        }
    )*};
}
forward_store!(&T, Box<T>, Arc<T>);

/// Key records in memory.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    records: RwLock<HashMap<String, ApiKeyRecord>>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ApiKeyStore for MemoryKeyStore {
    fn insert(&self, record: &ApiKeyRecord) -> Result<()> {
        let mut map = self.records.write();
        if map.contains_key(&record.id) {
            return Err(Error::Invalid(format!(
                "API key id `{}` exists already",
                record.id
            )));
        }
        map.insert(record.id.clone(), record.clone());
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self.records.read().get(id).cloned())
    }

    fn revoke(&self, id: &str, at: Timestamp) -> Result<bool> {
        match self.records.write().get_mut(id) {
            Some(r) if r.revoked_at.is_some() => Ok(false),
            Some(r) => {
                r.revoked_at = Some(at);
                Ok(true)
            }
            None => Err(Error::NotFound(format!("no API key `{id}`"))),
        }
    }

    fn replace(&self, id: &str, successor: &str, until: Timestamp) -> Result<bool> {
        match self.records.write().get_mut(id) {
            Some(r) if r.revoked_at.is_some() || r.replaced_by.is_some() => Ok(false),
            Some(r) => {
                r.replaced_by = Some(successor.to_owned());
                r.expires_at = Some(r.expires_at.map_or(until, |t| t.min(until)));
                Ok(true)
            }
            None => Err(Error::NotFound(format!("no API key `{id}`"))),
        }
    }

    fn list(&self, installation: &InstallationId, plugin: &PluginId) -> Result<Vec<ApiKeyRecord>> {
        let mut out: Vec<_> = self
            .records
            .read()
            .values()
            .filter(|r| &r.installation == installation && &r.plugin == plugin)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    fn record_usage(&self, id: &str, uses: u64, last_used: Timestamp) -> Result<()> {
        match self.records.write().get_mut(id) {
            Some(r) => {
                r.usage_count += uses;
                r.last_used_at = r.last_used_at.max(Some(last_used));
                Ok(())
            }
            None => Err(Error::NotFound(format!("no API key `{id}`"))),
        }
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueKey {
    /// The installation the key belongs to.
    pub installation: InstallationId,
    /// The plugin it acts for.
    pub plugin: PluginId,
    /// A label for people.
    pub name: String,
    /// What it may do. Hosts should keep this within the plugin's grant.
    pub scopes: ScopeSet,
    /// How long it works; `None` for no expiry.
    pub ttl: Option<Duration>,
}

/// A key that verified. Cloning it is cheap (reference counts only).
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    /// The key's id.
    pub id: Arc<str>,
    /// Its installation.
    pub installation: InstallationId,
    /// Its plugin.
    pub plugin: PluginId,
    /// What it may do.
    pub scopes: Arc<ScopeSet>,
}

/// A key's cached state: its record as read at `read_at`, and the uses
/// counted since the last flush, which outlive every refresh of the record.
#[derive(Debug)]
struct Cached {
    id: Arc<str>,
    snapshot: RwLock<Arc<Snapshot>>,
    uses: AtomicU64,
    last_used: AtomicI64,
}

/// A key's cached state and the record it holds now.
type CacheHit = (Arc<Cached>, Arc<Snapshot>);

/// A record as the store had it no earlier than `read_at`.
#[derive(Debug)]
struct Snapshot {
    record: ApiKeyRecord,
    scopes: Arc<ScopeSet>,
    read_at: Instant,
}

/// Issues, verifies, rotates and revokes API keys over an [`ApiKeyStore`].
#[derive(Debug)]
pub struct ApiKeyManager {
    store: Arc<dyn ApiKeyStore>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    key: hmac::Key,
    cache: DashMap<String, Arc<Cached>>,
    staleness: Duration,
    rng: SystemRandom,
}

impl ApiKeyManager {
    /// A manager over `store`, hashing under `secret`, auditing to `audit`,
    /// on the system clock.
    pub fn new(store: Arc<dyn ApiKeyStore>, secret: &SecretKey, audit: Arc<dyn AuditSink>) -> Self {
        Self {
            store,
            audit,
            clock: Arc::new(SystemClock),
            key: secret.hmac_key(PURPOSE),
            cache: DashMap::new(),
            staleness: DEFAULT_KEY_STALENESS,
            rng: SystemRandom::new(),
        }
    }

    /// Trusts a cached key for `staleness` before reading the store again
    /// (default [`DEFAULT_KEY_STALENESS`]); `Duration::ZERO` reads the store
    /// on every verification.
    pub fn with_staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn random_base62(&self, out: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        let mut buf = Zeroizing::new([0u8; 64]);
        while filled < out.len() {
            self.rng
                .fill(buf.as_mut())
                .map_err(|_| Error::Invalid("the system random source failed".into()))?;
            // Rejection sampling keeps every character equally likely.
            for b in buf.iter().filter(|b| **b < 248) {
                if filled == out.len() {
                    break;
                }
                out[filled] = ALPHABET[usize::from(*b % 62)];
                filled += 1;
            }
        }
        Ok(())
    }

    /// Issues a new key. The returned [`ApiKey`] is the only copy of the secret.
    pub fn issue(&self, request: IssueKey) -> Result<(ApiKey, ApiKeyRecord)> {
        let (key, record) = self.new_key(request)?;
        self.store.insert(&record)?;
        self.audit_event(
            &record,
            AuditAction::KeyIssued {
                key_id: record.id.clone(),
            },
        );
        Ok((key, record))
    }

    /// A new key and its record, not stored yet.
    fn new_key(&self, request: IssueKey) -> Result<(ApiKey, ApiKeyRecord)> {
        let now = self.clock.now();
        let mut raw = Zeroizing::new([0u8; ID_LEN + SECRET_LEN]);
        self.random_base62(raw.as_mut())?;
        let mut key = Zeroizing::new(String::with_capacity(KEY_LEN));
        key.push_str(KEY_PREFIX);
        key.push_str(
            std::str::from_utf8(raw.as_ref()).map_err(|_| Error::Invalid("key encoding".into()))?,
        );
        let check = base62_checksum(crc32fast::hash(key.as_bytes()));
        key.push_str(
            std::str::from_utf8(&check).map_err(|_| Error::Invalid("key encoding".into()))?,
        );
        let id = key[KEY_PREFIX.len()..KEY_PREFIX.len() + ID_LEN].to_owned();
        let secret = &key[KEY_PREFIX.len() + ID_LEN..KEY_PREFIX.len() + ID_LEN + SECRET_LEN];
        let record = ApiKeyRecord {
            id: id.clone(),
            hash: self.hash(secret.as_bytes()),
            installation: request.installation,
            plugin: request.plugin,
            name: request.name,
            scopes: request.scopes,
            created_at: now,
            expires_at: request.ttl.map(|t| now.plus(t)),
            revoked_at: None,
            replaced_by: None,
            usage_count: 0,
            last_used_at: None,
        };
        Ok((ApiKey(key), record))
    }

    fn hash(&self, secret: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn audit_event(&self, record: &ApiKeyRecord, action: AuditAction) {
        self.audit.record_or_log(
            &AuditEvent::now(action)
                .at(self.clock.now())
                .plugin(&record.plugin)
                .installation(&record.installation),
        );
    }

    /// The key's cached state, read again from the store when it is older
    /// than the staleness bound.
    fn cached(&self, id: &str) -> Result<Option<CacheHit>, KeyError> {
        if let Some(c) = self.cache.get(id).map(|c| Arc::clone(&c)) {
            let snapshot = Arc::clone(&c.snapshot.read());
            if snapshot.read_at.elapsed() < self.staleness {
                return Ok(Some((c, snapshot)));
            }
        }
        let read_at = Instant::now();
        let record = self
            .store
            .get(id)
            .map_err(|e| KeyError::StoreUnavailable(e.to_string()))?;
        match record {
            Some(record) => Ok(Some(self.install(record, read_at))),
            None => {
                self.cache.remove(id);
                Ok(None)
            }
        }
    }

    /// Caches `record`, read from the store no earlier than `read_at`,
    /// unless the cache holds a copy read later: a slow read that began
    /// before a revocation never overwrites the revoked copy.
    fn install(&self, record: ApiKeyRecord, read_at: Instant) -> CacheHit {
        let snapshot = Arc::new(Snapshot {
            scopes: Arc::new(record.scopes.clone()),
            record,
            read_at,
        });
        let id = snapshot.record.id.clone();
        let cached = Arc::clone(
            self.cache
                .entry(id)
                .or_insert_with(|| {
                    Arc::new(Cached {
                        id: snapshot.record.id.as_str().into(),
                        last_used: AtomicI64::new(
                            snapshot.record.last_used_at.map_or(i64::MIN, |t| t.0),
                        ),
                        uses: AtomicU64::new(0),
                        snapshot: RwLock::new(Arc::clone(&snapshot)),
                    })
                })
                .value(),
        );
        let current = {
            let mut current = cached.snapshot.write();
            if current.read_at < snapshot.read_at {
                *current = snapshot;
            }
            Arc::clone(&current)
        };
        (cached, current)
    }

    /// Reads the key again from the store into the cache, after a change.
    fn refresh(&self, id: &str) -> Result<ApiKeyRecord> {
        let read_at = Instant::now();
        let record = self.load(id)?;
        self.install(record.clone(), read_at);
        Ok(record)
    }

    /// Checks a presented key: format, checksum, secret (in constant time),
    /// revocation, expiry and rotation.
    ///
    /// A refused key that was well formed is audited as `key_rejected`.
    pub fn verify(&self, presented: &str) -> Result<VerifiedKey, KeyError> {
        let (id, secret) = parse(presented)?;
        let Some((c, snapshot)) = self.cached(id)? else {
            return Err(KeyError::Unknown);
        };
        let r = &snapshot.record;
        if hmac::verify(&self.key, secret.as_bytes(), &r.hash).is_err() {
            self.reject(r, "secret does not match");
            return Err(KeyError::Unknown);
        }
        let now = self.clock.now();
        if r.revoked_at.is_some() {
            self.reject(r, "revoked");
            return Err(KeyError::Revoked { id: r.id.clone() });
        }
        if r.expires_at.is_some_and(|t| now >= t) {
            self.reject(r, "expired");
            return Err(match &r.replaced_by {
                Some(next) => KeyError::Rotated {
                    id: r.id.clone(),
                    replaced_by: next.clone(),
                },
                None => KeyError::Expired { id: r.id.clone() },
            });
        }
        c.uses.fetch_add(1, Ordering::Relaxed);
        c.last_used.fetch_max(now.0, Ordering::Relaxed);
        Ok(VerifiedKey {
            id: Arc::clone(&c.id),
            installation: r.installation.clone(),
            plugin: r.plugin.clone(),
            scopes: Arc::clone(&snapshot.scopes),
        })
    }

    fn reject(&self, record: &ApiKeyRecord, reason: &str) {
        self.audit_event(
            record,
            AuditAction::KeyRejected {
                key_id: Some(record.id.clone()),
                reason: reason.to_owned(),
            },
        );
    }

    fn load(&self, id: &str) -> Result<ApiKeyRecord> {
        self.store.get(id)?.ok_or_else(|| not_found(id))
    }

    /// Revokes a key at once: in this manager from its next verification,
    /// in others over the same store within their staleness bound.
    pub fn revoke(&self, id: &str) -> Result<()> {
        let revoked = self
            .store
            .revoke(id, self.clock.now())
            .map_err(|e| match e {
                Error::NotFound(_) => not_found(id),
                other => other,
            })?;
        let record = self.refresh(id)?;
        if revoked {
            self.audit_event(
                &record,
                AuditAction::KeyRevoked {
                    key_id: id.to_owned(),
                },
            );
        }
        Ok(())
    }

    /// Issues a successor with the same owner, scopes and lifetime; the old
    /// key keeps working for `grace`, then verifies as
    /// [`KeyError::Rotated`]. Of two rotations racing, one succeeds; the
    /// other, and a rotation racing a revocation that wins, is an error.
    pub fn rotate(&self, id: &str, grace: Duration) -> Result<(ApiKey, ApiKeyRecord)> {
        let old = self.load(id)?;
        refuse_rotation(&old)?;
        let now = self.clock.now();
        let (key, new) = self.new_key(IssueKey {
            installation: old.installation.clone(),
            plugin: old.plugin.clone(),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            ttl: old.expires_at.map(|t| t.since(old.created_at)),
        })?;
        self.store.insert(&new)?;
        let until = now.plus(grace);
        if !self.store.replace(id, &new.id, until)? {
            // Revoked or rotated since it was read: the successor never
            // reached anyone and must not work.
            if let Err(e) = self.store.revoke(&new.id, now) {
                tracing::error!(error = %e, key = %new.id, "could not revoke an orphaned successor key");
            }
            let current = self.refresh(id)?;
            refuse_rotation(&current)?;
            return Err(Error::Invalid(format!(
                "API key `{id}` changed while it was being rotated: try again"
            )));
        }
        self.audit_event(
            &new,
            AuditAction::KeyIssued {
                key_id: new.id.clone(),
            },
        );
        let old = self.refresh(id)?;
        self.audit_event(
            &old,
            AuditAction::KeyRotated {
                key_id: id.to_owned(),
                new_key_id: new.id.clone(),
                old_valid_until: until,
            },
        );
        Ok((key, new))
    }

    /// The keys of a plugin in an installation, with usage not yet flushed included.
    pub fn list(
        &self,
        installation: &InstallationId,
        plugin: &PluginId,
    ) -> Result<Vec<ApiKeyRecord>> {
        let mut records = self.store.list(installation, plugin)?;
        for r in &mut records {
            if let Some(c) = self.cache.get(&r.id) {
                r.usage_count += c.uses.load(Ordering::Relaxed);
                let last = c.last_used.load(Ordering::Relaxed);
                if last != i64::MIN {
                    r.last_used_at = r.last_used_at.max(Some(Timestamp(last)));
                }
            }
        }
        Ok(records)
    }

    /// Writes usage counted since the last flush to the store, and audits one
    /// `key_used` event per key used. Returns the number of keys written.
    pub fn flush_usage(&self) -> Result<usize> {
        let mut written = 0;
        for entry in self.cache.iter() {
            let c = entry.value();
            let uses = c.uses.swap(0, Ordering::Relaxed);
            if uses == 0 {
                continue;
            }
            let last = Timestamp(c.last_used.load(Ordering::Relaxed));
            if let Err(e) = self.store.record_usage(&c.id, uses, last) {
                c.uses.fetch_add(uses, Ordering::Relaxed);
                return Err(e);
            }
            let snapshot = Arc::clone(&c.snapshot.read());
            self.audit_event(
                &snapshot.record,
                AuditAction::KeyUsed {
                    key_id: c.id.to_string(),
                    uses,
                },
            );
            written += 1;
        }
        Ok(written)
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no API key `{id}`: list the keys to find its id"))
}

/// Refuses to rotate a key that is revoked or rotated already.
fn refuse_rotation(record: &ApiKeyRecord) -> Result<()> {
    let id = &record.id;
    if record.revoked_at.is_some() {
        return Err(Error::Invalid(format!(
            "API key `{id}` is revoked: issue a new key instead of rotating it"
        )));
    }
    if let Some(next) = &record.replaced_by {
        return Err(Error::Invalid(format!(
            "API key `{id}` was already rotated: rotate its replacement `{next}`"
        )));
    }
    Ok(())
}

/// Splits a presented key into id and secret after checking shape and checksum.
fn parse(presented: &str) -> Result<(&str, &str), KeyError> {
    let presented = presented.trim();
    let Some(body) = presented.strip_prefix(KEY_PREFIX) else {
        return Err(KeyError::Malformed("it does not start with `vodo_`"));
    };
    if presented.len() != KEY_LEN {
        return Err(KeyError::Malformed("it has the wrong length"));
    }
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyError::Malformed(
            "it contains characters other than letters and digits",
        ));
    }
    let (head, check) = presented.split_at(KEY_LEN - CHECK_LEN);
    if base62_checksum(crc32fast::hash(head.as_bytes())) != check.as_bytes() {
        return Err(KeyError::BadChecksum);
    }
    Ok((&body[..ID_LEN], &body[ID_LEN..ID_LEN + SECRET_LEN]))
}

/// Whether `s` is shaped like a Vodo key with a valid checksum; what a secret
/// scanner runs offline on candidate strings.
pub fn looks_like_key(s: &str) -> bool {
    parse(s).is_ok()
}

fn base62_checksum(mut crc: u32) -> [u8; CHECK_LEN] {
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditKind, MemoryAudit};
    use crate::time::ManualClock;

    fn setup() -> (ApiKeyManager, Arc<MemoryAudit>, ManualClock) {
        let audit = Arc::new(MemoryAudit::new());
        let clock = ManualClock::new(Timestamp(1_000_000));
        let m = ApiKeyManager::new(
            Arc::new(MemoryKeyStore::new()),
            &SecretKey::from_bytes([1; 32]),
            audit.clone(),
        )
        .with_clock(Arc::new(clock.clone()));
        (m, audit, clock)
    }

    fn request(ttl: Option<Duration>) -> IssueKey {
        IssueKey {
            installation: InstallationId::new("shop-1"),
            plugin: PluginId::new("notifier"),
            name: "ci".into(),
            scopes: ["api:access".parse().unwrap()].into_iter().collect(),
            ttl,
        }
    }

    #[test]
    fn issued_keys_verify_and_look_right() {
        let (m, _, _) = setup();
        let (key, record) = m.issue(request(None)).unwrap();
        let s = key.expose_secret();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.starts_with("vodo_"));
        assert!(looks_like_key(s));
        assert_eq!(key.id(), record.id);
        assert!(!format!("{key:?}").contains(&s[13..]));
        let v = m.verify(s).unwrap();
        assert_eq!(v.plugin.as_str(), "notifier");
        assert!(v.scopes.can_access_api());
    }

    #[test]
    fn tampered_keys_are_refused_before_the_store() {
        let (m, _, _) = setup();
        let (key, _) = m.issue(request(None)).unwrap();
        let s = key.expose_secret();
        let mut flipped = s.as_bytes().to_vec();
        flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(m.verify(&flipped).unwrap_err(), KeyError::BadChecksum);
        assert!(matches!(
            m.verify("ghp_abc").unwrap_err(),
            KeyError::Malformed(_)
        ));
        assert!(matches!(
            m.verify(&s[..50]).unwrap_err(),
            KeyError::Malformed(_)
        ));
        assert!(matches!(
            m.verify(&format!("{s}x")).unwrap_err(),
            KeyError::Malformed(_)
        ));
        let unicode = format!("vodo_{}", "é".repeat(23));
        assert!(matches!(
            m.verify(&unicode).unwrap_err(),
            KeyError::Malformed(_)
        ));
    }

    #[test]
    fn a_forged_key_with_a_valid_checksum_is_unknown() {
        let (m, audit, _) = setup();
        let (key, _) = m.issue(request(None)).unwrap();
        // Same id, another secret, checksum recomputed: passes the offline check only.
        let head = format!("{}{}", &key.expose_secret()[..13], "A".repeat(32));
        let forged = format!(
            "{head}{}",
            std::str::from_utf8(&base62_checksum(crc32fast::hash(head.as_bytes()))).unwrap()
        );
        assert!(looks_like_key(&forged));
        assert_eq!(m.verify(&forged).unwrap_err(), KeyError::Unknown);
        assert!(
            audit
                .records()
                .iter()
                .any(|r| r.event.kind() == AuditKind::KeyRejected)
        );
    }

    #[test]
    fn expiry_revocation_and_rotation() {
        let (m, _, clock) = setup();
        let (short, _) = m.issue(request(Some(Duration::from_secs(60)))).unwrap();
        clock.advance(Duration::from_secs(59));
        m.verify(short.expose_secret()).unwrap();
        clock.advance(Duration::from_secs(1));
        assert!(matches!(
            m.verify(short.expose_secret()),
            Err(KeyError::Expired { .. })
        ));

        let (k, rec) = m.issue(request(None)).unwrap();
        m.revoke(&rec.id).unwrap();
        assert!(matches!(
            m.verify(k.expose_secret()),
            Err(KeyError::Revoked { .. })
        ));
        assert!(m.rotate(&rec.id, Duration::from_secs(1)).is_err());

        let (old, old_rec) = m.issue(request(None)).unwrap();
        let (new, new_rec) = m.rotate(&old_rec.id, Duration::from_secs(3600)).unwrap();
        m.verify(old.expose_secret()).unwrap();
        m.verify(new.expose_secret()).unwrap();
        assert!(m.rotate(&old_rec.id, Duration::from_secs(1)).is_err());
        clock.advance(Duration::from_secs(3600));
        assert_eq!(
            m.verify(old.expose_secret()).unwrap_err(),
            KeyError::Rotated {
                id: old_rec.id.clone(),
                replaced_by: new_rec.id.clone()
            }
        );
        m.verify(new.expose_secret()).unwrap();
    }

    #[test]
    fn usage_is_counted_and_flushed() {
        let (m, audit, clock) = setup();
        let (k, rec) = m.issue(request(None)).unwrap();
        for _ in 0..5 {
            m.verify(k.expose_secret()).unwrap();
        }
        clock.advance(Duration::from_secs(5));
        m.verify(k.expose_secret()).unwrap();
        let listed = m.list(&rec.installation, &rec.plugin).unwrap();
        assert_eq!(listed[0].usage_count, 6);
        assert_eq!(m.flush_usage().unwrap(), 1);
        assert_eq!(m.flush_usage().unwrap(), 0);
        let stored = m.store.get(&rec.id).unwrap().unwrap();
        assert_eq!(stored.usage_count, 6);
        assert_eq!(stored.last_used_at, Some(Timestamp(1_005_000)));
        assert!(
            audit
                .records()
                .iter()
                .any(|r| matches!(r.event.action, AuditAction::KeyUsed { uses: 6, .. }))
        );
    }

    /// A store that answers reads late, as a remote database does.
    #[derive(Debug)]
    struct SlowStore {
        inner: MemoryKeyStore,
        delay: Duration,
    }

    impl ApiKeyStore for SlowStore {
        fn insert(&self, record: &ApiKeyRecord) -> Result<()> {
            self.inner.insert(record)
        }
        fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
            let r = self.inner.get(id);
            std::thread::sleep(self.delay);
            r
        }
        fn revoke(&self, id: &str, at: Timestamp) -> Result<bool> {
            std::thread::sleep(self.delay);
            self.inner.revoke(id, at)
        }
        fn replace(&self, id: &str, successor: &str, until: Timestamp) -> Result<bool> {
            std::thread::sleep(self.delay);
            self.inner.replace(id, successor, until)
        }
        fn list(&self, i: &InstallationId, p: &PluginId) -> Result<Vec<ApiKeyRecord>> {
            self.inner.list(i, p)
        }
        fn record_usage(&self, id: &str, uses: u64, last_used: Timestamp) -> Result<()> {
            self.inner.record_usage(id, uses, last_used)
        }
    }

    fn slow_manager() -> (ApiKeyManager, Arc<SlowStore>) {
        let store = Arc::new(SlowStore {
            inner: MemoryKeyStore::new(),
            delay: Duration::from_millis(3),
        });
        let m = ApiKeyManager::new(
            store.clone(),
            &SecretKey::from_bytes([1; 32]),
            Arc::new(MemoryAudit::new()),
        );
        (m, store)
    }

    #[test]
    fn a_revocation_racing_a_rotation_always_lands() {
        let (m, store) = slow_manager();
        for _ in 0..30 {
            let (key, rec) = m.issue(request(None)).unwrap();
            let (revoked, rotated) = std::thread::scope(|s| {
                let a = s.spawn(|| m.revoke(&rec.id));
                let b = s.spawn(|| m.rotate(&rec.id, Duration::from_secs(3600)));
                (a.join().unwrap(), b.join().unwrap())
            });
            assert!(revoked.is_ok(), "{revoked:?}");
            assert!(store.get(&rec.id).unwrap().unwrap().revoked_at.is_some());
            assert!(matches!(
                m.verify(key.expose_secret()),
                Err(KeyError::Revoked { .. })
            ));
            // A rotation that lost leaves no working successor behind.
            if rotated.is_err() {
                let live = m
                    .list(&rec.installation, &rec.plugin)
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.revoked_at.is_none() && r.id != rec.id)
                    .count();
                assert_eq!(live, 0, "an orphaned successor works");
            }
            for r in m.list(&rec.installation, &rec.plugin).unwrap() {
                let _ = m.revoke(&r.id);
            }
        }
    }

    #[test]
    fn of_two_rotations_racing_one_wins() {
        let (m, store) = slow_manager();
        for _ in 0..20 {
            let (_, rec) = m.issue(request(None)).unwrap();
            let results: Vec<_> = std::thread::scope(|s| {
                let a = s.spawn(|| m.rotate(&rec.id, Duration::from_secs(60)));
                let b = s.spawn(|| m.rotate(&rec.id, Duration::from_secs(60)));
                vec![a.join().unwrap(), b.join().unwrap()]
            });
            let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(won.len(), 1, "{results:?}");
            let stored = store.get(&rec.id).unwrap().unwrap();
            assert_eq!(stored.replaced_by.as_deref(), Some(won[0].1.id.as_str()));
            let live: Vec<_> = m
                .list(&rec.installation, &rec.plugin)
                .unwrap()
                .into_iter()
                .filter(|r| r.revoked_at.is_none() && r.replaced_by.is_none())
                .map(|r| r.id)
                .collect();
            assert_eq!(live, [won[0].1.id.clone()], "exactly one live successor");
            m.revoke(&won[0].1.id).unwrap();
        }
    }

    #[test]
    fn no_use_is_lost_to_a_revocation_or_a_rotation() {
        let (m, store) = slow_manager();
        let (key, rec) = m.issue(request(None)).unwrap();
        for _ in 0..5 {
            m.verify(key.expose_secret()).unwrap();
        }
        std::thread::scope(|s| {
            s.spawn(|| m.flush_usage().unwrap());
            s.spawn(|| m.rotate(&rec.id, Duration::from_secs(60)).unwrap());
        });
        for _ in 0..3 {
            m.verify(key.expose_secret()).unwrap();
        }
        std::thread::scope(|s| {
            s.spawn(|| m.flush_usage().unwrap());
            s.spawn(|| m.revoke(&rec.id).unwrap());
        });
        m.flush_usage().unwrap();
        assert_eq!(store.get(&rec.id).unwrap().unwrap().usage_count, 8);
    }

    #[test]
    fn a_first_verification_racing_a_revocation_never_outlives_it() {
        let (m, _) = slow_manager();
        for _ in 0..30 {
            let (key, rec) = m.issue(request(None)).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = m.verify(key.expose_secret());
                });
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(1));
                    m.revoke(&rec.id).unwrap();
                });
            });
            assert!(
                matches!(m.verify(key.expose_secret()), Err(KeyError::Revoked { .. })),
                "a revoked key verified"
            );
        }
    }

    #[test]
    fn a_revocation_through_another_manager_is_seen_within_the_staleness_bound() {
        let store = Arc::new(MemoryKeyStore::new());
        let secret = SecretKey::from_bytes([1; 32]);
        let audit = Arc::new(MemoryAudit::new());
        let bound = Duration::from_millis(50);
        let here = ApiKeyManager::new(store.clone(), &secret, audit.clone()).with_staleness(bound);
        let there = ApiKeyManager::new(store.clone(), &secret, audit.clone());
        let (key, rec) = here.issue(request(None)).unwrap();
        here.verify(key.expose_secret()).unwrap();
        there.revoke(&rec.id).unwrap();
        std::thread::sleep(bound + Duration::from_millis(10));
        assert!(matches!(
            here.verify(key.expose_secret()),
            Err(KeyError::Revoked { .. })
        ));

        // With no staleness allowed, at once.
        let strict =
            ApiKeyManager::new(store.clone(), &secret, audit).with_staleness(Duration::ZERO);
        let (key, rec) = strict.issue(request(None)).unwrap();
        strict.verify(key.expose_secret()).unwrap();
        there.revoke(&rec.id).unwrap();
        assert!(matches!(
            strict.verify(key.expose_secret()),
            Err(KeyError::Revoked { .. })
        ));
    }
}
