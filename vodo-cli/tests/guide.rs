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

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The code blocks of a page: (info string, lines).
fn blocks(page: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in page.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), Vec::new())),
            (Some(_), Some(_)) => out.extend(current.take()),
            (Some((_, lines)), None) => lines.push(line.to_owned()),
            (None, None) => {}
        }
    }
    out
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
    let mut ran = 0;
    let mut sh_blocks = 0;
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
        for (info, lines) in blocks(&text) {
            let background = match info.as_str() {
                "sh" => false,
                "sh,background" => true,
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
                    .env("VODO_AUTHOR", "Guide Reader");
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
                    servers.push((server, rx));
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
            }
        }
        drop(servers);
    }
    assert!(sh_blocks >= 15, "{sh_blocks} blocks");
    assert!(ran >= 40, "{ran} commands");
}
