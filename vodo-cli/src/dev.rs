//! `vodo serve --plugins DIR`: the plugins a developer is writing, built
//! from their folders and loaded into the demo installation beside the
//! seeded data, then rebuilt and reloaded when their source, manifest or
//! component changes. A rebuild that fails leaves the previous version
//! serving and prints cargo's errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use vodo_core::{Consent, InstallationId, Manifest};
use vodo_server::Platform;

/// How long the folder must be quiet before a change is rebuilt: an
/// editor's save, or `cargo`'s own writes, come as several events.
const QUIET: Duration = Duration::from_millis(400);

/// The plugin folders of `dir`: `dir` itself when it holds a plugin.json,
/// else each folder in it that does.
pub fn folders(dir: &Path) -> Result<Vec<PathBuf>> {
    // Absolute, as the watcher reports paths.
    let dir = &std::fs::canonicalize(dir)
        .with_context(|| format!("cannot read --plugins `{}`", dir.display()))?;
    if dir.join("plugin.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --plugins `{}`", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("plugin.json").is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "`{}` holds no plugin: pass a plugin folder (with plugin.json) or a folder of them; `vodo plugin:create` makes one",
            dir.display()
        );
    }
    Ok(out)
}

/// Builds (when the folder is a crate) or reads the component of the
/// plugin in `dir` and loads it into `installation`, replacing the version
/// running there. Returns the manifest it loaded.
pub fn load(platform: &Platform, installation: &InstallationId, dir: &Path) -> Result<Manifest> {
    let manifest = Manifest::load(dir).map_err(|e| {
        anyhow!(
            "`{}`: {e} (run `vodo plugin:validate` there)",
            dir.join("plugin.json").display()
        )
    })?;
    let component = if dir.join("Cargo.toml").is_file() {
        crate::build::build(dir, None)?
    } else {
        dir.join(&manifest.entry)
    };
    let max = vodo_marketplace::review::Policy::default().max_package_bytes;
    let wasm = crate::files::read_at_most(&component, max, "the component")?;
    // The seeded installation keeps its name; one that is missing is made.
    platform
        .store
        .ensure_installation(installation)
        .map_err(|e| anyhow!("{e}"))?;
    platform
        .sandbox
        .install(
            installation,
            &manifest,
            wasm.as_slice(),
            &Consent::all(&manifest, "vodo serve --plugins"),
            platform.config().limits.clone(),
        )
        .map_err(|e| anyhow!("the sandbox refused `{}`: {e}", manifest.slug))?;
    Ok(manifest)
}

/// Whether a change at `path` in the plugin folder `dir` is one to rebuild
/// for: not cargo's output, packages, or version control.
fn matters(dir: &Path, path: &Path) -> bool {
    let Ok(rest) = path.strip_prefix(dir) else {
        return false;
    };
    let first = rest
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str());
    if matches!(first, Some("target" | ".git" | ".vodo")) {
        return false;
    }
    !path
        .extension()
        .is_some_and(|e| e == "vpkg" || e == "lock" || e == "swp")
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with('~') || n.starts_with(".#"))
}

/// What a plugin folder's files are now: each file that [`matters`], with
/// its size and modification time. The watcher also reports reads (cargo
/// opening Cargo.toml, the loader reading plugin.json), so a rebuild waits
/// until this has changed.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out: Vec<_> = crate::files::walk(dir, |p| matters(dir, p))
        .into_iter()
        .map(|(path, m)| (path, m.len(), m.modified().ok()))
        .collect();
    out.sort();
    out
}

/// Watches `dirs` and reloads a plugin when its folder changes; the
/// watcher stops when the returned value is dropped.
pub fn watch(
    platform: Arc<Platform>,
    installation: InstallationId,
    dirs: Vec<PathBuf>,
) -> Result<Debouncer<RecommendedWatcher>> {
    let watched = dirs.clone();
    let mut seen: Vec<_> = dirs.iter().map(|d| fingerprint(d)).collect();
    let mut debouncer = new_debouncer(QUIET, move |events: DebounceEventResult| {
        let events = match events {
            Ok(e) => e,
            Err(e) => {
                eprintln!("the file watcher failed: {e}");
                return;
            }
        };
        for (dir, seen) in watched.iter().zip(seen.iter_mut()) {
            if !events.iter().any(|e| matters(dir, &e.path)) {
                continue;
            }
            let now = fingerprint(dir);
            // The first file written, added or removed, to name it.
            let Some(changed) = now
                .iter()
                .find(|f| !seen.contains(f))
                .or_else(|| seen.iter().find(|f| !now.contains(f)))
                .map(|f| f.0.clone())
            else {
                continue;
            };
            *seen = now;
            println!("{} changed: rebuilding ...", changed.display());
            match load(&platform, &installation, dir) {
                Ok(m) => println!("reloaded {} {} from {}", m.slug, m.version, dir.display()),
                Err(e) => println!(
                    "the rebuild of {} failed, the previous version keeps serving: {e:#}",
                    dir.display()
                ),
            }
        }
    })
    .context("cannot start the file watcher")?;
    // The folder itself for its files, and each subfolder but cargo's
    // output and version control, whose many folders would each take a
    // watch for nothing.
    for dir in &dirs {
        let mut watch = |path: &Path, mode| {
            debouncer
                .watcher()
                .watch(path, mode)
                .with_context(|| format!("cannot watch `{}`", path.display()))
        };
        watch(dir, RecursiveMode::NonRecursive)?;
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() && matters(dir, &path.join("x")) {
                watch(&path, RecursiveMode::Recursive)?;
            }
        }
    }
    Ok(debouncer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_manifests_and_components_matter() {
        let d = Path::new("/p");
        assert!(matters(d, Path::new("/p/src/lib.rs")));
        assert!(matters(d, Path::new("/p/plugin.json")));
        assert!(matters(d, Path::new("/p/plugin.wasm")));
        assert!(!matters(d, Path::new("/p/target/release/x.wasm")));
        assert!(!matters(d, Path::new("/p/p-0.1.0.vpkg")));
        assert!(!matters(d, Path::new("/p/Cargo.lock")));
        assert!(!matters(d, Path::new("/p/src/.lib.rs.swp")));
        assert!(!matters(d, Path::new("/elsewhere/src/lib.rs")));
    }
}
