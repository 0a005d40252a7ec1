//! The Vodo demo host, on its embedded defaults.
//!
//! Walks through what a host does with the foundation crates: validate a
//! plugin's manifest, ask for and record the installer's consent, issue an
//! API key, authorize requests against the key, the grant and the rate
//! limit, trip a circuit breaker, and verify the tamper-evident audit trail.
//! Everything lives in a temporary folder that is removed at the end.

use std::time::Duration;

use anyhow::{Context, Result};
use vodo_core::audit::verify_file;
use vodo_core::health::Fallback;
use vodo_core::keys::IssueKey;
use vodo_core::{Host, InstallationId, Manifest, SecretKey};
use vodo_scopes::{ConsentDiff, PluginScope, ScopeSet};

const MANIFEST: &str = include_str!("../../plugins/order-notifier/plugin.json");

fn main() -> Result<()> {
    let data = tempfile::tempdir().context("creating the demo's data folder")?;
    // A real host loads this from its secrets store; it keys key hashes and the audit chain.
    let secret = SecretKey::generate()?;
    let host = Host::open(data.path(), &secret)?;
    println!("Vodo demo host: data in {}\n", data.path().display());

    println!("1. A partner submits a plugin with a typo in its manifest:");
    let typo = MANIFEST
        .replace("\"network\"", "\"netwrok\"")
        .replace("4/second", "4 per second");
    if let Err(e) = Manifest::parse(&typo) {
        for p in &e.problems {
            println!("   {p}");
        }
    }

    let manifest = Manifest::parse(MANIFEST)?;
    println!(
        "\n2. The fixed manifest of `{}` {} requests:",
        manifest.slug, manifest.version
    );
    for s in manifest.scopes() {
        println!("   {s}");
    }

    let shop = InstallationId::new("shop-42");
    let consent = host
        .permissions
        .consent_needed(&shop, &manifest.slug, manifest.scopes())?;
    println!(
        "\n3. Installing in `{shop}` needs consent to {} scopes; the merchant declines network access.",
        consent.added.len()
    );
    let consented: ScopeSet = manifest
        .scopes()
        .iter()
        .filter(|s| !matches!(s, PluginScope::NetworkOutbound(_)))
        .cloned()
        .collect();
    host.install(&manifest, &shop, consented, "merchant@shop-42")?;

    let (key, record) = host.keys.issue(IssueKey {
        installation: shop.clone(),
        plugin: manifest.slug.clone(),
        name: "order sync".into(),
        scopes: ["entities:read".parse::<PluginScope>()?]
            .into_iter()
            .collect(),
        ttl: Some(Duration::from_secs(90 * 24 * 3600)),
    })?;
    println!(
        "\n4. Issued API key {:?} (id `{}`), shown once, stored as an HMAC.",
        key, record.id
    );

    println!("\n5. Requests made with the key:");
    for scope in [
        "entities:read:order",
        "entities:read:product",
        "entities:write:order_note",
        "entities:read:customer",
        "entities:read:order",
        "entities:read:order",
    ] {
        let verdict = match host.authorize(key.expose_secret(), &scope.parse()?) {
            Ok(_) => "allowed".to_owned(),
            Err(e) => format!("denied: {e}"),
        };
        println!("   {scope:<28} {verdict}");
    }
    let tampered = key
        .expose_secret()
        .replacen('A', "B", 1)
        .replacen('a', "b", 1);
    if let Err(e) = host.authorize(&tampered, &"entities:read:order".parse()?) {
        println!("   a mistyped key               denied: {e}");
    }

    println!("\n6. The plugin's new version asks for more:");
    let v2: ScopeSet = manifest
        .scopes()
        .iter()
        .cloned()
        .chain(["users:read".parse::<PluginScope>()?])
        .collect();
    let granted = host
        .permissions
        .scopes(&shop, &manifest.slug)?
        .map(|s| (*s).clone())
        .unwrap_or_default();
    let diff = ConsentDiff::between(&granted, &v2);
    for s in &diff.added {
        println!("   needs consent again: {s}");
    }

    println!("\n7. The plugin starts failing; its circuit opens and the host falls back:");
    for attempt in 1..=7 {
        let answer = host.health.call(
            &manifest.slug,
            || Err::<&str, _>("trap: unreachable executed"),
            |why| match why {
                Fallback::Failed(_) => "fallback (plugin failed)",
                Fallback::CircuitOpen => "fallback (circuit open, plugin not called)",
                Fallback::Disabled => "fallback (plugin disabled)",
            },
        );
        println!(
            "   call {attempt}: {answer}; status {}",
            host.health.status(&manifest.slug)
        );
    }

    host.keys.flush_usage()?;
    host.audit.flush()?;
    let audit_path = data.path().join("audit.jsonl");
    let report = verify_file(&audit_path, &secret, None)?;
    println!(
        "\n8. The audit trail holds {} chained records and verifies.",
        report.records
    );
    let text = std::fs::read_to_string(&audit_path)?;
    std::fs::write(
        &audit_path,
        text.replacen("entities:read:product", "entities:read:produce", 1),
    )?;
    match verify_file(&audit_path, &secret, None) {
        Err(e) => println!("   after one edited character: {e}"),
        Ok(_) => anyhow::bail!("tampering went unnoticed"),
    }
    Ok(())
}
