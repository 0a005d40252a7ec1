//! Catalog ranking, search and reviews.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use vodo_core::{InstallationId, Timestamp};
use vodo_marketplace::catalog::{
    Catalog, InstallEvent, Listing, MemoryCatalog, Query, SqliteCatalog,
};
use vodo_marketplace::pricing::{Money, Period, Pricing};

fn listing(plugin: &str, name: &str, category: &str, pricing: Pricing, scopes: &[&str]) -> Listing {
    Listing {
        plugin: plugin.into(),
        name: name.into(),
        summary: format!("{name} for your store"),
        category: category.into(),
        tags: vec!["orders".into()],
        pricing,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        version: "1.0.0".into(),
    }
}

/// The plugins a query finds, in plugin order (for checks on what matches, not on ranking).
fn matching(c: &Catalog, q: &Query) -> Vec<String> {
    let mut v: Vec<String> = c
        .search(q)
        .hits
        .into_iter()
        .map(|h| h.listing.plugin)
        .collect();
    v.sort();
    v
}

fn use_and_rate(c: &Catalog, plugin: &str, n: usize, stars: &dyn Fn(usize) -> u8) {
    for i in 0..n {
        let inst = InstallationId::new(format!("{plugin}-shop-{i}"));
        c.store()
            .record(
                plugin,
                "1.0.0",
                &inst,
                InstallEvent::Installed,
                Timestamp(1),
            )
            .unwrap();
        c.store()
            .record(plugin, "1.0.0", &inst, InstallEvent::Used, Timestamp(2))
            .unwrap();
        c.rate(plugin, &inst, stars(i), "", Timestamp(3)).unwrap();
    }
}

#[test]
fn two_five_star_votes_do_not_outrank_five_hundred_at_four_and_a_half() {
    let c = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    c.publish(&listing(
        "newcomer",
        "Newcomer",
        "shipping",
        Pricing::Free,
        &[],
    ))
    .unwrap();
    c.publish(&listing(
        "veteran",
        "Veteran",
        "shipping",
        Pricing::Free,
        &[],
    ))
    .unwrap();
    c.publish(&listing(
        "unrated",
        "Unrated",
        "shipping",
        Pricing::Free,
        &[],
    ))
    .unwrap();
    use_and_rate(&c, "newcomer", 2, &|_| 5);
    use_and_rate(&c, "veteran", 500, &|i| if i % 2 == 0 { 5 } else { 4 });
    let page = c.search(&Query::default());
    let order: Vec<&str> = page
        .hits
        .iter()
        .map(|h| h.listing.plugin.as_str())
        .collect();
    assert_eq!(order, ["veteran", "newcomer", "unrated"], "{:?}", page.hits);
    let newcomer = &page.hits[1];
    assert_eq!((newcomer.votes, newcomer.mean), (2, 5.0));
    assert!(page.hits[0].score > newcomer.score);
    let rated: Vec<String> = c
        .search(&Query {
            min_rating: Some(4.0),
            ..Default::default()
        })
        .hits
        .into_iter()
        .map(|h| h.listing.plugin)
        .collect();
    assert_eq!(rated, ["veteran"]);
}

#[test]
fn only_installations_that_used_a_plugin_may_review_it() {
    let c = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    c.publish(&listing("p", "P", "tools", Pricing::Free, &[]))
        .unwrap();
    let shop = InstallationId::new("shop-1");
    assert!(
        c.rate("p", &shop, 1, "spam", Timestamp(1)).is_err(),
        "never installed"
    );
    c.store()
        .record("p", "1.0.0", &shop, InstallEvent::Installed, Timestamp(1))
        .unwrap();
    assert!(
        c.rate("p", &shop, 1, "spam", Timestamp(1)).is_err(),
        "installed but never used"
    );
    c.store()
        .record("p", "1.0.0", &shop, InstallEvent::Used, Timestamp(2))
        .unwrap();
    c.rate("p", &shop, 4, "works", Timestamp(3)).unwrap();
    c.rate("p", &shop, 5, "works well", Timestamp(4)).unwrap();
    let ratings = c.store().ratings("p").unwrap();
    assert_eq!(
        (ratings.len(), ratings[0].stars, ratings[0].text.as_str()),
        (1, 5, "works well")
    );
    assert!(c.rate("p", &shop, 6, "", Timestamp(5)).is_err());
    assert!(c.rate("missing", &shop, 5, "", Timestamp(5)).is_err());
}

#[test]
fn search_filters_and_stable_paging() {
    let sar = |m| Money::new(m, "SAR").unwrap();
    let c = Catalog::new(Arc::new(SqliteCatalog::open(None).unwrap())).unwrap();
    c.publish(&listing(
        "slack-notifier",
        "Slack Notifier",
        "notifications",
        Pricing::Free,
        &["network:outbound:hooks.slack.com"],
    ))
    .unwrap();
    c.publish(&listing(
        "sms-notifier",
        "SMS Notifier",
        "notifications",
        Pricing::OneTime { price: sar(4900) },
        &["users:read"],
    ))
    .unwrap();
    c.publish(&listing(
        "label-printer",
        "Label Printer",
        "shipping",
        Pricing::Subscription {
            price: sar(2900),
            period: Period::Monthly,
            trial_days: 7,
        },
        &[],
    ))
    .unwrap();
    let names = |q: &Query| {
        c.search(q)
            .hits
            .into_iter()
            .map(|h| h.listing.plugin)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&Query {
            text: "notifier".into(),
            ..Default::default()
        }),
        ["slack-notifier", "sms-notifier"]
    );
    assert_eq!(
        names(&Query {
            text: "SLACK notifier".into(),
            ..Default::default()
        }),
        ["slack-notifier"]
    );
    assert!(
        names(&Query {
            text: "nothing-like-it".into(),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        names(&Query {
            category: Some("shipping".into()),
            ..Default::default()
        }),
        ["label-printer"]
    );
    assert_eq!(
        names(&Query {
            free_only: true,
            ..Default::default()
        }),
        ["slack-notifier"]
    );
    assert_eq!(
        names(&Query {
            max_price_minor: Some(3000),
            ..Default::default()
        }),
        ["label-printer", "slack-notifier"]
    );
    assert_eq!(
        names(&Query {
            without_scopes: vec!["network:".into()],
            ..Default::default()
        }),
        ["label-printer", "sms-notifier"]
    );

    // 45 more listings, paged 10 at a time while a new one arrives mid-way: no repeats, no gaps.
    for i in 0..45 {
        c.publish(&listing(
            &format!("tool-{i:02}"),
            &format!("Tool {i}"),
            "tools",
            Pricing::Free,
            &[],
        ))
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut q = Query {
        category: Some("tools".into()),
        limit: 10,
        ..Default::default()
    };
    loop {
        let page = c.search(&q);
        seen.extend(page.hits.iter().map(|h| h.listing.plugin.clone()));
        if seen.len() == 20 {
            // Sorts before every page already returned: must not shift the pages that follow.
            c.publish(&listing(
                "tool-00a",
                "Tool new",
                "tools",
                Pricing::Free,
                &[],
            ))
            .unwrap();
        }
        match page.next {
            Some(cursor) => q.after = Some(cursor),
            None => break,
        }
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no listing repeats");
    assert_eq!(
        seen.len(),
        45,
        "every listing present at the start appears once"
    );
}

#[test]
fn the_index_is_rebuilt_from_a_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    {
        let c = Catalog::new(Arc::new(SqliteCatalog::open(Some(&path)).unwrap())).unwrap();
        c.publish(&listing(
            "p",
            "Persistent Plugin",
            "tools",
            Pricing::Free,
            &[],
        ))
        .unwrap();
        use_and_rate(&c, "p", 3, &|_| 4);
    }
    let c = Catalog::new(Arc::new(SqliteCatalog::open(Some(&path)).unwrap())).unwrap();
    let hit = &c
        .search(&Query {
            text: "persistent".into(),
            ..Default::default()
        })
        .hits[0];
    assert_eq!((hit.votes, hit.mean), (3, 4.0));
    assert_eq!(
        c.store()
            .analytics("p")
            .unwrap()
            .active_by_version
            .get("1.0.0"),
        Some(&3)
    );
}

/// Listings in Arabic are found however the query is voweled or spelled
/// (hamza forms, ta marbuta, tatweel), and the last word of a query may be
/// the start of a word, as it is while someone types.
#[test]
fn arabic_text_and_words_still_being_typed_are_found() {
    let c = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    let mut ar = listing(
        "order-alerts-ar",
        "تنبيهات الطلبات",
        "notifications",
        Pricing::Free,
        &[],
    );
    ar.summary = "أرسل إشعاراً فوريّاً عند كل طلبٍ جديدٍ إلى مـتـجرك".into();
    c.publish(&ar).unwrap();
    c.publish(&listing(
        "order-notifier",
        "Order Notifier",
        "notifications",
        Pricing::Free,
        &[],
    ))
    .unwrap();
    let mut labels = listing(
        "shipping-labels",
        "Shipping Labels",
        "shipping",
        Pricing::Free,
        &[],
    );
    labels.summary = "Thermal label printing".into();
    c.publish(&labels).unwrap();
    let found = |text: &str| {
        matching(
            &c,
            &Query {
                text: text.into(),
                ..Default::default()
            },
        )
    };
    for query in [
        "الطلبات",      // as written
        "تنبيهات",      // the other word of the name
        "ارسل اشعارا",  // without hamza or tanween
        "طلب جديد",     // the unvoweled forms of طلبٍ جديدٍ
        "متجرك",        // written without the tatweel
        "فوريا",        // without shadda or tanween
        "تنبيهات الطل", // still typing
    ] {
        assert_eq!(found(query), ["order-alerts-ar"], "{query}");
    }
    assert_eq!(
        found("notif"),
        ["order-alerts-ar", "order-notifier"],
        "both are in `notifications`"
    );
    assert_eq!(found("notifie"), ["order-notifier"]);
    assert_eq!(found("order notifie"), ["order-notifier"]);
    assert_eq!(
        found("ord"),
        ["order-alerts-ar", "order-notifier", "shipping-labels"],
        "`order` in two slugs, `orders` in every listing's tags"
    );
    assert!(
        found("noti order").is_empty(),
        "only the last word may be partial"
    );
    assert!(
        found("order zzz").is_empty(),
        "a last word that starts nothing matches nothing"
    );
    assert!(found("zzz").is_empty());
    assert_eq!(found("ship"), ["shipping-labels"]);
    assert_eq!(found("SHIPPING labels"), ["shipping-labels"]);

    assert_eq!(found("thermal"), ["shipping-labels"]);

    // A republished listing is found by its new words only.
    let mut renamed = listing(
        "shipping-labels",
        "Parcel Printer",
        "shipping",
        Pricing::Free,
        &[],
    );
    renamed.tags = vec![];
    c.publish(&renamed).unwrap();
    assert!(
        found("thermal").is_empty(),
        "the old summary's words are gone"
    );
    assert_eq!(found("parcel"), ["shipping-labels"]);
}

/// A query that is a listing's whole name or slug puts that listing first,
/// even above better-rated ones, and paging stays stable across the two.
#[test]
fn an_exact_name_or_slug_comes_first() {
    let c = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    for (plugin, name) in [
        ("chat", "Chat"),
        ("chat-pro", "Chat Pro"),
        ("team-chat", "Team Chat"),
        ("sales-chat", "متجر Chat"),
    ] {
        c.publish(&listing(plugin, name, "support", Pricing::Free, &[]))
            .unwrap();
    }
    use_and_rate(&c, "chat-pro", 50, &|_| 5);
    use_and_rate(&c, "team-chat", 50, &|_| 4);
    use_and_rate(&c, "chat", 3, &|_| 2);
    let order = |text: &str, limit: usize| -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = c.search(&Query {
                text: text.into(),
                limit,
                after,
                ..Default::default()
            });
            out.extend(
                page.hits
                    .iter()
                    .map(|h| (h.listing.plugin.clone(), h.exact)),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    };
    let chat = order("chat", 20);
    assert_eq!(chat[0], ("chat".to_owned(), true), "{chat:?}");
    assert_eq!(
        chat[1..]
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
        ["chat-pro", "team-chat", "sales-chat"],
        "the rest by rating"
    );
    assert_eq!(order("chat", 1), chat, "one per page, the same order");
    assert_eq!(order("CHAT PRO", 20)[0], ("chat-pro".to_owned(), true));
    assert_eq!(order("team-chat", 20)[0], ("team-chat".to_owned(), true));
    assert_eq!(order("chat p", 20)[0], ("chat-pro".to_owned(), false));
    assert_eq!(order("متجر chat", 20), [("sales-chat".to_owned(), true)]);
}

/// Listings are checked when published: categories nest with `::` and a
/// parent's filter includes its children; tags are normalized and limited.
#[test]
fn categories_nest_and_listings_are_checked() {
    let c = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    for (plugin, category) in [
        ("labels", "shipping::labels"),
        ("tracking", "shipping::tracking"),
        ("rates", "shipping"),
        ("shippingish", "shipping-tools"),
    ] {
        c.publish(&listing(plugin, plugin, category, Pricing::Free, &[]))
            .unwrap();
    }
    let in_category = |category: &str| {
        matching(
            &c,
            &Query {
                category: Some(category.into()),
                ..Default::default()
            },
        )
    };
    assert_eq!(in_category("shipping"), ["labels", "rates", "tracking"]);
    assert_eq!(in_category("shipping::labels"), ["labels"]);
    assert_eq!(in_category("shipping-tools"), ["shippingish"]);

    let mut tagged = listing("tagged", "Tagged", "tools", Pricing::Free, &[]);
    tagged.tags = vec!["  Order  Sync ".into(), "order sync".into(), "SMS".into()];
    c.publish(&tagged).unwrap();
    assert_eq!(
        c.store().listing("tagged").unwrap().unwrap().tags,
        ["order-sync", "sms"],
        "stored normalized, duplicates dropped"
    );
    let refused = |l: Listing, says: &str| {
        let e = c.publish(&l).unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    };
    let ok = || listing("fine", "Fine", "tools", Pricing::Free, &[]);
    refused(
        Listing {
            tags: (0..13).map(|i| format!("t{i}")).collect(),
            ..ok()
        },
        "keep the 12",
    );
    refused(
        Listing {
            tags: vec![" ".into()],
            ..ok()
        },
        "a tag is empty",
    );
    for bad in ["", "Shipping", "shipping::", "::labels", "ship ping"] {
        refused(
            Listing {
                category: bad.into(),
                ..ok()
            },
            "is not a category",
        );
    }
    refused(
        Listing {
            plugin: "Fine!".into(),
            ..ok()
        },
        "is not a plugin slug",
    );
    refused(
        Listing {
            name: " ".into(),
            ..ok()
        },
        "needs a display name",
    );
    assert_eq!(
        c.store().listing("fine").unwrap(),
        None,
        "nothing refused was stored"
    );
}
