//! The scope a route needs.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use tower::Layer;
use vodo_core::audit::{AuditAction, AuditEvent, AuditSinkExt as _};
use vodo_core::keys::VerifiedKey;
use vodo_core::{AccessError, DenyReason, Host};
use vodo_oauth::AccessInfo;
use vodo_scopes::PluginScope;

use crate::{Check, Checking, Problem};

/// Requires a scope (and, for platform API routes, a resource) of the
/// request's key.
///
/// Needs [`ApiKeyAuthLayer`](crate::ApiKeyAuthLayer) before it. The
/// plugin's current grant must be enabled and cover the scope, and the
/// resource (`api:access` or `api:access:{resource}`) when one is named;
/// the key's own scopes must cover the scope too: [`Host::permit`]. A
/// revoked or narrowed consent takes effect at the next request. A denial is
/// `403` whose `scope` member (and `detail`) names what is missing; every
/// denial is audited.
#[derive(Debug, Clone)]
pub struct PermissionLayer {
    host: Arc<Host>,
    scope: Arc<PluginScope>,
    resource: Option<Arc<str>>,
}

impl PermissionLayer {
    /// Routes that need `scope`.
    pub fn new(host: &Arc<Host>, scope: PluginScope) -> Self {
        Self {
            host: Arc::clone(host),
            scope: Arc::new(scope),
            resource: None,
        }
    }

    /// Routes of the platform API resource `resource` (`orders` in
    /// `/api/orders/...`), which the grant must cover as well.
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.into());
        self
    }
}

impl PermissionLayer {
    /// A partner app's token must carry the scope (the installation
    /// consented to it); a denial is audited against the installation.
    fn check_app<B>(&self, info: &AccessInfo, request: &Request<B>) -> Result<(), Problem> {
        let Some(installation) = &info.installation else {
            return Err(crate::rate::no_installation());
        };
        if info.scopes.allows(&self.scope) {
            return Ok(());
        }
        let reason = DenyReason::missing(&self.scope);
        self.host.audit.record_or_log(
            &AuditEvent::now(AuditAction::PermissionDenied {
                scope: format!(
                    "{} by app {}: {}",
                    self.scope,
                    info.client_id,
                    crate::wanted(request)
                ),
                reason,
            })
            .installation(installation),
        );
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "missing_scope",
            format!(
                "the app's token does not carry `{}`: ask the merchant to authorize the app with it",
                self.scope
            ),
        )
        .with("scope", self.scope.to_string()))
    }
}

impl<S> Layer<S> for PermissionLayer {
    type Service = Checking<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Checking::new(inner, self.clone())
    }
}

impl Check for PermissionLayer {
    fn check<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, Problem> {
        let Some(key) = request.extensions().get::<VerifiedKey>() else {
            if let Some(info) = request.extensions().get::<AccessInfo>() {
                return self.check_app(info, request).map(|()| None);
            }
            return Err(crate::auth_missing("PermissionLayer"));
        };
        match self.host.permit(key, self.resource.as_deref(), &self.scope) {
            Ok(()) => Ok(None),
            Err(AccessError::Denied(reason)) => Err(forbidden(&reason, &self.scope)),
            Err(other) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "denied",
                other.to_string(),
            )),
        }
    }
}

fn forbidden(reason: &DenyReason, scope: &PluginScope) -> Problem {
    match reason {
        DenyReason::MissingScope { scope: missing } => Problem::new(
            StatusCode::FORBIDDEN,
            "missing_scope",
            format!(
                "the plugin's grant does not include `{missing}`: add it to plugin.json and have the installer consent"
            ),
        )
        .with("scope", missing.as_str()),
        DenyReason::KeyScope { scope: missing } => Problem::new(
            StatusCode::FORBIDDEN,
            "key_scope",
            format!("{reason}"),
        )
        .with("scope", missing.as_str()),
        other => crate::rate::denied(other, None).with("scope", scope.to_string()),
    }
}
