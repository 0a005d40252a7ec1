//! An axum adapter: a `Router` that serves an [`AuthServer`].
//!
//! The server's logic is synchronous and fast with the reference stores; a
//! host whose store blocks for long should put the router behind its own
//! `spawn_blocking` layer.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use crate::{AuthServer, HttpRequest, HttpResponse, Session};

/// Finds the signed-in user of a request (the host's session cookie or header).
pub type SessionFn = Arc<dyn Fn(&HeaderMap) -> Option<Session> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    server: Arc<AuthServer>,
    session: SessionFn,
}

/// A router serving the metadata, authorization, token, revocation and
/// introspection endpoints under the issuer's path. `session` tells the
/// authorization endpoint who is signed in.
pub fn router(server: Arc<AuthServer>, session: SessionFn) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(AppState { server, session })
}

async fn serve(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = to_request(&method, &uri, &headers, &body);
    let session = (state.session)(&headers);
    into_response(state.server.handle(&request, session.as_ref()))
}

/// Converts an axum request's parts into the server's [`HttpRequest`];
/// header values that are not visible ASCII are left out.
pub fn to_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .filter_map(|(n, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (n.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// Converts a framework-independent response into an axum one.
pub fn into_response(r: HttpResponse) -> Response {
    let mut builder = Response::builder().status(r.status);
    for (name, value) in &r.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(r.body)).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::from("invalid response"));
        *fallback.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}
