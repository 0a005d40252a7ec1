//! The people who sign in: accounts with a role, passwords hashed with
//! Argon2id, server-side sessions and their CSRF tokens, and a sign-in rate
//! limit.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::StatusCode;
use http::header::RETRY_AFTER;
use ring::rand::{SecureRandom, SystemRandom};
use vodo_core::{InstallationId, Timestamp};

use crate::Problem;
use crate::error::ServerError;
use crate::store::{AccountRow, ServerStore, SessionRow};

/// What a person may do. Every route checks it on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Runs the platform: every installation, every key, the whole audit trail.
    Admin,
    /// A merchant: only their own installation's plugins, keys and audit records.
    Merchant(InstallationId),
    /// Reviews marketplace submissions.
    Reviewer,
    /// Builds partner apps and submits plugins.
    Partner,
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Merchant(_) => "merchant",
            Role::Reviewer => "reviewer",
            Role::Partner => "partner",
        }
    }

    fn from_row(role: &str, installation: Option<String>) -> Option<Self> {
        Some(match (role, installation) {
            ("admin", _) => Role::Admin,
            ("merchant", Some(i)) => Role::Merchant(InstallationId::new(i)),
            ("reviewer", _) => Role::Reviewer,
            ("partner", _) => Role::Partner,
            _ => return None,
        })
    }

    /// Whether this role may see and manage `installation`.
    pub fn manages(&self, installation: &InstallationId) -> bool {
        match self {
            Role::Admin => true,
            Role::Merchant(own) => own == installation,
            Role::Reviewer | Role::Partner => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Merchant(i) => write!(f, "merchant of {i}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A signed-in person, as the routes see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Their email, which is their account's name.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// The token every form and every unsafe API request must carry.
    pub csrf: String,
}

/// Why a password was not changed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The current password given is not the account's.
    #[error("the current password is wrong")]
    Wrong,
    /// Too many attempts for this account.
    #[error("too many attempts: wait {} s and try again", .0.as_secs().max(1))]
    Limited(Duration),
    /// The new password is shorter than [`MIN_PASSWORD`].
    #[error("a password needs at least {MIN_PASSWORD} characters")]
    TooShort,
    /// The new password is the current one.
    #[error("the new password is the current one: choose another")]
    Same,
    /// The session ended before the change.
    #[error("the session ended: sign in again")]
    SignedOut,
    /// Another change of the same account won the race.
    #[error("the password was changed meanwhile: sign in again with the new one")]
    ChangedMeanwhile,
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl PasswordError {
    /// The answer to a refused change, for the API and the console.
    pub fn problem(&self) -> Problem {
        let (status, code) = match self {
            Self::Wrong => (StatusCode::FORBIDDEN, "wrong_password"),
            Self::Limited(_) => (StatusCode::TOO_MANY_REQUESTS, "password_limited"),
            Self::TooShort => (StatusCode::UNPROCESSABLE_ENTITY, "password_too_short"),
            Self::Same => (StatusCode::UNPROCESSABLE_ENTITY, "password_unchanged"),
            Self::SignedOut => (StatusCode::UNAUTHORIZED, "signed_out"),
            Self::ChangedMeanwhile => (StatusCode::CONFLICT, "password_changed_meanwhile"),
            Self::Server(e) => return e.problem(),
        };
        let p = Problem::new(status, code, self.to_string());
        match self {
            Self::Limited(wait) => p.header(RETRY_AFTER, wait.as_secs().max(1).into()),
            _ => p,
        }
    }
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The email is unknown or the password wrong (the two are not told apart).
    #[error("the email or the password is wrong")]
    Wrong,
    /// Too many attempts for this account or from this address.
    #[error("too many sign-in attempts: wait {0:?} and try again")]
    Limited(Duration),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// The shortest password an account may have.
pub const MIN_PASSWORD: usize = 12;

/// Accounts and sessions over the server's store.
pub struct Accounts {
    store: Arc<ServerStore>,
    argon: Argon2<'static>,
    random: SystemRandom,
    session_ttl: Duration,
    accounts_limit: DefaultKeyedRateLimiter<String>,
    clients_limit: DefaultKeyedRateLimiter<String>,
    passwords_limit: DefaultKeyedRateLimiter<String>,
    /// A hash to verify against when the email is unknown, so that both
    /// answers take the same time.
    decoy: String,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a session token: the database never holds the token itself.
/// `bytes` random bytes from the system's source, in hex (for ids).
pub(crate) fn random_hex(bytes: usize) -> Result<String, ServerError> {
    let mut b = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ServerError::invalid("the system's random source failed"))?;
    Ok(b.iter().map(|b| format!("{b:02x}")).collect())
}

fn token_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

impl Accounts {
    /// Accounts over `store`. Passwords are hashed with Argon2id at OWASP's
    /// recommended cost (19 MiB, 2 passes); sessions last `session_ttl`;
    /// each account may try to sign in 5 times a minute, and each client
    /// address 30 times (an office behind one address has many people).
    pub fn new(store: Arc<ServerStore>, session_ttl: Duration) -> Result<Self, ServerError> {
        let params = Params::new(19 * 1024, 2, 1, None)
            .map_err(|e| ServerError::invalid(format!("Argon2 parameters: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let per_account = Quota::per_minute(NonZeroU32::MIN.saturating_add(4));
        let per_client = Quota::per_minute(NonZeroU32::MIN.saturating_add(29));
        let mut me = Self {
            store,
            argon,
            random: SystemRandom::new(),
            session_ttl,
            accounts_limit: DefaultKeyedRateLimiter::keyed(per_account),
            clients_limit: DefaultKeyedRateLimiter::keyed(per_client),
            passwords_limit: DefaultKeyedRateLimiter::keyed(per_account),
            decoy: String::new(),
        };
        me.decoy = me.hash(&me.token()?)?;
        Ok(me)
    }

    fn token(&self) -> Result<String, ServerError> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| ServerError::invalid("the system's random source failed"))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    fn hash(&self, password: &str) -> Result<String, ServerError> {
        let mut salt = [0u8; 16];
        self.random
            .fill(&mut salt)
            .map_err(|_| ServerError::invalid("the system's random source failed"))?;
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ServerError::invalid(format!("salt: {e}")))?;
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServerError::invalid(format!("hashing the password: {e}")))
    }

    /// Creates or replaces the account `email` with `role` and `password`
    /// (at least [`MIN_PASSWORD`] characters).
    pub fn put(&self, email: &str, role: &Role, password: &str) -> Result<(), ServerError> {
        let email = email.trim().to_ascii_lowercase();
        if email.is_empty() || email.len() > 254 || !email.contains('@') {
            return Err(ServerError::invalid(format!(
                "`{email}` is not an email address"
            )));
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(ServerError::invalid(format!(
                "a password needs at least {MIN_PASSWORD} characters"
            )));
        }
        self.store.put_account(&AccountRow {
            email,
            role: role.name().into(),
            installation: match role {
                Role::Merchant(i) => Some(i.as_str().to_owned()),
                _ => None,
            },
            password: self.hash(password)?,
        })
    }

    /// A one-time password for a new account: 24 characters from a secure random source.
    pub fn generate_password(&self) -> Result<String, ServerError> {
        Ok(self.token()?.chars().take(24).collect())
    }

    /// Signs `email` in with `password` from the client at `client` (its
    /// address): a new session and the token of its cookie.
    pub fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<(Session, String), SignInError> {
        let email = email.trim().to_ascii_lowercase();
        for (limiter, key) in [
            (&self.accounts_limit, email.clone()),
            (&self.clients_limit, client.to_owned()),
        ] {
            // Keys of made-up emails must not grow the limiter for ever.
            if limiter.len() > 10_000 {
                limiter.retain_recent();
            }
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
                return Err(SignInError::Limited(wait.max(Duration::from_secs(1))));
            }
        }
        let row = self.store.account(&email)?;
        let hash = row.as_ref().map_or(self.decoy.as_str(), |r| &r.password);
        let ok = PasswordHash::new(hash)
            .map(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        let Some(row) = row.filter(|_| ok) else {
            return Err(SignInError::Wrong);
        };
        let role = Role::from_row(&row.role, row.installation).ok_or_else(|| {
            ServerError::invalid(format!("the account `{email}` has an unknown role"))
        })?;
        let token = self.token()?;
        let csrf = self.token()?;
        let ttl = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        self.store.put_session(
            &token_hash(&token),
            &SessionRow {
                email: row.email.clone(),
                csrf: csrf.clone(),
                expires: Timestamp::now().0.saturating_add(ttl),
            },
        )?;
        Ok((
            Session {
                email: row.email,
                role,
                csrf,
            },
            token,
        ))
    }

    /// The role of the account `email` as it is now, if it exists.
    pub fn role_of(&self, email: &str) -> Result<Option<Role>, ServerError> {
        Ok(self
            .store
            .account(&email.trim().to_ascii_lowercase())?
            .and_then(|row| Role::from_row(&row.role, row.installation)))
    }

    /// The live session of a cookie's `token`, if any.
    pub fn session(&self, token: &str) -> Result<Option<Session>, ServerError> {
        if token.len() > 64 {
            return Ok(None);
        }
        let Some(s) = self.store.session(&token_hash(token))? else {
            return Ok(None);
        };
        if s.expires <= Timestamp::now().0 {
            self.store.delete_session(&token_hash(token))?;
            return Ok(None);
        }
        let Some(row) = self.store.account(&s.email)? else {
            return Ok(None);
        };
        Ok(
            Role::from_row(&row.role, row.installation).map(|role| Session {
                email: row.email,
                role,
                csrf: s.csrf,
            }),
        )
    }

    /// Changes the password of the account signed in with `token` from
    /// `current` to `new` (at least [`MIN_PASSWORD`] characters, not the
    /// same), and ends every other session of the account: a password
    /// someone else learnt stops working, and so do the sessions it opened.
    /// Each account may try 5 times a minute, so that a session someone
    /// took cannot be used to guess the password.
    pub fn change_password(
        &self,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<(), PasswordError> {
        let Some(session) = self.session(token)? else {
            return Err(PasswordError::SignedOut);
        };
        let email = session.email;
        if let Err(not_until) = self.passwords_limit.check_key(&email) {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(self.passwords_limit.clock()));
            return Err(PasswordError::Limited(wait.max(Duration::from_secs(1))));
        }
        let Some(row) = self.store.account(&email)? else {
            return Err(PasswordError::SignedOut);
        };
        let ok = PasswordHash::new(&row.password)
            .map(|h| self.argon.verify_password(current.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        if !ok {
            return Err(PasswordError::Wrong);
        }
        if new.chars().count() < MIN_PASSWORD {
            return Err(PasswordError::TooShort);
        }
        if new == current {
            return Err(PasswordError::Same);
        }
        let hash = self.hash(new)?;
        if !self
            .store
            .change_password(&email, &row.password, &hash, &token_hash(token))?
        {
            return Err(PasswordError::ChangedMeanwhile);
        }
        Ok(())
    }

    /// Ends the session of `token`.
    pub fn sign_out(&self, token: &str) -> Result<(), ServerError> {
        self.store.delete_session(&token_hash(token))
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }
}

/// Whether `given` is the session's CSRF token, in constant time.
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    same(session.csrf.as_bytes(), given.as_bytes())
}

/// Whether two byte strings are equal, in time that depends only on their
/// lengths (the tokens compared are of a fixed length).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
