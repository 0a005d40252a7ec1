//! Marketplace benchmarks beside their baselines in the same run.
//!
//! Run with `cargo bench -p benches --bench marketplace`; figures go to BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use vodo_core::{InstallationId, Timestamp};
use vodo_marketplace::catalog::{Catalog, InstallEvent, Listing, MemoryCatalog, Query};
use vodo_marketplace::index::{Client, DirSource, Repository, RoleSigners, SigningKey};
use vodo_marketplace::pricing::{Money, Pricing};

const WORDS: [&str; 16] = [
    "order", "shipping", "label", "invoice", "chat", "notify", "sms", "loyalty", "review",
    "coupon", "stock", "sync", "report", "tax", "wallet", "bundle",
];

fn listing(i: usize) -> Listing {
    let w = |k: usize| WORDS[(i * 7 + k * 3) % WORDS.len()];
    Listing {
        plugin: format!("plugin-{i:05}"),
        name: format!("{} {} {i}", w(0), w(1)),
        summary: format!("{} and {} for stores", w(2), w(3)),
        category: ["shipping", "marketing", "finance", "tools"][i % 4].into(),
        tags: vec![w(4).into(), w(5).into()],
        pricing: if i.is_multiple_of(3) {
            Pricing::Free
        } else {
            Pricing::OneTime {
                price: Money::new((i as i64 % 50) * 100 + 100, "SAR").unwrap(),
            }
        },
        scopes: if i.is_multiple_of(5) {
            vec!["network:outbound:api.example.com".into()]
        } else {
            vec!["entities:read:order".into()]
        },
        version: "1.0.0".into(),
    }
}

fn benches(c: &mut Criterion) {
    let catalog = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    let listings: Vec<Listing> = (0..10_000).map(listing).collect();
    for (i, l) in listings.iter().enumerate() {
        catalog.publish(l).unwrap();
        if i % 10 == 0 {
            let inst = InstallationId::new(format!("shop-{i}"));
            catalog
                .store()
                .record(&l.plugin, "1.0.0", &inst, InstallEvent::Used, Timestamp(1))
                .unwrap();
            catalog
                .rate(&l.plugin, &inst, (i % 5 + 1) as u8, "", Timestamp(1))
                .unwrap();
        }
    }
    let query = Query {
        text: "shipping label".into(),
        max_price_minor: Some(3000),
        without_scopes: vec!["network:".into()],
        limit: 20,
        ..Default::default()
    };
    assert!(!catalog.search(&query).hits.is_empty());
    let mut g = c.benchmark_group("catalog_search_10k");
    g.bench_function("vodo/text_filters_ranked_page", |b| {
        b.iter(|| catalog.search(black_box(&query)))
    });
    g.bench_function("vodo/last_word_still_typed", |b| {
        // "s" starts `shipping`, `sms`, `stock`, `sync`, `stores`: the widest prefix.
        let q = Query {
            text: "label s".into(),
            ..query.clone()
        };
        assert!(!catalog.search(&q).hits.is_empty());
        b.iter(|| catalog.search(black_box(&q)))
    });
    g.bench_function("vodo/browse_category_first_page", |b| {
        let q = Query {
            category: Some("finance".into()),
            ..Default::default()
        };
        b.iter(|| catalog.search(black_box(&q)))
    });
    // Baseline: a naive scan with lowercase substring matching and the same
    // filters over every listing (what must happen before any ranking).
    g.bench_function("naive_scan/text_filters", |b| {
        b.iter(|| {
            let words: Vec<String> = query.text.split(' ').map(str::to_lowercase).collect();
            listings
                .iter()
                .filter(|l| {
                    let hay = format!(
                        "{} {} {} {}",
                        l.name,
                        l.summary,
                        l.category,
                        l.tags.join(" ")
                    )
                    .to_lowercase();
                    words.iter().all(|w| hay.contains(w.as_str()))
                })
                .filter(|l| l.pricing.price().is_none_or(|p| p.minor <= 3000))
                .filter(|l| !l.scopes.iter().any(|s| s.starts_with("network:")))
                .count()
        })
    });
    g.finish();

    // Signed index: one full client update (4 signatures, 3 hashes) and one package fetch.
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
    let signers = RoleSigners {
        root: vec![&keys[0]],
        targets: vec![&keys[1]],
        snapshot: vec![&keys[2]],
        timestamp: vec![&keys[3]],
    };
    let now = Timestamp(1_800_000_000_000);
    let mut repo = Repository::create(
        dir.path(),
        &signers,
        now.plus(Duration::from_secs(3_600_000)),
    )
    .unwrap();
    let package = vec![7u8; 100 << 10];
    repo.add("p", "1.0.0", "stable", &package).unwrap();
    repo.publish(
        &signers,
        now,
        Duration::from_secs(86_400),
        Duration::from_secs(86_400),
    )
    .unwrap();
    let source = DirSource(dir.path().to_path_buf());
    let pinned = repo.pinned_root().unwrap();
    let mut client = Client::new(&pinned).unwrap();
    client.update(&source, now).unwrap();

    let mut g = c.benchmark_group("signed_index");
    g.bench_function("vodo/client_update_4_roles", |b| {
        b.iter(|| {
            let mut c = Client::new(&pinned).unwrap();
            c.update(&source, now).unwrap();
        })
    });
    g.bench_function("vodo/fetch_and_verify_100kib_package", |b| {
        b.iter(|| {
            client
                .fetch_package(&source, black_box("p/1.0.0.vpkg"))
                .unwrap()
        })
    });
    // Floors: one raw ed25519 verification, and SHA-256 of the same 100 KiB.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let msg = vec![1u8; 300];
    let sig = pair.sign(&msg);
    let pk = UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref().to_vec());
    g.bench_function("floor/raw_ed25519_verify", |b| {
        b.iter(|| pk.verify(black_box(&msg), sig.as_ref()).unwrap())
    });
    g.bench_function("floor/raw_sha256_100kib", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&package)))
    });
    g.finish();
}

criterion_group! {
    name = marketplace;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(marketplace);
