//! Rate limits per key and per plugin installation.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, StatusCode};
use tower::Layer;
use vodo_core::keys::VerifiedKey;
use vodo_core::{AccessError, DenyReason, Host};

use crate::{Check, Checking, Problem};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10).
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (the same draft).
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Counts each request against the plugin's rate limit.
///
/// Needs [`ApiKeyAuthLayer`](crate::ApiKeyAuthLayer) before it (outside
/// it). The key's plugin must be installed and enabled in the key's
/// installation, and the request must fit the manifest's `api.rate_limit`
/// twice: for the key alone, and for the plugin's installation (one budget
/// with the plugin's own host calls): [`Host::admit`].
///
/// A request over a limit is `429` with `Retry-After` (seconds) and the
/// fields of draft-ietf-httpapi-ratelimit-headers-10,
/// `RateLimit-Policy: "plugin";q=100;w=60` and `RateLimit: "plugin";r=0;t=12`.
/// Every response of a limited plugin carries `RateLimit-Policy`. A plugin
/// that is disabled or not installed is `403`; the limiter refusing a new
/// key because it is full is `503`. Every refusal is audited.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    host: Arc<Host>,
}

impl RateLimitLayer {
    /// Limits from `host`'s grants, counted in its rate limiter.
    pub fn new(host: &Arc<Host>) -> Self {
        Self {
            host: Arc::clone(host),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = Checking<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Checking::new(inner, self.clone())
    }
}

impl Check for RateLimitLayer {
    fn check<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, Problem> {
        let Some(key) = request.extensions().get::<VerifiedKey>() else {
            return Err(crate::auth_missing("RateLimitLayer"));
        };
        match self.host.admit(key, &crate::wanted(request)) {
            Ok(grant) => Ok(grant
                .rate_limit
                .map(|l| (RATELIMIT_POLICY.clone(), policy(l)))),
            Err(AccessError::Denied(reason)) => {
                let limit = self
                    .host
                    .permissions
                    .current(&key.installation, &key.plugin)
                    .ok()
                    .flatten()
                    .and_then(|g| g.rate_limit);
                Err(denied(&reason, limit))
            }
            Err(other) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "denied",
                other.to_string(),
            )),
        }
    }
}

/// `"plugin";q={count};w={seconds}`.
fn policy(limit: vodo_core::rate::RateLimit) -> HeaderValue {
    let window = limit.period().duration().as_secs();
    HeaderValue::from_str(&format!("\"plugin\";q={};w={window}", limit.count()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"plugin\""))
}

/// The answer to a request the grant or the limiter refused.
pub(crate) fn denied(reason: &DenyReason, limit: Option<vodo_core::rate::RateLimit>) -> Problem {
    match reason {
        DenyReason::RateLimited { retry_after_ms } => {
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{reason}: the plugin's rate limit is shared by its API keys and its own host calls; slow down, or ask for a higher `api.rate_limit` in plugin.json"
                ),
            )
            .with("retry_after", seconds)
            .header(RETRY_AFTER, HeaderValue::from(seconds))
            .header(
                RATELIMIT.clone(),
                HeaderValue::from_str(&format!("\"plugin\";r=0;t={seconds}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"plugin\";r=0")),
            );
            if let Some(limit) = limit {
                p = p.header(RATELIMIT_POLICY.clone(), policy(limit));
            }
            p
        }
        DenyReason::RateLimiterFull { .. } | DenyReason::StoreUnavailable { .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            reason.to_string(),
        )
        .header(RETRY_AFTER, HeaderValue::from_static("1")),
        DenyReason::Disabled => {
            Problem::new(StatusCode::FORBIDDEN, "plugin_disabled", reason.to_string())
        }
        DenyReason::NotInstalled => Problem::new(
            StatusCode::FORBIDDEN,
            "plugin_not_installed",
            reason.to_string(),
        ),
        other => Problem::new(StatusCode::FORBIDDEN, "denied", other.to_string()),
    }
}
