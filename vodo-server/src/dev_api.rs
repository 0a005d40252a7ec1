//! What a plugin developer drives a plugin with (`vodo tinker`, the
//! console's test tools): a request to one of the plugin's routes, its
//! settings, and the installation's records, for a person who manages the
//! installation. Calls go through the sandbox with the plugin's grant and
//! limits, as the platform's own would.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vodo_sandbox::HostServices as _;

use crate::api::{
    ProblemDoc, call_usage, check_name, ids, installation_id, json_response, read_record,
    service_problem, write_record,
};
use crate::web::{ApiSession, JsonBody, manages};
use crate::{Platform, Problem};

type Shared = Arc<Platform>;
type ApiResult = Result<Response, Problem>;

/// The largest body a request to a plugin carries (the JSON body limit
/// bounds it too).
pub const MAX_REQUEST_BODY: usize = 48 * 1024;
/// The longest setting value.
pub const MAX_SETTING: usize = 16 * 1024;

/// Adds the routes of this module to `router`.
pub(crate) fn add(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router
        .routes(routes!(send_request))
        .routes(routes!(settings))
        .routes(routes!(put_setting))
        .routes(routes!(record, put_record))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SendRequest {
    /// `GET`, `POST`, ...
    method: String,
    /// The path under the plugin, such as `/gift-messages/1001`; it must be
    /// one of the routes its manifest declares.
    path: String,
    /// Headers, as `[name, value]` pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The body, as text.
    #[serde(default)]
    body: String,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
}

/// Send a request to one of a plugin's routes and see its answer.
#[utoipa::path(post, path = "/v1/installations/{installation}/plugins/{plugin}/requests", tag = "installations",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    request_body = SendRequest,
    responses((status = 200, description = "The plugin's answer (`status`, `headers`, `body` as text), or the `error` that stopped it, with usage", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The plugin is not loaded in the installation", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A method, path or body the platform would not pass to a plugin", body = ProblemDoc, content_type = "application/problem+json")))]
async fn send_request(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
    JsonBody(body): JsonBody<SendRequest>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    let method = body.method.to_ascii_uppercase();
    if !matches!(
        method.as_str(),
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
    ) {
        return Err(invalid(format!(
            "`{}` is not a method a plugin's route takes: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS",
            body.method
        )));
    }
    if !body.path.starts_with('/') || body.path.len() > 2048 {
        return Err(invalid(
            "the path starts with `/` and is at most 2048 characters, such as `/gift-messages/1001`",
        ));
    }
    if body.body.len() > MAX_REQUEST_BODY {
        return Err(invalid(format!(
            "a test request's body is at most {MAX_REQUEST_BODY} bytes"
        )));
    }
    let request = vodo_sandbox::Request {
        method,
        path: body.path,
        headers: body.headers,
        body: body.body.into_bytes(),
    };
    let call = p
        .send_request(&i, &pl, &request)
        .await
        .map_err(|e| e.problem())?;
    let answer = call.result.as_ref().ok().map(|r| {
        json!({
            "status": r.status,
            "headers": r.headers,
            "body": String::from_utf8_lossy(&r.body),
        })
    });
    Ok(Json(json!({
        "ok": call.result.is_ok(),
        "error": call.result.as_ref().err().map(ToString::to_string),
        "response": answer,
        "usage": call_usage(&call.usage),
    }))
    .into_response())
}

/// A plugin's settings in an installation.
#[utoipa::path(get, path = "/v1/installations/{installation}/plugins/{plugin}/settings", tag = "installations",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`")),
    responses((status = 200, description = "`settings`: every key the plugin or a person set, with its value", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The plugin is not installed there", body = ProblemDoc, content_type = "application/problem+json")))]
async fn settings(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin)): Path<(String, String)>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    p.plugin(&i, &pl).map_err(|e| e.problem())?;
    let all = p.store.settings(&i, &pl).map_err(|e| e.problem())?;
    let map: serde_json::Map<String, Value> =
        all.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
    Ok(Json(json!({ "settings": map })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SettingValue {
    /// The new value, as the plugin reads it (text; JSON if it expects JSON).
    value: String,
}

/// Set one of a plugin's settings in an installation.
#[utoipa::path(put, path = "/v1/installations/{installation}/plugins/{plugin}/settings/{key}", tag = "installations",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("plugin" = String, Path, description = "The plugin's slug, such as `order-notifier`"), ("key" = String, Path, description = "The setting, 1 to 128 letters, digits, `-`, `_` or `.`")),
    request_body = SettingValue,
    responses((status = 200, description = "Set: the key and its value", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The plugin is not installed there", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A bad key, or a value over 16 KiB", body = ProblemDoc, content_type = "application/problem+json")))]
async fn put_setting(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, plugin, key)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<SettingValue>,
) -> ApiResult {
    let (i, pl) = ids(installation, plugin)?;
    manages(&s, &i)?;
    p.plugin(&i, &pl).map_err(|e| e.problem())?;
    check_name("setting", &key)?;
    if body.value.len() > MAX_SETTING {
        return Err(invalid(format!(
            "a setting's value is at most {MAX_SETTING} bytes"
        )));
    }
    p.store
        .set_setting(&i, &pl, &key, &body.value)
        .map_err(service_problem)?;
    Ok(Json(json!({ "key": key, "value": body.value })).into_response())
}

/// One record of an installation, as plugins read it.
#[utoipa::path(get, path = "/v1/installations/{installation}/records/{kind}/{id}", tag = "installations",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("kind" = String, Path, description = "The record's kind, such as `order`"), ("id" = String, Path, description = "The record's id")),
    responses((status = 200, description = "The record's JSON", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such record", body = ProblemDoc, content_type = "application/problem+json")))]
async fn record(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, kind, id)): Path<(String, String, String)>,
) -> ApiResult {
    let i = installation_id(installation)?;
    manages(&s, &i)?;
    check_name("record kind", &kind)?;
    check_name("record id", &id)?;
    let json = read_record(&p, &i, &kind, &id)?;
    Ok(json_response(StatusCode::OK, json))
}

/// Create or replace a record of an installation (a test order, a product);
/// partner apps get `{kind}.created` or `{kind}.updated`, as for every
/// record written through the platform.
#[utoipa::path(put, path = "/v1/installations/{installation}/records/{kind}/{id}", tag = "installations",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("kind" = String, Path, description = "The record's kind, such as `order`"), ("id" = String, Path, description = "The record's id")),
    request_body = Object,
    responses((status = 200, description = "Stored: `created` says whether it is new", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a JSON object", body = ProblemDoc, content_type = "application/problem+json")))]
async fn put_record(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, kind, id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult {
    let i = installation_id(installation)?;
    manages(&s, &i)?;
    check_name("record kind", &kind)?;
    check_name("record id", &id)?;
    let (created, _) = write_record(&p, &i, &kind, &id, body)?;
    Ok(Json(json!({ "kind": kind, "id": id, "created": created })).into_response())
}
