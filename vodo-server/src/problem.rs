//! Refusals as JSON problems (RFC 9457).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};

/// A refusal: a status, a stable `code` for programs, a `detail` for
/// people that says what to do, and the headers that go with it.
///
/// Rendered as `application/problem+json`:
/// `{"title": "Unauthorized", "status": 401, "code": "invalid_key", "detail": "..."}`,
/// with extra members (such as the missing `scope`) where a refusal has them.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for programs: `missing_key`, `invalid_key`,
    /// `rate_limited`, `missing_scope`, ...
    pub code: &'static str,
    /// What went wrong and what to do, for people.
    pub detail: String,
    /// Extra members of the JSON object.
    pub extra: Vec<(&'static str, serde_json::Value)>,
    /// Headers of the response (`WWW-Authenticate`, `Retry-After`, ...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with no extra members or headers.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// With a member beside `code` and `detail`.
    pub fn with(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    /// With a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The response.
    pub fn response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert(
            "title".into(),
            self.status.canonical_reason().unwrap_or("Error").into(),
        );
        body.insert("status".into(), self.status.as_u16().into());
        body.insert("code".into(), self.code.into());
        body.insert("detail".into(), self.detail.into());
        for (name, value) in self.extra {
            body.insert(name.into(), value);
        }
        let mut response = Response::new(Body::from(serde_json::Value::Object(body).to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// A header value from text that may hold anything a person typed: kept
/// to visible ASCII, quotes and backslashes dropped, at most 200 characters.
pub(crate) fn header_text(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"' && *c != '\\')
        .take(200)
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// At most 200 characters of `text`, for messages that quote input.
pub(crate) fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        s.push_str("...");
    }
    s
}
