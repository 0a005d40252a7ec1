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

/// The roadmap's own example, as every plugin author will copy it.
const ROADMAP: &str = test_support::ROADMAP_MANIFEST;

#[test]
fn the_roadmaps_own_manifest_validates_as_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.json"), ROADMAP).unwrap();
    let out = vodo(&["plugin:validate", "--json"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["scopes"],
        serde_json::json!([
            "entities:read",
            "entities:write:order",
            "entities:write:product",
            "hooks:subscribe:order.*",
            "hooks:subscribe:user.created",
            "api:access:orders",
            "api:access:products",
            "storage:write",
            "network:outbound:api.sendgrid.com",
            "network:outbound:api.stripe.com"
        ])
    );
    let out = vodo(&["plugin:validate"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("storage quota: 50000000 bytes (.json, .csv, .pdf)"),
        "{stdout}"
    );
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

/// A component's first bytes (what `wasm32-wasip2` builds produce), and a little body.
fn fake_component() -> Vec<u8> {
    let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    c.extend_from_slice(b"component body");
    c
}

#[test]
fn a_plugin_folder_becomes_a_marketplace_package() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.json"), GOOD).unwrap();
    std::fs::write(dir.path().join("plugin.wasm"), fake_component()).unwrap();
    std::fs::write(dir.path().join("README.md"), "# Order Notifier\n").unwrap();
    std::fs::write(
        dir.path().join("samples.json"),
        r#"[{"event": "order.created", "payload": "1001"},
            {"event": "order.paid", "payload": {"id": 7}},
            {"event": "order.cancelled"}]"#,
    )
    .unwrap();
    let out = vodo(&["plugin:package"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("packaged order-notifier 1.0.0: order-notifier-1.0.0.vpkg"),
        "{stdout}"
    );
    let bytes = std::fs::read(dir.path().join("order-notifier-1.0.0.vpkg")).unwrap();
    let sha = vodo_core::digest::hex(&vodo_core::digest::sha256(&bytes));
    assert!(
        stdout.contains(&sha),
        "the digest reviewers will pin is shown"
    );
    let p = vodo_marketplace::package::Package::parse(&bytes, u64::MAX).unwrap();
    assert_eq!(p.manifest, GOOD);
    assert_eq!(p.readme, "# Order Notifier\n");
    assert_eq!(p.component, fake_component());
    assert_eq!(
        p.samples,
        [
            ("order.created".to_owned(), "1001".to_owned()),
            ("order.paid".to_owned(), r#"{"id":7}"#.to_owned()),
            ("order.cancelled".to_owned(), String::new()),
        ]
    );

    // --wasm, --samples and --out, from another folder.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("built.wasm"), fake_component()).unwrap();
    std::fs::remove_file(dir.path().join("plugin.wasm")).unwrap();
    std::fs::write(elsewhere.path().join("s.json"), "[]").unwrap();
    let out = vodo(
        &[
            "plugin:package",
            dir.path().to_str().unwrap(),
            "--wasm",
            "built.wasm",
            "--samples",
            "s.json",
            "-o",
            "x.vpkg",
        ],
        elsewhere.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let p = vodo_marketplace::package::Package::parse(
        &std::fs::read(elsewhere.path().join("x.vpkg")).unwrap(),
        u64::MAX,
    )
    .unwrap();
    assert!(p.samples.is_empty());
}

#[test]
fn packaging_refuses_what_the_marketplace_would_refuse_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.json"), GOOD).unwrap();
    let fails = |args: &[&str], says: &str| {
        let out = vodo(args, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    fails(&["plugin:package"], "run `vodo plugin:build`");
    let mut module = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    module.extend_from_slice(b"core");
    std::fs::write(dir.path().join("plugin.wasm"), module).unwrap();
    fails(
        &["plugin:package"],
        "core WebAssembly module, not a component",
    );
    std::fs::write(dir.path().join("plugin.wasm"), b"MZ\x90\x00 not wasm").unwrap();
    fails(&["plugin:package"], "not a WebAssembly component");
    std::fs::write(dir.path().join("plugin.wasm"), fake_component()).unwrap();
    std::fs::write(dir.path().join("samples.json"), r#"{"event": "x"}"#).unwrap();
    fails(&["plugin:package"], "must be an array");
    std::fs::write(dir.path().join("samples.json"), r#"[{"payload": "1"}]"#).unwrap();
    fails(&["plugin:package"], "$[0]: give the event name");
    std::fs::write(dir.path().join("samples.json"), "[{").unwrap();
    fails(&["plugin:package"], "is not JSON");
    std::fs::remove_file(dir.path().join("samples.json")).unwrap();
    std::fs::write(
        dir.path().join("plugin.json"),
        GOOD.replace("\"1.0.0\"", "\"one\""),
    )
    .unwrap();
    fails(&["plugin:package"], "$.version");
    fails(&["plugin:package", "plugin.json"], "is not a plugin folder");
    assert!(
        !dir.path().join("order-notifier-1.0.0.vpkg").exists(),
        "nothing is written on failure"
    );
}

/// A 2 GiB package to review and a 2 GiB component to package are refused
/// in under a second, by a process that may not even map 512 MiB: the size
/// is checked before anything is read (the files are sparse, so making them
/// costs nothing either).
#[test]
fn two_gigabyte_inputs_are_refused_at_once_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let huge = |name: &str| {
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        f.set_len(2 << 30).unwrap();
    };
    huge("huge.vpkg");
    std::fs::write(dir.path().join("plugin.json"), GOOD).unwrap();
    huge("plugin.wasm");
    for (args, says) in [
        (
            "plugin:review huge.vpkg",
            "the package `huge.vpkg` is 2.0 GiB (2147483648 bytes); the marketplace takes at most 20.0 MiB",
        ),
        (
            "plugin:package",
            "the component `./plugin.wasm` is 2.0 GiB (2147483648 bytes)",
        ),
    ] {
        let start = std::time::Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 524288 && exec \"{}\" {args}",
                env!("CARGO_BIN_EXE_vodo")
            ))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let took = start.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args}: {stderr}");
        assert!(matches!(out.status.code(), Some(1 | 2)), "{args}: {stderr}");
        assert!(took < std::time::Duration::from_secs(1), "{args}: {took:?}");
    }
}

/// From a real plugin to a locally reviewed package: the example plugin is
/// built from source, packaged, and passes the review the marketplace runs;
/// the same plugin under a license the marketplace refuses does not.
#[test]
fn a_real_plugin_is_packaged_and_reviewed_locally() {
    let guests = test_support::build_plugins("examples/plugins").unwrap();
    let wasm = test_support::wasm_path(&guests, "order-notifier");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let folder = root.join("examples/plugins/order-notifier");
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("samples.json"),
        r#"[{"event": "order.created", "payload": "1001"}]"#,
    )
    .unwrap();
    let out = vodo(
        &[
            "plugin:package",
            folder.to_str().unwrap(),
            "--wasm",
            wasm.to_str().unwrap(),
            "--samples",
            "samples.json",
            "-o",
            "notifier.vpkg",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = vodo(&["plugin:review", "notifier.vpkg"], work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{out:?}");
    assert!(stdout.contains("passes the automated review"), "{stdout}");

    let out = vodo(&["plugin:review", "notifier.vpkg", "--json"], work.path());
    let report: vodo_marketplace::review::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.errors().count(), 0);

    // Too new for this host.
    let out = vodo(
        &["plugin:review", "notifier.vpkg", "--host-api", "2.0.0"],
        work.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("compatibility"), "{stdout}");

    // A license the marketplace refuses.
    let gpl = work.path().join("gpl");
    std::fs::create_dir(&gpl).unwrap();
    let manifest = std::fs::read_to_string(folder.join("plugin.json"))
        .unwrap()
        .replace("\"MIT\"", "\"GPL-3.0-only\"")
        .replace(
            "\"$schema\": \"../../../vodo-core/schema/plugin.schema.json\",",
            "",
        );
    std::fs::write(gpl.join("plugin.json"), manifest).unwrap();
    let out = vodo(
        &[
            "plugin:package",
            "gpl",
            "--wasm",
            wasm.to_str().unwrap(),
            "-o",
            "gpl.vpkg",
        ],
        work.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = vodo(&["plugin:review", "gpl.vpkg"], work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error   license"), "{stdout}");
    assert!(stdout.contains("error(s) block approval"), "{stdout}");

    // Not a package at all: an operational error, exit 2.
    std::fs::write(work.path().join("junk.vpkg"), b"junk").unwrap();
    let out = vodo(&["plugin:review", "nope.vpkg"], work.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the package"));
    let out = vodo(&["plugin:review", "junk.vpkg"], work.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("error   package"));
}
