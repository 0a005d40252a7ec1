//! The host vocabulary of Vodo and every host-facing trait, with reference
//! implementations.
//!
//! A host application links this crate to decide what third-party plugins
//! may do and to keep the record of what they did:
//!
//! - [`manifest`]: `plugin.json`, validated with every problem reported at
//!   once, mapped to the [`ScopeSet`](vodo_scopes::ScopeSet) and limits it requests;
//! - [`permissions`]: grants per (installation, plugin), checked as
//!   [`Decision`]s that fail closed, every denial audited;
//! - [`keys`]: API keys with a scannable format, stored only as an HMAC;
//! - [`rate`]: the [`RateLimiter`](rate::RateLimiter) trait and a GCRA
//!   reference with a hard bound on memory;
//! - [`audit`]: the audit trail, including an HMAC-chained file;
//! - [`health`]: the [`HealthTracker`](health::HealthTracker) trait, circuit
//!   breakers per installation, automatic disabling, alerts and fallbacks;
//! - [`runtime`]: the table of host interfaces and the `Sandbox` trait;
//! - [`Host`]: all of them wired as one plain struct of components.
//!
//! Every store exists in memory and in SQLite ([`SqliteStore`], bundled);
//! hosts that outgrow one machine implement the same traits over their own
//! database and run the suites in `conformance` (feature `conformance`).
//!
//! ```
//! use std::sync::Arc;
//! use vodo_core::{Consent, Decision, InstallationId, Manifest, MemoryRegistry, Permissions};
//! use vodo_core::audit::MemoryAudit;
//!
//! let manifest = Manifest::parse(r#"{
//!     "name": "Order Notifier", "slug": "order-notifier", "version": "1.0.0",
//!     "permissions": { "entities": ["read:order"], "hooks": ["subscribe:order.*"] }
//! }"#)?;
//!
//! let audit = Arc::new(MemoryAudit::new());
//! let permissions = Permissions::new(Arc::new(MemoryRegistry::new()), audit.clone());
//! let shop = InstallationId::new("shop-42");
//! permissions.install(&manifest, &shop, &Consent::all(&manifest, "owner@shop-42"))?;
//!
//! let read = "entities:read:order".parse()?;
//! let write = "entities:write:order".parse()?;
//! assert_eq!(permissions.check(&shop, &manifest.slug, &read), Decision::Allow);
//! assert!(!permissions.check(&shop, &manifest.slug, &write).is_allowed());
//! assert_eq!(audit.len(), 2); // the install and the denial
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod decision;
pub mod digest;
mod error;
pub mod health;
mod host;
mod ids;
pub mod keys;
pub mod manifest;
pub mod permissions;
pub mod rate;
pub mod runtime;
mod secret;
mod sqlite;
mod time;

pub use decision::{Decision, DenyReason};
pub use error::{Error, Result};
pub use host::{AccessError, Host};
pub use ids::{InstallationId, PluginId};
pub use manifest::{Manifest, ManifestError, Problem};
pub use permissions::{
    Consent, CurrentGrant, DenyAll, Grant, MemoryRegistry, PermissionRegistry, Permissions,
};
pub use secret::SecretKey;
pub use sqlite::{SqliteStore, open_sqlite};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
pub use vodo_scopes;

#[cfg(test)]
mod tests {
    #[test]
    fn memory_stores_pass_the_conformance_suites() {
        crate::conformance::permission_registry(&crate::MemoryRegistry::new());
        crate::conformance::rate_limiter(&crate::rate::MemoryRateLimiter::new());
        crate::conformance::api_key_store(&crate::keys::MemoryKeyStore::new());
        crate::conformance::api_key_store_races(&[&crate::keys::MemoryKeyStore::new()]);
        crate::conformance::audit_log(&crate::audit::MemoryAudit::new());
    }

    #[test]
    fn the_file_audit_passes_the_audit_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::audit::FileAudit::open(
            dir.path().join("audit.jsonl"),
            &crate::SecretKey::from_bytes([3; 32]),
            crate::audit::FileAuditOptions::default(),
        )
        .unwrap();
        crate::conformance::audit_log(&log);
    }
}
