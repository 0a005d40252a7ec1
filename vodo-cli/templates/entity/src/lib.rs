//! {{name}}: a custom entity, `gift_message`, kept per order, and its views
//! served through the plugin's own routes:
//!
//! - on `order.created` with a `gift_message`, the record is created;
//! - `GET /gift-messages/{id}` shows it as an HTML page;
//! - `PUT /gift-messages/{id}` with `{"to": ..., "text": ...}` changes it.

use vodo_pdk::{Plugin, Request, Response, entities};

/// The entity kind this plugin owns.
pub const KIND: &str = "gift_message";

/// The longest message kept, in characters.
pub const MAX_TEXT: usize = 500;

/// The record for an order's gift message, if the order has one: its id
/// and the record's JSON (`{"order", "to", "text"}`).
pub fn from_order(payload: &str) -> Result<Option<(String, String)>, String> {
    let order: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| format!("the order is not JSON: {e}"))?;
    let id = order["id"].as_str().ok_or("the order has no \"id\"")?;
    let Some(gift) = order.get("gift_message").filter(|g| !g.is_null()) else {
        return Ok(None);
    };
    let record = record(id, gift)?;
    Ok(Some((id.to_owned(), record)))
}

/// A gift message record from `{"to", "text"}`, checked.
pub fn record(order: &str, gift: &serde_json::Value) -> Result<String, String> {
    let text = gift["text"]
        .as_str()
        .ok_or("a gift message needs \"text\"")?;
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT {
        return Err(format!("the text must be 1 to {MAX_TEXT} characters"));
    }
    let to = gift["to"].as_str().unwrap_or("");
    Ok(serde_json::json!({ "order": order, "to": to, "text": text }).to_string())
}

/// The HTML page of a record.
pub fn page(record: &str) -> Result<String, String> {
    let r: serde_json::Value =
        serde_json::from_str(record).map_err(|e| format!("a stored record is not JSON: {e}"))?;
    let field = |k: &str| escape(r[k].as_str().unwrap_or(""));
    Ok(format!(
        "<!doctype html><title>Gift message for order {order}</title>\
         <article class=\"gift-message\"><h1>For {to}</h1><p>{text}</p>\
         <footer>Order {order}</footer></article>",
        order = field("order"),
        to = field("to"),
        text = field("text"),
    ))
}

/// `s` safe inside HTML text and attributes.
pub fn escape(s: &str) -> String {
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

/// The id in `/gift-messages/{id}`.
pub fn id_of(path: &str) -> Option<&str> {
    let path = path.split('?').next().unwrap_or(path);
    path.strip_prefix("/gift-messages/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

fn answer(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.into(),
    }
}

fn problem(status: u16, message: &str) -> Response {
    answer(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

struct GiftMessages;

impl Plugin for GiftMessages {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        if name != "order.created" {
            return Err(format!("not subscribed to `{name}`"));
        }
        if let Some((id, record)) = from_order(&payload)? {
            entities::put(KIND, &id, &record).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn on_request(request: Request) -> Result<Response, String> {
        let Some(id) = id_of(&request.path) else {
            return Ok(problem(404, "no such page"));
        };
        match request.method.as_str() {
            "GET" => match entities::get(KIND, id).map_err(|e| e.to_string())? {
                Some(record) => Ok(answer(200, "text/html; charset=utf-8", page(&record)?)),
                None => Ok(problem(404, "this order has no gift message")),
            },
            "PUT" => {
                let gift: serde_json::Value = match serde_json::from_slice(&request.body) {
                    Ok(v) => v,
                    Err(e) => return Ok(problem(400, &format!("the body is not JSON: {e}"))),
                };
                match record(id, &gift) {
                    Ok(record) => {
                        entities::put(KIND, id, &record).map_err(|e| e.to_string())?;
                        Ok(answer(200, "application/json", record))
                    }
                    Err(e) => Ok(problem(422, &e)),
                }
            }
            _ => Ok(problem(405, "use GET or PUT")),
        }
    }
}

vodo_pdk::export_plugin!(GiftMessages);
