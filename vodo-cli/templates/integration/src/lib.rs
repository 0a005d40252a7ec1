//! {{name}}: an external API through the allowlisted `http` interface. On
//! every `order.created` it books a shipment with the carrier's API
//! (`POST {api_url}/v1/shipments`) and keeps the tracking number as a
//! `shipment` record. The carrier's host is the only one plugin.json allows
//! (`permissions.network.outbound`); the sandbox refuses any other.
//!
//! The HTTP call goes through [`Transport`], so the tests in tests/ run the
//! same code against a local fake server, natively.

use vodo_pdk::{Plugin, entities, http, log, settings};

/// An HTTP request the plugin makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `POST`.
    pub method: String,
    /// The whole URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Makes an HTTP request: the host's `http` interface in the plugin, a
/// plain socket in the tests.
pub trait Transport {
    /// The answer's status and body.
    fn send(&self, call: &Call) -> Result<(u16, Vec<u8>), String>;
}

/// The request that books a shipment for `order` (the event's payload).
pub fn shipment_call(api_url: &str, token: &str, order: &str) -> Result<Call, String> {
    let order: serde_json::Value =
        serde_json::from_str(order).map_err(|e| format!("the order is not JSON: {e}"))?;
    let id = order["id"].as_str().ok_or("the order has no \"id\"")?;
    let body = serde_json::json!({
        "reference": id,
        "address": order["shipping_address"],
        "parcels": order["lines"].as_array().map_or(1, Vec::len),
    });
    Ok(Call {
        method: "POST".into(),
        url: format!("{}/v1/shipments", api_url.trim_end_matches('/')),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), format!("Bearer {token}")),
        ],
        body: body.to_string().into_bytes(),
    })
}

/// Books the shipment and returns its tracking number.
pub fn book(
    transport: &impl Transport,
    api_url: &str,
    token: &str,
    order: &str,
) -> Result<String, String> {
    let call = shipment_call(api_url, token, order)?;
    let (status, body) = transport.send(&call)?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "the carrier answered {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the carrier's answer is not JSON: {e}"))?;
    answer["tracking_number"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the carrier's answer has no \"tracking_number\"".into())
}

/// The host's `http` interface.
struct Host;

impl Transport for Host {
    fn send(&self, call: &Call) -> Result<(u16, Vec<u8>), String> {
        let answer = http::fetch(&http::Outgoing {
            method: call.method.clone(),
            url: call.url.clone(),
            headers: call.headers.clone(),
            body: call.body.clone(),
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok((answer.status, answer.body))
    }
}

struct Integration;

impl Plugin for Integration {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        if name != "order.created" {
            return Err(format!("not subscribed to `{name}`"));
        }
        let setting = |key: &str| settings::get(key).map_err(|e| format!("{e:?}"));
        let (Some(api_url), Some(token)) = (setting("api_url")?, setting("api_token")?) else {
            log::warn("not configured: set `api_url` and `api_token` in the plugin's settings");
            return Ok(());
        };
        let tracking = book(&Host, &api_url, &token, &payload)?;
        let order: serde_json::Value = serde_json::from_str(&payload).map_err(|e| e.to_string())?;
        let id = order["id"].as_str().unwrap_or_default();
        entities::put(
            "shipment",
            id,
            &serde_json::json!({ "order": id, "tracking_number": tracking }).to_string(),
        )
        .map_err(|e| format!("{e:?}"))?;
        log::info(&format!("order {id} ships as {tracking}"));
        Ok(())
    }
}

vodo_pdk::export_plugin!(Integration);
