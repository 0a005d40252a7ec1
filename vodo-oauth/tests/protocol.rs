//! Each requirement of the OAuth 2.1 profile, through the framework-independent
//! `AuthServer::handle`, including the hostile cases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use vodo_core::{InstallationId, ManualClock, SecretKey, Timestamp};
use vodo_oauth::model::ClientKind;
use vodo_oauth::server::redirect_matches;
use vodo_oauth::{
    AuthServer, AuthServerConfig, HttpRequest, HttpResponse, Session, SqliteStore, pkce_challenge,
};
use vodo_scopes::{PluginScope, ScopeSet};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "https://app.example/cb";

struct Fixture {
    server: AuthServer,
    clock: ManualClock,
    client_id: String,
    basic: String,
    public_id: String,
    session: Session,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let store = Arc::new(SqliteStore::open(dir.path().join("oauth.db")).unwrap());
    let server = AuthServer::new(
        AuthServerConfig::new("https://auth.shop.example"),
        store,
        &SecretKey::from_bytes([1; 32]),
    )
    .unwrap()
    .with_clock(Arc::new(clock.clone()));
    let partner = server.register_partner("Acme", "dev@acme.example").unwrap();
    let scopes: ScopeSet = ["entities:read", "users:read"]
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let (client, secret) = server
        .register_client(
            &partner.id,
            "Acme Sync",
            ClientKind::Confidential,
            &[REDIRECT, "http://127.0.0.1/cb"],
            scopes.clone(),
        )
        .unwrap();
    let (public, none) = server
        .register_client(
            &partner.id,
            "Acme Mobile",
            ClientKind::Public,
            &["http://127.0.0.1/cb"],
            scopes,
        )
        .unwrap();
    assert!(none.is_none());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            client.id,
            secret.unwrap().expose_secret()
        ))
    );
    Fixture {
        server,
        clock,
        client_id: client.id,
        basic,
        public_id: public.id,
        session: Session {
            installation: Some(InstallationId::new("shop-1")),
            user: "owner".into(),
        },
        dir,
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn get(f: &Fixture, query: &str, signed_in: bool) -> HttpResponse {
    let req = HttpRequest {
        method: "GET".into(),
        path: "/oauth/authorize".into(),
        query: query.into(),
        ..Default::default()
    };
    f.server.handle(&req, signed_in.then_some(&f.session))
}

fn post(f: &Fixture, path: &str, auth: Option<&str>, body: &[(&str, &str)]) -> HttpResponse {
    let mut headers = vec![(
        "content-type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    if let Some(a) = auth {
        headers.push(("authorization".into(), a.into()));
    }
    f.server.handle(
        &HttpRequest {
            method: "POST".into(),
            path: path.into(),
            headers,
            body: form(body),
            ..Default::default()
        },
        Some(&f.session),
    )
}

fn authorize_query(client_id: &str, redirect: &str, scope: &str) -> String {
    format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope={}&state=s1&code_challenge={}&code_challenge_method=S256",
        enc(redirect),
        enc(scope),
        pkce_challenge(VERIFIER)
    )
}

fn location(r: &HttpResponse) -> HashMap<String, String> {
    let loc = r.header("location").unwrap_or_else(|| {
        panic!(
            "no redirect: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    });
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// Consents through the page and returns a code.
fn code(f: &Fixture, client_id: &str, redirect: &str, scope: &str) -> String {
    let q = authorize_query(client_id, redirect, scope);
    let page = get(f, &q, true);
    if page.status == 302 {
        return location(&page)["code"].clone();
    }
    let html = String::from_utf8(page.body).unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let mut body: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect();
    body.push(("csrf".into(), csrf));
    body.push(("decision".into(), "allow".into()));
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = post(f, "/oauth/authorize", None, &pairs);
    location(&r)["code"].clone()
}

fn exchange(
    f: &Fixture,
    auth: Option<&str>,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> HttpResponse {
    post(
        f,
        "/oauth/token",
        auth,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ],
    )
}

#[test]
fn redirect_uris_match_exactly_except_loopback_ports() {
    assert!(redirect_matches(
        "https://app.example/cb",
        "https://app.example/cb"
    ));
    for other in [
        "https://app.example/cb/",
        "https://app.example/cb?x=1",
        "https://APP.example/cb",
        "https://app.example:444/cb",
        "http://app.example/cb",
    ] {
        assert!(
            !redirect_matches("https://app.example/cb", other),
            "{other}"
        );
    }
    assert!(redirect_matches(
        "http://127.0.0.1/cb",
        "http://127.0.0.1:53120/cb"
    ));
    assert!(redirect_matches("http://[::1]/cb", "http://[::1]:8080/cb"));
    assert!(!redirect_matches(
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/other"
    ));
    assert!(
        !redirect_matches("http://localhost/cb", "http://localhost:8080/cb"),
        "only IP loopback literals"
    );

    let f = fixture();
    let partner = f.server.register_partner("P", "p@example.com").unwrap();
    let e = f.server.register_client(
        &partner.id,
        "x",
        ClientKind::Public,
        &["http://app.example/cb"],
        ScopeSet::new(),
    );
    assert!(e.unwrap_err().to_string().contains("use https"));
    assert!(
        f.server
            .register_client(
                &partner.id,
                "x",
                ClientKind::Public,
                &["https://a.example/cb#frag"],
                ScopeSet::new()
            )
            .is_err()
    );
}

#[test]
fn a_bad_client_or_redirect_gets_an_error_page_not_a_redirect() {
    let f = fixture();
    for q in [
        authorize_query("app_unknown", REDIRECT, "entities:read:order"),
        authorize_query(
            &f.client_id,
            "https://evil.example/cb",
            "entities:read:order",
        ),
        authorize_query(
            &f.client_id,
            "https://app.example/cb/",
            "entities:read:order",
        ),
    ] {
        let r = get(&f, &q, true);
        assert_eq!(r.status, 400);
        assert!(r.header("location").is_none());
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
}

#[test]
fn pkce_is_required_s256_only_and_other_response_types_are_refused() {
    let f = fixture();
    let base = format!(
        "client_id={}&redirect_uri={}&state=s1&scope=entities%3Aread%3Aorder",
        f.client_id,
        enc(REDIRECT)
    );
    let cases = [
        (format!("{base}&response_type=code"), "invalid_request"),
        (
            format!(
                "{base}&response_type=code&code_challenge={}",
                pkce_challenge(VERIFIER)
            ),
            "invalid_request",
        ),
        (
            format!(
                "{base}&response_type=code&code_challenge={VERIFIER}&code_challenge_method=plain"
            ),
            "invalid_request",
        ),
        (
            format!(
                "{base}&response_type=token&code_challenge={}&code_challenge_method=S256",
                pkce_challenge(VERIFIER)
            ),
            "unsupported_response_type",
        ),
        (
            authorize_query(&f.client_id, REDIRECT, "entities:write:order"),
            "invalid_scope",
        ),
        (
            authorize_query(&f.client_id, REDIRECT, "root:all"),
            "invalid_scope",
        ),
    ];
    for (q, error) in cases {
        let r = get(&f, &q, true);
        let back = location(&r);
        assert_eq!(back["error"], error, "{q}");
        assert_eq!(back["state"], "s1", "state is echoed");
        assert_eq!(back["iss"], "https://auth.shop.example");
    }
    let dup = format!(
        "{}&state=again",
        authorize_query(&f.client_id, REDIRECT, "entities:read:order")
    );
    assert_eq!(
        get(&f, &dup, true).status,
        400,
        "repeated parameters are refused"
    );
}

#[test]
fn codes_are_single_use_bound_and_short_lived() {
    let f = fixture();
    // Wrong verifier, wrong redirect, another client: invalid_grant, and each consumes the code.
    for (verifier, redirect) in [
        ("x".repeat(43), REDIRECT),
        (VERIFIER.to_owned(), "http://127.0.0.1/cb"),
    ] {
        let c = code(&f, &f.client_id, REDIRECT, "entities:read:order");
        let r = exchange(&f, Some(&f.basic), &f.client_id, &c, redirect, &verifier);
        assert_eq!(json(&r)["error"], "invalid_grant");
    }
    let c = code(&f, &f.client_id, REDIRECT, "entities:read:order");
    let r = exchange(&f, None, &f.public_id, &c, REDIRECT, VERIFIER);
    assert_eq!(
        json(&r)["error"],
        "invalid_grant",
        "a code is bound to its client"
    );

    let c = code(&f, &f.client_id, REDIRECT, "entities:read:order");
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(
        json(&exchange(
            &f,
            Some(&f.basic),
            &f.client_id,
            &c,
            REDIRECT,
            VERIFIER
        ))["error"],
        "invalid_grant",
        "expired"
    );

    let c = code(&f, &f.client_id, REDIRECT, "entities:read:order");
    let ok = exchange(&f, Some(&f.basic), &f.client_id, &c, REDIRECT, VERIFIER);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    assert_eq!(ok.header("pragma"), Some("no-cache"));
    let access = json(&ok)["access_token"].as_str().unwrap().to_owned();
    assert!(
        json(&ok).get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    assert!(
        f.server
            .authenticate(Some(&format!("Bearer {access}")))
            .is_ok()
    );
    assert_eq!(
        json(&exchange(
            &f,
            Some(&f.basic),
            &f.client_id,
            &c,
            REDIRECT,
            VERIFIER
        ))["error"],
        "invalid_grant"
    );
    assert!(
        f.server
            .authenticate(Some(&format!("Bearer {access}")))
            .is_err(),
        "reuse revoked the tokens"
    );
}

#[test]
fn public_clients_use_pkce_without_a_secret_and_confidential_ones_must_authenticate() {
    let f = fixture();
    let c = code(
        &f,
        &f.public_id,
        "http://127.0.0.1:4711/cb",
        "users:read offline_access",
    );
    let r = exchange(
        &f,
        None,
        &f.public_id,
        &c,
        "http://127.0.0.1:4711/cb",
        VERIFIER,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        json(&r)["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("vodo_rt_")
    );

    let c = code(&f, &f.client_id, REDIRECT, "entities:read:order");
    let r = exchange(&f, None, &f.client_id, &c, REDIRECT, VERIFIER);
    assert_eq!(
        (r.status, json(&r)["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let cc = post(
        &f,
        "/oauth/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &f.public_id),
        ],
    );
    assert_eq!(json(&cc)["error"], "unauthorized_client");
    let pw = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[
            ("grant_type", "password"),
            ("username", "a"),
            ("password", "b"),
        ],
    );
    assert_eq!(json(&pw)["error"], "unsupported_grant_type");
}

#[test]
fn refresh_cannot_widen_and_follows_the_consent() {
    let f = fixture();
    let c = code(
        &f,
        &f.client_id,
        REDIRECT,
        "entities:read:order offline_access",
    );
    let t = json(&exchange(
        &f,
        Some(&f.basic),
        &f.client_id,
        &c,
        REDIRECT,
        VERIFIER,
    ));
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let wider = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "entities:read"),
        ],
    );
    assert_eq!(json(&wider)["error"], "invalid_scope");
    // The failed request did not consume the token.
    let ok = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    assert_eq!(ok.status, 200);
    let rt2 = json(&ok)["refresh_token"].as_str().unwrap().to_owned();
    // Withdrawn consent ends refreshes.
    f.server
        .revoke_consent(f.session.installation.as_ref().unwrap(), &f.client_id)
        .unwrap();
    let after = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    );
    assert_eq!(json(&after)["error"], "invalid_grant");
}

#[test]
fn a_refresh_token_left_unused_too_long_expires() {
    let f = fixture();
    let c = code(
        &f,
        &f.client_id,
        REDIRECT,
        "entities:read:order offline_access",
    );
    let t = json(&exchange(
        &f,
        Some(&f.basic),
        &f.client_id,
        &c,
        REDIRECT,
        VERIFIER,
    ));
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    f.clock.advance(Duration::from_secs(89 * 24 * 3600));
    let ok = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    assert_eq!(ok.status, 200, "used within 90 days");
    let rt2 = json(&ok)["refresh_token"].as_str().unwrap().to_owned();
    f.clock.advance(Duration::from_secs(90 * 24 * 3600));
    let stale = post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
    );
    assert_eq!(json(&stale)["error"], "invalid_grant");
}

#[test]
fn more_scopes_ask_for_consent_again_and_declining_is_access_denied() {
    let f = fixture();
    code(&f, &f.client_id, REDIRECT, "entities:read:order");
    let again = get(
        &f,
        &authorize_query(&f.client_id, REDIRECT, "entities:read:order"),
        true,
    );
    assert_eq!(again.status, 302, "already consented");
    let more = get(
        &f,
        &authorize_query(&f.client_id, REDIRECT, "entities:read:order users:read"),
        true,
    );
    assert_eq!(more.status, 200);
    let html = String::from_utf8(more.body.clone()).unwrap();
    assert!(
        html.contains("<code>users:read</code> <strong>(new)</strong>"),
        "{html}"
    );
    assert!(!html.contains("<code>entities:read:order</code> <strong>"));
    assert_eq!(more.header("x-frame-options"), Some("DENY"));
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let q = authorize_query(&f.client_id, REDIRECT, "entities:read:order users:read");
    let mut body: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect();
    body.push(("csrf".into(), csrf));
    body.push(("decision".into(), "deny".into()));
    let pairs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        location(&post(&f, "/oauth/authorize", None, &pairs))["error"],
        "access_denied"
    );
    assert_eq!(get(&f, &q, false).status, 401, "no session, no consent");
}

/// Each consent a user gives on the page is in the audit trail, against
/// the installation and by the user; a code issued under an earlier consent
/// is not a new consent and records nothing.
#[test]
fn every_consent_given_is_audited_once() {
    use vodo_core::Clock as _;
    use vodo_core::audit::{AuditAction, MemoryAudit};
    let mut f = fixture();
    let audit = Arc::new(MemoryAudit::default());
    f.server = f.server.with_audit(audit.clone());
    code(&f, &f.client_id, REDIRECT, "entities:read:order");
    let again = get(
        &f,
        &authorize_query(&f.client_id, REDIRECT, "entities:read:order"),
        true,
    );
    assert_eq!(again.status, 302, "already consented");
    assert_eq!(audit.records().len(), 1, "a second code is not a consent");
    code(&f, &f.client_id, REDIRECT, "entities:read:order users:read");
    let records = audit.records();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(
            r.event.installation.as_ref(),
            f.session.installation.as_ref()
        );
        assert_eq!(r.event.at, f.clock.now());
        assert!(
            matches!(&r.event.action, AuditAction::AppAccess { client_id, change, by }
                if *client_id == f.client_id && change == "granted" && *by == f.session.user),
            "{:?}",
            r.event.action
        );
    }
}

#[test]
fn app_management_changes_what_new_authorizations_may_ask() {
    let f = fixture();
    let only_users: ScopeSet = ["users:read".parse::<PluginScope>().unwrap()]
        .into_iter()
        .collect();
    f.server
        .update_client(&f.client_id, &["https://app.example/new-cb"], only_users)
        .unwrap();
    let old_redirect = get(
        &f,
        &authorize_query(&f.client_id, REDIRECT, "users:read"),
        true,
    );
    assert_eq!(old_redirect.status, 400, "the old redirect URI is gone");
    let r = get(
        &f,
        &authorize_query(
            &f.client_id,
            "https://app.example/new-cb",
            "entities:read:order",
        ),
        true,
    );
    assert_eq!(location(&r)["error"], "invalid_scope");
    assert!(
        f.server
            .update_client(&f.client_id, &["http://app.example/cb"], ScopeSet::new())
            .is_err()
    );
    assert!(
        f.server
            .update_client("app_missing", &[], ScopeSet::new())
            .is_err()
    );
}

#[test]
fn secret_rotation_keeps_the_old_secret_for_the_grace_period() {
    let f = fixture();
    let new = f
        .server
        .rotate_secret(&f.client_id, Duration::from_secs(3600))
        .unwrap();
    let new_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            f.client_id,
            new.expose_secret()
        ))
    );
    let cc = |auth: &str| {
        post(
            &f,
            "/oauth/token",
            Some(auth),
            &[("grant_type", "client_credentials")],
        )
        .status
    };
    assert_eq!((cc(&f.basic), cc(&new_basic)), (200, 200));
    f.clock.advance(Duration::from_secs(3601));
    assert_eq!((cc(&f.basic), cc(&new_basic)), (401, 200));
}

#[test]
fn nothing_secret_rests_in_the_database() {
    let f = fixture();
    let c = code(
        &f,
        &f.client_id,
        REDIRECT,
        "entities:read:order offline_access",
    );
    let t = json(&exchange(
        &f,
        Some(&f.basic),
        &f.client_id,
        &c,
        REDIRECT,
        VERIFIER,
    ));
    let secrets = [
        t["access_token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
        c,
        f.basic.clone(),
    ];
    let mut dump = std::fs::read(f.dir.path().join("oauth.db")).unwrap();
    dump.extend(std::fs::read(f.dir.path().join("oauth.db-wal")).unwrap_or_default());
    for s in &secrets {
        let needle = &s.as_bytes()[s.len() - 20..];
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle),
            "a secret is stored in clear"
        );
    }
}

#[test]
fn resource_servers_take_tokens_only_from_the_header() {
    let f = fixture();
    assert!(f.server.authenticate(None).is_err());
    assert!(f.server.authenticate(Some("Basic abc")).is_err());
    assert!(
        f.server.authenticate(Some("Bearer vodo_rt_abc")).is_err(),
        "a refresh token is not an access token"
    );
    let cc = json(&post(
        &f,
        "/oauth/token",
        Some(&f.basic),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "users:read"),
        ],
    ));
    let info = f
        .server
        .authenticate(Some(&format!(
            "Bearer {}",
            cc["access_token"].as_str().unwrap()
        )))
        .unwrap();
    assert!(info.require(&"users:read".parse().unwrap()).is_ok());
    let e = info
        .require(&"entities:read:order".parse().unwrap())
        .unwrap_err();
    assert_eq!(e.code.as_str(), "insufficient_scope");
    assert!(f.server.challenge(&e).starts_with("Bearer realm="));
    f.clock.advance(Duration::from_secs(14 * 24 * 3600));
    assert!(
        f.server
            .authenticate(Some(&format!(
                "Bearer {}",
                cc["access_token"].as_str().unwrap()
            )))
            .is_err(),
        "expired"
    );
}
