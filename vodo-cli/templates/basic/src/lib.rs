//! {{name}}: one hook. On every `order.created` event it logs a line with
//! the order's number and total; it asks for no other permission.

use vodo_pdk::{Plugin, log};

/// The line logged for an `order.created` payload, such as
/// `{"id": "1001", "total": "49.90", "currency": "SAR"}`.
pub fn describe(payload: &str) -> Result<String, String> {
    let order: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| format!("the order is not JSON: {e}"))?;
    let id = order["id"].as_str().ok_or("the order has no \"id\"")?;
    let total = order["total"].as_str().unwrap_or("?");
    let currency = order["currency"].as_str().unwrap_or("");
    Ok(format!("new order {id}: {total} {currency}")
        .trim_end()
        .to_owned())
}

struct Basic;

impl Plugin for Basic {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        match name.as_str() {
            "order.created" => {
                log::info(&describe(&payload)?);
                Ok(())
            }
            other => Err(format!("not subscribed to `{other}`")),
        }
    }
}

vodo_pdk::export_plugin!(Basic);
