//! Requests to the OAuth provider's endpoints as any client sends them:
//! method, path, query, headers and form body (the HTTP parsing that is ours),
//! the device authorization endpoint and its verification page among them.
#![no_main]
use std::sync::{Arc, LazyLock};

use vodo_core::{InstallationId, SecretKey};
use vodo_oauth::{AuthServer, AuthServerConfig, HttpRequest, MemoryStore, Session};

static SERVER: LazyLock<AuthServer> = LazyLock::new(|| {
    AuthServer::new(
        AuthServerConfig::new("https://auth.example/tenant"),
        Arc::new(MemoryStore::new()),
        &SecretKey::from_bytes([9; 32]),
    )
    .unwrap()
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let mut next = || parts.next().unwrap_or("").to_owned();
    let method = if next().len() % 2 == 0 { "GET" } else { "POST" };
    let path = next();
    let query = next();
    let headers = next()
        .split('\r')
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let body = next().into_bytes();
    let request = HttpRequest {
        method: method.into(),
        path,
        query,
        headers,
        body,
    };
    let merchant = Session {
        installation: Some(InstallationId::new("shop-1")),
        user: "m@shop".into(),
    };
    // A developer, signed in without a store (the device page's user).
    let developer = Session {
        installation: None,
        user: "dev@example".into(),
    };
    let _ = SERVER.handle(&request, Some(&merchant));
    let _ = SERVER.handle(&request, Some(&developer));
    let _ = SERVER.handle(&request, None);
    let _ = vodo_oauth::redirect_matches(&request.path, &request.query);
});
