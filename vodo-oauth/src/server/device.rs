//! The device authorization grant (RFC 8628): the device authorization
//! endpoint a tool without a browser asks for a code at, and the
//! verification page where the signed-in user approves or denies it.
//!
//! It grants account scopes only ([`AccountScope`]): tokens for a person's
//! own account, bound to no installation, for first-party clients
//! registered with [`AuthServer::ensure_first_party_client`]. A store's
//! scopes still need the authorization code flow and the merchant's consent.

use super::*;

impl AuthServer {
    /// `POST /oauth/device_authorization` (RFC 8628 section 3.1).
    pub(super) fn device_authorization(&self, req: &HttpRequest) -> HttpResponse {
        let (p, client) = match self.client_form(req) {
            Ok(form) => form,
            Err(e) => return error_json(&e),
        };
        match self.start_device(&client, p.get("scope").map(String::as_str)) {
            Ok(body) => HttpResponse::json(200, &body),
            Err(e) => error_json(&e),
        }
    }

    fn start_device(
        &self,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<serde_json::Value, OAuthError> {
        if client.account_scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the device grant",
            ));
        }
        let (account, offline) = match scope {
            None => (client.account_scopes.clone(), false),
            Some(s) => {
                let asked = parse_scope(s)?;
                if let Some(store_scope) = asked.scopes.iter().next() {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!(
                            "`{store_scope}` acts in a store: the device grant gives account scopes only; a store's scopes need the authorization code flow with its merchant's consent"
                        ),
                    ));
                }
                if let Some(extra) = asked
                    .account
                    .iter()
                    .find(|a| !client.account_scopes.contains(a))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("the client is not registered for `{extra}`"),
                    ));
                }
                let account = if asked.account.is_empty() {
                    client.account_scopes.clone()
                } else {
                    asked.account
                };
                (account, asked.offline)
            }
        };
        let device_code = crypto::random_token(DEVICE_PREFIX).map_err(server_error)?;
        let now = self.clock.now();
        let interval = u32::try_from(self.config.device_poll_interval.as_secs()).unwrap_or(5);
        let mut last_error = None;
        // A new user code collides with a live one about once in 10^10
        // requests; three tries make a failure practically impossible.
        for _ in 0..3 {
            let user_code = crypto::random_user_code().map_err(server_error)?;
            let record = DeviceCode {
                hash: crypto::hash(&device_code),
                user_code: user_code.clone(),
                client_id: client.id.clone(),
                account_scopes: account.clone(),
                offline_access: offline,
                expires_at: now.plus(self.config.device_code_ttl),
                interval_secs: interval,
                last_poll: None,
                decision: DeviceDecision::Pending,
                redeemed: false,
                family: crypto::random_id("fam_").map_err(server_error)?,
            };
            match self.store.put_device_code(&record) {
                Ok(()) => {
                    let shown = crypto::show_user_code(&user_code);
                    let uri = self.endpoint("/oauth/device");
                    return Ok(json!({
                        "device_code": device_code,
                        "user_code": shown,
                        "verification_uri": uri,
                        "verification_uri_complete": redirect_with(&uri, &[("user_code", &shown)]),
                        "expires_in": self.config.device_code_ttl.as_secs(),
                        "interval": interval,
                    }));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(server_error(last_error.unwrap_or_else(|| {
            Error::Internal("no user code could be stored".into())
        })))
    }

    fn device_csrf_input(session: &Session, user_code: &str) -> String {
        ["device", &session.user, user_code].join("\n")
    }

    /// `GET /oauth/device[?user_code=]` and `POST /oauth/device`: the page
    /// where the signed-in user types or confirms the code their tool shows,
    /// then approves or denies it.
    pub(super) fn device_page(
        &self,
        encoded: &[u8],
        session: Option<&Session>,
        submitted: bool,
    ) -> HttpResponse {
        let p = match params(encoded) {
            Ok(p) => p,
            Err(e) => return self.error_page(400, &e),
        };
        let Some(session) = session else {
            return self.error_page(
                401,
                "sign in to the platform first, then open this link again",
            );
        };
        let typed = p.get("user_code").map(String::as_str).unwrap_or_default();
        let user_code = crypto::normalize_user_code(typed);
        if user_code.is_empty() {
            return self.device_form(None);
        }
        let now = self.clock.now();
        let code = match self.store.get_device_code(&user_code) {
            Ok(Some(c)) if c.decision == DeviceDecision::Pending && now < c.expires_at => c,
            Ok(_) => {
                return self.device_form(Some(
                    "That code is not valid, expired or was used already: check it, or start the sign-in again on your device.",
                ));
            }
            Err(e) => {
                server_error(e);
                return self.error_page(500, "the server could not complete the request");
            }
        };
        let client = match self.store.get_client(&code.client_id) {
            Ok(Some(c)) => c,
            Ok(None) => return self.error_page(400, "the app that asked is no longer registered"),
            Err(e) => {
                server_error(e);
                return self.error_page(500, "the server could not complete the request");
            }
        };
        if !submitted {
            return self.device_confirm(&client, &code, session);
        }
        if !self.csrf_matches(
            p.get("csrf").map(String::as_str).unwrap_or_default(),
            &Self::device_csrf_input(session, &user_code),
        ) {
            return self.error_page(
                400,
                "the form expired or was not sent from this page: open the link again",
            );
        }
        let allow = p.get("decision").map(String::as_str) == Some("allow");
        let decision = if allow {
            DeviceDecision::Approved {
                subject: session.user.clone(),
            }
        } else {
            DeviceDecision::Denied
        };
        match self.store.decide_device_code(&user_code, &decision, now) {
            Ok(true) => {}
            Ok(false) => {
                return self.error_page(
                    409,
                    "this code was decided meanwhile or expired: start the sign-in again on your device",
                );
            }
            Err(e) => {
                server_error(e);
                return self.error_page(500, "the server could not complete the request");
            }
        }
        if allow && let Some(audit) = &self.audit {
            audit.record_or_log(
                &AuditEvent::now(AuditAction::AppAccess {
                    client_id: client.id.clone(),
                    change: "device sign-in approved".into(),
                    by: session.user.clone(),
                })
                .at(now),
            );
        }
        let (title, text) = if allow {
            (
                "Signed in",
                format!(
                    "{} is signed in as {}. You can close this page and return to your terminal.",
                    client.name, session.user
                ),
            )
        } else {
            (
                "Denied",
                format!(
                    "{} was not signed in. You can close this page.",
                    client.name
                ),
            )
        };
        self.page(200, title, &format!("<p>{}</p>", escape(&text)))
    }

    fn page(&self, status: u16, title: &str, body: &str) -> HttpResponse {
        HttpResponse::html(
            status,
            format!(
                "<!doctype html><html lang=en><meta charset=utf-8><title>{t}</title>\
                 <body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto\">\
                 <h1>{t}</h1>{body}</body></html>",
                t = escape(title),
            ),
        )
    }

    fn device_form(&self, problem: Option<&str>) -> HttpResponse {
        let action = escape(&self.endpoint("/oauth/device"));
        let problem = problem
            .map(|m| format!("<p role=alert><strong>{}</strong></p>", escape(m)))
            .unwrap_or_default();
        self.page(
            if problem.is_empty() { 200 } else { 400 },
            "Sign in a device",
            &format!(
                "{problem}<p>Type the code your terminal or device shows.</p>\
                 <form method=get action=\"{action}\"><label>Code \
                 <input name=user_code autocomplete=off autocapitalize=characters \
                 placeholder=BCDF-GHJK required></label> <button>Continue</button></form>"
            ),
        )
    }

    fn device_confirm(
        &self,
        client: &Client,
        code: &DeviceCode,
        session: &Session,
    ) -> HttpResponse {
        let mut items = String::new();
        for a in &code.account_scopes {
            items.push_str(&format!(
                "<li><code>{}</code>: {}</li>",
                escape(a.as_str()),
                escape(a.describe())
            ));
        }
        if code.offline_access {
            items.push_str(
                "<li><code>offline_access</code>: stay signed in until you sign out</li>",
            );
        }
        let shown = crypto::show_user_code(&code.user_code);
        let action = escape(&self.endpoint("/oauth/device"));
        self.page(
            200,
            &format!("Sign in {}?", client.name),
            &format!(
                "<p>Signed in as <strong>{user}</strong>. <em>{app}</em> asks to:</p><ul>{items}</ul>\
                 <p>Continue only if you started this sign-in yourself and your device shows \
                 the code <strong><code>{shown}</code></strong>.</p>\
                 <form method=post action=\"{action}\">\
                 <input type=hidden name=\"user_code\" value=\"{shown}\">\
                 <input type=hidden name=\"csrf\" value=\"{csrf}\">\
                 <button name=decision value=allow>Allow</button> \
                 <button name=decision value=deny>Deny</button></form>",
                user = escape(&session.user),
                app = escape(&client.name),
                shown = escape(&shown),
                csrf = escape(&self.csrf_tag(&Self::device_csrf_input(session, &code.user_code))),
            ),
        )
    }
}
