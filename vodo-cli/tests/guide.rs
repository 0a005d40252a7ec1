//! The guide in `docs/`, followed as a reader would: every command of every
//! page, in order, each page in a fresh folder outside this repository (so
//! the plugins the templates make must build on their own), with the CLI
//! installed the way the guide installs it.
//!
//! The conventions the pages follow: each line of a ```` ```sh ```` block
//! is a command that must succeed; `cd DIR` moves to a folder; the lines of
//! a ```` ```sh,background ```` block start a server that keeps running
//! (the runner waits until it says it serves, and stops it at the end of
//! the page). The one liberty taken: `cargo install` is run with `--debug`
//! and a temporary `--root`, so that it reuses this test run's build
//! instead of compiling the CLI again in release mode.
//!
//! What a page asks the reader to do in a browser (approve a sign-in, a
//! review, an installation's consent, send a test event) is marked where it
//! happens with an HTML comment, `<!-- reader: ... -->`, invisible on the
//! page; the runner does it there through the same HTTP API the console
//! uses (see [`Reader`]), and `<!-- reader: expect TEXT -->` checks what the
//! command before printed. `vodo login` is approved as the page's partner
//! account (the one `vodo accounts add --role partner` made).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::agent;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The code blocks of a page, (info string, lines), and its reader's
/// steps, ("reader", [step]), in page order.
fn blocks(page: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in page.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), Vec::new())),
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some((_, lines)), None) => lines.push(line.to_owned()),
            (None, None) => {
                if let Some(step) = line
                    .trim()
                    .strip_prefix("<!-- reader:")
                    .and_then(|l| l.strip_suffix("-->"))
                {
                    out.push(("reader".into(), vec![step.trim().to_owned()]));
                }
            }
        }
    }
    out
}

/// What the reader of a page knows (the server's address, the passwords
/// printed) and does in the browser, through the console's HTTP API.
#[derive(Default)]
struct Reader {
    base: Option<String>,
    admin_password: Option<String>,
    /// email -> (role, one-time password), from `vodo accounts add`.
    accounts: HashMap<String, (String, String)>,
    /// What the last command printed.
    last_output: String,
}

impl Reader {
    fn base(&self) -> &str {
        self.base
            .as_deref()
            .expect("a reader step before the server started")
    }

    /// The lines a server printed while starting.
    fn server_started(&mut self, printed: &[String]) {
        for l in printed {
            if let Some((_, url)) = l
                .split_once("Vodo is serving ")
                .and_then(|(_, r)| r.rsplit_once(" on "))
            {
                self.base = Some(url.trim().to_owned());
            }
            if let Some((_, p)) = l.split_once("one-time password ") {
                self.admin_password = p.split_whitespace().next().map(str::to_owned);
            }
        }
    }

    /// A command ran and printed `stdout`.
    fn ran(&mut self, line: &str, stdout: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["vodo", "accounts", "add", email, rest @ ..] = words.as_slice() {
            let role = rest
                .iter()
                .position(|w| *w == "--role")
                .and_then(|i| rest.get(i + 1))
                .unwrap_or(&"");
            self.accounts.insert(
                (*email).to_owned(),
                ((*role).to_owned(), stdout.trim().to_owned()),
            );
        }
        self.last_output = stdout.to_owned();
    }

    /// Signs in as `who` (an email, or `admin`): the cookie and CSRF token.
    fn sign_in(&self, who: &str) -> (String, String) {
        let (email, password) = if who == "admin" {
            (
                "admin@vodo.local".to_owned(),
                self.admin_password.clone().expect("the admin's password"),
            )
        } else {
            let (_, p) = self
                .accounts
                .get(who)
                .unwrap_or_else(|| panic!("no account {who} was added"));
            (who.to_owned(), p.clone())
        };
        common::sign_in(self.base(), &email, &password)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        who: &(String, String),
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base());
        let mut r = match body {
            Some(b) => agent()
                .post(&url)
                .header("cookie", &who.0)
                .header("x-csrf-token", &who.1)
                .send_json(b)
                .unwrap(),
            None => {
                assert_eq!(method, "GET");
                agent().get(&url).header("cookie", &who.0).call().unwrap()
            }
        };
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// The person opens the link `vodo login` printed, signed in as the
    /// page's partner, checks the code and allows it.
    fn approve_login(&self, printed: &str) {
        let link = printed
            .split_whitespace()
            .find(|w| w.contains("/oauth/device?user_code="))
            .unwrap_or_else(|| panic!("`vodo login` printed no link:\n{printed}"))
            .trim_matches(|c| c == '(' || c == ')');
        let partner = self
            .accounts
            .iter()
            .find(|(_, (role, _))| role == "partner")
            .map(|(email, _)| email.clone())
            .expect("the page adds a partner account before `vodo login`");
        let (cookie, _) = self.sign_in(&partner);
        let (status, page, code) = common::decide_device(link, &cookie, "allow");
        assert_eq!(status, 200, "{page}");
        assert!(
            printed.contains(&code),
            "the page shows the code the terminal shows"
        );
    }

    /// One `<!-- reader: ... -->` step.
    fn step(&self, page: &str, step: &str) {
        let words: Vec<&str> = step.split_whitespace().collect();
        match words.as_slice() {
            ["expect", ..] => {
                let text = step.trim_start_matches("expect").trim();
                assert!(
                    self.last_output.contains(text),
                    "{page}: expected `{text}` in what the last command printed:\n{}",
                    self.last_output
                );
            }
            ["approve", "submissions", "as", who] => {
                let me = self.sign_in(who);
                let (status, list) = self.call("GET", "/v1/submissions?state=submitted", &me, None);
                assert_eq!(status, 200, "{list}");
                let queue = list["submissions"].as_array().unwrap();
                assert!(!queue.is_empty(), "{page}: nothing waits for review");
                for s in queue {
                    let id = s["id"].as_str().unwrap();
                    let (status, v) = self.call(
                        "POST",
                        &format!("/v1/submissions/{id}/decision"),
                        &me,
                        Some(json!({ "approve": true })),
                    );
                    assert_eq!(status, 200, "{page}: approving {id}: {v}");
                }
            }
            ["install", plugin, "in", installation, "as", who] => {
                let me = self.sign_in(who);
                let (status, consent) = self.call(
                    "GET",
                    &format!("/v1/installations/{installation}/consent/{plugin}"),
                    &me,
                    None,
                );
                assert_eq!(status, 200, "{page}: {consent}");
                let added = consent["added"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["scope"].clone())
                    .collect::<Vec<_>>();
                assert!(
                    !added.is_empty(),
                    "{page}: the consent screen lists what it asks for: {consent}"
                );
                let (status, v) = self.call(
                    "POST",
                    &format!("/v1/installations/{installation}/plugins"),
                    &me,
                    Some(json!({ "plugin": plugin, "consent": added })),
                );
                assert_eq!(status, 201, "{page}: installing {plugin}: {v}");
            }
            [
                "send",
                event,
                payload,
                "to",
                plugin,
                "in",
                installation,
                "as",
                who,
            ] => {
                let me = self.sign_in(who);
                let (status, v) = self.call(
                    "POST",
                    &format!("/v1/installations/{installation}/plugins/{plugin}/events"),
                    &me,
                    Some(json!({ "event": event, "payload": payload })),
                );
                assert_eq!(
                    (status, v["ok"].as_bool()),
                    (200, Some(true)),
                    "{page}: {v}"
                );
                // As the console shows it: once its line is stored (the
                // server writes lines and audit records twice a second).
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let (_, logs) = self.call(
                        "GET",
                        &format!("/v1/installations/{installation}/plugins/{plugin}/logs"),
                        &me,
                        None,
                    );
                    if logs["lines"].as_array().is_some_and(|l| !l.is_empty()) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{page}: no log line came: {logs}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                std::thread::sleep(Duration::from_millis(700));
            }
            _ => panic!("{page}: the reader does not know `{step}`"),
        }
    }
}

/// The pages, the guide first.
fn pages() -> Vec<PathBuf> {
    let docs = repo().join("docs");
    let mut pages = vec![docs.join("guide.md")];
    let mut rest: Vec<PathBuf> = ["", "templates"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(docs.join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("guide.md"))
        .collect();
    rest.sort();
    pages.extend(rest);
    pages
}

struct Background {
    child: Child,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn every_command_of_the_guide_runs_as_written() {
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("install");
    let path = format!(
        "{}:{}",
        bin.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = work.path().join("config");
    let mut ran = 0;
    let mut sh_blocks = 0;
    let mut reader_steps = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page
            .strip_prefix(repo().join("docs"))
            .unwrap()
            .display()
            .to_string();
        let folder = work.path().join(name.replace(['/', '.'], "-"));
        std::fs::create_dir_all(&folder).unwrap();
        let mut cwd = folder.clone();
        let mut servers = Vec::new();
        let mut reader = Reader::default();
        for (info, lines) in blocks(&text) {
            let background = match info.as_str() {
                "sh" => false,
                "sh,background" => true,
                "reader" => {
                    reader_steps += 1;
                    reader.step(&name, &lines[0]);
                    continue;
                }
                _ => continue,
            };
            sh_blocks += 1;
            for line in lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                ran += 1;
                if let Some(dir) = line.strip_prefix("cd ") {
                    cwd = cwd.join(dir);
                    assert!(
                        cwd.is_dir(),
                        "{name}: `{line}`: no folder {}",
                        cwd.display()
                    );
                    continue;
                }
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .current_dir(&cwd)
                    .env("PATH", &path)
                    .env("CARGO_TARGET_DIR", repo().join("target/plugins"))
                    .env("VODO_PORT", "0")
                    .env("VODO_AUTHOR", "Guide Reader")
                    .env("VODO_CONFIG_DIR", &config);
                if let Some(base) = &reader.base {
                    // The page's server, wherever port 0 put it.
                    command.env("VODO_SERVER", base);
                }
                if line.starts_with("cargo install") {
                    command
                        .arg(format!("{line} --debug --root '{}'", bin.display()))
                        .current_dir(repo())
                        .env("CARGO_TARGET_DIR", repo().join("target"));
                } else if background {
                    // The server itself, not a shell around it, gets the Ctrl-C.
                    command.arg(format!("exec {line}"));
                } else {
                    command.arg(line);
                }
                if background {
                    let mut child = command
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    let (tx, rx) = mpsc::channel();
                    let out = child.stdout.take().unwrap();
                    std::thread::spawn(move || {
                        for l in BufReader::new(out).lines().map_while(Result::ok) {
                            if tx.send(l).is_err() {
                                break;
                            }
                        }
                    });
                    let server = Background { child };
                    let mut printed = Vec::new();
                    loop {
                        match rx.recv_timeout(Duration::from_secs(300)) {
                            Ok(l) if l.contains("Ctrl-C stops it") => break,
                            Ok(l) => printed.push(l),
                            Err(e) => panic!(
                                "{name}: `{line}` never came up ({e}):\n{}",
                                printed.join("\n")
                            ),
                        }
                    }
                    assert!(
                        !printed.iter().any(|l| l.contains("did not load")),
                        "{name}: `{line}`:\n{}",
                        printed.join("\n")
                    );
                    reader.server_started(&printed);
                    servers.push((server, rx));
                    continue;
                }
                if line.starts_with("vodo login") {
                    let out = login(command, &reader, &name, line);
                    reader.ran(line, &out);
                    continue;
                }
                let out = command.output().unwrap();
                assert!(
                    out.status.success(),
                    "{name}: `{line}` in {} failed:\n{}\n{}",
                    cwd.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                reader.ran(line, &String::from_utf8_lossy(&out.stdout));
            }
        }
        drop(servers);
    }
    assert!(sh_blocks >= 15, "{sh_blocks} blocks");
    assert!(ran >= 40, "{ran} commands");
    assert!(reader_steps >= 4, "{reader_steps} reader steps");
}

/// Runs `vodo login`, approves its code as the reader would, and waits for
/// it to finish; what it printed.
fn login(mut command: Command, reader: &Reader, page: &str, line: &str) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let mut lines = out.lines();
    for l in lines.by_ref() {
        let l = l.unwrap();
        printed.push_str(&l);
        printed.push('\n');
        if l.contains("/oauth/device?user_code=") {
            break;
        }
    }
    reader.approve_login(&printed);
    for l in lines {
        printed.push_str(&l.unwrap());
        printed.push('\n');
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "{page}: `{line}` failed:\n{printed}\n{err}"
    );
    printed
}
