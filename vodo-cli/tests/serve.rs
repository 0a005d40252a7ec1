//! `vodo serve` as a newcomer runs it: the first start seeds the data
//! folder and prints where to go and how to sign in; the platform answers
//! there; Ctrl-C stops it cleanly; the second start reuses the data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

/// A running `vodo serve` and the lines it printed so far.
struct Server {
    child: Child,
    stderr: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    printed: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

fn reader(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Server {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, more: &[&str]) -> Self {
        // Its log goes beside the data folder, to show when it fails.
        let stderr = data.with_extension("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vodo"))
            .args(["serve", "--port", "0", "--data"])
            .arg(data)
            .args(more)
            // Generated plugins share one target directory across the tests.
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let lines = reader(child.stdout.take().unwrap());
        Self {
            child,
            stderr,
            lines,
            printed: Vec::new(),
        }
    }

    /// Waits (up to 5 minutes: the first start builds the example plugin)
    /// for a line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(300)) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "`vodo serve` never printed `{needle}` ({e}); it printed:\n{}\nand logged:\n{}",
                    self.printed.join("\n"),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }

    /// What it printed since the last look, without waiting.
    fn drain(&mut self) -> Vec<String> {
        let new: Vec<String> = self.lines.try_iter().collect();
        self.printed.extend(new.iter().cloned());
        new
    }

    fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.wait_for("stopped.");
        self.child.wait().unwrap()
    }
}

fn call(method: &str, url: &str, cookie: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = match (method, body) {
        ("POST", Some(b)) => {
            let mut req = agent.post(url);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send_json(b).unwrap()
        }
        _ => {
            let mut req = agent.get(url);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.call().unwrap()
        }
    };
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned());
    let mut v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    if let Some(c) = cookie {
        v["__cookie"] = c.into();
    }
    (status, v)
}

#[test]
fn serve_seeds_a_demo_platform_stops_on_ctrl_c_and_reuses_its_data() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path());
    let console = server.wait_for("console");
    let password_line = server.wait_for("one-time password");
    let password = password_line.split_whitespace().last().unwrap().to_owned();
    let base = console
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches("/admin")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{console}");
    server.wait_for("Ctrl-C stops it");
    assert!(
        server
            .printed
            .iter()
            .any(|l| l.contains("reviewed and published order-notifier")),
        "{:?}",
        server.printed
    );

    let (status, _) = call("GET", &format!("{base}/admin/login"), None, None);
    assert_eq!(status, 200);
    // The OAuth metadata it printed, with the issuer it is served at.
    let oauth = server
        .printed
        .iter()
        .find(|l| l.contains("OAuth"))
        .expect("the OAuth metadata URL is printed")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let (status, metadata) = call("GET", &oauth, None, None);
    assert_eq!(status, 200, "{metadata}");
    assert_eq!(metadata["issuer"], base.as_str(), "{metadata}");
    assert_eq!(
        metadata["token_endpoint"],
        format!("{base}/oauth/token").as_str()
    );
    // The signed index it printed lists the seeded plugin.
    let index = server
        .printed
        .iter()
        .find(|l| l.contains("index "))
        .expect("the signed index's URL is printed")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let (status, timestamp) = call("GET", &index, None, None);
    assert_eq!(status, 200, "{timestamp}");
    let snapshot = timestamp["signed"]["snapshot_version"].as_u64().unwrap();
    let (_, snapshot) = call(
        "GET",
        &format!("{base}/index/{snapshot}.snapshot.json"),
        None,
        None,
    );
    let targets = snapshot["signed"]["targets_version"].as_u64().unwrap();
    let (_, targets) = call(
        "GET",
        &format!("{base}/index/{targets}.targets.json"),
        None,
        None,
    );
    assert!(
        targets["signed"]["targets"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("order-notifier/")),
        "{targets}"
    );
    let (cookie, _) = sign_in_admin(&base, &password);
    let (_, plugins) = call(
        "GET",
        &format!("{base}/v1/installations/demo/plugins"),
        Some(&cookie),
        None,
    );
    assert_eq!(
        plugins["plugins"][0]["plugin"], "order-notifier",
        "{plugins}"
    );
    assert_eq!(plugins["plugins"][0]["enabled"], true);
    assert!(server.interrupt().success());

    // The second start prints no new password and serves the same data.
    let mut again = Server::start(data.path());
    let console = again.wait_for("console");
    let line = again.wait_for("sign in");
    assert!(line.contains("accounts of"), "{line}");
    let base = console
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches("/admin")
        .to_owned();
    again.wait_for("Ctrl-C stops it");
    let (status, plugins) = call(
        "GET",
        &format!("{base}/v1/installations/demo/plugins"),
        Some(&cookie),
        None,
    );
    assert_eq!(status, 200, "the session outlives a restart: {plugins}");
    assert_eq!(plugins["plugins"][0]["plugin"], "order-notifier");
    assert!(again.interrupt().success());
}

/// Signs in as the seeded admin: the session cookie and its CSRF token.
fn sign_in_admin(base: &str, password: &str) -> (String, String) {
    let (status, signed) = call(
        "POST",
        &format!("{base}/v1/session"),
        None,
        Some(json!({ "email": "admin@vodo.local", "password": password })),
    );
    assert_eq!(status, 200, "{signed}");
    (
        signed["__cookie"].as_str().unwrap().to_owned(),
        signed["csrf"].as_str().unwrap().to_owned(),
    )
}

/// `POST` as a signed-in person, with the session's CSRF token.
fn post(url: &str, cookie: &str, csrf: &str, body: Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .send_json(body)
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

/// `vodo serve --plugins` loads the plugin being written into the demo
/// installation, reloads it when its source changes, and keeps the last
/// good version serving when a change does not build.
#[test]
fn serve_hot_reloads_the_plugin_being_written_and_keeps_the_last_good_one() {
    let work = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(["plugin:create", "hot-demo", "--template", "basic"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let plugin = work.path().join("hot-demo");
    let data = work.path().join("data");
    let mut server = Server::start_with(&data, &["--plugins", plugin.to_str().unwrap()]);
    let console = server.wait_for("console");
    let base = console
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches("/admin")
        .to_owned();
    let password = server
        .wait_for("one-time password")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let loaded = server.wait_for("  dev ");
    assert!(loaded.contains("hot-demo 0.1.0 from"), "{loaded}");
    assert!(
        loaded.contains(&format!("{base}/plugins/hot-demo/")),
        "{loaded}"
    );
    server.wait_for("Ctrl-C stops it");

    let (cookie, csrf) = sign_in_admin(&base, &password);
    // Nothing changed, so nothing is rebuilt (cargo and the loader read
    // the folder's files, which the watcher also reports).
    std::thread::sleep(Duration::from_secs(2));
    let idle = server.drain();
    assert!(!idle.iter().any(|l| l.contains("rebuilding")), "{idle:?}");
    let send = || {
        let (status, call) = post(
            &format!("{base}/v1/installations/demo/plugins/hot-demo/events"),
            &cookie,
            &csrf,
            json!({ "event": "order.created", "payload": r#"{"id": "1", "total": "5"}"# }),
        );
        assert_eq!(status, 200, "{call}");
        call
    };
    assert_eq!(send()["ok"], true);

    // Its log line and audit events, from the data folder the server runs on
    // (it writes log lines twice a second).
    let logs = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vodo"))
            .args(["logs", "hot-demo", "--data"])
            .arg(&data)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut printed = logs(&[]);
    while !printed.contains("info  new order 1: 5") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        printed = logs(&[]);
    }
    assert!(printed.contains("[demo] info  new order 1: 5"), "{printed}");
    assert!(
        printed.contains("audit #"),
        "the install's audit events: {printed}"
    );
    let only_logs = logs(&["--kind", "log"]);
    assert!(
        only_logs.contains("new order 1") && !only_logs.contains("audit #"),
        "{only_logs}"
    );
    let only_lifecycle = logs(&["--kind", "lifecycle", "--json"]);
    assert!(!only_lifecycle.contains("new order 1"), "{only_lifecycle}");
    let first: Value = serde_json::from_str(only_lifecycle.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "audit");
    assert_eq!(first["event"]["kind"], "lifecycle");
    // Following: a line logged after it started.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args([
            "logs", "hot-demo", "--follow", "--json", "--kind", "log", "--since", "1s", "--data",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = reader(follow.stdout.take().unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(send()["ok"], true);
    let line = followed
        .recv_timeout(Duration::from_secs(30))
        .expect("a followed line");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["message"], "new order 1: 5");
    assert_eq!(line["installation"], "demo");
    let _ = follow.kill();
    let _ = follow.wait();

    // A change that builds: the new version answers.
    let lib = plugin.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let v2 = source.replace(
        "Ok(format!(\"new order {id}",
        "Err(format!(\"version two: order {id}",
    );
    assert_ne!(v2, source, "the template's line to change");
    std::fs::write(&lib, &v2).unwrap();
    let line = server.wait_for("changed: rebuilding");
    assert!(
        line.ends_with("hot-demo/src/lib.rs changed: rebuilding ..."),
        "{line}"
    );
    let line = server.wait_for("reloaded hot-demo");
    assert!(line.contains("0.1.0"), "{line}");
    let answer = send();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("version two: order 1"),
        "{answer}"
    );

    // A change that does not build: cargo's error, and version two serves on.
    std::fs::write(&lib, "this is not Rust").unwrap();
    let line = server.wait_for("the rebuild of");
    assert!(
        line.contains("failed, the previous version keeps serving"),
        "{line}"
    );
    let answer = send();
    assert!(
        answer["error"].as_str().unwrap().contains("version two"),
        "{answer}"
    );
    assert!(server.interrupt().success());
    // Loading the dev plugin kept the seeded installation as it was.
    let store = vodo_server::ServerStore::open(&data.join("server.db")).unwrap();
    let installations = store.installations().unwrap();
    assert!(
        installations
            .iter()
            .any(|(id, name)| id.as_str() == "demo" && name == "Demo store"),
        "{installations:?}"
    );
}

/// `vodo keys` and `vodo audit` work on the data folder a running server
/// uses: a key issued there is taken by the server, one revoked there stops
/// working within the key cache's staleness bound, and the audit trail they
/// both write verifies (and a tampered copy does not).
#[test]
fn keys_and_audit_commands_share_the_data_folder_with_a_running_server() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut server = Server::start(&data);
    let console = server.wait_for("console");
    let base = console
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches("/admin")
        .to_owned();
    server.wait_for("Ctrl-C stops it");
    let vodo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vodo"))
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let refused = vodo(&[
        "keys",
        "issue",
        "order-notifier",
        "--name",
        "ci",
        "--scope",
        "users:write",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("more than `order-notifier` was granted")
    );
    let out = vodo(&["keys", "issue", "order-notifier", "--name", "ci", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (key, id) = (
        issued["key"].as_str().unwrap().to_owned(),
        issued["id"].as_str().unwrap().to_owned(),
    );
    assert!(key.starts_with("vodo_"));
    let status = |key: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(format!("{base}/plugins/order-notifier/status"))
            .header("authorization", format!("Bearer {key}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(&key), 200, "the server takes a key the CLI issued");
    let listed = vodo(&["keys", "list", "order-notifier", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&key), "no secret in a list");

    assert!(vodo(&["keys", "revoke", &id]).status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status(&key) != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked key still works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let unknown = vodo(&["keys", "revoke", "nosuchkey"]);
    assert_eq!(unknown.status.code(), Some(1));

    let verified = vodo(&["audit", "verify", "--json"]);
    assert!(verified.status.success(), "{verified:?}");
    let verified: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["valid"], true);
    assert!(verified["records"].as_u64().unwrap() >= 3);
    let revoked = vodo(&[
        "audit",
        "query",
        "--plugin",
        "order-notifier",
        "--kind",
        "key_revoked",
        "--json",
    ]);
    let line: Value =
        serde_json::from_slice(revoked.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["event"]["key_id"], id.as_str());
    let bad = vodo(&["audit", "query", "--kind", "nonsense"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(server.interrupt().success());

    // A copy with one record changed does not verify.
    let copy = work.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(data.join("secret.key"), copy.join("secret.key")).unwrap();
    let trail = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    std::fs::write(
        copy.join("audit.jsonl"),
        trail.replacen("\"key_revoked\"", "\"key_issued\"", 1),
    )
    .unwrap();
    assert_ne!(
        std::fs::read_to_string(copy.join("audit.jsonl")).unwrap(),
        trail
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(["audit", "verify", "--data"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{out:?}"
    );
}
