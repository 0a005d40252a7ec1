//! The OAuth 2.1 authorization server of a Vodo host, partner apps and
//! signed webhooks.
//!
//! Partner apps integrate with a host the way apps integrate with Salla: a
//! merchant installs the app and consents to its scopes, the app gets
//! tokens, and the platform sends it signed webhooks. [`AuthServer`] is the
//! authorization server; its logic is framework-independent
//! ([`HttpRequest`] in, [`HttpResponse`] out), with an axum `Router` behind
//! the `axum` feature. See [`server`] for the protocol profile it follows.
//!
//! Stores exist in memory ([`MemoryStore`]) and in SQLite ([`SqliteStore`])
//! and pass one conformance suite (feature `conformance`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod crypto;
mod error;
mod http;
pub mod model;
pub mod server;
mod sqlite;
mod store;
pub mod webhooks;

pub use crypto::{
    ACCESS_PREFIX, CODE_PREFIX, DEVICE_PREFIX, REFRESH_PREFIX, SECRET_PREFIX, pkce_challenge,
    valid_verifier,
};
pub use error::{Error, ErrorCode, OAuthError, Result};
pub use http::{HttpRequest, HttpResponse};
pub use server::{
    AccessInfo, AuthServer, AuthServerConfig, ClientSecret, DEVICE_GRANT, Session, redirect_matches,
};
pub use sqlite::SqliteStore;
pub use store::{MemoryStore, OAuthStore, Redemption, poll_step};
