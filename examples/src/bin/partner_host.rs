//! An example host for partner apps: the OAuth 2.1 authorization server with
//! its consent page, on loopback.
//!
//! `cargo run -p examples --bin partner-host` serves on 127.0.0.1:8080 (or
//! `PORT`) until stopped, with a demo partner app registered and the
//! merchant of `shop-42` signed in; it prints the authorization URL to open
//! in a browser. With `--once` it fetches its own consent page, prints it
//! and exits.

use std::sync::Arc;

use anyhow::{Context, Result};
use vodo_core::{InstallationId, SecretKey};
use vodo_oauth::model::ClientKind;
use vodo_oauth::{AuthServer, AuthServerConfig, MemoryStore, Session, pkce_challenge};
use vodo_scopes::{PluginScope, ScopeSet};

#[tokio::main]
async fn main() -> Result<()> {
    let once = std::env::args().any(|a| a == "--once");
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(if once { 0 } else { 8080 });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("binding the port")?;
    let base = format!("http://127.0.0.1:{}", listener.local_addr()?.port());

    let server = Arc::new(AuthServer::new(
        AuthServerConfig::new(&base),
        Arc::new(MemoryStore::new()),
        &SecretKey::generate()?,
    )?);
    let partner = server.register_partner("Acme Apps", "dev@acme.example")?;
    let scopes: ScopeSet = [
        "entities:read:order",
        "entities:write:order_note",
        "hooks:subscribe:order.*",
    ]
    .iter()
    .map(|s| s.parse::<PluginScope>())
    .collect::<Result<_, _>>()?;
    let (app, _) = server.register_client(
        &partner.id,
        "Acme Order Sync",
        ClientKind::Confidential,
        &["http://127.0.0.1/callback"],
        scopes,
    )?;

    // The host's own login would decide this; the demo signs in one merchant.
    let session: vodo_oauth::axum::SessionFn = Arc::new(|_| {
        Some(Session {
            installation: InstallationId::new("shop-42"),
            user: "merchant@shop-42".into(),
        })
    });
    let router = vodo_oauth::axum::router(Arc::clone(&server), session);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let authorize = format!(
        "{base}/oauth/authorize?response_type=code&client_id={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback\
         &scope=entities%3Aread%3Aorder%20hooks%3Asubscribe%3Aorder.*%20offline_access&state=demo\
         &code_challenge={}&code_challenge_method=S256",
        app.id,
        pkce_challenge(verifier)
    );
    println!("Vodo partner host on {base}");
    println!("metadata:   {base}/.well-known/oauth-authorization-server");
    println!("consent:    {authorize}");

    if once {
        tokio::spawn(async move { axum::serve(listener, router).await });
        let page = tokio::task::spawn_blocking(move || -> Result<(u16, String)> {
            let mut r = ureq::get(&authorize).call()?;
            Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
        })
        .await??;
        println!("\nGET consent page -> {}\n{}", page.0, page.1);
        anyhow::ensure!(
            page.0 == 200 && page.1.contains("Allow"),
            "the consent page did not render"
        );
        return Ok(());
    }
    axum::serve(listener, router).await?;
    Ok(())
}
