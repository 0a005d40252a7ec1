//! Rate limits per key and per plugin installation.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, StatusCode};
use tower::Layer;
use vodo_core::audit::{AuditAction, AuditEvent, AuditSinkExt as _};
use vodo_core::keys::VerifiedKey;
use vodo_core::rate::{RateKey, RateLimit};
use vodo_core::{AccessError, Decision, DenyReason, Host};
use vodo_oauth::AccessInfo;

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
///
/// A partner app's access token ([`ApiKeyAuthLayer::with_oauth`](crate::ApiKeyAuthLayer::with_oauth))
/// is counted per app and installation against [`partner_limit`](Self::partner_limit)
/// (`RateLimit-Policy: "app";...`; over it, `429` with `RateLimit: "app";r=0;t=...`,
/// audited against the installation); a token that acts for no
/// installation (client credentials) is `403 no_installation`.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    host: Arc<Host>,
    partner: Option<RateLimit>,
    policies: Arc<Policies>,
}

/// The `RateLimit-Policy` values already written, by limit: a plugin's
/// requests repeat the same few, so each is formatted once.
#[derive(Debug, Default)]
struct Policies(parking_lot::RwLock<std::collections::HashMap<RateLimit, HeaderValue>>);

impl Policies {
    /// At most this many limits are kept; past it, values are formatted
    /// per request (as many distinct limits as plugins is far below it).
    const KEPT: usize = 256;

    fn of(&self, limit: RateLimit) -> HeaderValue {
        if let Some(value) = self.0.read().get(&limit) {
            return value.clone();
        }
        let value = policy(limit);
        let mut kept = self.0.write();
        if kept.len() < Self::KEPT {
            kept.insert(limit, value.clone());
        }
        value
    }
}

impl RateLimitLayer {
    /// Limits from `host`'s grants, counted in its rate limiter.
    pub fn new(host: &Arc<Host>) -> Self {
        Self {
            host: Arc::clone(host),
            partner: None,
            policies: Arc::default(),
        }
    }

    /// Partner apps' requests for one installation are limited to `limit`
    /// (`None`: not limited).
    pub fn partner_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.partner = limit;
        self
    }

    fn check_app(&self, info: &AccessInfo) -> Result<Option<(HeaderName, HeaderValue)>, Problem> {
        let Some(installation) = &info.installation else {
            return Err(no_installation());
        };
        let Some(limit) = self.partner else {
            return Ok(None);
        };
        let key = RateKey::ApiKey(format!("app:{}:{installation}", info.client_id).into());
        let reason = match self.host.rate_limits.check(&key, limit) {
            Decision::Allow => {
                return Ok(Some((RATELIMIT_POLICY.clone(), policy_of("app", limit))));
            }
            Decision::Deny { reason } => reason,
        };
        self.host.audit.record_or_log(
            &AuditEvent::now(AuditAction::PermissionDenied {
                scope: format!("app {}", info.client_id),
                reason: reason.clone(),
            })
            .installation(installation),
        );
        Err(match reason {
            DenyReason::RateLimited { retry_after_ms } => {
                let seconds = retry_after_ms.div_ceil(1000).max(1);
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "the app may make {} requests per {} s for this installation: wait {seconds} s",
                        limit.count(),
                        limit.period().duration().as_secs()
                    ),
                )
                .with("retry_after", seconds)
                .header(RETRY_AFTER, HeaderValue::from(seconds))
                .header(
                    RATELIMIT.clone(),
                    HeaderValue::from_str(&format!("\"app\";r=0;t={seconds}"))
                        .unwrap_or_else(|_| HeaderValue::from_static("\"app\";r=0")),
                )
                .header(RATELIMIT_POLICY.clone(), policy_of("app", limit))
            }
            other => denied(&other, None),
        })
    }
}

/// A partner app's token that acts for no installation.
pub(crate) fn no_installation() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "no_installation",
        "this token acts for no installation (a client-credentials token): records are read with a token a merchant authorized",
    )
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
            if let Some(info) = request.extensions().get::<AccessInfo>() {
                return self.check_app(info);
            }
            return Err(crate::auth_missing("RateLimitLayer"));
        };
        match self.host.admit(key, &crate::wanted(request)) {
            Ok(grant) => Ok(grant
                .rate_limit
                .map(|l| (RATELIMIT_POLICY.clone(), self.policies.of(l)))),
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
fn policy(limit: RateLimit) -> HeaderValue {
    policy_of("plugin", limit)
}

/// `"{name}";q={count};w={seconds}`.
fn policy_of(name: &str, limit: RateLimit) -> HeaderValue {
    let window = limit.period().duration().as_secs();
    HeaderValue::from_str(&format!("\"{name}\";q={};w={window}", limit.count()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_written_once_per_limit_and_the_cache_is_bounded() {
        let policies = Policies::default();
        let limit: RateLimit = "100/minute".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policies.of(limit), "\"plugin\";q=100;w=60");
        assert_eq!(
            policies.of(limit),
            "\"plugin\";q=100;w=60",
            "from the cache"
        );
        for n in 1..=(Policies::KEPT as u32 + 10) {
            let limit: RateLimit = format!("{n}/second")
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(policies.of(limit), format!("\"plugin\";q={n};w=1").as_str());
        }
        assert_eq!(policies.0.read().len(), Policies::KEPT);
    }
}
