//! Consent diffs: what an upgrade asks for that the installer has not yet granted.

use crate::{PluginScope, ScopeSet};

/// The difference between the scopes granted to version N of a plugin and
/// the scopes version N+1 requests.
///
/// Only [`added`](Self::added) needs the installer's consent again. A newly
/// requested scope that an existing grant already covers (asking for
/// `entities:read:product` while holding `entities:write`) is not new, and a
/// broader form of a granted scope (asking for `entities:read` while holding
/// `entities:read:product`) is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsentDiff {
    /// Requested scopes the current grant does not cover, sorted.
    pub added: Vec<PluginScope>,
    /// Granted scopes the new version no longer asks for, sorted. Hosts
    /// usually narrow the grant to the request on upgrade; no consent needed.
    pub dropped: Vec<PluginScope>,
}

impl ConsentDiff {
    /// Compares what is `granted` with what is now `requested`.
    ///
    /// ```
    /// use vodo_scopes::{ConsentDiff, ScopeSet, PluginScope};
    ///
    /// let parse = |v: &[&str]| -> ScopeSet { v.iter().map(|s| s.parse::<PluginScope>().unwrap()).collect() };
    /// let diff = ConsentDiff::between(
    ///     &parse(&["entities:write:product", "api:access"]),
    ///     &parse(&["entities:read:product", "entities:read:order", "api:access"]),
    /// );
    /// assert!(diff.needs_consent());
    /// assert_eq!(diff.added, vec!["entities:read:order".parse().unwrap()]);
    /// assert_eq!(diff.dropped, vec!["entities:write:product".parse().unwrap()]);
    /// ```
    pub fn between(granted: &ScopeSet, requested: &ScopeSet) -> Self {
        Self {
            added: requested
                .iter()
                .filter(|s| !granted.allows(s))
                .cloned()
                .collect(),
            dropped: granted
                .iter()
                .filter(|s| !requested.allows(s))
                .cloned()
                .collect(),
        }
    }

    /// Whether the installer must consent before the new version runs.
    pub fn needs_consent(&self) -> bool {
        !self.added.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scopes: &[&str]) -> ScopeSet {
        scopes
            .iter()
            .map(|s| s.parse::<PluginScope>().unwrap())
            .collect()
    }

    #[test]
    fn same_or_narrower_needs_no_consent() {
        let granted = set(&[
            "entities:write",
            "hooks:subscribe:order.*",
            "network:outbound:*.stripe.com",
        ]);
        let requested = set(&[
            "entities:read:product",
            "hooks:subscribe:order.created",
            "network:outbound:api.stripe.com:443",
        ]);
        let diff = ConsentDiff::between(&granted, &requested);
        assert!(!diff.needs_consent(), "{diff:?}");
        assert_eq!(diff.dropped.len(), 3);
    }

    #[test]
    fn broader_or_new_needs_consent() {
        let granted = set(&["entities:read:product", "hooks:subscribe:order.created"]);
        let requested = set(&["entities:read", "hooks:subscribe:order.*", "users:read"]);
        let diff = ConsentDiff::between(&granted, &requested);
        let added: Vec<String> = diff.added.iter().map(ToString::to_string).collect();
        assert_eq!(
            added,
            ["entities:read", "hooks:subscribe:order.*", "users:read"]
        );
    }

    #[test]
    fn identical_sets_are_empty_diff() {
        let s = set(&["api:access", "storage:write"]);
        assert_eq!(ConsentDiff::between(&s, &s), ConsentDiff::default());
    }
}
