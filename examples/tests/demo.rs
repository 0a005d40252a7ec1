//! The example hosts as people run them: the README's first command (the
//! demo host on its embedded defaults) runs every step, and the partner
//! host serves its consent page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Runs `bin` with `args`; it must succeed and print every `expected` line part.
fn runs_and_prints(bin: &str, args: &[&str], expected: &[&str]) {
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in expected {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}

#[test]
fn the_demo_host_runs_every_step() {
    runs_and_prints(
        env!("CARGO_BIN_EXE_demo-host"),
        &[],
        &[
            "did you mean `network`?",
            "0 error(s), 0 warning(s)",
            "the store verified the signed index and installed order-notifier 1.0.0",
            "grant has no `network` permission",
            "order-notifier: ok in",
            r#"order_note/1001 = {"order":"1001","event":"order.created","notified":true}"#,
            r#"GET /status -> 200 {"orders_seen":1}"#,
            "GET /api/orders/1001         allowed",
            "GET /api/products/7          denied: the plugin lacks the `api:access:products` permission",
            "a mistyped key               denied",
            "circuit open, plugin not called",
            "order.created -> not run: the plugin is disabled in this installation",
            "enabled again: 1 subscriber(s) of order.created",
            "chained records and verifies",
            "is tampered at line",
        ],
    );
}

#[test]
fn the_partner_host_prints_the_app_credentials_and_asks_visitors_to_sign_in() {
    runs_and_prints(
        env!("CARGO_BIN_EXE_partner-host"),
        &["--once"],
        &[
            "client id:     app_",
            "client secret: ",
            "sign in as:    merchant@shop-42 / ",
            "curl -u",
            "GET authorize, signed out -> 200",
            "<h1>Sign in to shop-42</h1>",
        ],
    );
}
