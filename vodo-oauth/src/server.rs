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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use vodo_core::{Clock, InstallationId, SecretKey, SystemClock, Timestamp};
use vodo_scopes::{PluginScope, ScopeSet};

use crate::crypto::{self, ACCESS_PREFIX, CODE_PREFIX, REFRESH_PREFIX, SECRET_PREFIX};
use crate::http::{HttpRequest, HttpResponse, escape, params};
use crate::model::{AuthCode, Client, ClientKind, Consent, Partner, SecretHash, Token, TokenKind};
use crate::store::{OAuthStore, Redemption};
use crate::{Error, ErrorCode, OAuthError, Result};

/// The scope that allows refresh tokens.
pub const OFFLINE_ACCESS: &str = "offline_access";

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
}

impl AuthServerConfig {
    /// A configuration for `issuer` with the defaults above.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            access_token_ttl: Duration::from_secs(14 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
            refresh_idle_ttl: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

/// The signed-in user of the host, who consents on behalf of an installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The installation (merchant store) the user acts for.
    pub installation: InstallationId,
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
}

/// The authorization server over an [`OAuthStore`].
#[derive(Debug)]
pub struct AuthServer {
    config: AuthServerConfig,
    store: Arc<dyn OAuthStore>,
    clock: Arc<dyn Clock>,
    csrf: ring::hmac::Key,
}

/// Requested scopes: the vodo scopes and whether `offline_access` was asked.
fn parse_scope(scope: &str) -> Result<(ScopeSet, bool), OAuthError> {
    let mut offline = false;
    let mut scopes = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if s == OFFLINE_ACCESS {
            offline = true;
            continue;
        }
        scopes.push(
            s.parse::<PluginScope>()
                .map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.to_string()))?,
        );
    }
    Ok((scopes.into_iter().collect(), offline))
}

fn scope_string(scopes: &ScopeSet, offline: bool) -> String {
    let mut parts: Vec<String> = scopes.iter().map(ToString::to_string).collect();
    if offline {
        parts.push(OFFLINE_ACCESS.into());
    }
    parts.join(" ")
}

fn is_loopback_host(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]" || host == "::1"
}

/// Whether `given` matches `registered`: exactly, or for loopback URIs,
/// exactly but for the port (RFC 8252 §7.3, RFC 9700 §2.1).
pub fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (url::Url::parse(registered), url::Url::parse(given)) else {
        return false;
    };
    r.scheme() == "http"
        && g.scheme() == "http"
        && r.host_str().is_some_and(is_loopback_host)
        && r.host_str() == g.host_str()
        && r.path() == g.path()
        && r.query() == g.query()
        && r.fragment().is_none()
        && g.fragment().is_none()
        && g.username().is_empty()
        && g.password().is_none()
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

/// An authorization request after its client and redirect URI were checked.
struct AuthorizeRequest {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    scopes: ScopeSet,
    offline: bool,
    challenge: String,
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
        Ok(Self {
            config: AuthServerConfig {
                issuer: config.issuer.trim_end_matches('/').to_owned(),
                ..config
            },
            store,
            clock: Arc::new(SystemClock),
            csrf: secret.hmac_key(b"vodo oauth csrf v1"),
        })
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

    fn base_path(&self) -> String {
        url::Url::parse(&self.config.issuer)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default()
    }

    // ---- management -------------------------------------------------------

    /// Registers a partner.
    pub fn register_partner(&self, name: &str, email: &str) -> Result<Partner> {
        if name.trim().is_empty() || !email.contains('@') {
            return Err(Error::Invalid(
                "a partner needs a name and a contact email".into(),
            ));
        }
        let partner = Partner {
            id: crypto::random_id("ptn_")?,
            name: name.trim().to_owned(),
            email: email.trim().to_owned(),
            created_at: self.clock.now(),
        };
        self.store.put_partner(&partner)?;
        Ok(partner)
    }

    /// Registers an app of `partner_id`. Confidential apps get a secret,
    /// returned once.
    pub fn register_client(
        &self,
        partner_id: &str,
        name: &str,
        kind: ClientKind,
        redirect_uris: &[&str],
        scopes: ScopeSet,
    ) -> Result<(Client, Option<ClientSecret>)> {
        if self.store.get_partner(partner_id)?.is_none() {
            return Err(Error::NotFound(format!(
                "no partner `{partner_id}`: register the partner first"
            )));
        }
        if name.trim().is_empty() {
            return Err(Error::Invalid("an app needs a name".into()));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        let secret = match kind {
            ClientKind::Confidential => Some(ClientSecret(crypto::random_token(SECRET_PREFIX)?)),
            ClientKind::Public => None,
        };
        let now = self.clock.now();
        let client = Client {
            id: crypto::random_id("app_")?,
            partner_id: partner_id.to_owned(),
            name: name.trim().to_owned(),
            kind,
            secrets: secret
                .iter()
                .map(|s| SecretHash {
                    hash: crypto::hash(&s.0),
                    created_at: now,
                    expires_at: None,
                })
                .collect(),
            redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
            scopes,
            created_at: now,
        };
        self.store.put_client(&client)?;
        Ok((client, secret))
    }

    /// Changes an app's redirect URIs and the most it may ask for. Existing
    /// consents and tokens keep their scopes; new authorizations are checked
    /// against the new registration.
    pub fn update_client(
        &self,
        client_id: &str,
        redirect_uris: &[&str],
        scopes: ScopeSet,
    ) -> Result<Client> {
        let mut client = self
            .store
            .get_client(client_id)?
            .ok_or_else(|| Error::NotFound(format!("no app `{client_id}`")))?;
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        client.redirect_uris = redirect_uris.iter().map(|s| (*s).to_owned()).collect();
        client.scopes = scopes;
        self.store.put_client(&client)?;
        Ok(client)
    }

    /// Issues a new secret for a confidential app; the current ones keep
    /// working for `grace`, then stop.
    pub fn rotate_secret(&self, client_id: &str, grace: Duration) -> Result<ClientSecret> {
        let mut client = self
            .store
            .get_client(client_id)?
            .ok_or_else(|| Error::NotFound(format!("no app `{client_id}`")))?;
        if client.kind == ClientKind::Public {
            return Err(Error::Invalid(
                "public apps have no secret to rotate".into(),
            ));
        }
        let now = self.clock.now();
        let until = now.plus(grace);
        for s in &mut client.secrets {
            s.expires_at = Some(s.expires_at.map_or(until, |t| t.min(until)));
        }
        client
            .secrets
            .retain(|s| s.expires_at.is_none_or(|t| t > now));
        let secret = ClientSecret(crypto::random_token(SECRET_PREFIX)?);
        client.secrets.push(SecretHash {
            hash: crypto::hash(&secret.0),
            created_at: now,
            expires_at: None,
        });
        self.store.put_client(&client)?;
        Ok(secret)
    }

    /// Revokes an installation's consent to an app and every token issued under it.
    pub fn revoke_consent(&self, installation: &InstallationId, client_id: &str) -> Result<bool> {
        let existed = self.store.delete_consent(installation, client_id)?;
        self.store.revoke_installation(installation, client_id)?;
        Ok(existed)
    }

    // ---- the protocol -----------------------------------------------------

    /// Serves one request. `session` is the host's signed-in user, needed
    /// only by the authorization endpoint.
    pub fn handle(&self, req: &HttpRequest, session: Option<&Session>) -> HttpResponse {
        let base = self.base_path();
        let path = req.path.strip_prefix(base.as_str()).unwrap_or(&req.path);
        match (req.method.as_str(), path) {
            ("GET", "/.well-known/oauth-authorization-server") => self.metadata(),
            ("GET", "/oauth/authorize") => self.authorize(req.query.as_bytes(), session, false),
            ("POST", "/oauth/authorize") => self.authorize(&req.body, session, true),
            ("POST", "/oauth/token") => self.token(req),
            ("POST", "/oauth/revoke") => self.revoke(req),
            ("POST", "/oauth/introspect") => self.introspect(req),
            (_, "/oauth/token" | "/oauth/revoke" | "/oauth/introspect") => {
                error_json(&OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "use POST with an application/x-www-form-urlencoded body",
                ))
            }
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
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "authorization_response_iss_parameter_supported": true,
                "scopes_supported": [OFFLINE_ACCESS],
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

    /// Checks client and redirect URI first: until both are known good, the
    /// server must not redirect (RFC 6749 §4.1.2.1).
    fn authorize(
        &self,
        encoded: &[u8],
        session: Option<&Session>,
        submitted: bool,
    ) -> HttpResponse {
        let p = match params(encoded) {
            Ok(p) => p,
            Err(e) => return self.error_page(400, &e),
        };
        let get = |k: &str| p.get(k).map(String::as_str);
        let Some(client_id) = get("client_id") else {
            return self.error_page(400, "the request has no `client_id`");
        };
        let client = match self.store.get_client(client_id) {
            Ok(Some(c)) => c,
            Ok(None) => return self.error_page(400, "the app is not registered"),
            Err(e) => {
                server_error(e);
                return self.error_page(500, "the server could not complete the request");
            }
        };
        let Some(redirect_uri) = get("redirect_uri") else {
            return self.error_page(400, "the request has no `redirect_uri`");
        };
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_matches(r, redirect_uri))
        {
            return self.error_page(400, "the `redirect_uri` is not registered for this app");
        }
        let state = get("state").map(str::to_owned);
        let fail = |e: OAuthError| {
            let mut q = vec![
                ("error", e.code.as_str()),
                ("error_description", e.description.as_str()),
            ];
            if let Some(s) = &state {
                q.push(("state", s));
            }
            q.push(("iss", &self.config.issuer));
            HttpResponse::redirect(&redirect_with(redirect_uri, &q))
        };
        let request = match self.check_authorize(&p, client, redirect_uri, state.clone()) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let Some(session) = session else {
            return self.error_page(401, "sign in to the store to authorize this app");
        };
        if submitted {
            let token = get("csrf").unwrap_or_default();
            if !self.csrf_valid(token, session, &request) {
                return self.error_page(
                    400,
                    "the consent form expired or was not sent from this page: start again",
                );
            }
            if get("decision") != Some("allow") {
                return fail(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user declined",
                ));
            }
            let consent = Consent {
                installation: session.installation.clone(),
                client_id: request.client.id.clone(),
                scopes: request.scopes.clone(),
                offline_access: request.offline,
                granted_by: session.user.clone(),
                granted_at: self.clock.now(),
            };
            if let Err(e) = self.store.put_consent(&consent) {
                return fail(server_error(e));
            }
            return self.issue_code(&request, session).unwrap_or_else(fail);
        }
        match self
            .store
            .get_consent(&session.installation, &request.client.id)
        {
            Ok(Some(c))
                if c.scopes.covers(&request.scopes) && (c.offline_access || !request.offline) =>
            {
                self.issue_code(&request, session).unwrap_or_else(fail)
            }
            Ok(existing) => self.consent_page(&request, session, existing.as_ref()),
            Err(e) => fail(server_error(e)),
        }
    }

    fn check_authorize(
        &self,
        p: &HashMap<String, String>,
        client: Client,
        redirect_uri: &str,
        state: Option<String>,
    ) -> Result<AuthorizeRequest, OAuthError> {
        let get = |k: &str| p.get(k).map(String::as_str);
        match get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    format!("response_type `{other}` is not supported: use `code`"),
                ));
            }
            None => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "`response_type` is missing",
                ));
            }
        }
        let Some(challenge) = get("code_challenge") else {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "PKCE is required: send `code_challenge` and `code_challenge_method=S256`",
            ));
        };
        if get("code_challenge_method") != Some("S256") {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "only `code_challenge_method=S256` is supported",
            ));
        }
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "`code_challenge` is not a base64url SHA-256",
            ));
        }
        let (scopes, offline) = parse_scope(get("scope").unwrap_or(""))?;
        if let Some(extra) = scopes.iter().find(|s| !client.scopes.allows(s)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("the app is not registered for `{extra}`"),
            ));
        }
        Ok(AuthorizeRequest {
            client,
            redirect_uri: redirect_uri.to_owned(),
            state,
            scopes,
            offline,
            challenge: challenge.to_owned(),
        })
    }

    fn csrf_input(session: &Session, r: &AuthorizeRequest) -> String {
        [
            session.installation.as_str(),
            &session.user,
            &r.client.id,
            &r.redirect_uri,
            &scope_string(&r.scopes, r.offline),
            &r.challenge,
            r.state.as_deref().unwrap_or(""),
        ]
        .join("\n")
    }

    fn csrf_token(&self, session: &Session, r: &AuthorizeRequest) -> String {
        let tag = ring::hmac::sign(&self.csrf, Self::csrf_input(session, r).as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn csrf_valid(&self, token: &str, session: &Session, r: &AuthorizeRequest) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        ring::hmac::verify(&self.csrf, Self::csrf_input(session, r).as_bytes(), &tag).is_ok()
    }

    fn consent_page(
        &self,
        r: &AuthorizeRequest,
        session: &Session,
        existing: Option<&Consent>,
    ) -> HttpResponse {
        let mut items = String::new();
        for s in &r.scopes {
            let new = existing.is_none_or(|c| !c.scopes.allows(s));
            items.push_str(&format!(
                "<li><code>{}</code>{}</li>",
                escape(&s.to_string()),
                if new { " <strong>(new)</strong>" } else { "" }
            ));
        }
        if r.offline {
            items.push_str(
                "<li><code>offline_access</code>: keep access when you are not signed in</li>",
            );
        }
        let hidden = |name: &str, value: &str| {
            format!(
                "<input type=hidden name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        };
        let mut fields = String::new();
        for (k, v) in [
            ("response_type", "code"),
            ("client_id", r.client.id.as_str()),
            ("redirect_uri", r.redirect_uri.as_str()),
            ("scope", scope_string(&r.scopes, r.offline).as_str()),
            ("code_challenge", r.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("csrf", self.csrf_token(session, r).as_str()),
        ] {
            fields.push_str(&hidden(k, v));
        }
        if let Some(s) = &r.state {
            fields.push_str(&hidden("state", s));
        }
        let action = escape(&self.endpoint("/oauth/authorize"));
        HttpResponse::html(
            200,
            format!(
                "<!doctype html><html lang=en><meta charset=utf-8><title>Authorize {app}</title>\
                 <body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto\">\
                 <h1>Allow <em>{app}</em> to access {inst}?</h1>\
                 <p>Signed in as {user}. The app asks for:</p><ul>{items}</ul>\
                 <form method=post action=\"{action}\">{fields}\
                 <button name=decision value=allow>Allow</button> \
                 <button name=decision value=deny>Deny</button></form></body></html>",
                app = escape(&r.client.name),
                inst = escape(session.installation.as_str()),
                user = escape(&session.user),
            ),
        )
    }

    fn issue_code(
        &self,
        r: &AuthorizeRequest,
        session: &Session,
    ) -> Result<HttpResponse, OAuthError> {
        let code = crypto::random_token(CODE_PREFIX).map_err(server_error)?;
        let record = AuthCode {
            hash: crypto::hash(&code),
            client_id: r.client.id.clone(),
            installation: session.installation.clone(),
            subject: session.user.clone(),
            redirect_uri: r.redirect_uri.clone(),
            scopes: r.scopes.clone(),
            offline_access: r.offline,
            code_challenge: r.challenge.clone(),
            expires_at: self.clock.now().plus(self.config.code_ttl),
            family: crypto::random_id("fam_").map_err(server_error)?,
        };
        self.store.put_code(&record).map_err(server_error)?;
        let mut q = vec![("code", code.as_str())];
        if let Some(s) = &r.state {
            q.push(("state", s));
        }
        q.push(("iss", &self.config.issuer));
        Ok(HttpResponse::redirect(&redirect_with(&r.redirect_uri, &q)))
    }

    /// Authenticates the client of a token, revocation or introspection request.
    fn client_auth(
        &self,
        req: &HttpRequest,
        p: &HashMap<String, String>,
        secret_required: bool,
    ) -> Result<Client, OAuthError> {
        let basic = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic "));
        let (id, secret) = match basic {
            Some(b64) => {
                let decoded = STANDARD
                    .decode(b64.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials")
                    })?;
                let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                    OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials")
                })?;
                let dec = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                (dec(id), Some(dec(secret)))
            }
            None => (
                p.get("client_id").cloned().unwrap_or_default(),
                p.get("client_secret").cloned(),
            ),
        };
        let unknown = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let client = self
            .store
            .get_client(&id)
            .map_err(server_error)?
            .ok_or_else(unknown)?;
        match (client.kind, secret) {
            (ClientKind::Public, None) if !secret_required => Ok(client),
            (ClientKind::Public, _) => Err(unknown()),
            (ClientKind::Confidential, Some(secret)) => {
                let presented = crypto::hash(&secret);
                let now = self.clock.now();
                let ok = client
                    .secrets
                    .iter()
                    .filter(|s| s.expires_at.is_none_or(|t| t > now))
                    .fold(false, |ok, s| ok | crypto::ct_eq(&s.hash, &presented));
                if ok { Ok(client) } else { Err(unknown()) }
            }
            (ClientKind::Confidential, None) => Err(unknown()),
        }
    }

    fn token(&self, req: &HttpRequest) -> HttpResponse {
        let p = match params(&req.body) {
            Ok(p) => p,
            Err(e) => return error_json(&OAuthError::new(ErrorCode::InvalidRequest, e)),
        };
        let client = match self.client_auth(req, &p, false) {
            Ok(c) => c,
            Err(e) => {
                let mut r = error_json(&e);
                if e.code == ErrorCode::InvalidClient && req.header("authorization").is_some() {
                    r.headers
                        .push(("www-authenticate".into(), "Basic realm=\"oauth\"".into()));
                }
                return r;
            }
        };
        let result = match p.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.grant_code(&client, &p),
            Some("refresh_token") => self.grant_refresh(&client, &p),
            Some("client_credentials") => self.grant_client_credentials(&client, &p),
            Some(other) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{other}` is not supported: use authorization_code, refresh_token or client_credentials"
                ),
            )),
            None => Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "`grant_type` is missing",
            )),
        };
        match result {
            Ok(body) => HttpResponse::json(200, &body),
            Err(e) => error_json(&e),
        }
    }

    fn issue_tokens(
        &self,
        client: &Client,
        installation: Option<InstallationId>,
        subject: &str,
        scopes: &ScopeSet,
        offline: bool,
        family: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let now = self.clock.now();
        let access = crypto::random_token(ACCESS_PREFIX).map_err(server_error)?;
        let base = Token {
            hash: crypto::hash(&access),
            kind: TokenKind::Access,
            client_id: client.id.clone(),
            installation,
            subject: subject.to_owned(),
            scopes: scopes.clone(),
            offline_access: offline,
            family: family.to_owned(),
            issued_at: now,
            expires_at: Some(now.plus(self.config.access_token_ttl)),
            revoked: false,
            used: false,
        };
        self.store.put_token(&base).map_err(server_error)?;
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.config.access_token_ttl.as_secs(),
            "scope": scope_string(scopes, offline),
        });
        if offline {
            let refresh = crypto::random_token(REFRESH_PREFIX).map_err(server_error)?;
            let token = Token {
                hash: crypto::hash(&refresh),
                kind: TokenKind::Refresh,
                expires_at: None,
                ..base
            };
            self.store.put_token(&token).map_err(server_error)?;
            body["refresh_token"] = json!(refresh);
        }
        Ok(body)
    }

    fn grant_code(
        &self,
        client: &Client,
        p: &HashMap<String, String>,
    ) -> Result<serde_json::Value, OAuthError> {
        let invalid = |m: &str| OAuthError::new(ErrorCode::InvalidGrant, m);
        let code = p
            .get("code")
            .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "`code` is missing"))?;
        let code = match self
            .store
            .redeem_code(&crypto::hash(code))
            .map_err(server_error)?
        {
            Redemption::Unknown => return Err(invalid("the code is not valid")),
            Redemption::Reused(code) => {
                // A replayed code: whoever holds it may have stolen it, so
                // everything the first redemption issued is revoked.
                let n = self
                    .store
                    .revoke_family(&code.family)
                    .map_err(server_error)?;
                tracing::warn!(client = %code.client_id, revoked = n, "authorization code reused; its tokens were revoked");
                return Err(invalid(
                    "the code was already used; the tokens issued with it are revoked",
                ));
            }
            Redemption::Fresh(code) => code,
        };
        if code.client_id != client.id {
            return Err(invalid("the code was issued to another client"));
        }
        if self.clock.now() >= code.expires_at {
            return Err(invalid("the code has expired"));
        }
        if p.get("redirect_uri").map(String::as_str) != Some(code.redirect_uri.as_str()) {
            return Err(invalid(
                "`redirect_uri` differs from the authorization request's",
            ));
        }
        let verifier = p
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        if !crypto::pkce_matches(verifier, &code.code_challenge) {
            return Err(invalid(
                "the `code_verifier` does not match the code challenge",
            ));
        }
        self.issue_tokens(
            client,
            Some(code.installation),
            &code.subject,
            &code.scopes,
            code.offline_access,
            &code.family,
        )
    }

    fn grant_refresh(
        &self,
        client: &Client,
        p: &HashMap<String, String>,
    ) -> Result<serde_json::Value, OAuthError> {
        let invalid = |m: &str| OAuthError::new(ErrorCode::InvalidGrant, m);
        let presented = p.get("refresh_token").ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidRequest, "`refresh_token` is missing")
        })?;
        let hash = crypto::hash(presented);
        // Checks that do not consume the token come first, so a request that
        // fails them leaves the client its refresh token.
        let current = self
            .store
            .get_token(&hash)
            .map_err(server_error)?
            .filter(|t| t.kind == TokenKind::Refresh)
            .ok_or_else(|| invalid("the refresh token is not valid"))?;
        if current.client_id != client.id {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if let Some(idle) = self.config.refresh_idle_ttl
            && self.clock.now().since(current.issued_at) >= idle
        {
            return Err(invalid(
                "the refresh token went unused for too long: authorize again",
            ));
        }
        let scopes = match p.get("scope") {
            None => current.scopes.clone(),
            Some(s) => {
                let (asked, _) = parse_scope(s)?;
                if !current.scopes.covers(&asked) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "a refresh cannot widen the scopes of the grant",
                    ));
                }
                asked
            }
        };
        match self.store.use_refresh_token(&hash).map_err(server_error)? {
            Redemption::Unknown => Err(invalid("the refresh token is not valid")),
            Redemption::Reused(t) => {
                let n = self.store.revoke_family(&t.family).map_err(server_error)?;
                tracing::warn!(client = %t.client_id, revoked = n, "refresh token reused; its family was revoked");
                Err(invalid(
                    "the refresh token was already used; every token of this grant is revoked",
                ))
            }
            Redemption::Fresh(t) if t.revoked => Err(invalid("the refresh token was revoked")),
            Redemption::Fresh(t) => {
                if let Some(installation) = &t.installation {
                    let consent = self
                        .store
                        .get_consent(installation, &client.id)
                        .map_err(server_error)?;
                    if !consent.is_some_and(|c| c.scopes.covers(&scopes) && c.offline_access) {
                        self.store.revoke_family(&t.family).map_err(server_error)?;
                        return Err(invalid("the installation withdrew its consent"));
                    }
                }
                // The old access tokens of the family stay valid until they expire.
                self.issue_tokens(client, t.installation, &t.subject, &scopes, true, &t.family)
            }
        }
    }

    fn grant_client_credentials(
        &self,
        client: &Client,
        p: &HashMap<String, String>,
    ) -> Result<serde_json::Value, OAuthError> {
        if client.kind != ClientKind::Confidential {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "public clients cannot use client credentials",
            ));
        }
        let scopes = match p.get("scope") {
            None => client.scopes.clone(),
            Some(s) => {
                let (asked, offline) = parse_scope(s)?;
                if offline {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "client credentials get no refresh token",
                    ));
                }
                if let Some(extra) = asked.iter().find(|s| !client.scopes.allows(s)) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("the app is not registered for `{extra}`"),
                    ));
                }
                asked
            }
        };
        let family = crypto::random_id("fam_").map_err(server_error)?;
        self.issue_tokens(client, None, &client.id.clone(), &scopes, false, &family)
    }

    fn revoke(&self, req: &HttpRequest) -> HttpResponse {
        let p = match params(&req.body) {
            Ok(p) => p,
            Err(e) => return error_json(&OAuthError::new(ErrorCode::InvalidRequest, e)),
        };
        let client = match self.client_auth(req, &p, false) {
            Ok(c) => c,
            Err(e) => return error_json(&e),
        };
        let Some(token) = p.get("token") else {
            return error_json(&OAuthError::new(
                ErrorCode::InvalidRequest,
                "`token` is missing",
            ));
        };
        let hash = crypto::hash(token);
        match self.store.get_token(&hash) {
            // RFC 7009 §2.2: unknown tokens, and tokens of other clients, get 200 too.
            Ok(Some(t)) if t.client_id == client.id => {
                let result = match t.kind {
                    // Revoking a refresh token ends the grant: its access tokens too.
                    TokenKind::Refresh => self.store.revoke_family(&t.family).map(drop),
                    TokenKind::Access => self.store.revoke_token(&hash).map(drop),
                };
                if let Err(e) = result {
                    return error_json(&server_error(e));
                }
            }
            Ok(_) => {}
            Err(e) => return error_json(&server_error(e)),
        }
        HttpResponse::json(200, &json!({}))
    }

    fn introspect(&self, req: &HttpRequest) -> HttpResponse {
        let p = match params(&req.body) {
            Ok(p) => p,
            Err(e) => return error_json(&OAuthError::new(ErrorCode::InvalidRequest, e)),
        };
        if let Err(e) = self.client_auth(req, &p, true) {
            let mut r = error_json(&e);
            r.status = 401;
            r.headers
                .push(("www-authenticate".into(), "Basic realm=\"oauth\"".into()));
            return r;
        }
        let Some(token) = p.get("token") else {
            return error_json(&OAuthError::new(
                ErrorCode::InvalidRequest,
                "`token` is missing",
            ));
        };
        match self.active(token) {
            Ok(Some(t)) => {
                let mut body = json!({
                    "active": true,
                    "scope": scope_string(&t.scopes, t.offline_access && t.kind == TokenKind::Refresh),
                    "client_id": t.client_id,
                    "sub": t.subject,
                    "token_type": if t.kind == TokenKind::Access { "Bearer" } else { "refresh_token" },
                    "iat": t.issued_at.as_millis() / 1000,
                    "iss": self.config.issuer,
                });
                if let Some(exp) = t.expires_at {
                    body["exp"] = json!(exp.as_millis() / 1000);
                }
                if let Some(i) = &t.installation {
                    body["installation"] = json!(i.as_str());
                }
                HttpResponse::json(200, &body)
            }
            Ok(None) => HttpResponse::json(200, &json!({ "active": false })),
            Err(e) => error_json(&server_error(e)),
        }
    }

    /// The stored token for `token` if it is active: known, not revoked, not
    /// expired, and (for refresh tokens) not used.
    fn active(&self, token: &str) -> Result<Option<Token>> {
        let now = self.clock.now();
        Ok(self
            .store
            .get_token(&crypto::hash(token))?
            .filter(|t| !t.revoked && !t.used && t.expires_at.is_none_or(|e| now < e)))
    }

    /// For resource servers: checks an `Authorization: Bearer` header value.
    /// Tokens are accepted only in this header, never in a query string.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<AccessInfo, OAuthError> {
        let invalid = |m: &str| OAuthError::new(ErrorCode::InvalidToken, m);
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| invalid("send the access token as `Authorization: Bearer <token>`"))?;
        if !token.starts_with(ACCESS_PREFIX) {
            return Err(invalid("that is not an access token"));
        }
        let t = self
            .active(token)
            .map_err(server_error)?
            .filter(|t| t.kind == TokenKind::Access)
            .ok_or_else(|| invalid("the access token is not valid, expired or revoked"))?;
        Ok(AccessInfo {
            client_id: t.client_id,
            installation: t.installation,
            subject: t.subject,
            scopes: t.scopes,
            expires_at: t.expires_at,
        })
    }

    /// The `WWW-Authenticate` value for a resource server's 401 or 403.
    pub fn challenge(&self, error: &OAuthError) -> String {
        format!(
            "Bearer realm=\"{}\", error=\"{}\", error_description=\"{}\"",
            self.config.issuer,
            error.code,
            error.description.replace('"', "'")
        )
    }
}
