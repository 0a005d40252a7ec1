//! Framework-independent HTTP: the request the server reads and the
//! response it writes. Adapters (the `axum` feature, or a host's own)
//! convert to and from their framework's types.

use std::collections::HashMap;

/// An HTTP request, as much of it as the server reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
                ("pragma".into(), "no-cache".into()),
            ],
            body: value.to_string().into_bytes(),
        }
    }

    pub(crate) fn html(status: u16, body: String) -> Self {
        Self::html_with_csp(status, body, CSP.into())
    }

    /// A page with a form that posts to this server, which answers with a
    /// redirect to `target`: browsers apply `form-action` to the redirect
    /// too, so the policy names `target`'s origin besides `'self'`.
    pub(crate) fn form_page(target: &str, body: String) -> Self {
        let csp = match form_target_source(target) {
            Some(source) => CSP.replace(
                "form-action 'self'",
                &format!("form-action 'self' {source}"),
            ),
            None => CSP.into(),
        };
        Self::html_with_csp(200, body, csp)
    }

    fn html_with_csp(status: u16, body: String, csp: String) -> Self {
        Self {
            status,
            headers: vec![
                ("content-type".into(), "text/html; charset=utf-8".into()),
                ("cache-control".into(), "no-store".into()),
                ("x-frame-options".into(), "DENY".into()),
                ("content-security-policy".into(), csp),
            ],
            body: body.into_bytes(),
        }
    }

    pub(crate) fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            headers: vec![
                ("location".into(), location.to_owned()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Vec::new(),
        }
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The pages' policy: nothing loads, forms post only to this server.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// The CSP source expression for redirects to `target`: its origin
/// (`https://app.example:8443`), or its scheme alone for an app's private
/// scheme (`com.example.app:`). `None` if it cannot be written safely.
fn form_target_source(target: &str) -> Option<String> {
    let url = url::Url::parse(target).ok()?;
    let source = match url.origin() {
        url::Origin::Tuple(..) => url.origin().ascii_serialization(),
        url::Origin::Opaque(_) => format!("{}:", url.scheme()),
    };
    // Only characters a source expression may hold: no spaces, `;` or `,`.
    source
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":/.-+[]".contains(&b))
        .then_some(source)
}

/// Parameters of a query string or form body. A parameter given twice is
/// an error (RFC 6749 §3.1: parameters must not be repeated).
pub(crate) fn params(encoded: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(encoded) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(format!("parameter `{k}` is repeated"));
        }
    }
    Ok(out)
}

/// Escapes text for HTML.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
