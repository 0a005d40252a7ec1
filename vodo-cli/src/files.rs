//! Reading the files a command is given without trusting their size: the
//! limit is checked against the file's length before anything is read, and
//! the read itself stops one byte past it (a file that grows meanwhile, or a
//! pipe, cannot make it read more).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The bytes of `path`, refused when they are more than `max`; `what` names
/// the file in the error ("the package", "the component").
pub fn read_at_most(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?
        .len();
    if len > max {
        bail!(too_big(what, path, len, max));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(too_big(what, path, bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn too_big(what: &str, path: &Path, len: u64, max: u64) -> String {
    format!(
        "{what} `{}` is {} ({len} bytes); the marketplace takes at most {} per package: build with `--release`, `opt-level = \"s\"` and `strip = true` (the templates' Cargo.toml does), and keep large assets out of the package",
        path.display(),
        human(len),
        human(max)
    )
}

/// Every file under `root` (following no links) whose path `keep` takes,
/// with its metadata; folders `keep` refuses are not entered. Unreadable
/// entries are skipped.
pub fn walk(
    root: &Path,
    keep: impl Fn(&Path) -> bool,
) -> Vec<(std::path::PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !keep(&path) {
                continue;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => out.push((path, m)),
                Err(_) => {}
            }
        }
    }
    out
}

/// `20 MiB`, `2.0 GiB`, `512 bytes`.
pub fn human(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("big.vpkg");
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        // Sparse: 2 GiB long, no disk and no time to make.
        file.set_len(2 << 30).unwrap_or_else(|e| panic!("{e}"));
        let start = std::time::Instant::now();
        let err = read_at_most(&path, 20 << 20, "the package")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(err.contains("is 2.0 GiB (2147483648 bytes)"), "{err}");
        assert!(err.contains("at most 20.0 MiB"), "{err}");
        std::fs::write(&path, b"small").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_at_most(&path, 5, "x").unwrap_or_else(|e| panic!("{e}")),
            b"small"
        );
        assert!(read_at_most(&path, 4, "x").is_err());
        assert_eq!(human(512), "512 bytes");
    }
}
