//! API-key authentication.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, StatusCode};
use tower::Layer;
use vodo_core::Host;
use vodo_core::keys::KeyError;
use vodo_oauth::{ACCESS_PREFIX, AuthServer};

use crate::problem::header_text;
use crate::{Check, Checking, Problem};

/// Requires an API key: `Authorization: Bearer vodo_...`.
///
/// A key that verifies (format, checksum, secret, revocation, expiry,
/// rotation: [`ApiKeyManager::verify`](vodo_core::keys::ApiKeyManager::verify))
/// is put into the request's extensions as a
/// [`VerifiedKey`](vodo_core::keys::VerifiedKey) for the layers and handlers
/// after it. Otherwise the answer is `401` with
/// `WWW-Authenticate: Bearer realm="vodo"` (and `error="invalid_token"` when
/// a key was presented), or `503` when the key store cannot answer.
///
/// Verification reads the manager's cache; a key it has not seen, or one
/// read longer ago than its staleness bound, is read from the key store in
/// place (a short SQLite read for the embedded store).
///
/// With [`with_oauth`](Self::with_oauth), partner apps' OAuth access tokens
/// (`vodo_at_...`) are taken too: a valid one goes into the extensions as
/// an [`AccessInfo`](vodo_oauth::AccessInfo), for [`RateLimitLayer`](crate::RateLimitLayer) and
/// [`PermissionLayer`](crate::PermissionLayer) to check against the scopes
/// the installation consented to.
#[derive(Debug, Clone)]
pub struct ApiKeyAuthLayer {
    host: Arc<Host>,
    oauth: Option<Arc<AuthServer>>,
}

impl ApiKeyAuthLayer {
    /// Keys verified by `host`'s key manager.
    pub fn new(host: &Arc<Host>) -> Self {
        Self {
            host: Arc::clone(host),
            oauth: None,
        }
    }

    /// Also takes access tokens issued by `oauth` to partner apps.
    pub fn with_oauth(mut self, oauth: &Arc<AuthServer>) -> Self {
        self.oauth = Some(Arc::clone(oauth));
        self
    }
}

impl<S> Layer<S> for ApiKeyAuthLayer {
    type Service = Checking<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Checking::new(inner, self.clone())
    }
}

impl Check for ApiKeyAuthLayer {
    fn check<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, Problem> {
        let presented = bearer(request.headers().get(AUTHORIZATION))?;
        if let Some(oauth) = &self.oauth
            && presented.starts_with(ACCESS_PREFIX)
        {
            let header = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let info = oauth.authenticate(header).map_err(|e| {
                let challenge = HeaderValue::from_str(&oauth.challenge(&e)).unwrap_or_else(|_| {
                    HeaderValue::from_static(r#"Bearer realm="vodo", error="invalid_token""#)
                });
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
                    .header(WWW_AUTHENTICATE, challenge)
            })?;
            request.extensions_mut().insert(info);
            return Ok(None);
        }
        let verified = self.host.keys.verify(presented).map_err(|e| refused(&e))?;
        request.extensions_mut().insert(verified);
        Ok(None)
    }
}

/// The key of an `Authorization: Bearer` header.
fn bearer(header: Option<&HeaderValue>) -> Result<&str, Problem> {
    let Some(value) = header else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing_key",
            "this route needs an API key: send `Authorization: Bearer vodo_...` with a key issued for the plugin's installation",
        )
        .header(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="vodo""#)));
    };
    let value = value.to_str().unwrap_or("");
    let mut parts = value.splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let key = parts.next().map(str::trim).unwrap_or("");
    if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "the `Authorization` header must be `Bearer ` followed by the API key",
        )
        .header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="vodo", error="invalid_request""#),
        ));
    }
    Ok(key)
}

/// The answer to a key that did not verify.
fn refused(error: &KeyError) -> Problem {
    if let KeyError::StoreUnavailable(_) = error {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "key_store_unavailable",
            error.to_string(),
        )
        .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    let detail = error.to_string();
    // The description is kept to visible ASCII without quotes or
    // backslashes, so it cannot break out of its quoted string.
    let challenge = HeaderValue::from_str(&format!(
        r#"Bearer realm="vodo", error="invalid_token", error_description="{}""#,
        header_text(&detail).to_str().unwrap_or("")
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer realm="vodo", error="invalid_token""#));
    Problem::new(StatusCode::UNAUTHORIZED, "invalid_key", detail)
        .header(WWW_AUTHENTICATE, challenge)
}
