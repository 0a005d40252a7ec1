//! The OAuth 2.1 flow through real HTTP on loopback: register an app,
//! authorize with PKCE, consent, exchange the code, call a protected
//! endpoint, refresh, replay the old refresh token and see the family
//! revoked, revoke, introspect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use vodo_core::{InstallationId, SecretKey};
use vodo_oauth::model::ClientKind;
use vodo_oauth::{
    AuthServer, AuthServerConfig, HttpRequest, HttpResponse, OAuthError, Session, SqliteStore,
    pkce_challenge,
};
use vodo_scopes::{PluginScope, ScopeSet};

struct Running {
    base: String,
    server: Arc<AuthServer>,
    _rt: tokio::runtime::Runtime,
}

/// Starts the authorization server and a protected API on one loopback port.
fn start() -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap().keep();
    let store = Arc::new(SqliteStore::open(dir.join("oauth.db")).unwrap());
    let server = Arc::new(
        AuthServer::new(
            AuthServerConfig::new(base.clone()),
            store,
            &SecretKey::from_bytes([7; 32]),
        )
        .unwrap(),
    );
    // The host's own login: here a header naming installation and user.
    let session: vodo_oauth::axum::SessionFn = Arc::new(|h: &HeaderMap| {
        let v = h.get("x-test-session")?.to_str().ok()?;
        let (installation, user) = v.split_once(':')?;
        Some(Session {
            installation: Some(InstallationId::new(installation)),
            user: user.to_owned(),
        })
    });
    let api_server = Arc::clone(&server);
    let api = Router::new().route(
        "/api/orders",
        get(move |headers: HeaderMap| {
            let server = Arc::clone(&api_server);
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                let scope: PluginScope = "entities:read:order".parse().unwrap();
                let info = server
                    .authenticate(auth)
                    .and_then(|info| info.require(&scope).map(|()| info));
                match info {
                    Ok(info) => (
                        StatusCode::OK,
                        format!("orders of {}", info.installation.unwrap()),
                    ),
                    Err(
                        e @ OAuthError {
                            code: vodo_oauth::ErrorCode::InsufficientScope,
                            ..
                        },
                    ) => (StatusCode::FORBIDDEN, e.to_string()),
                    Err(e) => (StatusCode::UNAUTHORIZED, e.to_string()),
                }
            }
        }),
    );
    let app = api.merge(vodo_oauth::axum::router(Arc::clone(&server), session));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Running {
        base,
        server,
        _rt: rt,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.unwrap();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Answer {
        status: r.status().as_u16(),
        headers,
        body: r.body_mut().read_to_string().unwrap(),
    }
}

fn json(a: &Answer) -> serde_json::Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=hidden ")
        .skip(1)
        .map(|s| {
            let name = s
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = s
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let unescape = |v: &str| {
                v.replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&")
            };
            (name.to_owned(), unescape(value))
        })
        .collect()
}

#[test]
fn the_whole_flow_over_http() {
    let r = start();
    let a = agent();
    let scopes: ScopeSet = ["entities:read", "hooks:subscribe:order.*"]
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let partner = r
        .server
        .register_partner("Acme Apps", "dev@acme.example")
        .unwrap();
    let redirect = "http://127.0.0.1:9/callback";
    let (app, secret) = r
        .server
        .register_client(
            &partner.id,
            "Acme Order Sync",
            ClientKind::Confidential,
            &[redirect],
            scopes,
        )
        .unwrap();
    let secret = secret.unwrap();
    let basic = format!(
        "Basic {}",
        base64_encode(&format!("{}:{}", app.id, secret.expose_secret()))
    );

    // Metadata (RFC 8414).
    let meta = json(&answer(
        a.get(&format!(
            "{}/.well-known/oauth-authorization-server",
            r.base
        ))
        .call(),
    ));
    assert_eq!(meta["issuer"], r.base.as_str());
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );

    // Authorize with PKCE: the merchant sees a consent page.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let authorize = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=xyz%20123&code_challenge={}&code_challenge_method=S256",
        r.base,
        app.id,
        urlenc(redirect),
        urlenc("entities:read:order offline_access"),
        pkce_challenge(verifier)
    );
    let page = answer(
        a.get(&authorize)
            .header("x-test-session", "shop-1:owner")
            .call(),
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Acme Order Sync") && page.body.contains("entities:read:order"),
        "{}",
        page.body
    );
    assert_eq!(page.headers["cache-control"], "no-store");

    // A forged consent (no valid anti-forgery token) is refused.
    let mut fields = hidden_fields(&page.body);
    let forged: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.clone(), if k == "csrf" { "x".into() } else { v.clone() }))
        .chain([("decision".into(), "allow".into())])
        .collect();
    let refused = answer(
        a.post(&format!("{}/oauth/authorize", r.base))
            .header("x-test-session", "shop-1:owner")
            .send_form(forged),
    );
    assert_eq!(refused.status, 400);

    fields.push(("decision".into(), "allow".into()));
    let consented = answer(
        a.post(&format!("{}/oauth/authorize", r.base))
            .header("x-test-session", "shop-1:owner")
            .send_form(fields),
    );
    assert_eq!(consented.status, 302, "{}", consented.body);
    let back = query_of(&consented.headers["location"]);
    assert_eq!(back["state"], "xyz 123");
    assert_eq!(back["iss"], r.base);
    let code = back["code"].clone();
    assert!(code.starts_with("vodo_ac_"));

    // Exchange the code.
    let exchange = |code: &str| {
        answer(
            a.post(&format!("{}/oauth/token", r.base))
                .header("authorization", &basic)
                .send_form([
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ]),
        )
    };
    let tokens = exchange(&code);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.headers["cache-control"], "no-store");
    let t = json(&tokens);
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("vodo_at_") && refresh.starts_with("vodo_rt_"));
    assert_eq!(t["expires_in"], 14 * 24 * 3600);

    // Call the protected endpoint.
    let call = |token: &str| {
        answer(
            a.get(&format!("{}/api/orders", r.base))
                .header("authorization", &format!("Bearer {token}"))
                .call(),
        )
    };
    let ok = call(&access);
    assert_eq!((ok.status, ok.body.as_str()), (200, "orders of shop-1"));
    assert_eq!(call("vodo_at_forged").status, 401);

    // Refresh rotates the refresh token.
    let refresh_with = |rt: &str| {
        answer(
            a.post(&format!("{}/oauth/token", r.base))
                .header("authorization", &basic)
                .send_form([("grant_type", "refresh_token"), ("refresh_token", rt)]),
        )
    };
    let rotated = json(&refresh_with(&refresh));
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(call(&access2).status, 200);

    // Replaying the old refresh token revokes the whole family.
    let replay = refresh_with(&refresh);
    assert_eq!(
        (replay.status, json(&replay)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        json(&refresh_with(&refresh2))["error"],
        "invalid_grant",
        "the current refresh token died with its family"
    );
    assert_eq!(call(&access2).status, 401);
    assert_eq!(call(&access).status, 401);

    // The consent is remembered: a new authorization redirects at once.
    let again = answer(
        a.get(&authorize)
            .header("x-test-session", "shop-1:owner")
            .call(),
    );
    assert_eq!(again.status, 302, "{}", again.body);
    let code2 = query_of(&again.headers["location"])["code"].clone();
    let t2 = json(&exchange(&code2));
    let access3 = t2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call(&access3).status, 200);

    // Redeeming a code twice revokes what it issued.
    let reused = exchange(&code2);
    assert_eq!(json(&reused)["error"], "invalid_grant");
    assert_eq!(call(&access3).status, 401);

    // Introspection and revocation.
    let code3 = query_of(
        &answer(
            a.get(&authorize)
                .header("x-test-session", "shop-1:owner")
                .call(),
        )
        .headers["location"],
    )["code"]
        .clone();
    let access4 = json(&exchange(&code3))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let introspect = |token: &str| {
        json(&answer(
            a.post(&format!("{}/oauth/introspect", r.base))
                .header("authorization", &basic)
                .send_form([("token", token)]),
        ))
    };
    let info = introspect(&access4);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], app.id.as_str());
    assert_eq!(info["sub"], "owner");
    assert_eq!(info["scope"], "entities:read:order");
    let unauthenticated = answer(
        a.post(&format!("{}/oauth/introspect", r.base))
            .send_form([("token", access4.as_str())]),
    );
    assert_eq!(unauthenticated.status, 401);
    let revoked = answer(
        a.post(&format!("{}/oauth/revoke", r.base))
            .header("authorization", &basic)
            .send_form([("token", access4.as_str())]),
    );
    assert_eq!(revoked.status, 200);
    assert_eq!(introspect(&access4), serde_json::json!({ "active": false }));
    assert_eq!(call(&access4).status, 401);
    // Revoking an unknown token is not an error (RFC 7009).
    let unknown = answer(
        a.post(&format!("{}/oauth/revoke", r.base))
            .header("authorization", &basic)
            .send_form([("token", "vodo_at_nothing")]),
    );
    assert_eq!(unknown.status, 200);

    // The merchant uninstalls the app: its consent and every token it holds for the store go.
    let code5 = query_of(
        &answer(
            a.get(&authorize)
                .header("x-test-session", "shop-1:owner")
                .call(),
        )
        .headers["location"],
    )["code"]
        .clone();
    let access5 = json(&exchange(&code5))["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(call(&access5).status, 200);
    assert!(
        r.server
            .revoke_consent(&InstallationId::new("shop-1"), &app.id)
            .unwrap()
    );
    assert_eq!(call(&access5).status, 401);
    let after = answer(
        a.get(&authorize)
            .header("x-test-session", "shop-1:owner")
            .call(),
    );
    assert_eq!(after.status, 200, "consent is asked for again");

    // Client credentials for the partner's back end: no refresh token.
    let cc = json(&answer(
        a.post(&format!("{}/oauth/token", r.base))
            .header("authorization", &basic)
            .send_form([
                ("grant_type", "client_credentials"),
                ("scope", "entities:read:order"),
            ]),
    ));
    assert!(cc["access_token"].as_str().unwrap().starts_with("vodo_at_"));
    assert!(cc.get("refresh_token").is_none());
    // A bad secret gets 401 with a challenge.
    let bad = answer(
        a.post(&format!("{}/oauth/token", r.base))
            .header(
                "authorization",
                &format!("Basic {}", base64_encode(&format!("{}:wrong", app.id))),
            )
            .send_form([("grant_type", "client_credentials")]),
    );
    assert_eq!(
        (bad.status, json(&bad)["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(bad.headers.contains_key("www-authenticate"));
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The provider in process, for the protocol's edges.
struct Edge {
    server: AuthServer,
    client: String,
    basic: String,
    redirect: &'static str,
    session: Session,
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn edge(issuer: &str) -> Edge {
    let server = AuthServer::new(
        AuthServerConfig::new(issuer),
        Arc::new(vodo_oauth::MemoryStore::new()),
        &SecretKey::from_bytes([8; 32]),
    )
    .unwrap();
    let partner = server.register_partner("Acme", "dev@acme.example").unwrap();
    let scopes: ScopeSet = ["entities:read:order", "entities:read:product"]
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let redirect = "http://127.0.0.1/callback";
    let (app, secret) = server
        .register_client(
            &partner.id,
            "Acme",
            ClientKind::Confidential,
            &[redirect],
            scopes,
        )
        .unwrap();
    let basic = base64_encode(&format!("{}:{}", app.id, secret.unwrap().expose_secret()));
    Edge {
        server,
        client: app.id,
        basic: format!("Basic {basic}"),
        redirect,
        session: Session {
            installation: Some(InstallationId::new("shop-1")),
            user: "owner".into(),
        },
    }
}

fn request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn body_json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
}

impl Edge {
    /// Authorizes `scope`, consenting on the page if one is shown; the code.
    fn code(&self, scope: &str) -> String {
        let query = format!(
            "response_type=code&client_id={}&redirect_uri={}&scope={}&code_challenge={}&code_challenge_method=S256",
            self.client,
            urlenc(self.redirect),
            urlenc(scope),
            pkce_challenge(VERIFIER)
        );
        let r = self.server.handle(
            &request("GET", "/oauth/authorize", &query, &[], ""),
            Some(&self.session),
        );
        let r = if r.status == 200 {
            let mut fields = hidden_fields(&String::from_utf8_lossy(&r.body));
            fields.push(("decision".into(), "allow".into()));
            let form: String = fields
                .iter()
                .map(|(k, v)| format!("{}={}", urlenc(k), urlenc(v)))
                .collect::<Vec<_>>()
                .join("&");
            self.server.handle(
                &request("POST", "/oauth/authorize", "", &[], &form),
                Some(&self.session),
            )
        } else {
            r
        };
        assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.body));
        query_of(r.header("location").unwrap())["code"].clone()
    }

    fn token(&self, form: &str) -> HttpResponse {
        let headers = [
            ("Authorization", self.basic.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        self.server
            .handle(&request("POST", "/oauth/token", "", &headers, form), None)
    }

    /// Tokens for `scope`, through a code.
    fn tokens(&self, scope: &str) -> serde_json::Value {
        let code = self.code(scope);
        let r = self.token(&format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
            urlenc(self.redirect)
        ));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        body_json(&r)
    }

    fn refresh(&self, token: &str, scope: Option<&str>) -> HttpResponse {
        let mut form = format!("grant_type=refresh_token&refresh_token={token}");
        if let Some(s) = scope {
            form.push_str(&format!("&scope={}", urlenc(s)));
        }
        self.token(&form)
    }
}

#[test]
fn approving_one_more_scope_keeps_the_earlier_grant_working() {
    let e = edge("https://auth.example");
    let first = e.tokens("entities:read:order offline_access");
    // The app asks for one more scope; the merchant approves.
    let second = e.tokens("entities:read:product offline_access");
    assert!(second["access_token"].is_string());
    // The first grant's refresh token still works: the consent was merged.
    let r = e.refresh(first["refresh_token"].as_str().unwrap(), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // And asking for both needs no new consent page.
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope={}&code_challenge={}&code_challenge_method=S256",
        e.client,
        urlenc(e.redirect),
        urlenc("entities:read:order entities:read:product offline_access"),
        pkce_challenge(VERIFIER)
    );
    let r = e.server.handle(
        &request("GET", "/oauth/authorize", &query, &[], ""),
        Some(&e.session),
    );
    assert_eq!(r.status, 302, "both scopes are consented");
}

#[test]
fn a_narrower_refresh_keeps_the_refresh_tokens_scope() {
    let e = edge("https://auth.example");
    let t = e.tokens("entities:read:order entities:read:product offline_access");
    let narrow = e.refresh(
        t["refresh_token"].as_str().unwrap(),
        Some("entities:read:order"),
    );
    assert_eq!(
        narrow.status,
        200,
        "{}",
        String::from_utf8_lossy(&narrow.body)
    );
    let narrow = body_json(&narrow);
    assert_eq!(narrow["scope"], "entities:read:order offline_access");
    // The new refresh token still carries both scopes (RFC 6749 section 6).
    let wide = body_json(&e.refresh(narrow["refresh_token"].as_str().unwrap(), None));
    assert_eq!(
        wide["scope"], "entities:read:order entities:read:product offline_access",
        "{wide}"
    );
}

#[test]
fn metadata_of_an_issuer_with_a_path_is_where_rfc_8414_puts_it() {
    let e = edge("https://auth.example/tenant-7");
    for path in [
        "/.well-known/oauth-authorization-server/tenant-7",
        "/tenant-7/.well-known/oauth-authorization-server",
    ] {
        let r = e.server.handle(&request("GET", path, "", &[], ""), None);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(body_json(&r)["issuer"], "https://auth.example/tenant-7");
    }
    let r = e.server.handle(
        &request(
            "GET",
            "/.well-known/oauth-authorization-server/other",
            "",
            &[],
            "",
        ),
        None,
    );
    assert_eq!(r.status, 404);
}

#[test]
fn loopback_redirects_match_as_strings_with_only_the_port_free() {
    let registered = "http://127.0.0.1/callback";
    for ok in [
        "http://127.0.0.1/callback",
        "http://127.0.0.1:5000/callback",
        "http://127.0.0.1:1/callback",
    ] {
        assert!(vodo_oauth::redirect_matches(registered, ok), "{ok}");
    }
    for bad in [
        "http://127.0.0.1:5000/x/../callback",
        "http://127.0.0.1:5000\\callback",
        "http://127.0.0.1:5000/callback/",
        "http://127.1:5000/callback",
        "http://0x7f.0.0.1:5000/callback",
        "http://127.0.0.1:5000/%63allback",
        "http://127.0.0.1:123456/callback",
        "http://127.0.0.1:/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://[::1]:5000/callback",
    ] {
        assert!(!vodo_oauth::redirect_matches(registered, bad), "{bad}");
    }
    assert!(vodo_oauth::redirect_matches(
        "http://[::1]/cb?x=1",
        "http://[::1]:80/cb?x=1"
    ));
}

#[test]
fn token_endpoints_take_only_forms_and_any_case_of_basic() {
    let e = edge("https://auth.example");
    let code = e.code("entities:read:order");
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
        urlenc(e.redirect)
    );
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
        for content_type in [None, Some("application/json"), Some("text/plain")] {
            let mut headers = vec![("Authorization", e.basic.as_str())];
            if let Some(ct) = content_type {
                headers.push(("Content-Type", ct));
            }
            let r = e
                .server
                .handle(&request("POST", path, "", &headers, &form), None);
            assert_eq!(r.status, 400, "{path} with {content_type:?}");
            assert_eq!(body_json(&r)["error"], "invalid_request");
        }
    }
    // `basic`, and a charset parameter, are fine.
    let lower = e.basic.replacen("Basic", "basic", 1);
    let headers = [
        ("authorization", lower.as_str()),
        (
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        ),
    ];
    let r = e
        .server
        .handle(&request("POST", "/oauth/token", "", &headers, &form), None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let access = body_json(&r)["access_token"].as_str().unwrap().to_owned();
    assert!(
        e.server
            .authenticate(Some(&format!("bearer {access}")))
            .is_ok()
    );
}

#[test]
fn the_consent_pages_policy_lets_its_form_reach_the_app() {
    let e = edge("https://auth.example");
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=entities%3Aread%3Aorder&code_challenge={}&code_challenge_method=S256",
        e.client,
        urlenc("http://127.0.0.1:4321/callback"),
        pkce_challenge(VERIFIER)
    );
    let r = e.server.handle(
        &request("GET", "/oauth/authorize", &query, &[], ""),
        Some(&e.session),
    );
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:4321;"),
        "{csp}"
    );
}

#[test]
fn webhook_timestamps_at_the_ends_of_i64_are_refused_not_a_crash() {
    use vodo_oauth::webhooks::{VerifyError, WebhookSecret, verify_at, verify_stripe_at};
    let secret = WebhookSecret::generate().unwrap();
    for (ts, now) in [
        (i64::MIN, 0),
        (i64::MAX, 0),
        (0, i64::MIN),
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
    ] {
        let r = verify_at(&secret, "msg_1", &ts.to_string(), "v1,abc", b"{}", now);
        assert!(
            matches!(r, Err(VerifyError::Timestamp(_))),
            "{ts} at {now}: {r:?}"
        );
        let r = verify_stripe_at("whsec", &format!("t={ts},v1=00"), b"{}", now);
        assert!(
            matches!(r, Err(VerifyError::Timestamp(_))),
            "{ts} at {now}: {r:?}"
        );
    }
}
