//! Revocation (RFC 7009), introspection (RFC 7662) and bearer-token
//! authentication of resource requests.

use super::*;

impl AuthServer {
    pub(super) fn revoke(&self, req: &HttpRequest) -> HttpResponse {
        let (p, client) = match self.client_form(req) {
            Ok(form) => form,
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

    pub(super) fn introspect(&self, req: &HttpRequest) -> HttpResponse {
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
                    "scope": scope_string(&t.scopes, &t.account_scopes, t.offline_access && t.kind == TokenKind::Refresh),
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
            .and_then(|h| credentials(h, "Bearer"))
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
            account_scopes: t.account_scopes,
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
