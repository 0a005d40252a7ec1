//! The platform over HTTP: sessions, installations with consent, health,
//! keys, records, the audit trail and the console, each with its hostile
//! cases, through the router `vodo serve` runs, over a real data folder and
//! real plugins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use vodo_core::InstallationId;
use vodo_sandbox::HostServices;
use vodo_server::{Platform, PlatformConfig, Role};

#[tokio::test]
async fn signing_in_refuses_wrong_passwords_bad_bodies_and_too_many_attempts() {
    let f = fixture();
    let anon = Who::default();
    let wrong = |email: &str| {
        anon.request(
            Method::POST,
            "/v1/session",
            Some(json!({ "email": email, "password": "not the password" })),
        )
    };
    let a = send(&f.app, wrong("admin@x.test")).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNAUTHORIZED, "wrong_credentials")
    );
    // An unknown email gets the same answer as a wrong password.
    let b = send(&f.app, wrong("nobody@x.test")).await;
    assert_eq!(
        (b.status, b.json()["detail"].clone()),
        (StatusCode::UNAUTHORIZED, a.json()["detail"].clone())
    );

    let not_json = Request::post("/v1/session")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("email=x"))
        .unwrap();
    let a = send(&f.app, not_json).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json")
    );
    let malformed = Request::post("/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"email": "admin@x.test""#))
        .unwrap();
    let a = send(&f.app, malformed).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::BAD_REQUEST, "malformed_body")
    );
    let huge = Request::post("/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            r#"{{"email":"{}","password":"x"}}"#,
            "a".repeat(100_000)
        )))
        .unwrap();
    let a = send(&f.app, huge).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );

    // Five attempts a minute per account: the admin has had one; three
    // more wrong ones, then even the right password is refused for now.
    for _ in 0..3 {
        assert_eq!(
            send(&f.app, wrong("admin@x.test")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let ok_but_late = anon.request(
        Method::POST,
        "/v1/session",
        Some(json!({ "email": "admin@x.test", "password": PASSWORD })),
    );
    assert_eq!(
        send(&f.app, ok_but_late).await.status,
        StatusCode::OK,
        "the fifth attempt still counts"
    );
    let a = send(&f.app, wrong("admin@x.test")).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "sign_in_limited")
    );
    let retry: u64 = a.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another account is not limited by the admin's attempts.
    sign_in(&f.app, "a@x.test").await;
}

#[tokio::test]
async fn sessions_need_their_cookie_and_unsafe_requests_their_csrf_token() {
    let f = fixture();
    let a = send(
        &f.app,
        Who::default().request(Method::GET, "/v1/installations", None),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNAUTHORIZED, "not_signed_in")
    );
    let forged = Who {
        cookie: Some("made-up".into()),
        csrf: None,
    };
    assert_eq!(
        send(
            &f.app,
            forged.request(Method::GET, "/v1/installations", None)
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    let admin = sign_in(&f.app, "admin@x.test").await;
    let a = send(
        &f.app,
        admin.request(Method::GET, "/v1/installations", None),
    )
    .await;
    assert_eq!(a.json()["installations"], json!(["shop-a", "shop-b"]));

    // No token, and a token of another session: both refused, nothing installed.
    let no_token = Who {
        csrf: None,
        ..admin.clone()
    };
    let a = install(&f.app, &no_token, "shop-a", "good").await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::FORBIDDEN, "csrf")
    );
    let second = sign_in(&f.app, "admin@x.test").await;
    let stale = Who {
        csrf: second.csrf.clone(),
        ..admin.clone()
    };
    let a = install(&f.app, &stale, "shop-a", "good").await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::FORBIDDEN, "csrf")
    );
    assert!(
        f.platform
            .plugins(&InstallationId::new("shop-a"))
            .unwrap()
            .is_empty()
    );

    // Signing out ends the session at once.
    let a = send(&f.app, admin.request(Method::DELETE, "/v1/session", None)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(
        a.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        send(
            &f.app,
            admin.request(Method::GET, "/v1/installations", None)
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // The other session lives on.
    assert_eq!(
        send(
            &f.app,
            second.request(Method::GET, "/v1/installations", None)
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn installing_takes_exactly_the_consent_shown_and_an_upgrade_asks_only_for_the_difference() {
    let f = fixture();
    let merchant = sign_in(&f.app, "a@x.test").await;
    let consent = send(
        &f.app,
        merchant.request(Method::GET, "/v1/installations/shop-a/consent/good", None),
    )
    .await
    .json();
    assert_eq!(consent["installed"], false);
    let shown: Vec<&str> = consent["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert!(shown.contains(&"entities:read:order"), "{shown:?}");
    let described = consent["added"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == "entities:read:order")
        .unwrap();
    assert_eq!(described["description"], "Read your order records");

    // A consent that leaves out one scope is not a consent to this version.
    let partial = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins",
            Some(json!({ "plugin": "good", "consent": &shown[1..] })),
        ),
    )
    .await;
    assert_eq!(
        (partial.status, partial.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    let bad_scope = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins",
            Some(json!({ "plugin": "good", "consent": ["entities:reed:order"] })),
        ),
    )
    .await;
    assert_eq!(
        (bad_scope.status, bad_scope.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_scope")
    );

    let a = install(&f.app, &merchant, "shop-a", "good").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    assert_eq!(a.json()["version"], "1.0.0");

    // The plugin runs: it reads the order and writes its note.
    let ran = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "1001" })),
        ),
    )
    .await;
    assert_eq!(ran.json()["ok"], true, "{}", ran.text());
    let note = f
        .platform
        .store
        .get_entity(&InstallationId::new("shop-a"), "order_note", "1001")
        .unwrap();
    assert_eq!(note.as_deref(), Some(r#"{"order":"1001","seen":true}"#));

    // Version 1.1.0 adds one scope: the screen shows that one only.
    f.platform
        .add_package(GOOD_2, &test_support::guest("good"), None)
        .unwrap();
    let consent = send(
        &f.app,
        merchant.request(Method::GET, "/v1/installations/shop-a/consent/good", None),
    )
    .await
    .json();
    assert_eq!(consent["installed"], true);
    assert_eq!(consent["version"], "1.1.0");
    assert_eq!(
        consent["added"],
        json!([{ "scope": "entities:read:customer", "description": "Read your customer records" }])
    );
    let a = install(&f.app, &merchant, "shop-a", "good").await;
    assert_eq!(a.json()["version"], "1.1.0", "{}", a.text());

    // Disable, enable, uninstall; a disabled plugin does not run.
    let off = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/disable",
            None,
        ),
    )
    .await;
    assert_eq!(off.json()["enabled"], false);
    let refused = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "1001" })),
        ),
    )
    .await
    .json();
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("disabled"),
        "{refused}"
    );
    let on = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/enable",
            None,
        ),
    )
    .await;
    assert_eq!(on.json()["enabled"], true);
    let gone = send(
        &f.app,
        merchant.request(
            Method::DELETE,
            "/v1/installations/shop-a/plugins/good",
            None,
        ),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = send(
        &f.app,
        merchant.request(
            Method::DELETE,
            "/v1/installations/shop-a/plugins/good",
            None,
        ),
    )
    .await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn a_merchant_reaches_only_their_own_installation_and_a_reviewer_none() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    assert_eq!(
        install(&f.app, &admin, "shop-b", "good").await.status,
        StatusCode::CREATED
    );
    let a = sign_in(&f.app, "a@x.test").await;
    let listed = send(&f.app, a.request(Method::GET, "/v1/installations", None)).await;
    assert_eq!(listed.json()["installations"], json!(["shop-a"]));
    for (method, path, body) in [
        (Method::GET, "/v1/installations/shop-b/plugins", None),
        (
            Method::GET,
            "/v1/installations/shop-b/plugins/good/health",
            None,
        ),
        (
            Method::GET,
            "/v1/installations/shop-b/plugins/good/keys",
            None,
        ),
        (
            Method::POST,
            "/v1/installations/shop-b/plugins/good/disable",
            None,
        ),
        (
            Method::DELETE,
            "/v1/installations/shop-b/plugins/good",
            None,
        ),
        (
            Method::POST,
            "/v1/installations/shop-b/plugins/good/keys",
            Some(json!({ "name": "mine now", "scopes": [] })),
        ),
    ] {
        let r = send(&f.app, a.request(method.clone(), path, body)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "not_yours"),
            "{method} {path}"
        );
    }
    let audit = send(
        &f.app,
        a.request(Method::GET, "/v1/audit?installation=shop-b", None),
    )
    .await;
    assert_eq!(
        (audit.status, audit.code().as_str()),
        (StatusCode::FORBIDDEN, "not_yours")
    );
    // Without a filter a merchant sees only their installation's records.
    let audit = send(&f.app, a.request(Method::GET, "/v1/audit", None))
        .await
        .json();
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["installation"] == "shop-a"),
        "{audit}"
    );
    let verify = send(&f.app, a.request(Method::POST, "/v1/audit/verify", None)).await;
    assert_eq!(
        (verify.status, verify.code().as_str()),
        (StatusCode::FORBIDDEN, "role")
    );

    let reviewer = sign_in(&f.app, "reviewer@x.test").await;
    let r = send(
        &f.app,
        reviewer.request(Method::GET, "/v1/installations", None),
    )
    .await;
    assert_eq!(r.json()["installations"], json!([]));
    for (method, path, body) in [
        (Method::GET, "/v1/installations/shop-a/consent/good", None),
        (
            Method::POST,
            "/v1/installations/shop-a/plugins",
            Some(json!({ "plugin": "good", "consent": [] })),
        ),
    ] {
        let r = send(&f.app, reviewer.request(method, path, body)).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "not_yours"),
            "{path}"
        );
    }
    let r = send(&f.app, reviewer.request(Method::GET, "/v1/audit", None)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "role")
    );
    // Path segments that are not ids are refused before anything is looked up.
    let r = send(
        &f.app,
        admin.request(Method::GET, "/v1/installations/Shop%20A/plugins", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_id")
    );
}

#[tokio::test]
async fn health_shows_an_opened_circuit_with_its_last_failures() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    assert_eq!(
        install(&f.app, &admin, "shop-a", "hostile").await.status,
        StatusCode::CREATED
    );
    let health = || {
        admin.request(
            Method::GET,
            "/v1/installations/shop-a/plugins/hostile/health",
            None,
        )
    };
    assert_eq!(send(&f.app, health()).await.json()["status"], "healthy");
    let mut status = String::new();
    for _ in 0..20 {
        let ran = send(
            &f.app,
            admin.request(
                Method::POST,
                "/v1/installations/shop-a/plugins/hostile/events",
                Some(json!({ "event": "trap" })),
            ),
        )
        .await
        .json();
        assert_eq!(ran["ok"], false);
        status = send(&f.app, health()).await.json()["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "unhealthy" {
            break;
        }
    }
    assert_eq!(status, "unhealthy");
    let h = send(&f.app, health()).await.json();
    assert!(h["open_until"].as_i64().is_some(), "{h}");
    let failures = h["recent_failures"].as_array().unwrap();
    assert!(!failures.is_empty() && failures.len() <= 5, "{h}");
    assert!(h["usage"]["failures"].as_u64().unwrap() >= 1, "{h}");
    assert!(h["usage"]["p99_ms"].as_f64().unwrap() > 0.0, "{h}");
    let per_minute = h["usage"]["per_minute"].as_array().unwrap();
    let (calls, failed): (u64, u64) = per_minute.iter().fold((0, 0), |(c, f), m| {
        (
            c + m["calls"].as_u64().unwrap(),
            f + m["failures"].as_u64().unwrap(),
        )
    });
    assert_eq!(calls, h["usage"]["calls"].as_u64().unwrap(), "{h}");
    assert_eq!(failed, h["usage"]["failures"].as_u64().unwrap(), "{h}");
    // The open circuit refuses the next call without running the plugin.
    let refused = send(
        &f.app,
        admin.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/hostile/events",
            Some(json!({ "event": "trap" })),
        ),
    )
    .await
    .json();
    assert!(
        refused["error"].as_str().unwrap().contains("circuit"),
        "{refused}"
    );
    let missing = send(
        &f.app,
        admin.request(
            Method::GET,
            "/v1/installations/shop-a/plugins/nothing/health",
            None,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_reach_their_own_installations_records_within_their_scopes_until_revoked() {
    let f = fixture();
    let a = sign_in(&f.app, "a@x.test").await;
    assert_eq!(
        install(&f.app, &a, "shop-a", "good").await.status,
        StatusCode::CREATED
    );
    let issued = send(
        &f.app,
        a.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/keys",
            Some(json!({ "name": "order sync", "scopes": ["entities:read:order", "entities:write:order"] })),
        ),
    )
    .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.text());
    // The secret is shown once: no cache on the way keeps it.
    assert_eq!(issued.headers["cache-control"], "no-store");
    let issued = issued.json();
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    // Listed without its secret.
    let listed = send(
        &f.app,
        a.request(
            Method::GET,
            "/v1/installations/shop-a/plugins/good/keys",
            None,
        ),
    )
    .await;
    assert!(!listed.text().contains(&key));
    assert_eq!(listed.json()["keys"][0]["id"], id.as_str());

    let r = send(
        &f.app,
        key_request(&key, Method::GET, "/api/orders/1001", None),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({ "total": "10" }))
    );
    // Another installation's order does not exist for this key.
    let r = send(
        &f.app,
        key_request(&key, Method::GET, "/api/orders/2002", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // Customers are not among the grant's endpoints; writing orders is not in the grant.
    let r = send(
        &f.app,
        key_request(&key, Method::GET, "/api/customers/c-1", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = send(
        &f.app,
        key_request(
            &key,
            Method::PUT,
            "/api/orders/1001",
            Some(r#"{"total":"0"}"#),
        ),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "missing_scope"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["scope"], "entities:write:order");
    let r = send(
        &f.app,
        key_request("vodo_made_up", Method::GET, "/api/orders/1001", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    // A method the record route does not have is 405 with the ones it has,
    // whatever key comes with it (the methods are in the public OpenAPI
    // document); the checks guard each method's handler.
    for k in [key.as_str(), "vodo_made_up"] {
        let r = send(
            &f.app,
            key_request(k, Method::POST, "/api/orders/1001", Some("{}")),
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{}",
            r.text()
        );
        let allow = r.headers[header::ALLOW].to_str().unwrap().to_owned();
        for m in ["GET", "PUT", "DELETE"] {
            assert!(allow.contains(m), "{allow}");
        }
    }

    // Rotation: the new key works; with no grace the old one stops.
    let rotated = send(
        &f.app,
        a.request(
            Method::POST,
            &format!("/v1/installations/shop-a/plugins/good/keys/{id}/rotate"),
            Some(json!({ "grace_seconds": 0 })),
        ),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text());
    let rotated = rotated.json();
    let new_key = rotated["key"].as_str().unwrap();
    let new_id = rotated["id"].as_str().unwrap();
    assert_eq!(
        send(
            &f.app,
            key_request(new_key, Method::GET, "/api/orders/1001", None)
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &f.app,
            key_request(&key, Method::GET, "/api/orders/1001", None)
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    // Another merchant cannot revoke it, even naming it under their own installation.
    let b = sign_in(&f.app, "b@x.test").await;
    let r = send(
        &f.app,
        b.request(
            Method::DELETE,
            &format!("/v1/installations/shop-b/plugins/good/keys/{new_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &f.app,
        a.request(
            Method::DELETE,
            &format!("/v1/installations/shop-a/plugins/good/keys/{new_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(
        &f.app,
        key_request(new_key, Method::GET, "/api/orders/1001", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_key")
    );
    // A name is required.
    let r = send(
        &f.app,
        a.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/keys",
            Some(json!({ "name": " ", "scopes": [] })),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn records_are_written_as_json_objects_and_hostile_bodies_get_a_clear_4xx() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    let writer = r#"{
      "name": "Writer", "slug": "writer", "version": "1.0.0", "description": "writes",
      "author": "Alice", "license": "MIT", "entry": "good.wasm",
      "permissions": { "entities": ["write:order"], "api": { "rate_limit": "6/minute", "endpoints": ["orders"] } }
    }"#;
    f.platform
        .add_package(writer, &test_support::guest("good"), None)
        .unwrap();
    assert_eq!(
        install(&f.app, &admin, "shop-a", "writer").await.status,
        StatusCode::CREATED
    );
    let key = send(
        &f.app,
        admin.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/writer/keys",
            Some(json!({ "name": "w", "scopes": ["entities:write:order"] })),
        ),
    )
    .await
    .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |id: &str, body: &str| {
        key_request(&key, Method::PUT, &format!("/api/orders/{id}"), Some(body))
    };
    let r = send(&f.app, put("9", r#"{"total":"1"}"#)).await;
    assert_eq!(r.status, StatusCode::CREATED, "a new record: {}", r.text());
    let r = send(&f.app, put("9", r#"{"total":"2"}"#)).await;
    assert_eq!(r.status, StatusCode::OK, "a replaced record: {}", r.text());
    let r = send(&f.app, put("9", "[1,2]")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    let r = send(&f.app, put("9", "{not json")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "malformed_body")
    );
    let r = send(&f.app, put("..%2F..%2Fetc", r#"{}"#)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_id")
    );
    // Six requests a minute: this is the seventh.
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(70 * 1024));
    let r = send(&f.app, put("9", &big)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let r = send(
        &f.app,
        key_request(&key, Method::DELETE, "/api/orders/9", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    let stored = f
        .platform
        .store
        .get_entity(&InstallationId::new("shop-a"), "order", "9")
        .unwrap();
    assert_eq!(stored.as_deref(), Some(r#"{"total":"2"}"#));
}

#[tokio::test]
async fn the_audit_trail_is_filtered_paged_and_verified_and_tampering_shows() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    for slug in ["good", "hostile"] {
        assert_eq!(
            install(&f.app, &admin, "shop-a", slug).await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        install(&f.app, &admin, "shop-b", "good").await.status,
        StatusCode::CREATED
    );
    let page = |q: &str| admin.request(Method::GET, &format!("/v1/audit?{q}"), None);
    let all = send(&f.app, page("kind=lifecycle")).await.json();
    assert_eq!(all["records"].as_array().unwrap().len(), 3, "{all}");
    let only_b = send(&f.app, page("kind=lifecycle&installation=shop-b"))
        .await
        .json();
    assert_eq!(only_b["records"].as_array().unwrap().len(), 1);
    let only_hostile = send(&f.app, page("plugin=hostile")).await.json();
    assert!(
        only_hostile["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["plugin"] == "hostile")
    );
    // Pages of two: the first says where the next starts, the next has the rest.
    let first = send(&f.app, page("kind=lifecycle&limit=2")).await.json();
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let after = first["next_after"].as_u64().unwrap();
    let second = send(
        &f.app,
        page(&format!("kind=lifecycle&limit=2&after={after}")),
    )
    .await
    .json();
    assert_eq!(second["records"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_after"], Value::Null);
    let future = Timestamp::now().0 + 3_600_000;
    let none = send(&f.app, page(&format!("from={future}"))).await.json();
    assert_eq!(none["records"], json!([]));
    let bad = send(&f.app, page("kind=everything")).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_kind")
    );
    // A parameter that does not parse: a problem that names it, as JSON.
    let bad = send(&f.app, page("limit=lots")).await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_query")
    );
    assert!(
        bad.json()["detail"].as_str().unwrap().contains("limit"),
        "{}",
        bad.text()
    );
    // In the console, the same address is the console's own error page,
    // with its navigation, naming the parameter.
    for path in [
        "/admin/audit?limit=lots",
        "/admin/catalog?min_rating=high",
        "/admin/webhooks?page=-1",
    ] {
        let bad = send(
            &f.app,
            cookie_request(&admin, Method::GET, path, String::new()),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}");
        let html = bad.text();
        assert!(
            html.contains("<!DOCTYPE html>") && html.contains("fix the address"),
            "{path}: {html}"
        );
        assert!(
            html.contains("Sign out"),
            "{path}: the signed-in page: {html}"
        );
    }

    let ok = send(
        &f.app,
        admin.request(Method::POST, "/v1/audit/verify", None),
    )
    .await
    .json();
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["records"].as_u64().unwrap() >= 3);
    let path = f.platform.config().data.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("shop-b", "shop-c", 1)).unwrap();
    let broken = send(
        &f.app,
        admin.request(Method::POST, "/v1/audit/verify", None),
    )
    .await
    .json();
    assert_eq!(broken["ok"], false, "{broken}");
    assert!(
        broken["error"].as_str().unwrap().contains("line"),
        "{broken}"
    );
}

use vodo_core::Timestamp;

#[tokio::test]
async fn the_console_signs_in_with_a_form_token_and_refuses_forms_without_one() {
    let f = fixture();
    // The dashboard sends a stranger to sign in.
    let r = send(&f.app, Request::get("/admin").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (r.status, r.headers[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/admin/login")
    );
    let page = send(
        &f.app,
        Request::get("/admin/login").body(Body::empty()).unwrap(),
    )
    .await;
    let login_cookie = page.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let token = login_cookie.strip_prefix("vodo_login=").unwrap().to_owned();
    assert!(
        page.text()
            .contains(&format!(r#"name="csrf" value="{token}""#))
    );
    let form = |cookie: Option<&str>, csrf: &str| {
        let mut b = Request::post("/admin/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(format!(
            "email=a%40x.test&password=correct+horse+battery&csrf={csrf}"
        )))
        .unwrap()
    };
    // A form posted from elsewhere has no sign-in cookie.
    let r = send(&f.app, form(None, &token)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&f.app, form(Some(&login_cookie), "other")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&f.app, form(Some(&login_cookie), &token)).await;
    assert_eq!(
        (r.status, r.headers[header::LOCATION].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/admin")
    );
    let session = r.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let dash = send(
        &f.app,
        Request::get("/admin")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(dash.status, StatusCode::OK);
    // A signed-in page is this user's: never kept by a cache.
    assert_eq!(dash.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        dash.text().contains("shop-a") && !dash.text().contains("shop-b"),
        "{}",
        dash.text()
    );
    // Activation without the session's token is refused and installs nothing.
    let r = send(
        &f.app,
        Request::post("/admin/installations/shop-a/activate/good")
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=wrong&agreed="))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        f.platform
            .plugins(&InstallationId::new("shop-a"))
            .unwrap()
            .is_empty()
    );
    // Another merchant's pages are refused.
    let r = send(
        &f.app,
        Request::get("/admin/installations/shop-b/activate/good")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Text a plugin controls is escaped (a new release: a listed one never changes).
    f.platform
        .add_package(
            &GOOD_1
                .replace("\"Good\"", "\"<script>alert(1)</script>\"")
                .replace("1.0.0", "1.0.1"),
            &test_support::guest("good"),
            None,
        )
        .unwrap();
    let consent = send(
        &f.app,
        Request::get("/admin/installations/shop-a/activate/good")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        consent.text().contains("&lt;script&gt;") && !consent.text().contains("<script>"),
        "{}",
        consent.text()
    );
}

#[tokio::test]
async fn a_restart_loads_what_was_installed_and_keeps_sessions_and_records() {
    let data = tempfile::tempdir().unwrap();
    let cookie;
    {
        let platform = Arc::new(Platform::open(PlatformConfig::new(data.path())).unwrap());
        platform
            .add_package(GOOD_1, &test_support::guest("good"), None)
            .unwrap();
        platform
            .store
            .put_installation(&InstallationId::new("shop-a"), "A")
            .unwrap();
        platform
            .accounts
            .put("admin@x.test", &Role::Admin, PASSWORD)
            .unwrap();
        let app = platform.router();
        let admin = sign_in(&app, "admin@x.test").await;
        assert_eq!(
            install(&app, &admin, "shop-a", "good").await.status,
            StatusCode::CREATED
        );
        cookie = admin;
    }
    let platform = Arc::new(Platform::open(PlatformConfig::new(data.path())).unwrap());
    assert!(
        platform
            .sandbox
            .get(
                &InstallationId::new("shop-a"),
                &vodo_core::PluginId::new("good")
            )
            .is_some()
    );
    let app = platform.router();
    let ran = send(
        &app,
        cookie.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "1" })),
        ),
    )
    .await;
    assert_eq!(ran.json()["ok"], true, "{}", ran.text());
}

const NOTES: &str = r#"{
  "name": "Order Notes Pro", "slug": "notes-pro", "version": "1.0.0", "description": "Notes on every order",
  "author": "Partner", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": { "entities": ["read:order", "write:order_note"], "hooks": ["subscribe:order.*"] }
}"#;

#[tokio::test]
async fn partners_submit_reviewers_decide_and_approved_plugins_reach_the_catalog() {
    let f = fixture();
    let partner = sign_in(&f.app, "partner@x.test").await;
    let reviewer = sign_in(&f.app, "reviewer@x.test").await;
    let merchant = sign_in(&f.app, "a@x.test").await;
    let rival = sign_in(&f.app, "rival@x.test").await;

    // Not a package, and a package over the limit: refused before review.
    let r = send(
        &f.app,
        upload(&partner, "/v1/submissions", b"not a package".to_vec()),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        "{}",
        r.text()
    );
    let r = send(
        &f.app,
        upload(&partner, "/v1/submissions", vec![0; 21 << 20]),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    // A reviewer, or a merchant, acting as a developer.
    for who in [&reviewer, &merchant] {
        let r = send(&f.app, upload(who, "/v1/submissions", package_of(NOTES))).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "role")
        );
    }
    let no_csrf = Who {
        csrf: None,
        ..partner.clone()
    };
    let r = send(
        &f.app,
        upload(&no_csrf, "/v1/submissions", package_of(NOTES)),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "csrf")
    );

    let r = send(
        &f.app,
        upload(&partner, "/v1/submissions", package_of(NOTES)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let submitted = r.json();
    assert_eq!(submitted["state"], "submitted");
    assert!(submitted["report"].as_array().is_some(), "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_owned();

    // The queue: the reviewer sees it, a rival partner does not, a merchant may not look.
    let queue = send(
        &f.app,
        reviewer.request(Method::GET, "/v1/submissions?state=submitted", None),
    )
    .await
    .json();
    assert_eq!(queue["submissions"][0]["id"], id.as_str());
    let theirs = send(&f.app, rival.request(Method::GET, "/v1/submissions", None))
        .await
        .json();
    assert_eq!(theirs["submissions"], json!([]));
    let r = send(
        &f.app,
        rival.request(Method::GET, &format!("/v1/submissions/{id}"), None),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &f.app,
        merchant.request(Method::GET, "/v1/submissions", None),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "role")
    );
    let r = send(
        &f.app,
        reviewer.request(Method::GET, "/v1/submissions?state=shipped", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // The partner cannot approve their own plugin; a rejection needs feedback.
    let decide = |who: &Who, body: Value| {
        who.request(
            Method::POST,
            &format!("/v1/submissions/{id}/decision"),
            Some(body),
        )
    };
    let r = send(&f.app, decide(&partner, json!({ "approve": true }))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "role")
    );
    let r = send(
        &f.app,
        decide(&reviewer, json!({ "approve": false, "feedback": "  " })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        send(
            &f.app,
            merchant.request(Method::GET, "/v1/catalog?q=notes", None)
        )
        .await
        .json()["plugins"]
            == json!([])
    );

    let r = send(
        &f.app,
        decide(&reviewer, json!({ "approve": true, "feedback": "clean" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["state"], "published");
    let again = send(&f.app, decide(&reviewer, json!({ "approve": true }))).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);

    // In the catalog, found by a word of its description, and activated by a merchant.
    let found = send(
        &f.app,
        merchant.request(Method::GET, "/v1/catalog?q=EVERY%20ORDER", None),
    )
    .await
    .json();
    assert_eq!(found["plugins"][0]["slug"], "notes-pro", "{found}");
    let none = send(
        &f.app,
        merchant.request(Method::GET, "/v1/catalog?q=invoices", None),
    )
    .await
    .json();
    assert_eq!(none["plugins"], json!([]));
    assert_eq!(
        install(&f.app, &merchant, "shop-a", "notes-pro")
            .await
            .status,
        StatusCode::CREATED
    );

    // The same version cannot be submitted again; a rejection reaches the partner with its feedback.
    let r = send(
        &f.app,
        upload(&partner, "/v1/submissions", package_of(NOTES)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let next = send(
        &f.app,
        upload(
            &partner,
            "/v1/submissions",
            package_of(&NOTES.replace("1.0.0", "1.1.0")),
        ),
    )
    .await
    .json();
    let next_id = next["id"].as_str().unwrap();
    let r = send(
        &f.app,
        reviewer.request(
            Method::POST,
            &format!("/v1/submissions/{next_id}/decision"),
            Some(json!({ "approve": false, "feedback": "say what the notes contain" })),
        ),
    )
    .await
    .json();
    assert_eq!(r["state"], "rejected");
    let seen = send(
        &f.app,
        partner.request(Method::GET, &format!("/v1/submissions/{next_id}"), None),
    )
    .await
    .json();
    assert_eq!(seen["feedback"], "say what the notes contain");
}

#[tokio::test]
async fn merchants_rate_what_they_used_and_the_catalog_ranks_filters_and_pages() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    assert_eq!(
        install(&f.app, &admin, "shop-a", "good").await.status,
        StatusCode::CREATED
    );
    let a = sign_in(&f.app, "a@x.test").await;
    let b = sign_in(&f.app, "b@x.test").await;
    let reviewer = sign_in(&f.app, "reviewer@x.test").await;
    let rate = |who: &Who, slug: &str, body: Value| {
        who.request(
            Method::POST,
            &format!("/v1/catalog/{slug}/ratings"),
            Some(body),
        )
    };

    // Installed but never run: not used yet.
    let r = send(&f.app, rate(&a, "good", json!({ "stars": 5 }))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    assert!(r.text().contains("has not used"), "{}", r.text());
    let ran = f
        .platform
        .send_event(
            &InstallationId::new("shop-a"),
            &vodo_core::PluginId::new("good"),
            "order.created",
            "1001",
        )
        .await
        .unwrap();
    assert!(ran.result.is_ok(), "{:?}", ran.result);

    let long = "x".repeat(5000);
    let no_csrf = Who {
        csrf: None,
        ..a.clone()
    };
    for (who, slug, body, status, code) in [
        (&a, "good", json!({ "stars": 0 }), 422, "invalid"),
        (&a, "good", json!({ "stars": 6 }), 422, "invalid"),
        (&a, "good", json!({ "stars": 300 }), 400, "malformed_body"),
        (
            &a,
            "good",
            json!({ "stars": 4, "text": long }),
            422,
            "invalid",
        ),
        (
            &a,
            "good",
            json!({ "stars": 4, "extra": true }),
            400,
            "malformed_body",
        ),
        (&no_csrf, "good", json!({ "stars": 4 }), 403, "csrf"),
        (&reviewer, "good", json!({ "stars": 4 }), 403, "role"),
        (&a, "nope", json!({ "stars": 4 }), 404, "not_found"),
        // shop-b never installed it.
        (&b, "good", json!({ "stars": 1 }), 422, "invalid"),
    ] {
        let r = send(&f.app, rate(who, slug, body.clone())).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (status, code),
            "{body}: {}",
            r.text()
        );
    }
    let r = send(
        &f.app,
        rate(&a, "good", json!({ "stars": 3, "text": "ok" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Rating again replaces the earlier rating.
    let r = send(
        &f.app,
        rate(
            &a,
            "good",
            json!({ "stars": 5, "text": "notes every order" }),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let listing = send(&f.app, a.request(Method::GET, "/v1/catalog/good", None))
        .await
        .json();
    assert_eq!(
        listing["rating"],
        json!({ "mean": 5.0, "votes": 1 }),
        "{listing}"
    );
    assert_eq!(listing["reviews"][0]["text"], "notes every order");
    assert_eq!(listing["reviews"][0]["installation"], "shop-a");

    // The rated plugin ranks first; pages follow their cursor to the end.
    let page = send(&f.app, a.request(Method::GET, "/v1/catalog?limit=1", None))
        .await
        .json();
    assert_eq!(page["plugins"][0]["slug"], "good", "{page}");
    assert_eq!(page["plugins"][0]["rating"]["votes"], 1);
    let next = page["next"].as_str().unwrap().to_owned();
    let after: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let page = send(
        &f.app,
        a.request(
            Method::GET,
            &format!("/v1/catalog?limit=1&after={after}"),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(page["plugins"][0]["slug"], "hostile", "{page}");
    assert_eq!(page["next"], Value::Null, "{page}");
    let page = send(
        &f.app,
        a.request(Method::GET, "/v1/catalog?q=hostile", None),
    )
    .await
    .json();
    assert_eq!(page["plugins"].as_array().unwrap().len(), 1, "{page}");
    for (query, status, code) in [
        ("after=garbage", 400, "bad_cursor"),
        ("min_rating=9", 400, "bad_rating"),
        ("limit=0", 422, "invalid"),
        ("limit=1000", 422, "invalid"),
        ("limit=x", 400, ""),
    ] {
        let r = send(
            &f.app,
            a.request(Method::GET, &format!("/v1/catalog?{query}"), None),
        )
        .await;
        assert_eq!(r.status.as_u16(), status, "{query}: {}", r.text());
        if !code.is_empty() {
            assert_eq!(r.code(), code, "{query}");
        }
    }
}

/// A password change through the API: the current password is checked,
/// the new one must be long enough and different, the CSRF token is
/// needed; once changed, the account's other sessions are signed out, this
/// one stays, and only the new password signs in. Attempts are limited.
#[tokio::test]
async fn a_password_change_signs_the_other_sessions_out() {
    let f = fixture();
    let app = &f.app;
    let (here, there) = (
        sign_in(app, "reviewer@x.test").await,
        sign_in(app, "reviewer@x.test").await,
    );
    let change = |who: &Who, current: &str, new: &str| {
        who.request(
            Method::PUT,
            "/v1/session/password",
            Some(json!({ "current": current, "new": new })),
        )
    };
    let new = "a much longer passphrase";
    for (request, status, code) in [
        (
            change(&here, "not it at all", new),
            StatusCode::FORBIDDEN,
            "wrong_password",
        ),
        (
            change(&here, PASSWORD, "short"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_too_short",
        ),
        (
            change(&here, PASSWORD, PASSWORD),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password_unchanged",
        ),
        (
            change(
                &Who {
                    csrf: Some("stale".into()),
                    ..here.clone()
                },
                PASSWORD,
                new,
            ),
            StatusCode::FORBIDDEN,
            "csrf",
        ),
        (
            change(&Who::default(), PASSWORD, new),
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
        ),
    ] {
        let a = send(app, request).await;
        assert_eq!(a.status, status, "{code}: {}", a.text());
        assert_eq!(a.code(), code, "{}", a.text());
    }
    let mut bad = here.request(Method::PUT, "/v1/session/password", None);
    *bad.body_mut() = Body::from("{not json");
    bad.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    assert_eq!(send(app, bad).await.status, StatusCode::BAD_REQUEST);

    // Nothing changed so far: both sessions work, the old password too.
    for who in [&here, &there] {
        let a = send(app, who.request(Method::GET, "/v1/session", None)).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = send(app, change(&here, PASSWORD, new)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let a = send(app, here.request(Method::GET, "/v1/session", None)).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the session that changed it stays"
    );
    let a = send(app, there.request(Method::GET, "/v1/session", None)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "not_signed_in".into()),
        "every other session ended"
    );
    let sign_in_with = |password: &str| {
        Who::default().request(
            Method::POST,
            "/v1/session",
            Some(json!({ "email": "reviewer@x.test", "password": password })),
        )
    };
    assert_eq!(
        send(app, sign_in_with(PASSWORD)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(app, sign_in_with(new)).await.status, StatusCode::OK);

    // Five attempts a minute per account: four reached it above (the CSRF,
    // signed-out and malformed ones did not), a fifth wrong guess is told
    // it is wrong, and the sixth is refused before the password is looked
    // at, even the right one, with when to retry.
    let a = send(
        app,
        change(&here, "a wrong guess here", "yet another passphrase"),
    )
    .await;
    assert_eq!(a.code(), "wrong_password", "{}", a.text());
    let a = send(app, change(&here, new, "yet another passphrase")).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::TOO_MANY_REQUESTS, "password_limited".into()),
        "{}",
        a.text()
    );
    assert!(a.headers.contains_key(header::RETRY_AFTER));
}

/// The console's account page changes the password with a form: its CSRF
/// token is needed, the two new passwords must agree, a wrong current one
/// is said on the page, and a change comes back with a notice.
#[tokio::test]
async fn the_console_account_page_changes_the_password() {
    let f = fixture();
    let app = &f.app;
    let who = sign_in(app, "partner@x.test").await;
    let other = sign_in(app, "partner@x.test").await;
    let page = send(
        app,
        cookie_request(&who, Method::GET, "/admin/account", String::new()),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("partner@x.test") && html.contains("id=\"password-form\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/admin/account\""),
        "the navigation links it"
    );
    let post = |csrf: &str, current: &str, new: &str, confirm: &str| {
        cookie_request(
            &who,
            Method::POST,
            "/admin/account/password",
            form(&[
                ("csrf".into(), csrf.into()),
                ("current".into(), current.into()),
                ("new".into(), new.into()),
                ("confirm".into(), confirm.into()),
            ]),
        )
    };
    let csrf = who.csrf.clone().unwrap();
    let new = "a much longer passphrase";
    let a = send(app, post("stale", PASSWORD, new, new)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(app, post(&csrf, PASSWORD, new, "something else entirely")).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.text().contains("differ"), "{}", a.text());
    let a = send(app, post(&csrf, "not the password", new, new)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.text().contains("id=\"password-error\"") && a.text().contains("wrong"),
        "{}",
        a.text()
    );
    let a = send(app, post(&csrf, PASSWORD, new, new)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let to = a.headers[header::LOCATION].to_str().unwrap().to_owned();
    let done = send(app, cookie_request(&who, Method::GET, &to, String::new())).await;
    assert!(
        done.text().contains("The password is changed"),
        "{}",
        done.text()
    );
    // The other browser's session is over: the console sends it to sign in.
    let a = send(
        app,
        cookie_request(&other, Method::GET, "/admin", String::new()),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], "/admin/login");
}

/// A plugin's log lines are stored with their installation and read back
/// by the people who manage it, in order, followed with `after`, filtered
/// by level; other merchants and bad parameters are refused.
#[tokio::test]
async fn a_plugins_log_lines_are_stored_and_followed_by_its_installations_people() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    assert_eq!(
        install(&f.app, &admin, "shop-a", "good").await.status,
        StatusCode::CREATED
    );
    let logs = "/v1/installations/shop-a/plugins/good/logs";
    let read = |who: &Who, query: &str| {
        let request = who.request(Method::GET, &format!("{logs}{query}"), None);
        let app = f.app.clone();
        async move { send(&app, request).await }
    };
    let empty = read(&admin, "").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text());
    assert_eq!(empty.json()["lines"], json!([]));
    assert_eq!(empty.json()["next_after"], 0);

    for event in ["order.created", "order.paid"] {
        let sent = send(
            &f.app,
            admin.request(
                Method::POST,
                "/v1/installations/shop-a/plugins/good/events",
                Some(json!({ "event": event, "payload": "1001" })),
            ),
        )
        .await;
        assert_eq!(sent.json()["ok"], true, "{}", sent.text());
    }
    let merchant = sign_in(&f.app, "a@x.test").await;
    let page = read(&merchant, "").await.json();
    let messages: Vec<&str> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["got order.created", "got order.paid"], "{page}");
    assert_eq!(page["lines"][0]["level"], "info");
    let first = page["lines"][0]["seq"].as_u64().unwrap();
    let last = page["next_after"].as_u64().unwrap();
    assert!(last > first);
    // Following: only what came after.
    let after = read(&merchant, &format!("?after={first}")).await.json();
    assert_eq!(after["lines"].as_array().unwrap().len(), 1);
    assert_eq!(after["lines"][0]["message"], "got order.paid");
    let none = read(&merchant, &format!("?after={last}")).await.json();
    assert_eq!(none["lines"], json!([]));
    assert_eq!(none["next_after"], last, "the cursor stays put");
    assert_eq!(
        read(&merchant, "?level=warn").await.json()["lines"],
        json!([])
    );
    assert_eq!(
        read(&merchant, "?limit=1").await.json()["lines"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Stored: the database has them, with their installation.
    let stored = f
        .platform
        .store
        .query_logs(&vodo_server::LogQuery {
            installation: Some(vodo_core::InstallationId::new("shop-a")),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].line.installation.as_str(), "shop-a");

    let other = sign_in(&f.app, "b@x.test").await;
    assert_eq!(read(&other, "").await.status, StatusCode::FORBIDDEN);
    let reviewer = sign_in(&f.app, "reviewer@x.test").await;
    assert_eq!(read(&reviewer, "").await.status, StatusCode::FORBIDDEN);
    let bad = read(&admin, "?level=loud").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "bad_level");
    assert!(bad.text().contains("debug, info, warn, error"));
    assert_eq!(read(&admin, "?limit=0").await.code(), "bad_limit");
    assert_eq!(
        read(&admin, "?after=-1").await.status,
        StatusCode::BAD_REQUEST
    );

    // The console shows each merchant the lines of their own installation
    // only, on the dashboard and on the plugin's page.
    assert_eq!(
        install(&f.app, &admin, "shop-b", "good").await.status,
        StatusCode::CREATED
    );
    let sent = send(
        &f.app,
        admin.request(
            Method::POST,
            "/v1/installations/shop-b/plugins/good/events",
            Some(json!({ "event": "order.refunded", "payload": "2002" })),
        ),
    )
    .await;
    assert_eq!(sent.json()["ok"], true, "{}", sent.text());
    for (who, page, own, theirs) in [
        (
            &merchant,
            "/admin",
            "got order.created",
            "got order.refunded",
        ),
        (
            &merchant,
            "/admin/installations/shop-a/plugins/good",
            "got order.created",
            "got order.refunded",
        ),
        (&other, "/admin", "got order.refunded", "got order.created"),
        (
            &other,
            "/admin/installations/shop-b/plugins/good",
            "got order.refunded",
            "got order.created",
        ),
    ] {
        let html = send(
            &f.app,
            cookie_request(who, Method::GET, page, String::new()),
        )
        .await
        .text();
        assert!(html.contains(own), "{page}: {html}");
        assert!(
            !html.contains(theirs),
            "{page} shows another installation's log: {html}"
        );
    }
}

/// What `vodo tinker` drives a plugin with: a request to its routes, its
/// settings, the installation's records; each for the installation's
/// people only, and hostile input refused with what to send instead.
#[tokio::test]
async fn a_developer_sends_requests_sets_settings_and_writes_records_of_an_installation() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    assert_eq!(
        install(&f.app, &admin, "shop-a", "good").await.status,
        StatusCode::CREATED
    );
    let call = |who: &Who, method: Method, path: &str, body: Option<Value>| {
        let request = who.request(method, path, body);
        let app = f.app.clone();
        async move { send(&app, request).await }
    };
    let requests = "/v1/installations/shop-a/plugins/good/requests";
    let r = call(
        &admin,
        Method::POST,
        requests,
        Some(json!({ "method": "get", "path": "/status", "headers": [["x-trace", "1"]] })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["response"]["status"], 200);
    assert!(v["usage"]["wall_ms"].as_f64().unwrap() > 0.0);
    let seen = v["response"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-seen-headers")
        .map(|h| h[1].as_str().unwrap().to_owned())
        .unwrap();
    assert!(seen.contains("x-trace"), "{seen}");

    // A route the manifest does not declare is the plugin's error, not a 5xx.
    let undeclared = call(
        &admin,
        Method::POST,
        requests,
        Some(json!({ "method": "DELETE", "path": "/status" })),
    )
    .await
    .json();
    assert_eq!(undeclared["ok"], false, "{undeclared}");
    assert!(
        undeclared["error"].as_str().unwrap().contains("route"),
        "{undeclared}"
    );
    for (body, expect) in [
        (
            json!({ "method": "BREW", "path": "/status" }),
            "not a method",
        ),
        (
            json!({ "method": "GET", "path": "status" }),
            "starts with `/`",
        ),
        (
            json!({ "method": "POST", "path": "/status", "body": "x".repeat(60 * 1024) }),
            "at most",
        ),
    ] {
        let r = call(&admin, Method::POST, requests, Some(body)).await;
        assert!(r.status.is_client_error(), "{}", r.text());
        assert!(r.text().contains(expect), "{}", r.text());
    }
    let other = sign_in(&f.app, "b@x.test").await;
    let r = call(
        &other,
        Method::POST,
        requests,
        Some(json!({ "method": "GET", "path": "/status" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(
        &admin,
        Method::POST,
        "/v1/installations/shop-b/plugins/good/requests",
        Some(json!({ "method": "GET", "path": "/status" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());

    // Settings, as the plugin reads them.
    let settings = "/v1/installations/shop-a/plugins/good/settings";
    assert_eq!(
        call(&admin, Method::GET, settings, None).await.json()["settings"],
        json!({})
    );
    let set = call(
        &admin,
        Method::PUT,
        &format!("{settings}/greeting"),
        Some(json!({ "value": "hello" })),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let merchant = sign_in(&f.app, "a@x.test").await;
    assert_eq!(
        call(&merchant, Method::GET, settings, None).await.json()["settings"],
        json!({ "greeting": "hello" })
    );
    use vodo_sandbox::HostServices as _;
    assert_eq!(
        f.platform
            .store
            .get_setting(
                &vodo_core::InstallationId::new("shop-a"),
                &vodo_core::PluginId::new("good"),
                "greeting"
            )
            .unwrap()
            .as_deref(),
        Some("hello")
    );
    let bad_key = call(
        &admin,
        Method::PUT,
        &format!("{settings}/a%20b"),
        Some(json!({ "value": "x" })),
    )
    .await;
    assert_eq!(
        (bad_key.status, bad_key.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_id")
    );
    let big = call(
        &admin,
        Method::PUT,
        &format!("{settings}/big"),
        Some(json!({ "value": "x".repeat(17 * 1024) })),
    )
    .await;
    assert_eq!(
        big.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        big.text()
    );
    assert_eq!(
        call(&other, Method::GET, settings, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &admin,
            Method::GET,
            "/v1/installations/shop-b/plugins/good/settings",
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // Records: the ones the installation's plugins read and write.
    let order = "/v1/installations/shop-a/records/order/2001";
    let put = call(&admin, Method::PUT, order, Some(json!({ "total": "5.00" }))).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert_eq!(put.json()["created"], true);
    let again = call(&admin, Method::PUT, order, Some(json!({ "total": "6.00" }))).await;
    assert_eq!(again.json()["created"], false);
    assert_eq!(
        call(&merchant, Method::GET, order, None).await.json(),
        json!({ "total": "6.00" })
    );
    let sent = call(
        &admin,
        Method::POST,
        "/v1/installations/shop-a/plugins/good/events",
        Some(json!({ "event": "order.created", "payload": "2001" })),
    )
    .await;
    assert_eq!(sent.json()["ok"], true, "{}", sent.text());
    assert_eq!(
        call(
            &admin,
            Method::GET,
            "/v1/installations/shop-a/records/order_note/2001",
            None
        )
        .await
        .json(),
        json!({ "order": "2001", "seen": true }),
        "the plugin saw the record written through the API"
    );
    let missing = call(
        &admin,
        Method::GET,
        "/v1/installations/shop-a/records/order/404",
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad_kind = call(
        &admin,
        Method::GET,
        "/v1/installations/shop-a/records/or%20der/1",
        None,
    )
    .await;
    assert_eq!(bad_kind.code(), "bad_id");
    assert_eq!(
        call(&other, Method::GET, order, None).await.status,
        StatusCode::FORBIDDEN
    );
    let reviewer = sign_in(&f.app, "reviewer@x.test").await;
    assert_eq!(
        call(&reviewer, Method::PUT, order, Some(json!({})))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}
