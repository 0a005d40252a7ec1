//! A package upload: the archive a plugin author submits.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vodo_marketplace::package::Package::parse(data, 1 << 20);
});
