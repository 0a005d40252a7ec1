//! What the API and the console share: the session cookie, CSRF checks,
//! bounded JSON bodies whose errors are problems, and role checks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::de::DeserializeOwned;
use vodo_core::InstallationId;

use crate::accounts::{Session, csrf_matches};
use crate::{Platform, Problem};

/// The session cookie's name.
pub const COOKIE: &str = "vodo_session";
/// The header an API request carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest JSON body the API reads.
pub const MAX_JSON: usize = 64 * 1024;

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.response()
    }
}

impl IntoResponse for crate::ServerError {
    fn into_response(self) -> Response {
        self.problem().response()
    }
}

/// The session cookie's value in `headers`, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` of a new session (or, with `None`, of its end).
pub(crate) fn set_cookie(platform: &Platform, token: Option<&str>) -> HeaderValue {
    let secure = if platform.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = match token {
        Some(t) => format!(
            "{COOKIE}={t}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            platform.accounts.session_ttl().as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("vodo_session="))
}

/// The session of a request to the JSON API: `401` without one, and `403`
/// for an unsafe method whose `X-CSRF-Token` is missing or stale.
#[derive(Debug, Clone)]
pub struct ApiSession(pub Session);

fn unsigned() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "not_signed_in",
        "sign in first: POST /v1/session with your email and password",
    )
}

impl FromRequestParts<Arc<Platform>> for ApiSession {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Problem> {
        let token = cookie(&parts.headers).ok_or_else(unsigned)?;
        let session = platform
            .accounts
            .session(token)
            .map_err(|e| e.problem())?
            .ok_or_else(unsigned)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !csrf_matches(&session, given) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    format!(
                        "this request needs the `{CSRF_HEADER}` header with your session's token (the `csrf` of POST /v1/session); it is missing or from an older session"
                    ),
                ));
            }
        }
        Ok(Self(session))
    }
}

/// The session of a request to the marketplace's developer routes (the
/// submissions, `GET /v1/session`): a signed-in person as [`ApiSession`]
/// takes them, or a developer's tool with a token from `vodo login`
/// (`Authorization: Bearer`, issued by the device grant to the
/// [`CLI_CLIENT`](crate::CLI_CLIENT) with `marketplace:publish`). A token
/// needs no CSRF header, since no cookie carries it; it acts with the
/// account's role as it is now, so a deleted account's token stops at once.
#[derive(Debug, Clone)]
pub struct AccountSession(pub Session);

impl FromRequestParts<Arc<Platform>> for AccountSession {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Problem> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                v.trim_start()
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
            });
        let Some(bearer) = bearer else {
            return ApiSession::from_request_parts(parts, platform)
                .await
                .map(|ApiSession(s)| Self(s));
        };
        let info = platform.oauth.authenticate(Some(bearer)).map_err(|e| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                format!("{}: sign in again with `vodo login`", e.description),
            )
        })?;
        if info.installation.is_some() || info.client_id != crate::CLI_CLIENT {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "wrong_token",
                "this is an app's token for a store's API; the marketplace takes a developer's token from `vodo login`",
            ));
        }
        info.require_account(vodo_oauth::model::AccountScope::Publish)
            .map_err(|e| {
                Problem::new(StatusCode::FORBIDDEN, "insufficient_scope", e.description)
            })?;
        let role = platform
            .accounts
            .role_of(&info.subject)
            .map_err(|e| e.problem())?
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the account this token was issued to no longer exists",
                )
            })?;
        Ok(Self(Session {
            email: info.subject,
            role,
            csrf: String::new(),
        }))
    }
}

/// The installation a platform API request acts for: its API key's, or
/// the one whose merchant authorized the partner app's token. Needs
/// [`ApiKeyAuthLayer`](crate::ApiKeyAuthLayer) before the handler.
#[derive(Debug, Clone)]
pub(crate) struct Acting(pub InstallationId);

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        if let Some(key) = parts.extensions.get::<vodo_core::keys::VerifiedKey>() {
            return Ok(Self(key.installation.clone()));
        }
        match parts.extensions.get::<vodo_oauth::AccessInfo>() {
            Some(vodo_oauth::AccessInfo {
                installation: Some(i),
                ..
            }) => Ok(Self(i.clone())),
            Some(_) => Err(crate::rate::no_installation()),
            None => Err(crate::auth_missing("the platform API")),
        }
    }
}

/// A route's query string as `T`: `400 bad_query` as a problem that names
/// the parameter when it does not parse (`?limit=x`), where axum's own
/// `Query` answers in plain text.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!(
                        "{}: fix the query string",
                        crate::problem::shorten(&e.body_text())
                    ),
                )
            })
    }
}

/// A JSON body of at most [`MAX_JSON`] bytes: `415` without a JSON content
/// type, `413` over the limit, `400` when it does not parse, each a problem
/// that says what to fix.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.split(';').next().unwrap_or_default().trim();
                v.eq_ignore_ascii_case("application/json")
            });
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, MAX_JSON)));
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {MAX_JSON} bytes"),
            )
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the body is not the JSON this route takes: {e}"),
            )
        })
    }
}

/// `403` unless `session` manages `installation`.
pub(crate) fn manages(session: &Session, installation: &InstallationId) -> Result<(), Problem> {
    if session.role.manages(installation) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "not_yours",
            format!(
                "{} ({}) does not manage the installation `{installation}`",
                session.email, session.role
            ),
        ))
    }
}

/// The client's address, for the sign-in limit: the connection's peer when
/// the server was started with connect info, else `unknown`.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string()),
        ))
    }
}
