//! What the authorization server stores: partners, their apps (clients),
//! consents, authorization codes, device codes and tokens. Secrets appear
//! only as hashes.

use std::collections::BTreeSet;

use vodo_core::{InstallationId, Timestamp};
use vodo_scopes::ScopeSet;

/// A scope of a person's own account on the platform, not of a store's
/// data: what a first-party tool such as the `vodo` CLI may do in the
/// name of the developer who signed it in. Granted only through the device
/// authorization grant, to clients registered for it, and never bound to an
/// installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AccountScope {
    /// `marketplace:publish`: submit plugin packages to the marketplace and
    /// read their reviews.
    Publish,
}

impl AccountScope {
    /// Every account scope.
    pub const ALL: [AccountScope; 1] = [AccountScope::Publish];

    /// The scope as written in a `scope` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountScope::Publish => "marketplace:publish",
        }
    }

    /// The scope named `s`, if it is an account scope.
    ///
    /// ```
    /// use vodo_oauth::model::AccountScope;
    ///
    /// assert_eq!(AccountScope::parse("marketplace:publish"), Some(AccountScope::Publish));
    /// assert_eq!(AccountScope::parse("entities:read"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// What it lets the tool do, for the person asked to approve it.
    pub fn describe(self) -> &'static str {
        match self {
            AccountScope::Publish => {
                "Submit plugin packages to the marketplace in your name and read their reviews"
            }
        }
    }
}

impl std::fmt::Display for AccountScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`AccountScope`]s.
pub type AccountScopes = BTreeSet<AccountScope>;

/// A company that builds apps for the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Contact address, told when an endpoint is disabled.
    pub email: String,
    /// When it registered.
    pub created_at: Timestamp,
}

/// Whether a client can keep a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// A back end that authenticates with a secret.
    Confidential,
    /// A native or browser app: no secret, PKCE only.
    Public,
}

impl ClientKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(ClientKind::Confidential),
            "public" => Some(ClientKind::Public),
            _ => None,
        }
    }
}

/// A hash of a client secret, with the time after which it stops working
/// (set on the old secret when a new one is issued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash {
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    /// When it was issued.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
}

/// A partner's app: an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    /// The partner that owns it.
    pub partner_id: String,
    /// Display name, shown on the consent page.
    pub name: String,
    /// Confidential or public.
    pub kind: ClientKind,
    /// Current and, during rotation, previous secret hashes.
    pub secrets: Vec<SecretHash>,
    /// Registered redirect URIs, matched exactly (loopback: any port).
    pub redirect_uris: Vec<String>,
    /// The most this app may ask for.
    pub scopes: ScopeSet,
    /// The account scopes it may ask for with the device grant (first-party
    /// tools only; empty for partner apps).
    pub account_scopes: AccountScopes,
    /// When it was registered.
    pub created_at: Timestamp,
}

/// An installation's consent to an app's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The installation (merchant store) that consented.
    pub installation: InstallationId,
    /// The app.
    pub client_id: String,
    /// What was granted.
    pub scopes: ScopeSet,
    /// Whether refresh tokens may be issued (`offline_access`).
    pub offline_access: bool,
    /// Who consented.
    pub granted_by: String,
    /// When.
    pub granted_at: Timestamp,
}

/// An authorization code, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    /// SHA-256 of the code.
    pub hash: [u8; 32],
    /// The app it was issued to.
    pub client_id: String,
    /// The installation that authorized it.
    pub installation: InstallationId,
    /// The user who authorized it.
    pub subject: String,
    /// The redirect URI of the request, to be repeated at the token endpoint.
    pub redirect_uri: String,
    /// Scopes granted.
    pub scopes: ScopeSet,
    /// Whether a refresh token may be issued.
    pub offline_access: bool,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// When it stops being redeemable.
    pub expires_at: Timestamp,
    /// The token family its tokens belong to (for revocation on reuse).
    pub family: String,
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An access token (`vodo_at_`).
    Access,
    /// A refresh token (`vodo_rt_`).
    Refresh,
}

impl TokenKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "access_token" => Some(TokenKind::Access),
            "refresh_token" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// A token, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Access or refresh.
    pub kind: TokenKind,
    /// The app it was issued to.
    pub client_id: String,
    /// The installation it acts in (none for client credentials).
    pub installation: Option<InstallationId>,
    /// The user, or the client id for client credentials.
    pub subject: String,
    /// Scopes it carries.
    pub scopes: ScopeSet,
    /// Account scopes it carries (device-grant tokens, no installation).
    pub account_scopes: AccountScopes,
    /// Whether refreshes may continue (`offline_access`), for refresh tokens.
    pub offline_access: bool,
    /// All tokens descending from one authorization share a family.
    pub family: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires, if ever.
    pub expires_at: Option<Timestamp>,
    /// Revoked (directly or with its family).
    pub revoked: bool,
    /// For refresh tokens: used once already (rotated).
    pub used: bool,
}

/// Where a device authorization stands (RFC 8628).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Nobody has approved or denied it yet.
    Pending,
    /// `subject` approved it on the verification page.
    Approved {
        /// The user who approved.
        subject: String,
    },
    /// The user denied it.
    Denied,
}

/// A device authorization request, as stored (RFC 8628 section 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    /// SHA-256 of the `device_code` the client polls with.
    pub hash: [u8; 32],
    /// The code the user types, normalized: upper case, without the dash.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// What it asked for.
    pub account_scopes: AccountScopes,
    /// Whether a refresh token was asked for (`offline_access`).
    pub offline_access: bool,
    /// When it stops being usable.
    pub expires_at: Timestamp,
    /// The least time between two polls, in seconds; raised by 5 on each
    /// `slow_down`.
    pub interval_secs: u32,
    /// When the client last polled.
    pub last_poll: Option<Timestamp>,
    /// The user's decision.
    pub decision: DeviceDecision,
    /// Whether tokens were issued for it already.
    pub redeemed: bool,
    /// The token family its tokens belong to.
    pub family: String,
}

/// What one poll of the token endpoint with a device code finds; the store
/// decides it in one atomic step, recording the poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such device code for this client.
    Unknown,
    /// It expired.
    Expired,
    /// Polled sooner than its interval after the previous poll; the interval
    /// is now 5 s longer.
    SlowDown,
    /// Not decided yet.
    Pending,
    /// The user denied it.
    Denied,
    /// Approved, and redeemed by this poll: issue the tokens.
    Approved(DeviceCode),
    /// Approved and redeemed before: a replay.
    Redeemed(DeviceCode),
}
