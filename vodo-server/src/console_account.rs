//! The console's account page: who is signed in, and a password change
//! that signs the account's other sessions out.

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use crate::accounts::{MIN_PASSWORD, Session};
use crate::console::{ConsoleQuery, ConsoleSession, Flash, page, submitted};
use crate::web::cookie;
use crate::{PasswordError, Platform};

type Shared = Arc<Platform>;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin/account", get(account_page))
        .route("/admin/account/password", post(change_password))
}

async fn account_page(
    ConsoleSession(s): ConsoleSession,
    ConsoleQuery(q): ConsoleQuery<Flash>,
) -> Response {
    render(&s, q.flash.as_deref(), None)
}

fn render(s: &Session, flash: Option<&str>, error: Option<(StatusCode, &str)>) -> Response {
    let mut r = page(
        "Account",
        Some(s),
        html! {
            h1 { "Account" }
            @if let Some(f) = flash { div.flash #flash { (f) } }
            p { "Signed in as " strong { (s.email) } " (" (s.role) ")." }
            h2 { "Change the password" }
            p { "Every other session of this account is signed out; this one stays." }
            @if let Some((_, e)) = error { div.error #password-error { (e) } }
            form.card #password-form method="post" action="/admin/account/password" style="max-width:360px" {
                input type="hidden" name="csrf" value=(s.csrf);
                label for="current" { "Current password" }
                input #current type="password" name="current" required autocomplete="current-password" style="width:95%";
                label for="new" { "New password (at least " (MIN_PASSWORD) " characters)" }
                input #new type="password" name="new" required minlength=(MIN_PASSWORD) autocomplete="new-password" style="width:95%";
                label for="confirm" { "The new password again" }
                input #confirm type="password" name="confirm" required minlength=(MIN_PASSWORD) autocomplete="new-password" style="width:95%";
                p { button #change-password type="submit" { "Change the password" } }
            }
        },
    )
    .into_response();
    if let Some((status, _)) = error {
        *r.status_mut() = status;
    }
    r
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

async fn change_password(
    State(p): State<Shared>,
    ConsoleSession(s): ConsoleSession,
    headers: HeaderMap,
    f: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let f = match submitted(&s, f, |f| &f.csrf) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if f.new != f.confirm {
        return render(
            &s,
            None,
            Some((
                StatusCode::UNPROCESSABLE_ENTITY,
                "The two new passwords differ: type the same one twice.",
            )),
        );
    }
    let token = cookie(&headers).unwrap_or_default();
    match p.change_password(token, &f.current, &f.new).await {
        Ok(()) => Redirect::to(
            "/admin/account?flash=The+password+is+changed%3A+other+sessions+are+signed+out.",
        )
        .into_response(),
        Err(PasswordError::SignedOut) => Redirect::to("/admin/login").into_response(),
        Err(e) => {
            let problem = e.problem();
            render(&s, None, Some((problem.status, &problem.detail)))
        }
    }
}
