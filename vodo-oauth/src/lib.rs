//! The Vodo OAuth 2.1 provider (not built yet; tracked by the OAuth issue).
//!
//! This crate will own the authorization server (code flow with PKCE, refresh
//! token rotation, client credentials, revocation, introspection, metadata),
//! consent records per installation and app, partner app management, and
//! webhooks signed per the Standard Webhooks spec and delivered from a durable
//! outbox. Its server logic is framework-independent, with an axum adapter.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
