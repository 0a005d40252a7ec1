//! [`ServerError`]: why a platform operation failed, and the problem it
//! answers with.

use http::StatusCode;

use crate::Problem;

/// Why a platform operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server's own database failed.
    #[error("the server's database failed: {detail}")]
    Store {
        /// What failed.
        detail: String,
    },
    /// A component of the host failed (grants, keys, audit).
    #[error(transparent)]
    Core(#[from] vodo_core::Error),
    /// A manifest did not validate.
    #[error(transparent)]
    Manifest(#[from] vodo_core::ManifestError),
    /// The OAuth provider or the webhook outbox refused or failed.
    #[error(transparent)]
    OAuth(#[from] vodo_oauth::Error),
    /// The sandbox refused or failed to load a plugin.
    #[error(transparent)]
    Load(#[from] vodo_sandbox::LoadError),
    /// Something asked for does not exist.
    #[error("{what} was not found")]
    NotFound {
        /// What was asked for, for people.
        what: String,
    },
    /// The request is not valid; `detail` says what to change.
    #[error("{detail}")]
    Invalid {
        /// What is wrong and what to do.
        detail: String,
    },
    /// The account's role may not do this.
    #[error("{detail}")]
    Forbidden {
        /// Who tried what, and who may.
        detail: String,
    },
    /// A task on the blocking pool did not finish (it panicked, or the
    /// runtime is shutting down).
    #[error("a background task did not finish: {detail}")]
    Interrupted {
        /// What happened.
        detail: String,
    },
    /// The signed index refused a file: metadata or a package that does
    /// not verify (changed on disk, expired, rolled back).
    #[error("the signed index refused it: {0}")]
    Index(vodo_marketplace::index::IndexError),
    /// A file of the data folder could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What happened.
        source: std::io::Error,
    },
}

impl ServerError {
    pub(crate) fn store(e: rusqlite::Error) -> Self {
        Self::Store {
            detail: e.to_string(),
        }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid {
            detail: detail.into(),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// The problem this error answers a request with. Server faults are
    /// logged and answered without their details.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Forbidden { .. } => Problem::new(StatusCode::FORBIDDEN, "role", self.to_string()),
            Self::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", self.to_string())
            }
            Self::Invalid { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                self.to_string(),
            ),
            Self::Manifest(e) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_manifest",
                e.to_string(),
            ),
            Self::Load(e) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_refused",
                e.to_string(),
            ),
            Self::Index(vodo_marketplace::index::IndexError::UnknownTarget(what)) => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("`{what}` is not in the signed index"),
            ),
            Self::Index(e) => {
                tracing::error!(error = %e, "the signed index refused a file");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "index_refused",
                    format!("the signed index refused it, so nothing was installed: {e}"),
                )
            }
            Self::OAuth(vodo_oauth::Error::NotFound(what)) => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", what.clone())
            }
            Self::OAuth(vodo_oauth::Error::Invalid(why)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why.clone())
            }
            Self::Core(vodo_core::Error::NotFound(what)) => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} was not found"),
            ),
            Self::Core(e @ (vodo_core::Error::Invalid(_) | vodo_core::Error::Manifest(_))) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "a platform operation failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the server could not do this; the cause is in its log",
                )
            }
        }
    }
}
