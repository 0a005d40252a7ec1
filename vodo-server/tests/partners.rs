//! Partner apps over HTTP: registered by partners, authorized by merchants
//! through the mounted OAuth provider, reading and writing records with
//! their tokens within the consented scopes; and their webhooks: endpoints,
//! signed deliveries, the delivery log, redelivery and the test tool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::{Who, cookie_request, enc, fixture, form, hidden_fields, receiver, send, sign_in};
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use vodo_core::audit::{AuditFilter, AuditKind};
use vodo_oauth::pkce_challenge;
use vodo_oauth::webhooks::{WebhookSecret, verify};

/// A partner's confidential app, registered over HTTP: (client id, secret).
async fn register(app: &Router, partner: &Who, scopes: &[&str]) -> (String, String) {
    let a = send(
        app,
        partner.request(
            Method::POST,
            "/v1/apps",
            Some(json!({
                "name": "Acme Sync",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "scopes": scopes,
            })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let v = a.json();
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// The merchant `merchant` authorizes the app for `scope` on the consent
/// page; the app exchanges the code for an access token.
async fn authorize(app: &Router, merchant: &Who, client: &(String, String), scope: &str) -> String {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope={}&state=s1&code_challenge={}&code_challenge_method=S256",
        client.0,
        enc("http://127.0.0.1/callback"),
        enc(scope),
        pkce_challenge(verifier)
    );
    let page = send(
        app,
        cookie_request(
            merchant,
            Method::GET,
            &format!("/oauth/authorize?{query}"),
            String::new(),
        ),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("Acme Sync"), "{}", page.text());
    let mut fields = hidden_fields(&page.text());
    fields.push(("decision".into(), "allow".into()));
    let consented = send(
        app,
        cookie_request(merchant, Method::POST, "/oauth/authorize", form(&fields)),
    )
    .await;
    assert_eq!(consented.status, StatusCode::FOUND, "{}", consented.text());
    let location = consented.headers[header::LOCATION].to_str().unwrap();
    let back: HashMap<String, String> = url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let exchanged = send(
        app,
        cookie_request(
            &Who::default(),
            Method::POST,
            "/oauth/token",
            form(&[
                ("grant_type".into(), "authorization_code".into()),
                ("code".into(), back["code"].clone()),
                ("redirect_uri".into(), "http://127.0.0.1/callback".into()),
                ("code_verifier".into(), verifier.into()),
                ("client_id".into(), client.0.clone()),
                ("client_secret".into(), client.1.clone()),
            ]),
        ),
    )
    .await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text());
    exchanged.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A form POST (an OAuth endpoint's, a consent page's) as `who`.
async fn post_form(app: &Router, who: &Who, path: &str, pairs: &[(&str, &str)]) -> common::Answer {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    send(app, cookie_request(who, Method::POST, path, form(&pairs))).await
}

fn bearer(token: &str, method: Method, path: &str, body: Option<Value>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn partner_apps_read_and_write_records_within_what_the_merchant_consented_to() {
    let f = fixture();
    let app = &f.app;
    let partner = sign_in(app, "partner@x.test").await;
    let rival = sign_in(app, "rival@x.test").await;
    let merchant = sign_in(app, "a@x.test").await;
    let reviewer = sign_in(app, "reviewer@x.test").await;

    // Registering apps: partners only, with their CSRF token, valid bodies.
    let a = send(
        app,
        merchant.request(
            Method::POST,
            "/v1/apps",
            Some(json!({ "name": "x", "redirect_uris": [], "scopes": [] })),
        ),
    )
    .await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "role".into()));
    let a = send(app, reviewer.request(Method::GET, "/v1/apps", None)).await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "role".into()));
    let no_csrf = Who {
        csrf: None,
        ..partner.clone()
    };
    let a = send(
        app,
        no_csrf.request(
            Method::POST,
            "/v1/apps",
            Some(json!({ "name": "x", "redirect_uris": [], "scopes": [] })),
        ),
    )
    .await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "csrf".into()));
    for (body, code) in [
        (
            json!({ "name": "x", "redirect_uris": ["ftp://a"], "scopes": [] }),
            "invalid",
        ),
        (
            json!({ "name": "x", "redirect_uris": [], "scopes": ["root:everything"] }),
            "bad_scope",
        ),
        (
            json!({ "name": "x", "redirect_uris": [], "scopes": [], "kind": "secretive" }),
            "invalid",
        ),
    ] {
        let a = send(
            app,
            partner.request(Method::POST, "/v1/apps", Some(body.clone())),
        )
        .await;
        assert!(a.status.is_client_error(), "{body}: {}", a.text());
        assert_eq!(a.code(), code, "{body}: {}", a.text());
    }

    let client = register(
        app,
        &partner,
        &["entities:read:order", "entities:write:order"],
    )
    .await;
    let listed = send(app, partner.request(Method::GET, "/v1/apps", None))
        .await
        .json();
    assert_eq!(
        listed["apps"][0]["client_id"],
        client.0.as_str(),
        "{listed}"
    );
    assert!(
        listed["apps"][0].get("client_secret").is_none(),
        "secrets are shown once"
    );
    let theirs = send(app, rival.request(Method::GET, "/v1/apps", None))
        .await
        .json();
    assert_eq!(
        theirs["apps"],
        json!([]),
        "another partner's apps are not listed"
    );

    // The merchant of shop-a authorizes reading orders only.
    let token = authorize(app, &merchant, &client, "entities:read:order").await;
    assert!(token.starts_with("vodo_at_"));

    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["total"], "10");
    let policy = a.headers["ratelimit-policy"].to_str().unwrap();
    assert_eq!(policy, "\"app\";q=120;w=60");

    // Another installation's record does not exist for this token.
    let a = send(app, bearer(&token, Method::GET, "/api/orders/2002", None)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );

    // Writing needs a scope the merchant did not grant: 403 naming it, audited.
    let a = send(
        app,
        bearer(
            &token,
            Method::PUT,
            "/api/orders/1001",
            Some(json!({ "total": "0" })),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::FORBIDDEN, "missing_scope".into()),
        "{}",
        a.text()
    );
    assert_eq!(a.json()["scope"], "entities:write:order");
    let denied = f
        .platform
        .audit(&AuditFilter {
            kinds: vec![AuditKind::PermissionDenied],
            ..AuditFilter::default()
        })
        .unwrap();
    assert!(
        denied.iter().any(|r| {
            let text = serde_json::to_string(&r.event).unwrap();
            text.contains(&client.0) && text.contains("shop-a")
        }),
        "the denial is in the audit trail: {denied:?}"
    );

    // Forged, malformed and missing credentials.
    let a = send(
        app,
        bearer("vodo_at_forged", Method::GET, "/api/orders/1001", None),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    assert!(
        a.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let a = send(
        app,
        Request::get("/api/orders/1001")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "missing_key".into())
    );

    // A client-credentials token acts for no installation.
    let cc = post_form(
        app,
        &Who::default(),
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "entities:read:order"),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await;
    assert_eq!(cc.status, StatusCode::OK, "{}", cc.text());
    let cc = cc.json()["access_token"].as_str().unwrap().to_owned();
    let a = send(app, bearer(&cc, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::FORBIDDEN, "no_installation".into())
    );

    // A revoked token stops working at once.
    let revoked = send(
        app,
        cookie_request(
            &Who::default(),
            Method::POST,
            "/oauth/revoke",
            form(&[
                ("token".into(), token.clone()),
                ("client_id".into(), client.0.clone()),
                ("client_secret".into(), client.1.clone()),
            ]),
        ),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );

    // Only a merchant's session can consent; an admin's cannot.
    let admin = sign_in(app, "admin@x.test").await;
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=entities:read:order&code_challenge={}&code_challenge_method=S256",
        client.0,
        enc("http://127.0.0.1/callback"),
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    );
    let a = send(
        app,
        cookie_request(
            &admin,
            Method::GET,
            &format!("/oauth/authorize?{query}"),
            String::new(),
        ),
    )
    .await;
    // Signed in, but not for a store: forbidden, with who can consent.
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert!(a.text().contains("sign in as the merchant"), "{}", a.text());
}

async fn run_due(f: &common::Fixture) -> usize {
    let p = f.platform.clone();
    tokio::task::spawn_blocking(move || p.webhooks.run_due().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn webhooks_are_delivered_signed_logged_redelivered_and_tested() {
    let f = fixture();
    let app = &f.app;
    let partner = sign_in(app, "partner@x.test").await;
    let rival = sign_in(app, "rival@x.test").await;
    let merchant = sign_in(app, "a@x.test").await;
    let client = register(
        app,
        &partner,
        &["entities:read:order", "entities:write:order"],
    )
    .await;
    let rival_client = register(app, &rival, &["entities:read:order"]).await;

    // The receiver fails the first delivery, then takes everything.
    let (url, received) = receiver(vec![500, 200]);
    let endpoint = |client_id: &str, url: &str, types: Value| json!({ "client_id": client_id, "url": url, "event_types": types });
    for (body, status, code) in [
        (
            endpoint(&client.0, "ftp://127.0.0.1/x", json!(["order.*"])),
            422,
            "invalid",
        ),
        (
            endpoint(&client.0, "not a url", json!(["order.*"])),
            422,
            "invalid",
        ),
        (
            endpoint(&client.0, &url, json!(["order created!"])),
            422,
            "invalid",
        ),
        (endpoint(&client.0, &url, json!([])), 422, "invalid"),
        (
            endpoint(&rival_client.0, &url, json!(["order.*"])),
            404,
            "not_found",
        ),
        (
            json!({ "client_id": client.0, "url": url }),
            400,
            "malformed_body",
        ),
        (
            json!({ "client_id": client.0, "url": url, "event_types": ["a"], "extra": 1 }),
            400,
            "malformed_body",
        ),
    ] {
        let a = send(
            app,
            partner.request(Method::POST, "/v1/webhooks/endpoints", Some(body.clone())),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (status, code.into()),
            "{body}: {}",
            a.text()
        );
    }
    let huge = "x".repeat(70 * 1024);
    let a = send(
        app,
        partner.request(
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(endpoint(&client.0, &huge, json!(["order.*"]))),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    let a = send(
        app,
        merchant.request(
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(endpoint(&client.0, &url, json!(["order.*"]))),
        ),
    )
    .await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "role".into()));

    let added = send(
        app,
        partner.request(
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(endpoint(&client.0, &url, json!(["order.*"]))),
        ),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
    let added = added.json();
    let endpoint_id = added["id"].as_str().unwrap().to_owned();
    let secret = WebhookSecret::parse(added["secret"].as_str().unwrap()).unwrap();
    let shown = send(
        app,
        partner.request(
            Method::GET,
            &format!("/v1/webhooks/endpoints/{endpoint_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(
        shown.json().get("secret").is_none(),
        "the secret is shown once"
    );
    let a = send(
        app,
        rival.request(
            Method::GET,
            &format!("/v1/webhooks/endpoints/{endpoint_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "another partner's endpoint is not found"
    );
    let list = send(
        app,
        rival.request(Method::GET, "/v1/webhooks/endpoints", None),
    )
    .await
    .json();
    assert_eq!(list["endpoints"], json!([]));

    // A record written through the API is an `order.created` event.
    let token = authorize(
        app,
        &merchant,
        &client,
        "entities:read:order entities:write:order",
    )
    .await;
    let a = send(
        app,
        bearer(
            &token,
            Method::PUT,
            "/api/orders/3003",
            Some(json!({ "total": "33" })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let a = send(
        app,
        bearer(
            &token,
            Method::PUT,
            "/api/orders/3003",
            Some(json!({ "total": "34" })),
        ),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "a second write replaces: {}",
        a.text()
    );

    assert_eq!(
        run_due(&f).await,
        2,
        "order.created and order.updated are due"
    );
    let first = received.recv_timeout(Duration::from_secs(30)).unwrap();
    let second = received.recv_timeout(Duration::from_secs(30)).unwrap();
    for r in [&first, &second] {
        verify(
            &secret,
            &r.headers["webhook-id"],
            &r.headers["webhook-timestamp"],
            &r.headers["webhook-signature"],
            r.body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("the delivery is signed with the endpoint's secret: {e:?}"));
    }
    let bodies: Vec<Value> = [&first, &second]
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let created = bodies
        .iter()
        .find(|b| b["type"] == "order.created")
        .unwrap();
    assert_eq!(created["data"]["id"], "3003");
    assert_eq!(created["data"]["order"]["total"], "33");

    // The delivery log: one failed (500) and pending a retry, one delivered.
    let log = send(
        app,
        partner.request(Method::GET, "/v1/webhooks/messages", None),
    )
    .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text());
    let messages = log.json()["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:?}");
    // The first request the receiver took is the one it answered 500.
    let failed_id = first.headers["webhook-id"].clone();
    let failed = messages
        .iter()
        .find(|m| m["id"] == failed_id.as_str())
        .unwrap();
    assert_eq!(failed["deliveries"][0]["status"], "pending", "{failed}");
    assert_eq!(failed["deliveries"][0]["attempts"], 1);
    let detail = send(
        app,
        partner.request(
            Method::GET,
            &format!("/v1/webhooks/messages/{failed_id}"),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(detail["attempts"][0]["status"], 500, "{detail}");
    assert_eq!(detail["attempts"][0]["response"], "received 1");
    assert_eq!(detail["attempts"][0]["endpoint_id"], endpoint_id.as_str());

    // Another partner sees none of it.
    let theirs = send(
        app,
        rival.request(Method::GET, "/v1/webhooks/messages", None),
    )
    .await
    .json();
    assert_eq!(theirs["messages"], json!([]));
    let a = send(
        app,
        rival.request(
            Method::GET,
            &format!("/v1/webhooks/messages/{failed_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(
        app,
        rival.request(
            Method::POST,
            &format!("/v1/webhooks/messages/{failed_id}/redeliver"),
            Some(json!({ "endpoint_id": endpoint_id })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text());

    // Redelivered with the same id, now.
    let a = send(
        app,
        partner.request(
            Method::POST,
            &format!("/v1/webhooks/messages/{failed_id}/redeliver"),
            Some(json!({ "endpoint_id": endpoint_id })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text());
    assert_eq!(run_due(&f).await, 1);
    let again = received.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(
        again.headers["webhook-id"], failed_id,
        "a redelivery keeps the id"
    );
    let detail = send(
        app,
        partner.request(
            Method::GET,
            &format!("/v1/webhooks/messages/{failed_id}"),
            None,
        ),
    )
    .await
    .json();
    let statuses: Vec<&str> = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"delivered"), "{detail}");

    // The test tool: a signed sample, the answer shown.
    let tested = send(
        app,
        partner.request(
            Method::POST,
            &format!("/v1/webhooks/endpoints/{endpoint_id}/test"),
            Some(json!({ "event_type": "order.created" })),
        ),
    )
    .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text());
    let tested = tested.json();
    assert_eq!(
        (tested["ok"].clone(), tested["status"].clone()),
        (json!(true), json!(200)),
        "{tested}"
    );
    let sample = received.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(sample.body.contains("order.created"));
    verify(
        &secret,
        &sample.headers["webhook-id"],
        &sample.headers["webhook-timestamp"],
        &sample.headers["webhook-signature"],
        sample.body.as_bytes(),
    )
    .unwrap();

    // Paging is bounded.
    let a = send(
        app,
        partner.request(Method::GET, "/v1/webhooks/messages?per_page=1000", None),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::BAD_REQUEST, "bad_page".into())
    );
    let a = send(
        app,
        partner.request(Method::GET, "/v1/webhooks/messages?per_page=1&page=1", None),
    )
    .await
    .json();
    assert_eq!(a["messages"].as_array().unwrap().len(), 1);

    // Disabled: nothing more is sent, and redelivery says why not.
    let a = send(
        app,
        partner.request(
            Method::DELETE,
            &format!("/v1/webhooks/endpoints/{endpoint_id}"),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = send(
        app,
        bearer(&token, Method::DELETE, "/api/orders/3003", None),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(run_due(&f).await, 0, "no delivery to a disabled endpoint");
    let a = send(
        app,
        partner.request(
            Method::POST,
            &format!("/v1/webhooks/messages/{failed_id}/redeliver"),
            Some(json!({ "endpoint_id": endpoint_id })),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid".into()),
        "{}",
        a.text()
    );
    assert!(a.text().contains("disabled"), "{}", a.text());

    // The admin sees every message.
    let admin = sign_in(app, "admin@x.test").await;
    let all = send(
        app,
        admin.request(Method::GET, "/v1/webhooks/messages", None),
    )
    .await
    .json();
    assert_eq!(all["messages"].as_array().unwrap().len(), 3, "{all}");
}

/// A merchant sees the apps their store is connected to and disconnects
/// one: every token issued under that consent stops working at once, the
/// revocation is audited, and nobody else can list or disconnect them.
#[tokio::test]
async fn a_merchant_disconnects_an_app_and_its_tokens_stop_at_once() {
    let f = fixture();
    let app = &f.app;
    let partner = sign_in(app, "partner@x.test").await;
    let merchant = sign_in(app, "a@x.test").await;
    let client = register(app, &partner, &["entities:read:order"]).await;
    let token = authorize(app, &merchant, &client, "entities:read:order").await;
    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    let listed = send(
        app,
        merchant.request(Method::GET, "/v1/installations/shop-a/apps", None),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let apps = listed.json()["apps"].as_array().unwrap().clone();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["client_id"], client.0.as_str());
    assert_eq!(apps[0]["scopes"], json!(["entities:read:order"]));
    assert_eq!(apps[0]["granted_by"], "a@x.test");

    // Nobody but the store's merchant (or the admin) lists or disconnects.
    let other = sign_in(app, "b@x.test").await;
    let path = format!("/v1/installations/shop-a/apps/{}", client.0);
    for who in [&other, &partner, &sign_in(app, "reviewer@x.test").await] {
        let a = send(
            app,
            who.request(Method::GET, "/v1/installations/shop-a/apps", None),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
        let a = send(app, who.request(Method::DELETE, &path, None)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    }
    let stale = Who {
        csrf: Some("stale".into()),
        ..merchant.clone()
    };
    let a = send(app, stale.request(Method::DELETE, &path, None)).await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "csrf".into()));
    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(a.status, StatusCode::OK, "refused attempts changed nothing");

    // The console lists it with a Disconnect button; the form needs its token.
    let page = send(
        app,
        cookie_request(&merchant, Method::GET, "/admin/apps", String::new()),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains(&client.0) && html.contains("Read your order records"),
        "{html}"
    );
    let action = format!("/admin/installations/shop-a/apps/{}/disconnect", client.0);
    let a = send(
        app,
        cookie_request(
            &merchant,
            Method::POST,
            &action,
            form(&[("csrf".into(), "stale".into())]),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(
        app,
        cookie_request(
            &merchant,
            Method::POST,
            &action,
            form(&[("csrf".into(), merchant.csrf.clone().unwrap())]),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(
        (a.status, a.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    let a = send(app, merchant.request(Method::DELETE, &path, None)).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text());
    let listed = send(
        app,
        merchant.request(Method::GET, "/v1/installations/shop-a/apps", None),
    )
    .await;
    assert_eq!(listed.json()["apps"], json!([]));
    let audited = f
        .platform
        .audit(&vodo_core::audit::AuditFilter {
            installation: Some(vodo_core::InstallationId::new("shop-a")),
            kinds: vec![vodo_core::audit::AuditKind::AppAccess],
            ..Default::default()
        })
        .unwrap();
    // The merchant's consent on the authorization page, then the
    // disconnection, both by the merchant.
    let changes: Vec<_> = audited
        .iter()
        .map(|r| match &r.event.action {
            vodo_core::audit::AuditAction::AppAccess {
                client_id,
                change,
                by,
            } => (client_id.clone(), change.clone(), by.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let by = |change: &str| (client.0.clone(), change.to_owned(), "a@x.test".to_owned());
    assert_eq!(changes, [by("granted"), by("revoked")]);

    // Authorized again, then disconnected through the API.
    let token = authorize(app, &merchant, &client, "entities:read:order").await;
    let a = send(app, merchant.request(Method::DELETE, &path, None)).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    let a = send(app, bearer(&token, Method::GET, "/api/orders/1001", None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

/// A record a plugin writes through its host calls is published like one
/// written through `/api`: the app's endpoint receives `order_note.created`
/// with the record, signed, and the log shows it; but only from a store
/// whose merchant let the app read order notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_plugins_write_are_published_as_webhook_events() {
    let f = fixture();
    let app = &f.app;
    let partner = sign_in(app, "partner@x.test").await;
    let merchant = sign_in(app, "a@x.test").await;
    let other = sign_in(app, "b@x.test").await;
    let client = register(
        app,
        &partner,
        &["entities:read:order_note", "entities:read:order"],
    )
    .await;
    // Shop B runs the plugin too, and let the app read orders only.
    common::consent(&f.platform, "shop-b", &client.0, &["entities:read:order"]);
    assert_eq!(
        common::install(app, &other, "shop-b", "good").await.status,
        StatusCode::CREATED
    );
    let ran = send(
        app,
        other.request(
            Method::POST,
            "/v1/installations/shop-b/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "2002" })),
        ),
    )
    .await;
    assert_eq!(ran.json()["ok"], true, "{}", ran.text());
    authorize(app, &merchant, &client, "entities:read:order_note").await;
    let (url, received) = receiver(vec![200]);
    let a = send(
        app,
        partner.request(
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(json!({ "client_id": client.0, "url": url, "event_types": ["order_note.*"] })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let secret = a.json()["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        common::install(app, &merchant, "shop-a", "good")
            .await
            .status,
        StatusCode::CREATED
    );
    let ran = send(
        app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "1001" })),
        ),
    )
    .await;
    assert_eq!(ran.json()["ok"], true, "{}", ran.text());
    assert_eq!(
        run_due(&f).await,
        1,
        "shop A's note only: shop B did not let the app read notes"
    );
    let got = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["type"], "order_note.created", "{body}");
    assert_eq!(body["data"]["id"], "1001");
    assert_eq!(
        body["data"]["order_note"],
        json!({ "order": "1001", "seen": true })
    );
    verify(
        &WebhookSecret::parse(&secret).unwrap(),
        &got.headers["webhook-id"],
        &got.headers["webhook-timestamp"],
        &got.headers["webhook-signature"],
        got.body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("signed with the endpoint's secret: {e:?}"));
    // Writing it again is an update.
    send(
        app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/events",
            Some(json!({ "event": "order.created", "payload": "1001" })),
        ),
    )
    .await;
    let log = send(
        app,
        partner.request(Method::GET, "/v1/webhooks/messages", None),
    )
    .await;
    let types: Vec<String> = log.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.iter().any(|t| t == "order_note.updated")
            && types.iter().any(|t| t == "order_note.created"),
        "{types:?}"
    );
}

/// The marketplace takes a developer's token from the device grant (what
/// `vodo login` gets) on the submission routes, and no other token: not a
/// partner app's, not a revoked one; and the token decides nothing a
/// reviewer decides.
#[tokio::test]
async fn the_submission_routes_take_a_developers_device_token_and_no_other() {
    let f = common::fixture();
    let app = &f.app;
    let started = post_form(
        app,
        &Who::default(),
        "/oauth/device_authorization",
        &[
            ("client_id", vodo_server::CLI_CLIENT),
            ("scope", "marketplace:publish"),
        ],
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let (device_code, user_code) = (
        started.json()["device_code"].as_str().unwrap().to_owned(),
        started.json()["user_code"].as_str().unwrap().to_owned(),
    );
    // Not signed in: the page sends the browser to the sign-in and back.
    let page = format!("/oauth/device?user_code={user_code}");
    let away = send(
        app,
        cookie_request(&Who::default(), Method::GET, &page, String::new()),
    )
    .await;
    assert_eq!(away.status, StatusCode::SEE_OTHER);
    let partner = sign_in(app, "partner@x.test").await;
    let shown = send(
        app,
        cookie_request(&partner, Method::GET, &page, String::new()),
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    let mut fields = hidden_fields(&shown.text());
    fields.push(("decision".into(), "allow".into()));
    let allowed = send(
        app,
        cookie_request(&partner, Method::POST, "/oauth/device", form(&fields)),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
    let tokens = post_form(
        app,
        &Who::default(),
        "/oauth/token",
        &[
            ("grant_type", vodo_oauth::DEVICE_GRANT),
            ("client_id", vodo_server::CLI_CLIENT),
            ("device_code", &device_code),
        ],
    )
    .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let token = tokens.json()["access_token"].as_str().unwrap().to_owned();

    let me = send(app, bearer(&token, Method::GET, "/v1/session", None)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.json()["email"], "partner@x.test");
    assert_eq!(me.json()["role"], "partner");
    assert_eq!(
        me.json()["csrf"],
        Value::Null,
        "a token needs no CSRF token"
    );
    let list = send(app, bearer(&token, Method::GET, "/v1/submissions", None)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    // Nothing beyond the marketplace's developer routes.
    for (method, path) in [
        (Method::GET, "/v1/installations"),
        (Method::POST, "/v1/submissions/sub_x/decision"),
        (Method::GET, "/v1/audit"),
    ] {
        let r = send(
            app,
            bearer(
                &token,
                method.clone(),
                path,
                Some(json!({ "approve": true })),
            ),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            r.text()
        );
    }

    // A partner app's token is refused by name.
    let client = register(app, &partner, &["entities:read:order"]).await;
    let cc = post_form(
        app,
        &Who::default(),
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await;
    let cc = cc.json()["access_token"].as_str().unwrap().to_owned();
    let r = send(app, bearer(&cc, Method::GET, "/v1/submissions", None)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "wrong_token".into())
    );

    // Revoked (what `vodo logout` does): refused at once.
    let revoked = post_form(
        app,
        &Who::default(),
        "/oauth/revoke",
        &[("client_id", vodo_server::CLI_CLIENT), ("token", &token)],
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let r = send(app, bearer(&token, Method::GET, "/v1/submissions", None)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    assert!(r.text().contains("vodo login"), "{}", r.text());
}
