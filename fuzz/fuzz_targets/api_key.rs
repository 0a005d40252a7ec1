//! A presented API key: whatever arrives in an `Authorization` header.
#![no_main]
use std::sync::{Arc, LazyLock};

use vodo_core::SecretKey;
use vodo_core::audit::MemoryAudit;
use vodo_core::keys::{ApiKeyManager, MemoryKeyStore, looks_like_key};

static KEYS: LazyLock<ApiKeyManager> = LazyLock::new(|| {
    ApiKeyManager::new(
        Arc::new(MemoryKeyStore::new()),
        &SecretKey::from_bytes([3; 32]),
        Arc::new(MemoryAudit::with_capacity(16)),
    )
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let shaped = looks_like_key(s);
        let verified = KEYS.verify(s);
        // Nothing but a key this manager issued verifies.
        assert!(verified.is_err());
        if !shaped {
            assert!(!matches!(verified, Err(vodo_core::keys::KeyError::Unknown)));
        }
    }
});
