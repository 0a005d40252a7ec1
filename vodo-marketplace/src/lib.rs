//! The Vodo marketplace: where partners submit plugins, reviewers approve
//! them, and hosts install and update them safely.
//!
//! - [`package`]: the package format (manifest, component, readme, samples, checksums);
//! - [`workflow`]: the submission workflow, with roles and a recorded history;
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
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) use vodo_core::digest::{hex, sha256};
