//! The middleware layers over a real host: each refusal down to its status,
//! code, headers and audit record, and the request that passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::routing::get;
use http::{Request, StatusCode};
use tower::ServiceExt;
use vodo_core::audit::{AuditAction, AuditFilter, AuditKind, AuditLog, MemoryAudit};
use vodo_core::keys::{IssueKey, MemoryKeyStore, VerifiedKey};
use vodo_core::vodo_scopes::ScopeSet;
use vodo_core::{Consent, Host, InstallationId, Manifest, MemoryRegistry, SecretKey};
use vodo_server::{ApiKeyAuthLayer, PermissionLayer, RateLimitLayer};

const MANIFEST: &str = r#"{
  "name": "Order Notifier", "slug": "order-notifier", "version": "1.2.0",
  "description": "Posts new orders to a chat channel.", "author": "Acme Apps",
  "license": "MIT", "entry": "plugin.wasm",
  "permissions": {
    "entities": ["read:order", "read:customer"],
    "api": { "rate_limit": "3/minute", "endpoints": ["orders", "customers"] }
  }
}"#;

struct Fixture {
    host: Arc<Host>,
    audit: Arc<MemoryAudit>,
    app: Router,
}

fn fixture() -> Fixture {
    let audit = Arc::new(MemoryAudit::new());
    let host = Arc::new(Host::from_stores(
        Arc::new(MemoryRegistry::new()),
        Arc::new(MemoryKeyStore::new()),
        audit.clone(),
        &SecretKey::from_bytes([3; 32]),
    ));
    let m = Manifest::parse(MANIFEST).unwrap();
    host.install(
        &m,
        &InstallationId::new("shop"),
        &Consent::all(&m, "merchant"),
    )
    .unwrap();
    // The handler answers with the key the layers let through.
    let who = |Extension(key): Extension<VerifiedKey>| async move {
        format!("{}/{}", key.installation, key.plugin)
    };
    let orders = Router::new().route("/api/orders", get(who)).layer(
        PermissionLayer::new(&host, "entities:read:order".parse().unwrap()).resource("orders"),
    );
    let products = Router::new().route("/api/products", get(who)).layer(
        PermissionLayer::new(&host, "entities:read:product".parse().unwrap()).resource("products"),
    );
    let customers = Router::new().route("/api/customers", get(who)).layer(
        PermissionLayer::new(&host, "entities:read:customer".parse().unwrap())
            .resource("customers"),
    );
    let app = orders
        .merge(products)
        .merge(customers)
        .layer(RateLimitLayer::new(&host))
        .layer(ApiKeyAuthLayer::new(&host));
    Fixture { host, audit, app }
}

fn key(host: &Host, scopes: &[&str]) -> String {
    key_and_id(host, scopes).0
}

fn key_and_id(host: &Host, scopes: &[&str]) -> (String, String) {
    let scopes: ScopeSet = scopes.iter().map(|s| s.parse().unwrap()).collect();
    let (key, _) = host
        .keys
        .issue(IssueKey {
            installation: InstallationId::new("shop"),
            plugin: "order-notifier".into(),
            name: "test".into(),
            scopes,
            ttl: None,
        })
        .unwrap();
    (key.expose_secret().to_owned(), key.id().to_owned())
}

async fn get_with(
    app: &Router,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let mut request = Request::get(path);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into());
    (status, headers, body)
}

fn problem(headers: &http::HeaderMap, body: &serde_json::Value, code: &str) {
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.len() > 20),
        "{body}"
    );
}

fn denials(audit: &MemoryAudit) -> Vec<AuditAction> {
    audit
        .query(&AuditFilter {
            kinds: vec![AuditKind::PermissionDenied],
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.event.action)
        .collect()
}

#[tokio::test]
async fn a_valid_key_reaches_the_handler_with_its_installation_and_plugin() {
    let f = fixture();
    let k = key(&f.host, &["entities:read:order"]);
    let (status, headers, body) =
        get_with(&f.app, "/api/orders", Some(&format!("Bearer {k}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "shop/order-notifier");
    assert_eq!(headers["ratelimit-policy"], r#""plugin";q=3;w=60"#);
    // The scheme is case-insensitive (RFC 9110).
    let (status, _, _) = get_with(&f.app, "/api/orders", Some(&format!("bearer {k}"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_malformed_or_revoked_key_is_401_with_a_bearer_challenge() {
    let f = fixture();
    let (status, headers, body) = get_with(&f.app, "/api/orders", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="vodo""#);
    problem(&headers, &body, "missing_key");

    let (status, headers, body) = get_with(&f.app, "/api/orders", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_request""#)
    );
    problem(&headers, &body, "invalid_request");

    let (status, headers, body) = get_with(&f.app, "/api/orders", Some("Bearer not-a-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="vodo", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    problem(&headers, &body, "invalid_key");
    assert!(body["detail"].as_str().unwrap().contains("vodo_"), "{body}");

    // A header a client filled with quotes and control bytes cannot break the challenge.
    let (status, headers, _) =
        get_with(&f.app, "/api/orders", Some("Bearer \"x\\\" , error=\"none")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert_eq!(challenge.matches('"').count(), 6, "{challenge}");

    let (k, id) = key_and_id(&f.host, &["entities:read:order"]);
    f.host.keys.revoke(&id).unwrap();
    let (status, headers, body) =
        get_with(&f.app, "/api/orders", Some(&format!("Bearer {k}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    problem(&headers, &body, "invalid_key");
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
}

#[tokio::test]
async fn the_fourth_request_in_a_minute_is_429_with_retry_after_and_ratelimit_fields() {
    let f = fixture();
    let k = key(&f.host, &["entities:read:order"]);
    let auth = format!("Bearer {k}");
    for _ in 0..3 {
        assert_eq!(
            get_with(&f.app, "/api/orders", Some(&auth)).await.0,
            StatusCode::OK
        );
    }
    let (status, headers, body) = get_with(&f.app, "/api/orders", Some(&auth)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    problem(&headers, &body, "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(body["retry_after"], retry);
    assert_eq!(headers["ratelimit-policy"], r#""plugin";q=3;w=60"#);
    assert_eq!(
        headers["ratelimit"],
        format!(r#""plugin";r=0;t={retry}"#).as_str()
    );
    // A second key of the same plugin shares the installation's budget.
    let other = key(&f.host, &["entities:read:order"]);
    let (status, _, _) = get_with(&f.app, "/api/orders", Some(&format!("Bearer {other}"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(denials(&f.audit).iter().any(|a| matches!(a,
        AuditAction::PermissionDenied { reason: vodo_core::DenyReason::RateLimited { .. }, scope } if scope == "GET /api/orders")));
}

#[tokio::test]
async fn a_scope_outside_the_grant_or_the_key_is_403_naming_it_and_audited() {
    let f = fixture();
    let k = key(&f.host, &["entities:read:order"]);
    let auth = format!("Bearer {k}");
    // The grant has no products at all.
    let (status, headers, body) = get_with(&f.app, "/api/products", Some(&auth)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    problem(&headers, &body, "missing_scope");
    assert_eq!(body["scope"], "api:access:products");
    // The grant has customers, the key does not.
    let (status, headers, body) = get_with(&f.app, "/api/customers", Some(&auth)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    problem(&headers, &body, "key_scope");
    assert_eq!(body["scope"], "entities:read:customer");
    let audited = denials(&f.audit);
    assert!(audited.iter().any(|a| matches!(a, AuditAction::PermissionDenied { scope, .. } if scope == "api:access:products")), "{audited:?}");
    assert!(audited.iter().any(|a| matches!(a, AuditAction::PermissionDenied { scope, .. } if scope == "entities:read:customer")), "{audited:?}");
}

#[tokio::test]
async fn a_disabled_plugin_is_refused_at_once_and_enabled_again_is_served() {
    let f = fixture();
    let k = key(&f.host, &["entities:read:order"]);
    let auth = format!("Bearer {k}");
    let shop = InstallationId::new("shop");
    f.host
        .permissions
        .set_enabled(&shop, &"order-notifier".into(), false, "merchant")
        .unwrap();
    let (status, headers, body) = get_with(&f.app, "/api/orders", Some(&auth)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    problem(&headers, &body, "plugin_disabled");
    f.host
        .permissions
        .set_enabled(&shop, &"order-notifier".into(), true, "merchant")
        .unwrap();
    assert_eq!(
        get_with(&f.app, "/api/orders", Some(&auth)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_layer_without_the_key_layer_before_it_says_how_to_wire_it() {
    let f = fixture();
    let wrong: Router = Router::new()
        .route("/x", get(|| async { "never" }))
        .layer(RateLimitLayer::new(&f.host));
    let (status, headers, body) = get_with(&wrong, "/x", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    problem(&headers, &body, "misconfigured");
    assert!(
        body["detail"].as_str().unwrap().contains("ApiKeyAuthLayer"),
        "{body}"
    );
}

/// A partner app's token as `ApiKeyAuthLayer::with_oauth` leaves it.
fn app_token(installation: Option<&str>, scopes: &[&str]) -> vodo_oauth::AccessInfo {
    vodo_oauth::AccessInfo {
        client_id: "app_acme".into(),
        installation: installation.map(InstallationId::new),
        subject: "owner@shop".into(),
        scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        account_scopes: Default::default(),
        expires_at: None,
    }
}

#[tokio::test]
async fn an_app_token_is_limited_per_installation_and_checked_against_its_scopes() {
    let f = fixture();
    let limit = vodo_core::rate::RateLimit::new(
        std::num::NonZeroU32::new(2).unwrap(),
        vodo_core::rate::Period::Minute,
    )
    .unwrap();
    let app = |info: vodo_oauth::AccessInfo| {
        Router::new()
            .route("/api/orders", get(|| async { "orders" }))
            .layer(
                PermissionLayer::new(&f.host, "entities:read:order".parse().unwrap())
                    .resource("orders"),
            )
            .layer(RateLimitLayer::new(&f.host).partner_limit(Some(limit)))
            .layer(axum::middleware::map_request(
                move |mut r: Request<Body>| {
                    let info = info.clone();
                    async move {
                        r.extensions_mut().insert(info);
                        r
                    }
                },
            ))
    };
    let get = |router: &Router| {
        router
            .clone()
            .oneshot(Request::get("/api/orders").body(Body::empty()).unwrap())
    };
    let problem = |r: axum::response::Response| async move {
        let status = r.status();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (status, headers, v)
    };

    let reader = app(app_token(Some("shop"), &["entities:read:order"]));
    for _ in 0..2 {
        let r = get(&reader).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["ratelimit-policy"], "\"app\";q=2;w=60");
    }
    let (status, headers, v) = problem(get(&reader).await.unwrap()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"app\";r=0;t=")
    );
    // The same app for another installation has its own budget.
    let other = app(app_token(Some("shop-2"), &["entities:read:order"]));
    assert_eq!(get(&other).await.unwrap().status(), StatusCode::OK);

    // A scope the merchant did not consent to, and a token of no installation.
    let narrow = app(app_token(Some("shop-3"), &["entities:read:customer"]));
    let (status, _, v) = problem(get(&narrow).await.unwrap()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("missing_scope"))
    );
    assert_eq!(v["scope"], "entities:read:order");
    let machine = app(app_token(None, &["entities:read:order"]));
    let (status, _, v) = problem(get(&machine).await.unwrap()).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_installation"))
    );

    let denied = f
        .audit
        .query(&AuditFilter {
            kinds: vec![AuditKind::PermissionDenied],
            ..AuditFilter::default()
        })
        .unwrap();
    let about_app: Vec<_> = denied
        .iter()
        .filter(|r| matches!(&r.event.action, AuditAction::PermissionDenied { scope, .. } if scope.contains("app_acme")))
        .collect();
    assert_eq!(
        about_app.len(),
        2,
        "the 429 and the 403 are audited: {denied:?}"
    );
}
