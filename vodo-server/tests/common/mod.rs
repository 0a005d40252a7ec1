//! What the platform's HTTP tests share: a platform over a real data folder
//! with real plugins, accounts of every role, and a client that keeps a
//! session.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use vodo_core::InstallationId;
use vodo_sandbox::HostServices;
use vodo_server::{Platform, PlatformConfig, Role};

pub const GOOD_1: &str = r#"{
  "name": "Good", "slug": "good", "version": "1.0.0", "description": "behaves",
  "author": "Alice", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": {
    "entities": ["read:order", "write:order_note"],
    "hooks": ["subscribe:order.*"],
    "api": { "rate_limit": "1000/minute", "endpoints": ["orders"] }
  }
}"#;

/// The next version asks for one more thing: reading customers.
pub const GOOD_2: &str = r#"{
  "name": "Good", "slug": "good", "version": "1.1.0", "description": "behaves",
  "author": "Alice", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": {
    "entities": ["read:order", "write:order_note", "read:customer"],
    "hooks": ["subscribe:order.*"],
    "api": { "rate_limit": "1000/minute", "endpoints": ["orders"] }
  }
}"#;

pub const HOSTILE: &str = r#"{
  "name": "Hostile", "slug": "hostile", "version": "0.1.0", "description": "tries everything",
  "author": "Mallory", "license": "MIT", "entry": "hostile.wasm",
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["127.0.0.1"] },
    "users": "read"
  }
}"#;

pub const PASSWORD: &str = "correct horse battery";

pub struct Fixture {
    pub app: Router,
    pub platform: Arc<Platform>,
    _data: tempfile::TempDir,
}

pub fn fixture() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let mut config = PlatformConfig::new(data.path());
    // The tests' webhook receivers listen on loopback.
    config.webhooks.allow_private = true;
    // A failed delivery is retried only when a test asks (redeliver), not
    // by the clock while a slow machine runs the test.
    config.webhooks.schedule = vec![std::time::Duration::from_secs(3600)];
    let platform = Arc::new(Platform::open(config).unwrap());
    let good = test_support::guest("good");
    platform
        .add_package(GOOD_1, &good, Some(("order.created".into(), "1001".into())))
        .unwrap();
    platform
        .add_package(HOSTILE, &test_support::guest("hostile"), None)
        .unwrap();
    for (i, name) in [("shop-a", "Shop A"), ("shop-b", "Shop B")] {
        platform
            .store
            .put_installation(&InstallationId::new(i), name)
            .unwrap();
    }
    let a = &platform.accounts;
    a.put("admin@x.test", &Role::Admin, PASSWORD).unwrap();
    a.put(
        "a@x.test",
        &Role::Merchant(InstallationId::new("shop-a")),
        PASSWORD,
    )
    .unwrap();
    a.put(
        "b@x.test",
        &Role::Merchant(InstallationId::new("shop-b")),
        PASSWORD,
    )
    .unwrap();
    a.put("reviewer@x.test", &Role::Reviewer, PASSWORD).unwrap();
    a.put("partner@x.test", &Role::Partner, PASSWORD).unwrap();
    a.put("rival@x.test", &Role::Partner, PASSWORD).unwrap();
    for (i, id, total) in [("shop-a", "1001", "10"), ("shop-b", "2002", "20")] {
        platform
            .store
            .put_entity(
                &InstallationId::new(i),
                "order",
                id,
                &format!(r#"{{"total":"{total}"}}"#),
            )
            .unwrap();
    }
    Fixture {
        app: platform.router(),
        platform,
        _data: data,
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let r = app.clone().oneshot(request).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), 8 << 20).await.unwrap();
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

/// A signed-in person: the session cookie and its CSRF token.
#[derive(Clone, Default)]
pub struct Who {
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Who {
    pub fn request(&self, method: Method, path: &str, body: Option<Value>) -> Request<Body> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            b = b.header(header::COOKIE, format!("vodo_session={c}"));
        }
        if let Some(t) = &self.csrf {
            b = b.header("x-csrf-token", t);
        }
        match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        }
    }
}

pub async fn sign_in(app: &Router, email: &str) -> Who {
    let a = send(
        app,
        Who::default().request(
            Method::POST,
            "/v1/session",
            Some(json!({ "email": email, "password": PASSWORD })),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let set = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("vodo_session=")
        .unwrap()
        .to_owned();
    Who {
        cookie: Some(cookie),
        csrf: Some(a.json()["csrf"].as_str().unwrap().to_owned()),
    }
}

pub fn key_request(key: &str, method: Method, path: &str, body: Option<&str>) -> Request<Body> {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"));
    match body {
        Some(text) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(text.to_owned()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Installs `slug` in `installation` as `who`, agreeing to what its consent screen shows.
pub async fn install(app: &Router, who: &Who, installation: &str, slug: &str) -> Answer {
    let consent = send(
        app,
        who.request(
            Method::GET,
            &format!("/v1/installations/{installation}/consent/{slug}"),
            None,
        ),
    )
    .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.text());
    let agreed: Vec<Value> = consent.json()["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].clone())
        .collect();
    send(
        app,
        who.request(
            Method::POST,
            &format!("/v1/installations/{installation}/plugins"),
            Some(json!({ "plugin": slug, "consent": agreed })),
        ),
    )
    .await
}

/// A marketplace package of the `good` component under `manifest`.
pub fn package_of(manifest: &str) -> Vec<u8> {
    vodo_marketplace::package::Package {
        manifest: manifest.into(),
        readme: "# A plugin\n".into(),
        samples: vec![("order.created".into(), "1001".into())],
        component: test_support::guest("good"),
    }
    .to_bytes()
}

/// A raw (non-JSON) body request as `who`.
pub fn upload(who: &Who, path: &str, bytes: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(path).header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(c) = &who.cookie {
        b = b.header(header::COOKIE, format!("vodo_session={c}"));
    }
    if let Some(t) = &who.csrf {
        b = b.header("x-csrf-token", t);
    }
    b.body(Body::from(bytes)).unwrap()
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn form(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The hidden inputs of the consent page's form.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=hidden ")
        .skip(1)
        .map(|chunk| {
            let attr = |name: &str| {
                let start = chunk.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = chunk[start..].find('"').unwrap() + start;
                chunk[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&#39;", "'")
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

pub fn cookie_request(who: &Who, method: Method, uri: &str, body: String) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = &who.cookie {
        b = b.header(header::COOKIE, format!("vodo_session={c}"));
    }
    if !body.is_empty() {
        b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    b.body(Body::from(body)).unwrap()
}

/// What a receiver got: headers (lower-case names) and body.
pub struct Received {
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

/// A webhook receiver on loopback answering each request with the next
/// status of `answers` (the last one repeated) and the body `received {n}`
/// for its `n`th request; what each request carried comes out of the channel.
pub fn receiver(answers: Vec<u16>) -> (String, std::sync::mpsc::Receiver<Received>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = answers[n.min(answers.len() - 1)];
            n += 1;
            let reply = format!("received {n}");
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            // A test that does not read what came keeps the receiver serving.
            let _ = tx.send(Received {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    });
    (url, rx)
}

/// `installation`'s merchant consents to the app `client_id` for `scopes`
/// (as the consent page records it), so that the app's endpoints receive
/// the installation's events.
pub fn consent(platform: &Platform, installation: &str, client_id: &str, scopes: &[&str]) {
    platform
        .oauth
        .store()
        .put_consent(&vodo_oauth::model::Consent {
            installation: InstallationId::new(installation),
            client_id: client_id.into(),
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
            offline_access: false,
            granted_by: "merchant@x.test".into(),
            granted_at: vodo_core::Timestamp::now(),
        })
        .unwrap();
}
