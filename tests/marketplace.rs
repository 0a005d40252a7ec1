//! The marketplace with real plugins: each automated review check with a
//! package that passes and one that fails it, and the end-to-end path from
//! source to an installed, updated and rolled-back plugin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tests::guest;
use vodo_core::{Consent, Host, InstallationId, Manifest, SecretKey, Timestamp};
use vodo_marketplace::Error;
use vodo_marketplace::catalog::{Catalog, InstallEvent, Listing, MemoryCatalog, Query};
use vodo_marketplace::index::{Client, DirSource, Repository, RoleSigners, SigningKey};
use vodo_marketplace::installer::{Channel, Installer, UpdatePolicy};
use vodo_marketplace::package::Package;
use vodo_marketplace::pricing::Pricing;
use vodo_marketplace::review::{Policy, Report, Severity, review};
use vodo_marketplace::submissions::{
    AUTOMATED_REVIEW, Desk, MemorySubmissions, SqliteSubmissions, SubmissionFilter, SubmissionStore,
};
use vodo_marketplace::workflow::{Actor, Role, State, Submission, WorkflowError};
use vodo_sandbox::{Limits, MemoryServices, Sandbox, SandboxConfig};

const NOTIFIER: &str = include_str!("../examples/plugins/order-notifier/plugin.json");

struct Env {
    sandbox: Arc<Sandbox>,
    _storage: tempfile::TempDir,
    notifier: Vec<u8>,
    hostile: Vec<u8>,
    good: Vec<u8>,
}

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let storage = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(
        Sandbox::new(
            SandboxConfig {
                storage_root: Some(storage.path().to_path_buf()),
                ..SandboxConfig::default()
            },
            &Host::in_memory(&SecretKey::generate().unwrap()),
            Arc::new(MemoryServices::new()),
        )
        .unwrap(),
    );
    Env {
        sandbox,
        _storage: storage,
        notifier: guest("order-notifier"),
        hostile: guest("hostile"),
        good: guest("good"),
    }
});

fn package(manifest: &str, component: &[u8], samples: &[(&str, &str)]) -> Vec<u8> {
    Package {
        manifest: manifest.into(),
        readme: "# Order Notifier\n".into(),
        samples: samples
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect(),
        component: component.to_vec(),
    }
    .to_bytes()
}

fn run(bytes: &[u8], policy: &Policy) -> Report {
    review(bytes, policy, ENV.sandbox.as_ref()).0
}

fn has(report: &Report, check: &str, severity: Severity, text: &str) -> bool {
    report
        .of(check)
        .any(|f| f.severity == severity && (f.message.contains(text) || f.location.contains(text)))
}

fn notifier_ok() -> Vec<u8> {
    package(NOTIFIER, &ENV.notifier, &[("order.created", "1001")])
}

#[test]
fn a_good_package_passes_every_check() {
    let r = run(&notifier_ok(), &Policy::default());
    assert_eq!(r.errors().count(), 0, "{:#?}", r.findings);
}

/// Reviews of one package running at once (a resubmission while the first
/// review runs, two reviewers pressing "re-run") must not share a trial
/// installation: one trial's clean-up would delete the other's storage folder
/// while its plugin writes to it.
#[test]
fn concurrent_reviews_of_one_package_do_not_share_storage() {
    let bytes = package(NOTIFIER, &ENV.notifier, &[("order.created", "1001"); 6]);
    std::thread::scope(|s| {
        let reviews: Vec<_> = (0..6)
            .map(|_| s.spawn(|| run(&bytes, &Policy::default())))
            .collect();
        for review in reviews {
            let r = review.join().unwrap();
            assert_eq!(r.errors().count(), 0, "{:#?}", r.findings);
        }
    });
    let left: Vec<_> = std::fs::read_dir(ENV._storage.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("__trial__"))
        .collect();
    assert!(left.is_empty(), "trial folders left behind: {left:?}");
}

#[test]
fn package_check() {
    let policy = Policy::default();
    let mut corrupt = notifier_ok();
    *corrupt.last_mut().unwrap() ^= 1;
    assert!(has(
        &run(&corrupt, &policy),
        "package",
        Severity::Error,
        "checksum"
    ));
    assert!(has(
        &run(
            &notifier_ok(),
            &Policy {
                max_package_bytes: 1000,
                ..Policy::default()
            }
        ),
        "package",
        Severity::Error,
        "limit"
    ));
    let bad_manifest = package(
        &NOTIFIER.replace("\"order-notifier\"", "\"Order Notifier\""),
        &ENV.notifier,
        &[],
    );
    assert!(has(
        &run(&bad_manifest, &policy),
        "package",
        Severity::Error,
        "$.slug"
    ));
    let not_wasm = package(NOTIFIER, b"\0asm but not really", &[]);
    assert!(has(
        &run(&not_wasm, &policy),
        "package",
        Severity::Error,
        "does not validate"
    ));
}

#[test]
fn permissions_check() {
    let policy = Policy::default();
    let undeclared = NOTIFIER.replace(r#""network": { "outbound": ["hooks.slack.com"] },"#, "");
    assert_ne!(undeclared, NOTIFIER);
    let r = run(&package(&undeclared, &ENV.notifier, &[]), &policy);
    assert!(
        has(&r, "permissions", Severity::Error, "vodo:plugin/http"),
        "{:#?}",
        r.findings
    );
    // The good plugin uses entities only; asking for users too is broader than its code.
    let good = r#"{"name":"Good","slug":"good","version":"1.0.0","description":"d","author":"A","license":"MIT","entry":"good.wasm","host_api":"^0.1",
        "permissions":{"entities":{"read":["order"],"write":["order_note"]},"users":"read"}}"#;
    let r = run(&package(good, &ENV.good, &[]), &policy);
    assert!(
        has(&r, "permissions", Severity::Warning, "$.permissions.users"),
        "{:#?}",
        r.findings
    );
    assert_eq!(
        r.of("permissions")
            .filter(|f| f.severity == Severity::Error)
            .count(),
        0
    );
}

#[test]
fn license_check() {
    let policy = Policy::default();
    let with = |l: &str| {
        run(
            &package(
                &NOTIFIER.replace("\"MIT\"", &format!("\"{l}\"")),
                &ENV.notifier,
                &[],
            ),
            &policy,
        )
    };
    assert_eq!(with("MIT OR Apache-2.0").of("license").count(), 0);
    assert!(has(
        &with("GPL-3.0-only"),
        "license",
        Severity::Error,
        "not accepted"
    ));
    assert!(has(
        &with("MIT AND Banana-1.0"),
        "license",
        Severity::Error,
        "not a valid SPDX"
    ));
    // A manifest may leave out its license and description; the marketplace may not.
    let bare = NOTIFIER.replace("  \"license\": \"MIT\",\n", "").replace(
        "  \"description\": \"Posts every new order to the merchant's chat channel.\",\n",
        "",
    );
    assert!(Manifest::parse(&bare).is_ok());
    let r = run(&package(&bare, &ENV.notifier, &[]), &policy);
    assert!(
        has(&r, "license", Severity::Error, "has no `license`"),
        "{:#?}",
        r.findings
    );
    assert!(
        has(&r, "package", Severity::Error, "has no `description`"),
        "{:#?}",
        r.findings
    );
}

#[test]
fn performance_check() {
    let policy = Policy {
        budget: vodo_core::runtime::TrialBudget {
            fuel: None,
            memory: 32 << 20,
            timeout: Duration::from_millis(300),
        },
        ..Policy::default()
    };
    let hostile = r#"{"name":"H","slug":"hostile","version":"1.0.0","description":"d","author":"M","license":"MIT","entry":"h.wasm","host_api":"^0.1",
        "permissions":{"entities":["read:order"],"hooks":["subscribe:*","trigger:x.y"],"storage":{"max_size":1000,"allowed_types":["json"]},"network":{"outbound":["example.com"]},"users":"read"}}"#;
    let r = run(
        &package(hostile, &ENV.hostile, &[("loop", ""), ("memory", "")]),
        &policy,
    );
    assert!(
        has(&r, "performance", Severity::Error, "timeout"),
        "{:#?}",
        r.findings
    );
    assert!(
        has(&r, "performance", Severity::Error, "memory"),
        "{:#?}",
        r.findings
    );
    let r = run(&package(NOTIFIER, &ENV.notifier, &[]), &policy);
    assert!(has(
        &r,
        "performance",
        Severity::Warning,
        "no sample events"
    ));
    // A sample for an event the plugin does not subscribe to is refused, not passed.
    let r = run(
        &package(NOTIFIER, &ENV.notifier, &[("user.created", "1")]),
        &policy,
    );
    assert!(
        has(
            &r,
            "performance",
            Severity::Error,
            "hooks:subscribe:user.created"
        ),
        "{:#?}",
        r.findings
    );
    assert_eq!(run(&notifier_ok(), &policy).of("performance").count(), 0);
}

#[test]
fn compatibility_check() {
    let policy = Policy::default();
    let r = run(
        &package(
            &NOTIFIER.replace("\"^0.1\"", "\"^2.0\""),
            &ENV.notifier,
            &[],
        ),
        &policy,
    );
    assert!(has(&r, "compatibility", Severity::Error, "excludes"));
    let r = run(
        &package(
            &NOTIFIER.replace("\"host_api\": \"^0.1\",", ""),
            &ENV.notifier,
            &[],
        ),
        &policy,
    );
    assert!(has(
        &r,
        "compatibility",
        Severity::Warning,
        "no host API range"
    ));
    assert_eq!(run(&notifier_ok(), &policy).of("compatibility").count(), 0);
}

#[test]
fn security_check() {
    let policy = Policy::default();
    let r = run(
        &package(
            &NOTIFIER.replace("hooks.slack.com", "drop.payments.onion"),
            &ENV.notifier,
            &[],
        ),
        &policy,
    );
    assert!(
        has(&r, "security", Severity::Error, "*.onion"),
        "{:#?}",
        r.findings
    );
    let broad = NOTIFIER.replace(r#""write:order_note""#, r#""write:*""#);
    assert_ne!(broad, NOTIFIER);
    let r = run(&package(&broad, &ENV.notifier, &[]), &policy);
    assert!(has(
        &r,
        "security",
        Severity::Warning,
        "every kind of record"
    ));
    assert_eq!(run(&notifier_ok(), &policy).of("security").count(), 0);
}

#[test]
fn end_to_end_from_source_to_install_update_and_rollback() {
    let now = Timestamp(1_800_000_000_000);
    let day = Duration::from_secs(24 * 3600);
    let (developer, reviewer, admin) = (
        Actor {
            id: "dev@acme".into(),
            role: Role::Developer,
        },
        Actor {
            id: "rev@market".into(),
            role: Role::Reviewer,
        },
        Actor {
            id: "admin@market".into(),
            role: Role::Admin,
        },
    );
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
    let signers = RoleSigners {
        root: vec![&keys[0]],
        targets: vec![&keys[1]],
        snapshot: vec![&keys[2]],
        timestamp: vec![&keys[3]],
    };
    let cdn = tempfile::tempdir().unwrap();
    let mut repo = Repository::create(cdn.path(), &signers, now.plus(365 * day)).unwrap();
    let catalog = Catalog::new(Arc::new(MemoryCatalog::new())).unwrap();
    let market_db = tempfile::tempdir().unwrap();
    let desk = || {
        Desk::new(
            Arc::new(SqliteSubmissions::open(Some(&market_db.path().join("market.db"))).unwrap()),
            Policy::default(),
            ENV.sandbox.clone(),
        )
    };

    // Build, package, submit, review and publish two versions.
    let publish = |repo: &mut Repository, version: &str| {
        let manifest = NOTIFIER.replace("\"1.0.0\"", &format!("\"{version}\""));
        let bytes = package(&manifest, &ENV.notifier, &[("order.created", "1001")]);
        let s = desk().draft(&developer, &bytes, now).unwrap();
        assert_eq!(
            (s.plugin.as_str(), s.version.as_str()),
            ("order-notifier", version)
        );
        // Submitting runs the automated review on the stored package.
        let s = desk().submit(&s.id, &developer, now).unwrap();
        let report = s.report.clone().unwrap();
        assert_eq!(report.errors().count(), 0, "{:#?}", report.findings);
        // The reviewer's queue has it; a fresh desk over the same database
        // (the host restarted) serves it, with the exact bytes submitted.
        let queue = desk().list(&SubmissionFilter {
            state: Some(State::Submitted),
            ..Default::default()
        });
        assert_eq!(queue.unwrap().len(), 1);
        assert_eq!(
            desk().package(&s.id).unwrap(),
            bytes,
            "reviewers see the exact package submitted"
        );
        let d = desk();
        d.transition(&s.id, State::InReview, &reviewer, "", now)
            .unwrap();
        d.transition(&s.id, State::Testing, &reviewer, "", now)
            .unwrap();
        d.transition(&s.id, State::Approved, &reviewer, "", now)
            .unwrap();
        let s = d
            .transition(&s.id, State::Published, &admin, "", now)
            .unwrap();
        // The index takes plugin, version and host API from the package's own manifest.
        let path = repo
            .add_package(&d.package(&s.id).unwrap(), "stable")
            .unwrap();
        assert_eq!(path, format!("order-notifier/{version}.vpkg"));
        assert_eq!(
            repo.targets().targets[&path].host_api.as_deref(),
            Some("^0.1")
        );
        repo.publish(&signers, now, 30 * day, day).unwrap();
        let m = Manifest::parse(&manifest).unwrap();
        catalog
            .publish(&Listing {
                plugin: "order-notifier".into(),
                name: m.name.clone(),
                summary: m.description.clone().unwrap_or_default(),
                category: "notifications".into(),
                tags: vec!["orders".into(), "chat".into()],
                pricing: Pricing::Free,
                scopes: m.scopes().iter().map(ToString::to_string).collect(),
                version: version.into(),
            })
            .unwrap();
        assert_eq!(s.history.len(), 5);
    };
    publish(&mut repo, "1.0.0");

    // A host finds it in the catalog and installs it from the verified index.
    let found = catalog.search(&Query {
        text: "order notifier".into(),
        ..Default::default()
    });
    assert_eq!(found.hits[0].listing.plugin, "order-notifier");
    let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
    let source = DirSource(cdn.path().to_path_buf());
    client.update(&source, now).unwrap();
    let shop = InstallationId::new("shop-42");
    let (mut installed, pkg) = Installer::new(&client, &source)
        .install_latest("order-notifier", Channel::Stable, UpdatePolicy::Patch)
        .unwrap();
    assert_eq!(installed.version.to_string(), "1.0.0");
    let run_it = |pkg: &Package| {
        let m = Manifest::parse(&pkg.manifest).unwrap();
        let p = ENV
            .sandbox
            .install(
                &shop,
                &m,
                &pkg.component,
                &Consent::all(&m, "merchant@shop-42"),
                Limits::default(),
            )
            .unwrap();
        assert_eq!(
            ENV.sandbox.call_event(&p, "order.created", "7").result,
            Ok(())
        );
        m.version.to_string()
    };
    assert_eq!(run_it(&pkg), "1.0.0");
    catalog
        .store()
        .record(
            "order-notifier",
            "1.0.0",
            &shop,
            InstallEvent::Installed,
            now,
        )
        .unwrap();
    catalog
        .store()
        .record("order-notifier", "1.0.0", &shop, InstallEvent::Used, now)
        .unwrap();
    catalog
        .rate("order-notifier", &shop, 5, "does what it says", now)
        .unwrap();

    // A patch release arrives; the policy updates to it.
    publish(&mut repo, "1.0.1");
    client.update(&source, now).unwrap();
    let installer = Installer::new(&client, &source);
    let update = installer
        .update(&mut installed)
        .unwrap()
        .expect("a patch update");
    assert_eq!(
        (installed.version.to_string(), run_it(&update)),
        ("1.0.1".into(), "1.0.1".into())
    );
    catalog
        .store()
        .record(
            "order-notifier",
            "1.0.1",
            &shop,
            InstallEvent::Installed,
            now,
        )
        .unwrap();

    // The merchant rolls back; the installation is pinned and stays there.
    let back = installer
        .rollback(&mut installed, &semver::Version::new(1, 0, 0))
        .unwrap();
    assert_eq!(run_it(&back), "1.0.0");
    assert!(installed.pinned);
    assert!(
        installer.update(&mut installed).unwrap().is_none(),
        "a pinned installation is not updated"
    );

    // A minor release is not a patch update; a yanked version is neither installed nor rolled back to.
    publish(&mut repo, "1.1.0");
    repo.yank("order-notifier/1.0.1.vpkg").unwrap();
    repo.publish(&signers, now, 30 * day, day).unwrap();
    client.update(&source, now).unwrap();
    let installer = Installer::new(&client, &source);
    installed.pinned = false;
    assert!(
        installer.pending_update(&installed).is_none(),
        "1.0.1 is yanked and 1.1.0 is not a patch"
    );
    installed.policy = UpdatePolicy::Minor;
    assert_eq!(
        installer.pending_update(&installed).unwrap().0.to_string(),
        "1.1.0"
    );
    installed.version = semver::Version::new(1, 1, 0);
    assert!(
        installer
            .rollback(&mut installed, &semver::Version::new(1, 0, 1))
            .is_err(),
        "yanked"
    );
    assert!(
        installer
            .rollback(&mut installed, &semver::Version::new(1, 0, 0))
            .is_ok()
    );
    let analytics = catalog.store().analytics("order-notifier").unwrap();
    assert_eq!((analytics.installs, analytics.updates), (1, 1));
    assert_eq!(
        analytics.active_by_version.into_iter().collect::<Vec<_>>(),
        [("1.0.1".to_owned(), 1)]
    );
}

#[test]
fn channels_decide_which_releases_an_installation_sees() {
    let now = Timestamp(1_800_000_000_000);
    let day = Duration::from_secs(24 * 3600);
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
    let signers = RoleSigners {
        root: vec![&keys[0]],
        targets: vec![&keys[1]],
        snapshot: vec![&keys[2]],
        timestamp: vec![&keys[3]],
    };
    let cdn = tempfile::tempdir().unwrap();
    let mut repo = Repository::create(cdn.path(), &signers, now.plus(365 * day)).unwrap();
    for (version, channel, host_api) in [
        ("1.0.0", "stable", "^0.1"),
        ("1.1.0-beta.1", "beta", "^0.1"),
        ("1.0.1", "stable", "^0.1"),
        // Needs a newer host than this one.
        ("1.0.2", "stable", "^0.2"),
    ] {
        let bytes = package(
            &NOTIFIER
                .replace("\"1.0.0\"", &format!("\"{version}\""))
                .replace("\"^0.1\"", &format!("\"{host_api}\"")),
            b"component",
            &[],
        );
        let path = repo.add_package(&bytes, channel).unwrap();
        assert_eq!(path, format!("order-notifier/{version}.vpkg"));
    }
    repo.publish(&signers, now, 30 * day, day).unwrap();
    let mut client = Client::new(&repo.pinned_root().unwrap()).unwrap();
    let source = DirSource(cdn.path().to_path_buf());
    client.update(&source, now).unwrap();
    let installer = Installer::new(&client, &source).with_host_api(semver::Version::new(0, 1, 5));
    let (mut stable, _) = installer
        .install_latest("order-notifier", Channel::Stable, UpdatePolicy::Minor)
        .unwrap();
    let (beta, _) = installer
        .install_latest("order-notifier", Channel::Beta, UpdatePolicy::Minor)
        .unwrap();
    assert_eq!(
        (stable.version.to_string(), beta.version.to_string()),
        ("1.0.1".into(), "1.1.0-beta.1".into())
    );
    assert!(
        installer
            .install_latest("no-such-plugin", Channel::Beta, UpdatePolicy::None)
            .is_err()
    );

    // 1.0.2 needs host API ^0.2: this host neither updates to it nor rolls
    // "back" past it; a newer host takes it.
    assert_eq!(installer.pending_update(&stable), None);
    stable.version = semver::Version::new(1, 0, 0);
    assert_eq!(
        installer
            .pending_update(&stable)
            .map(|(v, _)| v.to_string()),
        Some("1.0.1".into())
    );
    let newer_host = Installer::new(&client, &source).with_host_api(semver::Version::new(0, 2, 0));
    assert_eq!(
        newer_host
            .pending_update(&stable)
            .map(|(v, _)| v.to_string()),
        Some("1.0.2".into())
    );
    stable.version = semver::Version::new(1, 0, 3);
    let refused = installer
        .rollback(&mut stable, &semver::Version::new(1, 0, 2))
        .unwrap_err();
    assert!(
        refused.to_string().contains("needs host API `^0.2`"),
        "{refused}"
    );
}

fn dev(id: &str) -> Actor {
    Actor {
        id: id.into(),
        role: Role::Developer,
    }
}

fn staff(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

fn memory_desk() -> Desk {
    Desk::new(
        Arc::new(MemorySubmissions::new()),
        Policy::default(),
        ENV.sandbox.clone(),
    )
}

/// The desk end to end with everything that should be refused: another
/// developer's moves and slugs, an unreadable package, a package that fails
/// review (blocked at approval, rejected, revised, resubmitted), and a
/// version that was already published.
#[test]
fn the_desk_reviews_every_submission_and_guards_slugs_owners_and_versions() {
    let desk = memory_desk();
    let (alice, reviewer) = (dev("alice"), staff("rev", Role::Reviewer));
    let now = Timestamp(1_800_000_000_000);
    let gpl = package(
        &NOTIFIER.replace("\"MIT\"", "\"GPL-3.0-only\""),
        &ENV.notifier,
        &[("order.created", "1001")],
    );

    assert!(matches!(
        desk.draft(&reviewer, &notifier_ok(), now),
        Err(Error::Invalid(m)) if m.contains("developers")
    ));
    assert!(matches!(
        desk.draft(&alice, b"not a package at all", now),
        Err(Error::Invalid(m)) if m.contains("cannot be read")
    ));

    let s = desk.draft(&alice, &gpl, now).unwrap();
    assert!(matches!(
        desk.submit(&s.id, &dev("mallory"), now),
        Err(Error::Workflow(WorkflowError::NotOwner { .. }))
    ));
    assert!(matches!(
        desk.draft(&dev("bob"), &notifier_ok(), now),
        Err(Error::Invalid(m)) if m.contains("belongs to another developer")
    ));

    // The review runs on submission; errors send it straight back with them as feedback.
    let s = desk.submit(&s.id, &alice, now).unwrap();
    assert_eq!(s.state, State::Rejected);
    let report = s.report.as_ref().unwrap();
    assert!(report.errors().any(|f| f.check == "license"), "{report:#?}");
    let feedback = s.feedback().unwrap();
    assert!(
        feedback.contains("1 error(s)") && feedback.contains("GPL-3.0-only"),
        "{feedback}"
    );
    assert_eq!(s.history.last().unwrap().by, AUTOMATED_REVIEW);
    assert!(matches!(
        desk.revise(&s.id, &alice, &notifier_ok(), now),
        Err(Error::Invalid(m)) if m.contains("only a draft")
    ));

    // A new attempt: back to draft, a new package, a new review.
    desk.transition(&s.id, State::Draft, &alice, "", now)
        .unwrap();
    let revised = desk.revise(&s.id, &alice, &notifier_ok(), now).unwrap();
    assert_eq!(
        revised.report, None,
        "the old report went with the old package"
    );
    assert_eq!(desk.package(&s.id).unwrap(), notifier_ok());
    let s = desk.submit(&s.id, &alice, now).unwrap();
    assert_eq!(
        s.state,
        State::Submitted,
        "a clean report waits for a person"
    );
    assert_eq!(s.report.as_ref().unwrap().errors().count(), 0);
    // The developer may withdraw it while it waits, and submit again.
    desk.transition(&s.id, State::Draft, &alice, "typo in the readme", now)
        .unwrap();
    let s = desk.submit(&s.id, &alice, now).unwrap();
    for to in [State::InReview, State::Testing, State::Approved] {
        desk.transition(&s.id, to, &reviewer, "", now).unwrap();
    }
    let s = desk
        .transition(
            &s.id,
            State::Published,
            &staff("admin", Role::Admin),
            "",
            now,
        )
        .unwrap();
    let moves: Vec<(State, State)> = s.history.iter().map(|t| (t.from, t.to)).collect();
    use State::*;
    assert_eq!(
        moves,
        [
            (Draft, Submitted),
            (Submitted, InReview), // the automated review took it
            (InReview, Rejected),  // and sent it back
            (Rejected, Draft),
            (Draft, Draft), // a new package
            (Draft, Submitted),
            (Submitted, Draft), // withdrawn
            (Draft, Submitted),
            (Submitted, InReview),
            (InReview, Testing),
            (Testing, Approved),
            (Approved, Published),
        ],
        "every move is recorded"
    );
    assert!(s.history.iter().any(|t| t.from == State::Draft
        && t.to == State::Draft
        && t.reason.starts_with("new package")));

    // Published versions never change.
    assert!(matches!(
        desk.draft(&alice, &notifier_ok(), now),
        Err(Error::Invalid(m)) if m.contains("bump the version")
    ));
    let next = package(
        &NOTIFIER.replace("\"1.0.0\"", "\"1.0.1\""),
        &ENV.notifier,
        &[("order.created", "1001")],
    );
    assert_eq!(desk.draft(&alice, &next, now).unwrap().version, "1.0.1");
    assert!(matches!(desk.get("sub_nope"), Err(Error::NotFound(_))));
}

/// A store that misbehaves on purpose: it can change packages behind the
/// desk's back, and it can hold every reader at a barrier so that concurrent
/// moves all start from the same read.
#[derive(Debug, Default)]
struct Hooked {
    inner: MemorySubmissions,
    tamper: bool,
    readers: Option<std::sync::Barrier>,
}

impl SubmissionStore for Hooked {
    fn put_package(&self, sha256: &str, bytes: &[u8]) -> vodo_marketplace::Result<()> {
        self.inner.put_package(sha256, bytes)
    }
    fn package(&self, sha256: &str) -> vodo_marketplace::Result<Option<Vec<u8>>> {
        Ok(self.inner.package(sha256)?.map(|mut b| {
            if self.tamper {
                let last = b.len() - 1;
                b[last] ^= 1;
            }
            b
        }))
    }
    fn create(&self, s: &Submission) -> vodo_marketplace::Result<()> {
        self.inner.create(s)
    }
    fn get(&self, id: &str) -> vodo_marketplace::Result<Option<Submission>> {
        let read = self.inner.get(id);
        if let Some(barrier) = &self.readers {
            barrier.wait();
        }
        read
    }
    fn update(&self, s: &Submission, moves: usize) -> vodo_marketplace::Result<bool> {
        self.inner.update(s, moves)
    }
    fn list(&self, f: &SubmissionFilter) -> vodo_marketplace::Result<Vec<Submission>> {
        self.inner.list(f)
    }
    fn claim(&self, plugin: &str, owner: &str) -> vodo_marketplace::Result<String> {
        self.inner.claim(plugin, owner)
    }
}

/// Developers racing to draft the same new slug: exactly one owns it.
#[test]
fn a_new_slug_goes_to_exactly_one_of_the_developers_racing_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteSubmissions::open(Some(&dir.path().join("m.db"))).unwrap());
    let desk = Desk::new(store, Policy::default(), ENV.sandbox.clone());
    let bytes = notifier_ok();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (desk, bytes) = (&desk, &bytes);
                scope.spawn(move || desk.draft(&dev(&format!("dev{i}")), bytes, Timestamp(1)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(Error::Invalid(m)) if m.contains("belongs to another developer")),
            "{r:?}"
        );
    }
    let owners: std::collections::HashSet<_> = desk
        .list(&SubmissionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| s.owner)
        .collect();
    assert_eq!(owners.len(), 1);
}

/// Eight reviewers take the same submission at once, all from the same read:
/// exactly one move lands, the others get a conflict, and the history records
/// one move, not eight.
#[test]
fn concurrent_moves_on_one_submission_land_once() {
    const REVIEWERS: usize = 8;
    let store = Arc::new(MemorySubmissions::new());
    let now = Timestamp(1);
    let plain = Desk::new(store.clone(), Policy::default(), ENV.sandbox.clone());
    let s = plain.draft(&dev("alice"), &notifier_ok(), now).unwrap();
    plain.submit(&s.id, &dev("alice"), now).unwrap();
    // The same submission, seen through a store that lets every reviewer
    // read before anyone writes.
    let hooked = Hooked {
        inner: MemorySubmissions::new(),
        tamper: false,
        readers: Some(std::sync::Barrier::new(REVIEWERS)),
    };
    hooked
        .inner
        .create(&store.get(&s.id).unwrap().unwrap())
        .unwrap();
    let hooked = Arc::new(hooked);
    let desk = Desk::new(hooked.clone(), Policy::default(), ENV.sandbox.clone());
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..REVIEWERS)
            .map(|i| {
                let (desk, id) = (&desk, &s.id);
                scope.spawn(move || {
                    let reviewer = staff(&format!("rev{i}"), Role::Reviewer);
                    desk.transition(id, State::InReview, &reviewer, "", now)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict(m)) if m.contains("reload")))
            .count(),
        REVIEWERS - 1,
        "{results:?}"
    );
    // Read past the barrier, which only holds groups of eight.
    let s = hooked.inner.get(&s.id).unwrap().unwrap();
    assert_eq!(s.state, State::InReview);
    assert_eq!(
        s.history.iter().filter(|t| t.to == State::InReview).count(),
        1
    );
}

#[test]
fn a_package_changed_in_the_store_is_never_shown_or_reviewed() {
    let store = Hooked {
        tamper: true,
        ..Hooked::default()
    };
    let desk = Desk::new(Arc::new(store), Policy::default(), ENV.sandbox.clone());
    let s = desk
        .draft(&dev("alice"), &notifier_ok(), Timestamp(1))
        .unwrap();
    assert!(matches!(desk.package(&s.id), Err(Error::Tampered(_))));
    assert!(matches!(
        desk.submit(&s.id, &dev("alice"), Timestamp(2)),
        Err(Error::Tampered(_))
    ));
    assert_eq!(
        desk.get(&s.id).unwrap().state,
        State::Draft,
        "a refused submit changes nothing"
    );
}
