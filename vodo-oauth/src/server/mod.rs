//! [`AuthServer`]: the OAuth 2.1 authorization server, request in, response out.
//!
//! Profile (OAuth 2.1 draft and RFC 9700, stricter than Salla where they differ):
//!
//! - authorization code with PKCE, `S256` only, required for every client;
//!   redirect URIs matched exactly, except the port of loopback URIs;
//!   codes single-use, 60 s by default (at most 10 min), and a second
//!   redemption revokes every token issued from the first;
//! - refresh tokens only with `offline_access`, rotated on every use;
//!   presenting a used one revokes its whole family;
//! - client credentials for confidential clients; no implicit or password grant;
//! - revocation (RFC 7009), introspection (RFC 7662), metadata (RFC 8414),
//!   the `iss` authorization response parameter (RFC 9207);
//! - tokens, codes and secrets rest only as SHA-256 hashes; each string
//!   carries a prefix naming its kind (`vodo_at_`, `vodo_rt_`, `vodo_ac_`,
//!   `vodo_cs_`).
//!
//! Scopes are `vodo-scopes` scopes, space-separated, plus `offline_access`.
//!
//! One module per endpoint family: `authorize` (the authorization endpoint
//! and its consent page), `token` (the token endpoint and its grants),
//! `introspection` (revocation, introspection and bearer authentication) and
//! `clients` (partners and their apps); the server, its configuration and
//! the routing are here.

mod authorize;
mod clients;
mod device;
mod introspection;
mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use vodo_core::audit::{AuditAction, AuditEvent, AuditSink, AuditSinkExt as _};
use vodo_core::{Clock, InstallationId, SecretKey, SystemClock, Timestamp};
use vodo_scopes::{PluginScope, ScopeSet};

use crate::crypto::{
    self, ACCESS_PREFIX, CODE_PREFIX, DEVICE_PREFIX, REFRESH_PREFIX, SECRET_PREFIX,
};
use crate::http::{HttpRequest, HttpResponse, escape, params};
use crate::model::{
    AccountScope, AccountScopes, AuthCode, Client, ClientKind, Consent, DeviceCode, DeviceDecision,
    DevicePoll, Partner, SecretHash, Token, TokenKind,
};
use crate::store::{OAuthStore, Redemption};
use crate::{Error, ErrorCode, OAuthError, Result};

/// The scope that allows refresh tokens.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The `grant_type` of the device authorization grant (RFC 8628 section 3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the server behaves. Every default is listed.
#[derive(Debug, Clone)]
pub struct AuthServerConfig {
    /// The issuer identifier, an `https` URL without query or fragment
    /// (`http` only for loopback). Endpoints are served under it.
    pub issuer: String,
    /// Lifetime of access tokens. Default 14 days.
    pub access_token_ttl: Duration,
    /// Lifetime of authorization codes. Default 60 s; at most 10 min.
    pub code_ttl: Duration,
    /// A refresh token unused for this long stops working (each refresh
    /// issues a new one, so this is the longest gap between refreshes).
    /// Default 90 days; `None` for no limit.
    pub refresh_idle_ttl: Option<Duration>,
    /// How long a device authorization request waits for the user's
    /// approval (RFC 8628). Default 10 min; between 1 min and 30 min.
    pub device_code_ttl: Duration,
    /// The least time between two polls of the token endpoint with one
    /// device code. Default 5 s, as RFC 8628 section 3.5 advises.
    pub device_poll_interval: Duration,
}

impl AuthServerConfig {
    /// A configuration for `issuer` with the defaults above.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            access_token_ttl: Duration::from_secs(14 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
            refresh_idle_ttl: Some(Duration::from_secs(90 * 24 * 3600)),
            device_code_ttl: Duration::from_secs(600),
            device_poll_interval: Duration::from_secs(5),
        }
    }
}

/// The signed-in user of the host. A merchant consents to apps on behalf of
/// an installation; anyone signed in (a plugin developer, with no
/// installation) may approve a device authorization of a first-party tool
/// for their own account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The installation (merchant store) the user acts for, if any: the
    /// authorization endpoint needs one, the device verification page does not.
    pub installation: Option<InstallationId>,
    /// The user's id.
    pub user: String,
}

/// A client secret in clear, shown to the partner once. `Debug` is redacted.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, to show once.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([redacted])")
    }
}

/// What a valid access token allows, for a resource server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessInfo {
    /// The app.
    pub client_id: String,
    /// The installation, for user-delegated tokens.
    pub installation: Option<InstallationId>,
    /// The user, or the client id for client credentials.
    pub subject: String,
    /// What the token allows.
    pub scopes: ScopeSet,
    /// What it allows of the subject's own account (device-grant tokens).
    pub account_scopes: AccountScopes,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
}

impl AccessInfo {
    /// `Ok` if the token covers `scope`, else `insufficient_scope`.
    pub fn require(&self, scope: &PluginScope) -> Result<(), OAuthError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                format!("the token does not carry `{scope}`"),
            ))
        }
    }

    /// `Ok` if the token carries the account scope `scope`, else
    /// `insufficient_scope`.
    pub fn require_account(&self, scope: AccountScope) -> Result<(), OAuthError> {
        if self.account_scopes.contains(&scope) {
            Ok(())
        } else {
            Err(OAuthError::new(
                ErrorCode::InsufficientScope,
                format!("the token does not carry `{scope}`: sign in again asking for it"),
            ))
        }
    }
}

/// The authorization server over an [`OAuthStore`].
#[derive(Debug)]
pub struct AuthServer {
    config: AuthServerConfig,
    store: Arc<dyn OAuthStore>,
    clock: Arc<dyn Clock>,
    csrf: ring::hmac::Key,
    audit: Option<Arc<dyn AuditSink>>,
}

/// A `scope` parameter, parsed.
struct Requested {
    /// The vodo (plugin) scopes, which act in a store.
    scopes: ScopeSet,
    /// The account scopes, which act for the user's own account.
    account: AccountScopes,
    /// Whether `offline_access` was asked.
    offline: bool,
}

fn parse_scope(scope: &str) -> Result<Requested, OAuthError> {
    let mut offline = false;
    let mut account = AccountScopes::new();
    let mut scopes = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if s == OFFLINE_ACCESS {
            offline = true;
            continue;
        }
        if let Some(a) = AccountScope::parse(s) {
            account.insert(a);
            continue;
        }
        scopes.push(
            s.parse::<PluginScope>()
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?,
        );
    }
    Ok(Requested {
        scopes: scopes.into_iter().collect(),
        account,
        offline,
    })
}

/// The error for account scopes asked for where only a store's can be granted.
fn account_scope_refused(account: &AccountScopes) -> Result<(), OAuthError> {
    match account.iter().next() {
        None => Ok(()),
        Some(a) => Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!(
                "`{a}` is an account scope: it is granted only through the device authorization grant, to the platform's own tools"
            ),
        )),
    }
}

fn scope_string(scopes: &ScopeSet, account: &AccountScopes, offline: bool) -> String {
    let mut parts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    parts.extend(account.iter().map(ToString::to_string));
    if offline {
        parts.push(OFFLINE_ACCESS.into());
    }
    parts.join(" ")
}

/// Where the authorization server's metadata is (RFC 8414).
const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

fn is_loopback_host(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]" || host == "::1"
}

/// Whether `given` matches `registered`: exactly, or for loopback URIs,
/// exactly but for the port (RFC 8252 §7.3, RFC 9700 §2.1). The comparison
/// is of strings, not of parsed URLs, so that no normalization (`..`,
/// backslashes, `127.1`, `0x7f.0.0.1`) makes two different URIs match.
pub fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    match (split_loopback(registered), split_loopback(given)) {
        (Some((r_host, r_rest)), Some((g_host, g_rest))) => r_host == g_host && r_rest == g_rest,
        _ => false,
    }
}

/// A loopback redirect URI split around its port: `http://127.0.0.1` or
/// `http://[::1]`, then what follows the port (empty, or from `/` or `?`).
/// `None` unless the port is absent or 1 to 5 digits.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let host_end = ["http://127.0.0.1", "http://[::1]"]
        .iter()
        .find(|p| uri.starts_with(**p))?
        .len();
    let (host, after) = uri.split_at(host_end);
    let rest = match after.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=5).contains(&digits) {
                return None;
            }
            &port_and_rest[digits..]
        }
        None => after,
    };
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some((host, rest))
}

/// The credentials of an `Authorization` header under `scheme`, whose name
/// is matched case-insensitively (RFC 7235 section 2.1).
pub(crate) fn credentials<'h>(authorization: &'h str, scheme: &str) -> Option<&'h str> {
    let (name, rest) = authorization.trim_start().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Whether a request's body is a form (`application/x-www-form-urlencoded`,
/// parameters such as `charset` allowed), as the token, revocation and
/// introspection endpoints require (RFC 6749 section 3.2, RFC 7009, RFC 7662).
fn is_form(req: &HttpRequest) -> bool {
    req.header("content-type").is_some_and(|v| {
        v.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

fn check_redirect_uri(uri: &str) -> Result<()> {
    let u =
        url::Url::parse(uri).map_err(|e| Error::Invalid(format!("`{uri}` is not a URL: {e}")))?;
    if u.fragment().is_some() {
        return Err(Error::Invalid(format!(
            "redirect URI `{uri}` has a fragment: remove it"
        )));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if u.host_str().is_some_and(is_loopback_host) => Ok(()),
        "http" => Err(Error::Invalid(format!(
            "redirect URI `{uri}` uses http: use https (http is allowed only for 127.0.0.1 and [::1])"
        ))),
        // Private-use schemes of native apps (RFC 8252 §7.1) need a dot, as in `com.example.app`.
        s if s.contains('.') => Ok(()),
        s => Err(Error::Invalid(format!(
            "redirect URI scheme `{s}` is not allowed: use https, loopback http or a reverse-domain scheme"
        ))),
    }
}

fn redirect_with(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

fn error_json(e: &OAuthError) -> HttpResponse {
    let status = match e.code {
        ErrorCode::InvalidClient => 401,
        ErrorCode::ServerError => 500,
        _ => 400,
    };
    HttpResponse::json(
        status,
        &json!({ "error": e.code.as_str(), "error_description": e.description }),
    )
}

fn server_error(e: Error) -> OAuthError {
    tracing::error!(error = %e, "authorization server store failed");
    OAuthError::new(
        ErrorCode::ServerError,
        "the server could not complete the request",
    )
}

impl AuthServer {
    /// A server with `config` over `store`. `secret` keys the consent
    /// page's anti-forgery tokens.
    pub fn new(
        config: AuthServerConfig,
        store: Arc<dyn OAuthStore>,
        secret: &SecretKey,
    ) -> Result<Self> {
        let issuer = url::Url::parse(&config.issuer)
            .map_err(|e| Error::Invalid(format!("issuer `{}` is not a URL: {e}", config.issuer)))?;
        let loopback = issuer
            .host_str()
            .is_some_and(|h| is_loopback_host(h) || h == "localhost");
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return Err(Error::Invalid(
                "the issuer must be an https URL (http only on loopback)".into(),
            ));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(Error::Invalid("the issuer has no query or fragment".into()));
        }
        if config.code_ttl > Duration::from_secs(600) || config.code_ttl.is_zero() {
            return Err(Error::Invalid(
                "`code_ttl` must be between 1 s and 10 min".into(),
            ));
        }
        if !(60..=1800).contains(&config.device_code_ttl.as_secs()) {
            return Err(Error::Invalid(
                "`device_code_ttl` must be between 1 min and 30 min".into(),
            ));
        }
        if !(1..=60).contains(&config.device_poll_interval.as_secs()) {
            return Err(Error::Invalid(
                "`device_poll_interval` must be between 1 s and 60 s".into(),
            ));
        }
        Ok(Self {
            config: AuthServerConfig {
                issuer: config.issuer.trim_end_matches('/').to_owned(),
                ..config
            },
            store,
            clock: Arc::new(SystemClock),
            csrf: secret.hmac_key(b"vodo oauth csrf v1"),
            audit: None,
        })
    }

    /// Records in `audit` every consent a user gives on the authorization
    /// page ([`AuditAction::AppAccess`] with `change: "granted"`, against
    /// the installation, by the signed-in user), so that the trail shows
    /// who let which app in, beside the host's record of a disconnection.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn OAuthStore> {
        &self.store
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }

    /// The anti-forgery token of a form whose signed fields are `input`
    /// (the consent page's, the device page's).
    fn csrf_tag(&self, input: &str) -> String {
        let tag = ring::hmac::sign(&self.csrf, input.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `token` is [`csrf_tag`](Self::csrf_tag) of `input`.
    fn csrf_matches(&self, token: &str, input: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        ring::hmac::verify(&self.csrf, input.as_bytes(), &tag).is_ok()
    }

    fn base_path(&self) -> String {
        url::Url::parse(&self.config.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    // ---- the protocol -----------------------------------------------------

    /// Serves one request. `session` is the host's signed-in user, needed
    /// only by the authorization endpoint.
    pub fn handle(&self, req: &HttpRequest, session: Option<&Session>) -> HttpResponse {
        let base = self.base_path();
        // RFC 8414 section 3.1: an issuer's path goes after the well-known part.
        if req.method == "GET" && req.path.strip_prefix(METADATA_PATH) == Some(base.as_str()) {
            return self.metadata();
        }
        let path = req.path.strip_prefix(base.as_str()).unwrap_or(&req.path);
        if req.method == "POST"
            && matches!(
                path,
                "/oauth/token"
                    | "/oauth/revoke"
                    | "/oauth/introspect"
                    | "/oauth/device_authorization"
            )
            && !is_form(req)
        {
            return error_json(&OAuthError::new(
                ErrorCode::InvalidRequest,
                "send the parameters as `Content-Type: application/x-www-form-urlencoded`",
            ));
        }
        match (req.method.as_str(), path) {
            // The older place, under the issuer, kept for clients that look there.
            ("GET", METADATA_PATH) => self.metadata(),
            ("GET", "/oauth/authorize") => self.authorize(req.query.as_bytes(), session, false),
            ("POST", "/oauth/authorize") => self.authorize(&req.body, session, true),
            ("POST", "/oauth/token") => self.token(req),
            ("POST", "/oauth/revoke") => self.revoke(req),
            ("POST", "/oauth/introspect") => self.introspect(req),
            ("POST", "/oauth/device_authorization") => self.device_authorization(req),
            ("GET", "/oauth/device") => self.device_page(req.query.as_bytes(), session, false),
            ("POST", "/oauth/device") => self.device_page(&req.body, session, true),
            (
                _,
                "/oauth/token"
                | "/oauth/revoke"
                | "/oauth/introspect"
                | "/oauth/device_authorization",
            ) => error_json(&OAuthError::new(
                ErrorCode::InvalidRequest,
                "use POST with an application/x-www-form-urlencoded body",
            )),
            _ => HttpResponse::json(404, &json!({ "error": "not_found" })),
        }
    }

    fn metadata(&self) -> HttpResponse {
        let mut r = HttpResponse::json(
            200,
            &json!({
                "issuer": self.config.issuer,
                "authorization_endpoint": self.endpoint("/oauth/authorize"),
                "token_endpoint": self.endpoint("/oauth/token"),
                "revocation_endpoint": self.endpoint("/oauth/revoke"),
                "introspection_endpoint": self.endpoint("/oauth/introspect"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "device_authorization_endpoint": self.endpoint("/oauth/device_authorization"),
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", DEVICE_GRANT],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "authorization_response_iss_parameter_supported": true,
                "scopes_supported": std::iter::once(OFFLINE_ACCESS)
                    .chain(AccountScope::ALL.iter().map(|a| a.as_str()))
                    .collect::<Vec<_>>(),
            }),
        );
        r.headers
            .retain(|(n, _)| n != "cache-control" && n != "pragma");
        r.headers
            .push(("cache-control".into(), "public, max-age=3600".into()));
        r
    }

    fn error_page(&self, status: u16, message: &str) -> HttpResponse {
        HttpResponse::html(
            status,
            format!(
                "<!doctype html><html lang=en><meta charset=utf-8><title>Authorization error</title>\
                 <body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto\">\
                 <h1>This authorization request cannot be completed</h1><p>{}</p></body></html>",
                escape(message)
            ),
        )
    }
}
