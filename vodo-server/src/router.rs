//! The whole platform as one axum [`Router`]: the JSON API, the entity
//! API, plugins' routes, the console, with request ids and request spans.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse as _;
use axum::routing::get;
use http::{HeaderName, StatusCode};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::{ApiKeyAuthLayer, Platform, PluginRoutes, Problem, RateLimitLayer};

/// The header that carries each request's id, set when the client sent none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Platform {
    /// The platform's routes:
    ///
    /// - `/v1/...`: the JSON API for people signed in (`POST /v1/session`);
    /// - `/api/{resource}/{id}`: records, for plugins' API keys;
    /// - `/plugins/{slug}/...`: plugins' own routes, for their API keys, run in the sandbox;
    /// - `/admin/...`: the console;
    /// - `/openapi.json`: the OpenAPI 3.1 document of `/v1` and `/api`, generated from
    ///   the same route definitions, and `/api-docs`, its explorer;
    /// - `/index/...`: the signed index of the platform's packages, for
    ///   hosts and CDNs (no sign-in);
    /// - `/healthz`: whether the server is up.
    /// - `/oauth/...` and `/.well-known/oauth-authorization-server`: the OAuth
    ///   2.1 provider of partner apps; a merchant signed in to the console
    ///   consents for their installation;
    ///
    /// Every response carries an `x-request-id`, and every request is a
    /// `tracing` span with it. The platform's own answers carry
    /// `Cache-Control: no-store` unless the route sets its own policy (the
    /// index files do); a plugin's routes answer with the plugin's headers.
    pub fn router(self: &Arc<Self>) -> Router {
        // The layers wrap the plugin service itself, not the router's
        // route: one boxed service per request instead of one per layer.
        let plugins = Router::new().route_service(
            "/plugins/{*rest}",
            tower::ServiceBuilder::new()
                .layer(ApiKeyAuthLayer::new(&self.host))
                .layer(RateLimitLayer::new(&self.host))
                .service(PluginRoutes::of_key_installation(&self.sandbox).mounted_at("/plugins")),
        );
        let (api, doc) = crate::api::routes(self);
        let docs = crate::explorer::Docs::new(&doc);
        let (json, explorer) = (docs.clone(), docs);
        let doc = Arc::new(doc);
        let me = Arc::clone(self);
        let session: vodo_oauth::axum::SessionFn =
            Arc::new(move |headers| oauth_session(&me, headers));
        let oauth = vodo_oauth::axum::router(Arc::clone(&self.oauth), session);
        api.merge(crate::console::routes())
            .route("/oauth/device", get(device_page).post(device_page))
            .route("/healthz", get(|| async { "ok" }))
            .route_service("/.well-known/oauth-authorization-server", oauth.clone())
            .route_service("/oauth/{*rest}", oauth)
            .route("/openapi.json", get(move || async move { json.json_response() }))
            .route("/api-docs", get(move || async move { explorer.page_response() }))
            .route(
                "/api-docs/try",
                get(move |q| async move { crate::explorer::try_it(&doc, q) }),
            )
            .fallback(|| async {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "there is no such route: the API is under /v1 and /api, the console under /admin",
                )
            })
            // Answers are per user and some carry secrets shown once (a new
            // key, an app's client secret): no cache keeps them, unless the
            // route chose its own policy (the index files, the explorer).
            .layer(SetResponseHeaderLayer::if_not_present(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            ))
            .with_state(Arc::clone(self))
            .merge(plugins)
            .layer(
                tower::ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                    .layer(TraceLayer::new_for_http().make_span_with(
                        |r: &http::Request<axum::body::Body>| {
                            let id = r
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            tracing::info_span!("request", method = %r.method(), uri = %r.uri(), id)
                        },
                    ))
                    .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
            )
    }
}

/// Who is signed in to the console, as the OAuth provider sees them: a
/// merchant consents for their installation; anyone (a plugin developer
/// above all) may approve a device sign-in for their own account.
fn oauth_session(platform: &Platform, headers: &http::HeaderMap) -> Option<vodo_oauth::Session> {
    let session = platform
        .accounts
        .session(crate::web::cookie(headers)?)
        .ok()??;
    let installation = match session.role {
        crate::Role::Merchant(installation) => Some(installation),
        _ => None,
    };
    Some(vodo_oauth::Session {
        installation,
        user: session.email,
    })
}

/// The device verification page (`vodo login` opens it): the provider's
/// page, except that someone not signed in goes to the console's sign-in
/// first and comes back to it, code and all.
async fn device_page(
    axum::extract::State(p): axum::extract::State<Arc<Platform>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let session = oauth_session(&p, &headers);
    if session.is_none() && method == http::Method::GET {
        let back = uri
            .path_and_query()
            .map_or("/oauth/device", http::uri::PathAndQuery::as_str);
        let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        return axum::response::Redirect::to(&format!("/admin/login?next={next}")).into_response();
    }
    let request = vodo_oauth::axum::to_request(&method, &uri, &headers, &body);
    vodo_oauth::axum::into_response(p.oauth.handle(&request, session.as_ref()))
}

/// Serves `platform` on `listener` until `shutdown` completes, then lets
/// requests in flight (plugin calls among them) finish for up to `grace`.
///
/// While it serves, a worker delivers webhooks from the outbox every
/// second, and the updater runs every
/// [`UpdaterConfig::interval`](crate::UpdaterConfig::interval); at shutdown
/// the delivery attempt and the updater run in flight finish (what is still
/// pending stays in the outbox for the next start).
pub async fn serve(
    platform: Arc<Platform>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let worker = platform
        .webhooks
        .spawn(Duration::from_secs(1))
        .map_err(std::io::Error::other)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let updater = tokio::spawn(updater(Arc::clone(&platform), stopped.clone()));
    let logs = tokio::spawn(log_writer(Arc::clone(&platform), stopped));
    let served = serve_only(&platform, listener, shutdown, grace).await;
    let _ = stop.send(true);
    let _ = updater.await;
    let _ = logs.await;
    let _ = tokio::task::spawn_blocking(move || worker.stop()).await;
    served
}

/// Writes plugins' log lines to the database and the audit trail's buffer
/// to its file twice a second, so that other processes (`vodo logs`) see
/// them within a second, and once more when `stop` turns true (after the
/// requests in flight finished).
async fn log_writer(platform: Arc<Platform>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopping = tokio::time::timeout(Duration::from_millis(500), stop.changed())
            .await
            .is_ok();
        match platform.blocking(|p| p.store.flush_logs()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "writing plugins' log lines failed"),
        }
        match platform.blocking(|p| p.host.audit.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writing the audit trail failed"),
            Err(e) => tracing::error!(error = %e, "writing the audit trail failed"),
        }
        if stopping {
            return;
        }
    }
}

/// Runs the updater every [`UpdaterConfig::interval`](crate::UpdaterConfig::interval)
/// until `stop` turns true; a run in progress finishes first.
async fn updater(platform: Arc<Platform>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = platform.config.updates.interval;
    loop {
        if tokio::time::timeout(every, stop.changed()).await.is_ok() {
            return;
        }
        match platform.blocking(|p| p.run_updates()).await {
            Ok(Ok(report)) => {
                for r in report {
                    tracing::info!(installation = %r.installation, plugin = %r.plugin, outcome = ?r.outcome, "updater");
                }
            }
            Ok(Err(e)) | Err(e) => tracing::error!(error = %e, "the updater's run failed"),
        }
    }
}

async fn serve_only(
    platform: &Arc<Platform>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let app = platform
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    let _ = rx.await;
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "requests still running after the grace period were dropped"
            );
            Ok(())
        }
    }
}
