//! {{name}}: hooks on products, orders and payments.
//!
//! - `product.updated`: when stock falls to [`LOW_STOCK`] or below, emits
//!   `inventory.low_stock` for other plugins and the merchant.
//! - `order.created`: writes an `order_note` with a risk score.
//! - `payment.captured`: marks the order's note as paid, keeping its score.

use vodo_pdk::{Plugin, entities, hooks, log};

/// Stock at or below this is low.
pub const LOW_STOCK: i64 = 5;

fn json(payload: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(payload).map_err(|e| format!("the {what} is not JSON: {e}"))
}

/// The `inventory.low_stock` payload for a product update, if stock is low.
pub fn low_stock(product: &str) -> Result<Option<String>, String> {
    let p = json(product, "product")?;
    let sku = p["sku"].as_str().ok_or("the product has no \"sku\"")?;
    let stock = p["stock"]
        .as_i64()
        .ok_or("the product has no integer \"stock\"")?;
    Ok((stock <= LOW_STOCK).then(|| serde_json::json!({ "sku": sku, "stock": stock }).to_string()))
}

/// A risk score from 0 to 100 for an order, and the reasons for it.
pub fn risk(order: &serde_json::Value) -> (u8, Vec<&'static str>) {
    let mut score = 0u8;
    let mut why = Vec::new();
    let total: f64 = order["total"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    if total >= 5000.0 {
        score += 40;
        why.push("large total");
    }
    let billing = order["billing_address"]["country"].as_str();
    let shipping = order["shipping_address"]["country"].as_str();
    if billing.is_some() && billing != shipping {
        score += 30;
        why.push("billing and shipping countries differ");
    }
    if order["customer"]["orders_count"].as_u64() == Some(0) {
        score += 20;
        why.push("first order");
    }
    (score, why)
}

/// The `order_note` for a new order.
pub fn note_for_order(order: &str) -> Result<(String, String), String> {
    let o = json(order, "order")?;
    let id = o["id"]
        .as_str()
        .ok_or("the order has no \"id\"")?
        .to_owned();
    let (score, why) = risk(&o);
    Ok((
        id,
        serde_json::json!({ "risk": score, "reasons": why, "paid": false }).to_string(),
    ))
}

/// The note after a captured payment: `note` (if any) with `paid: true`.
pub fn paid(note: Option<&str>, payment: &serde_json::Value) -> Result<String, String> {
    let mut n: serde_json::Value = match note {
        Some(text) => json(text, "note")?,
        None => serde_json::json!({}),
    };
    n["paid"] = true.into();
    n["payment"] = payment["id"].clone();
    Ok(n.to_string())
}

fn e(err: vodo_pdk::Error) -> String {
    format!("{err:?}")
}

struct Commerce;

impl Plugin for Commerce {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        match name.as_str() {
            "product.updated" => {
                if let Some(alert) = low_stock(&payload)? {
                    hooks::trigger("inventory.low_stock", &alert).map_err(e)?;
                }
            }
            "order.created" => {
                let (id, note) = note_for_order(&payload)?;
                entities::put("order_note", &id, &note).map_err(e)?;
            }
            "payment.captured" => {
                let p = json(&payload, "payment")?;
                let order = p["order_id"]
                    .as_str()
                    .ok_or("the payment has no \"order_id\"")?;
                let note = entities::get("order_note", order).map_err(e)?;
                entities::put("order_note", order, &paid(note.as_deref(), &p)?).map_err(e)?;
                log::info(&format!("order {order} paid"));
            }
            other => return Err(format!("not subscribed to `{other}`")),
        }
        Ok(())
    }
}

vodo_pdk::export_plugin!(Commerce);
