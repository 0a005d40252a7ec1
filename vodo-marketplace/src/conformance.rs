//! The conformance suites every [`CatalogStore`](crate::catalog::CatalogStore)
//! and [`SubmissionStore`](crate::submissions::SubmissionStore) must pass.
//! Each expects a fresh, empty store.

// A conformance suite is a test: failing loudly on the first difference is its job.
#![allow(clippy::panic, clippy::unwrap_used)]

use vodo_core::{InstallationId, Timestamp};

use crate::Error;
use crate::catalog::{CatalogStore, InstallEvent, Listing, Rating};
use crate::pricing::{Money, Period, Pricing};
use crate::review::{Finding, Report, Severity};
use crate::submissions::{SubmissionFilter, SubmissionStore};
use crate::workflow::{Actor, Role, State, Submission};

/// Runs every check against `store`.
pub fn catalog_store(store: &dyn CatalogStore) {
    let listing = Listing {
        plugin: "conf-plugin".into(),
        name: "Conformance".into(),
        summary: "Checks stores".into(),
        category: "tools".into(),
        tags: vec!["a".into(), "b".into()],
        pricing: Pricing::Subscription {
            price: Money::new(2900, "SAR").unwrap(),
            period: Period::Monthly,
            trial_days: 14,
        },
        scopes: vec!["entities:read:order".into()],
        version: "1.0.0".into(),
    };
    store.put_listing(&listing).unwrap();
    assert_eq!(
        store.listing("conf-plugin").unwrap(),
        Some(listing.clone()),
        "a listing reads back whole"
    );
    assert_eq!(store.listing("nope").unwrap(), None);
    let other = Listing {
        plugin: "conf-a".into(),
        pricing: Pricing::Free,
        ..listing.clone()
    };
    store.put_listing(&other).unwrap();
    let names: Vec<String> = store
        .listings()
        .unwrap()
        .into_iter()
        .map(|l| l.plugin)
        .collect();
    assert_eq!(names, ["conf-a", "conf-plugin"], "listings are by plugin");

    let shop = |s: &str| InstallationId::new(s);
    let rating = |inst: &str, stars: u8, at: i64| Rating {
        installation: shop(inst),
        stars,
        text: format!("{stars} stars"),
        at: Timestamp(at),
    };
    store
        .put_rating("conf-plugin", &rating("s1", 5, 10))
        .unwrap();
    store
        .put_rating("conf-plugin", &rating("s2", 3, 20))
        .unwrap();
    store
        .put_rating("conf-plugin", &rating("s1", 4, 30))
        .unwrap();
    assert_eq!(
        store.ratings("conf-plugin").unwrap(),
        [rating("s2", 3, 20), rating("s1", 4, 30)],
        "one rating per installation, the latest"
    );

    for (v, inst, ev) in [
        ("1.0.0", "s1", InstallEvent::Installed),
        ("1.0.0", "s2", InstallEvent::Installed),
        ("1.0.0", "s1", InstallEvent::Used),
        ("1.0.0", "s1", InstallEvent::Used),
        ("1.0.0", "s1", InstallEvent::Installed), // a retried report
        ("1.1.0", "s1", InstallEvent::Installed), // an update
        ("1.0.0", "s2", InstallEvent::Uninstalled),
        ("1.0.0", "s2", InstallEvent::Uninstalled), // a retried report
        ("1.1.0", "s3", InstallEvent::Installed),
        ("1.1.0", "s4", InstallEvent::Uninstalled), // never installed
    ] {
        store
            .record("conf-plugin", v, &shop(inst), ev, Timestamp(1))
            .unwrap();
    }
    assert!(store.used("conf-plugin", &shop("s1")).unwrap());
    assert!(!store.used("conf-plugin", &shop("s2")).unwrap());
    let a = store.analytics("conf-plugin").unwrap();
    assert_eq!(
        (a.installs, a.updates, a.uninstalls),
        (3, 1, 1),
        "repeated reports change nothing; an update is not an install"
    );
    assert_eq!(
        a.active_by_version.into_iter().collect::<Vec<_>>(),
        [("1.1.0".to_owned(), 2)]
    );
}

/// Runs every check against `store`.
pub fn submission_store(store: &dyn SubmissionStore) {
    // Packages: kept by digest, byte for byte; a second put changes nothing.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store.put_package("aa11", &bytes).unwrap();
    store.put_package("aa11", b"other bytes").unwrap();
    assert_eq!(
        store.package("aa11").unwrap(),
        Some(bytes),
        "packages read back whole and first write wins"
    );
    assert_eq!(store.package("bb22").unwrap(), None);

    // Submissions read back whole, report and history included.
    let alice = Actor {
        id: "alice".into(),
        role: Role::Developer,
    };
    let reviewer = Actor {
        id: "rev".into(),
        role: Role::Reviewer,
    };
    let mut a = Submission::new("sub-a", "alice", "plug", "1.0.0", "aa11", Timestamp(20));
    a.report = Some(Report {
        findings: vec![Finding {
            check: "license".into(),
            severity: Severity::Warning,
            location: "plugin.json $.license".into(),
            message: "unusual \"quoted\" text, ünïcode".into(),
        }],
    });
    store.create(&a).unwrap();
    assert_eq!(store.get("sub-a").unwrap(), Some(a.clone()));
    assert_eq!(store.get("nope").unwrap(), None);
    assert!(
        matches!(store.create(&a), Err(Error::Conflict(_))),
        "an id is never reused"
    );
    assert_eq!(
        store.get("sub-a").unwrap(),
        Some(a.clone()),
        "a refused create changes nothing"
    );

    // Updates are compare-and-swap on the number of moves.
    let before = a.history.len();
    a.transition(State::Submitted, &alice, "", Timestamp(21))
        .unwrap();
    assert!(store.update(&a, before).unwrap());
    assert_eq!(store.get("sub-a").unwrap(), Some(a.clone()));
    let mut stale = a.clone();
    stale
        .transition(State::InReview, &reviewer, "", Timestamp(22))
        .unwrap();
    assert!(
        !store.update(&stale, before).unwrap(),
        "an update based on an old read is refused"
    );
    assert_eq!(
        store.get("sub-a").unwrap(),
        Some(a.clone()),
        "a refused update changes nothing"
    );
    let missing = Submission::new(
        "sub-missing",
        "alice",
        "plug",
        "1.0.0",
        "aa11",
        Timestamp(1),
    );
    assert!(!store.update(&missing, 0).unwrap());
    assert_eq!(
        store.get("sub-missing").unwrap(),
        None,
        "update never creates"
    );

    // Listing filters and orders by creation time, then id.
    let b = Submission::new("sub-b", "bob", "other", "0.1.0", "aa11", Timestamp(10));
    let c = Submission::new("sub-c", "alice", "plug", "1.1.0", "aa11", Timestamp(20));
    store.create(&c).unwrap();
    store.create(&b).unwrap();
    let ids = |f: SubmissionFilter| -> Vec<String> {
        store.list(&f).unwrap().into_iter().map(|s| s.id).collect()
    };
    assert_eq!(
        ids(SubmissionFilter::default()),
        ["sub-b", "sub-a", "sub-c"]
    );
    assert_eq!(
        ids(SubmissionFilter {
            state: Some(State::Submitted),
            ..Default::default()
        }),
        ["sub-a"]
    );
    assert_eq!(
        ids(SubmissionFilter {
            plugin: Some("plug".into()),
            ..Default::default()
        }),
        ["sub-a", "sub-c"]
    );
    assert_eq!(
        ids(SubmissionFilter {
            owner: Some("alice".into()),
            state: Some(State::Draft),
            ..Default::default()
        }),
        ["sub-c"]
    );
    assert!(
        ids(SubmissionFilter {
            owner: Some("carol".into()),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        store.list(&SubmissionFilter::default()).unwrap()[1],
        a,
        "listed submissions are whole"
    );

    // Slug ownership: the first claim wins, for good.
    assert_eq!(store.claim("new-slug", "alice").unwrap(), "alice");
    assert_eq!(store.claim("new-slug", "bob").unwrap(), "alice");
    assert_eq!(store.claim("new-slug", "alice").unwrap(), "alice");
    assert_eq!(store.claim("other-slug", "bob").unwrap(), "bob");
}
