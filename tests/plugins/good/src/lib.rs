//! A well-behaved plugin, the control group of the hostile suite.

use vodo_pdk::{Plugin, Request, Response, entities, log};

struct Good;

impl Plugin for Good {
    fn on_event(name: String, payload: String) -> Result<(), String> {
        log::info(&format!("got {name}"));
        let order = entities::get("order", &payload).map_err(|e| format!("{e:?}"))?;
        let note = format!(r#"{{"order":"{payload}","seen":{}}}"#, order.is_some());
        entities::put("order_note", &payload, &note).map_err(|e| format!("{e:?}"))
    }

    fn on_request(request: Request) -> Result<Response, String> {
        Ok(Response {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                // What a host let through, and a cookie it must not.
                (
                    "x-seen-headers".into(),
                    request
                        .headers
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("set-cookie".into(), "session=plugin".into()),
            ],
            body: format!("{} {} ok", request.method, request.path).into_bytes(),
        })
    }

    fn health() -> Result<(), String> {
        Ok(())
    }
}

vodo_pdk::export_plugin!(Good);
