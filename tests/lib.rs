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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// Makes sure the `wasm32-wasip2` target is installed, installing it with
/// rustup if it is not, so that a fresh machine needs only the toolchain.
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .map_err(|e| format!("cannot run `{rustc}`: {e}"))?;
    let dir = String::from_utf8_lossy(&libdir.stdout).trim().to_owned();
    if libdir.status.success() && Path::new(&dir).is_dir() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .map_err(|e| {
            format!("the wasm32-wasip2 target is missing and rustup could not be run: {e}")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err("`rustup target add wasm32-wasip2` failed".into())
    }
}

fn build_guests(workspace: &str) -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = root().join("target").join("guests");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root().join(workspace).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host, not for the guests.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the guest plugins in `{workspace}` failed"
        ));
    }
    Ok(target_dir.join("wasm32-wasip2").join("release"))
}

/// The component of a guest plugin, built from source once per test process.
///
/// `name` is a crate of `tests/plugins` or `examples/plugins`.
pub fn guest(name: &str) -> Vec<u8> {
    static TESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static EXAMPLES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let in_examples = root().join("examples/plugins").join(name).is_dir();
    let dir = if in_examples {
        EXAMPLES.get_or_init(|| build_guests("examples/plugins"))
    } else {
        TESTS.get_or_init(|| build_guests("tests/plugins"))
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", file.display()))
}
