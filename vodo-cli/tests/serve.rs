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

mod common;
use common::{decide_device, sign_in};

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

    /// Waits for the console's line and answers the server's address.
    fn base(&mut self) -> String {
        self.wait_for("console")
            .split_whitespace()
            .last()
            .unwrap()
            .trim_end_matches("/admin")
            .to_owned()
    }

    /// Waits for the first start's line with the admin's one-time password.
    fn admin_password(&mut self) -> String {
        self.wait_for("one-time password")
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
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
    let agent = common::agent();
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
    let base = server.base();
    let password = server.admin_password();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
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
    let base = again.base();
    let line = again.wait_for("sign in");
    assert!(line.contains("accounts of"), "{line}");
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
    sign_in(base, "admin@vodo.local", password)
}

/// `POST` as a signed-in person, with the session's CSRF token.
fn post(url: &str, cookie: &str, csrf: &str, body: Value) -> (u16, Value) {
    let agent = common::agent();
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
    let base = server.base();
    let password = server.admin_password();
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
    let base = server.base();
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
        let agent = common::agent();
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

/// A `vodo login` waiting for approval: its first line (the code and the
/// page, as JSON) read, the rest still to come.
struct Login {
    child: Child,
    lines: mpsc::Receiver<String>,
    start: Value,
}

fn start_login(base: &str, config: &Path) -> Login {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(["login", "--json", "--server", base])
        .env("VODO_CONFIG_DIR", config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = reader(child.stdout.take().unwrap());
    let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    Login {
        child,
        lines,
        start: serde_json::from_str(&first).unwrap(),
    }
}

fn bearer(url: &str, token: &str) -> u16 {
    let agent = common::agent();
    agent
        .get(url)
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

/// A developer signs in with the device grant, publishes, a reviewer
/// approves, and signing out revokes the tokens; a denied sign-in, an
/// expired access token (renewed), a package the marketplace refuses and
/// an account added twice each get the answer a user can act on.
#[test]
fn login_publish_and_logout_through_the_device_grant() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let config = work.path().join("config");
    let mut server = Server::start(&data);
    let base = server.base();
    server.wait_for("Ctrl-C stops it");
    let vodo = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vodo"))
            .args(args)
            .env("VODO_CONFIG_DIR", &config)
            .env("VODO_SERVER", &base)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let data_arg = data.to_str().unwrap();
    let added = vodo(&[
        "accounts",
        "add",
        "dev@example.com",
        "--role",
        "partner",
        "--data",
        data_arg,
    ]);
    assert!(added.status.success(), "{}", text(&added));
    let dev_password = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    assert_eq!(dev_password.len(), 24);
    let twice = vodo(&[
        "accounts",
        "add",
        "dev@example.com",
        "--role",
        "partner",
        "--data",
        data_arg,
    ]);
    assert!(!twice.status.success());
    assert!(
        text(&twice).contains("already an account (partner)"),
        "{}",
        text(&twice)
    );
    let added = vodo(&[
        "accounts",
        "add",
        "rev@example.com",
        "--role",
        "reviewer",
        "--data",
        data_arg,
    ]);
    let reviewer_password = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    let merchant = vodo(&[
        "accounts",
        "add",
        "m@example.com",
        "--role",
        "merchant",
        "--data",
        data_arg,
    ]);
    assert!(
        text(&merchant).contains("needs --installation"),
        "{}",
        text(&merchant)
    );

    let not_yet = vodo(&["whoami"]);
    assert!(!not_yet.status.success());
    assert!(
        text(&not_yet).contains("not signed in: run `vodo login"),
        "{}",
        text(&not_yet)
    );

    // The page, opened without a session, goes to the sign-in and back.
    let mut login = start_login(&base, &config);
    let page = login.start["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        page.starts_with(&format!("{base}/oauth/device?user_code=")),
        "{page}"
    );
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = no_redirects.get(&page).call().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let to = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        to.starts_with("/admin/login?next=%2Foauth%2Fdevice%3Fuser_code%3D"),
        "{to}"
    );
    let mut r = no_redirects.get(&format!("{base}{to}")).call().unwrap();
    let form = r.body_mut().read_to_string().unwrap();
    assert!(
        form.contains("name=\"next\" value=\"/oauth/device?user_code="),
        "{form}"
    );

    let (dev_cookie, _) = sign_in(&base, "dev@example.com", &dev_password);
    let (status, done, _) = decide_device(&page, &dev_cookie, "allow");
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("signed in as dev@example.com"), "{done}");
    let signed: Value =
        serde_json::from_str(&login.lines.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert!(login.child.wait().unwrap().success());
    assert_eq!(signed["email"], "dev@example.com");
    assert_eq!(signed["role"], "partner");

    // The tokens rest in the config folder, for the owner only.
    let file = config.join("credentials.json");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let access = stored["servers"][&base]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(access.starts_with("vodo_at_"));
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains(&dev_password)
    );

    let me = vodo(&["whoami", "--json"]);
    assert!(me.status.success(), "{}", text(&me));
    let me: Value = serde_json::from_slice(&me.stdout).unwrap();
    assert_eq!(
        (me["email"].as_str(), me["role"].as_str()),
        (Some("dev@example.com"), Some("partner"))
    );

    // An access token past its time is renewed with the refresh token.
    let mut expired = stored.clone();
    expired["servers"][&base]["expires_at"] = 0.into();
    std::fs::write(&file, serde_json::to_vec(&expired).unwrap()).unwrap();
    let me = vodo(&["whoami"]);
    assert!(me.status.success(), "{}", text(&me));
    let renewed: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let access = renewed["servers"][&base]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        access,
        stored["servers"][&base]["access_token"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The token is the developer's for the marketplace only: not a console session.
    assert_eq!(bearer(&format!("{base}/v1/session"), &access), 200);
    assert_eq!(bearer(&format!("{base}/v1/installations"), &access), 401);

    // Publish a new version of the example plugin with the component the seed built.
    let plugin = work.path().join("order-notifier");
    std::fs::create_dir_all(&plugin).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/order-notifier");
    let manifest = std::fs::read_to_string(example.join("plugin.json")).unwrap();
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    // The seed published `order-notifier` as another developer: a slug is its owner's.
    m["slug"] = "dev-notifier".into();
    m["version"] = "9.0.0".into();
    std::fs::write(plugin.join("plugin.json"), m.to_string()).unwrap();
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests/wasm32-wasip2/release/order_notifier.wasm");
    let pkg = work.path().join("dev-notifier-9.0.0.vpkg");
    let packaged = vodo(&[
        "plugin:package",
        plugin.to_str().unwrap(),
        "--wasm",
        wasm.to_str().unwrap(),
        "--out",
        pkg.to_str().unwrap(),
    ]);
    assert!(packaged.status.success(), "{}", text(&packaged));
    let published = vodo(&[
        "plugin:publish",
        "--package",
        pkg.to_str().unwrap(),
        "--json",
    ]);
    assert!(published.status.success(), "{}", text(&published));
    let sub: Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(
        (sub["plugin"].as_str(), sub["version"].as_str()),
        (Some("dev-notifier"), Some("9.0.0"))
    );
    assert_eq!(sub["owner"], "dev@example.com");
    let id = sub["id"].as_str().unwrap().to_owned();
    let waiting = sub["state"].as_str().unwrap().to_owned();
    assert_ne!(waiting, "rejected", "{sub}");

    let garbage = work.path().join("garbage.vpkg");
    std::fs::write(&garbage, b"not a package").unwrap();
    let refused = vodo(&["plugin:publish", "--package", garbage.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("refused the package (422)"),
        "{}",
        text(&refused)
    );

    let (cookie, csrf) = sign_in(&base, "rev@example.com", &reviewer_password);
    let (status, decided) = post(
        &format!("{base}/v1/submissions/{id}/decision"),
        &cookie,
        &csrf,
        json!({ "approve": true }),
    );
    assert_eq!(status, 200, "{decided}");
    let status = vodo(&["plugin:status", &id]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("dev-notifier 9.0.0"),
        "{}",
        text(&status)
    );
    assert!(text(&status).contains("published"), "{}", text(&status));

    // Signing out revokes at the server and forgets here.
    let out = vodo(&["logout"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    assert_eq!(bearer(&format!("{base}/v1/session"), &access), 401);
    let after = vodo(&["whoami"]);
    assert!(!after.status.success());
    assert!(text(&after).contains("vodo login"), "{}", text(&after));

    // A denied sign-in ends the command with the reason.
    let mut login = start_login(&base, &config);
    let page = login.start["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, page_text, _) = decide_device(&page, &dev_cookie, "deny");
    assert_eq!(status, 200, "{page_text}");
    let denied = login.child.wait().unwrap();
    assert!(!denied.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut login.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("denied"), "{err}");
    assert!(!file.exists() || !std::fs::read_to_string(&file).unwrap().contains("vodo_at_"));
    assert!(server.interrupt().success());
}

/// `vodo tinker` drives the seeded plugin: a record written, an event sent
/// (its log line and audit record shown), a request to its route, a
/// setting that points it at a host outside its allowlist (the refusal
/// shown), and lines it does not understand answered with their usage.
#[test]
fn tinker_drives_a_plugin_and_shows_what_it_did() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut server = Server::start(&data);
    let base = server.base();
    let password = server.admin_password();
    server.wait_for("Ctrl-C stops it");
    let script = [
        "put order 2001 {\"total\":\"49.90\",\"currency\":\"SAR\"}",
        "get order 2001",
        "event order.created 2001",
        "request GET /status",
        "request GET /nowhere",
        "settings",
        "set webhook_url https://evil.example/hook",
        "event order.created 2001",
        "launch rockets",
        "event",
        "get order 404",
        "quit",
    ]
    .join("\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(["tinker", "order-notifier", "--server", &base])
        .env("VODO_PASSWORD", &password)
        .env("VODO_CONFIG_DIR", work.path().join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}\n{err}");
    for expected in [
        "driving order-notifier 1.0.0 in demo",
        "created order 2001",
        r#"{"currency":"SAR","total":"49.90"}"#,
        r#"log info  order.created for order 2001: {"currency":"SAR","total":"49.90"}"#,
        "usage ",
        r#"{"orders_seen":1}"#,
        "404",
        "no settings",
        "webhook_url = https://evil.example/hook",
        "failed: ",
        "evil.example",
        "no command `launch`: type `help`",
        "usage: event <name> [payload]",
        "error: 404",
    ] {
        assert!(
            text.contains(expected),
            "no `{expected}` in:\n{text}\n{err}"
        );
    }
    // The refused request is in the audit trail the prompt showed.
    assert!(
        text.lines()
            .any(|l| l.contains("audit #") && l.contains("evil.example")),
        "{text}"
    );
    assert!(work.path().join("config/tinker_history").is_file());

    let wrong = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(["tinker", "order-notifier", "--server", &base])
        .env("VODO_PASSWORD", "not the password")
        .env("VODO_CONFIG_DIR", work.path().join("elsewhere"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("signing in as admin@vodo.local failed (401)")
    );
    assert!(server.interrupt().success());
}

/// `vodo keys`, `vodo audit` and `vodo logs` against a running server
/// instead of its data folder: the same answers through the JSON API, as
/// the signed-in account may see them.
#[test]
fn keys_audit_and_logs_against_a_server() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut server = Server::start(&data);
    let base = server.base();
    let password = server.admin_password();
    server.wait_for("Ctrl-C stops it");
    let vodo = |args: &[&str], password: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_vodo"))
            .args(args)
            .args(["--server", &base])
            .env("VODO_PASSWORD", password)
            .env("VODO_CONFIG_DIR", work.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, key, err) = vodo(
        &[
            "keys",
            "issue",
            "order-notifier",
            "--name",
            "remote-ci",
            "--scope",
            "entities:read:order",
        ],
        &password,
    );
    assert!(ok, "{err}");
    assert!(key.trim().starts_with("vodo_"), "{key}");
    let (ok, list, err) = vodo(&["keys", "list", "order-notifier", "--json"], &password);
    assert!(ok, "{err}");
    let keys: Value = serde_json::from_str(&list).unwrap();
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "remote-ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!list.contains(key.trim()), "a list carries no secret");
    let (ok, _, err) = vodo(&["keys", "rotate", &id], &password);
    assert!(!ok);
    assert!(err.contains("--plugin"), "{err}");
    let (ok, rotated, err) = vodo(
        &["keys", "rotate", &id, "--plugin", "order-notifier"],
        &password,
    );
    assert!(ok, "{err}");
    assert_ne!(rotated.trim(), key.trim());
    let (ok, revoked, err) = vodo(
        &["keys", "revoke", &id, "--plugin", "order-notifier"],
        &password,
    );
    assert!(ok, "{err}");
    assert_eq!(revoked.trim(), format!("revoked {id}"));
    let (ok, list, err) = vodo(&["keys", "list", "order-notifier"], &password);
    assert!(ok, "{err}");
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked")),
        "{list}"
    );

    let (ok, verified, err) = vodo(&["audit", "verify"], &password);
    assert!(ok, "{err}");
    assert!(verified.contains("the audit trail verifies"), "{verified}");
    let (ok, records, err) = vodo(
        &[
            "audit",
            "query",
            "--plugin",
            "order-notifier",
            "--kind",
            "key_revoked",
        ],
        &password,
    );
    assert!(ok, "{err}");
    assert!(records.contains(&id), "{records}");

    let (cookie, csrf) = sign_in_admin(&base, &password);
    let (status, sent) = post(
        &format!("{base}/v1/installations/demo/plugins/order-notifier/events"),
        &cookie,
        &csrf,
        json!({ "event": "order.created", "payload": "1001" }),
    );
    assert_eq!((status, sent["ok"].as_bool()), (200, Some(true)), "{sent}");
    std::thread::sleep(Duration::from_millis(1200));
    let (ok, lines, err) = vodo(
        &["logs", "order-notifier", "--installation", "demo"],
        &password,
    );
    assert!(ok, "{err}");
    assert!(lines.contains("order.created for order 1001"), "{lines}");
    assert!(
        lines.contains("key_revoked"),
        "audit records come with the lines: {lines}"
    );
    let (ok, only_logs, _) = vodo(&["logs", "order-notifier", "--kind", "log"], &password);
    assert!(ok);
    assert!(!only_logs.contains("key_revoked"), "{only_logs}");

    // A merchant of another store sees none of it; a wrong password stops at once.
    let added = Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args([
            "accounts",
            "add",
            "m@example.com",
            "--role",
            "merchant",
            "--installation",
            "other",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let merchant = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    let (ok, _, err) = vodo(
        &["keys", "list", "order-notifier", "--email", "m@example.com"],
        &merchant,
    );
    assert!(!ok);
    assert!(
        err.contains("403") && err.contains("does not manage"),
        "{err}"
    );
    let (ok, _, err) = vodo(
        &["audit", "verify", "--email", "nobody@example.com"],
        "wrong",
    );
    assert!(!ok);
    assert!(err.contains("failed (401)"), "{err}");
    // The commands above signed in once and kept the session, owner-only.
    use std::os::unix::fs::PermissionsExt as _;
    let kept = work.path().join("config/sessions.json");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(server.interrupt().success());
}
