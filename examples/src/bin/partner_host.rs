//! An example host for partner apps: the OAuth 2.1 authorization server with
//! a sign-in step and its consent page, on loopback.
//!
//! `cargo run -p examples --bin partner-host` serves on 127.0.0.1:8080 (or
//! `PORT`) until stopped, with a demo partner app registered. It prints the
//! app's client id and secret, the merchant's sign-in, and the
//! authorization URL to open in a browser; after signing in and allowing,
//! the browser lands on the app's loopback callback with a code that the
//! printed `curl` command redeems. With `--once` it fetches its own sign-in
//! page, prints it and exits.

use anyhow::{Context, Result};
use examples::partner::{MERCHANT, PartnerHost};
use vodo_oauth::pkce_challenge;

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
    let host = PartnerHost::new(&base)?;

    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let callback = "http://127.0.0.1:9/callback";
    let authorize = format!(
        "{base}/oauth/authorize?response_type=code&client_id={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback\
         &scope=entities%3Aread%3Aorder%20hooks%3Asubscribe%3Aorder.*%20offline_access&state=demo\
         &code_challenge={}&code_challenge_method=S256",
        host.client_id,
        pkce_challenge(verifier)
    );
    println!("Vodo partner host on {base}");
    println!("metadata:      {base}/.well-known/oauth-authorization-server");
    println!("client id:     {}", host.client_id);
    println!("client secret: {} (shown once)", host.client_secret);
    println!("sign in as:    {MERCHANT} / {}", host.password);
    println!("authorize:     {authorize}");
    println!(
        "then redeem the `code` of the callback URL ({callback}?code=...):\n  \
         curl -u '{}:{}' -d grant_type=authorization_code -d code=CODE \
         --data-urlencode redirect_uri={callback} -d code_verifier={verifier} {base}/oauth/token",
        host.client_id, host.client_secret
    );

    if once {
        let router = host.router;
        tokio::spawn(async move { axum::serve(listener, router).await });
        let page = tokio::task::spawn_blocking(move || -> Result<(u16, String)> {
            let mut r = ureq::get(&authorize).call()?;
            Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
        })
        .await??;
        println!("\nGET authorize, signed out -> {}\n{}", page.0, page.1);
        anyhow::ensure!(
            page.0 == 200 && page.1.contains("Sign in"),
            "the sign-in page did not render"
        );
        return Ok(());
    }
    axum::serve(listener, host.router).await?;
    Ok(())
}
