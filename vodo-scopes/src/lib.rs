//! The scope grammar of the Vodo plugin platform.
//!
//! A plugin declares in its manifest what it needs; each need becomes a
//! [`PluginScope`] such as `entities:write:product` or
//! `hooks:subscribe:order.*`. The installer's consent is a [`ScopeSet`],
//! compiled once so that every later check (thousands per second inside the
//! sandbox) is a bit test or one hash lookup and never allocates. When a
//! plugin is upgraded, [`ConsentDiff`] says which of the new version's scopes
//! the installer must approve again.
//!
//! This crate does no I/O; it depends only on `hashbrown` (its compiled sets)
//! and, optionally, `serde`.
//!
//! # Grammar
//!
//! | scope | meaning |
//! |---|---|
//! | `entities:read`, `entities:read:{entity}` | read records of every kind, or of one kind |
//! | `entities:write`, `entities:write:{entity}` | create, change and delete records (implies read) |
//! | `hooks:subscribe`, `hooks:subscribe:{pattern}` | receive hook events (`order.*`, `*.created`) |
//! | `hooks:trigger`, `hooks:trigger:{name}` | emit hook events |
//! | `api:access`, `api:access:{resource}` | call the platform API (every resource, or one such as `products`), within the manifest's rate limit |
//! | `users:read`, `users:write` | the host's user records |
//! | `settings:read`, `settings:write` | the plugin's settings in this installation |
//! | `storage:read`, `storage:write` | files in the plugin's own folder |
//! | `network:outbound:{host}` | outbound HTTP to `host`, `*.domain` or `host:port` |
//!
//! Entity and resource names are `a-z`, `0-9`, `_`; hook names are `.`-separated segments
//! of the same; see [`HookPattern`] for wildcards and [`HostRule`] for hosts.
//! The implication rules are documented on [`ScopeSet`].
//!
//! ```
//! use vodo_scopes::{PluginScope, ScopeSet};
//!
//! let granted: ScopeSet = ["entities:write:order", "network:outbound:*.stripe.com"]
//!     .iter()
//!     .map(|s| s.parse::<PluginScope>())
//!     .collect::<Result<_, _>>()?;
//! assert!(granted.can_read_entity("order"));
//! assert!(granted.can_connect("api.stripe.com", 443));
//! assert!(!granted.can_connect("stripe.com.evil.example", 443));
//! # Ok::<(), vodo_scopes::ScopeError>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod diff;
mod error;
mod scope;
mod set;

pub use diff::ConsentDiff;
pub use error::ScopeError;
pub use scope::{
    Entity, HookName, HookPattern, HostRule, MAX_ENTITY_LEN, MAX_HOOK_LEN, MAX_HOOK_SEGMENTS,
    MAX_HOST_LEN, MAX_RESOURCE_LEN, MAX_SCOPE_LEN, PluginScope, Resource,
};
pub use set::{Capability, ScopeSet};

/// The candidate closest to `input` by edit distance, if it is close enough
/// to be a typo (at most a third of the candidate's length in edits).
///
/// Used for "did you mean" hints on scopes and manifest keys.
///
/// ```
/// assert_eq!(vodo_scopes::did_you_mean("permisions", &["name", "permissions"]), Some("permissions"));
/// assert_eq!(vodo_scopes::did_you_mean("colour", &["name", "permissions"]), None);
/// ```
pub fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if input.len() > 2 * MAX_SCOPE_LEN {
        return None;
    }
    candidates
        .iter()
        .map(|c| (scope::edit_distance(input, c), *c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .map(|(_, c)| c)
}
