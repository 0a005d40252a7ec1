//! The OpenAPI document: it parses as OpenAPI 3.1, and every operation in it
//! is sent a request here and answers with one of the statuses the document
//! lists for it (so no documented route is missing, and none answers
//! something undocumented). The explorer lists every operation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use vodo_sandbox::HostServices;

/// A body each operation that takes one accepts.
fn body_for(method: &str, path: &str) -> Option<Value> {
    Some(match (method, path) {
        ("post", "/v1/session") => json!({ "email": "admin@x.test", "password": PASSWORD }),
        ("post", "/v1/installations/{installation}/plugins") => {
            return None; // sent by the fixture's consent-aware helper
        }
        ("post", p) if p.ends_with("/events") => {
            json!({ "event": "order.created", "payload": "1001" })
        }
        ("post", p) if p.ends_with("/keys") => {
            json!({ "name": "doc", "scopes": ["entities:read:order"] })
        }
        ("post", p) if p.ends_with("/rotate") => json!({ "grace_seconds": 60 }),
        ("post", p) if p.ends_with("/decision") => json!({ "approve": true }),
        ("post", "/v1/apps") => {
            json!({ "name": "Doc app", "redirect_uris": ["https://app.example/cb"], "scopes": ["entities:read:order"] })
        }
        ("post", "/v1/webhooks/endpoints/{id}/test") => json!({ "event_type": "order.created" }),
        ("put", p) if p.ends_with("/updates") => {
            json!({ "channel": "stable", "policy": "minor", "pinned": false })
        }
        ("post", p) if p.ends_with("/rollback") => json!({ "version": "1.0.0" }),
        ("post", p) if p.ends_with("/requests") => json!({ "method": "GET", "path": "/status" }),
        ("put", p) if p.contains("/settings/") => json!({ "value": "hello" }),
        ("post", p) if p.ends_with("/upgrade") => json!({ "version": "1.0.2" }),
        ("put", "/v1/session/password") => {
            json!({ "current": PASSWORD, "new": "an entirely new passphrase" })
        }
        ("put", _) => json!({ "total": "1" }),
        _ => return None,
    })
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_in_it_answers_as_documented() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    let doc = send(
        &f.app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(doc.status, StatusCode::OK);
    let spec = oas3::from_json(doc.text()).unwrap_or_else(|e| panic!("not OpenAPI 3.1: {e}"));
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let doc = doc.json();

    // What the requests need: an installed plugin and one of its keys.
    assert_eq!(
        install(&f.app, &admin, "shop-a", "good").await.status,
        StatusCode::CREATED
    );
    // A back end with every resource of the platform, and a record of each.
    let records = r#"{
      "name": "Records", "slug": "records", "version": "1.0.0", "description": "reads and writes",
      "author": "Alice", "license": "MIT", "entry": "good.wasm",
      "permissions": {
        "entities": ["write:order", "write:product", "write:customer", "write:order_note"],
        "hooks": ["subscribe:order.*"],
        "api": { "rate_limit": "1000/minute", "endpoints": ["orders", "products", "customers"] }
      }
    }"#;
    f.platform
        .add_package(records, &test_support::guest("good"), None)
        .unwrap();
    assert_eq!(
        install(&f.app, &admin, "shop-a", "records").await.status,
        StatusCode::CREATED
    );
    // Later releases of `records`, running the first of them, to roll back
    // from and upgrade to (and one to yank).
    for version in ["1.0.1", "1.0.2"] {
        f.platform
            .add_package(
                &records.replace("1.0.0", version),
                &test_support::guest("good"),
                None,
            )
            .unwrap();
    }
    f.platform
        .upgrade_to(
            &vodo_core::InstallationId::new("shop-a"),
            &vodo_core::PluginId::new("records"),
            &semver::Version::new(1, 0, 1),
            &[],
            "admin@x.test",
        )
        .unwrap();
    let a_package = std::fs::read_dir(f.platform.config().data.join("index/targets"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    for kind in ["order", "product", "customer"] {
        f.platform
            .store
            .put_entity(
                &vodo_core::InstallationId::new("shop-a"),
                kind,
                "1001",
                "{}",
            )
            .unwrap();
    }
    let issued = send(
        &f.app,
        admin.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/records/keys",
            Some(json!({ "name": "records", "scopes": ["entities:write"] })),
        ),
    )
    .await
    .json();
    let secret = issued["key"].as_str().unwrap().to_owned();

    // Reads first, then writes, then deletes (the session's last).
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    let rank = |path: &str, method: &str| match method {
        "get" => 0,
        "post" | "put" => 1,
        _ if path == "/v1/session" => 4,
        _ if path.ends_with("/plugins/{plugin}") => 3,
        _ => 2,
    };
    ops.sort_by_key(|(path, method, _)| (rank(path, method), path.clone()));
    assert!(ops.len() >= 24, "{} operations", ops.len());

    let mut key_id = issued["id"].as_str().unwrap().to_owned();
    // A submission waiting for review, for the marketplace's operations.
    let notes = |version: &str| {
        format!(
            r#"{{"name":"Notes","slug":"notes","version":"{version}","description":"notes","author":"A","license":"MIT","entry":"good.wasm","permissions":{{"entities":["read:order","write:order_note"],"hooks":["subscribe:order.*"]}}}}"#
        )
    };
    let admin_session = vodo_server::Session {
        email: "admin@x.test".into(),
        role: vodo_server::Role::Admin,
        csrf: String::new(),
    };
    let waiting = f
        .platform
        .submit(&admin_session, &package_of(&notes("1.0.0")))
        .unwrap();
    // An app with an endpoint (a receiver on loopback) and a message sent to it.
    let (client, app_secret) = f
        .platform
        .register_app(
            &admin_session,
            &vodo_server::NewApp {
                name: "Doc hooks".into(),
                kind: vodo_oauth::model::ClientKind::Confidential,
                redirect_uris: vec!["https://app.example/cb".into()],
                scopes: ["entities:read:order".parse().unwrap()]
                    .into_iter()
                    .collect(),
            },
        )
        .unwrap();
    let client_secret = app_secret.unwrap().expose_secret().to_owned();
    let mut consent_fields: Vec<(String, String)> = Vec::new();
    let mut device_fields: Vec<(String, String)> = Vec::new();
    let (hook_url, _deliveries) = receiver(vec![200]);
    let hook = f
        .platform
        .add_endpoint(
            &admin_session,
            &vodo_server::NewEndpoint {
                client_id: client.id.clone(),
                url: hook_url,
                event_types: vec!["order.*".into()],
                installation: None,
            },
        )
        .unwrap();
    // Sent to the endpoint while shop A lets the app read orders; the
    // consent is then withdrawn, for the consent page's operations below.
    consent(&f.platform, "shop-a", &client.id, &["entities:read:order"]);
    let message = f
        .platform
        .publish(
            "order.created",
            &vodo_core::InstallationId::new("shop-a"),
            json!({ "id": "1001" }),
        )
        .unwrap();
    f.platform
        .oauth
        .revoke_consent(&vodo_core::InstallationId::new("shop-a"), &client.id)
        .unwrap();
    // A merchant whose installation has run `records`, for rating it.
    let merchant = sign_in(&f.app, "a@x.test").await;
    let ran = f
        .platform
        .send_event(
            &vodo_core::InstallationId::new("shop-a"),
            &vodo_core::PluginId::new("records"),
            "order.created",
            "1001",
        )
        .await
        .unwrap();
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    for (path, method, op) in &ops {
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{method} {path} has no summary"
        );
        let url = path
            .replace("{installation}", "shop-a")
            .replace("{plugin}", "records")
            .replace("{key}", &key_id)
            .replace("{slug}", "records")
            .replace("{version}", "1.0.1")
            .replace("{client_id}", &client.id)
            .replace("{file}", "timestamp.json")
            .replace("{kind}", "order")
            .replace("{package}", &a_package)
            .replace(
                "{id}",
                if path.starts_with("/v1/submissions") {
                    &waiting.id
                } else if path.starts_with("/v1/webhooks/endpoints") {
                    &hook.id
                } else if path.starts_with("/v1/webhooks/messages") {
                    &message
                } else {
                    "1001"
                },
            );
        let body = match (method.as_str(), path.as_str()) {
            ("post", "/v1/webhooks/endpoints") => Some(json!({
                "client_id": client.id, "url": "https://hooks.example/in", "event_types": ["order.*"],
            })),
            ("post", "/v1/catalog/{slug}/ratings") => Some(json!({ "stars": 5, "text": "works" })),
            ("post", "/v1/webhooks/messages/{id}/redeliver") => {
                Some(json!({ "endpoint_id": hook.id }))
            }
            _ => body_for(method, path),
        };
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = if path.starts_with("/oauth/") || path.starts_with("/.well-known/") {
            let credentials = [
                ("client_id".to_owned(), client.id.clone()),
                ("client_secret".to_owned(), client_secret.clone()),
            ];
            let token = [("token".to_owned(), "vodo_at_unknown".to_owned())];
            match (method.as_str(), path.as_str()) {
                ("get", "/oauth/authorize") => {
                    let query = format!(
                        "response_type=code&client_id={}&redirect_uri={}&scope=entities%3Aread%3Aorder&state=s&code_challenge={}&code_challenge_method=S256",
                        client.id,
                        enc("https://app.example/cb"),
                        vodo_oauth::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                    );
                    let page = send(
                        &f.app,
                        cookie_request(
                            &merchant,
                            Method::GET,
                            &format!("{url}?{query}"),
                            String::new(),
                        ),
                    )
                    .await;
                    consent_fields = hidden_fields(&page.text());
                    page
                }
                ("post", "/oauth/authorize") => {
                    let mut fields = consent_fields.clone();
                    fields.push(("decision".into(), "allow".into()));
                    send(
                        &f.app,
                        cookie_request(&merchant, Method::POST, &url, form(&fields)),
                    )
                    .await
                }
                ("get", "/oauth/device") => {
                    // The page comes after `vodo login` asked for a code.
                    let started = send(
                        &f.app,
                        cookie_request(
                            &Who::default(),
                            Method::POST,
                            "/oauth/device_authorization",
                            form(&[("client_id".into(), vodo_server::CLI_CLIENT.into())]),
                        ),
                    )
                    .await;
                    let code = started.json()["user_code"].as_str().unwrap().to_owned();
                    let page = send(
                        &f.app,
                        cookie_request(
                            &merchant,
                            Method::GET,
                            &format!("{url}?user_code={code}"),
                            String::new(),
                        ),
                    )
                    .await;
                    device_fields = hidden_fields(&page.text());
                    page
                }
                ("post", "/oauth/device") => {
                    let mut fields = device_fields.clone();
                    fields.push(("decision".into(), "allow".into()));
                    send(
                        &f.app,
                        cookie_request(&merchant, Method::POST, &url, form(&fields)),
                    )
                    .await
                }
                ("post", "/oauth/device_authorization") => {
                    send(
                        &f.app,
                        cookie_request(
                            &Who::default(),
                            Method::POST,
                            &url,
                            form(&[("client_id".into(), vodo_server::CLI_CLIENT.into())]),
                        ),
                    )
                    .await
                }
                ("post", "/oauth/token") => {
                    let mut fields = vec![
                        ("grant_type".to_owned(), "client_credentials".to_owned()),
                        ("scope".to_owned(), "entities:read:order".to_owned()),
                    ];
                    fields.extend(credentials);
                    send(
                        &f.app,
                        cookie_request(&Who::default(), Method::POST, &url, form(&fields)),
                    )
                    .await
                }
                ("post", _) => {
                    let mut fields = token.to_vec();
                    fields.extend(credentials);
                    send(
                        &f.app,
                        cookie_request(&Who::default(), Method::POST, &url, form(&fields)),
                    )
                    .await
                }
                _ => send(&f.app, Who::default().request(http_method, &url, None)).await,
            }
        } else if path.starts_with("/api/") {
            let body = body_for(method, path).map(|b| b.to_string());
            send(
                &f.app,
                key_request(&secret, http_method, &url, body.as_deref()),
            )
            .await
        } else if method == "post" && path == "/v1/installations/{installation}/plugins" {
            install(&f.app, &admin, "shop-a", "good").await
        } else if method == "post" && path == "/v1/catalog/{slug}/ratings" {
            send(&f.app, merchant.request(http_method, &url, body)).await
        } else if method == "post" && path == "/v1/submissions" {
            send(&f.app, upload(&admin, &url, package_of(&notes("2.0.0")))).await
        } else if method == "post" && path == "/v1/session" {
            // A sign-in of its own, so that the admin's session stays.
            send(
                &f.app,
                Who::default().request(http_method, &url, body_for(method, path)),
            )
            .await
        } else {
            send(&f.app, admin.request(http_method, &url, body)).await
        };
        let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
        assert!(
            documented.contains(&&answer.status.as_u16().to_string()),
            "{} {url} answered {} (documented: {documented:?}): {}",
            method.to_uppercase(),
            answer.status,
            answer.text()
        );
        // The consent form's answer is the redirect back to the app.
        let redirected = path == "/oauth/authorize" && method == "post";
        assert!(
            answer.status.is_success() || (redirected && answer.status == StatusCode::FOUND),
            "{method} {url}: {}",
            answer.text()
        );
        if path.ends_with("/rotate") {
            key_id = answer.json()["id"].as_str().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn the_explorer_lists_every_operation_and_fills_in_reads() {
    let f = fixture();
    let doc = send(
        &f.app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await
    .json();
    let page = send(
        &f.app,
        Request::get("/api-docs").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} is not on the page"
        );
    }
    let r = send(
        &f.app,
        Request::get("/api-docs/try?path=%2Fv1%2Finstallations%2F%7Binstallation%7D%2Fplugins&installation=shop%20a")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        "/v1/installations/shop%20a/plugins"
    );
    for bad in [
        "/api-docs/try?path=%2Fetc%2Fpasswd",
        "/api-docs/try?path=%2Fv1%2Faudit%2Fverify",
        "/api-docs/try?path=%2Fv1%2Finstallations%2F%7Binstallation%7D%2Fplugins",
        "/api-docs/try",
    ] {
        let r = send(&f.app, Request::get(bad).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}
