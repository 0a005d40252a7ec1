//! The crate's error type.

use std::path::PathBuf;

use crate::keys::KeyError;
use crate::manifest::ManifestError;

/// Errors of `vodo-core`'s stores, manifest loading and audit trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest was refused; every problem is listed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An API key was refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A store (SQLite, or a host's own implementation) failed.
    #[error("store error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Reading or writing a file failed.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The audit trail does not verify: a record was changed, removed,
    /// reordered or inserted.
    #[error("audit trail `{}` is tampered at line {line}: {reason}", path.display())]
    Tampered {
        /// The audit file.
        path: PathBuf,
        /// The first line (1-based) that does not verify.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument was invalid; the message says what to pass instead.
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A new version of a plugin asks for scopes the installer has not
    /// consented to: show them and record the consent with an install.
    #[error("version {version} of `{plugin}` asks for {} that the installer has not consented to: show them `{}` and install with their consent", if scopes.len() == 1 { "a permission" } else { "permissions" }, scopes.join("`, `"))]
    ConsentRequired {
        /// The plugin.
        plugin: String,
        /// The new version.
        version: String,
        /// The scopes that need consent.
        scopes: Vec<String>,
    },
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
