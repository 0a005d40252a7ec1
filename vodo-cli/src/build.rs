//! Building a plugin crate for `wasm32-wasip2`: the target installed when
//! missing, the component found from cargo's own JSON messages.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Makes sure the `wasm32-wasip2` target is installed, adding it with
/// rustup when it is not.
pub fn ensure_target() -> Result<()> {
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .context("running `rustc`: is the Rust toolchain installed (https://rustup.rs)?")?;
    let dir = String::from_utf8_lossy(&libdir.stdout).trim().to_owned();
    if libdir.status.success() && Path::new(&dir).is_dir() {
        return Ok(());
    }
    eprintln!("adding the wasm32-wasip2 target with rustup ...");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .context("the wasm32-wasip2 target is missing and `rustup` could not be run")?;
    if !status.success() {
        bail!("`rustup target add wasm32-wasip2` failed: run it yourself and try again");
    }
    Ok(())
}

/// Builds the plugin crate at `crate_dir` in release mode for
/// `wasm32-wasip2` into `target_dir` (cargo's choice when `None`: the
/// crate's `target/`, or `CARGO_TARGET_DIR`), and returns the component
/// cargo wrote.
pub fn build(crate_dir: &Path, target_dir: Option<&Path>) -> Result<PathBuf> {
    ensure_target()?;
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(crate_dir.join("Cargo.toml"));
    if let Some(dir) = target_dir {
        command.arg("--target-dir").arg(dir);
    }
    let mut child = command
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo")?;
    let mut component = None;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line.context("reading cargo's output")?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] != "compiler-artifact" {
                continue;
            }
            let cdylib = msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
            if !cdylib {
                continue;
            }
            if let Some(files) = msg["filenames"].as_array() {
                for f in files.iter().filter_map(|f| f.as_str()) {
                    if f.ends_with(".wasm") {
                        component = Some(PathBuf::from(f));
                    }
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "building `{}` failed: cargo's errors are above",
            crate_dir.display()
        );
    }
    component.with_context(|| {
        format!(
            "cargo built `{}` but wrote no component: its Cargo.toml needs `[lib] crate-type = [\"cdylib\"]`",
            crate_dir.display()
        )
    })
}
