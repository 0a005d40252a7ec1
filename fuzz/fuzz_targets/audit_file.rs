//! An audit file as found on disk, after any tampering.
#![no_main]
use std::io::Write;

use vodo_core::SecretKey;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    let key = SecretKey::from_bytes([7; 32]);
    let _ = vodo_core::audit::verify_file(file.path(), &key, None);
});
