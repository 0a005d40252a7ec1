//! The token endpoint: client authentication and the four grants
//! (authorization code with PKCE, refresh with rotation, client credentials,
//! and the device code of RFC 8628).

use super::*;

/// What a set of tokens is issued under: the grant a code, a refresh token
/// or a client's credentials stand for.
struct TokenGrant<'a> {
    installation: Option<InstallationId>,
    subject: &'a str,
    scopes: &'a ScopeSet,
    account: &'a AccountScopes,
    offline: bool,
    family: &'a str,
}

impl AuthServer {
    /// Authenticates the client of a token, revocation or introspection request.
    pub(super) fn client_auth(
        &self,
        req: &HttpRequest,
        p: &HashMap<String, String>,
        secret_required: bool,
    ) -> Result<Client, OAuthError> {
        let basic = req
            .header("authorization")
            .and_then(|h| credentials(h, "Basic"));
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

    /// The form of a token, revocation or device authorization request and
    /// its client, authenticated (a public client by its id alone).
    pub(super) fn client_form(
        &self,
        req: &HttpRequest,
    ) -> Result<(HashMap<String, String>, Client), OAuthError> {
        let p = params(&req.body).map_err(|e| OAuthError::new(ErrorCode::InvalidRequest, e))?;
        let client = self.client_auth(req, &p, false)?;
        Ok((p, client))
    }

    pub(super) fn token(&self, req: &HttpRequest) -> HttpResponse {
        let (p, client) = match self.client_form(req) {
            Ok(form) => form,
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
            Some(DEVICE_GRANT) => self.grant_device(&client, &p),
            Some(other) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!(
                    "grant_type `{other}` is not supported: use authorization_code, refresh_token, client_credentials or {DEVICE_GRANT}"
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

    /// Issues an access token for `scopes` and `account` (the grant's, or
    /// fewer) and, for an offline grant, a refresh token for all of the
    /// grant's scopes.
    fn issue_tokens(
        &self,
        client: &Client,
        grant: TokenGrant<'_>,
        scopes: &ScopeSet,
        account: &AccountScopes,
    ) -> Result<serde_json::Value, OAuthError> {
        let TokenGrant {
            installation,
            subject,
            scopes: grant_scopes,
            account: grant_account,
            offline,
            family,
        } = grant;
        let now = self.clock.now();
        let access = crypto::random_token(ACCESS_PREFIX).map_err(server_error)?;
        let base = Token {
            hash: crypto::hash(&access),
            kind: TokenKind::Access,
            client_id: client.id.clone(),
            installation,
            subject: subject.to_owned(),
            scopes: scopes.clone(),
            account_scopes: account.clone(),
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
            "scope": scope_string(scopes, account, offline),
        });
        if offline {
            let refresh = crypto::random_token(REFRESH_PREFIX).map_err(server_error)?;
            // The refresh token keeps the grant's scopes whatever the
            // access token asked for (RFC 6749 section 6).
            let token = Token {
                hash: crypto::hash(&refresh),
                kind: TokenKind::Refresh,
                expires_at: None,
                scopes: grant_scopes.clone(),
                account_scopes: grant_account.clone(),
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
        let grant = TokenGrant {
            installation: Some(code.installation),
            subject: &code.subject,
            scopes: &code.scopes,
            account: &AccountScopes::new(),
            offline: code.offline_access,
            family: &code.family,
        };
        self.issue_tokens(client, grant, &code.scopes, &AccountScopes::new())
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
        let (scopes, account) = match p.get("scope") {
            None => (current.scopes.clone(), current.account_scopes.clone()),
            Some(s) => {
                let asked = parse_scope(s)?;
                if !current.scopes.covers(&asked.scopes)
                    || !asked.account.is_subset(&current.account_scopes)
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "a refresh cannot widen the scopes of the grant",
                    ));
                }
                (asked.scopes, asked.account)
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
                    if !consent.is_some_and(|c| c.scopes.covers(&t.scopes) && c.offline_access) {
                        self.store.revoke_family(&t.family).map_err(server_error)?;
                        return Err(invalid("the installation withdrew its consent"));
                    }
                }
                // The old access tokens of the family stay valid until they expire.
                let grant = TokenGrant {
                    installation: t.installation.clone(),
                    subject: &t.subject,
                    scopes: &t.scopes,
                    account: &t.account_scopes,
                    offline: true,
                    family: &t.family,
                };
                self.issue_tokens(client, grant, &scopes, &account)
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
                let Requested {
                    scopes: asked,
                    account,
                    offline,
                } = parse_scope(s)?;
                account_scope_refused(&account)?;
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
        let grant = TokenGrant {
            installation: None,
            subject: &client.id,
            scopes: &scopes,
            account: &AccountScopes::new(),
            offline: false,
            family: &family,
        };
        self.issue_tokens(client, grant, &scopes, &AccountScopes::new())
    }

    /// The device grant (RFC 8628 section 3.4): one poll with a device code.
    fn grant_device(
        &self,
        client: &Client,
        p: &HashMap<String, String>,
    ) -> Result<serde_json::Value, OAuthError> {
        let code = p.get("device_code").ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidRequest, "`device_code` is missing")
        })?;
        let poll = self
            .store
            .poll_device_code(&crypto::hash(code), &client.id, self.clock.now())
            .map_err(server_error)?;
        match poll {
            DevicePoll::Unknown => Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the device code is not valid for this client",
            )),
            DevicePoll::Expired => Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device code expired before it was approved: start the sign-in again",
            )),
            DevicePoll::SlowDown => Err(OAuthError::new(
                ErrorCode::SlowDown,
                "polled too often: wait 5 s more between polls",
            )),
            DevicePoll::Pending => Err(OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the user has not approved the request yet",
            )),
            DevicePoll::Denied => Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied the request",
            )),
            DevicePoll::Redeemed(code) => {
                let n = self
                    .store
                    .revoke_family(&code.family)
                    .map_err(server_error)?;
                tracing::warn!(client = %code.client_id, revoked = n, "device code reused; its tokens were revoked");
                Err(OAuthError::new(
                    ErrorCode::InvalidGrant,
                    "the device code was already used; the tokens issued with it are revoked",
                ))
            }
            DevicePoll::Approved(code) => {
                let DeviceDecision::Approved { subject } = &code.decision else {
                    return Err(server_error(Error::Internal(
                        "a redeemed device code without an approval".into(),
                    )));
                };
                let grant = TokenGrant {
                    installation: None,
                    subject,
                    scopes: &ScopeSet::default(),
                    account: &code.account_scopes,
                    offline: code.offline_access,
                    family: &code.family,
                };
                self.issue_tokens(client, grant, &ScopeSet::default(), &code.account_scopes)
            }
        }
    }
}
