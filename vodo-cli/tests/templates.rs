//! The plugin author's first minutes: each starter template becomes a
//! plugin folder that validates, passes its own tests, runs its samples in
//! the sandbox, builds into a package and passes the automated review; and
//! `vodo plugin:test` says what to change when a permission or a limit
//! stops a plugin. All generated plugins share one target directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The target directory every generated plugin builds into.
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

fn vodo(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vodo"))
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", shared_target())
        .env("VODO_AUTHOR", "Test Author")
        .output()
        .expect("run vodo")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {stdout}\n{stderr}");
    stdout
}

fn json(out: &Output, what: &str) -> Value {
    let stdout = ok(out, what);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

/// What each template's samples must show the plugin doing.
const TEMPLATES: &[(&str, &str)] = &[
    ("basic", r#""info: new order 1001: 49.90 SAR""#),
    ("entity", "entities.put gift_message/1001"),
    ("integration", "not configured: set `api_url`"),
    ("dashboard", "wrote sales.json"),
    ("ecommerce", "hooks.trigger inventory.low_stock"),
    ("workflow", "hooks.trigger workflow.high_value_order"),
];

#[test]
fn every_template_validates_tests_builds_and_passes_the_review() {
    let work = tempfile::tempdir().unwrap();
    for (template, shows) in TEMPLATES {
        let name = format!("my-{template}");
        let made = json(
            &vodo(
                &["plugin:create", &name, "--template", template, "--json"],
                work.path(),
            ),
            template,
        );
        assert_eq!(made["slug"], name.as_str());
        let dir = work.path().join(&name);
        for file in [
            "plugin.json",
            "Cargo.toml",
            "src/lib.rs",
            "samples.json",
            "README.md",
            "vendor/vodo-pdk/wit/plugin.wit",
        ] {
            assert!(dir.join(file).is_file(), "{template}: {file}");
        }
        assert!(
            std::fs::read_dir(dir.join("tests"))
                .unwrap()
                .next()
                .is_some(),
            "{template} has tests"
        );
        let valid = json(&vodo(&["plugin:validate", "--json"], &dir), template);
        assert_eq!(valid["valid"], true, "{template}");

        let tested = json(&vodo(&["plugin:test", "--json"], &dir), template);
        assert_eq!(tested["failed"], 0, "{template}: {tested}");
        let runs = tested["samples"].as_array().unwrap();
        assert!(!runs.is_empty(), "{template}");
        assert!(
            runs.iter().all(|r| r["outcome"]["result"] == "ok"),
            "{template}: {tested}"
        );
        assert!(tested.to_string().contains(shows), "{template}: {tested}");

        let built = json(&vodo(&["plugin:build", "--json"], &dir), template);
        let package = PathBuf::from(built["package"].as_str().unwrap());
        assert!(
            built["component"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{}.wasm", name.replace('-', "_"))),
            "{built}"
        );
        let package = if package.is_absolute() {
            package
        } else {
            dir.join(package)
        };
        assert!(package.is_file(), "{template}: {}", package.display());
        ok(
            &vodo(&["plugin:review", package.to_str().unwrap()], &dir),
            &format!("{template}: review"),
        );
    }
}

#[test]
fn plugin_test_names_the_permission_or_the_limit_to_change() {
    let work = tempfile::tempdir().unwrap();
    ok(
        &vodo(
            &["plugin:create", "carrier", "-t", "integration"],
            work.path(),
        ),
        "create",
    );
    let dir = work.path().join("carrier");
    // A host outside the allowlist.
    std::fs::write(
        dir.join("samples.json"),
        r#"[{"event": "order.created", "settings": {"api_url": "https://evil.example", "api_token": "t"}, "payload": {"id": "1"}}]"#,
    )
    .unwrap();
    let out = vodo(&["plugin:test", "--no-cargo-test"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("network  POST evil.example: refused"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix      the plugin may not reach `evil.example`: add it to permissions.network.outbound in plugin.json"),
        "{stdout}"
    );
    let report = json_of(&vodo(&["plugin:test", "--no-cargo-test", "--json"], &dir));
    assert_eq!(report["samples"][0]["audit"][0]["kind"], "network_request");
    assert_eq!(report["samples"][0]["audit"][0]["allowed"], false);

    // A memory limit below what the plugin needs.
    std::fs::write(
        dir.join("samples.json"),
        r#"[{"event": "order.created", "payload": {"id": "1"}}]"#,
    )
    .unwrap();
    let out = vodo(
        &["plugin:test", "--no-cargo-test", "--memory-mib", "1"],
        &dir,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("STOPPED (memory): memory limit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix      a call may use 1.0 MiB of memory (set by --memory-mib"),
        "{stdout}"
    );

    // A sample for an event the plugin does not subscribe to.
    std::fs::write(
        dir.join("samples.json"),
        r#"[{"event": "order.paid", "payload": "1"}]"#,
    )
    .unwrap();
    let out = vodo(&["plugin:test", "--no-cargo-test"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("samples.json $[0] is for `order.paid`, which carrier does not subscribe to: add `subscribe:order.paid` to permissions.hooks"),
        "{stderr}"
    );
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn init_and_create_never_overwrite_and_say_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("shop-helper");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("plugin.json"), "mine").unwrap();
    let out = vodo(&["plugin:init", "--template", "basic"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("already has plugin.json: nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("plugin.json")).unwrap(),
        "mine"
    );
    assert!(!dir.join("Cargo.toml").exists(), "nothing written");

    std::fs::remove_file(dir.join("plugin.json")).unwrap();
    std::fs::write(dir.join("notes.txt"), "kept").unwrap();
    let made = json(
        &vodo(&["plugin:init", "-t", "workflow", "--json"], &dir),
        "init",
    );
    assert_eq!(made["slug"], "shop-helper");
    assert_eq!(made["template"], "workflow");
    let manifest = std::fs::read_to_string(dir.join("plugin.json")).unwrap();
    assert!(manifest.contains(r#""name": "Shop Helper""#), "{manifest}");
    assert!(
        manifest.contains(r#""author": "Test Author""#),
        "{manifest}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "kept"
    );

    let out = vodo(
        &["plugin:create", "shop-helper", "-t", "basic"],
        work.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("exists and is not empty"), "{stderr}");

    let out = vodo(&["plugin:create", "x", "-t", "basic"], work.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not make a slug of at least 3"));
    let out = vodo(&["plugin:create", "good-name", "-t", "fancy"], work.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("there is no template `fancy`: choose one of basic, entity, integration, dashboard, ecommerce, workflow"),
        "{stderr}"
    );
    // Without --template and without a terminal: the basic template.
    let made = json(
        &vodo(&["plugin:create", "Quiet One", "--json"], work.path()),
        "default",
    );
    assert_eq!(made["template"], "basic");
    assert_eq!(made["slug"], "quiet-one");
}
