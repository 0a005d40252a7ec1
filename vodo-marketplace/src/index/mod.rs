//! The signed index: TUF-shaped metadata over content-addressed packages.
//!
//! Four roles sign four files, each with a `version` that only grows and an
//! `expires` time:
//!
//! | role | file | pins |
//! |---|---|---|
//! | root | `N.root.json` | every role's keys and threshold |
//! | targets | `N.targets.json` | each package's length, SHA-256 and facts (plugin, version, channel, yanked, host API range); a listed version never changes |
//! | snapshot | `N.snapshot.json` | the version and hash of the targets file |
//! | timestamp | `timestamp.json` | the version and hash of the snapshot; expires soon |
//!
//! A [`Client`] starts from a pinned root and refuses: a rollback to an
//! older version of any role, a frozen (expired) index, a package whose
//! bytes do not match its signed length and hash, a signature from a key
//! not trusted for that role, and files that never existed together (the
//! hashes chain timestamp → snapshot → targets). Keys rotate by publishing
//! root N+1 signed by a threshold of root N's keys **and** of its own, so
//! installed hosts follow without a new pinned root. Signatures cover a
//! domain-separated message (`vodo-sig-v1:{role}:` + canonical JSON), so a
//! signature for one role never verifies as another.
//!
//! Packages are stored as `targets/{sha256}.vpkg`: immutable, content
//! addressed, safe for any CDN to cache. Only `timestamp.json` changes in place.
//!
//! **Delegation to publishers.** The targets role may delegate named plugins
//! to a publisher's own keys ([`Repository::delegate`]). The publisher signs
//! the targets of those plugins itself ([`Publisher`]), under the role
//! `targets:{publisher}`, into `N.{publisher}.targets.json`, which the
//! snapshot pins by version and hash like the top-level targets. Clients
//! check those signatures against the delegation and refuse any entry
//! outside the publisher's plugins ([`IndexError::OutsideDelegation`]), so
//! the marketplace lists a publisher's packages without holding its key, and
//! a publisher's key signs for nobody else's plugins.

mod client;
mod metadata;
mod publisher;
mod repository;

pub use client::*;
pub use metadata::*;
pub use publisher::*;
pub use repository::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use vodo_core::Timestamp;

    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn plugin_package(slug: &str, version: &str) -> Vec<u8> {
        crate::package::Package {
            manifest: format!(
                r#"{{"name":"P","slug":"{slug}","version":"{version}","description":"d","author":"A","license":"MIT","entry":"p.wasm","host_api":"^0.1"}}"#
            ),
            readme: String::new(),
            samples: Vec::new(),
            component: slug.as_bytes().to_vec(),
        }
        .to_bytes()
    }

    /// A marketplace whose own checks were bypassed (a compromised or buggy
    /// server) still cannot make clients accept what a publisher did not
    /// sign for its own plugins: the client checks again.
    #[test]
    fn clients_check_delegations_themselves() {
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate().unwrap()).collect();
        let signers = RoleSigners {
            root: vec![&keys[0]],
            targets: vec![&keys[1]],
            snapshot: vec![&keys[2]],
            timestamp: vec![&keys[3]],
        };
        let publisher_key = &keys[4];
        let dir = tempfile::tempdir().unwrap();
        let source = DirSource(dir.path().to_path_buf());
        let mut repo = Repository::create(dir.path(), &signers, T0.plus(365 * DAY)).unwrap();
        repo.add_package(&plugin_package("market-app", "1.0.0"), "stable")
            .unwrap();
        repo.delegate("acme", &[publisher_key.public_hex()], 1, &["acme-chat"])
            .unwrap();
        let mut acme = Publisher::new("acme").unwrap();
        let own = plugin_package("acme-chat", "1.0.0");
        acme.add_package(&own, "stable").unwrap();
        repo.store_package(&own).unwrap();
        repo.accept_delegated("acme", acme.sign(&[publisher_key], T0, 365 * DAY).unwrap())
            .unwrap();
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
        client.update(&source, T0).unwrap();
        assert_eq!(
            client
                .fetch_package(&source, "acme-chat/1.0.0.vpkg")
                .unwrap(),
            own
        );

        // The publisher's key signs a package of someone else's plugin, and
        // the server skips its own check.
        let mut rogue = Publisher::resume("acme", &repo.delegated["acme"]).unwrap();
        let hijack = plugin_package("market-app", "9.0.0");
        rogue.add_package(&hijack, "stable").unwrap();
        let signed = rogue.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        assert!(matches!(
            repo.accept_delegated("acme", signed.clone()),
            Err(Error::Index(IndexError::OutsideDelegation { .. }))
        ));
        repo.store_package(&hijack).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        let before = client.state().clone();
        let e = client.update(&source, T0).unwrap_err();
        assert!(
            matches!(&e, IndexError::OutsideDelegation { path, .. } if path == "market-app/9.0.0.vpkg"),
            "{e}"
        );
        assert_eq!(client.state(), &before);

        // Targets for acme signed by the marketplace's own targets key, not acme's.
        let mut forged = Publisher::resume("acme", &before.delegated["acme"]).unwrap();
        let signed = forged.sign(&[&keys[1]], T0, 365 * DAY).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Signature { role, valid: 0, .. }) if role == "targets:acme"
        ));

        // A signature acme made for another role (its name reused as a
        // top-level role) does not verify as acme's targets: domain separation.
        let mut other = Publisher::resume("other", &before.delegated["acme"]).unwrap();
        let signed = other.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        repo.delegated.insert("acme".into(), signed);
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Signature { role, .. }) if role == "targets:acme"
        ));

        // An older acme file pinned again: a rollback.
        repo.delegated
            .insert("acme".into(), before.delegated["acme"].clone());
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        client.update(&source, T0).unwrap();
        let mut newer = Publisher::resume("acme", &before.delegated["acme"]).unwrap();
        newer.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        let v3 = newer.sign(&[publisher_key], T0, 365 * DAY).unwrap();
        repo.accept_delegated("acme", v3).unwrap();
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        client.update(&source, T0).unwrap();
        repo.delegated
            .insert("acme".into(), before.delegated["acme"].clone());
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        assert!(matches!(
            client.update(&source, T0),
            Err(IndexError::Rollback { role, trusted: 3, got: 1 }) if role == "targets:acme"
        ));
    }

    /// A repository opened again goes on numbering after the files on disk,
    /// keeps what was listed, and a client that followed it before follows
    /// on; a folder without an index, or with a mangled file, is refused.
    #[test]
    fn an_opened_repository_goes_on_where_it_left_off() {
        let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
        let signers = RoleSigners {
            root: vec![&keys[0]],
            targets: vec![&keys[1]],
            snapshot: vec![&keys[2]],
            timestamp: vec![&keys[3]],
        };
        let dir = tempfile::tempdir().unwrap();
        let source = DirSource(dir.path().to_path_buf());
        assert!(matches!(
            Repository::open(dir.path()),
            Err(Error::NotFound(_))
        ));
        let mut repo = Repository::create(dir.path(), &signers, T0.plus(365 * DAY)).unwrap();
        // Opened before anything was published: nothing listed yet.
        let fresh = Repository::open(dir.path()).unwrap();
        assert!(fresh.targets().targets.is_empty());
        repo.add_package(&plugin_package("app", "1.0.0"), "stable")
            .unwrap();
        repo.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
        client.update(&source, T0).unwrap();
        drop(repo);

        let mut again = Repository::open(dir.path()).unwrap();
        assert!(again.targets().targets.contains_key("app/1.0.0.vpkg"));
        again
            .add_package(&plugin_package("app", "1.1.0"), "beta")
            .unwrap();
        again.publish(&signers, T0, 30 * DAY, DAY).unwrap();
        client.update(&source, T0).unwrap();
        let state = client.state();
        assert_eq!(state.targets.as_ref().unwrap().signed.version, 2);
        assert_eq!(state.snapshot.as_ref().unwrap().signed.version, 2);
        assert_eq!(state.timestamp.as_ref().unwrap().signed.version, 2);
        assert_eq!(client.targets().count(), 2);
        // A listed version still cannot change after a reopen.
        let mut changed =
            crate::package::Package::parse(&plugin_package("app", "1.0.0"), u64::MAX).unwrap();
        changed.component = b"other bytes".to_vec();
        assert!(matches!(
            again.add_package(&changed.to_bytes(), "stable"),
            Err(Error::Conflict(_))
        ));

        std::fs::write(dir.path().join("2.snapshot.json"), b"{not json").unwrap();
        assert!(matches!(
            Repository::open(dir.path()),
            Err(Error::Tampered(_))
        ));
    }
}
