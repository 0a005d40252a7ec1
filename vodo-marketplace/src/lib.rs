//! The Vodo marketplace: where partners submit plugins, reviewers approve
//! them, and hosts install and update them safely.
//!
//! - [`package`]: the package format (manifest, component, readme, samples, checksums);
//! - [`workflow`]: the submission workflow, with roles and a recorded history;
//! - [`submissions`]: the submission desk over a store (memory or SQLite),
//!   which pins each package and runs the automated review on every submission;
//! - [`review`]: the automated review pipeline, which runs the plugin through
//!   the core `Sandbox` trait;
//! - [`index`]: signed, TUF-shaped metadata over content-addressed packages,
//!   and the client that refuses rollback, freeze, swapped packages and
//!   untrusted keys;
//! - [`installer`]: channels, automatic updates by policy, rollback, yanks;
//! - [`pricing`]: pricing tiers in minor units and an exact revenue share;
//! - [`catalog`]: listings, search with filters and stable paging, ratings
//!   ranked by a Bayesian average, reviews from real users, analytics.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod index;
pub mod installer;
pub mod package;
pub mod pricing;
pub mod review;
pub mod submissions;
pub mod workflow;

/// Errors of the marketplace's own operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was invalid; the message says what to pass instead.
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The signed index refused something.
    #[error(transparent)]
    Index(#[from] index::IndexError),
    /// The submission workflow refused a move.
    #[error(transparent)]
    Workflow(#[from] workflow::WorkflowError),
    /// Someone else changed the thing first, or it already exists; reload and retry.
    #[error("{0}")]
    Conflict(String),
    /// Stored data does not match its digest: it was changed behind the store's back.
    #[error("{0}")]
    Tampered(String),
    /// A store (SQLite, a folder, or a host's own implementation) failed.
    #[error("{what}: {source}")]
    Storage {
        /// Which store, and what it was doing.
        what: String,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A store failure: `what` says which store and what it was doing.
    pub(crate) fn storage(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Storage {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use vodo_core::digest::{hex, sha256};
