//! `plugin.json` as an author or a hostile package writes it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = vodo_core::Manifest::parse(s) {
            // What parses must also produce its grant without a panic.
            let _ = m.scopes();
        }
    }
});
