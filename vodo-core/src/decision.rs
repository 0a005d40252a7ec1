//! [`Decision`]: the answer to every permission question.

use std::fmt;

use vodo_scopes::PluginScope;

/// The outcome of a permission check. Exhaustive and fail-closed: anything
/// that is not an explicit `Allow` is a `Deny` with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a decision that is not looked at grants nothing"]
pub enum Decision {
    /// The request is covered by the grant.
    Allow,
    /// The request is refused.
    Deny {
        /// Why, for the audit trail and for a person.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether this is [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Why a request was denied. Deliberately not `#[non_exhaustive]`: code on
/// the authorization path must handle every reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DenyReason {
    /// The plugin is not installed (or no longer granted) in this installation.
    NotInstalled,
    /// The plugin is installed but disabled.
    Disabled,
    /// The grant does not cover the scope.
    MissingScope {
        /// The scope that was needed, as a string.
        scope: String,
    },
    /// The API key used does not cover the scope (the plugin's grant may).
    KeyScope {
        /// The scope that was needed, as a string.
        scope: String,
    },
    /// A rate limit was exceeded.
    RateLimited {
        /// When a retry can succeed, in milliseconds from now.
        retry_after_ms: u64,
    },
    /// The rate limiter tracks as many keys as it may and none of them is
    /// idle: a new key is refused rather than an old one forgotten.
    RateLimiterFull {
        /// The limiter's bound.
        max_keys: u64,
    },
    /// A request for an endpoint the plugin's manifest does not declare in `routes`.
    UndeclaredRoute {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The plugin's component imports an interface that its current grant
    /// no longer covers (the grant was narrowed after it was installed).
    MissingCapability {
        /// The import, such as `vodo:plugin/http@0.1.1`.
        import: String,
        /// The permission it needs, such as `network`.
        capability: String,
    },
    /// The circuit breaker of the plugin in this installation is open.
    CircuitOpen,
    /// The permission store could not answer; the check fails closed.
    StoreUnavailable {
        /// The store's error message.
        error: String,
    },
}

impl DenyReason {
    /// A denial for a missing scope.
    pub fn missing(scope: &PluginScope) -> Self {
        Self::MissingScope {
            scope: scope.to_string(),
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInstalled => f.write_str("the plugin is not installed in this installation"),
            Self::Disabled => f.write_str("the plugin is disabled in this installation"),
            Self::MissingScope { scope } => write!(
                f,
                "the plugin lacks the `{scope}` permission: add it to plugin.json and have the installer consent"
            ),
            Self::KeyScope { scope } => write!(
                f,
                "the API key does not cover `{scope}`: issue a key with that scope"
            ),
            Self::RateLimited { retry_after_ms } => {
                write!(f, "rate limit exceeded: retry in {retry_after_ms} ms")
            }
            Self::RateLimiterFull { max_keys } => write!(
                f,
                "the rate limiter already tracks its {max_keys} keys and none is idle: refused to fail closed; retry later, or raise the limiter's key bound"
            ),
            Self::UndeclaredRoute { method, path } => write!(
                f,
                "`{method} {path}` is not among the plugin's `routes`: declare it in plugin.json to serve it"
            ),
            Self::MissingCapability { import, capability } => write!(
                f,
                "the plugin imports `{import}` but its grant no longer has a `{capability}` permission: the installer must consent to it again"
            ),
            Self::CircuitOpen => f.write_str(
                "the plugin is failing and its circuit breaker is open: it is probed again after the cool-down",
            ),
            Self::StoreUnavailable { error } => {
                write!(f, "permission store unavailable, denied to fail closed: {error}")
            }
        }
    }
}
