//! Order Notifier: on every order event, reads the order, notes that it was
//! seen, keeps a count in its storage folder, and posts to the merchant's
//! chat webhook when one is configured.

use vodo_pdk::{Plugin, Request, Response, entities, http, log, settings, storage};

struct OrderNotifier;

fn err(e: vodo_pdk::Error) -> String {
    format!("{e:?}")
}

impl Plugin for OrderNotifier {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        let id = payload.trim();
        let order = entities::get("order", id).map_err(err)?;
        log::info(&format!("{name} for order {id}: {}", order.as_deref().unwrap_or("(not found)")));
        entities::put("order_note", id, &format!(r#"{{"order":"{id}","event":"{name}","notified":true}}"#))
            .map_err(err)?;

        let seen = storage::read("count.json")
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        storage::write("count.json", (seen + 1).to_string().as_bytes()).map_err(err)?;

        if let Some(url) = settings::get("webhook_url").map_err(err)? {
            let body = format!(r#"{{"text":"New order {id}"}}"#).into_bytes();
            let answer = http::fetch(&http::Outgoing {
                method: "POST".into(),
                url,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            })
            .map_err(err)?;
            log::info(&format!("chat webhook answered {}", answer.status));
        }
        Ok(())
    }

    fn on_request(request: Request) -> Result<Response, String> {
        if request.method == "GET" && request.path == "/status" {
            let count = storage::read("count.json").unwrap_or_default();
            return Ok(Response {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: format!(r#"{{"orders_seen":{}}}"#, String::from_utf8_lossy(&count)).into_bytes(),
            });
        }
        Ok(Response { status: 404, headers: Vec::new(), body: b"not found".to_vec() })
    }
}

vodo_pdk::export_plugin!(OrderNotifier);
