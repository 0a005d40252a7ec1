//! The partner host: Vodo's OAuth 2.1 authorization server with a sign-in
//! step and its consent page, and one partner app registered, so that a
//! real client can run the whole authorization-code flow against it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use vodo_core::{InstallationId, SecretKey};
use vodo_oauth::model::ClientKind;
use vodo_oauth::{AuthServer, AuthServerConfig, MemoryStore, Session};
use vodo_scopes::{PluginScope, ScopeSet};

/// The merchant who may sign in, and the password the host prints.
pub const MERCHANT: &str = "merchant@shop-42";
/// The installation that merchant runs.
pub const INSTALLATION: &str = "shop-42";
/// The redirect URI the demo app registered (loopback, any port).
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
const COOKIE: &str = "partner_demo_session";

/// A running partner host's parts: its router and what its operator prints.
pub struct PartnerHost {
    /// Serves the sign-in pages and the authorization server.
    pub router: Router,
    /// The authorization server.
    pub server: Arc<AuthServer>,
    /// The demo app's client id.
    pub client_id: String,
    /// The demo app's client secret, shown once.
    pub client_secret: String,
    /// The merchant's password for the sign-in step (random per start).
    pub password: String,
}

#[derive(Clone)]
struct AppState {
    server: Arc<AuthServer>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    password: Arc<str>,
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl PartnerHost {
    /// A partner host whose issuer is `base` (such as `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self> {
        let server = Arc::new(AuthServer::new(
            AuthServerConfig::new(base),
            Arc::new(MemoryStore::new()),
            &SecretKey::generate()?,
        )?);
        let partner = server.register_partner("Acme Apps", "dev@acme.example")?;
        let scopes: ScopeSet = [
            "entities:read:order",
            "entities:write:order_note",
            "hooks:subscribe:order.*",
        ]
        .iter()
        .map(|s| s.parse::<PluginScope>())
        .collect::<Result<_, _>>()?;
        let (app, secret) = server.register_client(
            &partner.id,
            "Acme Order Sync",
            ClientKind::Confidential,
            &[REDIRECT_URI],
            scopes,
        )?;
        let client_secret = secret
            .map(|s| s.expose_secret().to_owned())
            .ok_or_else(|| anyhow::anyhow!("a confidential client got no secret"))?;
        let state = AppState {
            server: Arc::clone(&server),
            sessions: Arc::default(),
            password: random_token()?[..16].into(),
        };
        let password = state.password.to_string();
        let router = Router::new()
            .route("/login", get(login_page).post(login))
            .fallback(oauth)
            .with_state(state);
        Ok(Self {
            router,
            server,
            client_id: app.id,
            client_secret,
            password,
        })
    }
}

fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)?
        .1;
    state.sessions.lock().get(id).cloned()
}

/// Every OAuth endpoint; an authorization request without a session goes
/// to the sign-in page first and comes back after it.
async fn oauth(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let session = session_of(&state, &headers);
    if session.is_none() && method == Method::GET && uri.path() == "/oauth/authorize" {
        let next =
            url::form_urlencoded::byte_serialize(uri.to_string().as_bytes()).collect::<String>();
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    let request = vodo_oauth::axum::to_request(&method, &uri, &headers, &body);
    vodo_oauth::axum::into_response(state.server.handle(&request, session.as_ref()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Only a path on this host: never `//elsewhere` or a full URL.
fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn page(error: &str, next: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Sign in to shop-42</title>\
         <body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto\">\
         <h1>Sign in to shop-42</h1>{error}\
         <form method=post action=/login>\
         <input type=hidden name=next value=\"{next}\">\
         <p><label>Email <input name=user id=user value=\"{MERCHANT}\"></label></p>\
         <p><label>Password <input type=password name=password id=password></label></p>\
         <button id=signin>Sign in</button></form></body></html>",
        next = escape(next),
    ))
}

async fn login_page(uri: Uri) -> Html<String> {
    let next = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "/".into());
    page("", local_path(&next))
}

async fn login(State(state): State<AppState>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let next = local_path(field("next")).to_owned();
    // Digests compared, so the time taken says nothing about the password.
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let matches = field("user") == MERCHANT
        && digest(field("password")).as_ref() == digest(&state.password).as_ref();
    if !matches {
        let error = "<p role=alert>That email and password do not match.</p>";
        return (StatusCode::UNAUTHORIZED, page(error, &next)).into_response();
    }
    let Ok(id) = random_token() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    state.sessions.lock().insert(
        id.clone(),
        Session {
            installation: Some(InstallationId::new(INSTALLATION)),
            user: MERCHANT.into(),
        },
    );
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}
