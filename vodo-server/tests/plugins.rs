//! Plugins' own routes through `PluginRoutes`: real plugins in a real
//! sandbox, behind the same router a host would build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;
use vodo_core::keys::IssueKey;
use vodo_core::{Consent, Host, InstallationId, Manifest, SecretKey};
use vodo_sandbox::{Limits, MemoryServices, Sandbox, SandboxConfig};
use vodo_server::{ApiKeyAuthLayer, PluginRoutes};

const GOOD: &str = r#"{
  "name": "Good", "slug": "good", "version": "0.1.0", "description": "behaves",
  "author": "Alice", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": { "entities": ["read:order"], "hooks": ["subscribe:order.*"] }
}"#;

const HOSTILE: &str = r#"{
  "name": "Hostile", "slug": "hostile", "version": "0.1.0", "description": "tries everything",
  "author": "Mallory", "license": "MIT", "entry": "hostile.wasm",
  "routes": ["GET /", "GET /big-headers"],
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["127.0.0.1"] },
    "users": "read"
  }
}"#;

fn app() -> (Router, Arc<Sandbox>) {
    let (app, sandbox, _) = app_and_host();
    (app, sandbox)
}

fn app_and_host() -> (Router, Arc<Sandbox>, Arc<Host>) {
    let host = Arc::new(Host::in_memory(&SecretKey::from_bytes([4; 32])));
    let sandbox = Arc::new(
        Sandbox::new(
            SandboxConfig::default(),
            &host,
            Arc::new(MemoryServices::new()),
        )
        .unwrap(),
    );
    let shop = InstallationId::new("shop");
    for (manifest, guest) in [(GOOD, "good"), (HOSTILE, "hostile")] {
        let m = Manifest::parse(manifest).unwrap();
        sandbox
            .install(
                &shop,
                &m,
                &test_support::guest(guest),
                &Consent::all(&m, "merchant"),
                Limits::default(),
            )
            .unwrap();
    }
    let app =
        Router::new().nest_service("/plugins", PluginRoutes::new(&sandbox, shop).max_body(1024));
    (app, sandbox, host)
}

/// The same routes mounted the way the platform's router does: a
/// catch-all route whose service strips the prefix itself.
fn mounted(sandbox: &Arc<Sandbox>) -> Router {
    Router::new().route_service(
        "/plugins/{*rest}",
        PluginRoutes::new(sandbox, InstallationId::new("shop"))
            .max_body(1024)
            .mounted_at("/plugins"),
    )
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a problem: {}", String::from_utf8_lossy(body)));
    v["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_declared_route_runs_the_plugin_and_private_headers_stay_with_the_platform() {
    let (nested, sandbox) = app();
    for app in [nested, mounted(&sandbox)] {
        let request = Request::get("/plugins/good/status?page=2")
            .header("authorization", "Bearer vodo_secret")
            .header("cookie", "admin_session=1")
            .header("x-shop", "acme")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"GET /status?page=2 ok");
        assert_eq!(headers["content-type"], "text/plain");
        let seen = headers["x-seen-headers"].to_str().unwrap();
        assert!(seen.contains("x-shop"), "{seen}");
        assert!(
            !seen.contains("authorization") && !seen.contains("cookie"),
            "{seen}"
        );
        // The plugin set a cookie on the platform's origin: dropped.
        assert!(headers.get("set-cookie").is_none(), "{headers:?}");
    }
}

#[tokio::test]
async fn undeclared_routes_unknown_plugins_and_big_bodies_are_refused_without_running() {
    let (app, sandbox) = app();
    let (status, _, body) = send(&mounted(&sandbox), get("/plugins/good/admin")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_declared")
    );
    let (status, _, body) = send(&mounted(&sandbox), get("/plugins/nobody/x")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "plugin_not_found")
    );
    let (status, _, body) = send(&app, get("/plugins/good/admin")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_declared")
    );
    let (status, _, body) = send(
        &app,
        Request::post("/plugins/good/status")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "route_not_declared")
    );
    let (status, _, body) = send(&app, get("/plugins/nobody/status")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "plugin_not_found")
    );
    let (status, _, body) = send(&app, get("/plugins/")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "plugin_not_found")
    );
    let big = Request::get("/plugins/good/status")
        .body(Body::from(vec![b'x'; 4096]))
        .unwrap();
    let (status, _, body) = send(&app, big).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    // None of them ran the plugin.
    let good = sandbox.get(&"shop".into(), &"good".into()).unwrap();
    assert_eq!(good.usage().calls, 0, "{:?}", good.usage());
}

#[tokio::test]
async fn a_plugin_that_floods_its_answer_is_a_502_naming_the_violation() {
    let (app, _) = app();
    let (status, _, body) = send(&app, get("/plugins/hostile/big-headers")).await;
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(code(&body), "plugin_violation");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["violation"], "output");
    // Its own 404 is its answer, passed on as it is.
    let (status, _, body) = send(&app, get("/plugins/hostile/")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::NOT_FOUND, b"not found".as_slice())
    );
}

#[tokio::test]
async fn a_disabled_plugin_is_403_at_once() {
    let (app, sandbox) = app();
    sandbox
        .set_enabled(&"shop".into(), &"good".into(), false, "merchant")
        .unwrap();
    let (status, _, body) = send(&app, get("/plugins/good/status")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::FORBIDDEN, "plugin_disabled")
    );
}

#[tokio::test]
async fn behind_the_key_layer_a_key_reaches_its_own_installations_plugins_only() {
    let (_, sandbox, host) = app_and_host();
    let app: Router = Router::new()
        .nest_service("/plugins", PluginRoutes::of_key_installation(&sandbox))
        .layer(ApiKeyAuthLayer::new(&host));
    let key = |installation: &str| {
        let (key, _) = host
            .keys
            .issue(IssueKey {
                installation: InstallationId::new(installation),
                plugin: "good".into(),
                name: "test".into(),
                scopes: Default::default(),
                ttl: None,
            })
            .unwrap();
        format!("Bearer {}", key.expose_secret())
    };
    let with = |auth: &str| {
        Request::get("/plugins/good/status")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&app, with(&key("shop"))).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"GET /status ok".as_slice())
    );
    // Another installation's key finds no such plugin in its installation.
    let (status, _, body) = send(&app, with(&key("other-shop"))).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "plugin_not_found")
    );
    let (status, _, body) = send(&app, get("/plugins/good/status")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "missing_key")
    );
    // Without the key layer the service says how to wire it.
    let bare: Router =
        Router::new().nest_service("/plugins", PluginRoutes::of_key_installation(&sandbox));
    let (status, _, body) = send(&bare, get("/plugins/good/status")).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "misconfigured")
    );
}
