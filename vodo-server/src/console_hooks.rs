//! The console's webhook pages: a partner's (or the admin's) endpoints with
//! a test button, the delivery log, and each message's deliveries and
//! attempts with a redeliver button.

#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use vodo_oauth::webhooks::DeliveryStatus;

use crate::Platform;
use crate::apps_api::status_str;
use crate::console::{ConsoleQuery, ConsoleSession, Flash, error_page, page, submitted, utc};

type Shared = Arc<Platform>;

/// Messages per page of the delivery log.
const PER_PAGE: usize = 25;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/webhooks", get(webhooks_page))
        .route("/admin/webhooks/endpoints/{id}/test", post(test))
        .route("/admin/webhooks/messages/{id}", get(message_page))
        .route("/admin/webhooks/messages/{id}/redeliver", post(redeliver))
        .route("/admin/apps", get(apps_page))
        .route(
            "/admin/installations/{installation}/apps/{client_id}/disconnect",
            post(disconnect),
        )
}

/// The partner apps each installation the viewer manages is connected to,
/// with what they may do and a button that disconnects one at once.
async fn apps_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<Flash>,
) -> Response {
    let installations = match p.installations(&s.role) {
        Ok(i) => i,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let mut rows = Vec::new();
    for i in installations {
        match p.connected_apps(&s, &i) {
            Ok(apps) => rows.extend(apps.into_iter().map(|a| (i.clone(), a))),
            Err(e) => return error_page(Some(&s), &e.problem()),
        }
    }
    page(
        "Connected apps",
        Some(&s),
        html! {
            h1 { "Connected apps" }
            @if let Some(f) = &q.flash { div.flash #flash { (f) } }
            p.muted { "Partner apps a merchant allowed to act for their store. Disconnecting one revokes its access at once." }
            table #apps {
                tr { th { "Installation" } th { "App" } th { "May" } th { "Allowed by" } th {} }
                @for (i, a) in &rows {
                    tr.app data-client=(a.consent.client_id) {
                        td { (i) }
                        td { (a.name.as_deref().unwrap_or("(removed app)")) br; code { (a.consent.client_id) } }
                        td { ul.scopes { @for sc in a.consent.scopes.iter() { li { (sc.describe()) } } } }
                        td { (a.consent.granted_by) br; span.muted { (utc(a.consent.granted_at)) " UTC" } }
                        td {
                            form.inline method="post" action={ "/admin/installations/" (i) "/apps/" (a.consent.client_id) "/disconnect" } {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.danger.disconnect type="submit" { "Disconnect" }
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan="5" .muted { "No app is connected." } } }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn disconnect(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path((installation, client_id)): Path<(String, String)>,
    f: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    if let Err(r) = submitted(&s, f, |f| &f.csrf) {
        return r;
    }
    let i = vodo_core::InstallationId::new(installation);
    match p.disconnect_app(&s, &i, &client_id) {
        Ok(()) => {
            let mut url = String::from("/admin/apps?flash=");
            url.extend(crate::console::form_urlencoded(&format!(
                "The app {client_id} was disconnected from {i}: its tokens no longer work."
            )));
            Redirect::to(&url).into_response()
        }
        Err(e) => error_page(Some(&s), &e.problem()),
    }
}

fn status_class(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Delivered => "badge healthy",
        DeliveryStatus::Pending => "badge degraded",
        DeliveryStatus::Failed => "badge unhealthy",
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    page: usize,
}

async fn webhooks_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<PageQuery>,
) -> Response {
    let (who, page_no) = (s.clone(), q.page);
    let loaded = p
        .blocking(move |p| {
            Ok::<_, crate::ServerError>((
                p.endpoints(&who)?,
                p.deliveries(&who, page_no, PER_PAGE + 1)?,
            ))
        })
        .await
        .and_then(|r| r);
    let (endpoints, mut messages) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let more = messages.len() > PER_PAGE;
    messages.truncate(PER_PAGE);
    page(
        "Webhooks",
        Some(&s),
        html! {
            h1 { "Webhooks" }
            h2 { "Endpoints" }
            table #endpoints {
                tr { th { "Endpoint" } th { "App" } th { "URL" } th { "Events" } th { "State" } th { "Test" } }
                @for e in &endpoints {
                    tr.endpoint {
                        td { code { (e.id) } }
                        td { code { (e.client_id) } }
                        td { code { (e.url) } }
                        td { (e.event_types.join(", ")) }
                        td {
                            @if e.enabled {
                                @if let Some(since) = e.failing_since {
                                    span."badge degraded" { "failing since " (utc(since)) }
                                } @else {
                                    span."badge healthy" { "enabled" }
                                }
                            } @else {
                                span."badge disabled" { "disabled" }
                                " " span.muted { (e.disabled_reason.as_deref().unwrap_or("")) }
                            }
                        }
                        td {
                            @if e.enabled {
                                form.inline method="post" action={ "/admin/webhooks/endpoints/" (e.id) "/test" } {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    input name="event_type" value="webhook.test" size="14" aria-label="Event type";
                                    " "
                                    button.plain type="submit" { "Send test" }
                                }
                            }
                        }
                    }
                }
                @if endpoints.is_empty() {
                    tr { td colspan="6" .muted { "No endpoints yet: add one with POST /v1/webhooks/endpoints (see the API explorer)." } }
                }
            }
            h2 { "Deliveries" }
            table #deliveries {
                tr { th { "Time (UTC)" } th { "Event" } th { "Installation" } th { "Deliveries" } }
                @for m in &messages {
                    tr.message {
                        td { a href={ "/admin/webhooks/messages/" (m.message.id) } { (utc(m.message.created_at)) } }
                        td { code { (m.message.event_type) } }
                        td { (m.message.installation.as_ref().map(|i| i.as_str()).unwrap_or("—")) }
                        td {
                            @for d in &m.deliveries {
                                span class=(status_class(d.status)) { (status_str(d.status)) }
                                " " code { (d.endpoint_id) } " · " (d.attempts) " attempt(s)" br;
                            }
                            @if m.deliveries.is_empty() { span.muted { "no endpoint subscribed" } }
                        }
                    }
                }
                @if messages.is_empty() { tr { td colspan="4" .muted { "No events yet." } } }
            }
            p {
                @if page_no > 0 { a href={ "/admin/webhooks?page=" (page_no - 1) } { "← Newer" } " " }
                @if more { a #older href={ "/admin/webhooks?page=" (page_no + 1) } { "Older →" } }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct TestForm {
    csrf: String,
    #[serde(default)]
    event_type: String,
}

async fn test(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(id): Path<String>,
    f: Result<Form<TestForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let event = if f.event_type.trim().is_empty() {
        "webhook.test".to_owned()
    } else {
        f.event_type.trim().to_owned()
    };
    let (who, endpoint) = (s.clone(), id.clone());
    let sent = p
        .blocking(move |p| {
            p.test_endpoint(&who, &endpoint, &event, serde_json::json!({ "test": true }))
        })
        .await
        .and_then(|r| r);
    let sent = match sent {
        Ok(t) => t,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let ok = sent.status.is_some_and(|c| (200..300).contains(&c));
    page(
        "Webhook test",
        Some(&s),
        html! {
            h1 { "Test delivery to " code { (id) } }
            @if ok {
                div.flash #result { "The endpoint answered " (sent.status.unwrap_or(0)) " in " (sent.latency.as_millis()) " ms." }
            } @else {
                div.error #result {
                    @match (sent.status, &sent.error) {
                        (Some(code), _) => { "The endpoint answered " (code) ": it did not accept the event." }
                        (None, Some(e)) => { "No answer: " (e) }
                        (None, None) => { "No answer." }
                    }
                }
            }
            h2 { "What was sent" }
            table {
                @for (k, v) in &sent.request_headers { tr { th { (k) } td { code { (v) } } } }
            }
            pre.card { (sent.request_body) }
            h2 { "What came back" }
            pre.card #response { (sent.response) }
            p { a href="/admin/webhooks" { "Back to webhooks" } }
        },
    )
    .into_response()
}

async fn message_page(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(id): Path<String>,
) -> Response {
    let (who, message) = (s.clone(), id.clone());
    let loaded = p
        .blocking(move |p| p.delivery(&who, &message))
        .await
        .and_then(|r| r);
    let (view, attempts) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(Some(&s), &e.problem()),
    };
    let body = serde_json::from_str::<serde_json::Value>(&view.message.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| view.message.body.clone());
    page(
        "Webhook message",
        Some(&s),
        html! {
            h1 { code { (view.message.event_type) } " " span.muted { (view.message.id) } }
            p { "Created " (utc(view.message.created_at)) " UTC"
                @if let Some(i) = &view.message.installation { " · installation " code { (i) } } }
            h2 { "Deliveries" }
            table #message-deliveries {
                tr { th { "Endpoint" } th { "State" } th { "Attempts" } th { "" } }
                @for d in &view.deliveries {
                    tr {
                        td { code { (d.endpoint_id) } }
                        td { span class=(status_class(d.status)) { (status_str(d.status)) } }
                        td { (d.attempts) }
                        td {
                            form.inline method="post" action={ "/admin/webhooks/messages/" (view.message.id) "/redeliver" } {
                                input type="hidden" name="csrf" value=(s.csrf);
                                input type="hidden" name="endpoint_id" value=(d.endpoint_id);
                                button.plain type="submit" { "Redeliver" }
                            }
                        }
                    }
                }
            }
            h2 { "Attempts" }
            table #attempts {
                tr { th { "Time (UTC)" } th { "Endpoint" } th { "Answer" } th { "Time" } th { "Response or error" } }
                @for a in &attempts {
                    tr.attempt {
                        td { (utc(a.at)) }
                        td { code { (a.endpoint_id) } }
                        td { @match a.status { Some(c) => { (c) }, None => { "none" } } }
                        td { (a.latency.as_millis()) " ms" }
                        td { code { (a.error.as_deref().unwrap_or(&a.response)) } }
                    }
                }
                @if attempts.is_empty() { tr { td colspan="5" .muted { "Not attempted yet." } } }
            }
            h2 { "Body" }
            pre.card { (body) }
            p { a href="/admin/webhooks" { "Back to webhooks" } }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
struct RedeliverForm {
    csrf: String,
    endpoint_id: String,
}

async fn redeliver(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    Path(id): Path<String>,
    f: Result<Form<RedeliverForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (who, message) = (s.clone(), id.clone());
    let done = p
        .blocking(move |p| p.redeliver(&who, &message, &f.endpoint_id))
        .await
        .and_then(|r| r);
    match done {
        Ok(()) => Redirect::to(&format!("/admin/webhooks/messages/{id}")).into_response(),
        Err(e) => error_page(Some(&s), &e.problem()),
    }
}
