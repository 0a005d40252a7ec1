//! Shared helpers for the cross-crate integration tests.

// Test support: failing loudly is its job.
#![allow(clippy::panic)]

/// A complete, valid manifest that requests one of everything.
pub const FULL_MANIFEST: &str = r#"{
  "name": "Order Notifier",
  "slug": "order-notifier",
  "version": "1.2.0",
  "description": "Posts new orders to a chat channel.",
  "author": { "name": "Acme Apps", "email": "dev@acme.example" },
  "license": "MIT",
  "entry": "plugin.wasm",
  "permissions": {
    "entities": { "read": ["order", "customer"], "write": ["order_note"] },
    "hooks": { "subscribe": ["order.*"], "trigger": ["order.notified"] },
    "api": { "rate_limit": "5/minute", "endpoints": ["GET /status"] },
    "storage": { "max_size": "10MB", "allowed_types": ["application/json"] },
    "network": { "outbound": ["hooks.slack.com"] },
    "settings": "read"
  }
}"#;

use std::path::PathBuf;
use std::sync::OnceLock;

/// The component of a guest plugin, built from source once per test process.
///
/// `name` is a crate of `tests/plugins` or `examples/plugins`.
pub fn guest(name: &str) -> Vec<u8> {
    static TESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static EXAMPLES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let in_examples = examples::root()
        .join("examples/plugins")
        .join(name)
        .is_dir();
    let dir = if in_examples {
        EXAMPLES.get_or_init(|| examples::build_plugins("examples/plugins"))
    } else {
        TESTS.get_or_init(|| examples::build_plugins("tests/plugins"))
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let file = examples::wasm_path(dir, name);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", file.display()))
}
