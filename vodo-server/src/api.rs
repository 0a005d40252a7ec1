//! The platform's JSON API: sessions (`/v1/session`), installations and
//! their plugins (consent, install, enable, disable, uninstall, health,
//! events), API keys, the audit trail; and the entity API (`/api/{resource}/{id}`)
//! that plugins' API keys read and write through the key, rate-limit and
//! permission layers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::handler::Handler as _;
use axum::response::{IntoResponse, Response};
use axum::routing::{get_service, put_service};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vodo_core::audit::{AuditFilter, AuditKind, AuditRecord};
use vodo_core::keys::ApiKeyRecord;
use vodo_core::{InstallationId, PluginId, Timestamp};
use vodo_sandbox::HostServices;
use vodo_scopes::{PluginScope, ScopeSet};

use crate::accounts::SignInError;
use crate::platform::PluginView;
use crate::web::{AccountSession, Acting, ApiSession, JsonBody, QueryParams, manages, set_cookie};
use crate::{ApiKeyAuthLayer, PermissionLayer, Platform, Problem, RateLimitLayer, ServerError};

type Shared = Arc<Platform>;
type ApiResult = Result<Response, Problem>;

/// The most audit records one page holds.
pub const MAX_PAGE: usize = 500;

/// A refusal, as every route answers one (RFC 9457).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ProblemDoc {
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong, for programs: `not_signed_in`, `csrf`, `not_yours`, ...
    code: String,
    /// What went wrong and what to do, for people.
    detail: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Vodo platform API",
        description = "People sign in with `POST /v1/session` (a session cookie, and a CSRF token for the `x-csrf-token` header of every unsafe request). Plugins' back ends call `/api/{resource}/{id}` with their API keys (`Authorization: Bearer vodo_...`). Every refusal is an RFC 9457 problem with a stable `code`."
    ),
    tags(
        (name = "session", description = "Signing in and out"),
        (name = "installations", description = "Plugins of an installation: consent, install, upgrade, enable, disable, uninstall, health, test events"),
        (name = "keys", description = "Plugins' API keys"),
        (name = "audit", description = "The tamper-evident audit trail"),
        (name = "records", description = "Records, for plugins' API keys"),
        (name = "marketplace", description = "Submissions, the review queue and the catalog"),
        (name = "apps", description = "Partner apps registered with the OAuth provider"),
        (name = "webhooks", description = "Partner apps' webhook endpoints, the delivery log, redelivery and the test tool"),
        (name = "updates", description = "Channels, update policies, upgrades and rollbacks through the signed index, the updater, and the index's files for hosts and CDNs"),
    ),
    components(schemas(ProblemDoc))
)]
struct ApiDoc;

/// The JSON API's routes and the OpenAPI document generated from the same
/// route definitions.
pub(crate) fn routes(platform: &Shared) -> (Router<Shared>, Value) {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sign_in, sign_out, whoami))
        .routes(routes!(change_password))
        .routes(routes!(installations))
        .routes(routes!(packages))
        .routes(routes!(plugins, install))
        .routes(routes!(plugin, uninstall))
        .routes(routes!(health))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(send_event))
        .routes(routes!(plugin_logs))
        .routes(routes!(consent))
        .routes(routes!(keys, issue_key))
        .routes(routes!(revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(audit))
        .routes(routes!(verify))
        .routes(routes!(submissions, submit))
        .routes(routes!(submission))
        .routes(routes!(decide))
        .routes(routes!(catalog))
        .routes(routes!(listing))
        .routes(routes!(rate));
    let (router, doc) = crate::dev_api::add(crate::updates_api::add(crate::apps_api::add(router)))
        .split_for_parts();
    let mut doc = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    let (entities, paths) = entities(platform);
    if let Some(all) = doc["paths"].as_object_mut() {
        all.extend(paths);
        all.extend(oauth_doc());
    }
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.push(json!({ "name": "oauth", "description": "The OAuth 2.1 provider of partner apps (authorization code with PKCE S256, refresh rotation, client credentials, RFC 7009 revocation, RFC 7662 introspection, RFC 8414 metadata) and of the platform's own tools (the RFC 8628 device grant of `vodo login`)" }));
    }
    doc["components"]["securitySchemes"]["api_key"] = json!({
        "type": "http", "scheme": "bearer",
        "description": "A plugin's API key, `vodo_...`, issued by `POST /v1/installations/{installation}/plugins/{plugin}/keys`",
    });
    doc["components"]["securitySchemes"]["oauth"] = json!({
        "type": "oauth2",
        "description": "A partner app's access token, `vodo_at_...`, that a merchant authorized (authorization code with PKCE)",
        "flows": { "authorizationCode": {
            "authorizationUrl": format!("{}/oauth/authorize", platform.config.issuer),
            "tokenUrl": format!("{}/oauth/token", platform.config.issuer),
            "refreshUrl": format!("{}/oauth/token", platform.config.issuer),
            "scopes": platform.config.resources.iter().flat_map(|r| [
                (format!("entities:read:{}", r.kind), Value::from(format!("Read {}", r.name))),
                (format!("entities:write:{}", r.kind), Value::from(format!("Write {}", r.name))),
            ]).collect::<serde_json::Map<String, Value>>(),
        } },
    });
    (router.merge(entities), doc)
}

/// The document's entries for the OAuth provider's endpoints, which
/// `vodo-oauth` serves (its own router, not utoipa's): what they take and
/// answer, from its protocol profile.
fn oauth_doc() -> serde_json::Map<String, Value> {
    let form = |fields: &[(&str, &str)], required: &[&str]| {
        let props: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, d)| {
                (
                    (*k).to_owned(),
                    json!({ "type": "string", "description": d }),
                )
            })
            .collect();
        json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": {
            "type": "object", "properties": props, "required": required,
        } } } })
    };
    let error = |d: &str| {
        json!({ "description": d, "content": { "application/json": { "schema": { "type": "object", "properties": {
        "error": { "type": "string" }, "error_description": { "type": "string" } } } } } })
    };
    let page = |d: &str| json!({ "description": d, "content": { "text/html": { "schema": { "type": "string" } } } });
    let redirect = || json!({ "description": "Back to the app's redirect URI with `code`, `state` and `iss`, or with `error`" });
    let client = [
        ("client_id", "The app's id, when not sent with HTTP Basic"),
        (
            "client_secret",
            "A confidential app's secret, when not sent with HTTP Basic",
        ),
    ];
    let authorize_params = json!([
        { "name": "response_type", "in": "query", "required": true, "schema": { "type": "string", "enum": ["code"] } },
        { "name": "client_id", "in": "query", "required": true, "schema": { "type": "string" } },
        { "name": "redirect_uri", "in": "query", "required": true, "schema": { "type": "string" }, "description": "One of the app's registered redirect URIs, exactly (loopback: any port)" },
        { "name": "scope", "in": "query", "required": false, "schema": { "type": "string" }, "description": "Space-separated scopes, such as `entities:read:order offline_access`" },
        { "name": "state", "in": "query", "required": false, "schema": { "type": "string" } },
        { "name": "code_challenge", "in": "query", "required": true, "schema": { "type": "string" }, "description": "base64url SHA-256 of the PKCE verifier" },
        { "name": "code_challenge_method", "in": "query", "required": true, "schema": { "type": "string", "enum": ["S256"] } },
    ]);
    let mut token_fields = vec![
        (
            "grant_type",
            "`authorization_code`, `refresh_token`, `client_credentials` or `urn:ietf:params:oauth:grant-type:device_code`",
        ),
        ("device_code", "The device code (device_code grant)"),
        ("code", "The authorization code (authorization_code)"),
        (
            "redirect_uri",
            "The redirect URI the code was sent to (authorization_code)",
        ),
        ("code_verifier", "The PKCE verifier (authorization_code)"),
        ("refresh_token", "The refresh token (refresh_token)"),
        (
            "scope",
            "Scopes, for client_credentials or a narrower refresh",
        ),
    ];
    token_fields.extend(client);
    let mut token_param = vec![
        ("token", "The token"),
        ("token_type_hint", "`access_token` or `refresh_token`"),
    ];
    token_param.extend(client);
    let op = |summary: &str, extra: Value| {
        let mut v = json!({ "tags": ["oauth"], "summary": summary });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    };
    let mut paths = serde_json::Map::new();
    paths.insert("/.well-known/oauth-authorization-server".into(), json!({ "get": op(
        "The provider's metadata (RFC 8414)",
        json!({ "operationId": "oauth_metadata", "responses": { "200": { "description": "The issuer and its endpoints", "content": { "application/json": { "schema": { "type": "object" } } } } } }),
    ) }));
    paths.insert("/oauth/authorize".into(), json!({
        "get": op("The consent page a signed-in merchant sees for an app's authorization request", json!({
            "operationId": "oauth_authorize", "parameters": authorize_params,
            "responses": { "200": page("The consent page"), "302": redirect(), "400": page("A request that cannot go back to the app (unknown app or redirect URI)"), "401": page("Not signed in as a merchant") },
        })),
        "post": op("The merchant's decision on the consent page", json!({
            "operationId": "oauth_decide",
            "requestBody": form(&[("decision", "`allow` or `deny`"), ("csrf", "The consent page's anti-forgery token")], &["decision", "csrf"]),
            "responses": { "302": redirect(), "400": page("A forged or expired consent form"), "401": page("Not signed in as a merchant") },
        })),
    }));
    paths.insert("/oauth/token".into(), json!({ "post": op("Exchange a code, a refresh token or client credentials for tokens", json!({
        "operationId": "oauth_token", "requestBody": form(&token_fields, &["grant_type"]),
        "responses": { "200": { "description": "`access_token` (`vodo_at_...`), `token_type`, `expires_in`, `scope`, and `refresh_token` with `offline_access`", "content": { "application/json": { "schema": { "type": "object" } } } },
            "400": error("An invalid, used or expired grant, or a bad request"), "401": error("The client did not authenticate") },
    })) }));
    paths.insert("/oauth/device_authorization".into(), json!({ "post": op("Start a device sign-in (RFC 8628): a first-party tool such as `vodo login` gets a code for the user to approve", json!({
        "operationId": "oauth_device_authorization",
        "requestBody": form(&[("client_id", "The tool's client id (`vodo-cli`)"), ("scope", "Account scopes, such as `marketplace:publish offline_access` (default: the client's)")], &["client_id"]),
        "responses": { "200": { "description": "`device_code`, `user_code` (`BCDF-GHJK`), `verification_uri`, `verification_uri_complete`, `expires_in`, `interval`", "content": { "application/json": { "schema": { "type": "object" } } } },
            "400": error("A store's scope asked, or a client not registered for the device grant"), "401": error("An unknown client") },
    })) }));
    paths.insert("/oauth/device".into(), json!({
        "get": op("The page where a signed-in user types or confirms a device sign-in's code (without a session: the console's sign-in first)", json!({
            "operationId": "oauth_device_page",
            "parameters": [{ "name": "user_code", "in": "query", "required": false, "schema": { "type": "string" }, "description": "The code the tool shows, in any case, with or without the dash" }],
            "responses": { "200": page("The code form, or what the tool asks for with Allow and Deny"), "303": { "description": "Not signed in: to `/admin/login?next=...`" }, "400": page("An unknown, expired or decided code") },
        })),
        "post": op("The user's decision on a device sign-in", json!({
            "operationId": "oauth_device_decide",
            "requestBody": form(&[("user_code", "The code"), ("decision", "`allow` or `deny`"), ("csrf", "The page's anti-forgery token")], &["user_code", "decision", "csrf"]),
            "responses": { "200": page("Signed in, or denied"), "400": page("A forged or expired form"), "401": page("Not signed in"), "409": page("Decided meanwhile, or expired") },
        })),
    }));
    paths.insert("/oauth/revoke".into(), json!({ "post": op("Revoke a token (RFC 7009)", json!({
        "operationId": "oauth_revoke", "requestBody": form(&token_param, &["token"]),
        "responses": { "200": { "description": "Revoked, or it was not a valid token (RFC 7009 answers the same)" }, "400": error("A bad request"), "401": error("The client did not authenticate") },
    })) }));
    paths.insert("/oauth/introspect".into(), json!({ "post": op("Whether a token is active and what it allows (RFC 7662)", json!({
        "operationId": "oauth_introspect", "requestBody": form(&token_param, &["token"]),
        "responses": { "200": { "description": "`active`, and for an active token its `scope`, `client_id`, `sub`, `exp`", "content": { "application/json": { "schema": { "type": "object" } } } },
            "400": error("A bad request"), "401": error("The client did not authenticate (confidential clients only)") },
    })) }));
    paths
}

/// The document's entries for `/api/{name}/{id}`, generated from the same
/// resource list that makes the routes.
fn entity_doc(r: &crate::Resource) -> Value {
    let problem = |d: &str| json!({ "description": d, "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/ProblemDoc" } } } });
    let common = json!({
        "401": problem("No key or token, or one that does not verify; see `WWW-Authenticate`"),
        "403": problem("The plugin's grant, the key or the app's token lacks the scope (named in `scope`), or the plugin is disabled"),
        "404": problem("No such record in the key's installation"),
        "429": problem("Over the key's or the installation's rate limit; see `Retry-After`, `RateLimit` and `RateLimit-Policy`"),
    });
    let with = |extra: Value| {
        let mut r = common.clone();
        if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        r
    };
    let id = json!([{ "name": "id", "in": "path", "required": true, "description": "The record's id: 1 to 128 letters, digits, `-`, `_` or `.`", "schema": { "type": "string" } }]);
    let security = json!([{ "api_key": [] }, { "oauth": [] }]);
    let kind = &r.kind;
    json!({
        "get": {
            "tags": ["records"], "operationId": format!("get_{kind}"),
            "summary": format!("Read a record of `{kind}` (needs `entities:read:{kind}` and the `{}` endpoint)", r.name),
            "parameters": id, "security": security,
            "responses": with(json!({ "200": { "description": format!("The {kind}, as stored"), "content": { "application/json": { "schema": { "type": "object" } } } } })),
        },
        "put": {
            "tags": ["records"], "operationId": format!("put_{kind}"),
            "summary": format!("Create or replace a record of `{kind}` (needs `entities:write:{kind}`)"),
            "parameters": id, "security": security,
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": with(json!({
                "200": { "description": format!("Replaced: the {kind}, as stored; `{kind}.updated` is sent to webhooks"), "content": { "application/json": { "schema": { "type": "object" } } } },
                "201": { "description": format!("Created: the {kind}, as stored; `{kind}.created` is sent to webhooks"), "content": { "application/json": { "schema": { "type": "object" } } } },
                "400": problem("A body that is not JSON, or an id that is not one"),
                "413": problem("A body over 64 KiB"),
                "422": problem("JSON that is not an object"),
            })),
        },
        "delete": {
            "tags": ["records"], "operationId": format!("delete_{kind}"),
            "summary": format!("Delete a record of `{kind}` (needs `entities:write:{kind}`)"),
            "parameters": id, "security": security,
            "responses": with(json!({ "204": { "description": format!("Deleted; `{kind}.deleted` is sent to webhooks") } })),
        },
    })
}

/// `/api/{resource}/{id}` for every resource of the platform: `GET` needs
/// `entities:read:{kind}`, `PUT` and `DELETE` need `entities:write:{kind}`,
/// and both need the grant's `api.endpoints` to list the resource.
fn entities(platform: &Shared) -> (Router<Shared>, serde_json::Map<String, Value>) {
    let host = &platform.host;
    let mut router = Router::new();
    let mut paths = serde_json::Map::new();
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
        // The checks wrap each handler itself (the key first, then the rate
        // limit, then the scope): one boxed service per request instead of
        // one per `MethodRouter::layer`.
        let guarded = |scope: PluginScope| {
            tower::ServiceBuilder::new()
                .layer(ApiKeyAuthLayer::new(host).with_oauth(&platform.oauth))
                .layer(RateLimitLayer::new(host).partner_limit(platform.config.partner_rate_limit))
                .layer(PermissionLayer::new(host, scope).resource(&r.name))
        };
        let state = Arc::clone(platform);
        let reads = get_service(
            guarded(read)
                .service((move |s, k, p| get_entity(s, k, p, k1)).with_state(Arc::clone(&state))),
        );
        let writes = put_service(guarded(write.clone()).service(
            (move |s, k, p, b| put_entity(s, k, p, b, k2)).with_state(Arc::clone(&state)),
        ))
        .delete_service(
            guarded(write).service((move |s, k, p| delete_entity(s, k, p, k3)).with_state(state)),
        );
        paths.insert(format!("/api/{}/{{id}}", r.name), entity_doc(r));
        let other = || async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "a record is read with GET, written with PUT and removed with DELETE",
            )
        };
        router = router.route(
            &format!("/api/{}/{{id}}", r.name),
            reads.merge(writes).fallback(other),
        );
    }
    (router, paths)
}

/// Checks a record id (or kind, or setting key, named by `what`): 1 to 128
/// letters, digits, `-`, `_` or `.`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), Problem> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            format!("a {what} is 1 to 128 letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(())
}

fn entity_id(id: &str) -> Result<(), Problem> {
    check_name("record id", id)
}

/// A record of `installation` as stored (its JSON text), or `404`.
pub(crate) fn read_record(
    p: &Platform,
    installation: &InstallationId,
    kind: &str,
    id: &str,
) -> Result<String, Problem> {
    match p.store.get_entity(installation, kind, id) {
        Ok(Some(json)) => Ok(json),
        Ok(None) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no {kind} `{id}` in this installation"),
        )),
        Err(e) => Err(service_problem(e)),
    }
}

/// Writes `body`, a JSON object, as a record of `installation` and
/// publishes `{kind}.created` or `{kind}.updated` to partner apps, as
/// every record written through the platform is: whether it is new, and
/// the text stored.
pub(crate) fn write_record(
    p: &Platform,
    installation: &InstallationId,
    kind: &str,
    id: &str,
    body: Value,
) -> Result<(bool, String), Problem> {
    if !body.is_object() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("a {kind} is a JSON object"),
        ));
    }
    let text = body.to_string();
    let created = p
        .store
        .write_entity(installation, kind, id, &text)
        .map_err(service_problem)?;
    let event = if created { "created" } else { "updated" };
    p.publish(
        &format!("{kind}.{event}"),
        installation,
        json!({ "id": id, kind: body }),
    );
    Ok((created, text))
}

pub(crate) fn service_problem(e: vodo_sandbox::ServiceError) -> Problem {
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

pub(crate) fn json_response(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn get_entity(
    State(p): State<Shared>,
    Acting(installation): Acting,
    Path(id): Path<String>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    let json = read_record(&p, &installation, &kind, &id)?;
    Ok(json_response(StatusCode::OK, json))
}

async fn put_entity(
    State(p): State<Shared>,
    Acting(installation): Acting,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Value>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    let (created, text) = write_record(&p, &installation, &kind, &id, body)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, text))
}

async fn delete_entity(
    State(p): State<Shared>,
    Acting(installation): Acting,
    Path(id): Path<String>,
    kind: Arc<str>,
) -> ApiResult {
    entity_id(&id)?;
    match p.store.delete_entity(&installation, &kind, &id) {
        Ok(true) => {
            p.publish(
                &format!("{kind}.deleted"),
                &installation,
                json!({ "id": id }),
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Ok(false) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no {kind} `{id}` in this installation"),
        )),
        Err(e) => Err(service_problem(e)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SignIn {
    /// The account's email.
    email: String,
    /// Its password.
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

/// Sign in with an email and a password.
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = SignIn,
    responses(
        (status = 200, description = "Signed in: the session cookie is set; `csrf` goes in the `x-csrf-token` header of every unsafe request", body = Object),
        (status = 401, description = "The email or the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts for this account or client; see `Retry-After`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn sign_in(
    State(p): State<Shared>,
    client: crate::web::ClientAddr,
    JsonBody(body): JsonBody<SignIn>,
) -> ApiResult {
    let (session, token) = p
        .sign_in(&body.email, &body.password, &client.0)
        .await
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

/// Sign out: the session ends at once.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 204, description = "Signed out; the cookie is cleared"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn sign_out(State(p): State<Shared>, _: ApiSession, headers: HeaderMap) -> ApiResult {
    if let Some(token) = crate::web::cookie(&headers) {
        p.accounts.sign_out(token).map_err(|e| e.problem())?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&p, None));
    Ok(r)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordChange {
    /// The account's password now.
    current: String,
    /// The new one: at least 12 characters, not the current one.
    new: String,
}

/// Change the signed-in account's password. Every other session of the
/// account ends; this one stays.
#[utoipa::path(put, path = "/v1/session/password", tag = "session", request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; the account's other sessions are signed out"),
        (status = 400, description = "The body is not JSON", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The current password is wrong (`wrong_password`), or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Another change of this account's password came first", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The new password is too short or the current one", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "More than 5 attempts a minute for this account; see `Retry-After`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(p): State<Shared>,
    _: ApiSession,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PasswordChange>,
) -> ApiResult {
    let token = crate::web::cookie(&headers).unwrap_or_default();
    p.change_password(token, &body.current, &body.new)
        .await
        .map_err(|e| e.problem())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The signed-in account.
#[utoipa::path(get, path = "/v1/session", tag = "session",
    responses((status = 200, description = "The signed-in account, its role and its CSRF token", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn whoami(AccountSession(s): AccountSession) -> Json<Value> {
    // A token from `vodo login` has no CSRF token: it needs none.
    let csrf = (!s.csrf.is_empty()).then_some(s.csrf);
    Json(json!({ "email": s.email, "role": s.role.to_string(), "csrf": csrf }))
}

/// The installations this account manages.
#[utoipa::path(get, path = "/v1/installations", tag = "installations",
    responses((status = 200, description = "The installations this account manages", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn installations(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    let list = p.installations(&s.role).map_err(|e| e.problem())?;
    Ok(
        Json(json!({ "installations": list.iter().map(|i| i.as_str()).collect::<Vec<_>>() }))
            .into_response(),
    )
}

/// The packages the platform can install.
#[utoipa::path(get, path = "/v1/packages", tag = "installations",
    responses((status = 200, description = "The packages the platform can install", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
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

pub(crate) fn view_json(v: &PluginView) -> Value {
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
            "p50_ms": v.usage.p50.as_secs_f64() * 1e3,
            "p99_ms": v.usage.p99.as_secs_f64() * 1e3,
            "host_calls": v.usage.host_calls,
            "denied_host_calls": v.usage.denied_host_calls,
            "peak_memory": v.usage.peak_memory,
            "per_minute": v.series.iter().filter(|m| m.calls > 0).map(|m| json!({
                "minute": m.minute * 60_000, "calls": m.calls, "failures": m.failures,
            })).collect::<Vec<_>>(),
        },
    })
}

pub(crate) fn ids(
    installation: String,
    plugin: String,
) -> Result<(InstallationId, PluginId), Problem> {
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

pub(crate) fn installation_id(installation: String) -> Result<InstallationId, Problem> {
    ids(installation, "x".into()).map(|(i, _)| i)
}

/// An installation's plugins, with health and usage.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`")),
    responses((status = 200, description = "The installation's plugins with health and usage", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// One plugin of an installation.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "One plugin with its health and usage", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "Not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// A plugin's health: circuit state, last failures, usage.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}/health", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "The breaker's state, its last failures, and usage", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "Not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// The query parameters of a plugin's log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogParams {
    /// Only lines after this sequence number: the `next_after` of the previous answer, to follow the log.
    pub after: Option<u64>,
    /// Only lines at or after this time, in milliseconds since the epoch.
    pub since: Option<i64>,
    /// Only this level and above: `debug`, `info`, `warn` or `error`.
    pub level: Option<String>,
    /// At most this many lines (default and at most 1000).
    pub limit: Option<usize>,
}

/// A plugin's log lines in an installation, oldest first: poll with
/// `after` set to the last answer's `next_after` to follow it.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}/logs", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`"), LogParams),
    responses((status = 200, description = "Log lines (`seq`, `at` in milliseconds, `level`, `message`) and `next_after`", body = Object),
        (status = 400, description = "A parameter that is not one (an unknown level, a limit of 0)", body = ProblemDoc, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn plugin_logs(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    QueryParams(q): QueryParams<LogParams>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    if q.limit == Some(0) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_limit",
            "a limit is 1 to 1000",
        ));
    }
    let after = q.after;
    let query = crate::LogQuery {
        installation: Some(i),
        plugin: Some(pl),
        after,
        since: q.since.map(Timestamp),
        level: q.level,
        limit: q.limit,
    };
    let lines = p
        .blocking(move |p| p.store.query_logs(&query))
        .await
        .and_then(|r| r)
        .map_err(|e| match e {
            crate::ServerError::Invalid { .. } => {
                Problem::new(StatusCode::BAD_REQUEST, "bad_level", e.to_string())
            }
            other => other.problem(),
        })?;
    let next = lines.last().map(|l| l.seq).or(after).unwrap_or(0);
    Ok(Json(json!({
        "lines": lines.iter().map(|l| json!({
            "seq": l.seq,
            "at": l.line.at.as_millis(),
            "level": l.line.level,
            "message": l.line.message,
        })).collect::<Vec<_>>(),
        "next_after": next,
    }))
    .into_response())
}

pub(crate) fn scope_list(scopes: &[PluginScope]) -> Value {
    scopes
        .iter()
        .map(|s| json!({ "scope": s.to_string(), "description": s.describe() }))
        .collect()
}

/// What activating or upgrading a plugin asks the merchant to consent to.
#[utoipa::path(get, path = "/v1/installations/{installation}/consent/{plugin}", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "What installing or upgrading to the newest version asks for beyond the current grant, in plain language", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "No such package", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct Install {
    /// The package's slug.
    plugin: String,
    /// Exactly the scopes its consent screen (`GET .../consent/{plugin}`) listed as `added`.
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

/// Install or upgrade a plugin with the merchant's consent.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`")), request_body = Install,
    responses((status = 201, description = "Installed (or upgraded) and loaded", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "The consent is not what the plugin asks for now, or the plugin was refused", body = ProblemDoc, content_type = "application/problem+json")))]
async fn install(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(installation): Path<String>,
    JsonBody(body): JsonBody<Install>,
) -> ApiResult {
    let (i, pl) = ids(installation, body.plugin)?;
    manages(&s, &i)?;
    let agreed = parse_scopes(&body.consent)?;
    p.install_async(&i, pl.as_str(), agreed, &s.email)
        .await
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

/// Enable a plugin.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/enable", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "Enabled; its breaker starts afresh", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn enable(
    State(p): State<Shared>,
    s: ApiSession,
    Path(path): Path<(String, String)>,
) -> ApiResult {
    set_enabled(p, s, path, true).await
}

/// Disable a plugin: its calls stop at once.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/disable", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "Disabled: its calls are refused from now on", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn disable(
    State(p): State<Shared>,
    s: ApiSession,
    Path(path): Path<(String, String)>,
) -> ApiResult {
    set_enabled(p, s, path, false).await
}

/// Uninstall a plugin.
#[utoipa::path(delete, path = "/v1/installations/{installation}/plugins/{plugin}", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 204, description = "Uninstalled: grant, component and storage removed"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "Not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct SendEvent {
    /// The event, such as `order.created`.
    event: String,
    /// Its payload.
    #[serde(default)]
    payload: String,
}

pub(crate) fn call_json(call: &vodo_sandbox::Call<()>) -> Value {
    json!({
        "ok": call.result.is_ok(),
        "error": call.result.as_ref().err().map(ToString::to_string),
        "usage": call_usage(&call.usage),
    })
}

/// What one call used, as the API shows it.
pub(crate) fn call_usage(usage: &vodo_sandbox::Usage) -> Value {
    json!({
        "wall_ms": usage.wall.as_secs_f64() * 1e3,
        "host_calls": usage.host_calls,
        "denied_host_calls": usage.denied_host_calls,
        "peak_memory": usage.peak_memory,
    })
}

/// Send an event to one plugin and see what it did.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/events", tag = "installations", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")), request_body = SendEvent,
    responses((status = 200, description = "What the call did: `ok`, the error if any, and usage", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// An API key's record as the API answers it (never its secret or hash):
/// id, name, scopes, times in milliseconds, rotation and usage. `vodo keys`
/// prints the same.
pub fn key_json(k: &ApiKeyRecord) -> Value {
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

/// A plugin's API keys.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}/keys", tag = "keys", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "The plugin's keys with usage, never their secrets", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct IssueBody {
    /// What uses the key, for people.
    name: String,
    /// Its scopes, within the plugin's grant.
    scopes: Vec<String>,
    /// Days until it expires (never, without).
    #[serde(default)]
    ttl_days: Option<u32>,
}

/// Issue an API key, shown once.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/keys", tag = "keys", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")), request_body = IssueBody,
    responses((status = 201, description = "Issued; `key` is shown this once", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 422, description = "No name, or a scope that is not one", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/installations/{installation}/plugins/{plugin}/keys/{key}", tag = "keys", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`"), ("key" = String, Path, description = "The key's id (the part after `vodo_` and before the secret)")),
    responses((status = 204, description = "Revoked: it stops working now"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "No such key of this plugin", body = ProblemDoc, content_type = "application/problem+json")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct RotateBody {
    /// How long the old key keeps working, in seconds (at most 30 days).
    #[serde(default)]
    grace_seconds: u64,
}

/// Rotate an API key.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/keys/{key}/rotate", tag = "keys", params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`"), ("key" = String, Path, description = "The key's id (the part after `vodo_` and before the secret)")), request_body = RotateBody,
    responses((status = 201, description = "A new key, shown this once; the old one works for the grace period", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"), (status = 404, description = "No such key of this plugin", body = ProblemDoc, content_type = "application/problem+json")))]
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
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only this plugin's records.
    pub plugin: Option<String>,
    /// Only this installation's records (a merchant sees only their own).
    pub installation: Option<String>,
    /// Only records of this kind, such as `lifecycle` or `key_revoked`.
    pub kind: Option<String>,
    /// Only records at or after this time, in milliseconds since the epoch.
    pub from: Option<i64>,
    /// Only records before this time, in milliseconds since the epoch.
    pub until: Option<i64>,
    /// Only records after this sequence number: the `next_after` of the previous page.
    pub after: Option<u64>,
    /// At most this many records (default 50, at most 500).
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

/// Query the audit trail, with filters and paging.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "One page of records, oldest first, and `next_after` for the next page", body = Object),
        (status = 400, description = "A filter that is not one", body = ProblemDoc, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn audit(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    QueryParams(q): QueryParams<AuditQuery>,
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

/// Verify the audit trail's chain.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "Whether the chain verifies, and if not the first broken line", body = Object), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
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
    match p.verify_audit_async().await {
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

pub(crate) fn submission_json(s: &vodo_marketplace::workflow::Submission) -> Value {
    json!({
        "id": s.id,
        "owner": s.owner,
        "plugin": s.plugin,
        "version": s.version,
        "package_sha256": s.package_sha256,
        "state": s.state,
        "feedback": s.feedback(),
        "report": s.report.as_ref().map(|r| r.findings.iter().map(|f| json!({
            "check": f.check, "severity": f.severity, "location": f.location, "message": f.message,
        })).collect::<Vec<_>>()),
        "history": s.history.iter().map(|t| json!({
            "from": t.from, "to": t.to, "by": t.by, "reason": t.reason, "at": t.at.as_millis(),
        })).collect::<Vec<_>>(),
    })
}

/// Which submissions to list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubmissionQuery {
    /// Only in this state: `submitted` is the review queue (`draft`, `in_review`,
    /// `testing`, `approved`, `published`, `rejected`).
    #[param(value_type = Option<String>)]
    pub state: Option<vodo_marketplace::workflow::State>,
}

/// The submissions this account may see: all for reviewers, their own for partners.
#[utoipa::path(get, path = "/v1/submissions", tag = "marketplace", params(SubmissionQuery),
    responses((status = 200, description = "Submissions, oldest first, with their automated review reports", body = Object),
        (status = 400, description = "A state that is not one", body = ProblemDoc, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, not its role, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn submissions(
    State(p): State<Shared>,
    AccountSession(s): AccountSession,
    QueryParams(q): QueryParams<SubmissionQuery>,
) -> ApiResult {
    let list = p.submissions(&s, q.state).map_err(|e| e.problem())?;
    Ok(
        Json(json!({ "submissions": list.iter().map(submission_json).collect::<Vec<_>>() }))
            .into_response(),
    )
}

/// Submit a package (`vodo plugin:package` makes it): the automated review runs at once.
#[utoipa::path(post, path = "/v1/submissions", tag = "marketplace",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The package file"),
    responses((status = 201, description = "Submitted, with the automated review's report; a package with errors is rejected at once", body = Object),
        (status = 413, description = "A package over the marketplace's limit (20 MiB)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a package, or a version already published", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner's account, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn submit(
    State(p): State<Shared>,
    AccountSession(s): AccountSession,
    body: axum::body::Body,
) -> ApiResult {
    let max = usize::try_from(p.max_package()).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, max).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a package is at most {max} bytes"),
        )
    })?;
    let submitted = p
        .blocking(move |p| p.submit(&s, &bytes))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    Ok((StatusCode::CREATED, Json(submission_json(&submitted))).into_response())
}

/// One submission with its report and history.
#[utoipa::path(get, path = "/v1/submissions/{id}", tag = "marketplace",
    params(("id" = String, Path, description = "The submission's id")),
    responses((status = 200, description = "The submission", body = Object),
        (status = 404, description = "No such submission that this account may see", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's role", body = ProblemDoc, content_type = "application/problem+json")))]
async fn submission(
    State(p): State<Shared>,
    AccountSession(s): AccountSession,
    Path(id): Path<String>,
) -> ApiResult {
    let sub = p.submission(&s, &id).map_err(|e| e.problem())?;
    Ok(Json(submission_json(&sub)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Decision {
    /// Approve (publish to the catalog) or reject.
    approve: bool,
    /// For the partner; required to reject.
    #[serde(default)]
    feedback: String,
}

/// A reviewer approves (publishes) or rejects a submitted package.
#[utoipa::path(post, path = "/v1/submissions/{id}/decision", tag = "marketplace",
    params(("id" = String, Path, description = "The submission's id")), request_body = Decision,
    responses((status = 200, description = "Published to the catalog, or rejected with the feedback", body = Object),
        (status = 404, description = "No such submission", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not waiting for review, or a rejection without feedback", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a reviewer, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json")))]
async fn decide(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Decision>,
) -> ApiResult {
    let decided = p
        .blocking(move |p| p.decide(&s, &id, body.approve, &body.feedback))
        .await
        .and_then(|r| r)
        .map_err(|e| e.problem())?;
    Ok(Json(submission_json(&decided)).into_response())
}

/// What to search the catalog for.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CatalogQuery {
    /// Words that must all appear in the name, summary, category or tags.
    #[serde(default)]
    pub q: String,
    /// Only this category (and its sub-categories).
    #[serde(default)]
    pub category: Option<String>,
    /// Only free plugins.
    #[serde(default)]
    pub free_only: bool,
    /// Only plugins rated at least this (0 to 5, by the ranking score).
    #[serde(default)]
    pub min_rating: Option<f64>,
    /// Plugins per page: 1 to 100, default 20.
    #[serde(default)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

impl CatalogQuery {
    /// The catalog's query, or `400` for a cursor that is not one.
    pub(crate) fn query(&self) -> Result<vodo_marketplace::catalog::Query, Problem> {
        let after =
            match self.after.as_deref().filter(|a| !a.is_empty()) {
                Some(a) => Some(vodo_marketplace::catalog::Cursor::parse(a).map_err(|e| {
                    Problem::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
                })?),
                None => None,
            };
        if self.min_rating.is_some_and(|r| !(0.0..=5.0).contains(&r)) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_rating",
                "`min_rating` is 0 to 5",
            ));
        }
        Ok(vodo_marketplace::catalog::Query {
            text: self.q.clone(),
            category: self.category.clone().filter(|c| !c.is_empty()),
            free_only: self.free_only,
            min_rating: self.min_rating,
            limit: self.limit.unwrap_or(20),
            after,
            ..Default::default()
        })
    }
}

pub(crate) fn hit_json(h: &vodo_marketplace::catalog::Hit) -> Value {
    let l = &h.listing;
    let scopes: Vec<PluginScope> = l.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    json!({
        "slug": l.plugin, "version": l.version, "name": l.name, "description": l.summary,
        "category": l.category, "tags": l.tags,
        "scopes": scope_list(&scopes),
        "rating": { "mean": h.mean, "votes": h.votes, "score": h.score },
    })
}

/// The catalog: published plugins, searched, filtered and paged.
#[utoipa::path(get, path = "/v1/catalog", tag = "marketplace", params(CatalogQuery),
    responses((status = 200, description = "One page of plugins, exact name matches first, then by rating; `next` for the next page", body = Object),
        (status = 400, description = "A cursor that is not one, or a rating outside 0 to 5", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A page size outside 1 to 100", body = ProblemDoc, content_type = "application/problem+json")))]
async fn catalog(
    State(p): State<Shared>,
    _: ApiSession,
    QueryParams(q): QueryParams<CatalogQuery>,
) -> ApiResult {
    let page = p.catalog(&q.query()?).map_err(|e| e.problem())?;
    Ok(Json(json!({
        "plugins": page.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "next": page.next.as_ref().map(vodo_marketplace::catalog::Cursor::token),
    }))
    .into_response())
}

/// One plugin of the catalog with its ratings and reviews, newest first.
#[utoipa::path(get, path = "/v1/catalog/{slug}", tag = "marketplace",
    params(("slug" = String, Path, description = "The plugin's slug")),
    responses((status = 200, description = "The listing and its reviews", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin in the catalog", body = ProblemDoc, content_type = "application/problem+json")))]
async fn listing(State(p): State<Shared>, _: ApiSession, Path(slug): Path<String>) -> ApiResult {
    let (listing, ratings) = p.listing(&slug).map_err(|e| e.problem())?;
    let votes = ratings.len();
    let mean = if votes == 0 {
        0.0
    } else {
        ratings.iter().map(|r| f64::from(r.stars)).sum::<f64>() / votes as f64
    };
    let mut v = json!({
        "slug": listing.plugin, "version": listing.version, "name": listing.name,
        "description": listing.summary, "category": listing.category,
        "rating": { "mean": mean, "votes": votes },
    });
    v["reviews"] = ratings
        .iter()
        .map(|r| json!({ "installation": r.installation.as_str(), "stars": r.stars, "text": r.text, "at": r.at.as_millis() }))
        .collect::<Vec<_>>()
        .into();
    Ok(Json(v).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RateBody {
    /// One to five.
    stars: u8,
    /// The review, if any (at most 4000 bytes).
    #[serde(default)]
    text: String,
}

/// Rate and review a plugin your installation has used; rating again replaces it.
#[utoipa::path(post, path = "/v1/catalog/{slug}/ratings", tag = "marketplace",
    params(("slug" = String, Path, description = "The plugin's slug")), request_body = RateBody,
    responses((status = 201, description = "Recorded", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a merchant, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such plugin in the catalog", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Stars outside 1 to 5, a review too long, or a plugin the installation has not used", body = ProblemDoc, content_type = "application/problem+json")))]
async fn rate(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<RateBody>,
) -> ApiResult {
    p.rate(&s, &slug, body.stars, &body.text)
        .map_err(|e| e.problem())?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "slug": slug, "stars": body.stars })),
    )
        .into_response())
}
