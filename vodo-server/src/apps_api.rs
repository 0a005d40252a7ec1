//! The JSON API of partner apps and their webhooks: apps (`/v1/apps`),
//! endpoints, the delivery log, redelivery and the test tool
//! (`/v1/webhooks/...`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vodo_core::InstallationId;
use vodo_oauth::model::{Client, ClientKind};
use vodo_oauth::webhooks::{Attempt, DeliveryStatus, Endpoint, TestDelivery};
use vodo_scopes::ScopeSet;

use crate::api::{ProblemDoc, parse_scopes};
use crate::apps::{MessageView, NewApp, NewEndpoint};
use crate::web::{ApiSession, JsonBody, QueryParams};
use crate::{Platform, Problem};

type Shared = Arc<Platform>;
type ApiResult = Result<Response, Problem>;

/// The most messages one page of the delivery log holds.
pub const MAX_DELIVERIES_PAGE: usize = 100;

/// Adds the routes of this module to `router`.
pub(crate) fn add(router: OpenApiRouter<Shared>) -> OpenApiRouter<Shared> {
    router
        .routes(routes!(apps, register_app))
        .routes(routes!(endpoints, add_endpoint))
        .routes(routes!(endpoint, disable_endpoint))
        .routes(routes!(test_endpoint))
        .routes(routes!(deliveries))
        .routes(routes!(delivery))
        .routes(routes!(redeliver))
        .routes(routes!(connected_apps))
        .routes(routes!(disconnect_app))
}

pub(crate) fn app_json(c: &Client) -> Value {
    json!({
        "client_id": c.id,
        "name": c.name,
        "kind": match c.kind { ClientKind::Confidential => "confidential", ClientKind::Public => "public" },
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at": c.created_at.as_millis(),
    })
}

pub(crate) fn endpoint_json(e: &Endpoint) -> Value {
    json!({
        "id": e.id,
        "client_id": e.client_id,
        "url": e.url,
        "event_types": e.event_types,
        "installation": e.installation.as_ref().map(InstallationId::as_str),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "failing_since": e.failing_since.map(|t| t.as_millis()),
        "created_at": e.created_at.as_millis(),
    })
}

pub(crate) fn status_str(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
    }
}

pub(crate) fn message_json(v: &MessageView) -> Value {
    let m = &v.message;
    json!({
        "id": m.id,
        "event_type": m.event_type,
        "installation": m.installation.as_ref().map(InstallationId::as_str),
        "created_at": m.created_at.as_millis(),
        "deliveries": v.deliveries.iter().map(|d| json!({
            "endpoint_id": d.endpoint_id,
            "status": status_str(d.status),
            "attempts": d.attempts,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn attempt_json(a: &Attempt) -> Value {
    json!({
        "endpoint_id": a.endpoint_id,
        "at": a.at.as_millis(),
        "status": a.status,
        "latency_ms": u64::try_from(a.latency.as_millis()).unwrap_or(u64::MAX),
        "error": a.error,
        "response": a.response,
    })
}

pub(crate) fn test_json(t: &TestDelivery) -> Value {
    json!({
        "ok": t.status.is_some_and(|s| (200..300).contains(&s)),
        "status": t.status,
        "error": t.error,
        "latency_ms": u64::try_from(t.latency.as_millis()).unwrap_or(u64::MAX),
        "response": t.response,
        "request": {
            "headers": t.request_headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body": t.request_body,
        },
    })
}

fn problem(e: crate::ServerError) -> Problem {
    e.problem()
}

/// The apps this account manages.
#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    responses((status = 200, description = "The partner's apps (every partner's, for the admin)", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin", body = ProblemDoc, content_type = "application/problem+json")))]
async fn apps(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    let apps = p.apps(&s).map_err(problem)?;
    Ok(Json(json!({ "apps": apps.iter().map(app_json).collect::<Vec<_>>() })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AppBody {
    /// Its name, shown to merchants on the consent page.
    name: String,
    /// `confidential` (a back end that keeps a secret) or `public` (a
    /// native or browser app: PKCE only). Default `confidential`.
    #[serde(default)]
    kind: Option<String>,
    /// Redirect URIs, matched exactly (`https`, or loopback `http`).
    redirect_uris: Vec<String>,
    /// The most the app may ask an installation for, such as `entities:read:order`.
    scopes: Vec<String>,
}

/// Register an app with the OAuth provider; a confidential app's secret is shown once.
#[utoipa::path(post, path = "/v1/apps", tag = "apps", request_body = AppBody,
    responses((status = 201, description = "Registered; `client_secret` is shown this once", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No name, a redirect URI or a scope that is not one", body = ProblemDoc, content_type = "application/problem+json")))]
async fn register_app(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    JsonBody(body): JsonBody<AppBody>,
) -> ApiResult {
    let kind = match body.kind.as_deref().unwrap_or("confidential") {
        "confidential" => ClientKind::Confidential,
        "public" => ClientKind::Public,
        other => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("`kind` is `confidential` or `public`, not `{other}`"),
            ));
        }
    };
    let scopes: ScopeSet = parse_scopes(&body.scopes)?.into_iter().collect();
    let app = NewApp {
        name: body.name,
        kind,
        redirect_uris: body.redirect_uris,
        scopes,
    };
    let (client, secret) = p.register_app(&s, &app).map_err(problem)?;
    let mut v = app_json(&client);
    v["client_secret"] = secret.map(|s| s.expose_secret().to_owned()).into();
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The webhook endpoints of this account's apps.
#[utoipa::path(get, path = "/v1/webhooks/endpoints", tag = "webhooks",
    responses((status = 200, description = "Endpoints, without their secrets", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin", body = ProblemDoc, content_type = "application/problem+json")))]
async fn endpoints(State(p): State<Shared>, ApiSession(s): ApiSession) -> ApiResult {
    let list = p.endpoints(&s).map_err(problem)?;
    Ok(
        Json(json!({ "endpoints": list.iter().map(endpoint_json).collect::<Vec<_>>() }))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    /// The app (`client_id`) it belongs to.
    client_id: String,
    /// Where to POST events: `https://...`.
    url: String,
    /// Event types or patterns: `order.created`, `order.*`.
    event_types: Vec<String>,
    /// Only events of this installation.
    #[serde(default)]
    installation: Option<String>,
}

/// Add a webhook endpoint; its signing secret (`whsec_...`) is shown once.
#[utoipa::path(post, path = "/v1/webhooks/endpoints", tag = "webhooks", request_body = EndpointBody,
    responses((status = 201, description = "Added; `secret` is shown this once", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such app of this partner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A URL that is not `https`, an event type that is not one, or too many endpoints", body = ProblemDoc, content_type = "application/problem+json")))]
async fn add_endpoint(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    JsonBody(body): JsonBody<EndpointBody>,
) -> ApiResult {
    let installation = match body.installation {
        Some(i) => Some(crate::api::installation_id(i)?),
        None => None,
    };
    let new = NewEndpoint {
        client_id: body.client_id,
        url: body.url,
        event_types: body.event_types,
        installation,
    };
    let e = p.add_endpoint(&s, &new).map_err(problem)?;
    let mut v = endpoint_json(&e);
    v["secret"] = e.secrets.first().map(|s| s.expose_secret()).into();
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id, `ep_...`")),
    responses((status = 200, description = "The endpoint, without its secret", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of this partner", body = ProblemDoc, content_type = "application/problem+json")))]
async fn endpoint(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
) -> ApiResult {
    let e = p.endpoint(&s, &id).map_err(problem)?;
    Ok(Json(endpoint_json(&e)).into_response())
}

/// Disable a webhook endpoint: no more deliveries; pending ones fail.
#[utoipa::path(delete, path = "/v1/webhooks/endpoints/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id, `ep_...`")),
    responses((status = 204, description = "Disabled"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of this partner", body = ProblemDoc, content_type = "application/problem+json")))]
async fn disable_endpoint(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
) -> ApiResult {
    p.disable_endpoint(&s, &id).map_err(problem)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestBody {
    /// The sample event's type. Default `webhook.test`.
    #[serde(default)]
    event_type: Option<String>,
    /// The sample event's `data`. Default `{"test": true}`.
    #[serde(default)]
    data: Option<Value>,
}

/// Send a signed sample event to an endpoint now, and see what it answered.
#[utoipa::path(post, path = "/v1/webhooks/endpoints/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id, `ep_...`")), request_body = TestBody,
    responses((status = 200, description = "What was sent (headers and body) and what came back; `ok` when the answer was 2xx", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint of this partner", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An event type that is not one", body = ProblemDoc, content_type = "application/problem+json")))]
async fn test_endpoint(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TestBody>,
) -> ApiResult {
    let event = body.event_type.unwrap_or_else(|| "webhook.test".into());
    let data = body.data.unwrap_or_else(|| json!({ "test": true }));
    let sent = p
        .blocking(move |p| p.test_endpoint(&s, &id, &event, data))
        .await
        .and_then(|r| r)
        .map_err(problem)?;
    Ok(Json(test_json(&sent)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
struct PageQuery {
    /// The page, from 0.
    #[serde(default)]
    page: usize,
    /// Messages per page: 1 to 100, default 25.
    #[serde(default)]
    per_page: Option<usize>,
}

/// The delivery log: messages newest first, with where each delivery stands.
#[utoipa::path(get, path = "/v1/webhooks/messages", tag = "webhooks", params(PageQuery),
    responses((status = 200, description = "One page of messages sent to this account's endpoints", body = Object),
        (status = 400, description = "A page size over 100", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin", body = ProblemDoc, content_type = "application/problem+json")))]
async fn deliveries(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult {
    let per_page = q.per_page.unwrap_or(25);
    if per_page == 0 || per_page > MAX_DELIVERIES_PAGE {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "bad_page",
            format!("`per_page` is 1 to {MAX_DELIVERIES_PAGE}"),
        ));
    }
    let list = p.deliveries(&s, q.page, per_page).map_err(problem)?;
    Ok(Json(json!({
        "page": q.page,
        "messages": list.iter().map(message_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// One message: its body, deliveries and every attempt.
#[utoipa::path(get, path = "/v1/webhooks/messages/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The message's id, sent as `webhook-id`")),
    responses((status = 200, description = "The message, its deliveries and attempts (status, latency, error, the answer's first KiB)", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such message sent to this account's endpoints", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delivery(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
) -> ApiResult {
    let (view, attempts) = p.delivery(&s, &id).map_err(problem)?;
    let mut v = message_json(&view);
    v["body"] = serde_json::from_str::<Value>(&view.message.body).unwrap_or(Value::Null);
    v["attempts"] = attempts.iter().map(attempt_json).collect::<Vec<_>>().into();
    Ok(Json(v).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RedeliverBody {
    /// The endpoint to send it to again.
    endpoint_id: String,
}

/// Send a message to an endpoint again, with the same `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/messages/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "The message's id")), request_body = RedeliverBody,
    responses((status = 202, description = "Queued: the delivery worker sends it at its next round", body = Object),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a partner or the admin, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such message or endpoint of this account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The endpoint is disabled, or the message was never sent to it", body = ProblemDoc, content_type = "application/problem+json")))]
async fn redeliver(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RedeliverBody>,
) -> ApiResult {
    p.redeliver(&s, &id, &body.endpoint_id).map_err(problem)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "message": id, "endpoint_id": body.endpoint_id, "status": "pending" })),
    )
        .into_response())
}

/// The partner apps an installation is connected to: what its merchant
/// consented to, by whom and when.
#[utoipa::path(get, path = "/v1/installations/{installation}/apps", tag = "apps",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`")),
    responses((status = 200, description = "The connected apps with their granted scopes", body = Object),
        (status = 400, description = "Not an installation id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation", body = ProblemDoc, content_type = "application/problem+json")))]
async fn connected_apps(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path(installation): Path<String>,
) -> ApiResult {
    let i = crate::api::installation_id(installation)?;
    let apps = p.connected_apps(&s, &i).map_err(|e| e.problem())?;
    Ok(Json(json!({ "apps": apps.iter().map(|a| json!({
        "client_id": a.consent.client_id,
        "name": a.name,
        "scopes": a.consent.scopes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "offline_access": a.consent.offline_access,
        "granted_by": a.consent.granted_by,
        "granted_at": a.consent.granted_at.as_millis(),
    })).collect::<Vec<_>>() }))
    .into_response())
}

/// Disconnect an app: its consent and every token issued under it are
/// revoked at once. Audited.
#[utoipa::path(delete, path = "/v1/installations/{installation}/apps/{client_id}", tag = "apps",
    params(("installation" = String, Path, description = "The installation, such as `shop-42`"), ("client_id" = String, Path, description = "The app's client id")),
    responses((status = 204, description = "Disconnected: its tokens no longer work"),
        (status = 400, description = "Not an installation id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not this account's installation, or the CSRF token is missing or stale", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The installation is not connected to this app", body = ProblemDoc, content_type = "application/problem+json")))]
async fn disconnect_app(
    State(p): State<Shared>,
    ApiSession(s): ApiSession,
    Path((installation, client_id)): Path<(String, String)>,
) -> ApiResult {
    let i = crate::api::installation_id(installation)?;
    p.disconnect_app(&s, &i, &client_id)
        .map_err(|e| e.problem())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
