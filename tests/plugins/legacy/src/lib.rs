//! A plugin built against the 0.1.0 WIT as it was published, with
//! `wit-bindgen` directly: it imports `vodo:plugin/users@0.1.0`, which a
//! 0.1.1 host must still satisfy.

wit_bindgen::generate!({ path: "plugin-0.1.0.wit", world: "plugin" });


struct Legacy;

impl Guest for Legacy {
    fn on_event(_name: String, payload: String) -> Result<(), String> {
        let user = vodo::plugin::users::get(&payload).map_err(|e| format!("{e:?}"))?;
        vodo::plugin::log::write(
            vodo::plugin::log::Level::Info,
            &format!("user {payload} found: {}", user.is_some()),
        );
        Ok(())
    }

    fn on_request(_request: Request) -> Result<Response, String> {
        Ok(Response {
            status: 200,
            headers: Vec::new(),
            body: b"built against 0.1.0".to_vec(),
        })
    }

    fn health() -> Result<(), String> {
        Ok(())
    }
}

export!(Legacy);
