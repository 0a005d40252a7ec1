//! The platform's JSON API: sessions (`/v1/session`), installations and
//! their plugins (consent, install, enable, disable, uninstall, health,
//! events), API keys, the audit trail; and the entity API (`/api/{resource}/{id}`)
//! that plugins' API keys read and write through the key, rate-limit and
//! permission layers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use vodo_core::audit::{AuditFilter, AuditKind, AuditRecord};
use vodo_core::keys::{ApiKeyRecord, VerifiedKey};
use vodo_core::{InstallationId, PluginId, Timestamp};
use vodo_sandbox::HostServices;
use vodo_scopes::{PluginScope, ScopeSet};

use crate::accounts::SignInError;
use crate::platform::PluginView;
use crate::web::{ApiSession, JsonBody, manages, set_cookie};
use crate::{ApiKeyAuthLayer, PermissionLayer, Platform, Problem, RateLimitLayer, ServerError};

type Shared = Arc<Platform>;
type ApiResult = Result<Response, Problem>;

/// The most audit records one page holds.
pub const MAX_PAGE: usize = 500;

pub(crate) fn routes(platform: &Shared) -> Router<Shared> {
    let v1 = Router::new()
        .route("/v1/session", post(sign_in).delete(sign_out).get(whoami))
        .route("/v1/installations", get(installations))
        .route("/v1/packages", get(packages))
        .route(
            "/v1/installations/{installation}/plugins",
            get(plugins).post(install),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}",
            get(plugin).delete(uninstall),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/health",
            get(health),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/enable",
            post(enable),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/disable",
            post(disable),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/events",
            post(send_event),
        )
        .route(
            "/v1/installations/{installation}/consent/{plugin}",
            get(consent),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/keys",
            get(keys).post(issue_key),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/keys/{key}",
            axum::routing::delete(revoke_key),
        )
        .route(
            "/v1/installations/{installation}/plugins/{plugin}/keys/{key}/rotate",
            post(rotate_key),
        )
        .route("/v1/audit", get(audit))
        .route("/v1/audit/verify", post(verify));
    v1.merge(entities(platform))
}

/// `/api/{resource}/{id}` for every resource of the platform: `GET` needs
/// `entities:read:{kind}`, `PUT` and `DELETE` need `entities:write:{kind}`,
/// and both need the grant's `api.endpoints` to list the resource.
fn entities(platform: &Shared) -> Router<Shared> {
    let host = &platform.host;
    let mut router = Router::new();
    for r in &platform.config.resources {
        let (Ok(read), Ok(write)) = (
            format!("entities:read:{}", r.kind).parse::<PluginScope>(),
            format!("entities:write:{}", r.kind).parse::<PluginScope>(),
        ) else {
            tracing::error!(
                resource = r.name,
                kind = r.kind,
                "a resource's kind is not an entity name; it is not served"
            );
            continue;
        };
        let kind: Arc<str> = r.kind.as_str().into();
        let (k1, k2, k3) = (kind.clone(), kind.clone(), kind);
        let reads = get(move |s, k, p| get_entity(s, k, p, k1))
            .layer::<_, std::convert::Infallible>(
                PermissionLayer::new(host, read).resource(&r.name),
            );
        let writes = axum::routing::put(move |s, k, p, b| put_entity(s, k, p, b, k2))
            .delete(move |s, k, p| delete_entity(s, k, p, k3))
            .layer::<_, std::convert::Infallible>(
                PermissionLayer::new(host, write).resource(&r.name),
            );
        router = router.route(
            &format!("/api/{}/{{id}}", r.name),
            reads
                .merge(writes)
                .layer::<_, std::convert::Infallible>(RateLimitLayer::new(host))
                .layer::<_, std::convert::Infallible>(ApiKeyAuthLayer::new(host)),
        );
    }
    router
}

fn entity_id(id: &str) -> Result<(), Problem> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "a record id is 1 to 128 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(())
}

fn service_problem(e: vodo_sandbox::ServiceError) -> Problem {
    match e {
        vodo_sandbox::ServiceError::NotFound(what) => {
            Problem::new(StatusCode::NOT_FOUND, "not_found", what)
        }
        vodo_sandbox::ServiceError::Invalid(why) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why)
        }
        vodo_sandbox::ServiceError::Unavailable(why) => {
            tracing::error!(why, "the entity store failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the records cannot be reached now; try again shortly",
            )
        }
    }
}

fn json_response(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn get_entity(
    State(p): State<Shared>,
    Extension(key): Extension<VerifiedKey>,
    Path(id): Path<String>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    match p.store.get_entity(&key.installation, &kind, &id) {
        Ok(Some(json)) => Ok(json_response(StatusCode::OK, json)),
        Ok(None) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no {kind} `{id}` in this installation"),
        )),
        Err(e) => Err(service_problem(e)),
    }
}

async fn put_entity(
    State(p): State<Shared>,
    Extension(key): Extension<VerifiedKey>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    if !body.is_object() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("a {kind} is a JSON object"),
        ));
    }
    let text = body.to_string();
    p.store
        .put_entity(&key.installation, &kind, &id, &text)
        .map_err(service_problem)?;
    Ok(json_response(StatusCode::OK, text))
}

async fn delete_entity(
    State(p): State<Shared>,
    Extension(key): Extension<VerifiedKey>,
    Path(id): Path<String>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    match p.store.delete_entity(&key.installation, &kind, &id) {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no {kind} `{id}` in this installation"),
        )),
        Err(e) => Err(service_problem(e)),
    }
}

#[derive(Deserialize)]
struct SignIn {
    email: String,
    password: String,
}

pub(crate) fn sign_in_problem(e: SignInError) -> Problem {
    match e {
        SignInError::Wrong => Problem::new(
            StatusCode::UNAUTHORIZED,
            "wrong_credentials",
            "the email or the password is wrong",
        ),
        SignInError::Limited(wait) => {
            let secs = wait.as_secs().max(1);
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "sign_in_limited",
                format!("too many sign-in attempts: wait {secs} s and try again"),
            )
            .header(header::RETRY_AFTER, secs.into())
        }
        SignInError::Server(e) => e.problem(),
    }
}

async fn sign_in(
    State(p): State<Shared>,
    client: crate::web::ClientAddr,
    JsonBody(body): JsonBody<SignIn>,
) -> ApiResult {
    let (session, token) = p
        .accounts
        .sign_in(&body.email, &body.password, &client.0)
        .map_err(sign_in_problem)?;
    let mut r = Json(json!({
        "email": session.email,
        "role": session.role.to_string(),
        "csrf": session.csrf,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&p, Some(&token)));
    Ok(r)
}

async fn sign_out(State(p): State<Shared>, _: ApiSession, headers: HeaderMap) -> ApiResult {
    if let Some(token) = crate::web::cookie(&headers) {
        p.accounts.sign_out(token).map_err(|e| e.problem())?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&p, None));
    Ok(r)
}

async fn whoami(ApiSession(s): ApiSession) -> Json<Value> {
    Json(json!({ "email": s.email, "role": s.role.to_string(), "csrf": s.csrf }))
}

async fn installations(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    let list = p.installations(&s.role).map_err(|e| e.problem())?;
    Ok(
        Json(json!({ "installations": list.iter().map(|i| i.as_str()).collect::<Vec<_>>() }))
            .into_response(),
    )
}

async fn packages(State(p): State<Shared>, _: ApiSession) -> ApiResult {
    let list = p.store.packages().map_err(|e| e.problem())?;
    Ok(Json(json!({ "packages": list.iter().map(|p| json!({
        "slug": p.slug, "version": p.version, "digest": p.digest,
    })).collect::<Vec<_>>() }))
    .into_response())
}

pub(crate) fn health_json(v: &PluginView) -> Value {
    json!({
        "status": v.health.status.to_string(),
        "open_until": v.health.open_until.map(|t| t.as_millis()),
        "trips": v.health.trips,
        "recent_failures": v.health.recent_failures.iter().map(|f| json!({
            "at": f.at.as_millis(), "error": f.error,
        })).collect::<Vec<_>>(),
    })
}

fn view_json(v: &PluginView) -> Value {
    json!({
        "installation": v.installation.as_str(),
        "plugin": v.plugin.as_str(),
        "name": v.name,
        "version": v.version,
        "enabled": v.enabled,
        "scopes": v.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "health": health_json(v),
        "usage": {
            "calls": v.usage.calls,
            "failures": v.usage.failures,
            "wall_ms": v.usage.wall.as_secs_f64() * 1e3,
            "host_calls": v.usage.host_calls,
            "denied_host_calls": v.usage.denied_host_calls,
            "peak_memory": v.usage.peak_memory,
        },
    })
}

fn ids(installation: String, plugin: String) -> Result<(InstallationId, PluginId), Problem> {
    let bad = |what: &str, v: &str| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("`{v}` is not {what}: use lowercase letters, digits and `-`"),
        )
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if !ok(&installation) {
        return Err(bad("an installation id", &installation));
    }
    if !ok(&plugin) {
        return Err(bad("a plugin slug", &plugin));
    }
    Ok((InstallationId::new(installation), PluginId::new(plugin)))
}

fn installation_id(installation: String) -> Result<InstallationId, Problem> {
    ids(installation, "x".into()).map(|(i, _)| i)
}

async fn plugins(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(installation): Path<String>,
) -> ApiResult {
    let i = installation_id(installation)?;
    manages(&s, &i)?;
    let list = p.plugins(&i).map_err(|e| e.problem())?;
    Ok(Json(json!({ "plugins": list.iter().map(view_json).collect::<Vec<_>>() })).into_response())
}

async fn plugin(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    Ok(Json(view_json(&v)).into_response())
}

async fn health(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    let mut body = health_json(&v);
    body["usage"] = view_json(&v)["usage"].clone();
    Ok(Json(body).into_response())
}

pub(crate) fn scope_list(scopes: &[PluginScope]) -> Value {
    scopes
        .iter()
        .map(|s| json!({ "scope": s.to_string(), "description": s.describe() }))
        .collect()
}

async fn consent(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let (m, diff, installed) = p.consent_for(&i, pl.as_str()).map_err(|e| e.problem())?;
    Ok(Json(json!({
        "plugin": m.slug.as_str(),
        "name": m.name,
        "version": m.version.to_string(),
        "installed": installed,
        "added": scope_list(&diff.added),
        "dropped": scope_list(&diff.dropped),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct Install {
    plugin: String,
    consent: Vec<String>,
}

pub(crate) fn parse_scopes(list: &[String]) -> Result<Vec<PluginScope>, Problem> {
    list.iter()
        .map(|s| {
            s.parse::<PluginScope>().map_err(|e| {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_scope", e.to_string())
            })
        })
        .collect()
}

async fn install(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(installation): Path<String>,
    JsonBody(body): JsonBody<Install>,
) -> ApiResult {
    let (i, pl) = ids(installation, body.plugin)?;
    manages(&s, &i)?;
    let agreed = parse_scopes(&body.consent)?;
    p.install(&i, pl.as_str(), &agreed, &s.email)
        .map_err(|e| e.problem())?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    Ok((StatusCode::CREATED, Json(view_json(&v))).into_response())
}

async fn set_enabled(p: Shared, s: ApiSession, path: (String, String), on: bool) -> ApiResult {
    let (i, pl) = ids(path.0, path.1)?;
    manages(&s.0, &i)?;
    p.plugin(&i, &pl).map_err(|e| e.problem())?;
    p.set_enabled(&i, &pl, on, &s.0.email)
        .map_err(|e| e.problem())?;
    let v = p.plugin(&i, &pl).map_err(|e| e.problem())?;
    Ok(Json(view_json(&v)).into_response())
}

async fn enable(
    State(p): State<Shared>,
    s: ApiSession,
    Path(path): Path<(String, String)>,
) -> ApiResult {
    set_enabled(p, s, path, true).await
}

async fn disable(
    State(p): State<Shared>,
    s: ApiSession,
    Path(path): Path<(String, String)>,
) -> ApiResult {
    set_enabled(p, s, path, false).await
}

async fn uninstall(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    p.uninstall(&i, &pl).map_err(|e| e.problem())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct SendEvent {
    event: String,
    #[serde(default)]
    payload: String,
}

pub(crate) fn call_json(call: &vodo_sandbox::Call<()>) -> Value {
    json!({
        "ok": call.result.is_ok(),
        "error": call.result.as_ref().err().map(ToString::to_string),
        "usage": {
            "wall_ms": call.usage.wall.as_secs_f64() * 1e3,
            "host_calls": call.usage.host_calls,
            "denied_host_calls": call.usage.denied_host_calls,
            "peak_memory": call.usage.peak_memory,
        },
    })
}

async fn send_event(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<SendEvent>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    if body.event.is_empty() || body.event.len() > 128 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "an event name is 1 to 128 characters, such as `order.created`",
        ));
    }
    let call = p
        .send_event(&i, &pl, &body.event, &body.payload)
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(call_json(&call)).into_response())
}

pub(crate) fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "scopes": k.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at": k.created_at.as_millis(),
        "expires_at": k.expires_at.map(|t| t.as_millis()),
        "revoked_at": k.revoked_at.map(|t| t.as_millis()),
        "replaced_by": k.replaced_by,
        "usage_count": k.usage_count,
        "last_used_at": k.last_used_at.map(|t| t.as_millis()),
    })
}

async fn keys(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let list = p.keys(&i, &pl).map_err(|e| e.problem())?;
    Ok(Json(json!({ "keys": list.iter().map(key_json).collect::<Vec<_>>() })).into_response())
}

#[derive(Deserialize)]
struct IssueBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    ttl_days: Option<u32>,
}

async fn issue_key(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<IssueBody>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let scopes: ScopeSet = parse_scopes(&body.scopes)?.into_iter().collect();
    let ttl = body
        .ttl_days
        .map(|d| Duration::from_secs(u64::from(d) * 24 * 3600));
    let (key, record) = p
        .issue_key(&i, &pl, &body.name, scopes, ttl)
        .map_err(|e| e.problem())?;
    let mut v = key_json(&record);
    v["key"] = key.expose_secret().into();
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn revoke_key(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin, key)): Path<(String, String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    p.revoke_key(&i, &pl, &key).map_err(|e| e.problem())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct RotateBody {
    #[serde(default)]
    grace_seconds: u64,
}

async fn rotate_key(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin, key)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    if body.grace_seconds > 30 * 24 * 3600 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "a rotation's grace period is at most 30 days (2592000 seconds)",
        ));
    }
    let (new, record) = p
        .rotate_key(&i, &pl, &key, Duration::from_secs(body.grace_seconds))
        .map_err(|e| e.problem())?;
    let mut v = key_json(&record);
    v["key"] = new.expose_secret().into();
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The audit trail's query parameters, shared with the console's viewer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    pub plugin: Option<String>,
    pub installation: Option<String>,
    pub kind: Option<String>,
    /// Milliseconds since the epoch.
    pub from: Option<i64>,
    pub until: Option<i64>,
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// The filter, narrowed to what `session` may see; one page more than
    /// asked for is fetched to tell whether there is a next page.
    pub(crate) fn filter(&self, s: &crate::Session) -> Result<(AuditFilter, usize), Problem> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut installation = nonempty(&self.installation).map(InstallationId::new);
        match &s.role {
            crate::Role::Admin => {}
            crate::Role::Merchant(own) => {
                if installation.as_ref().is_some_and(|i| i != own) {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "not_yours",
                        format!("{} may read only the audit records of `{own}`", s.email),
                    ));
                }
                installation = Some(own.clone());
            }
            _ => {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "role",
                    format!(
                        "the audit trail is for admins and merchants; {} is a {}",
                        s.email, s.role
                    ),
                ));
            }
        }
        let kinds =
            match nonempty(&self.kind) {
                None => Vec::new(),
                Some(k) => vec![k.parse::<AuditKind>().map_err(|e| {
                    Problem::new(StatusCode::BAD_REQUEST, "bad_kind", e.to_string())
                })?],
            };
        let limit = self.limit.unwrap_or(50).clamp(1, MAX_PAGE);
        Ok((
            AuditFilter {
                plugin: nonempty(&self.plugin).map(PluginId::new),
                installation,
                kinds,
                from: self.from.map(Timestamp),
                until: self.until.map(Timestamp),
                after_seq: self.after,
                limit: Some(limit + 1),
            },
            limit,
        ))
    }
}

pub(crate) fn record_json(r: &AuditRecord) -> Value {
    let mut v = serde_json::to_value(&r.event).unwrap_or(Value::Null);
    v["seq"] = r.seq.into();
    v["kind"] = r.event.kind().as_str().into();
    v
}

async fn audit(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    let (filter, limit) = q.filter(&s)?;
    let mut records = p.audit(&filter).map_err(|e| e.problem())?;
    let next = (records.len() > limit).then(|| records[limit - 1].seq);
    records.truncate(limit);
    Ok(Json(json!({
        "records": records.iter().map(record_json).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .into_response())
}

async fn verify(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    if s.role != crate::Role::Admin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "role",
            format!(
                "verifying the whole audit trail is for admins; {} is a {}",
                s.email, s.role
            ),
        ));
    }
    match p.verify_audit() {
        Ok(r) => Ok(
            Json(json!({ "ok": true, "records": r.records, "head_seq": r.head.seq }))
                .into_response(),
        ),
        Err(ServerError::Core(e @ vodo_core::Error::Tampered { .. })) => Ok((
            StatusCode::OK,
            Json(json!({ "ok": false, "error": e.to_string() })),
        )
            .into_response()),
        Err(e) => Err(e.problem()),
    }
}
