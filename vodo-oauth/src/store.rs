//! [`OAuthStore`]: where partners, apps, consents, codes and tokens live,
//! with [`MemoryStore`] beside it (and [`SqliteStore`](crate::SqliteStore)).
//!
//! The two operations that decide security, redeeming a code and using a
//! refresh token, are single atomic steps of the store: "mark used and tell
//! me whether it already was". Two racing requests can then never both get
//! a fresh answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use vodo_core::{InstallationId, Timestamp};

use crate::Result;
use crate::model::{
    AuthCode, Client, Consent, DeviceCode, DeviceDecision, DevicePoll, Partner, Token, TokenKind,
};

/// The outcome of redeeming a code or using a refresh token. A token comes
/// back as stored after the call, that is, marked used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption<T> {
    /// First use: it is now marked used.
    Fresh(T),
    /// It was used before: a replay.
    Reused(T),
    /// No such code or token.
    Unknown,
}

/// Storage of the authorization server. Implementations must pass
/// `conformance::oauth_store` (feature `conformance`).
///
/// ```
/// use vodo_core::{InstallationId, Timestamp};
/// use vodo_oauth::model::{Consent, Partner};
/// use vodo_oauth::{MemoryStore, OAuthStore};
///
/// let store: Box<dyn OAuthStore> = Box::new(MemoryStore::new());
/// store.put_partner(&Partner {
///     id: "ptn_1".into(),
///     name: "Acme".into(),
///     email: "dev@acme.example".into(),
///     created_at: Timestamp(0),
/// })?;
/// let shop = InstallationId::new("shop-1");
/// store.put_consent(&Consent {
///     installation: shop.clone(),
///     client_id: "app_1".into(),
///     scopes: ["entities:read:order".parse()?].into_iter().collect(),
///     offline_access: false,
///     granted_by: "owner".into(),
///     granted_at: Timestamp(0),
/// })?;
/// assert_eq!(store.list_consents(&shop)?.len(), 1);
/// // Redeeming is "mark used and tell me whether it was": a code never seen is Unknown.
/// assert_eq!(store.redeem_code(&[0; 32])?, vodo_oauth::Redemption::Unknown);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait OAuthStore: fmt::Debug + Send + Sync {
    /// Inserts or replaces a partner.
    fn put_partner(&self, partner: &Partner) -> Result<()>;
    /// A partner by id.
    fn get_partner(&self, id: &str) -> Result<Option<Partner>>;
    /// Inserts or replaces a client.
    fn put_client(&self, client: &Client) -> Result<()>;
    /// A client by id.
    fn get_client(&self, id: &str) -> Result<Option<Client>>;
    /// A partner's clients, by id.
    fn list_clients(&self, partner_id: &str) -> Result<Vec<Client>>;
    /// Deletes a client, its consents and tokens; whether it existed.
    fn delete_client(&self, id: &str) -> Result<bool>;
    /// Inserts or replaces a consent.
    fn put_consent(&self, consent: &Consent) -> Result<()>;
    /// The consent of an installation to a client.
    fn get_consent(
        &self,
        installation: &InstallationId,
        client_id: &str,
    ) -> Result<Option<Consent>>;
    /// Removes a consent; whether it existed.
    fn delete_consent(&self, installation: &InstallationId, client_id: &str) -> Result<bool>;
    /// Every consent `installation` has given, by app id.
    fn list_consents(&self, installation: &InstallationId) -> Result<Vec<Consent>>;
    /// Stores a new code.
    fn put_code(&self, code: &AuthCode) -> Result<()>;
    /// Marks a code used, atomically, and says whether it was fresh.
    fn redeem_code(&self, hash: &[u8; 32]) -> Result<Redemption<AuthCode>>;
    /// Stores a new token.
    fn put_token(&self, token: &Token) -> Result<()>;
    /// A token by hash.
    fn get_token(&self, hash: &[u8; 32]) -> Result<Option<Token>>;
    /// Marks a refresh token used, atomically, and says whether it was fresh.
    fn use_refresh_token(&self, hash: &[u8; 32]) -> Result<Redemption<Token>>;
    /// Revokes one token; whether it existed.
    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool>;
    /// Revokes every token of a family; how many were still active.
    fn revoke_family(&self, family: &str) -> Result<usize>;
    /// Revokes every token an app holds for an installation; how many were still active.
    fn revoke_installation(&self, installation: &InstallationId, client_id: &str) -> Result<usize>;
    /// Stores a new device authorization request.
    fn put_device_code(&self, code: &DeviceCode) -> Result<()>;
    /// The device authorization request whose normalized user code is `user_code`.
    fn get_device_code(&self, user_code: &str) -> Result<Option<DeviceCode>>;
    /// Records the user's decision on a pending, unexpired request, in one
    /// atomic step; `false` if it was decided before, expired or unknown.
    fn decide_device_code(
        &self,
        user_code: &str,
        decision: &DeviceDecision,
        now: Timestamp,
    ) -> Result<bool>;
    /// One poll by `client_id` with the device code hashed to `hash`, at
    /// `now`: recorded, and decided as [`poll_step`] does, in one atomic step.
    fn poll_device_code(
        &self,
        hash: &[u8; 32],
        client_id: &str,
        now: Timestamp,
    ) -> Result<DevicePoll>;
}

/// What a poll finds and does to a stored device code: every store applies
/// this one rule inside its atomic step. A redeemed code is a replay; an
/// expired one stays expired; a poll sooner than the interval after the
/// last one raises the interval by 5 s (RFC 8628 section 3.5); an approved
/// code is redeemed.
pub fn poll_step(code: &mut DeviceCode, now: Timestamp) -> DevicePoll {
    if code.redeemed {
        return DevicePoll::Redeemed(code.clone());
    }
    if now >= code.expires_at {
        return DevicePoll::Expired;
    }
    let interval = std::time::Duration::from_secs(u64::from(code.interval_secs));
    let too_soon = code.last_poll.is_some_and(|t| now.since(t) < interval);
    code.last_poll = Some(now);
    if too_soon {
        code.interval_secs = code.interval_secs.saturating_add(5);
        return DevicePoll::SlowDown;
    }
    match code.decision {
        DeviceDecision::Pending => DevicePoll::Pending,
        DeviceDecision::Denied => DevicePoll::Denied,
        DeviceDecision::Approved { .. } => {
            code.redeemed = true;
            DevicePoll::Approved(code.clone())
        }
    }
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        impl<T: OAuthStore + ?Sized> OAuthStore for $ty {
            fn put_partner(&self, p: &Partner) -> Result<()> { (**self).put_partner(p) }
            fn get_partner(&self, id: &str) -> Result<Option<Partner>> { (**self).get_partner(id) }
            fn put_client(&self, c: &Client) -> Result<()> { (**self).put_client(c) }
            fn get_client(&self, id: &str) -> Result<Option<Client>> { (**self).get_client(id) }
            fn list_clients(&self, p: &str) -> Result<Vec<Client>> { (**self).list_clients(p) }
            fn delete_client(&self, id: &str) -> Result<bool> { (**self).delete_client(id) }
            fn put_consent(&self, c: &Consent) -> Result<()> { (**self).put_consent(c) }
            fn get_consent(&self, i: &InstallationId, c: &str) -> Result<Option<Consent>> { (**self).get_consent(i, c) }
            fn delete_consent(&self, i: &InstallationId, c: &str) -> Result<bool> { (**self).delete_consent(i, c) }
            fn list_consents(&self, i: &InstallationId) -> Result<Vec<Consent>> { (**self).list_consents(i) }
            fn put_code(&self, c: &AuthCode) -> Result<()> { (**self).put_code(c) }
            fn redeem_code(&self, h: &[u8; 32]) -> Result<Redemption<AuthCode>> { (**self).redeem_code(h) }
            fn put_token(&self, t: &Token) -> Result<()> { (**self).put_token(t) }
            fn get_token(&self, h: &[u8; 32]) -> Result<Option<Token>> { (**self).get_token(h) }
            fn use_refresh_token(&self, h: &[u8; 32]) -> Result<Redemption<Token>> { (**self).use_refresh_token(h) }
            fn revoke_token(&self, h: &[u8; 32]) -> Result<bool> { (**self).revoke_token(h) }
            fn revoke_family(&self, f: &str) -> Result<usize> { (**self).revoke_family(f) }
            fn revoke_installation(&self, i: &InstallationId, c: &str) -> Result<usize> { (**self).revoke_installation(i, c) }
            fn put_device_code(&self, c: &DeviceCode) -> Result<()> { (**self).put_device_code(c) }
            fn get_device_code(&self, u: &str) -> Result<Option<DeviceCode>> { (**self).get_device_code(u) }
            fn decide_device_code(&self, u: &str, d: &DeviceDecision, n: Timestamp) -> Result<bool> { (**self).decide_device_code(u, d, n) }
            fn poll_device_code(&self, h: &[u8; 32], c: &str, n: Timestamp) -> Result<DevicePoll> { (**self).poll_device_code(h, c, n) }
        }
    )*};
}
forward!(&T, Box<T>, Arc<T>);

#[derive(Debug, Default)]
struct Inner {
    partners: HashMap<String, Partner>,
    clients: HashMap<String, Client>,
    consents: HashMap<(InstallationId, String), Consent>,
    codes: HashMap<[u8; 32], (AuthCode, bool)>,
    tokens: HashMap<[u8; 32], Token>,
    /// Device codes by the hash of their device code.
    devices: HashMap<[u8; 32], DeviceCode>,
}

/// Everything in memory, for tests and embedding.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl OAuthStore for MemoryStore {
    fn put_partner(&self, p: &Partner) -> Result<()> {
        self.inner.lock().partners.insert(p.id.clone(), p.clone());
        Ok(())
    }

    fn get_partner(&self, id: &str) -> Result<Option<Partner>> {
        Ok(self.inner.lock().partners.get(id).cloned())
    }

    fn put_client(&self, c: &Client) -> Result<()> {
        self.inner.lock().clients.insert(c.id.clone(), c.clone());
        Ok(())
    }

    fn get_client(&self, id: &str) -> Result<Option<Client>> {
        Ok(self.inner.lock().clients.get(id).cloned())
    }

    fn list_clients(&self, partner_id: &str) -> Result<Vec<Client>> {
        let mut out: Vec<Client> = self
            .inner
            .lock()
            .clients
            .values()
            .filter(|c| c.partner_id == partner_id)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn delete_client(&self, id: &str) -> Result<bool> {
        let mut inner = self.inner.lock();
        let existed = inner.clients.remove(id).is_some();
        inner.consents.retain(|(_, c), _| c != id);
        inner.tokens.retain(|_, t| t.client_id != id);
        inner.codes.retain(|_, (c, _)| c.client_id != id);
        inner.devices.retain(|_, d| d.client_id != id);
        Ok(existed)
    }

    fn put_consent(&self, c: &Consent) -> Result<()> {
        self.inner
            .lock()
            .consents
            .insert((c.installation.clone(), c.client_id.clone()), c.clone());
        Ok(())
    }

    fn get_consent(
        &self,
        installation: &InstallationId,
        client_id: &str,
    ) -> Result<Option<Consent>> {
        Ok(self
            .inner
            .lock()
            .consents
            .get(&(installation.clone(), client_id.to_owned()))
            .cloned())
    }

    fn delete_consent(&self, installation: &InstallationId, client_id: &str) -> Result<bool> {
        Ok(self
            .inner
            .lock()
            .consents
            .remove(&(installation.clone(), client_id.to_owned()))
            .is_some())
    }

    fn list_consents(&self, installation: &InstallationId) -> Result<Vec<Consent>> {
        let mut out: Vec<Consent> = self
            .inner
            .lock()
            .consents
            .values()
            .filter(|c| &c.installation == installation)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }

    fn put_code(&self, code: &AuthCode) -> Result<()> {
        self.inner
            .lock()
            .codes
            .insert(code.hash, (code.clone(), false));
        Ok(())
    }

    fn redeem_code(&self, hash: &[u8; 32]) -> Result<Redemption<AuthCode>> {
        let mut inner = self.inner.lock();
        Ok(match inner.codes.get_mut(hash) {
            None => Redemption::Unknown,
            Some((code, used)) if *used => Redemption::Reused(code.clone()),
            Some((code, used)) => {
                *used = true;
                Redemption::Fresh(code.clone())
            }
        })
    }

    fn put_token(&self, t: &Token) -> Result<()> {
        self.inner.lock().tokens.insert(t.hash, t.clone());
        Ok(())
    }

    fn get_token(&self, hash: &[u8; 32]) -> Result<Option<Token>> {
        Ok(self.inner.lock().tokens.get(hash).cloned())
    }

    fn use_refresh_token(&self, hash: &[u8; 32]) -> Result<Redemption<Token>> {
        let mut inner = self.inner.lock();
        Ok(match inner.tokens.get_mut(hash) {
            Some(t) if t.kind == TokenKind::Refresh => {
                if t.used {
                    Redemption::Reused(t.clone())
                } else {
                    t.used = true;
                    Redemption::Fresh(t.clone())
                }
            }
            _ => Redemption::Unknown,
        })
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(match self.inner.lock().tokens.get_mut(hash) {
            Some(t) => {
                t.revoked = true;
                true
            }
            None => false,
        })
    }

    fn revoke_family(&self, family: &str) -> Result<usize> {
        let mut inner = self.inner.lock();
        let mut n = 0;
        for t in inner
            .tokens
            .values_mut()
            .filter(|t| t.family == family && !t.revoked)
        {
            t.revoked = true;
            n += 1;
        }
        Ok(n)
    }

    fn revoke_installation(&self, installation: &InstallationId, client_id: &str) -> Result<usize> {
        let mut inner = self.inner.lock();
        let mut n = 0;
        for t in inner.tokens.values_mut().filter(|t| {
            !t.revoked && t.client_id == client_id && t.installation.as_ref() == Some(installation)
        }) {
            t.revoked = true;
            n += 1;
        }
        Ok(n)
    }

    fn put_device_code(&self, code: &DeviceCode) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner
            .devices
            .values()
            .any(|d| d.user_code == code.user_code)
        {
            return Err(crate::Error::Invalid(format!(
                "user code `{}` is in use",
                code.user_code
            )));
        }
        inner.devices.insert(code.hash, code.clone());
        Ok(())
    }

    fn get_device_code(&self, user_code: &str) -> Result<Option<DeviceCode>> {
        Ok(self
            .inner
            .lock()
            .devices
            .values()
            .find(|d| d.user_code == user_code)
            .cloned())
    }

    fn decide_device_code(
        &self,
        user_code: &str,
        decision: &DeviceDecision,
        now: Timestamp,
    ) -> Result<bool> {
        let mut inner = self.inner.lock();
        Ok(
            match inner
                .devices
                .values_mut()
                .find(|d| d.user_code == user_code)
            {
                Some(d) if d.decision == DeviceDecision::Pending && now < d.expires_at => {
                    d.decision = decision.clone();
                    true
                }
                _ => false,
            },
        )
    }

    fn poll_device_code(
        &self,
        hash: &[u8; 32],
        client_id: &str,
        now: Timestamp,
    ) -> Result<DevicePoll> {
        let mut inner = self.inner.lock();
        Ok(match inner.devices.get_mut(hash) {
            Some(d) if d.client_id == client_id => poll_step(d, now),
            _ => DevicePoll::Unknown,
        })
    }
}
