//! The device authorization grant (RFC 8628) and account scopes, through
//! `AuthServer::handle`, including the hostile cases: polling too fast, a
//! replayed device code, another client's code, store scopes asked through
//! the device grant and account scopes asked through the others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use vodo_core::audit::{AuditAction, AuditFilter, AuditLog as _, MemoryAudit};
use vodo_core::{InstallationId, ManualClock, SecretKey, Timestamp};
use vodo_oauth::model::{AccountScope, AccountScopes, ClientKind};
use vodo_oauth::{
    AuthServer, AuthServerConfig, DEVICE_GRANT, ErrorCode, HttpRequest, HttpResponse, Session,
    SqliteStore, pkce_challenge,
};
use vodo_scopes::{PluginScope, ScopeSet};

const CLI: &str = "vodo-cli";

struct Fixture {
    server: AuthServer,
    clock: ManualClock,
    audit: Arc<MemoryAudit>,
    partner_app: String,
    developer: Session,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let audit = Arc::new(MemoryAudit::new());
    let server = AuthServer::new(
        AuthServerConfig::new("https://market.example"),
        Arc::new(SqliteStore::open(dir.path().join("oauth.db")).unwrap()),
        &SecretKey::from_bytes([3; 32]),
    )
    .unwrap()
    .with_clock(Arc::new(clock.clone()))
    .with_audit(audit.clone());
    let publish: AccountScopes = [AccountScope::Publish].into();
    server
        .ensure_first_party_client(CLI, "The vodo CLI", &publish)
        .unwrap();
    let partner = server.register_partner("Acme", "dev@acme.example").unwrap();
    let scopes: ScopeSet = ["entities:read"]
        .iter()
        .map(|s| s.parse::<PluginScope>().unwrap())
        .collect();
    let (app, _) = server
        .register_client(
            &partner.id,
            "Acme Mobile",
            ClientKind::Public,
            &["http://127.0.0.1/cb"],
            scopes,
        )
        .unwrap();
    Fixture {
        server,
        clock,
        audit,
        partner_app: app.id,
        developer: Session {
            installation: None,
            user: "dev@acme.example".into(),
        },
        _dir: dir,
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn post(f: &Fixture, path: &str, body: &[(&str, &str)], session: Option<&Session>) -> HttpResponse {
    f.server.handle(
        &HttpRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: form(body),
            ..Default::default()
        },
        session,
    )
}

fn get(f: &Fixture, path: &str, query: &str, session: Option<&Session>) -> HttpResponse {
    f.server.handle(
        &HttpRequest {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            ..Default::default()
        },
        session,
    )
}

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| {
        panic!(
            "not JSON: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

fn html(r: &HttpResponse) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

fn start(f: &Fixture, client: &str, scope: Option<&str>) -> HttpResponse {
    let mut body = vec![("client_id", client)];
    if let Some(s) = scope {
        body.push(("scope", s));
    }
    post(f, "/oauth/device_authorization", &body, None)
}

fn poll(f: &Fixture, client: &str, device_code: &str) -> HttpResponse {
    post(
        f,
        "/oauth/token",
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", client),
            ("device_code", device_code),
        ],
        None,
    )
}

fn error(r: &HttpResponse) -> String {
    json(r)["error"].as_str().unwrap_or_default().to_owned()
}

/// The user opens the page, reads the code and presses `decision`.
fn decide(f: &Fixture, typed: &str, decision: &str) -> HttpResponse {
    let page = get(
        f,
        "/oauth/device",
        &format!(
            "user_code={}",
            url::form_urlencoded::byte_serialize(typed.as_bytes()).collect::<String>()
        ),
        Some(&f.developer),
    );
    assert_eq!(page.status, 200, "{}", html(&page));
    let text = html(&page);
    let csrf = text
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    post(
        f,
        "/oauth/device",
        &[
            ("user_code", typed),
            ("csrf", &csrf),
            ("decision", decision),
        ],
        Some(&f.developer),
    )
}

#[test]
fn a_developer_approves_a_device_and_it_gets_account_tokens_once() {
    let f = fixture();
    let r = start(&f, CLI, Some("marketplace:publish offline_access"));
    assert_eq!(r.status, 200, "{}", html(&r));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = json(&r);
    let device_code = body["device_code"].as_str().unwrap().to_owned();
    let user_code = body["user_code"].as_str().unwrap().to_owned();
    assert!(device_code.starts_with("vodo_dc_"));
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert!(
        user_code
            .chars()
            .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(
        body["verification_uri"],
        "https://market.example/oauth/device"
    );
    assert_eq!(
        body["verification_uri_complete"],
        format!("https://market.example/oauth/device?user_code={user_code}")
    );
    assert_eq!(
        (body["expires_in"].as_u64(), body["interval"].as_u64()),
        (Some(600), Some(5))
    );

    // Before the user decides: pending, and polling faster than the interval slows it down.
    let first = poll(&f, CLI, &device_code);
    assert_eq!(
        (first.status, error(&first)),
        (400, "authorization_pending".into())
    );
    let fast = poll(&f, CLI, &device_code);
    assert_eq!(error(&fast), "slow_down");

    // The page needs a sign-in, takes the code as people type it and names what is asked.
    let anonymous = get(&f, "/oauth/device", &format!("user_code={user_code}"), None);
    assert_eq!(anonymous.status, 401);
    let typed = user_code.replace('-', " ").to_lowercase();
    let page = get(
        &f,
        "/oauth/device",
        &format!("user_code={}", typed.replace(' ', "+")),
        Some(&f.developer),
    );
    let text = html(&page);
    assert!(text.contains("The vodo CLI"), "{text}");
    assert!(
        text.contains("Submit plugin packages to the marketplace"),
        "{text}"
    );
    assert!(
        text.contains(&user_code),
        "the page repeats the code to compare: {text}"
    );

    // A form without the page's token is refused and decides nothing.
    let forged = post(
        &f,
        "/oauth/device",
        &[
            ("user_code", &user_code),
            ("csrf", "forged"),
            ("decision", "allow"),
        ],
        Some(&f.developer),
    );
    assert_eq!(forged.status, 400);
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(error(&poll(&f, CLI, &device_code)), "authorization_pending");

    let done = decide(&f, &typed, "allow");
    assert_eq!(done.status, 200, "{}", html(&done));
    assert!(html(&done).contains("signed in as dev@acme.example"));
    let again = decide_page_status(&f, &user_code);
    assert_eq!(again, 400, "a decided code is not offered again");

    // Another client cannot redeem it.
    f.clock.advance(Duration::from_secs(20));
    assert_eq!(
        error(&poll(&f, &f.partner_app, &device_code)),
        "invalid_grant"
    );

    let tokens = poll(&f, CLI, &device_code);
    assert_eq!(tokens.status, 200, "{}", html(&tokens));
    let t = json(&tokens);
    assert_eq!(t["scope"], "marketplace:publish offline_access");
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let info = f
        .server
        .authenticate(Some(&format!("Bearer {access}")))
        .unwrap();
    assert_eq!(
        info.installation, None,
        "a developer's token acts in no store"
    );
    assert_eq!(info.subject, "dev@acme.example");
    assert_eq!(info.client_id, CLI);
    assert!(info.scopes.is_empty());
    assert!(info.require_account(AccountScope::Publish).is_ok());

    // The approval is in the audit trail, with who approved.
    let events = f.audit.query(&AuditFilter::default()).unwrap();
    assert!(events.iter().any(|r| matches!(&r.event.action,
        AuditAction::AppAccess { client_id, by, .. } if client_id == CLI && by == "dev@acme.example")));

    // Refreshing keeps the account scopes; a refresh cannot add store scopes.
    let refreshed = post(
        &f,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", &refresh),
        ],
        None,
    );
    assert_eq!(refreshed.status, 200, "{}", html(&refreshed));
    let r2 = json(&refreshed);
    assert_eq!(r2["scope"], "marketplace:publish offline_access");
    let widen = post(
        &f,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLI),
            ("refresh_token", r2["refresh_token"].as_str().unwrap()),
            ("scope", "marketplace:publish entities:read"),
        ],
        None,
    );
    assert_eq!(error(&widen), "invalid_scope");

    // A replayed device code is refused and revokes what it gave.
    f.clock.advance(Duration::from_secs(30));
    let replay = poll(&f, CLI, &device_code);
    assert_eq!(error(&replay), "invalid_grant");
    assert_eq!(
        f.server
            .authenticate(Some(&format!("Bearer {access}")))
            .unwrap_err()
            .code,
        ErrorCode::InvalidToken
    );
}

fn decide_page_status(f: &Fixture, user_code: &str) -> u16 {
    get(
        f,
        "/oauth/device",
        &format!("user_code={user_code}"),
        Some(&f.developer),
    )
    .status
}

#[test]
fn denied_and_expired_requests_give_no_token() {
    let f = fixture();
    let body = json(&start(&f, CLI, None));
    let code = body["device_code"].as_str().unwrap().to_owned();
    let shown = body["user_code"].as_str().unwrap().to_owned();
    let denied = decide(&f, &shown, "deny");
    assert_eq!(denied.status, 200);
    assert!(html(&denied).contains("was not signed in"));
    let r = poll(&f, CLI, &code);
    assert_eq!(error(&r), "access_denied");

    let body = json(&start(&f, CLI, None));
    let code = body["device_code"].as_str().unwrap().to_owned();
    let shown = body["user_code"].as_str().unwrap().to_owned();
    f.clock.advance(Duration::from_secs(601));
    assert_eq!(error(&poll(&f, CLI, &code)), "expired_token");
    assert_eq!(
        decide_page_status(&f, &shown),
        400,
        "an expired code is not offered"
    );

    // Without scope, the client's registered account scopes are asked; no refresh token.
    let body = json(&start(&f, CLI, None));
    let code = body["device_code"].as_str().unwrap().to_owned();
    let shown = body["user_code"].as_str().unwrap().to_owned();
    decide(&f, &shown, "allow");
    let t = json(&poll(&f, CLI, &code));
    assert_eq!(t["scope"], "marketplace:publish");
    assert!(t.get("refresh_token").is_none());

    // A guessed code finds nothing.
    assert_eq!(decide_page_status(&f, "BBBB-BBBB"), 400);
    assert_eq!(error(&poll(&f, CLI, "vodo_dc_guessed")), "invalid_grant");
}

#[test]
fn account_scopes_only_through_the_device_grant_and_store_scopes_never_through_it() {
    let f = fixture();
    let r = start(&f, CLI, Some("marketplace:publish entities:read"));
    assert_eq!(error(&r), "invalid_scope");
    assert!(
        json(&r)["error_description"]
            .as_str()
            .unwrap()
            .contains("authorization code flow")
    );
    let r = start(&f, &f.partner_app, None);
    assert_eq!(
        error(&r),
        "unauthorized_client",
        "a partner app is not registered for it"
    );
    let r = start(&f, &f.partner_app, Some("marketplace:publish"));
    assert_eq!(error(&r), "unauthorized_client");
    assert_eq!(error(&start(&f, "nobody", None)), "invalid_client");
    assert_eq!(
        error(&start(&f, CLI, Some("marketplace:delete"))),
        "invalid_scope"
    );

    // The authorization endpoint refuses account scopes (redirecting the error) ...
    let merchant = Session {
        installation: Some(InstallationId::new("shop-1")),
        user: "owner".into(),
    };
    let q = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=marketplace%3Apublish&code_challenge={}&code_challenge_method=S256",
        f.partner_app,
        url::form_urlencoded::byte_serialize(b"http://127.0.0.1/cb").collect::<String>(),
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    );
    let r = get(&f, "/oauth/authorize", &q, Some(&merchant));
    assert_eq!(r.status, 302);
    assert!(
        r.header("location")
            .unwrap()
            .contains("error=invalid_scope")
    );
    // ... and a session without a store cannot authorize a store's app.
    let q = q.replace("marketplace%3Apublish", "entities%3Aread");
    let r = get(&f, "/oauth/authorize", &q, Some(&f.developer));
    assert_eq!(r.status, 403);
    assert!(html(&r).contains("merchant"));

    // The metadata lists the endpoint, the grant and the account scope.
    let m = json(&get(
        &f,
        "/.well-known/oauth-authorization-server",
        "",
        None,
    ));
    assert_eq!(
        m["device_authorization_endpoint"],
        "https://market.example/oauth/device_authorization"
    );
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == DEVICE_GRANT)
    );
    assert!(
        m["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "marketplace:publish")
    );

    // The device endpoint takes only forms.
    let r = f.server.handle(
        &HttpRequest {
            method: "POST".into(),
            path: "/oauth/device_authorization".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
            ..Default::default()
        },
        None,
    );
    assert_eq!(error(&r), "invalid_request");
}

#[test]
fn first_party_clients_keep_their_id_and_cannot_take_a_partners() {
    let f = fixture();
    let again = f
        .server
        .ensure_first_party_client(CLI, "The vodo CLI", &[AccountScope::Publish].into())
        .unwrap();
    assert_eq!(again.id, CLI);
    assert!(
        f.server
            .ensure_first_party_client(&f.partner_app, "Mine now", &[AccountScope::Publish].into())
            .is_err(),
        "a partner's client id is not taken over"
    );
    assert!(
        f.server
            .ensure_first_party_client("bad id!", "x", &AccountScopes::new())
            .is_err()
    );
}
