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
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use examples::partner::{MERCHANT, PartnerHost};
use serde_json::{Value, json};
use vodo_oauth::pkce_challenge;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    base: String,
    _profile: tempfile::TempDir,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn try_post(url: &str, body: &Value) -> Result<Value, String> {
    let mut r = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(body)
        .map_err(|e| format!("POST {url}: {e}"))?;
    let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
    match v["value"].get("error") {
        Some(_) => Err(format!("POST {url} {body}: {v}")),
        None => Ok(v["value"].clone()),
    }
}

fn post(url: &str, body: Value) -> Value {
    try_post(url, &body).unwrap_or_else(|e| panic!("{e}"))
}

fn try_get(url: &str) -> Result<Value, String> {
    let mut r = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
    match v["value"].get("error") {
        Some(_) => Err(format!("GET {url}: {v}")),
        None => Ok(v["value"].clone()),
    }
}

fn get(url: &str) -> Value {
    try_get(url).unwrap_or_else(|e| panic!("{e}"))
}

impl Driver {
    fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's `{package}` (as root: \
                 `apt-get install -y chromium chromium-driver`), or run the README's test \
                 command `.ci/test`, which installs it"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let session = post(&format!("{base}/session"), caps)["sessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            child,
            base,
            _profile: profile,
            session,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn goto(&self, url: &str) {
        post(&self.url("/url"), json!({ "url": url }));
    }

    fn current_url(&self) -> String {
        get(&self.url("/url")).as_str().unwrap().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let v = post(
            &self.url("/element"),
            json!({ "using": "css selector", "value": css }),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The page's text, or empty while a navigation is under way.
    fn text(&self) -> String {
        let find = json!({ "using": "css selector", "value": "body" });
        let Ok(body) = try_post(&self.url("/element"), &find) else {
            return String::new();
        };
        let id = body["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_default();
        // The page may navigate between finding its body and reading it: the
        // element is then stale (WebDriver answers 404), and the page is read
        // again on the next try.
        match try_get(&self.url(&format!("/element/{id}/text"))) {
            Ok(text) => text.as_str().unwrap_or_default().to_owned(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page's text contains `needle`; returns the text.
    fn wait_for_text(&self, needle: &str) -> String {
        wait_until(
            || Some(self.text()).filter(|t| t.contains(needle)),
            || format!("the page never said `{needle}`; it says:\n{}", self.text()),
        )
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        post(
            &self.url(&format!("/element/{e}/value")),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        post(&self.url(&format!("/element/{e}/click")), json!({}));
    }

    /// Saves a screenshot under `target/screenshots/`.
    fn screenshot(&self, name: &str) {
        let png = get(&self.url("/screenshot"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn wait_for_url(&self, prefix: &str) -> String {
        wait_until(
            || Some(self.current_url()).filter(|u| u.starts_with(prefix)),
            || {
                format!(
                    "the browser stayed at {}, never reaching {prefix}:\n{}",
                    self.current_url(),
                    self.text()
                )
            },
        )
    }
}

/// Polls `ready` every 100 ms until it gives a value; fails with `why` after 20 s.
fn wait_until<T>(ready: impl Fn() -> Option<T>, why: impl Fn() -> String) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
