//! The authorization endpoint: the request checked, the consent page with
//! its anti-forgery token, and the code issued.

use super::*;

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
    /// Checks client and redirect URI first: until both are known good, the
    /// server must not redirect (RFC 6749 §4.1.2.1).
    pub(super) fn authorize(
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
        let Some(installation) = session.installation.as_ref() else {
            return self.error_page(
                403,
                "apps are authorized for a store: sign in as the merchant of the store to install it in",
            );
        };
        if submitted {
            let token = get("csrf").unwrap_or_default();
            if !self.csrf_matches(token, &Self::csrf_input(session, &request)) {
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
            // What was consented before stays consented: approving one
            // more scope adds it to the installation's consent.
            let earlier = match self.store.get_consent(installation, &request.client.id) {
                Ok(c) => c,
                Err(e) => return fail(server_error(e)),
            };
            let mut scopes = request.scopes.clone();
            let mut offline_access = request.offline;
            if let Some(earlier) = earlier {
                for s in &earlier.scopes {
                    scopes.insert(s.clone());
                }
                offline_access |= earlier.offline_access;
            }
            let consent = Consent {
                installation: installation.clone(),
                client_id: request.client.id.clone(),
                scopes,
                offline_access,
                granted_by: session.user.clone(),
                granted_at: self.clock.now(),
            };
            if let Err(e) = self.store.put_consent(&consent) {
                return fail(server_error(e));
            }
            if let Some(audit) = &self.audit {
                audit.record_or_log(
                    &AuditEvent::now(AuditAction::AppAccess {
                        client_id: consent.client_id.clone(),
                        change: "granted".into(),
                        by: consent.granted_by.clone(),
                    })
                    .at(consent.granted_at)
                    .installation(&consent.installation),
                );
            }
            return self
                .issue_code(&request, installation, session)
                .unwrap_or_else(fail);
        }
        match self.store.get_consent(installation, &request.client.id) {
            Ok(Some(c))
                if c.scopes.covers(&request.scopes) && (c.offline_access || !request.offline) =>
            {
                self.issue_code(&request, installation, session)
                    .unwrap_or_else(fail)
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
        let Requested {
            scopes,
            account,
            offline,
        } = parse_scope(get("scope").unwrap_or(""))?;
        account_scope_refused(&account)?;
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
            session
                .installation
                .as_ref()
                .map_or("", InstallationId::as_str),
            &session.user,
            &r.client.id,
            &r.redirect_uri,
            &scope_string(&r.scopes, &AccountScopes::new(), r.offline),
            &r.challenge,
            r.state.as_deref().unwrap_or(""),
        ]
        .join("\n")
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
            (
                "scope",
                scope_string(&r.scopes, &AccountScopes::new(), r.offline).as_str(),
            ),
            ("code_challenge", r.challenge.as_str()),
            ("code_challenge_method", "S256"),
            (
                "csrf",
                self.csrf_tag(&Self::csrf_input(session, r)).as_str(),
            ),
        ] {
            fields.push_str(&hidden(k, v));
        }
        if let Some(s) = &r.state {
            fields.push_str(&hidden("state", s));
        }
        let action = escape(&self.endpoint("/oauth/authorize"));
        HttpResponse::form_page(
            &r.redirect_uri,
            format!(
                "<!doctype html><html lang=en><meta charset=utf-8><title>Authorize {app}</title>\
                 <body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto\">\
                 <h1>Allow <em>{app}</em> to access {inst}?</h1>\
                 <p>Signed in as {user}. The app asks for:</p><ul>{items}</ul>\
                 <form method=post action=\"{action}\">{fields}\
                 <button name=decision value=allow>Allow</button> \
                 <button name=decision value=deny>Deny</button></form></body></html>",
                app = escape(&r.client.name),
                inst = escape(
                    session
                        .installation
                        .as_ref()
                        .map_or("", InstallationId::as_str)
                ),
                user = escape(&session.user),
            ),
        )
    }

    fn issue_code(
        &self,
        r: &AuthorizeRequest,
        installation: &InstallationId,
        session: &Session,
    ) -> Result<HttpResponse, OAuthError> {
        let code = crypto::random_token(CODE_PREFIX).map_err(server_error)?;
        let record = AuthCode {
            hash: crypto::hash(&code),
            client_id: r.client.id.clone(),
            installation: installation.clone(),
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
}
