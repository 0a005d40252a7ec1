//! The Vodo demo host, on its embedded defaults.
//!
//! Builds the example plugin from source, takes it through the marketplace
//! (automated review, approval, a signed index the store verifies), installs
//! it into a sandboxed host with the installer's consent, and drives an
//! order event through it; on the way it shows what the host refuses (a bad
//! manifest, a component that imports more than its grant, an API key
//! calling a resource the plugin was not granted, a forged key, a failing
//! plugin, a plugin the merchant disabled while it was loaded) and ends by
//! verifying, then tampering with, the audit trail. Everything lives in a
//! temporary folder that is removed at the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use vodo_core::audit::verify_file;
use vodo_core::health::{Fallback, HealthTrackerExt};
use vodo_core::keys::IssueKey;
use vodo_core::{Consent, Host, InstallationId, Manifest, SecretKey, Timestamp};
use vodo_marketplace::index::{Client, DirSource, Repository, RoleSigners, SigningKey};
use vodo_marketplace::installer::{Channel, Installer, UpdatePolicy};
use vodo_marketplace::package::Package;
use vodo_marketplace::review::Policy;
use vodo_marketplace::submissions::{Desk, MemorySubmissions};
use vodo_marketplace::workflow::{Actor, Role, State};
use vodo_sandbox::{Limits, MemoryServices, Request, Sandbox, SandboxConfig};
use vodo_scopes::{PluginScope, ScopeSet};

const MANIFEST: &str = include_str!("../../plugins/order-notifier/plugin.json");

/// Submits the plugin to a marketplace, reviews and publishes it in a signed
/// index, and installs it from there: returns the component the store got.
fn through_the_marketplace(data: &std::path::Path, wasm: Vec<u8>) -> Result<Vec<u8>> {
    let now = Timestamp::now();
    // The marketplace runs its own host and sandbox for the review's trial
    // runs; it shares only the compiled-component cache with the store's.
    let market = Host::in_memory(&SecretKey::generate()?);
    let sandbox = Arc::new(Sandbox::new(
        SandboxConfig {
            storage_root: Some(data.join("market-trials")),
            cache_dir: Some(data.join("cache")),
            ..SandboxConfig::default()
        },
        &market,
        Arc::new(MemoryServices::new()),
    )?);
    let actor = |id: &str, role| Actor {
        id: id.into(),
        role,
    };
    let developer = actor("dev@acme.example", Role::Developer);
    let reviewer = actor("reviewer@market", Role::Reviewer);
    let package = Package {
        manifest: MANIFEST.into(),
        readme: "# Order Notifier\n".into(),
        samples: vec![("order.created".into(), "1001".into())],
        component: wasm,
    }
    .to_bytes();
    let desk = Desk::new(
        Arc::new(MemorySubmissions::new()),
        Policy::default(),
        sandbox,
    );
    let s = desk.draft(&developer, &package, now)?;
    let s = desk.submit(&s.id, &developer, now)?;
    let report = s.report.clone().unwrap_or_default();
    println!(
        "   automated review of {} (package {}…): {} error(s), {} warning(s)",
        s.id,
        &s.package_sha256[..12],
        report.errors().count(),
        report.findings.len() - report.errors().count()
    );
    for f in &report.findings {
        println!("     {:?} {}: {}", f.severity, f.check, f.message);
    }
    for to in [State::InReview, State::Testing, State::Approved] {
        desk.transition(&s.id, to, &reviewer, "", now)?;
    }
    let s = desk.transition(
        &s.id,
        State::Published,
        &actor("admin@market", Role::Admin),
        "",
        now,
    )?;
    println!("   {} moves recorded, now {:?}", s.history.len(), s.state);

    let keys = (0..4)
        .map(|_| SigningKey::generate())
        .collect::<Result<Vec<_>, _>>()?;
    let signers = RoleSigners {
        root: vec![&keys[0]],
        targets: vec![&keys[1]],
        snapshot: vec![&keys[2]],
        timestamp: vec![&keys[3]],
    };
    let day = Duration::from_secs(24 * 3600);
    let cdn = data.join("cdn");
    let mut repo = Repository::create(&cdn, &signers, now.plus(365 * day))?;
    let path = repo.add_package(&desk.package(&s.id)?, "stable")?;
    repo.publish(&signers, now, 30 * day, day)?;
    let mut client = Client::new(&repo.pinned_root()?)?;
    let source = DirSource(cdn);
    client.update(&source, now)?;
    let (installed, package) = Installer::new(&client, &source)
        .with_host_api(Policy::default().host_api)
        .install_latest("order-notifier", Channel::Stable, UpdatePolicy::Patch)?;
    println!(
        "   `{path}` published; the store verified the signed index and installed {installed}"
    );
    Ok(package.component)
}

fn main() -> Result<()> {
    let data = tempfile::tempdir().context("creating the demo's data folder")?;
    // A real host loads this from its secrets store; it keys key hashes and the audit chain.
    let secret = SecretKey::generate()?;
    let host = Host::open(data.path(), &secret)?;
    println!("Vodo demo host: data in {}\n", data.path().display());

    println!("1. A partner submits a plugin with two mistakes in its manifest:");
    let typo = MANIFEST
        .replace("\"network\"", "\"netwrok\"")
        .replace("100/minute", "100 a minute");
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

    print!("\n3. Building the plugin from examples/plugins/order-notifier for wasm32-wasip2 ... ");
    let dir = test_support::build_plugins("examples/plugins").map_err(|e| anyhow!(e))?;
    let wasm = std::fs::read(test_support::wasm_path(&dir, "order-notifier"))?;
    println!("{} KiB", wasm.len() / 1024);

    let services = Arc::new(MemoryServices::new());
    // The sandbox runs on the host's own grants, rate limiter, breakers and audit trail.
    let sandbox = Sandbox::new(
        SandboxConfig {
            storage_root: Some(data.path().join("storage")),
            cache_dir: Some(data.path().join("cache")),
            ..SandboxConfig::default()
        },
        &host,
        services.clone(),
    )?;
    let shop = InstallationId::new("shop-42");

    println!(
        "\n4. The marketplace reviews the package, publishes it signed, and the store installs it:"
    );
    let wasm = through_the_marketplace(data.path(), wasm)?;

    let without_network: ScopeSet = manifest
        .scopes()
        .iter()
        .filter(|s| !matches!(s, PluginScope::NetworkOutbound(_)))
        .cloned()
        .collect();
    println!(
        "\n5. The merchant declines network access; the sandbox refuses a component that imports it:"
    );
    let declined = Consent::to(without_network, "merchant@shop-42");
    if let Err(e) = sandbox.install(&shop, &manifest, &wasm, &declined, Limits::default()) {
        println!("   {e}");
    }

    println!(
        "\n6. The merchant consents to everything; the grant is recorded and the plugin installed."
    );
    let plugin = sandbox.install(
        &shop,
        &manifest,
        &wasm,
        &Consent::all(&manifest, "merchant@shop-42"),
        Limits::default(),
    )?;

    println!("\n7. The store emits `order.created` for order 1001:");
    vodo_sandbox::HostServices::put_entity(
        &*services,
        &shop,
        "order",
        "1001",
        r#"{"total":"49.90","currency":"SAR"}"#,
    )
    .map_err(|e| anyhow!(e))?;
    for d in sandbox.dispatch(&shop, "order.created", "1001") {
        match d.outcome {
            Ok(u) => println!(
                "   {}: ok in {:?}, {} host calls, peak memory {} KiB",
                d.plugin,
                u.wall,
                u.host_calls,
                u.peak_memory / 1024
            ),
            Err(e) => println!("   {}: {e}", d.plugin),
        }
    }
    for (_, _, line) in services.logs.lock().iter() {
        println!("   plugin log: {line}");
    }
    let note = vodo_sandbox::HostServices::get_entity(&*services, &shop, "order_note", "1001")
        .map_err(|e| anyhow!(e))?;
    println!("   order_note/1001 = {}", note.unwrap_or_default());
    let status = sandbox.call_request(
        &plugin,
        &Request {
            method: "GET".into(),
            path: "/status".into(),
            headers: vec![],
            body: vec![],
        },
    );
    if let Ok(r) = status.result {
        println!(
            "   GET /status -> {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }

    println!("\n8. An API key for the plugin's back end, and platform API requests made with it:");
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
        "   issued {key:?} (id `{}`), shown once, stored as an HMAC",
        record.id
    );
    for (request, resource, scope) in [
        ("GET /api/orders/1001", "orders", "entities:read:order"),
        ("GET /api/products/7", "products", "entities:read:product"),
        ("PUT /api/orders/1001", "orders", "entities:write:order"),
    ] {
        let verdict = match host.authorize(key.expose_secret(), resource, &scope.parse()?) {
            Ok(_) => "allowed".to_owned(),
            Err(e) => format!("denied: {e}"),
        };
        println!("   {request:<28} {verdict}");
    }
    // One character of the secret part typed wrong (whatever the key holds).
    let mut forged: Vec<char> = key.expose_secret().chars().collect();
    let at = forged.len().saturating_sub(10);
    if let Some(c) = forged.get_mut(at) {
        *c = if *c == 'x' { 'y' } else { 'x' };
    }
    let forged: String = forged.into_iter().collect();
    if let Err(e) = host.authorize(&forged, "orders", &"entities:read:order".parse()?) {
        println!("   a mistyped key               denied: {e}");
    }

    println!("\n9. Another plugin starts failing; its circuit opens and the host falls back:");
    let flaky = vodo_core::PluginId::new("flaky-widget");
    for attempt in 1..=7 {
        let answer = host.health.call(
            &shop,
            &flaky,
            || Err::<&str, _>("trap: unreachable executed"),
            |why| match why {
                Fallback::Failed(_) => "fallback (plugin failed)",
                Fallback::CircuitOpen => "fallback (circuit open, plugin not called)",
            },
        );
        println!(
            "   call {attempt}: {answer}; status {}",
            host.health.report(&shop, &flaky).status
        );
    }

    println!(
        "\n10. The merchant disables the order notifier while it is loaded; the next event is refused:"
    );
    sandbox.set_enabled(&shop, &manifest.slug, false, "merchant@shop-42")?;
    match sandbox.call_event(&plugin, "order.created", "1002").result {
        Err(e) => println!("   order.created -> {e}"),
        Ok(()) => anyhow::bail!("a disabled plugin ran"),
    }
    sandbox.set_enabled(&shop, &manifest.slug, true, "merchant@shop-42")?;
    println!(
        "   enabled again: {} subscriber(s) of order.created",
        sandbox.subscribers(&shop, "order.created").len()
    );

    host.keys.flush_usage()?;
    host.audit.flush()?;
    let audit_path = data.path().join("audit.jsonl");
    let report = verify_file(&audit_path, &secret, None)?;
    println!(
        "\n11. The audit trail holds {} chained records and verifies.",
        report.records
    );
    let text = std::fs::read_to_string(&audit_path)?;
    std::fs::write(
        &audit_path,
        text.replacen("api:access:products", "api:access:produce", 1),
    )?;
    match verify_file(&audit_path, &secret, None) {
        Err(e) => println!("   after one edited character: {e}"),
        Ok(_) => anyhow::bail!("tampering went unnoticed"),
    }
    Ok(())
}
