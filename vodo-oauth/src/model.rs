//! What the authorization server stores: partners, their apps (clients),
//! consents, authorization codes and tokens. Secrets appear only as hashes.

use vodo_core::{InstallationId, Timestamp};
use vodo_scopes::ScopeSet;

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
