//! Compiled components, cached on disk by content hash.
//!
//! Compiling a component takes tens of milliseconds to seconds; loading its
//! compiled form takes microseconds. The cache file is named by the SHA-256
//! of the component and a hash of the engine's configuration, so a changed
//! component or a different wasmtime build never loads a stale artifact.

use std::io::Write;
use std::path::Path;

pub(crate) use vodo_core::digest::{hex, sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) enum CacheError {
    Compile(String),
    /// Only the digest was given, and no compiled form of it is here.
    NotCompiled([u8; 32]),
    Io(String, std::io::Error),
}

/// Loads the compiled form of the component whose SHA-256 is `hash` from
/// `dir` (made by an engine whose [`compatibility_hash`] is `compatibility`),
/// or compiles `wasm` (and stores it there).
///
/// [`compatibility_hash`]: crate::engine::compatibility_hash
pub(crate) fn load(
    engine: &Engine,
    dir: Option<&Path>,
    compatibility: u64,
    hash: &[u8; 32],
    wasm: Option<&[u8]>,
) -> Result<Component, CacheError> {
    let Some(dir) = dir else {
        let wasm = wasm.ok_or(CacheError::NotCompiled(*hash))?;
        return Component::new(engine, wasm).map_err(|e| CacheError::Compile(format!("{e:#}")));
    };
    let path = dir.join(format!("{}-{compatibility:016x}.cwasm", hex(hash)));
    if path.is_file() {
        // SAFETY: the file is in the host's own cache folder, named by the
        // hash of the component it was compiled from and of this engine's
        // configuration, and written only by `store` below from
        // `Engine::precompile_component`. wasmtime also checks that it was
        // produced by a compatible engine and refuses it otherwise; such a
        // refusal falls through to a fresh compile.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached component")
            }
        }
    }
    let wasm = wasm.ok_or(CacheError::NotCompiled(*hash))?;
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| CacheError::Compile(format!("{e:#}")))?;
    store(dir, &path, &compiled)?;
    // SAFETY: `compiled` was produced just now by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) };
    component.map_err(|e| CacheError::Compile(format!("{e:#}")))
}

/// Writes atomically: a reader never sees half a file.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let err = |e| CacheError::Io(path.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_data().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
