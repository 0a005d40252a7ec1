//! A small WebDriver client for the browser tests: headless Chromium driven
//! by ChromeDriver (Debian's `chromium` and `chromium-driver`).
//!
//! Without them, [`Driver::start`] fails and says how to install them (the
//! README's test command `.ci/test` does); a browser test never passes by
//! skipping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session: ChromeDriver on a free port driving headless
/// Chromium with a fresh profile, stopped on drop.
pub struct Driver {
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

/// A free port on loopback.
pub fn free_port() -> u16 {
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
    /// Starts ChromeDriver and a headless Chromium session.
    ///
    /// # Panics
    ///
    /// When either is missing (the message says how to install them) or does not start.
    pub fn start() -> Self {
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
            "--window-size=1000,1400",
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

    /// The WebDriver URL of `path` in this session.
    pub fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        post(&self.url("/url"), json!({ "url": url }));
    }

    /// The page's URL.
    pub fn current_url(&self) -> String {
        get(&self.url("/url")).as_str().unwrap().to_owned()
    }

    /// The element matching `css` (its WebDriver id); panics when there is none.
    pub fn find(&self, css: &str) -> String {
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
    pub fn text(&self) -> String {
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

    /// The text of the element matching `css`.
    pub fn text_of(&self, css: &str) -> String {
        let e = self.find(css);
        get(&self.url(&format!("/element/{e}/text")))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        wait_until(
            || Some(self.text()).filter(|t| t.contains(needle)),
            || format!("the page never said `{needle}`; it says:\n{}", self.text()),
        )
    }

    /// Types `text` into the element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        post(
            &self.url(&format!("/element/{e}/value")),
            json!({ "text": text }),
        );
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        post(&self.url(&format!("/element/{e}/click")), json!({}));
    }

    /// Saves a screenshot under `target/screenshots/`.
    pub fn screenshot(&self, name: &str) {
        let png = get(&self.url("/screenshot"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = crate::root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    /// Saves a screenshot of the element `css` alone (scrolled into view)
    /// under `target/screenshots/`.
    pub fn screenshot_of(&self, css: &str, name: &str) {
        let e = self.find(css);
        let png = get(&self.url(&format!("/element/{e}/screenshot")));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = crate::root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    /// Waits until the page's URL starts with `prefix`; returns it.
    pub fn wait_for_url(&self, prefix: &str) -> String {
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
pub fn wait_until<T>(ready: impl Fn() -> Option<T>, why: impl Fn() -> String) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}
