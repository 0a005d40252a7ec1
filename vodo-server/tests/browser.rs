//! The console in a real browser: headless Chromium over WebDriver signs in,
//! activates a plugin on its consent screen and runs it, sees an opened
//! circuit on the dashboard, issues and revokes a key, filters the audit
//! log and verifies it, approves a submission from the review queue and
//! finds it in the catalog, watches a webhook delivered, tests its endpoint
//! and redelivers it; a developer approves `vodo login`'s device sign-in
//! after the console's sign-in. Each page is saved as a screenshot under
//! `target/screenshots/` for people to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (the README's test
//! command `.ci/test` installs them); without them the test fails and says
//! how to install them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use test_support::browser::{Driver, wait_until};
use vodo_core::{InstallationId, PluginId};
use vodo_sandbox::HostServices;
use vodo_server::{Platform, PlatformConfig, Role};

const GOOD: &str = r#"{
  "name": "Order Notes", "slug": "good", "version": "1.0.0", "description": "notes every order",
  "author": "Alice", "license": "MIT", "entry": "good.wasm",
  "routes": ["GET /status"],
  "permissions": {
    "entities": ["read:order", "write:order_note"],
    "hooks": ["subscribe:order.*"],
    "api": { "rate_limit": "1000/minute", "endpoints": ["orders"] }
  }
}"#;

const HOSTILE: &str = r#"{
  "name": "Flaky Widget", "slug": "hostile", "version": "0.1.0", "description": "fails",
  "author": "Mallory", "license": "MIT", "entry": "hostile.wasm",
  "permissions": {
    "entities": ["read:order"],
    "hooks": ["subscribe:*", "trigger:order.noted"],
    "storage": { "max_size": 1000, "allowed_types": ["json"] },
    "network": { "outbound": ["127.0.0.1"] },
    "users": "read"
  }
}"#;

const PASSWORD: &str = "correct horse battery";

/// The platform on a free port, served from its own runtime thread.
fn serve(platform: Arc<Platform>) -> String {
    let (listener, base) = bind();
    serve_on(listener, platform);
    base
}

/// A free port and its URL, before the platform is opened (its OAuth
/// issuer must be the URL the browser uses).
fn bind() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    (listener, base)
}

fn serve_on(listener: std::net::TcpListener, platform: Arc<Platform>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            vodo_server::serve(
                platform,
                listener,
                std::future::pending(),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        });
    });
}

fn api_status(base: &str, key: &str) -> u16 {
    ureq::get(&format!("{base}/api/orders/1001"))
        .header("authorization", &format!("Bearer {key}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn an_admin_activates_runs_and_watches_plugins_manages_keys_and_verifies_the_audit_log() {
    let data = tempfile::tempdir().unwrap();
    let mut config = PlatformConfig::new(data.path());
    config.webhooks.allow_private = true;
    let platform = Arc::new(Platform::open(config).unwrap());
    let shop = InstallationId::new("shop-a");
    platform.store.put_installation(&shop, "Shop A").unwrap();
    platform
        .accounts
        .put("admin@x.test", &Role::Admin, PASSWORD)
        .unwrap();
    platform
        .store
        .put_entity(&shop, "order", "1001", r#"{"total":"49.90"}"#)
        .unwrap();
    platform
        .add_package(
            GOOD,
            &test_support::guest("good"),
            Some(("order.created".into(), "1001".into())),
        )
        .unwrap();
    platform
        .add_package(HOSTILE, &test_support::guest("hostile"), None)
        .unwrap();
    // The flaky widget is installed and fails until its circuit opens.
    let (_, diff, _) = platform.consent_for(&shop, "hostile").unwrap();
    platform
        .install(&shop, "hostile", &diff.added, "admin@x.test")
        .unwrap();
    let flaky = platform
        .sandbox
        .get(&shop, &PluginId::new("hostile"))
        .unwrap();
    for _ in 0..20 {
        let _ = platform.sandbox.call_event(&flaky, "trap", "");
    }
    let base = serve(Arc::clone(&platform));

    let browser = Driver::start();
    browser.goto(&format!("{base}/admin"));
    browser.wait_for_url(&format!("{base}/admin/login"));
    browser.wait_for_text("Sign in");
    browser.screenshot("console-sign-in.png");
    browser.type_into("#email", "admin@x.test");
    browser.type_into("#password", PASSWORD);
    browser.click("#sign-in");
    let dashboard = browser.wait_for_text("Installed plugins");
    assert!(
        dashboard.contains("Flaky Widget") && dashboard.contains("circuit open"),
        "{dashboard}"
    );
    let p99 = browser.text_of("tr.plugin[data-plugin='hostile'] td.p99");
    assert!(
        p99.ends_with("ms") || p99.ends_with("µs"),
        "the p99 time: {p99}"
    );
    browser.screenshot("console-dashboard-circuit-open.png");

    // Activation: the consent screen in plain language, then the plugin runs.
    browser.click("a.activate");
    let consent = browser.wait_for_text("will be able to");
    assert!(
        consent.contains("Read your order records")
            && consent.contains("Be told when `order.*` happens"),
        "{consent}"
    );
    browser.screenshot("console-consent.png");
    browser.click("#approve");
    browser.wait_for_text("good is active in shop-a");
    browser.click("#send-event");
    let ran = browser.wait_for_text("ran `order.created`");
    assert!(
        ran.contains("got order.created"),
        "the log line shows: {ran}"
    );
    assert_eq!(
        platform
            .store
            .get_entity(&shop, "order_note", "1001")
            .unwrap()
            .as_deref(),
        Some(r#"{"order":"1001","seen":true}"#)
    );
    // The chart of the last hour is drawn on the page.
    let chart = browser.find("#usage-chart svg polyline[stroke='#2F6FDF']");
    assert!(!chart.is_empty(), "the calls line is drawn");
    browser.screenshot("console-plugin-ran.png");

    // A key, shown once, works until it is revoked.
    browser.type_into("#key-name", "order sync");
    browser.click("#issue-key");
    browser.wait_for_text("shown this once");
    let key = browser.text_of("#new-key");
    assert!(key.starts_with("vodo_"), "{key}");
    browser.screenshot("console-key-issued.png");
    assert_eq!(api_status(&base, &key), 200);
    browser.click("button.revoke");
    browser.wait_for_text("is revoked");
    assert_eq!(api_status(&base, &key), 401);
    browser.screenshot("console-key-revoked.png");

    // A new release through the signed index: upgraded from the plugin's
    // page, then rolled back and pinned, each step in the page's list.
    platform
        .add_package(
            &GOOD.replace("\"1.0.0\"", "\"1.0.1\""),
            &test_support::guest("good"),
            Some(("order.created".into(), "1001".into())),
        )
        .unwrap();
    browser.goto(&format!("{base}/admin/installations/shop-a/plugins/good"));
    let available = browser.wait_for_text("Update available");
    assert!(available.contains("Upgrade to 1.0.1"), "{available}");
    browser.screenshot_of("#updates", "console-plugin-update-available.png");
    browser.click("#upgrade");
    browser.wait_for_text("good now runs 1.0.1");
    assert_eq!(browser.text_of("#running-version"), "1.0.1");
    browser.click("button.rollback");
    let rolled = browser.wait_for_text("rolled back to 1.0.0");
    assert!(rolled.contains("pinned"), "{rolled}");
    assert_eq!(browser.text_of("#running-version"), "1.0.0");
    let steps = browser.text_of("#update-steps");
    assert!(
        steps.contains("rolled back 1.0.1 -> 1.0.0 by admin@x.test")
            && steps.contains("upgraded version 1.0.0 -> 1.0.1"),
        "{steps}"
    );
    browser.screenshot("console-plugin-rolled-back.png");
    browser.screenshot_of("#updates", "console-plugin-updates.png");

    // The audit log, filtered to one plugin, then verified.
    browser.goto(&format!("{base}/admin/audit"));
    browser.wait_for_text("Verify the chain");
    browser.type_into("#filter-plugin", "good");
    browser.click("#filter-kind option[value=key_revoked]");
    browser.click("#filter");
    browser.wait_for_url(&format!("{base}/admin/audit?plugin=good"));
    let filtered = wait_until(
        || {
            let t = browser.text();
            t.contains("key_revoked").then_some(t)
        },
        || browser.text(),
    );
    // The table below the filters holds the one revocation of `good`.
    let rows: Vec<&str> = filtered
        .split_once("Detail")
        .unwrap()
        .1
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 1, "{filtered}");
    assert!(rows[0].contains("key_revoked shop-a good"), "{filtered}");
    browser.screenshot("console-audit-filtered.png");
    browser.click("#verify");
    let verified = browser.wait_for_text("The chain verifies");
    assert!(verified.contains("each unchanged"), "{verified}");
    browser.screenshot("console-audit-verified.png");

    // A partner's submission, approved from the review queue, in the catalog.
    let partner = vodo_server::Session {
        email: "partner@x.test".into(),
        role: Role::Partner,
        csrf: String::new(),
    };
    let package = vodo_marketplace::package::Package {
        manifest: GOOD
            .replace("\"good\"", "\"notes-pro\"")
            .replace("Order Notes", "Order Notes Pro"),
        readme: "# Order Notes Pro\n".into(),
        samples: vec![("order.created".into(), "1001".into())],
        component: test_support::guest("good"),
    }
    .to_bytes();
    platform.submit(&partner, &package).unwrap();
    browser.click("header a[href='/admin/reviews']");
    browser.wait_for_text("Review queue");
    browser.screenshot("console-review-queue.png");
    browser.click("tr.submission a");
    let review = browser.wait_for_text("Automated review");
    assert!(
        review.contains("notes-pro") && review.contains("submitted"),
        "{review}"
    );
    browser.screenshot("console-review.png");
    browser.type_into("#feedback", "clean, thank you");
    browser.click("#approve");
    browser.wait_for_url(&format!("{base}/admin/catalog?q=notes-pro"));
    let catalog = browser.wait_for_text("Order Notes Pro");
    assert!(catalog.contains("Read your order records"), "{catalog}");
    browser.screenshot("console-catalog.png");

    // Webhooks: an app's endpoint (a receiver on loopback), an event the
    // delivery worker sends, the test tool and a redelivery.
    let admin = vodo_server::Session {
        email: "admin@x.test".into(),
        role: Role::Admin,
        csrf: String::new(),
    };
    let (app, _) = platform
        .register_app(
            &admin,
            &vodo_server::NewApp {
                name: "Order sync".into(),
                kind: vodo_oauth::model::ClientKind::Confidential,
                redirect_uris: vec!["https://sync.example/cb".into()],
                scopes: vodo_scopes::ScopeSet::new(),
            },
        )
        .unwrap();
    // Shop A's merchant let the app read orders.
    common::consent(&platform, "shop-a", &app.id, &["entities:read:order"]);
    let hook = platform
        .add_endpoint(
            &admin,
            &vodo_server::NewEndpoint {
                client_id: app.id,
                url: common::receiver(vec![200]).0,
                event_types: vec!["order.*".into()],
                installation: None,
            },
        )
        .unwrap();
    platform
        .publish("order.created", &shop, serde_json::json!({ "id": "1001" }))
        .unwrap();
    browser.click("header a[href='/admin/webhooks']");
    browser.wait_for_text("Deliveries");
    let delivered = wait_until(
        || {
            browser.goto(&format!("{base}/admin/webhooks"));
            let text = browser.text_of("#deliveries");
            text.contains("delivered").then_some(text)
        },
        || "the delivery worker never delivered the event".into(),
    );
    assert!(
        delivered.contains("order.created") && delivered.contains(&hook.id),
        "{delivered}"
    );
    browser.screenshot("console-webhooks.png");
    browser.click("tr.endpoint button");
    let tested = browser.wait_for_text("What came back");
    assert!(
        browser.text_of("#result").contains("answered 200"),
        "{tested}"
    );
    browser.screenshot("console-webhook-test.png");
    browser.goto(&format!("{base}/admin/webhooks"));
    browser.click("tr.message a");
    browser.wait_for_text("Attempts");
    let attempts = browser.text_of("#attempts");
    assert!(attempts.contains("received 1"), "{attempts}");
    browser.click("#message-deliveries button");
    browser.wait_for_text("Attempts");
    let redelivered = wait_until(
        || {
            browser.goto(&browser.current_url());
            let rows = browser.text_of("#attempts");
            (rows.matches("received ").count() >= 2).then_some(rows)
        },
        || "the redelivery was never attempted".into(),
    );
    assert!(redelivered.contains(&hook.id), "{redelivered}");
    browser.screenshot("console-webhook-message.png");

    // The API explorer, from the console's header.
    browser.click("header a[href='/api-docs']");
    let explorer = browser.wait_for_text("Vodo platform API");
    assert!(
        explorer.contains("/v1/audit/verify") && explorer.contains("/api/orders/{id}"),
        "{explorer}"
    );
    browser.screenshot("console-api-explorer.png");

    // The account page, from the email in the header: the password
    // changed, this browser still signed in.
    browser.goto(&format!("{base}/admin"));
    browser.click("header a#account");
    browser.wait_for_text("Change the password");
    browser.type_into("#current", PASSWORD);
    browser.type_into("#new", "a much longer passphrase");
    browser.type_into("#confirm", "a much longer passphrase");
    browser.click("#change-password");
    let changed = browser.wait_for_text("The password is changed");
    assert!(changed.contains("admin@x.test"), "{changed}");
    browser.screenshot("console-account-password-changed.png");
}

/// `vodo login`'s page as a developer meets it in a browser: the link
/// sends them to the console's sign-in and back to the code, which they
/// allow; the CLI's poll then gets its token.
#[test]
fn a_developer_approves_a_cli_sign_in_in_the_browser() {
    let data = tempfile::tempdir().unwrap();
    let (listener, base) = bind();
    let mut config = PlatformConfig::new(data.path());
    config.issuer = base.clone();
    let platform = Arc::new(Platform::open(config).unwrap());
    platform
        .accounts
        .put("dev@x.test", &Role::Partner, PASSWORD)
        .unwrap();
    serve_on(listener, Arc::clone(&platform));
    let form = |path: &str, pairs: &[(&str, &str)]| {
        let mut r = ureq::post(&format!("{base}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .send_form(pairs.iter().copied())
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.body_mut().read_json::<serde_json::Value>().unwrap(),
        )
    };
    let (status, started) = form(
        "/oauth/device_authorization",
        &[
            ("client_id", vodo_server::CLI_CLIENT),
            ("scope", "marketplace:publish"),
        ],
    );
    assert_eq!(status, 200, "{started}");
    let code = started["user_code"].as_str().unwrap().to_owned();
    let device_code = started["device_code"].as_str().unwrap().to_owned();

    let browser = Driver::start();
    browser.goto(started["verification_uri_complete"].as_str().unwrap());
    browser.wait_for_url(&format!("{base}/admin/login?next="));
    browser.wait_for_text("Sign in");
    browser.type_into("#email", "dev@x.test");
    browser.type_into("#password", PASSWORD);
    browser.click("#sign-in");
    let page = browser.wait_for_text("Sign in The vodo CLI?");
    assert!(
        page.contains(&code),
        "the page shows the terminal's code: {page}"
    );
    assert!(
        page.contains("Submit plugin packages to the marketplace"),
        "{page}"
    );
    browser.screenshot("device-sign-in-confirm.png");
    browser.click("button[value=allow]");
    let done = browser.wait_for_text("The vodo CLI is signed in as dev@x.test");
    assert!(done.contains("return to your terminal"), "{done}");
    browser.screenshot("device-sign-in-done.png");

    let (status, tokens) = form(
        "/oauth/token",
        &[
            ("grant_type", vodo_oauth::DEVICE_GRANT),
            ("client_id", vodo_server::CLI_CLIENT),
            ("device_code", &device_code),
        ],
    );
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "marketplace:publish");
}
