//! Distribution over HTTP: the signed index served for CDNs and followed by
//! another host, channels and update policies, the updater (health-gated,
//! held for consent, rolled back when the new version fails in service),
//! upgrades, rollbacks and yanks by the people allowed to, every step
//! audited, and a tampered package refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use vodo_core::audit::{AuditAction, AuditFilter, AuditKind, LifecycleChange};
use vodo_core::{InstallationId, PluginId};
use vodo_marketplace::index::{Client, IndexError, Source};
use vodo_server::{Platform, PlatformConfig};

/// A package of the `good` component under `manifest` at `version`.
fn good(version: &str, manifest: &str) -> Vec<u8> {
    let mut m: Value = serde_json::from_str(manifest).unwrap();
    m["version"] = version.into();
    package_of(&m.to_string())
}

fn lifecycle(platform: &Platform, installation: &str) -> Vec<(LifecycleChange, String)> {
    platform
        .audit(&AuditFilter {
            installation: Some(InstallationId::new(installation)),
            kinds: vec![AuditKind::Lifecycle],
            ..AuditFilter::default()
        })
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event.action {
            AuditAction::Lifecycle { change, detail } => Some((change, detail)),
            _ => None,
        })
        .collect()
}

async fn get(app: &axum::Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(app, b.body(axum::body::Body::empty()).unwrap()).await
}

/// A host that follows the index over HTTP, as another server or a CDN's
/// client would.
#[derive(Debug)]
struct HttpSource(String);

impl Source for HttpSource {
    fn fetch(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, IndexError> {
        let r = ureq::get(&format!("{}/index/{name}", self.0))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .map_err(|_| IndexError::Missing(name.into()))?;
        if r.status() == 404 {
            return Ok(None);
        }
        r.into_body()
            .with_config()
            .limit(max)
            .read_to_vec()
            .map(Some)
            .map_err(|_| IndexError::TooLarge(name.into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_index_is_served_for_cdns_and_another_host_follows_it() {
    let f = fixture();
    // Metadata: the timestamp is short-lived, the rest immutable, all with
    // strong ETags that a CDN revalidates with If-None-Match.
    let ts = get(&f.app, "/index/timestamp.json", &[]).await;
    assert_eq!(ts.status, StatusCode::OK, "{}", ts.text());
    assert_eq!(ts.headers[header::CACHE_CONTROL], vodo_server::SHORT);
    let etag = ts.headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let again = get(&f.app, "/index/timestamp.json", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.headers[header::ETAG], etag.as_str());
    let other = get(
        &f.app,
        "/index/timestamp.json",
        &[("if-none-match", "\"0\", W/\"1\"")],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    let snapshot = ts.json()["signed"]["snapshot_version"].as_u64().unwrap();
    let snap = get(&f.app, &format!("/index/{snapshot}.snapshot.json"), &[]).await;
    assert_eq!(snap.status, StatusCode::OK);
    assert_eq!(snap.headers[header::CACHE_CONTROL], vodo_server::IMMUTABLE);
    let targets_version = snap.json()["signed"]["targets_version"].as_u64().unwrap();
    let targets = get(
        &f.app,
        &format!("/index/{targets_version}.targets.json"),
        &[],
    )
    .await;
    let listed = targets.json()["signed"]["targets"]["good/1.0.0.vpkg"].clone();
    assert_eq!(listed["channel"], "stable");
    let sha = listed["sha256"].as_str().unwrap();

    // Packages: content-addressed, immutable, the hash as the tag, ranges.
    let pkg = get(&f.app, &format!("/index/targets/{sha}.vpkg"), &[]).await;
    assert_eq!(pkg.status, StatusCode::OK);
    assert_eq!(pkg.headers[header::CACHE_CONTROL], vodo_server::IMMUTABLE);
    assert_eq!(pkg.headers[header::ETAG], format!("\"{sha}\"").as_str());
    assert_eq!(pkg.body.len() as u64, listed["length"].as_u64().unwrap());
    assert_eq!(
        vodo_core::digest::hex(&vodo_core::digest::sha256(&pkg.body)),
        sha
    );
    let head = get(
        &f.app,
        &format!("/index/targets/{sha}.vpkg"),
        &[("range", "bytes=0-7")],
    )
    .await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.body, b"VODOPKG1");
    let cached = get(
        &f.app,
        &format!("/index/targets/{sha}.vpkg"),
        &[("if-none-match", &format!("\"{sha}\""))],
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);

    // Nothing else of the data folder is reachable.
    for path in [
        "/index/..%2Fsecret.key",
        "/index/..%2Findex-keys%2Froot.pk8",
        "/index/index-trust.json",
        "/index/targets/..%2F..%2Fsecret.key",
        "/index/targets/abc.vpkg",
        &format!("/index/targets/{}.vpkg", "0".repeat(64)),
        "/index/99.root.json",
        "/index/1.root.json.tmp",
    ] {
        let a = get(&f.app, path, &[]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.text());
        assert_eq!(a.code(), "no_index_file", "{path}");
    }

    // Another host pins root 1 and follows the index over real HTTP: it
    // verifies the chain and a package, and sees a release published later.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let platform = Arc::clone(&f.platform);
    tokio::spawn(vodo_server::serve(
        platform,
        listener,
        std::future::pending(),
        std::time::Duration::from_secs(1),
    ));
    let root = get(&f.app, "/index/1.root.json", &[]).await.body;
    let b = base.clone();
    let (mut client, bytes) = tokio::task::spawn_blocking(move || {
        let source = HttpSource(b);
        let mut client = Client::new(&root).unwrap();
        client.update(&source, vodo_core::Timestamp::now()).unwrap();
        let bytes = client.fetch_package(&source, "good/1.0.0.vpkg").unwrap();
        (client, bytes)
    })
    .await
    .unwrap();
    assert_eq!(bytes, pkg.body);
    f.platform.publish_package(&good("1.0.1", GOOD_1)).unwrap();
    let b = base.clone();
    let client = tokio::task::spawn_blocking(move || {
        client
            .update(&HttpSource(b), vodo_core::Timestamp::now())
            .unwrap();
        client
    })
    .await
    .unwrap();
    assert!(client.target("good/1.0.1.vpkg").is_some());
    // The same version with other bytes is refused: a listed release never changes.
    let changed = vodo_marketplace::package::Package {
        manifest: GOOD_1.replace(r#""version": "1.0.0""#, r#""version": "1.0.1""#),
        readme: "changed".into(),
        samples: Vec::new(),
        component: test_support::guest("good"),
    };
    assert!(matches!(
        f.platform.publish_package(&changed.to_bytes()),
        Err(vodo_server::ServerError::Invalid { .. })
    ));
}

async fn updates(app: &axum::Router, who: &Who, installation: &str) -> Value {
    let a = send(
        app,
        who.request(
            Method::GET,
            &format!("/v1/installations/{installation}/plugins/good/updates"),
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

async fn run(app: &axum::Router, admin: &Who) -> Vec<Value> {
    let a = send(app, admin.request(Method::POST, "/v1/updates/run", None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()["report"].as_array().unwrap().clone()
}

fn running(platform: &Platform, installation: &str, slug: &str) -> String {
    platform
        .sandbox
        .get(&InstallationId::new(installation), &PluginId::new(slug))
        .unwrap()
        .manifest
        .version
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updater_follows_channels_and_policies_and_rolls_back_what_fails() {
    let f = fixture();
    let (app, platform) = (f.app.clone(), Arc::clone(&f.platform));
    let admin = sign_in(&app, "admin@x.test").await;
    let merchant = sign_in(&app, "a@x.test").await;
    assert_eq!(
        install(&app, &merchant, "shop-a", "good").await.status,
        StatusCode::CREATED
    );

    let v = updates(&app, &merchant, "shop-a").await;
    assert_eq!(
        (
            v["channel"].as_str(),
            v["policy"].as_str(),
            v["pinned"].as_bool()
        ),
        (Some("stable"), Some("minor"), Some(false))
    );
    assert_eq!(v["current"], "1.0.0");
    assert_eq!(v["pending"], Value::Null);

    // A stable patch and a beta are published; the stable channel sees only the patch.
    platform.publish_package(&good("1.0.1", GOOD_1)).unwrap();
    platform
        .publish_package(&good("1.1.0-beta.1", GOOD_1))
        .unwrap();
    let v = updates(&app, &merchant, "shop-a").await;
    assert_eq!(v["pending"], "1.0.1");
    let channels: Vec<(String, String)> = v["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_str().unwrap().into(),
                r["channel"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        [
            ("1.0.0".into(), "stable".into()),
            ("1.0.1".into(), "stable".into()),
            ("1.1.0-beta.1".into(), "beta".into())
        ]
    );

    // Only an admin runs the updater.
    for who in [&merchant, &sign_in(&app, "reviewer@x.test").await] {
        let a = send(&app, who.request(Method::POST, "/v1/updates/run", None)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    }
    let report = run(&app, &admin).await;
    assert_eq!(
        report,
        [
            json!({ "installation": "shop-a", "plugin": "good", "outcome": "updated", "from": "1.0.0", "to": "1.0.1" })
        ]
    );
    assert_eq!(running(&platform, "shop-a", "good"), "1.0.1");
    let v = updates(&app, &merchant, "shop-a").await;
    assert_eq!(v["watch"]["previous"], "1.0.0");
    assert!(
        lifecycle(&platform, "shop-a")
            .iter()
            .any(|(c, d)| *c == LifecycleChange::Upgraded && d.contains("1.0.0 -> 1.0.1"))
    );
    assert!(run(&app, &admin).await.is_empty(), "nothing more to do");

    // 1.0.1 fails in service until its circuit opens: the next run goes
    // back to 1.0.0, holds 1.0.1, and audits why.
    let plugin = platform
        .sandbox
        .get(&InstallationId::new("shop-a"), &PluginId::new("good"))
        .unwrap();
    for _ in 0..20 {
        let call = platform
            .sandbox
            .call_event_async(&plugin, "order.created", "not\"json")
            .await;
        assert!(call.result.is_err());
    }
    let report = run(&app, &admin).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["outcome"], "rolled_back");
    assert_eq!(
        (report[0]["from"].as_str(), report[0]["to"].as_str()),
        (Some("1.0.1"), Some("1.0.0"))
    );
    assert!(
        report[0]["reason"]
            .as_str()
            .unwrap()
            .contains("circuit opened")
    );
    assert_eq!(running(&platform, "shop-a", "good"), "1.0.0");
    let v = updates(&app, &merchant, "shop-a").await;
    assert_eq!(v["held"]["version"], "1.0.1");
    assert_eq!(v["watch"], Value::Null);
    let health = send(
        &app,
        merchant.request(
            Method::GET,
            "/v1/installations/shop-a/plugins/good/health",
            None,
        ),
    )
    .await;
    assert_eq!(
        health.json()["status"],
        "healthy",
        "the failed version's breaker is forgotten"
    );
    assert!(
        lifecycle(&platform, "shop-a")
            .iter()
            .any(|(c, d)| *c == LifecycleChange::RolledBack
                && d.contains("1.0.1 -> 1.0.0 by the updater"))
    );
    assert!(
        run(&app, &admin).await.is_empty(),
        "a held release is not retried"
    );

    // The merchant moves to the beta channel: the beta is newer than the held patch.
    let put = |who: &Who, body: Value| {
        who.request(
            Method::PUT,
            "/v1/installations/shop-a/plugins/good/updates",
            Some(body),
        )
    };
    let a = send(
        &app,
        put(
            &merchant,
            json!({ "channel": "beta", "policy": "minor", "pinned": false }),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["channel"], "beta");
    let report = run(&app, &admin).await;
    assert_eq!(report[0]["to"], "1.1.0-beta.1", "{report:?}");

    // A release that asks for more waits for consent, audited once.
    platform.publish_package(&good("1.2.0", GOOD_2)).unwrap();
    let report = run(&app, &admin).await;
    assert_eq!(report[0]["outcome"], "held", "{report:?}");
    assert!(
        report[0]["reason"]
            .as_str()
            .unwrap()
            .contains("entities:read:customer")
    );
    assert!(run(&app, &admin).await.is_empty());
    let held: Vec<_> = lifecycle(&platform, "shop-a")
        .into_iter()
        .filter(|(c, _)| *c == LifecycleChange::UpdateHeld)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    let v = updates(&app, &merchant, "shop-a").await;
    assert_eq!(v["pending"], "1.2.0");
    assert_eq!(v["pending_consent"][0]["scope"], "entities:read:customer");
    let upgrade = |who: &Who, body: Value| {
        who.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/upgrade",
            Some(body),
        )
    };
    let a = send(&app, upgrade(&merchant, json!({ "version": "1.2.0" }))).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text());
    assert!(a.text().contains("entities:read:customer"), "{}", a.text());
    let a = send(
        &app,
        upgrade(
            &merchant,
            json!({ "version": "1.2.0", "consent": ["entities:read:customer"] }),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["version"], "1.2.0");
    assert_eq!(
        updates(&app, &merchant, "shop-a").await["held"],
        Value::Null
    );

    // The merchant rolls back to 1.0.0 and is pinned there.
    let rollback = |who: &Who, version: &str| {
        who.request(
            Method::POST,
            "/v1/installations/shop-a/plugins/good/rollback",
            Some(json!({ "version": version })),
        )
    };
    let a = send(&app, rollback(&merchant, "1.0.0")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["version"], "1.0.0");
    assert_eq!(updates(&app, &merchant, "shop-a").await["pinned"], true);
    assert!(lifecycle(&platform, "shop-a").iter().any(
        |(c, d)| *c == LifecycleChange::RolledBack && d.contains("1.2.0 -> 1.0.0 by a@x.test")
    ));
    assert!(run(&app, &admin).await.is_empty(), "pinned");

    // Hostile and mistaken requests.
    for (req, status, code) in [
        (
            rollback(&merchant, "1.0.0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            rollback(&merchant, "0.9.0"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            rollback(&merchant, "one"),
            StatusCode::BAD_REQUEST,
            "bad_version",
        ),
        (
            upgrade(&merchant, json!({ "version": "1.0.0" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            upgrade(&merchant, json!({ "version": "7.0.0" })),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            upgrade(&merchant, json!({ "version": "1.0.1", "force": true })),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            put(
                &merchant,
                json!({ "channel": "nightly", "policy": "minor", "pinned": false }),
            ),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            put(
                &merchant,
                json!({ "channel": "beta", "policy": "always", "pinned": false }),
            ),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            put(
                &sign_in(&app, "b@x.test").await,
                json!({ "channel": "beta", "policy": "minor", "pinned": false }),
            ),
            StatusCode::FORBIDDEN,
            "not_yours",
        ),
        (
            rollback(&sign_in(&app, "reviewer@x.test").await, "1.0.0"),
            StatusCode::FORBIDDEN,
            "not_yours",
        ),
        (
            rollback(
                &Who {
                    csrf: None,
                    ..merchant.clone()
                },
                "1.0.0",
            ),
            StatusCode::FORBIDDEN,
            "csrf",
        ),
        (
            rollback(&Who::default(), "1.0.0"),
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
        ),
    ] {
        let uri = req.uri().to_string();
        let a = send(&app, req).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{uri}: {}",
            a.text()
        );
    }
    let a = send(
        &app,
        merchant.request(
            Method::GET,
            "/v1/installations/shop-a/plugins/hostile/updates",
            None,
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text());

    // Yanking is for reviewers; a yanked release is not upgraded to.
    let yank = |who: &Who, v: &str| {
        who.request(
            Method::POST,
            &format!("/v1/catalog/good/releases/{v}/yank"),
            None,
        )
    };
    let a = send(&app, yank(&merchant, "1.0.1")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(&app, yank(&sign_in(&app, "reviewer@x.test").await, "1.0.1")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(
        a.json()["releases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["version"] == "1.0.1" && r["yanked"] == true)
    );
    let a = send(&app, yank(&admin, "3.0.0")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = send(&app, upgrade(&merchant, json!({ "version": "1.0.1" }))).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.text().contains("yanked"), "{}", a.text());

    // A package changed on disk after it was signed is refused, and the
    // running version stays.
    let targets = platform.config().data.join("index/targets");
    let beta = get(&app, "/index/timestamp.json", &[]).await.json()["signed"]["snapshot_version"]
        .as_u64()
        .unwrap();
    let snap = get(&app, &format!("/index/{beta}.snapshot.json"), &[])
        .await
        .json();
    let tv = snap["signed"]["targets_version"].as_u64().unwrap();
    let t = get(&app, &format!("/index/{tv}.targets.json"), &[])
        .await
        .json();
    let sha = t["signed"]["targets"]["good/1.1.0-beta.1.vpkg"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = targets.join(format!("{sha}.vpkg"));
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let a = send(
        &app,
        upgrade(&merchant, json!({ "version": "1.1.0-beta.1" })),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "index_refused"),
        "{}",
        a.text()
    );
    assert_eq!(running(&platform, "shop-a", "good"), "1.0.0");

    // A restart reads the same index, settings and running versions.
    let data = platform.config().data.clone();
    drop((app, platform, f.app, f.platform));
    let reopened = Arc::new(Platform::open(PlatformConfig::new(&data)).unwrap());
    assert_eq!(running(&reopened, "shop-a", "good"), "1.0.0");
    let settings = reopened
        .update_settings(&InstallationId::new("shop-a"), &PluginId::new("good"))
        .unwrap();
    assert!(settings.pinned);
    assert_eq!(reopened.releases("good").len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_health_probe_fails_is_held_and_the_running_version_stays() {
    let f = fixture();
    let admin = sign_in(&f.app, "admin@x.test").await;
    let merchant = sign_in(&f.app, "b@x.test").await;
    assert_eq!(
        install(&f.app, &merchant, "shop-b", "hostile").await.status,
        StatusCode::CREATED
    );
    f.platform
        .add_package(
            &HOSTILE.replace("0.1.0", "0.1.1"),
            &test_support::guest("hostile"),
            None,
        )
        .unwrap();
    let report = run(&f.app, &admin).await;
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["outcome"], "held");
    assert!(
        report[0]["reason"]
            .as_str()
            .unwrap()
            .contains("health probe"),
        "{report:?}"
    );
    assert_eq!(running(&f.platform, "shop-b", "hostile"), "0.1.0");
    assert!(
        lifecycle(&f.platform, "shop-b")
            .iter()
            .any(|(c, _)| *c == LifecycleChange::UpgradeRefused)
    );
    assert!(run(&f.app, &admin).await.is_empty());
    // The merchant's explicit upgrade is refused by the same probe.
    let a = send(
        &f.app,
        merchant.request(
            Method::POST,
            "/v1/installations/shop-b/plugins/hostile/upgrade",
            Some(json!({ "version": "0.1.1" })),
        ),
    )
    .await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "plugin_refused"),
        "{}",
        a.text()
    );
}
