//! Support for Vodo's tests, benches and example hosts (unpublished, in the
//! way of rustls' `rustls-test` and wasmtime's `test-util`): building the
//! guest plugins of `tests/plugins` and `examples/plugins` from source for
//! `wasm32-wasip2`, once per process.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The platform roadmap's own `plugin.json` example, exactly as its users
/// wrote it (`../shared/reference/roadmap.md`): it must validate as it stands.
pub const ROADMAP_MANIFEST: &str = include_str!("../data/roadmap-plugin.json");

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

/// Makes sure the `wasm32-wasip2` target is installed, installing it with
/// rustup if it is not, so that a fresh machine needs only the toolchain.
pub fn ensure_wasm_target() -> Result<(), String> {
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
        Err("`rustup target add wasm32-wasip2` failed: install the target and try again".into())
    }
}

/// Builds every plugin of the guest workspace at `workspace` (relative to the
/// repository root, such as `examples/plugins`) for `wasm32-wasip2`, in
/// release mode, and returns the folder that holds the `.wasm` files.
///
/// Cargo rebuilds only what changed, so calling this once per process is cheap.
pub fn build_plugins(workspace: &str) -> Result<PathBuf, String> {
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

/// The `.wasm` file of the guest crate `name` in a folder from [`build_plugins`].
pub fn wasm_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// The component of a guest plugin, built from source once per process.
///
/// `name` is a crate of `tests/plugins` or `examples/plugins`.
///
/// # Panics
///
/// When the plugins do not build or the file cannot be read: this is test
/// support, and a test without its plugin cannot run.
#[allow(clippy::panic)]
pub fn guest(name: &str) -> Vec<u8> {
    static TESTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static EXAMPLES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let in_examples = root().join("examples/plugins").join(name).is_dir();
    let dir = if in_examples {
        EXAMPLES.get_or_init(|| build_plugins("examples/plugins"))
    } else {
        TESTS.get_or_init(|| build_plugins("tests/plugins"))
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let file = wasm_path(dir, name);
    std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", file.display()))
}
