//! `vodo plugin:package`: a plugin folder into the package the marketplace takes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vodo_core::Manifest;
use vodo_marketplace::package::Package;
use vodo_marketplace::review::Policy;

/// The header of a WebAssembly component (not a core module).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
/// The header of a core WebAssembly module.
const MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/// What was written.
pub struct Packaged {
    /// The package file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: usize,
    /// Its SHA-256, hex: the digest reviewers and the index will pin.
    pub sha256: String,
    /// The plugin.
    pub slug: String,
    /// Its version.
    pub version: String,
}

/// Packages the plugin in `dir`: its `plugin.json`, the component (`wasm`,
/// or the manifest's `entry` in `dir`), `README.md` if there is one, and the
/// sample events (`samples`, or `samples.json` in `dir` if there is one),
/// into `out` (default `{slug}-{version}.vpkg` in the current folder).
pub fn package(
    dir: &Path,
    wasm: Option<&Path>,
    samples: Option<&Path>,
    out: Option<&Path>,
) -> Result<Packaged> {
    let manifest_file = if dir.is_dir() {
        dir.join("plugin.json")
    } else {
        bail!(
            "`{}` is not a plugin folder: pass the folder that holds plugin.json",
            dir.display()
        );
    };
    let manifest_text = std::fs::read_to_string(&manifest_file)
        .with_context(|| format!("cannot read `{}`", manifest_file.display()))?;
    let manifest = Manifest::parse(&manifest_text).map_err(|e| {
        let problems: Vec<String> = e.problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "`{}` is not a valid plugin manifest (run `vodo plugin:validate`):\n{}",
            manifest_file.display(),
            problems.join("\n")
        )
    })?;

    let component_path = wasm.map_or_else(|| dir.join(&manifest.entry), Path::to_path_buf);
    let max = Policy::default().max_package_bytes;
    if !component_path.is_file() {
        bail!(
            "there is no component at `{}`: run `vodo plugin:build`, which builds it and writes the package (or pass one with --wasm)",
            component_path.display()
        );
    }
    let component = crate::files::read_at_most(&component_path, max, "the component")?;
    match component.get(..8) {
        Some(h) if h == COMPONENT_HEADER => {}
        Some(h) if h == MODULE_HEADER => bail!(
            "`{}` is a core WebAssembly module, not a component: build for `wasm32-wasip2` (which makes components), not `wasm32-unknown-unknown` or `wasm32-wasip1`",
            component_path.display()
        ),
        _ => bail!(
            "`{}` is not a WebAssembly component",
            component_path.display()
        ),
    }

    let readme_path = dir.join("README.md");
    let readme = if readme_path.is_file() {
        String::from_utf8(crate::files::read_at_most(&readme_path, max, "README.md")?)
            .with_context(|| format!("`{}` is not UTF-8", readme_path.display()))?
    } else {
        String::new()
    };

    let samples_path = samples
        .map(Path::to_path_buf)
        .or_else(|| Some(dir.join("samples.json")).filter(|p| p.is_file()));
    let samples = match &samples_path {
        Some(p) => read_samples(p, max)?,
        None => Vec::new(),
    };

    let bytes = Package {
        manifest: manifest_text,
        readme,
        samples,
        component,
    }
    .to_bytes();
    if bytes.len() as u64 > max {
        bail!(
            "the package is {} bytes; the marketplace takes at most {max}: build with `--release` and `opt-level = \"s\"`, and strip debug info",
            bytes.len()
        );
    }
    let slug = manifest.slug.as_str().to_owned();
    let version = manifest.version.to_string();
    let path = out.map_or_else(
        || PathBuf::from(format!("{slug}-{version}.vpkg")),
        Path::to_path_buf,
    );
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(Packaged {
        path,
        bytes: bytes.len(),
        sha256: vodo_core::digest::hex(&vodo_core::digest::sha256(&bytes)),
        slug,
        version,
    })
}

/// Sample events as the package keeps them: (event, payload); the
/// settings and records a sample may set are for `vodo plugin:test` only.
fn read_samples(path: &Path, max: u64) -> Result<Vec<(String, String)>> {
    Ok(crate::plugin_test::samples(path, max)?
        .into_iter()
        .map(|s| (s.event, s.payload))
        .collect())
}
