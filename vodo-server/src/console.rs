//! The admin console: server-rendered HTML (maud, escaped by default) that
//! works without JavaScript. Every form carries the session's CSRF token,
//! every page checks the role on the server.

// The helpers' error is the page to answer with, made once per refused
// request: boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use vodo_core::health::HealthStatus;
use vodo_core::{InstallationId, PluginId};
use vodo_scopes::ScopeSet;

use crate::accounts::{Session, csrf_matches};
use crate::api::{AuditQuery, parse_scopes, sign_in_problem};
use crate::platform::PluginView;
use crate::web::{ClientAddr, cookie, set_cookie};
use crate::{Platform, Problem, Role};

type Shared = Arc<Platform>;

/// The cookie that carries the sign-in form's CSRF token before there is a session.
const LOGIN_COOKIE: &str = "vodo_login";

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin", get(dashboard))
        .route(
            "/admin/installations/{installation}/plugins/{plugin}",
            get(plugin_page),
        )
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/{action}",
            post(plugin_action),
        )
        .route(
            "/admin/installations/{installation}/plugins/{plugin}/keys/{key}/revoke",
            post(revoke_key),
        )
        .route(
            "/admin/installations/{installation}/activate/{plugin}",
            get(consent_page).post(activate),
        )
        .route("/admin/audit", get(audit_page))
        .route("/admin/reviews", get(reviews_page))
        .route(
            "/admin/reviews/{id}",
            get(review_page).post(review_decision),
        )
        .route("/admin/catalog", get(catalog_page))
        .route("/admin/catalog/{slug}/rate", post(rate))
        .route("/admin/audit/verify", post(verify))
        .merge(crate::console_hooks::routes())
        .merge(crate::console_updates::routes())
        .merge(crate::console_account::routes())
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.7rem 1.5rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#cfd8e3;text-decoration:none}header a:hover{color:#fff}
header .who{margin-left:auto;font-size:.9rem;color:#9fb0c3}
main{padding:1.5rem;max-width:1100px}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .6rem}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e6e9ee;font-size:.92rem;vertical-align:top}
th{background:#eef1f5;font-weight:600}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;font-weight:600}
.healthy{background:#dff5e3;color:#17692b}.degraded{background:#fff2cc;color:#7a5b00}
.unhealthy{background:#fde0e0;color:#a11b1b}.disabled{background:#e4e7eb;color:#4a5563}
.card{background:#fff;padding:1rem 1.2rem;box-shadow:0 1px 2px #0001;margin-bottom:1rem}
.flash{background:#e8f1ff;border-left:4px solid #2f6fdf;padding:.6rem 1rem;margin-bottom:1rem}
.error{background:#fdecec;border-left:4px solid #c62828;padding:.6rem 1rem;margin-bottom:1rem}
.secret{font-family:monospace;background:#fffbe6;padding:.4rem;border:1px dashed #c9a400;word-break:break-all}
form.inline{display:inline}
button{background:#2f6fdf;color:#fff;border:0;padding:.4rem .9rem;border-radius:3px;cursor:pointer;font-size:.9rem}
button.danger{background:#c62828}button.plain{background:#5b6675}
input,select{padding:.35rem;border:1px solid #c5ccd6;border-radius:3px;font-size:.9rem}
label{display:block;margin:.5rem 0 .2rem;font-size:.9rem}form.row label{display:inline-block;margin:.5rem .3rem .5rem 0}form.row select{margin-right:1rem}
ul.scopes li{margin:.3rem 0}code{font-size:.85rem;color:#4a5563}
td code{word-break:break-all}
.muted{color:#6b7685;font-size:.85rem}
";

pub(crate) fn page(title: &str, session: Option<&Session>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Vodo" }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header {
                        strong { "Vodo" }
                        @if let Some(s) = session {
                            a href="/admin" { "Plugins" }
                            @if matches!(s.role, Role::Admin | Role::Merchant(_)) {
                                a href="/admin/audit" { "Audit log" }
                            }
                            @if matches!(s.role, Role::Admin | Role::Reviewer) {
                                a href="/admin/reviews" { "Review queue" }
                            }
                            @if matches!(s.role, Role::Admin | Role::Partner) {
                                a href="/admin/webhooks" { "Webhooks" }
                            }
                            @if matches!(s.role, Role::Admin | Role::Merchant(_)) {
                                a href="/admin/apps" { "Apps" }
                            }
                            a href="/admin/catalog" { "Catalog" }
                            a href="/api-docs" { "API" }
                            span.who { a #account href="/admin/account" { (s.email) } " · " (s.role) }
                            form.inline method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.plain type="submit" { "Sign out" }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

pub(crate) fn error_page(session: Option<&Session>, p: &Problem) -> Response {
    let mut r = page(
        "Error",
        session,
        html! {
            h1 { (p.status.canonical_reason().unwrap_or("Error")) }
            div.error { (p.detail) }
            p { a href="/admin" { "Back to the console" } }
        },
    )
    .into_response();
    *r.status_mut() = p.status;
    r
}

/// The console's session: without one, the browser is sent to sign in.
pub(crate) struct ConsoleSession(pub(crate) Session);

impl FromRequestParts<Shared> for ConsoleSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &Shared) -> Result<Self, Response> {
        let to_login = || Redirect::to("/admin/login").into_response();
        let token = cookie(&parts.headers).ok_or_else(to_login)?;
        match p.accounts.session(token) {
            Ok(Some(s)) => Ok(Self(s)),
            Ok(None) => Err(to_login()),
            Err(e) => Err(error_page(None, &e.problem())),
        }
    }
}

/// A console page's query string. One that does not parse (`?limit=lots`)
/// is a `400` page of the console that names what is wrong, not a line of
/// plain text.
pub(crate) struct ConsoleQuery<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<Shared> for ConsoleQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &Shared) -> Result<Self, Response> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| Self(q))
            .map_err(|e| {
                // The signed-in user keeps the console's navigation.
                let session = cookie(&parts.headers)
                    .and_then(|token| p.accounts.session(token).ok().flatten());
                error_page(
                    session.as_ref(),
                    &Problem::new(
                        StatusCode::BAD_REQUEST,
                        "bad_query",
                        format!(
                            "{}: fix the address, or go back and use the page's own links and filters",
                            crate::problem::shorten(&e.body_text())
                        ),
                    ),
                )
            })
    }
}

/// `403` unless the form's token is the session's.
fn check_csrf(s: &Session, given: &str) -> Result<(), Response> {
    if csrf_matches(s, given) {
        Ok(())
    } else {
        Err(error_page(
            Some(s),
            &Problem::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this form is out of date (it came from an earlier sign-in, or from another site): go back, reload the page and send it again",
            ),
        ))
    }
}

/// A console form posted with a session: parsed (a `400` page otherwise)
/// and carrying the session's CSRF token, read by `csrf` (a `403` page otherwise).
pub(crate) fn submitted<T>(
    s: &Session,
    f: Result<Form<T>, FormRejection>,
    csrf: impl FnOnce(&T) -> &str,
) -> Result<T, Response> {
    let f = form(Some(s), f)?;
    check_csrf(s, csrf(&f))?;
    Ok(f)
}

fn form<T>(s: Option<&Session>, f: Result<Form<T>, FormRejection>) -> Result<T, Response> {
    f.map(|Form(t)| t).map_err(|e| {
        error_page(
            s,
            &Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_form",
                format!("the form was not sent as this page sends it: {e}"),
            ),
        )
    })
}

pub(crate) fn ids(
    s: &Session,
    installation: &str,
    plugin: &str,
) -> Result<(InstallationId, PluginId), Response> {
    let i = InstallationId::new(installation);
    if !s.role.manages(&i) {
        return Err(error_page(
            Some(s),
            &Problem::new(
                StatusCode::FORBIDDEN,
                "not_yours",
                format!(
                    "{} ({}) does not manage the installation `{i}`",
                    s.email, s.role
                ),
            ),
        ));
    }
    Ok((i, PluginId::new(plugin)))
}

fn random_token() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Where a sign-in may send the browser back to: a path of this server's
/// console or OAuth pages, never another site (`//evil.example`, `/\\evil`).
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        (n.starts_with("/admin") || n.starts_with("/oauth/"))
            && !n.contains("//")
            && !n.contains('\\')
            && n.bytes().all(|b| b.is_ascii_graphic())
    })
}

fn login_form(token: &str, error: Option<&str>, next: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        @if let Some(e) = error { div.error { (e) } }
        form.card method="post" action="/admin/login" style="max-width:360px" {
            input type="hidden" name="csrf" value=(token);
            @if let Some(n) = safe_next(next) { input type="hidden" name="next" value=(n); }
            label for="email" { "Email" }
            input #email type="email" name="email" required autocomplete="username" style="width:95%";
            label for="password" { "Password" }
            input #password type="password" name="password" required autocomplete="current-password" style="width:95%";
            p { button #sign-in type="submit" { "Sign in" } }
        }
    }
}

fn login_response(p: &Platform, error: Option<(StatusCode, &str)>, next: Option<&str>) -> Response {
    let token = random_token();
    let mut r = page(
        "Sign in",
        None,
        login_form(&token, error.map(|e| e.1), next),
    )
    .into_response();
    if let Some((status, _)) = error {
        *r.status_mut() = status;
    }
    let secure = if p.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/admin/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    State(p): State<Shared>,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next);
    login_response(&p, None, next.as_deref())
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    /// Where to go once signed in (see [`safe_next`]).
    #[serde(default)]
    next: Option<String>,
}

fn named_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

async fn login(
    State(p): State<Shared>,
    client: ClientAddr,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let f = match form(None, f) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let expected = named_cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::accounts::same(expected.as_bytes(), f.csrf.as_bytes()) {
        return login_response(
            &p,
            Some((
                StatusCode::FORBIDDEN,
                "This sign-in form is out of date: it was sent again below, sign in with it.",
            )),
            f.next.as_deref(),
        );
    }
    match p.sign_in(&f.email, &f.password, &client.0).await {
        Ok((_, token)) => {
            let to = safe_next(f.next.as_deref()).unwrap_or("/admin");
            let mut r = Redirect::to(to).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&p, Some(&token)));
            r
        }
        Err(e) => {
            let problem = sign_in_problem(e);
            login_response(
                &p,
                Some((problem.status, &problem.detail)),
                f.next.as_deref(),
            )
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    headers: HeaderMap,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = submitted(&s, f, |f| &f.csrf) {
        return r;
    }
    if let Some(token) = cookie(&headers)
        && let Err(e) = p.accounts.sign_out(token)
    {
        return error_page(Some(&s), &e.problem());
    }
    let mut r = Redirect::to("/admin/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&p, None));
    r
}

fn badge(v: &PluginView) -> Markup {
    let status = if v.enabled {
        v.health.status
    } else {
        HealthStatus::Disabled
    };
    let class = status.to_string();
    let label = match status {
        HealthStatus::Unhealthy => "circuit open".to_owned(),
        other => other.to_string(),
    };
    html! { span class={ "badge " (class) } { (label) } }
}

/// `2026-12-02 22:55:27`, in UTC (days to a civil date by Howard
/// Hinnant's algorithm).
pub(crate) fn utc(t: vodo_core::Timestamp) -> String {
    let secs = t.as_millis().div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `12.5 ms`, `840 µs`.
fn ms(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn plugin_url(v: &PluginView) -> String {
    format!(
        "/admin/installations/{}/plugins/{}",
        v.installation, v.plugin
    )
}

async fn dashboard(State(p): State<Shared>, ConsoleSession(s): ConsoleSession) -> Response {
    let installations = match p.installations(&s.role) {
        Ok(i) => i,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let packages = p.store.packages().unwrap_or_default();
    let mut sections = Vec::new();
    for i in &installations {
        match p.plugins(i) {
            Ok(list) => sections.push((i.clone(), list)),
            Err(e) => return error_page(Some(&s), &e.problem()),
        }
    }
    let logs = p.store.logs(&installations, None);
    page(
        "Plugins",
        Some(&s),
        html! {
            h1 { "Installed plugins" }
            @if installations.is_empty() {
                p.muted { "This account manages no installation." }
            }
            @for (i, list) in &sections {
                h2 { "Installation " code { (i) } }
                table {
                    tr { th { "Plugin" } th { "Version" } th { "Circuit" } th { "Calls" } th { "Errors" } th { "p99 time" } th { "Memory peak" } }
                    @for v in list {
                        tr.plugin data-plugin=(v.plugin) {
                            td { a href=(plugin_url(v)) { (v.name) } br; code { (v.plugin) } }
                            td { (v.version) }
                            td { (badge(v)) @if v.health.trips > 0 { " " span.muted { (v.health.trips) " trip(s)" } } }
                            td { (v.usage.calls) }
                            td { (v.usage.failures) }
                            td.p99 { @if v.usage.calls > 0 { (ms(v.usage.p99)) } @else { "–" } }
                            td { (kib(v.usage.peak_memory)) }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="7" .muted { "No plugin installed yet." } } }
                }
                @let available: Vec<_> = packages.iter().filter(|pk| !list.iter().any(|v| v.plugin.as_str() == pk.slug && v.version == pk.version)).collect();
                @if !available.is_empty() {
                    p {
                        "Available: "
                        @for pk in available {
                            a.activate href={ "/admin/installations/" (i) "/activate/" (pk.slug) } { (pk.slug) " " (pk.version) } " "
                        }
                    }
                }
            }
            h2 { "Recent plugin log lines" }
            @if logs.is_empty() { p.muted { "None yet." } }
            @else {
                table {
                    tr { th { "Plugin" } th { "Level" } th { "Line" } }
                    @for l in logs.iter().rev().take(20) {
                        tr { td { (l.plugin) } td { (l.level) } td { (l.message) } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// A page's one-line notice after a redirect (`?flash=...`).
#[derive(Deserialize, Default)]
pub(crate) struct Flash {
    #[serde(default)]
    pub(crate) flash: Option<String>,
}

fn scopes_text(scopes: &ScopeSet) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn plugin_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    ConsoleQuery(flash): ConsoleQuery<Flash>,
) -> Response {
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    render_plugin(
        &p,
        &s,
        &i,
        &pl,
        flash.flash.as_deref(),
        None,
        StatusCode::OK,
    )
}

pub(crate) fn render_plugin(
    p: &Platform,
    s: &Session,
    i: &InstallationId,
    pl: &PluginId,
    flash: Option<&str>,
    secret: Option<&str>,
    status: StatusCode,
) -> Response {
    let v = match p.plugin(i, pl) {
        Ok(v) => v,
        Err(e) => return error_page(Some(s), &e.problem()),
    };
    let keys = p.keys(i, pl).unwrap_or_default();
    let sample = p
        .package(pl.as_str(), Some(&v.version))
        .ok()
        .flatten()
        .and_then(|pk| pk.sample);
    let url = plugin_url(&v);
    let logs = p.store.logs(std::slice::from_ref(i), Some(pl));
    let mut r = page(
        &v.name,
        Some(s),
        html! {
            h1 { (v.name) " " span.muted { (v.version) " in " (i) } }
            @if let Some(f) = flash { div.flash #flash { (f) } }
            @if let Some(k) = secret {
                div.card {
                    strong { "The new key, shown this once:" }
                    div.secret #new-key { (k) }
                    p.muted { "Copy it now: only a hash of it is kept." }
                }
            }
            div.card {
                p { "Circuit: " (badge(&v)) " · calls " (v.usage.calls) " · errors " (v.usage.failures)
                    " · p50 " (ms(v.usage.p50)) " · p99 " (ms(v.usage.p99)) " · memory peak " (kib(v.usage.peak_memory)) }
                @if let Some(until) = v.health.open_until {
                    p.muted { "Open until " (utc(until)) " UTC; calls are refused until then or until a health probe succeeds." }
                }
                @if !v.health.recent_failures.is_empty() {
                    p { strong { "Recent failures" } }
                    ul { @for f in &v.health.recent_failures { li { code { (f.error) } } } }
                }
                form.inline method="post" action={ (url) "/" (if v.enabled { "disable" } else { "enable" }) } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    @if v.enabled { button.plain #disable type="submit" { "Disable" } }
                    @else { button #enable type="submit" { "Enable" } }
                }
            }
            (crate::console_updates::section(p, s, i, pl))
            h2 { "Calls and errors, the last hour" }
            @if let Some(svg) = crate::charts::calls_chart(&v.series, 720, 220) {
                div.card #usage-chart role="img" aria-label="Calls and errors per minute over the last hour" {
                    // Drawn by plotters from numbers and fixed labels only.
                    (maud::PreEscaped(svg))
                }
            }
            @if let Some((event, payload)) = &sample {
                h2 { "Send a test event" }
                form.card method="post" action={ (url) "/event" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label for="event" { "Event" }
                    input #event name="event" value=(event);
                    label for="payload" { "Payload" }
                    input #payload name="payload" value=(payload) style="width:60%";
                    p { button #send-event type="submit" { "Send" } }
                }
            }
            h2 { "Granted permissions" }
            ul.scopes { @for sc in v.scopes.iter() { li { (sc.describe()) " " code { (sc) } } } }
            h2 { "API keys" }
            table #keys {
                tr { th { "Name" } th { "Id" } th { "Scopes" } th { "Uses" } th { "State" } th {} }
                @for k in &keys {
                    tr.key data-key=(k.id) {
                        td { (k.name) } td { code { (k.id) } }
                        td { code { (scopes_text(&k.scopes)) } }
                        td { (k.usage_count) }
                        td { @if k.revoked_at.is_some() { "revoked" } @else { "active" } }
                        td {
                            @if k.revoked_at.is_none() {
                                form.inline method="post" action={ (url) "/keys/" (k.id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button.danger.revoke type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
                @if keys.is_empty() { tr { td colspan="6" .muted { "No key yet." } } }
            }
            form.card method="post" action={ (url) "/keys" } {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="key-name" { "New key's name" }
                input #key-name name="name" required placeholder="order sync";
                label for="key-scopes" { "Its scopes (within the grant, separated by spaces)" }
                input #key-scopes name="scopes" value=(scopes_text(&v.scopes)) style="width:80%";
                p { button #issue-key type="submit" { "Issue a key" } }
            }
            h2 { "Log lines" }
            @if logs.is_empty() { p.muted { "None yet." } }
            ul #logs { @for l in logs.iter().rev().take(20) { li { code { (l.level) } " " (l.message) } } }
        },
    )
    .into_response();
    *r.status_mut() = status;
    r
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: String,
}

async fn plugin_action(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin, action)): Path<(String, String, String)>,
    f: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let back = |msg: &str| {
        let mut url = format!("/admin/installations/{i}/plugins/{pl}?flash=");
        url.extend(form_urlencoded(msg));
        Redirect::to(&url).into_response()
    };
    let failed = |e: crate::ServerError| {
        let problem = e.problem();
        render_plugin(&p, &s, &i, &pl, Some(&problem.detail), None, problem.status)
    };
    match action.as_str() {
        "enable" | "disable" => match p.set_enabled(&i, &pl, action == "enable", &s.email) {
            Ok(()) => back(&format!("{pl} is {action}d.")),
            Err(e) => failed(e),
        },
        "event" => match p.send_event(&i, &pl, &f.event, &f.payload).await {
            Ok(call) => back(&match &call.result {
                Ok(()) => format!(
                    "{} ran `{}` in {:.2} ms with {} host call(s).",
                    pl,
                    f.event,
                    call.usage.wall.as_secs_f64() * 1e3,
                    call.usage.host_calls
                ),
                Err(e) => format!("{pl} did not handle `{}`: {e}", f.event),
            }),
            Err(e) => failed(e),
        },
        "keys" => {
            let scopes: Vec<String> = f.scopes.split_whitespace().map(str::to_owned).collect();
            let scopes = match parse_scopes(&scopes) {
                Ok(s) => s.into_iter().collect(),
                Err(problem) => {
                    return render_plugin(
                        &p,
                        &s,
                        &i,
                        &pl,
                        Some(&problem.detail),
                        None,
                        problem.status,
                    );
                }
            };
            match p.issue_key(&i, &pl, &f.name, scopes, None) {
                Ok((key, record)) => render_plugin(
                    &p,
                    &s,
                    &i,
                    &pl,
                    Some(&format!(
                        "The key `{}` ({}) was issued.",
                        record.name, record.id
                    )),
                    Some(key.expose_secret()),
                    StatusCode::OK,
                ),
                Err(e) => failed(e),
            }
        }
        _ => error_page(
            Some(&s),
            &Problem::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("there is no action `{action}`"),
            ),
        ),
    }
}

pub(crate) fn form_urlencoded(s: &str) -> impl Iterator<Item = char> + '_ {
    s.bytes().flat_map(|b| {
        let keep = b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
        let text = if keep {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        };
        text.chars().collect::<Vec<_>>()
    })
}

async fn revoke_key(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin, key)): Path<(String, String, String)>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = submitted(&s, f, |f| &f.csrf) {
        return r;
    }
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match p.revoke_key(&i, &pl, &key) {
        Ok(()) => {
            let mut url = format!("/admin/installations/{i}/plugins/{pl}?flash=");
            url.extend(form_urlencoded(&format!(
                "The key {key} is revoked: it stops working now."
            )));
            Redirect::to(&url).into_response()
        }
        Err(e) => {
            let problem = e.problem();
            render_plugin(&p, &s, &i, &pl, Some(&problem.detail), None, problem.status)
        }
    }
}

async fn consent_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> Response {
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (m, diff, installed) = match p.consent_for(&i, pl.as_str()) {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let agreed = diff
        .added
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    page(
        "Activate",
        Some(&s),
        html! {
            h1 { @if installed { "Upgrade " } @else { "Activate " } (m.name) " " span.muted { (m.version) } }
            div.card {
                @if diff.added.is_empty() {
                    p { (m.name) " asks for nothing it does not have already." }
                } @else {
                    p { strong { (m.name) } @if installed { " now also asks to:" } @else { " will be able to:" } }
                    ul.scopes #asks {
                        @for sc in &diff.added { li { (sc.describe()) " " code { (sc) } } }
                    }
                }
                @if !diff.dropped.is_empty() {
                    p { "It no longer needs to:" }
                    ul.scopes { @for sc in &diff.dropped { li { (sc.describe()) } } }
                }
                p.muted { "It runs in a sandbox and can do nothing else. You can disable or remove it at any time, and it stops at once." }
                form method="post" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="agreed" value=(agreed);
                    button #approve type="submit" { @if installed { "Approve the upgrade" } @else { "Approve and activate" } }
                    " "
                    a href="/admin" { "Cancel" }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct ActivateForm {
    csrf: String,
    #[serde(default)]
    agreed: String,
}

async fn activate(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, plugin)): Path<(String, String)>,
    f: Result<Form<ActivateForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (i, pl) = match ids(&s, &installation, &plugin) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let agreed: Vec<String> = f.agreed.split_whitespace().map(str::to_owned).collect();
    let agreed = match parse_scopes(&agreed) {
        Ok(a) => a,
        Err(problem) => return error_page(Some(&s), &problem),
    };
    match p.install_async(&i, pl.as_str(), agreed, &s.email).await {
        Ok(_) => {
            let mut url = format!("/admin/installations/{i}/plugins/{pl}?flash=");
            url.extend(form_urlencoded(&format!("{pl} is active in {i}.")));
            Redirect::to(&url).into_response()
        }
        Err(e) => error_page(Some(&s), &e.problem()),
    }
}

async fn audit_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<AuditQuery>,
) -> Response {
    render_audit(&p, &s, &q, None)
}

fn render_audit(
    p: &Platform,
    s: &Session,
    q: &AuditQuery,
    verified: Option<Result<String, String>>,
) -> Response {
    let (filter, limit) = match q.filter(s) {
        Ok(x) => x,
        Err(problem) => return error_page(Some(s), &problem),
    };
    let mut records = match p.audit(&filter) {
        Ok(r) => r,
        Err(e) => return error_page(Some(s), &e.problem()),
    };
    let next = (records.len() > limit).then(|| records[limit - 1].seq);
    records.truncate(limit);
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let next_url = next.map(|after| {
        let mut url = format!("/admin/audit?after={after}&limit={limit}");
        for (name, v) in [
            ("plugin", &q.plugin),
            ("installation", &q.installation),
            ("kind", &q.kind),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                url.push('&');
                url.push_str(name);
                url.push('=');
                url.extend(form_urlencoded(v));
            }
        }
        url
    });
    page(
        "Audit log",
        Some(s),
        html! {
            h1 { "Audit log" }
            @match &verified {
                Some(Ok(msg)) => div.flash #verify-result { (msg) },
                Some(Err(msg)) => div.error #verify-result { (msg) },
                None => {},
            }
            form.card method="get" action="/admin/audit" {
                "Plugin " input #filter-plugin name="plugin" value=(value(&q.plugin)) size="14";
                @if s.role == Role::Admin {
                    " Installation " input #filter-installation name="installation" value=(value(&q.installation)) size="14";
                }
                " Kind "
                select #filter-kind name="kind" {
                    option value="" { "any" }
                    @for k in vodo_core::audit::AuditKind::ALL {
                        option value=(k.as_str()) selected[q.kind.as_deref() == Some(k.as_str())] { (k.as_str()) }
                    }
                }
                " "
                button #filter type="submit" { "Filter" }
            }
            @if s.role == Role::Admin {
                form method="post" action="/admin/audit/verify" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button #verify type="submit" { "Verify the chain" }
                }
            }
            table #records {
                tr { th { "#" } th { "Time (UTC)" } th { "Kind" } th { "Installation" } th { "Plugin" } th { "Detail" } }
                @for r in &records {
                    tr.record {
                        td { (r.seq) }
                        td { (utc(r.event.at)) }
                        td.kind { (r.event.kind().as_str()) }
                        td { (r.event.installation.as_ref().map(|i| i.as_str()).unwrap_or("")) }
                        td { (r.event.plugin.as_ref().map(|p| p.as_str()).unwrap_or("")) }
                        td { code { (serde_json::to_string(&r.event.action).unwrap_or_default()) } }
                    }
                }
                @if records.is_empty() { tr { td colspan="6" .muted { "No record matches." } } }
            }
            @if let Some(url) = next_url { p { a #next href=(url) { "Older records →" } } }
        },
    )
    .into_response()
}

async fn verify(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(r) = submitted(&s, f, |f| &f.csrf) {
        return r;
    }
    if s.role != Role::Admin {
        return error_page(
            Some(&s),
            &Problem::new(
                StatusCode::FORBIDDEN,
                "role",
                "verifying the audit chain is for admins",
            ),
        );
    }
    let result = match p.verify_audit_async().await {
        Ok(r) => Ok(format!(
            "The chain verifies: {} records, each unchanged and in order; the last is #{}.",
            r.records, r.head.seq
        )),
        Err(crate::ServerError::Core(e @ vodo_core::Error::Tampered { .. })) => {
            Err(format!("The chain does NOT verify: {e}"))
        }
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    render_audit(&p, &s, &AuditQuery::default(), Some(result))
}

async fn reviews_page(State(p): State<Shared>, ConsoleSession(s): ConsoleSession) -> Response {
    let queue = match p.submissions(&s, Some(vodo_marketplace::workflow::State::Submitted)) {
        Ok(q) => q,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    page(
        "Review queue",
        Some(&s),
        html! {
            h1 { "Review queue" }
            table #queue {
                tr { th { "Plugin" } th { "Version" } th { "Partner" } th { "Automated review" } }
                @for sub in &queue {
                    @let report = sub.report.as_ref();
                    @let errors = report.map_or(0, |r| r.errors().count());
                    @let warnings = report.map_or(0, |r| r.findings.len()) - errors;
                    tr.submission {
                        td { a href={ "/admin/reviews/" (sub.id) } { (sub.plugin) } }
                        td { (sub.version) }
                        td { (sub.owner) }
                        td { (errors) " error(s), " (warnings) " warning(s)" }
                    }
                }
                @if queue.is_empty() { tr { td colspan="4" .muted { "Nothing waits for review." } } }
            }
        },
    )
    .into_response()
}

async fn review_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(id): Path<String>,
) -> Response {
    render_review(&p, &s, &id, None)
}

fn render_review(p: &Platform, s: &Session, id: &str, flash: Option<&str>) -> Response {
    let sub = match p.submission(s, id) {
        Ok(x) => x,
        Err(e) => return error_page(Some(s), &e.problem()),
    };
    let waiting = sub.state == vodo_marketplace::workflow::State::Submitted;
    page(
        "Review",
        Some(s),
        html! {
            h1 { (sub.plugin) " " span.muted { (sub.version) " by " (sub.owner) } }
            @if let Some(f) = flash { div.error { (f) } }
            p { "State: " strong #state { (format!("{:?}", sub.state).to_lowercase()) } " · package " code { (sub.package_sha256.get(..16).unwrap_or("")) "…" } }
            @if let Some(f) = sub.feedback() { div.card { strong { "Feedback: " } (f) } }
            h2 { "Automated review" }
            table #report {
                tr { th { "Check" } th { "Severity" } th { "Where" } th { "Finding" } }
                @if let Some(r) = &sub.report {
                    @for f in &r.findings {
                        tr { td { (f.check) } td { (format!("{:?}", f.severity).to_lowercase()) } td { code { (f.location) } } td { (f.message) } }
                    }
                    @if r.findings.is_empty() { tr { td colspan="4" .muted { "No findings: every check passed." } } }
                }
            }
            @if waiting && matches!(s.role, Role::Admin | Role::Reviewer) {
                h2 { "Decision" }
                form.card method="post" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    label for="feedback" { "Feedback for the partner (required to reject)" }
                    input #feedback name="feedback" style="width:90%";
                    p {
                        button #approve name="decision" value="approve" type="submit" { "Approve and publish" }
                        " "
                        button.danger #reject name="decision" value="reject" type="submit" { "Reject" }
                    }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf: String,
    decision: String,
    #[serde(default)]
    feedback: String,
}

async fn review_decision(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(id): Path<String>,
    f: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let approve = f.decision == "approve";
    let (who, sub_id, feedback) = (s.clone(), id.clone(), f.feedback.clone());
    let decided = p
        .blocking(move |p| p.decide(&who, &sub_id, approve, &feedback))
        .await
        .and_then(|r| r);
    match decided {
        Ok(sub) if sub.state == vodo_marketplace::workflow::State::Published => {
            let mut url = "/admin/catalog?q=".to_owned();
            url.extend(form_urlencoded(&sub.plugin));
            Redirect::to(&url).into_response()
        }
        Ok(_) => Redirect::to(&format!("/admin/reviews/{id}")).into_response(),
        Err(e) => {
            let problem = e.problem();
            let mut r = render_review(&p, &s, &id, Some(&problem.detail));
            *r.status_mut() = problem.status;
            r
        }
    }
}

async fn catalog_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<crate::api::CatalogQuery>,
) -> Response {
    let list = match q.query() {
        Ok(query) => match p.catalog(&query) {
            Ok(l) => l,
            Err(e) => return error_page(Some(&s), &e.problem()),
        },
        Err(problem) => return error_page(Some(&s), &problem),
    };
    let own = match &s.role {
        Role::Merchant(i) => Some(i.clone()),
        _ => None,
    };
    let mut next = String::from("/admin/catalog?q=");
    next.extend(form_urlencoded(&q.q));
    page(
        "Catalog",
        Some(&s),
        html! {
            h1 { "Catalog" }
            form.card method="get" {
                input #search name="q" value=(q.q) placeholder="order, chat, invoice ..." size="30";
                " " button #find type="submit" { "Search" }
            }
            @for hit in &list.hits {
                @let l = &hit.listing;
                @let scopes: Vec<vodo_scopes::PluginScope> = l.scopes.iter().filter_map(|sc| sc.parse().ok()).collect();
                div.card.listing data-plugin=(l.plugin) {
                    h2 { (l.name) " " span.muted { (l.version) } }
                    p { (l.summary) }
                    p.rating {
                        @if hit.votes == 0 { span.muted { "Not rated yet" } }
                        @else { (format!("★ {:.1}", hit.mean)) " " span.muted { "(" (hit.votes) " rating(s))" } }
                    }
                    p.muted { "Asks to: " (scopes.iter().map(|sc| sc.describe()).collect::<Vec<_>>().join("; ")) }
                    @if let Some(i) = &own {
                        a href={ "/admin/installations/" (i) "/activate/" (l.plugin) } { "Activate in " (i) }
                        form.inline.rate method="post" action={ "/admin/catalog/" (l.plugin) "/rate" } {
                            input type="hidden" name="csrf" value=(s.csrf);
                            " · "
                            select name="stars" aria-label="Stars" {
                                @for n in (1..=5).rev() { option value=(n) { (n) " ★" } }
                            }
                            " "
                            input name="text" placeholder="Your review (optional)" size="30" aria-label="Review";
                            " "
                            button.plain type="submit" { "Rate" }
                        }
                    }
                }
            }
            @if list.hits.is_empty() { p.muted { "No plugin matches." } }
            @if let Some(cursor) = &list.next {
                p { a #next href={ (next) "&after=" (cursor.token()) } { "More →" } }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct RateForm {
    csrf: String,
    stars: u8,
    #[serde(default)]
    text: String,
}

async fn rate(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(slug): Path<String>,
    f: Result<Form<RateForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match p.rate(&s, &slug, f.stars, &f.text) {
        Ok(()) => {
            let mut url = "/admin/catalog?q=".to_owned();
            url.extend(form_urlencoded(&slug));
            Redirect::to(&url).into_response()
        }
        Err(e) => error_page(Some(&s), &e.problem()),
    }
}

#[cfg(test)]
mod tests {
    use vodo_core::Timestamp;

    #[test]
    fn times_are_shown_as_utc_dates() {
        assert_eq!(super::utc(Timestamp(0)), "1970-01-01 00:00:00");
        assert_eq!(
            super::utc(Timestamp(951_825_600_000)),
            "2000-02-29 12:00:00"
        );
        assert_eq!(
            super::utc(Timestamp(1_796_252_127_511)),
            "2026-12-02 22:55:27"
        );
        assert_eq!(super::utc(Timestamp(-1000)), "1969-12-31 23:59:59");
    }

    #[test]
    fn a_sign_in_returns_only_to_this_servers_console_and_oauth_pages() {
        use super::safe_next;
        for ok in [
            "/admin",
            "/admin/reviews",
            "/oauth/device?user_code=BCDF-GHJK",
        ] {
            assert_eq!(safe_next(Some(ok)), Some(ok));
        }
        for bad in [
            "//evil.example",
            "https://evil.example/admin",
            "/\\evil.example",
            "/admin//evil.example",
            "/admin\nLocation: x",
            "/v1/keys",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_next(None), None);
    }
}
