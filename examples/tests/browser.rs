//! The consent flow in a real browser: headless Chromium, driven over
//! WebDriver by ChromeDriver (Debian's `chromium` and `chromium-driver`),
//! signs in to the partner host, allows (or denies) the app, and must land
//! on the app's callback with a code the app then redeems.
//!
//! The README's test command (`.ci/test`) installs both packages when they
//! are missing. Without them these tests fail and say how to install them;
//! they never pass by skipping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;

use examples::partner::{MERCHANT, PartnerHost};
use serde_json::Value;
use test_support::browser::Driver;
use vodo_oauth::pkce_challenge;

/// The partner host on a free port, served from its own runtime thread.
fn serve_partner_host() -> (String, PartnerHost) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let host = PartnerHost::new(&base).unwrap();
    let router = host.router.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    (base, host)
}

/// The app's loopback callback: answers every request and reports its target.
fn callback_server() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 8192];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 26\r\nConnection: close\r\n\r\n<h1>Acme app: thanks</h1>\n",
            );
            if target.starts_with("/callback") {
                let _ = tx.send(target);
            }
        }
    });
    (port, rx)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn authorize_url(base: &str, client_id: &str, callback: &str) -> String {
    format!(
        "{base}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
         &scope=entities%3Aread%3Aorder%20offline_access&state=st-123\
         &code_challenge={}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>(),
        pkce_challenge(VERIFIER)
    )
}

#[test]
fn a_merchant_signs_in_allows_the_app_and_the_app_redeems_its_code() {
    let (base, host) = serve_partner_host();
    let (cb_port, visits) = callback_server();
    let callback = format!("http://127.0.0.1:{cb_port}/callback");
    let browser = Driver::start();

    browser.goto(&authorize_url(&base, &host.client_id, &callback));
    browser.wait_for_url(&format!("{base}/login"));
    // A wrong password is refused and says so.
    browser.type_into("#password", "not-the-password");
    browser.click("#signin");
    browser.wait_for_text("do not match");
    browser.type_into("#password", &host.password);
    browser.click("#signin");

    browser.wait_for_url(&format!("{base}/oauth/authorize"));
    let consent = browser.wait_for_text("Allow Acme Order Sync");
    assert!(
        consent.contains("Allow Acme Order Sync to access shop-42?"),
        "{consent}"
    );
    assert!(
        consent.contains(&format!("Signed in as {MERCHANT}")),
        "{consent}"
    );
    assert!(consent.contains("entities:read:order"), "{consent}");
    browser.screenshot("oauth-consent.png");
    browser.click("button[value=allow]");

    // The redirect after the form's POST reaches the app.
    let landed = browser.wait_for_url(&callback);
    let target = visits.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(landed.ends_with(&target), "{landed} vs {target}");
    assert_eq!(query_param(&landed, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(&landed, "iss").as_deref(), Some(base.as_str()));
    let code = query_param(&landed, "code").expect("a code");

    // The app redeems it with the secret the host printed.
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", host.client_id, host.client_secret));
    let mut r = ureq::post(&format!("{base}/oauth/token"))
        .header("Authorization", &format!("Basic {basic}"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_form([
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", callback.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .unwrap();
    let status = r.status().as_u16();
    let tokens: Value = r.body_mut().read_json().unwrap();
    assert_eq!(status, 200, "{tokens}");
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{tokens}"
    );
    assert!(tokens["refresh_token"].as_str().is_some(), "{tokens}");
}

#[test]
fn a_merchant_who_denies_sends_the_app_an_access_denied_error() {
    let (base, host) = serve_partner_host();
    let (cb_port, visits) = callback_server();
    let callback = format!("http://127.0.0.1:{cb_port}/callback");
    let browser = Driver::start();

    browser.goto(&authorize_url(&base, &host.client_id, &callback));
    browser.wait_for_url(&format!("{base}/login"));
    browser.type_into("#password", &host.password);
    browser.click("#signin");
    browser.wait_for_url(&format!("{base}/oauth/authorize"));
    browser.click("button[value=deny]");

    let landed = browser.wait_for_url(&callback);
    visits.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        query_param(&landed, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(query_param(&landed, "state").as_deref(), Some("st-123"));
    assert!(query_param(&landed, "code").is_none());
}
