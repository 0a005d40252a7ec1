//! The bench plugin's three handlers for Extism: `empty` does nothing,
//! `one_call` makes one host call, `echo` answers with its input.

use extism_pdk::*;

#[host_fn]
extern "ExtismHost" {
    fn get_entity(kind: String, id: String) -> String;
}

#[plugin_fn]
pub fn empty(_event: String) -> FnResult<()> {
    Ok(())
}

#[plugin_fn]
pub fn one_call(_event: String) -> FnResult<()> {
    // SAFETY: the host defines `get_entity` with this signature.
    let record = unsafe { get_entity("order".into(), "1".into())? };
    std::hint::black_box(record);
    Ok(())
}

#[plugin_fn]
pub fn echo(body: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(body)
}
