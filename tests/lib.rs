//! Shared data for the cross-crate integration tests; building guest
//! plugins is `test-support`'s.

// Test support: failing loudly is its job.
#![allow(clippy::panic)]

use std::sync::Arc;

pub use test_support::guest;
use vodo_core::{Consent, Manifest};
use vodo_sandbox::{Installed, Limits, Sandbox};

/// Installs the plugin of `manifest` in `installation` with the installer's
/// consent to everything it asks for.
///
/// # Panics
///
/// When the manifest is invalid or the install is refused.
pub fn install_all(
    sandbox: &Sandbox,
    installation: &str,
    manifest: &str,
    wasm: &[u8],
    limits: Limits,
) -> Arc<Installed> {
    let m = Manifest::parse(manifest).unwrap_or_else(|e| panic!("{e}"));
    sandbox
        .install(
            &installation.into(),
            &m,
            wasm,
            &Consent::all(&m, "merchant"),
            limits,
        )
        .unwrap_or_else(|e| panic!("installing `{}` in `{installation}`: {e}", m.slug))
}

/// The README's code, compiled as doc tests: the plugin and the host it shows.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A complete, valid manifest that requests one of everything.
pub const FULL_MANIFEST: &str = r#"{
  "name": "Order Notifier",
  "slug": "order-notifier",
  "version": "1.2.0",
  "description": "Posts new orders to a chat channel.",
  "author": { "name": "Acme Apps", "email": "dev@acme.example" },
  "license": "MIT",
  "entry": "plugin.wasm",
  "routes": ["GET /status"],
  "permissions": {
    "entities": ["read:order", "read:customer", "write:order_note"],
    "hooks": ["subscribe:order.*", "trigger:order.notified"],
    "api": { "rate_limit": "5/minute", "endpoints": ["orders", "customers"] },
    "storage": { "max_size": "10MB", "allowed_types": ["json"] },
    "network": { "outbound": ["hooks.slack.com"] },
    "settings": "read"
  }
}"#;
