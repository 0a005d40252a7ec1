//! A plugin's own folder: opened once as a `cap_std::fs::Dir`, so that no
//! path, `..` or symlink can lead outside it, with the manifest's quota and
//! file types enforced on every write.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;
use vodo_core::manifest::FileType;

use crate::SandboxViolation;

/// The most files a plugin folder may hold, whatever their size.
pub const MAX_FILES: usize = 10_000;

/// A plugin's storage folder.
#[derive(Debug)]
pub(crate) struct Storage {
    dir: Dir,
    quota: u64,
    types: Vec<FileType>,
    read_only: bool,
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
    pub(crate) fn open(
        path: &Path,
        quota: u64,
        types: Vec<FileType>,
        read_only: bool,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Self {
            dir,
            quota,
            types,
            read_only,
        })
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

    /// Calls `f` with the path and size of every file in the folder, subfolders included.
    fn walk(&self, mut f: impl FnMut(PathBuf, u64)) -> Result<(), StorageError> {
        let io = |e: io::Error| StorageError::Io(e.to_string());
        let mut stack = vec![PathBuf::new()];
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
                    stack.push(path);
                } else {
                    f(path, meta.len());
                }
            }
        }
        Ok(())
    }

    /// Bytes used by every file in the folder, and the number of files.
    fn usage(&self) -> Result<(u64, usize), StorageError> {
        let (mut total, mut files) = (0u64, 0usize);
        self.walk(|_, len| {
            total += len;
            files += 1;
        })?;
        Ok((total, files))
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
        let (used, files) = self.usage()?;
        let existing = self.dir.metadata(p).map(|m| m.len()).unwrap_or(0);
        let requested = used - existing.min(used) + data.len() as u64;
        if requested > self.quota {
            return Err(StorageError::Violation(SandboxViolation::StorageQuota {
                requested,
                quota: self.quota,
            }));
        }
        if existing == 0 && files >= MAX_FILES {
            return Err(StorageError::Violation(SandboxViolation::StorageQuota {
                requested,
                quota: self.quota,
            }));
        }
        if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.dir
                .create_dir_all(parent)
                .map_err(|e| Self::map_io(path, e))?;
        }
        self.dir.write(p, data).map_err(|e| Self::map_io(path, e))
    }

    pub(crate) fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let p = Self::check(path)?;
        if self.read_only {
            return Err(StorageError::Denied("storage:write".into()));
        }
        match self.dir.remove_file(p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Self::map_io(path, e)),
        }
    }

    pub(crate) fn list(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        self.walk(|path, _| out.push(path.to_string_lossy().into_owned()))?;
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
