//! {{name}}: an automation with a trigger, a condition and actions, set up
//! by the merchant in the plugin's settings.
//!
//! - Trigger: `order.created`.
//! - Condition: the order's total is at least `min_total` (default 500),
//!   and, when `country` is set, it ships there.
//! - Actions: tag the order (`order_tag` record, tag from `tag`, default
//!   `high-value`) and emit `workflow.high_value_order`.

use vodo_pdk::{Plugin, entities, hooks, log, settings};

/// The workflow's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Smallest total that matches, in the order's currency.
    pub min_total: f64,
    /// Only orders shipped to this country (ISO code), when set.
    pub country: Option<String>,
    /// The tag written.
    pub tag: String,
}

impl Rule {
    /// The rule from settings as the host returns them (`None`: not set).
    pub fn from_settings(
        min_total: Option<&str>,
        country: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Self, String> {
        let min_total = match min_total {
            None => 500.0,
            Some(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| {
                    format!("the setting `min_total` is `{t}`: set it to an amount like 500")
                })?,
        };
        Ok(Self {
            min_total,
            country: country
                .map(|c| c.trim().to_ascii_uppercase())
                .filter(|c| !c.is_empty()),
            tag: tag
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .unwrap_or("high-value")
                .to_owned(),
        })
    }

    /// The condition: whether `order` matches.
    pub fn matches(&self, order: &serde_json::Value) -> bool {
        let total = order["total"]
            .as_str()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0);
        let country = order["shipping_address"]["country"]
            .as_str()
            .map(str::to_ascii_uppercase);
        total >= self.min_total
            && self
                .country
                .as_ref()
                .is_none_or(|c| country.as_ref() == Some(c))
    }
}

/// What the actions do for a matching order.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// The order's id.
    pub order: String,
    /// The `order_tag` record.
    pub tag: String,
    /// The `workflow.high_value_order` payload.
    pub event: String,
}

/// Runs the condition on `order` (the event's payload); the actions to take, if any.
pub fn run(rule: &Rule, order: &str) -> Result<Option<Actions>, String> {
    let o: serde_json::Value =
        serde_json::from_str(order).map_err(|e| format!("the order is not JSON: {e}"))?;
    let id = o["id"].as_str().ok_or("the order has no \"id\"")?;
    if !rule.matches(&o) {
        return Ok(None);
    }
    Ok(Some(Actions {
        order: id.to_owned(),
        tag: serde_json::json!({ "order": id, "tag": rule.tag }).to_string(),
        event: serde_json::json!({ "order": id, "total": o["total"], "tag": rule.tag }).to_string(),
    }))
}

fn e(err: vodo_pdk::Error) -> String {
    format!("{err:?}")
}

struct Workflow;

impl Plugin for Workflow {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        if name != "order.created" {
            return Err(format!("not subscribed to `{name}`"));
        }
        let get = |k: &str| settings::get(k).map_err(e);
        let rule = Rule::from_settings(
            get("min_total")?.as_deref(),
            get("country")?.as_deref(),
            get("tag")?.as_deref(),
        )?;
        match run(&rule, &payload)? {
            Some(a) => {
                entities::put("order_tag", &a.order, &a.tag).map_err(e)?;
                hooks::trigger("workflow.high_value_order", &a.event).map_err(e)?;
                log::info(&format!("order {} matched: tagged {}", a.order, rule.tag));
            }
            None => log::debug("order did not match"),
        }
        Ok(())
    }
}

vodo_pdk::export_plugin!(Workflow);
