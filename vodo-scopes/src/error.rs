//! Errors raised while parsing a scope string.

use std::fmt;

/// Why a scope string was refused.
///
/// Every message names the offending input in backticks and says what to
/// write instead, so it can be shown to a plugin author as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope string was empty or only whitespace.
    Empty,
    /// The scope string is longer than any valid scope can be.
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The largest accepted length.
        max: usize,
    },
    /// The scope contains whitespace, upper-case letters or other characters
    /// that no scope may contain.
    NotCanonical {
        /// The offending input.
        scope: String,
        /// The canonical spelling, where one exists.
        canonical: Option<String>,
    },
    /// The `category:action` part is not one the platform knows.
    Unknown {
        /// The offending input.
        scope: String,
        /// The closest known scope, if one is close enough to be a typo.
        suggestion: Option<&'static str>,
    },
    /// The scope needs an argument (`network:outbound:{host}`) and has none.
    MissingArgument {
        /// The offending input.
        scope: String,
        /// What the argument names, such as `a host`.
        expected: &'static str,
    },
    /// The scope takes no argument but was given one.
    UnexpectedArgument {
        /// The offending input.
        scope: String,
        /// The scope without its argument.
        base: &'static str,
    },
    /// The argument is not a valid entity name, hook name or pattern, or host.
    InvalidArgument {
        /// The offending input.
        scope: String,
        /// What kind of argument was expected, such as `entity name`.
        what: &'static str,
        /// The argument as written.
        argument: String,
        /// Why it was refused, phrased as what to do.
        reason: String,
    },
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str(
                "empty scope: write a scope such as `entities:read:product` or `hooks:subscribe:order.*`",
            ),
            Self::TooLong { len, max } => write!(
                f,
                "scope is {len} bytes long, longer than the {max} bytes any scope can be"
            ),
            Self::NotCanonical { scope, canonical } => match canonical {
                Some(c) => write!(
                    f,
                    "scope `{scope}` is not in canonical form: write `{c}` (lower case, no spaces)"
                ),
                None => write!(
                    f,
                    "scope `{scope}` contains characters no scope may contain: use lower-case letters, digits, `_`, `-`, `.`, `*` and `:`"
                ),
            },
            Self::Unknown { scope, suggestion } => match suggestion {
                Some(s) => write!(f, "unknown scope `{scope}`: did you mean `{s}`?"),
                None => write!(
                    f,
                    "unknown scope `{scope}`: known scopes are {}",
                    crate::scope::KNOWN_LIST
                ),
            },
            Self::MissingArgument { scope, expected } => write!(
                f,
                "scope `{scope}` needs {expected}: write `{scope}:{{{}}}`",
                expected.trim_start_matches("a ").trim_start_matches("an ")
            ),
            Self::UnexpectedArgument { scope, base } => write!(
                f,
                "scope `{base}` takes no argument, but `{scope}` gives one: write `{base}`"
            ),
            Self::InvalidArgument {
                scope,
                what,
                argument,
                reason,
            } => write!(
                f,
                "invalid {what} `{argument}` in scope `{scope}`: {reason}"
            ),
        }
    }
}

impl std::error::Error for ScopeError {}
