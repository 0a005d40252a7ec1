//! `/openapi.json` and its explorer, `/api-docs`: every operation of the
//! document with its parameters and answers, and for reads a form that
//! fills in the path and sends the request from the browser (with its
//! session cookie), no JavaScript needed.

use std::sync::Arc;

use axum::extract::Query;
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::{StatusCode, header};
use maud::{DOCTYPE, html};
use serde_json::Value;

use crate::Problem;

/// The document, rendered once.
#[derive(Debug, Clone)]
pub(crate) struct Docs {
    pub json: Arc<str>,
    pub page: Arc<str>,
}

impl Docs {
    pub(crate) fn new(doc: &Value) -> Self {
        Self {
            json: doc.to_string().into(),
            page: page(doc).into(),
        }
    }

    pub(crate) fn json_response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            self.json.to_string(),
        )
            .into_response()
    }

    pub(crate) fn page_response(&self) -> Response {
        Html(self.page.to_string()).into_response()
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn path_params(op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn page(doc: &Value) -> String {
    let empty = serde_json::Map::new();
    let paths = doc["paths"].as_object().unwrap_or(&empty);
    let mut ops: Vec<(&str, &str, &Value)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (path.as_str(), *m, op)))
        })
        .collect();
    ops.sort_by_key(|(path, m, _)| (*path, METHODS.iter().position(|x| x == m)));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "API explorer · Vodo" }
                style { (maud::PreEscaped("body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}header{background:#1d2430;color:#fff;padding:.7rem 1.5rem}header a{color:#cfd8e3}main{padding:1.5rem;max-width:1000px}.op{background:#fff;box-shadow:0 1px 2px #0001;margin:.7rem 0;padding:.7rem 1rem}.m{display:inline-block;width:4.5rem;font-weight:700;font-family:monospace}.get{color:#17692b}.post{color:#2f6fdf}.put{color:#7a5b00}.delete{color:#a11b1b}code{font-size:.9rem}details summary{cursor:pointer}table{border-collapse:collapse}td{padding:.15rem .6rem;font-size:.9rem;vertical-align:top}input{padding:.25rem;border:1px solid #c5ccd6}button{background:#2f6fdf;color:#fff;border:0;padding:.3rem .8rem;border-radius:3px}")) }
            }
            body {
                header { strong { "Vodo API explorer" } " · " a href="/openapi.json" { "openapi.json" } " · " a href="/admin" { "console" } }
                main {
                    h1 { (doc["info"]["title"].as_str().unwrap_or("API")) " " small { "OpenAPI " (doc["openapi"].as_str().unwrap_or("")) } }
                    p { (doc["info"]["description"].as_str().unwrap_or("")) }
                    p { "Sign in to the console first: reads sent from here carry its session cookie." }
                    @for (path, method, op) in &ops {
                        div.op {
                            details {
                                summary {
                                    span class={ "m " (method) } { (method.to_uppercase()) }
                                    code { (path) } " "
                                    (op["summary"].as_str().or(op["description"].as_str()).unwrap_or(""))
                                }
                                @if let Some(params) = op["parameters"].as_array() {
                                    p { strong { "Parameters" } }
                                    table { @for p in params { tr {
                                        td { code { (p["name"].as_str().unwrap_or("")) } }
                                        td { (p["in"].as_str().unwrap_or("")) }
                                        td { (p["description"].as_str().unwrap_or("")) }
                                    } } }
                                }
                                @if let Some(responses) = op["responses"].as_object() {
                                    p { strong { "Answers" } }
                                    table { @for (status, r) in responses { tr {
                                        td { code { (status) } }
                                        td { (r["description"].as_str().unwrap_or("")) }
                                    } } }
                                }
                                @if *method == "get" {
                                    form method="get" action="/api-docs/try" {
                                        input type="hidden" name="path" value=(path);
                                        @for name in path_params(op) {
                                            (name) " " input name=(name) required size="14"; " "
                                        }
                                        button type="submit" { "Send" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

/// Fills the path template `path` with the form's values and sends the
/// browser there. Only paths of the document's reads are accepted.
pub(crate) fn try_it(doc: &Value, Query(form): Query<Vec<(String, String)>>) -> Response {
    let refuse = |detail: &str| {
        Problem::new(StatusCode::BAD_REQUEST, "bad_request", detail.to_owned()).response()
    };
    let Some(template) = form
        .iter()
        .find(|(k, _)| k == "path")
        .map(|(_, v)| v.as_str())
    else {
        return refuse("say which `path` of the document to read");
    };
    if doc["paths"][template]["get"].is_null() {
        return refuse("that path has no read in the document");
    }
    let mut url = String::new();
    for segment in template.split('/').skip(1) {
        url.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let Some((_, value)) = form.iter().find(|(k, _)| k == name) else {
                    return refuse(&format!("fill in `{name}`"));
                };
                for b in value.bytes() {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        url.push(char::from(b));
                    } else {
                        url.push_str(&format!("%{b:02X}"));
                    }
                }
            }
            None => url.push_str(segment),
        }
    }
    Redirect::to(&url).into_response()
}
