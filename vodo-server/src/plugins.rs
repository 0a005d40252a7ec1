//! Plugins' own HTTP routes, served by the sandbox.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, StatusCode};
use tower::Service;
use vodo_core::keys::VerifiedKey;
use vodo_core::{DenyReason, InstallationId};
use vodo_sandbox::{CallError, Sandbox, SandboxViolation};

use crate::Problem;

/// Request headers a plugin never sees: the caller's credentials and the
/// platform's session belong to the platform, not to third-party code.
const PRIVATE_REQUEST: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Response headers a plugin may not set: cookies and transport security
/// on the platform's origin, and the framing the server computes itself.
const PRIVATE_RESPONSE: [&str; 8] = [
    "set-cookie",
    "strict-transport-security",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "proxy-authenticate",
];

/// Which installation's plugins a [`PluginRoutes`] serves.
#[derive(Debug, Clone)]
enum Tenant {
    Fixed(InstallationId),
    FromKey,
}

/// Serves `/{slug}/...` (nested under a prefix of the host's choosing,
/// such as `/plugins`) by the plugin `slug`'s `on-request`, through the
/// sandbox's call pipeline: the current grant, the manifest's declared
/// `routes` (anything else is `404` without running the plugin), the
/// circuit breaker and every limit of the call. Calls run on the async path,
/// so a slow plugin never holds a runtime worker.
///
/// The plugin sees the method, the path after its slug (with the query),
/// the headers except `Authorization`, `Cookie` and `Proxy-Authorization`,
/// and the body, read up to [`max_body`](Self::max_body) bytes (`413`
/// past it). Its answer keeps its status and headers except `Set-Cookie`,
/// `Strict-Transport-Security` and the framing headers.
///
/// A refused or failed call is a JSON problem: an undeclared route or a
/// plugin not loaded `404`, a disabled plugin `403`, its rate limit `429`,
/// an open circuit or a full host `503` with `Retry-After`, a timeout `504`,
/// any other violation or a plugin error `502` (the plugin is the upstream).
///
/// ```no_run
/// use std::sync::Arc;
///
/// use axum::Router;
/// use vodo_core::InstallationId;
/// use vodo_server::PluginRoutes;
///
/// # fn mount(sandbox: Arc<vodo_sandbox::Sandbox>) {
/// let app: Router = Router::new().nest_service(
///     "/plugins",
///     PluginRoutes::new(&sandbox, InstallationId::new("shop")),
/// );
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PluginRoutes {
    // One reference count per request: the router clones the service for
    // every request it routes.
    inner: Arc<Routes>,
}

#[derive(Debug, Clone)]
struct Routes {
    sandbox: Arc<Sandbox>,
    tenant: Tenant,
    max_body: usize,
    prefix: Option<Arc<str>>,
}

impl PluginRoutes {
    /// The plugins of `installation` (a storefront's routes).
    pub fn new(sandbox: &Arc<Sandbox>, installation: InstallationId) -> Self {
        Self::serving(sandbox, Tenant::Fixed(installation))
    }

    /// The plugins of the installation of the request's API key, behind
    /// [`ApiKeyAuthLayer`](crate::ApiKeyAuthLayer).
    pub fn of_key_installation(sandbox: &Arc<Sandbox>) -> Self {
        Self::serving(sandbox, Tenant::FromKey)
    }

    fn serving(sandbox: &Arc<Sandbox>, tenant: Tenant) -> Self {
        Self {
            inner: Arc::new(Routes {
                sandbox: Arc::clone(sandbox),
                tenant,
                max_body: 1 << 20,
                prefix: None,
            }),
        }
    }

    /// Takes requests whose path still starts with `prefix` and strips it
    /// itself, for mounting with `route_service("{prefix}/{*rest}", ...)`
    /// instead of `nest_service(prefix, ...)`: the same routes without the
    /// new URI that nesting builds for every request.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use axum::Router;
    /// # use vodo_server::PluginRoutes;
    /// # fn mount(sandbox: Arc<vodo_sandbox::Sandbox>) {
    /// let app: Router = Router::new().route_service(
    ///     "/plugins/{*rest}",
    ///     PluginRoutes::of_key_installation(&sandbox).mounted_at("/plugins"),
    /// );
    /// # }
    /// ```
    pub fn mounted_at(mut self, prefix: &str) -> Self {
        Arc::make_mut(&mut self.inner).prefix = Some(Arc::from(prefix.trim_end_matches('/')));
        self
    }

    /// The largest request body passed to a plugin, in bytes (default
    /// 1 MiB). The plugin's own input limits apply as well.
    pub fn max_body(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.inner).max_body = bytes;
        self
    }
}

impl Service<Request<Body>> for PluginRoutes {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = Arc::clone(&self.inner);
        Box::pin(async move { Ok(this.serve(request).await.unwrap_or_else(Problem::response)) })
    }
}

impl Routes {
    async fn serve(&self, request: Request<Body>) -> Result<Response, Problem> {
        let installation = match &self.tenant {
            Tenant::Fixed(i) => i.clone(),
            Tenant::FromKey => match request.extensions().get::<VerifiedKey>() {
                Some(k) => k.installation.clone(),
                None => return Err(crate::auth_missing("PluginRoutes::of_key_installation")),
            },
        };
        let full = request.uri().path();
        let full = match &self.prefix {
            Some(prefix) => full.strip_prefix(prefix.as_ref()).unwrap_or(""),
            None => full,
        };
        let (slug, path) = split(full);
        let path = match request.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let not_loaded = || {
            Problem::new(
                StatusCode::NOT_FOUND,
                "plugin_not_found",
                format!(
                    "no plugin `{}` is installed here",
                    crate::problem::shorten(slug)
                ),
            )
        };
        if slug.is_empty() {
            return Err(not_loaded());
        }
        let Some(plugin) = self.sandbox.get_by_slug(&installation, slug) else {
            return Err(not_loaded());
        };
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, self.max_body)
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is over the {} bytes a plugin accepts here: send less",
                        self.max_body
                    ),
                )
            })?;
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !PRIVATE_REQUEST.contains(&name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let call = self
            .sandbox
            .call_request_async(
                &plugin,
                &vodo_sandbox::Request {
                    method: parts.method.as_str().to_owned(),
                    path,
                    headers,
                    body: body.into(),
                },
            )
            .await;
        let answer = call.result.map_err(|e| failed(&e))?;
        let status = StatusCode::from_u16(answer.status)
            .ok()
            .filter(|s| !s.is_informational() && s.as_u16() <= 599)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "plugin_bad_status",
                    format!(
                        "the plugin answered with status {}, which is not a final HTTP status",
                        answer.status
                    ),
                )
            })?;
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() = status;
        for (name, value) in answer.headers {
            let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value))
            else {
                continue;
            };
            if !PRIVATE_RESPONSE.contains(&name.as_str()) {
                response.headers_mut().append(name, value);
            }
        }
        Ok(response)
    }
}

/// The plugin's slug and the rest of the path (`/` when there is none).
fn split(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.find('/') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, "/"),
    }
}

/// The answer to a call that did not succeed.
fn failed(error: &CallError) -> Problem {
    match error {
        CallError::Refused(DenyReason::UndeclaredRoute { method, path }) => Problem::new(
            StatusCode::NOT_FOUND,
            "route_not_declared",
            format!("the plugin declares no route `{method} {path}` in its plugin.json `routes`"),
        ),
        CallError::Refused(DenyReason::CircuitOpen) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit_open",
            "the plugin failed too often and its circuit is open: it is tried again shortly",
        )
        .header(RETRY_AFTER, HeaderValue::from_static("5")),
        CallError::Refused(reason) => crate::rate::denied(reason, None),
        CallError::AtCapacity => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "at_capacity",
            "the host runs as many plugin calls as it may: retry in a moment",
        )
        .header(RETRY_AFTER, HeaderValue::from_static("1")),
        CallError::Violation(v @ SandboxViolation::Timeout { .. }) => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "plugin_timeout", v.to_string())
        }
        CallError::Violation(v) => {
            Problem::new(StatusCode::BAD_GATEWAY, "plugin_violation", v.to_string())
                .with("violation", v.kind())
        }
        CallError::Plugin(message) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "plugin_error",
            format!("the plugin failed: {}", crate::problem::shorten(message)),
        ),
        other => {
            tracing::error!(error = %other, "a plugin request failed in the host");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "host_error",
                "the host failed to run the plugin; the error is in the server's log",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_failure_has_its_status_and_code() {
        let cases = [
            (
                CallError::Violation(SandboxViolation::Timeout {
                    limit: Duration::from_secs(1),
                }),
                StatusCode::GATEWAY_TIMEOUT,
                "plugin_timeout",
            ),
            (
                CallError::Violation(SandboxViolation::Stack),
                StatusCode::BAD_GATEWAY,
                "plugin_violation",
            ),
            (
                CallError::Plugin("boom".into()),
                StatusCode::BAD_GATEWAY,
                "plugin_error",
            ),
            (
                CallError::Refused(DenyReason::CircuitOpen),
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit_open",
            ),
            (
                CallError::Refused(DenyReason::RateLimited {
                    retry_after_ms: 1500,
                }),
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
            ),
            (
                CallError::Refused(DenyReason::Disabled),
                StatusCode::FORBIDDEN,
                "plugin_disabled",
            ),
            (
                CallError::AtCapacity,
                StatusCode::SERVICE_UNAVAILABLE,
                "at_capacity",
            ),
            (
                CallError::Host("disk on fire".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "host_error",
            ),
        ];
        for (error, status, code) in cases {
            let p = failed(&error);
            assert_eq!((p.status, p.code), (status, code), "{error}");
        }
        // A retry is said where one helps, in whole seconds rounded up.
        let limited = failed(&CallError::Refused(DenyReason::RateLimited {
            retry_after_ms: 1500,
        }));
        assert!(
            limited
                .headers
                .iter()
                .any(|(n, v)| n == RETRY_AFTER && v == "2")
        );
        let open = failed(&CallError::Refused(DenyReason::CircuitOpen));
        assert!(open.headers.iter().any(|(n, _)| n == RETRY_AFTER));
        // The host's own error stays in its log.
        assert!(
            !failed(&CallError::Host("disk on fire".into()))
                .detail
                .contains("fire")
        );
    }

    #[test]
    fn the_slug_is_the_first_segment() {
        assert_eq!(split("/good/status"), ("good", "/status"));
        assert_eq!(split("/good"), ("good", "/"));
        assert_eq!(split("/good/a/b"), ("good", "/a/b"));
        assert_eq!(split("/"), ("", "/"));
    }
}
