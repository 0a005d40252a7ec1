//! The conformance suite every [`CatalogStore`](crate::catalog::CatalogStore)
//! must pass. Expects a fresh, empty store.

// A conformance suite is a test: failing loudly on the first difference is its job.
#![allow(clippy::panic, clippy::unwrap_used)]

use vodo_core::{InstallationId, Timestamp};

use crate::catalog::{CatalogStore, InstallEvent, Listing, Rating};
use crate::pricing::{Money, Period, Pricing};

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
        ("1.1.0", "s1", InstallEvent::Installed),
        ("1.0.0", "s2", InstallEvent::Uninstalled),
        ("1.1.0", "s3", InstallEvent::Installed),
    ] {
        store
            .record("conf-plugin", v, &shop(inst), ev, Timestamp(1))
            .unwrap();
    }
    assert!(store.used("conf-plugin", &shop("s1")).unwrap());
    assert!(!store.used("conf-plugin", &shop("s2")).unwrap());
    let a = store.analytics("conf-plugin").unwrap();
    assert_eq!((a.installs, a.uninstalls), (4, 1));
    assert_eq!(
        a.active_by_version.into_iter().collect::<Vec<_>>(),
        [("1.1.0".to_owned(), 2)]
    );
}
