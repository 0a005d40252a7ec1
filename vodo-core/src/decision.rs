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
    /// The circuit breaker for the plugin is open.
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
            Self::CircuitOpen => f.write_str(
                "the plugin is failing and its circuit breaker is open: it is probed again after the cool-down",
            ),
            Self::StoreUnavailable { error } => {
                write!(f, "permission store unavailable, denied to fail closed: {error}")
            }
        }
    }
}
