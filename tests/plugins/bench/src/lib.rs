//! The benchmark plugin: `empty` does nothing, `one-call` makes one host call.

use vodo_pdk::{Plugin, entities};

struct Bench;

impl Plugin for Bench {
    fn on_event(name: String, _payload: String) -> Result<(), String> {
        if name == "one-call" {
            entities::get("order", "1").map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }
}

vodo_pdk::export_plugin!(Bench);
