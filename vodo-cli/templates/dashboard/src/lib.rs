//! {{name}}: a dashboard widget. Every `order.created` adds to the day's
//! totals, kept in the plugin's storage folder (`sales.json`); the widget
//! is served as an HTML fragment the dashboard embeds
//! (`GET /widgets/sales`) and its data as JSON (`GET /widgets/sales.json`).

use std::collections::BTreeMap;

use vodo_pdk::{Plugin, Request, Response, storage};

/// The days a widget shows.
pub const DAYS: usize = 7;

/// Orders and revenue (in the smallest unit, such as halalas) per day.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sales {
    /// By day, `YYYY-MM-DD`: (orders, revenue).
    pub days: BTreeMap<String, (u64, u64)>,
}

impl Sales {
    /// Reads what `to_json` wrote; an empty or missing file is no sales.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("sales.json is not JSON: {e}"))?;
        let mut days = BTreeMap::new();
        for (day, d) in v["days"].as_object().into_iter().flatten() {
            days.insert(
                day.clone(),
                (
                    d["orders"].as_u64().unwrap_or(0),
                    d["revenue"].as_u64().unwrap_or(0),
                ),
            );
        }
        Ok(Self { days })
    }

    /// The stored form, keeping the last [`DAYS`] days.
    pub fn to_json(&self) -> String {
        let days: serde_json::Map<String, serde_json::Value> = self
            .days
            .iter()
            .rev()
            .take(DAYS)
            .map(|(day, (orders, revenue))| {
                (
                    day.clone(),
                    serde_json::json!({ "orders": orders, "revenue": revenue }),
                )
            })
            .collect();
        serde_json::json!({ "days": days }).to_string()
    }

    /// Counts an order (`{"created_at": "2026-12-04T...", "total": "49.90"}`).
    pub fn add(&mut self, order: &str) -> Result<(), String> {
        let o: serde_json::Value =
            serde_json::from_str(order).map_err(|e| format!("the order is not JSON: {e}"))?;
        let day = o["created_at"]
            .as_str()
            .and_then(|t| t.get(..10))
            .ok_or("the order has no \"created_at\" date")?;
        let total = cents(o["total"].as_str().ok_or("the order has no \"total\"")?)?;
        let entry = self.days.entry(day.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += total;
        Ok(())
    }

    /// The widget: an HTML fragment with a bar per day.
    pub fn widget(&self) -> String {
        let max = self.days.values().map(|d| d.1).max().unwrap_or(0).max(1);
        let mut rows = String::new();
        for (day, (orders, revenue)) in self.days.iter().rev().take(DAYS) {
            let width = revenue * 100 / max;
            rows.push_str(&format!(
                "<tr><th scope=\"row\">{day}</th><td>{orders}</td><td>{}.{:02}</td>\
                 <td><svg width=\"100\" height=\"10\" role=\"img\" aria-label=\"{width}%\">\
                 <rect width=\"{width}\" height=\"10\"></rect></svg></td></tr>",
                revenue / 100,
                revenue % 100
            ));
        }
        if rows.is_empty() {
            rows.push_str("<tr><td colspan=\"4\">No orders yet</td></tr>");
        }
        format!(
            "<section class=\"widget\" data-widget=\"sales\"><h2>Sales, last {DAYS} days</h2>\
             <table><thead><tr><th>Day</th><th>Orders</th><th>Revenue</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table></section>"
        )
    }
}

/// `"49.90"` in hundredths: `4990`.
pub fn cents(amount: &str) -> Result<u64, String> {
    let bad = || format!("`{amount}` is not an amount like 49.90");
    let (whole, frac) = amount
        .trim()
        .split_once('.')
        .unwrap_or((amount.trim(), "0"));
    let frac = format!("{frac:0<2}");
    if frac.len() > 2 {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = frac.parse().map_err(|_| bad())?;
    whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

const FILE: &str = "sales.json";

fn load() -> Result<Sales, String> {
    match storage::read(FILE) {
        Ok(bytes) => Sales::from_json(&bytes),
        Err(vodo_pdk::Error::NotFound(_)) => Ok(Sales::default()),
        Err(e) => Err(format!("{e:?}")),
    }
}

struct Dashboard;

impl Plugin for Dashboard {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        if name != "order.created" {
            return Err(format!("not subscribed to `{name}`"));
        }
        let mut sales = load()?;
        sales.add(&payload)?;
        storage::write(FILE, sales.to_json().as_bytes()).map_err(|e| format!("{e:?}"))
    }

    fn on_request(request: Request) -> Result<Response, String> {
        let sales = load()?;
        let (content_type, body) = match request.path.split('?').next().unwrap_or("") {
            "/widgets/sales" => ("text/html; charset=utf-8", sales.widget()),
            "/widgets/sales.json" => ("application/json", sales.to_json()),
            _ => ("text/plain", "not found".to_owned()),
        };
        Ok(Response {
            status: if content_type == "text/plain" {
                404
            } else {
                200
            },
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into_bytes(),
        })
    }
}

vodo_pdk::export_plugin!(Dashboard);
