//! A plugin's own folder: opened once as a `cap_std::fs::Dir`, so that no
//! path, `..` or symlink can lead outside it, with the manifest's quota and
//! file types enforced on every write.
//!
//! A write checks the folder's usage and writes under one lock: a mutex for
//! the calls of this process and an advisory file lock (`flock`) beside the
//! folder for other processes over the same root, so concurrent calls of one
//! installation cannot together pass the quota. Folders count as entries
//! against [`MAX_FILES`], and a delete removes the folders it leaves empty.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;
use parking_lot::Mutex;
use vodo_core::manifest::FileType;

use crate::SandboxViolation;

/// The most entries, files and folders together, a plugin folder may hold,
/// whatever their size.
pub const MAX_FILES: usize = 10_000;

/// A plugin's storage folder.
#[derive(Debug)]
pub(crate) struct Storage {
    dir: Dir,
    quota: u64,
    types: Vec<FileType>,
    read_only: bool,
    /// The most entries, files and folders; [`MAX_FILES`].
    max_entries: usize,
    /// The lock file beside the folder; the mutex orders this process's
    /// calls, the file lock other processes'.
    lock: Mutex<File>,
}

/// What a storage operation can end in besides success.
pub(crate) enum StorageError {
    /// The folder is read-only: the scope a write would need, for the plugin.
    Denied(String),
    /// The plugin broke a rule: stop it.
    Violation(SandboxViolation),
    /// An ordinary failure to report to the plugin.
    NotFound(String),
    /// Another I/O failure.
    Io(String),
}

/// The folder of `plugin` in `installation` under `root`; names are encoded
/// so that no id can form a path of its own.
pub(crate) fn folder(root: &Path, installation: &str, plugin: &str) -> PathBuf {
    installation_folder(root, installation).join(encode(plugin))
}

/// The lock file of a plugin's folder: beside it, out of the plugin's reach
/// (an encoded name never contains `.`).
pub(crate) fn lock_file(root: &Path, installation: &str, plugin: &str) -> PathBuf {
    installation_folder(root, installation).join(format!("{}.lock", encode(plugin)))
}

/// The folder that holds the plugin folders of one installation.
pub(crate) fn installation_folder(root: &Path, installation: &str) -> PathBuf {
    root.join(encode(installation))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

impl Storage {
    /// Opens (creating) the folder at `path`, locked through `lock`.
    pub(crate) fn open(
        path: &Path,
        lock: &Path,
        quota: u64,
        types: Vec<FileType>,
        read_only: bool,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock)?;
        Ok(Self {
            dir,
            quota,
            types,
            read_only,
            max_entries: MAX_FILES,
            lock: Mutex::new(lock),
        })
    }

    /// Runs `f` holding the folder's lock, in this process and across processes.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
        let file = self.lock.lock();
        file.lock()
            .map_err(|e| StorageError::Io(format!("cannot lock the folder: {e}")))?;
        let out = f();
        let _ = file.unlock();
        out
    }

    fn deny(path: &str, reason: impl Into<String>) -> StorageError {
        StorageError::Violation(SandboxViolation::Filesystem {
            path: path.chars().take(200).collect(),
            reason: reason.into(),
        })
    }

    /// Checks a plugin-supplied path before cap-std sees it, so the refusal says why.
    fn check(path: &str) -> Result<&Path, StorageError> {
        if path.is_empty() || path.len() > 512 {
            return Err(Self::deny(path, "a path is 1 to 512 bytes long"));
        }
        let p = Path::new(path);
        for c in p.components() {
            match c {
                Component::Normal(_) => {}
                Component::ParentDir => {
                    return Err(Self::deny(path, "`..` leads outside the plugin's folder"));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(Self::deny(
                        path,
                        "absolute paths lead outside the plugin's folder",
                    ));
                }
                Component::CurDir => {}
            }
        }
        if path.contains('\0') {
            return Err(Self::deny(path, "paths contain no NUL bytes"));
        }
        Ok(p)
    }

    fn map_io(path: &str, e: io::Error) -> StorageError {
        match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound(format!("no file `{path}`")),
            // cap-std refuses escapes (through `..` or a symlink) with PermissionDenied.
            io::ErrorKind::PermissionDenied => {
                Self::deny(path, format!("leads outside the plugin's folder ({e})"))
            }
            _ => StorageError::Io(e.to_string()),
        }
    }

    pub(crate) fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, StorageError> {
        let p = Self::check(path)?;
        let meta = self.dir.metadata(p).map_err(|e| Self::map_io(path, e))?;
        if meta.len() > max {
            return Err(StorageError::Violation(SandboxViolation::Output {
                what: "file data read",
                limit: max,
            }));
        }
        self.dir.read(p).map_err(|e| Self::map_io(path, e))
    }

    fn allowed_type(&self, path: &Path) -> bool {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let mime = mime_of(&ext);
        self.types.iter().any(|t| match t {
            FileType::Extension(e) => *e == ext,
            FileType::Mime(m) => mime == Some(m.as_str()),
            FileType::MimeFamily(f) => {
                mime.is_some_and(|m| m.split('/').next() == Some(f.as_str()))
            }
        })
    }

    /// Calls `f` with the path and size of every file in the folder,
    /// subfolders included; returns the number of subfolders.
    fn walk(&self, mut f: impl FnMut(PathBuf, u64)) -> Result<usize, StorageError> {
        let io = |e: io::Error| StorageError::Io(e.to_string());
        let mut stack = vec![PathBuf::new()];
        let mut folders = 0;
        while let Some(sub) = stack.pop() {
            let entries = if sub.as_os_str().is_empty() {
                self.dir.entries()
            } else {
                self.dir.read_dir(&sub)
            }
            .map_err(io)?;
            for entry in entries {
                let entry = entry.map_err(io)?;
                let meta = entry.metadata().map_err(io)?;
                let path = sub.join(entry.file_name());
                if meta.is_dir() {
                    folders += 1;
                    stack.push(path);
                } else {
                    f(path, meta.len());
                }
            }
        }
        Ok(folders)
    }

    /// Bytes used by every file in the folder, and the number of entries
    /// (files and folders).
    fn usage(&self) -> Result<(u64, usize), StorageError> {
        let (mut total, mut files) = (0u64, 0usize);
        let folders = self.walk(|_, len| {
            total = total.saturating_add(len);
            files += 1;
        })?;
        Ok((total, files + folders))
    }

    /// The folders of `path` that do not exist yet, outermost first.
    fn missing_parents<'p>(&self, path: &'p Path) -> Vec<&'p Path> {
        let mut missing: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty() && !self.dir.exists(a))
            .collect();
        missing.reverse();
        missing
    }

    /// Removes `path`'s parent folders that are empty, innermost first.
    fn remove_empty_parents(&self, path: &Path) {
        for parent in path.ancestors().skip(1) {
            // `remove_dir` refuses a folder that is not empty: that ends it.
            if parent.as_os_str().is_empty() || self.dir.remove_dir(parent).is_err() {
                break;
            }
        }
    }

    pub(crate) fn write(&self, path: &str, data: &[u8]) -> Result<(), StorageError> {
        let p = Self::check(path)?;
        if self.read_only {
            return Err(StorageError::Denied("storage:write".into()));
        }
        if !self.allowed_type(p) {
            let allowed: Vec<String> = self.types.iter().map(ToString::to_string).collect();
            return Err(Self::deny(
                path,
                format!(
                    "this file type is not in the manifest's `allowed_types` ({})",
                    allowed.join(", ")
                ),
            ));
        }
        self.locked(|| {
            let (used, entries) = self.usage()?;
            let existing = self.dir.metadata(p).ok();
            if existing.as_ref().is_some_and(|m| m.is_dir()) {
                return Err(Self::deny(path, "this path is a folder"));
            }
            let existing_len = existing.as_ref().map_or(0, |m| m.len());
            let requested = (used - existing_len.min(used)).saturating_add(data.len() as u64);
            if requested > self.quota {
                return Err(StorageError::Violation(SandboxViolation::StorageQuota {
                    requested,
                    quota: self.quota,
                }));
            }
            let missing = self.missing_parents(p);
            let new_entries = missing.len() + usize::from(existing.is_none());
            if entries + new_entries > self.max_entries {
                return Err(StorageError::Violation(SandboxViolation::StorageEntries {
                    limit: self.max_entries,
                }));
            }
            for folder in &missing {
                if let Err(e) = self.dir.create_dir(folder) {
                    self.remove_empty_parents(p);
                    return Err(Self::map_io(path, e));
                }
            }
            self.dir.write(p, data).map_err(|e| {
                self.remove_empty_parents(p);
                Self::map_io(path, e)
            })
        })
    }

    pub(crate) fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let p = Self::check(path)?;
        if self.read_only {
            return Err(StorageError::Denied("storage:write".into()));
        }
        self.locked(|| match self.dir.remove_file(p) {
            Ok(()) => {
                self.remove_empty_parents(p);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Self::map_io(path, e)),
        })
    }

    pub(crate) fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let _folders = self.walk(|path, _| out.push(path.to_string_lossy().into_owned()))?;
        out.sort();
        Ok(out)
    }
}

/// The media type of a file extension, for the types plugins commonly store.
fn mime_of(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "json" => "application/json",
        "csv" => "text/csv",
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "bin" => "application/octet-stream",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(dir: &Path, quota: u64, max_entries: usize) -> Storage {
        let mut s = Storage::open(
            &dir.join("plugin"),
            &dir.join("plugin.lock"),
            quota,
            vec![FileType::Extension("json".into())],
            false,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        s.max_entries = max_entries;
        s
    }

    fn violation<T: std::fmt::Debug>(r: Result<T, StorageError>) -> SandboxViolation {
        match r {
            Err(StorageError::Violation(v)) => v,
            Err(StorageError::Io(m) | StorageError::NotFound(m) | StorageError::Denied(m)) => {
                unreachable!("not a violation: {m}")
            }
            Ok(v) => unreachable!("accepted: {v:?}"),
        }
    }

    #[test]
    fn folders_count_as_entries_and_the_refusal_names_that_limit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let s = storage(dir.path(), 1 << 20, 4);
        assert!(s.write("a/b/one.json", b"{}").is_ok()); // a, a/b, one.json
        assert!(s.write("a/b/two.json", b"{}").is_ok()); // four entries
        let v = violation(s.write("c/three.json", b"{}"));
        assert_eq!(v, SandboxViolation::StorageEntries { limit: 4 });
        assert!(v.to_string().contains("at most 4 files and folders"), "{v}");
        // Overwriting needs no new entry.
        assert!(s.write("a/b/two.json", b"[]").is_ok());
    }

    #[test]
    fn deleting_a_file_removes_the_folders_it_leaves_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let s = storage(dir.path(), 1000, MAX_FILES);
        let deep = format!("{}x.json", "d/".repeat(100));
        for _ in 0..50 {
            assert!(s.write(&deep, b"{}").is_ok());
            assert!(matches!(s.delete(&deep), Ok(true)));
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("plugin"))
            .unwrap_or_else(|e| unreachable!("{e}"))
            .collect();
        assert!(left.is_empty(), "{} entries left", left.len());
        // A folder that still holds a file stays.
        assert!(s.write("keep/a.json", b"{}").is_ok());
        assert!(s.write("keep/b.json", b"{}").is_ok());
        assert!(matches!(s.delete("keep/a.json"), Ok(true)));
        assert_eq!(s.list().ok(), Some(vec!["keep/b.json".to_owned()]));
    }

    /// Eight writers of 900 bytes each, started at once through `handles`
    /// in turn; how many writes landed.
    fn race_eight_writers(handles: &[&Storage]) -> usize {
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..8)
                .map(|i| {
                    let (s, barrier) = (handles[i % handles.len()], &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        s.write(&format!("f{i}.json"), &[b'z'; 900]).is_ok()
                    })
                })
                .collect();
            writers
                .into_iter()
                .map(|h| h.join())
                .filter(|r| matches!(r, Ok(true)))
                .count()
        })
    }

    #[test]
    fn concurrent_writes_cannot_pass_the_quota_together() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let s = storage(dir.path(), 1000, MAX_FILES);
        assert_eq!(race_eight_writers(&[&s]), 1);
        assert_eq!(s.usage().ok().map(|(bytes, _)| bytes), Some(900));
    }

    #[test]
    fn two_handles_on_one_folder_share_its_lock() {
        // As two processes would: separate opens of the same folder.
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let a = storage(dir.path(), 1000, MAX_FILES);
        let b = storage(dir.path(), 1000, MAX_FILES);
        assert_eq!(race_eight_writers(&[&a, &b]), 1);
    }
}
