//! The Vodo marketplace (not built yet; tracked by the marketplace issue).
//!
//! This crate will own the submission workflow, the automated review pipeline
//! (which runs a submission through the `Sandbox` trait of `vodo-core`),
//! ed25519-signed packages and a signed, versioned index that refuses
//! rollback and freeze attacks, the catalog (search, ratings, reviews,
//! analytics), channels, updates and rollback, and pricing with revenue share.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
