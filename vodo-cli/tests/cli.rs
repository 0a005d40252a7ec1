//! `vodo plugin:validate` as a plugin author runs it, including on hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn vodo(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run vodo")
}

const GOOD: &str = r#"{
  "name": "Order Notifier", "slug": "order-notifier", "version": "1.0.0",
  "description": "Tells a chat channel about new orders.", "author": "Acme",
  "license": "MIT", "entry": "plugin.wasm",
  "permissions": {
    "entities": { "read": ["order"] },
    "hooks": { "subscribe": ["order.*"] },
    "api": { "rate_limit": "100/minute" }
  }
}"#;

#[test]
fn a_valid_folder_exits_0_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.json"), GOOD).unwrap();
    let out = vodo(&["plugin:validate"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: order-notifier 1.0.0"), "{stdout}");
    assert!(stdout.contains("  entities:read:order"), "{stdout}");
    assert!(stdout.contains("api rate limit: 100/minute"), "{stdout}");

    let out = vodo(&["plugin:validate", "plugin.json", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["scopes"].as_array().unwrap().len(), 3);
}

#[test]
fn an_invalid_manifest_exits_1_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace("\"order-notifier\"", "\"Order Notifier!\"")
        .replace("\"entities\"", "\"entites\"")
        .replace("100/minute", "lots");
    std::fs::write(dir.path().join("plugin.json"), bad).unwrap();
    let out = vodo(&["plugin:validate", "."], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(3 problems)"), "{stderr}");
    assert!(stderr.contains("$.slug: invalid slug"), "{stderr}");
    assert!(
        stderr.contains("$.permissions.entites: unknown key `entites`: did you mean `entities`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("$.permissions.api.rate_limit: `lots` is not a rate limit"),
        "{stderr}"
    );

    let out = vodo(&["plugin:validate", "--json"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 3);
}

#[test]
fn missing_files_and_folders_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = vodo(&["plugin:validate"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("run this in a plugin folder"), "{stderr}");
    let out = vodo(&["plugin:validate", "no/such/file.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn hostile_input_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let deep = "[".repeat(100_000);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let wide = format!(
        "{{\"permissions\": {{\"entities\": {{\"read\": [{}]}}}}}}",
        (0..5000)
            .map(|i| format!("\"e{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("binary", (0..=255u8).cycle().take(4096).collect()),
        ("bom", b"\xef\xbb\xbf{}".to_vec()),
        ("deep", deep.into_bytes()),
        ("huge", huge.into_bytes()),
        ("wide", wide.into_bytes()),
        ("nul", b"{\"name\": \"a\0b\"}".to_vec()),
        ("numbers", br#"{"name": 1e999, "version": -0, "permissions": {"storage": {"max_size": 1e30}}}"#.to_vec()),
        ("types", br#"{"name": [], "slug": {}, "author": 7, "permissions": {"users": ["read"], "network": []}}"#.to_vec()),
        ("unicode", "{\"slug\": \"\u{202e}lmth.exe\", \"name\": \"\u{1f600}\"}".as_bytes().to_vec()),
        ("dup", br#"{"permissions": {}, "permissions": {"entities": {"write": ["*"]}}}"#.to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, bytes).unwrap();
        let out = vodo(&["plugin:validate", path.to_str().unwrap()], dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn the_schema_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = vodo(&["plugin:schema"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "Vodo plugin manifest (plugin.json)");
}
