//! `vodo serve`: the whole platform on an embedded data folder.
//!
//! On first start the folder is seeded: a demo installation, the example
//! plugin built from source and taken through the marketplace (automated
//! review, a reviewer's approval, publication) and installed into it with
//! the admin's consent, a sample order, and an admin account whose one-time
//! password is printed. A second start reuses the folder as it was left.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use vodo_core::{InstallationId, Manifest};
use vodo_marketplace::package::Package;
use vodo_sandbox::HostServices;
use vodo_server::{Platform, PlatformConfig, Role, Session};

/// The seeded installation.
pub const DEMO: &str = "demo";
/// The seeded admin's email.
pub const ADMIN: &str = "admin@vodo.local";

/// Where the example plugin's source is: next to this crate in the repository.
fn example_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/order-notifier")
}

/// Runs the platform on `data` at `addr` until Ctrl-C, with the plugins
/// being developed in `plugins` (see [`crate::dev`]) loaded and watched.
pub fn run(data: &Path, addr: SocketAddr, plugins: Option<&Path>) -> Result<()> {
    let dev = plugins.map(crate::dev::folders).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(data, addr, dev))
}

async fn serve(data: &Path, addr: SocketAddr, dev: Option<Vec<PathBuf>>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}: is another server there? Choose another port with --port")
    })?;
    let addr = listener.local_addr().context("the listener's address")?;
    let base = format!("http://{addr}");
    let mut config = PlatformConfig::new(data);
    config.issuer = base.clone();
    let first = !data.join("server.db").exists();
    let platform = tokio::task::spawn_blocking(move || -> Result<Platform> {
        let platform = Platform::open(config)?;
        Ok(platform)
    })
    .await
    .context("opening the data folder")??;
    let platform = Arc::new(platform);
    let password = if first || platform.store.accounts()? == 0 {
        let p = Arc::clone(&platform);
        Some(
            tokio::task::spawn_blocking(move || seed(&p))
                .await
                .context("seeding the data folder")??,
        )
    } else {
        None
    };
    println!("Vodo is serving {} on {base}", data.display());
    println!("  console   {base}/admin");
    println!("  API       {base}/v1   (records: {base}/api/{{resource}}/{{id}})");
    println!("  explorer  {base}/api-docs   (OpenAPI 3.1: {base}/openapi.json)");
    println!("  OAuth     {base}/.well-known/oauth-authorization-server");
    println!("  index     {base}/index/timestamp.json   (signed packages for hosts and CDNs)");
    println!("  health    {base}/healthz");
    match password {
        Some(p) => println!(
            "  sign in as {ADMIN} with the one-time password {p}\n  (shown only now: only its Argon2 hash is kept; change it at {base}/admin/account)"
        ),
        None => println!("  sign in with the accounts of {}", data.display()),
    }
    // Kept alive while serving: dropping it stops the watcher.
    let _watcher = match dev {
        None => None,
        Some(dirs) => Some(load_dev(&platform, dirs, &base).await?),
    };
    println!("Ctrl-C stops it; the next start reuses the data.");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("\nstopping: finishing requests in flight ...");
    };
    vodo_server::serve(platform, listener, shutdown, Duration::from_secs(10))
        .await
        .context("serving")?;
    println!("stopped.");
    Ok(())
}

/// Loads the plugins being developed into the demo installation and
/// watches their folders. A plugin that does not build at the start is
/// reported and watched all the same, so that fixing it loads it.
async fn load_dev(
    platform: &Arc<Platform>,
    dirs: Vec<PathBuf>,
    base: &str,
) -> Result<notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>> {
    let demo = InstallationId::new(DEMO);
    let (p, d, i) = (Arc::clone(platform), dirs.clone(), demo.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        d.iter()
            .map(|dir| (dir.clone(), crate::dev::load(&p, &i, dir)))
            .collect::<Vec<_>>()
    })
    .await
    .context("loading the plugins of --plugins")?;
    for (dir, result) in loaded {
        match result {
            Ok(m) => println!(
                "  dev       {} {} from {} in `{DEMO}`: {base}/plugins/{}/...",
                m.slug,
                m.version,
                dir.display(),
                m.slug
            ),
            Err(e) => println!(
                "  dev       {} did not load, fix it and save to retry: {e:#}",
                dir.display()
            ),
        }
    }
    let watcher = crate::dev::watch(Arc::clone(platform), demo, dirs)?;
    println!("  watching the plugins' folders: a change rebuilds and reloads the plugin");
    Ok(watcher)
}

/// Seeds a new data folder; returns the admin's one-time password.
pub fn seed(platform: &Platform) -> Result<String> {
    let demo = InstallationId::new(DEMO);
    platform.store.put_installation(&demo, "Demo store")?;
    let password = platform.accounts.generate_password()?;
    platform.accounts.put(ADMIN, &Role::Admin, &password)?;
    platform
        .store
        .put_entity(
            &demo,
            "order",
            "1001",
            r#"{"total":"49.90","currency":"SAR","customer":"c-7"}"#,
        )
        .map_err(|e| anyhow!("seeding an order: {e}"))?;
    let source = example_plugin();
    if !source.join("Cargo.toml").is_file() {
        println!(
            "note: the example plugin's source is not at {}; the demo installation starts empty",
            source.display()
        );
        return Ok(password);
    }
    println!("building the example plugin for wasm32-wasip2 (the first time takes a minute) ...");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests");
    let wasm = crate::build::build(&source, Some(&target))?;
    let component = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let manifest = std::fs::read_to_string(source.join("plugin.json"))
        .context("reading the example's plugin.json")?;
    let m = Manifest::parse(&manifest)?;
    let package = Package {
        manifest,
        readme: "# Order Notifier\n".into(),
        samples: vec![("order.created".into(), "1001".into())],
        component,
    }
    .to_bytes();
    // Through the platform's own marketplace: a partner submits, the
    // automated review runs, a reviewer approves, and it is published.
    let partner = Session {
        email: "dev@acme.example".into(),
        role: Role::Partner,
        csrf: String::new(),
    };
    let submitted = platform.submit(&partner, &package)?;
    let errors = submitted.report.as_ref().map_or(0, |r| r.errors().count());
    if errors > 0 {
        return Err(anyhow!(
            "the automated review found {errors} error(s) in the example plugin"
        ));
    }
    let reviewer = Session {
        email: "reviewer@vodo.local".into(),
        role: Role::Reviewer,
        csrf: String::new(),
    };
    platform.decide(&reviewer, &submitted.id, true, "")?;
    println!(
        "the marketplace reviewed and published {} {}",
        m.slug, m.version
    );
    let (_, diff, _) = platform.consent_for(&demo, m.slug.as_str())?;
    platform.install(&demo, m.slug.as_str(), &diff.added, ADMIN)?;
    println!("installed {} {} in `{DEMO}`", m.slug, m.version);
    Ok(password)
}
