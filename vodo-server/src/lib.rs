//! The Vodo platform over HTTP.
//!
//! This first part is the middleware a host puts on its own routes, each a
//! small tower [`Layer`](tower::Layer) over the host's
//! [`Host`](vodo_core::Host) whose service is one [`Checking`] of its
//! [`Check`], in this order (outermost first):
//!
//! 1. [`ApiKeyAuthLayer`] (the roadmap's `PluginAuthMiddleware`): the
//!    request's `Authorization: Bearer vodo_...` key must verify; the
//!    verified key goes into the request's extensions. A missing or refused
//!    key is `401` with `WWW-Authenticate` (RFC 6750).
//! 2. [`RateLimitLayer`] (`PluginRateLimitMiddleware`): the plugin's grant
//!    must be enabled, and neither the key's nor the plugin installation's
//!    rate limit (the manifest's `api.rate_limit`, shared with the plugin's
//!    own host calls) exceeded. A limited request is `429` with
//!    `Retry-After` and the `RateLimit` and `RateLimit-Policy` fields of
//!    draft-ietf-httpapi-ratelimit-headers-10.
//! 3. [`PermissionLayer`] (`PluginPermissionMiddleware`): the route's scope
//!    (and platform API resource) must be in the plugin's grant and in the
//!    key's scopes. A denial is `403` naming what is missing.
//!
//! And [`PluginRoutes`] (`PluginSandboxMiddleware`), the service that
//! answers `/plugins/{slug}/...` with the plugin's own `on-request` through
//! the sandbox's call pipeline, enforcing the manifest's declared `routes`.
//!
//! Every refusal is a JSON problem (RFC 9457, `application/problem+json`)
//! whose `detail` says what to do and whose `code` a program can match;
//! every denial after the key verified is in the audit trail.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use vodo_core::{Host, SecretKey};
//! use vodo_server::{ApiKeyAuthLayer, PermissionLayer, RateLimitLayer};
//!
//! let host = Arc::new(Host::in_memory(&SecretKey::generate().unwrap()));
//! let orders: Router = Router::new()
//!     .route("/api/orders", get(|| async { "[]" }))
//!     // Layers run from the last added to the first.
//!     .layer(PermissionLayer::new(&host, "entities:read:order".parse().unwrap()).resource("orders"))
//!     .layer(RateLimitLayer::new(&host))
//!     .layer(ApiKeyAuthLayer::new(&host));
//! # drop(orders);
//! ```
//!
//! `Router::layer` boxes each route once per layer, and every request
//! clones each box. On a hot route, put the layers around the service
//! itself with `tower::ServiceBuilder` (the first added runs first): one
//! boxed service per request. `Platform::router` mounts plugin routes so
//! (BENCHMARKS.md, Server, has the difference).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use axum::Router;
//! # use vodo_core::Host;
//! # use vodo_server::{ApiKeyAuthLayer, PluginRoutes, RateLimitLayer};
//! # fn mount(host: Arc<Host>, sandbox: Arc<vodo_sandbox::Sandbox>) {
//! let plugins: Router = Router::new().route_service(
//!     "/plugins/{*rest}",
//!     tower::ServiceBuilder::new()
//!         .layer(ApiKeyAuthLayer::new(&host))
//!         .layer(RateLimitLayer::new(&host))
//!         .service(PluginRoutes::of_key_installation(&sandbox).mounted_at("/plugins")),
//! );
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accounts;
mod api;
mod apps;
mod apps_api;
mod auth;
mod charts;
mod console;
mod console_account;
mod console_hooks;
mod console_updates;
mod dev_api;
mod distribution;
mod error;
mod explorer;
mod future;
mod market;
mod permission;
mod platform;
mod plugins;
mod problem;
mod rate;
mod router;
mod services;
mod store;
mod updates;
mod updates_api;
mod web;

pub use accounts::{Accounts, MIN_PASSWORD, PasswordError, Role, Session, SignInError};
pub use api::{MAX_PAGE, key_json};
pub use apps::{DeliveryView, MAX_ENDPOINTS_PER_APP, MessageView, NewApp, NewEndpoint};
pub use apps_api::MAX_DELIVERIES_PAGE;
pub use auth::ApiKeyAuthLayer;
pub use dev_api::{MAX_REQUEST_BODY, MAX_SETTING};
pub use distribution::{IMMUTABLE, SHORT, TARGETS_TTL, TIMESTAMP_TTL, channel_of};
pub use error::ServerError;
pub use future::{Check, Checked, Checking};
pub use permission::PermissionLayer;
pub use platform::{CLI_CLIENT, Platform, PlatformConfig, PluginView, Resource};
pub use plugins::PluginRoutes;
pub use problem::Problem;
pub use rate::RateLimitLayer;
pub use router::{REQUEST_ID, serve};
pub use store::{
    LOG_LINES, LogLine, LogQuery, PackageRow, STORED_LOG_LINES, ServerStore, StoredLog,
};
pub use updates::{
    Held, Release, UpdateOutcome, UpdateReport, UpdateSettings, UpdaterConfig, UpdatesView, Watch,
};
pub use web::{
    AccountSession, ApiSession, COOKIE, CSRF_HEADER, ClientAddr, JsonBody, MAX_JSON, QueryParams,
};

/// The answer when a layer that needs the verified key runs without
/// [`ApiKeyAuthLayer`] before it: the host's routes are wired wrongly.
fn auth_missing(layer: &str) -> Problem {
    tracing::error!(
        layer,
        "a layer that needs the verified API key runs before ApiKeyAuthLayer"
    );
    Problem::new(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "misconfigured",
        format!(
            "the server is misconfigured: {layer} needs ApiKeyAuthLayer before it (add ApiKeyAuthLayer after {layer} with `.layer`, so that it runs first)"
        ),
    )
}

/// What a request was for, in the audit record of its refusal: its method
/// and path, shortened to 200 bytes. Written only when a refusal is
/// recorded, so an admitted request builds no string for it.
struct Wanted<'a> {
    method: &'a http::Method,
    path: &'a str,
}

fn wanted<B>(request: &http::Request<B>) -> Wanted<'_> {
    Wanted {
        method: request.method(),
        path: request.uri().path(),
    }
}

impl std::fmt::Display for Wanted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = self.method.as_str();
        let room = 200usize.saturating_sub(method.len() + 1);
        let mut end = self.path.len().min(room);
        while !self.path.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{method} {}", &self.path[..end])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_a_request_wanted_is_shortened_on_a_char_boundary() {
        let request = http::Request::get("/api/orders/1001")
            .body(())
            .unwrap_or_default();
        assert_eq!(super::wanted(&request).to_string(), "GET /api/orders/1001");
        let long = format!("/{}", "é".repeat(300));
        let request = http::Request::post(long.as_str())
            .body(())
            .unwrap_or_default();
        let s = super::wanted(&request).to_string();
        assert!(s.len() <= 200 && s.len() >= 198, "{}", s.len());
        assert!(s.starts_with("POST /é"));
    }
}
