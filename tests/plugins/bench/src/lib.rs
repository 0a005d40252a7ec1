//! The benchmark plugin: `empty` does nothing, `one-call` makes one host
//! call, and a request is answered with its own body (the echo workload).

use vodo_pdk::{Plugin, Request, Response, entities};

struct Bench;

impl Plugin for Bench {
    fn on_event(name: String, _payload: String) -> Result<(), String> {
        if name == "one-call" {
            entities::get("order", "1").map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    fn on_request(request: Request) -> Result<Response, String> {
        Ok(Response {
            status: 200,
            headers: Vec::new(),
            body: request.body,
        })
    }
}

vodo_pdk::export_plugin!(Bench);
