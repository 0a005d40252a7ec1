//! Identifiers of plugins and installations.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::Equivalent;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps an identifier; cloning it afterwards is cheap.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(id.as_ref().into())
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id! {
    /// A plugin, by the `slug` of its manifest (`order-notifier`).
    PluginId
}

id! {
    /// One installation of the platform's plugins: a tenant, store or
    /// workspace of the host. The same plugin installed by two tenants has two
    /// independent grants, keys and rate limits.
    InstallationId
}

/// The key of everything kept per plugin per installation (grants, circuit
/// breakers, rate-limit cells).
pub(crate) type PairKey = (InstallationId, PluginId);

/// A borrowed `(installation, plugin)` that looks up a [`PairKey`] in a
/// `hashbrown` map without allocating an owned key.
pub(crate) struct PairRef<'a>(pub &'a str, pub &'a str);

impl<'a> PairRef<'a> {
    /// The borrowed form of `(installation, plugin)`.
    pub(crate) fn of(installation: &'a InstallationId, plugin: &'a PluginId) -> Self {
        Self(installation.as_str(), plugin.as_str())
    }
}

impl Hash for PairRef<'_> {
    // Must hash exactly as `(InstallationId, PluginId)` does: each id hashes as its `str`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<PairKey> for PairRef<'_> {
    fn equivalent(&self, key: &PairKey) -> bool {
        self.0 == key.0.as_str() && self.1 == key.1.as_str()
    }
}
