//! A publisher's side of a delegation: [`Publisher`] signs the targets of
//! its own plugins with its own keys.

use std::collections::BTreeMap;

use vodo_core::Timestamp;

use crate::Result;

use super::metadata::{Signed, SigningKey, Targets, sign};
use super::repository::{check_publisher_name, delegated_role, package_target};

/// A publisher's side of a delegation: the targets it signs for its own
/// plugins, with its own keys, kept away from the marketplace.
#[derive(Debug, Clone)]
pub struct Publisher {
    name: String,
    targets: Targets,
}

impl Publisher {
    /// A publisher starting its first targets.
    pub fn new(name: &str) -> Result<Self> {
        check_publisher_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            targets: Targets {
                version: 0,
                expires: Timestamp(0),
                targets: BTreeMap::new(),
                delegations: BTreeMap::new(),
            },
        })
    }

    /// A publisher continuing from the targets it signed last.
    pub fn resume(name: &str, last: &Signed<Targets>) -> Result<Self> {
        let mut p = Self::new(name)?;
        p.targets = last.signed.clone();
        Ok(p)
    }

    /// Lists a package under the slug and version its manifest declares;
    /// a listed version never changes.
    pub fn add_package(&mut self, package: &[u8], channel: &str) -> Result<String> {
        let (path, info) = package_target(package, channel)?;
        if !self.targets.listed_unchanged(&path, &info)? {
            self.targets.targets.insert(path.clone(), info);
        }
        Ok(path)
    }

    /// Yanks one of its versions.
    pub fn yank(&mut self, path: &str) -> Result<()> {
        self.targets.yank(path)
    }

    /// Signs the next version of its targets, valid for `ttl` from `now`.
    pub fn sign(
        &mut self,
        keys: &[&SigningKey],
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<Signed<Targets>> {
        self.targets.version += 1;
        self.targets.expires = now.plus(ttl);
        sign(&self.targets, &delegated_role(&self.name), keys)
    }
}
