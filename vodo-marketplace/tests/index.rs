//! Every attack on the signed index, and key rotation that installed hosts follow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use vodo_core::Timestamp;
use vodo_marketplace::Error;
use vodo_marketplace::index::{
    Client, DirSource, IndexError, Publisher, Repository, RoleSigners, Signed, SigningKey,
    TimestampMeta,
};

const DAY: Duration = Duration::from_secs(24 * 3600);
const T0: Timestamp = Timestamp(1_800_000_000_000);

struct Keys {
    root: SigningKey,
    targets: SigningKey,
    snapshot: SigningKey,
    timestamp: SigningKey,
}

impl Keys {
    fn new() -> Self {
        Self {
            root: SigningKey::generate().unwrap(),
            targets: SigningKey::generate().unwrap(),
            snapshot: SigningKey::generate().unwrap(),
            timestamp: SigningKey::generate().unwrap(),
        }
    }

    fn signers(&self) -> RoleSigners<'_> {
        RoleSigners {
            root: vec![&self.root],
            targets: vec![&self.targets],
            snapshot: vec![&self.snapshot],
            timestamp: vec![&self.timestamp],
        }
    }
}

fn setup() -> (tempfile::TempDir, Keys, Repository, Client) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let mut repo = Repository::create(dir.path(), &keys.signers(), T0.plus(365 * DAY)).unwrap();
    repo.add("order-notifier", "1.0.0", "stable", b"package one")
        .unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
    client
        .update(&DirSource(dir.path().to_path_buf()), T0)
        .unwrap();
    (dir, keys, repo, client)
}

fn source(dir: &tempfile::TempDir) -> DirSource {
    DirSource(dir.path().to_path_buf())
}

#[test]
fn a_published_package_verifies() {
    let (dir, _, _, client) = setup();
    let info = client.target("order-notifier/1.0.0.vpkg").unwrap();
    assert_eq!(
        (info.length, info.channel.as_str(), info.yanked),
        (11, "stable", false)
    );
    assert_eq!(
        client
            .fetch_package(&source(&dir), "order-notifier/1.0.0.vpkg")
            .unwrap(),
        b"package one"
    );
    assert!(matches!(
        client.fetch_package(&source(&dir), "nope/1.vpkg"),
        Err(IndexError::UnknownTarget(_))
    ));
}

#[test]
fn a_swapped_package_is_refused() {
    let (dir, _, _, client) = setup();
    let sha = client
        .target("order-notifier/1.0.0.vpkg")
        .unwrap()
        .sha256
        .clone();
    std::fs::write(
        dir.path().join(format!("targets/{sha}.vpkg")),
        b"package 0ne",
    )
    .unwrap();
    assert!(matches!(
        client.fetch_package(&source(&dir), "order-notifier/1.0.0.vpkg"),
        Err(IndexError::Mismatch { .. })
    ));
    // A longer file is not even read past the signed length.
    std::fs::write(
        dir.path().join(format!("targets/{sha}.vpkg")),
        b"package one plus malware",
    )
    .unwrap();
    assert!(matches!(
        client.fetch_package(&source(&dir), "order-notifier/1.0.0.vpkg"),
        Err(IndexError::TooLarge(_))
    ));
}

#[test]
fn a_rollback_to_an_older_index_is_refused() {
    let (dir, keys, mut repo, mut client) = setup();
    let old_timestamp = std::fs::read(dir.path().join("timestamp.json")).unwrap();
    repo.add("order-notifier", "1.0.1", "stable", b"package two")
        .unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert!(client.target("order-notifier/1.0.1.vpkg").is_some());
    // A mirror replays the older (validly signed) timestamp.
    std::fs::write(dir.path().join("timestamp.json"), old_timestamp).unwrap();
    let before = client.state().clone();
    assert!(
        matches!(client.update(&source(&dir), T0), Err(IndexError::Rollback { ref role, trusted: 2, got: 1 }) if role == "timestamp")
    );
    assert_eq!(client.state(), &before, "a refused update changes nothing");
}

#[test]
fn a_frozen_index_is_refused_once_its_timestamp_expires() {
    let (dir, keys, mut repo, mut client) = setup();
    // The attacker keeps serving the same files; a day later they are stale.
    let e = client.update(&source(&dir), T0.plus(DAY)).unwrap_err();
    assert!(
        matches!(e, IndexError::Expired { ref role, .. } if role == "timestamp"),
        "{e}"
    );
    // The marketplace refreshes its timestamp on a timer: fresh again.
    repo.refresh_timestamp(&keys.signers(), T0.plus(DAY), DAY)
        .unwrap();
    client.update(&source(&dir), T0.plus(DAY)).unwrap();
    // Expired targets are refused too, even under a fresh timestamp.
    repo.refresh_timestamp(&keys.signers(), T0.plus(31 * DAY), DAY)
        .unwrap();
    let e = client.update(&source(&dir), T0.plus(31 * DAY)).unwrap_err();
    assert!(
        matches!(e, IndexError::Expired { ref role, .. } if role == "snapshot" || role == "targets"),
        "{e}"
    );
}

#[test]
fn signatures_from_untrusted_keys_are_refused() {
    let (dir, keys, _, mut client) = setup();
    let attacker = SigningKey::generate().unwrap();
    let mallory = RoleSigners {
        root: vec![&attacker],
        targets: vec![&attacker],
        snapshot: vec![&attacker],
        timestamp: vec![&attacker],
    };
    // A whole index signed by the attacker.
    let evil = tempfile::tempdir().unwrap();
    let mut fake = Repository::create(evil.path(), &mallory, T0.plus(365 * DAY)).unwrap();
    fake.add("order-notifier", "9.9.9", "stable", b"malware")
        .unwrap();
    fake.publish(&mallory, T0, 30 * DAY, DAY).unwrap();
    std::fs::copy(
        evil.path().join("timestamp.json"),
        dir.path().join("timestamp.json"),
    )
    .unwrap();
    let e = client.update(&source(&dir), T0).unwrap_err();
    assert!(
        matches!(e, IndexError::Signature { ref role, valid: 0, .. } if role == "timestamp"),
        "{e}"
    );
    // A root 2 signed only by the attacker.
    std::fs::copy(
        evil.path().join("1.root.json"),
        dir.path().join("2.root.json"),
    )
    .unwrap();
    let e = client.update(&source(&dir), T0).unwrap_err();
    assert!(
        matches!(e, IndexError::Signature { ref role, .. } if role == "root"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("2.root.json")).unwrap();
    // A timestamp stripped of its signatures verifies against nothing.
    let mut ts: Signed<TimestampMeta> =
        serde_json::from_slice(&std::fs::read(evil.path().join("timestamp.json")).unwrap())
            .unwrap();
    ts.signatures.clear();
    std::fs::write(
        dir.path().join("timestamp.json"),
        serde_json::to_vec(&ts).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        client.update(&source(&dir), T0),
        Err(IndexError::Signature { valid: 0, .. })
    ));
    let _ = keys;
}

#[test]
fn files_that_never_existed_together_are_refused() {
    let (dir, keys, mut repo, mut client) = setup();
    repo.add("order-notifier", "1.0.1", "stable", b"package two")
        .unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    // Serve snapshot 2 with the bytes of an edited targets file: its hash no longer matches.
    let t = dir.path().join("2.targets.json");
    let text = std::fs::read_to_string(&t)
        .unwrap()
        .replace("1.0.1", "6.6.6");
    std::fs::write(&t, text).unwrap();
    assert!(matches!(
        client.update(&source(&dir), T0),
        Err(IndexError::Mismatch { .. })
    ));
}

#[test]
fn key_rotation_is_followed_and_old_keys_stop_counting() {
    let (dir, keys, mut repo, mut client) = setup();
    let new_timestamp = SigningKey::generate().unwrap();
    let new_root = SigningKey::generate().unwrap();
    let rotated = RoleSigners {
        root: vec![&new_root],
        targets: vec![&keys.targets],
        snapshot: vec![&keys.snapshot],
        timestamp: vec![&new_timestamp],
    };
    repo.rotate(&[&keys.root], &rotated, T0.plus(365 * DAY))
        .unwrap();
    repo.add("order-notifier", "1.1.0", "beta", b"package three")
        .unwrap();
    repo.publish(&rotated, T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert_eq!(client.state().root.signed.version, 2);
    assert!(client.target("order-notifier/1.1.0.vpkg").is_some());
    // The retired timestamp key can no longer sign a timestamp the client accepts.
    repo.refresh_timestamp(&keys.signers(), T0, DAY).unwrap();
    let e = client.update(&source(&dir), T0).unwrap_err();
    assert!(
        matches!(e, IndexError::Signature { ref role, .. } if role == "timestamp"),
        "{e}"
    );
    // A root 3 signed by the retired root key alone is refused.
    let mut repo_old = repo;
    let bad = RoleSigners {
        root: vec![&keys.root],
        ..keys.signers()
    };
    repo_old
        .rotate(&[&keys.root], &bad, T0.plus(365 * DAY))
        .unwrap();
    assert!(
        matches!(client.update(&source(&dir), T0), Err(IndexError::Signature { ref role, .. }) if role == "root")
    );
}

#[test]
fn yanked_versions_stay_listed_and_marked() {
    let (dir, keys, mut repo, mut client) = setup();
    repo.yank("order-notifier/1.0.0.vpkg").unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert!(client.target("order-notifier/1.0.0.vpkg").unwrap().yanked);
    assert!(
        client
            .fetch_package(&source(&dir), "order-notifier/1.0.0.vpkg")
            .is_ok(),
        "still verifiable for rollback"
    );
}

/// Published versions never change: the same version with other bytes is
/// refused, the same bytes again change nothing, and names are checked.
#[test]
fn versions_are_immutable_and_names_are_checked() {
    let (_dir, keys, mut repo, _client) = setup();
    let before = repo.targets().clone();
    assert!(matches!(
        repo.add("order-notifier", "1.0.0", "stable", b"swapped package"),
        Err(Error::Conflict(m)) if m.contains("never change")
    ));
    assert_eq!(repo.targets(), &before, "a refused add changes nothing");
    assert_eq!(
        repo.add("order-notifier", "1.0.0", "stable", b"package one")
            .unwrap(),
        "order-notifier/1.0.0.vpkg"
    );
    for (plugin, version, channel, says) in [
        ("../etc", "1.0.0", "stable", "slug"),
        ("Order", "1.0.0", "stable", "slug"),
        ("", "1.0.0", "stable", "slug"),
        ("p", "1.0", "stable", "semver"),
        ("p", "latest", "stable", "semver"),
        ("p", "1.0.0", "nightly", "channel"),
    ] {
        let e = repo.add(plugin, version, channel, b"x").unwrap_err();
        assert!(
            matches!(&e, Error::Invalid(m) if m.contains(says)),
            "{plugin} {version} {channel}: {e}"
        );
    }
    assert!(matches!(
        repo.add_package(b"not a package", "stable"),
        Err(Error::Invalid(m)) if m.contains("not a publishable package")
    ));
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
}

fn plugin_package(slug: &str, version: &str) -> Vec<u8> {
    vodo_marketplace::package::Package {
        manifest: format!(
            r#"{{"name":"P","slug":"{slug}","version":"{version}","description":"d","author":"A","license":"MIT","entry":"p.wasm","host_api":"^0.1"}}"#
        ),
        readme: String::new(),
        samples: Vec::new(),
        component: format!("{slug} {version}").into_bytes(),
    }
    .to_bytes()
}

/// A publisher signs its own plugins' targets with its own key; the
/// marketplace lists them without holding that key, and refuses what the
/// publisher has no right to sign.
#[test]
fn a_delegated_publisher_signs_its_own_plugins_and_nothing_else() {
    let (dir, keys, mut repo, mut client) = setup();
    let acme_key = SigningKey::generate().unwrap();
    let stranger = SigningKey::generate().unwrap();

    // Delegations are checked.
    assert!(matches!(
        repo.delegate("acme", &[acme_key.public_hex()], 2, &["acme-chat"]),
        Err(Error::Invalid(m)) if m.contains("threshold")
    ));
    assert!(matches!(
        repo.delegate("acme", &["zz".into()], 1, &["acme-chat"]),
        Err(Error::Invalid(m)) if m.contains("public key")
    ));
    assert!(matches!(
        repo.delegate("acme", &[acme_key.public_hex()], 1, &["order-notifier"]),
        Err(Error::Conflict(m)) if m.contains("top-level")
    ));
    repo.delegate(
        "acme",
        &[acme_key.public_hex()],
        1,
        &["acme-chat", "acme-crm"],
    )
    .unwrap();
    assert!(matches!(
        repo.delegate("globex", &[stranger.public_hex()], 1, &["acme-crm"]),
        Err(Error::Conflict(m)) if m.contains("already delegated to `acme`")
    ));
    assert!(matches!(
        repo.add_package(&plugin_package("acme-chat", "0.9.0"), "stable"),
        Err(Error::Invalid(m)) if m.contains("delegated to publisher `acme`")
    ));

    // The publisher signs, uploads its package, and the marketplace lists it.
    let mut acme = Publisher::new("acme").unwrap();
    let v1 = plugin_package("acme-chat", "1.0.0");
    let path = acme.add_package(&v1, "stable").unwrap();
    let signed = acme.sign(&[&acme_key], T0, 365 * DAY).unwrap();
    assert!(
        matches!(repo.accept_delegated("acme", signed.clone()), Err(Error::Invalid(m)) if m.contains("store_package")),
        "the package must be uploaded first"
    );
    repo.store_package(&v1).unwrap();
    repo.accept_delegated("acme", signed.clone()).unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert_eq!(client.fetch_package(&source(&dir), &path).unwrap(), v1);
    assert_eq!(
        client.target(&path).unwrap().host_api.as_deref(),
        Some("^0.1")
    );
    assert!(client.target("order-notifier/1.0.0.vpkg").is_some());

    // What the marketplace refuses from a publisher.
    assert!(
        matches!(
            repo.accept_delegated("acme", signed.clone()),
            Err(Error::Index(IndexError::Rollback { .. }))
        ),
        "the same version again"
    );
    let mut by_stranger = Publisher::resume("acme", &signed).unwrap();
    let e = repo
        .accept_delegated(
            "acme",
            by_stranger.sign(&[&stranger], T0, 365 * DAY).unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::Index(IndexError::Signature { .. })),
        "{e}"
    );
    let mut grabby = Publisher::resume("acme", &signed).unwrap();
    grabby
        .add_package(&plugin_package("order-notifier", "2.0.0"), "stable")
        .unwrap();
    let e = repo
        .accept_delegated("acme", grabby.sign(&[&acme_key], T0, 365 * DAY).unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Index(IndexError::OutsideDelegation { path, .. }) if path == "order-notifier/2.0.0.vpkg"),
        "{e}"
    );
    let mut dropped = Publisher::new("acme").unwrap();
    dropped.sign(&[&acme_key], T0, 365 * DAY).unwrap();
    let e = repo
        .accept_delegated("acme", dropped.sign(&[&acme_key], T0, 365 * DAY).unwrap())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Conflict(m) if m.contains("never change")),
        "a listed version cannot disappear or change: {e}"
    );
    let mut changed = vodo_marketplace::package::Package::parse(&v1, u64::MAX).unwrap();
    changed.readme = "now with a readme".into();
    assert!(
        matches!(acme.add_package(&changed.to_bytes(), "stable"), Err(Error::Conflict(m)) if m.contains("never change")),
        "the publisher's own tool refuses to change a listed version"
    );

    // A yank by the publisher is a new signed version.
    acme.yank(&path).unwrap();
    repo.accept_delegated("acme", acme.sign(&[&acme_key], T0, 365 * DAY).unwrap())
        .unwrap();
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert!(client.target(&path).unwrap().yanked);

    // Publisher targets must outlive the snapshot that pins them.
    let mut short = Publisher::resume("acme", &repo_delegated(&client)).unwrap();
    repo.accept_delegated("acme", short.sign(&[&acme_key], T0, DAY).unwrap())
        .unwrap();
    assert!(matches!(
        repo.publish(&keys.signers(), T0, 30 * DAY, DAY),
        Err(Error::Invalid(m)) if m.contains("sign again")
    ));

    // Withdrawn: its plugins leave the verified index.
    assert!(repo.undelegate("acme"));
    repo.publish(&keys.signers(), T0, 30 * DAY, DAY).unwrap();
    client.update(&source(&dir), T0).unwrap();
    assert!(client.target(&path).is_none());
    assert!(client.target("order-notifier/1.0.0.vpkg").is_some());
}

fn repo_delegated(client: &Client) -> Signed<vodo_marketplace::index::Targets> {
    client.state().delegated["acme"].clone()
}
