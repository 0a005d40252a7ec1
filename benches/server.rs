//! The HTTP layers' cost: a plugin's own route through `ApiKeyAuthLayer`,
//! `RateLimitLayer` and `PluginRoutes` (an axum router, in process), beside
//! the same router without the two layers and the same request made
//! straight to `Sandbox::call_request_async`, fresh and warm, in the same
//! run, and the same request to a plain echo service (the host's HTTP
//! plumbing alone), and what no layered request can skip: the key's
//! verification and its HMAC. And a record read through the platform's router (request id, span,
//! key, rate limit, permission) beside the same read from the store alone.
//!
//! Run with `cargo bench -p benches --bench server`; figures go to
//! BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use benches::{Constant, quiet_host};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;
use vodo_core::keys::IssueKey;
use vodo_core::{Consent, Host, InstallationId, Manifest};
use vodo_sandbox::HostServices;
use vodo_sandbox::{Installed, Limits, Reuse, Sandbox, SandboxConfig};
use vodo_server::{ApiKeyAuthLayer, Platform, PlatformConfig, PluginRoutes, RateLimitLayer};

const BODY: usize = 256;

fn benches(c: &mut Criterion) {
    let wasm = test_support::guest("bench");
    let host = Arc::new(quiet_host());
    let sandbox =
        Arc::new(Sandbox::new(SandboxConfig::default(), &host, Arc::new(Constant)).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("plugin_request");
    for (name, reuse) in [("fresh", Reuse::Fresh), ("warm", Reuse::warm())] {
        let shop = InstallationId::new(name);
        let m = Manifest::parse(&benches::manifest_for(reuse)).unwrap();
        let plugin = sandbox
            .install(
                &shop,
                &m,
                &wasm,
                &Consent::all(&m, "bench"),
                Limits {
                    reuse,
                    ..Limits::default()
                },
            )
            .unwrap();
        let key = issue(&host, &shop, &m);
        // Mounted as the platform mounts it: the layers around the plugin
        // service, in one route.
        let app: Router = Router::new().route_service(
            "/plugins/{*rest}",
            tower::ServiceBuilder::new()
                .layer(ApiKeyAuthLayer::new(&host))
                .layer(RateLimitLayer::new(&host))
                .service(PluginRoutes::new(&sandbox, shop.clone()).mounted_at("/plugins")),
        );
        // The same layers added with `Router::layer`, which boxes the route
        // once per layer: what mounting them around the service saves.
        let per_route: Router = Router::new()
            .route_service(
                "/plugins/{*rest}",
                PluginRoutes::new(&sandbox, shop.clone()).mounted_at("/plugins"),
            )
            .layer(RateLimitLayer::new(&host))
            .layer(ApiKeyAuthLayer::new(&host));
        // The same route with no layers: the HTTP plumbing alone.
        let bare: Router = Router::new().route_service(
            "/plugins/{*rest}",
            PluginRoutes::new(&sandbox, shop.clone()).mounted_at("/plugins"),
        );
        if name == "fresh" {
            // What a layered request cannot do without: the key verified
            // (format, checksum, cache, HMAC-SHA256 of the secret, expiry),
            // and the HMAC alone, with ring, over a secret of the same size.
            g.bench_function("floor/key_verify", |b| {
                b.iter(|| black_box(host.keys.verify(black_box(&key)).unwrap()))
            });
            g.bench_function("floor/hmac_sha256_of_a_secret", |b| {
                let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
                let secret = [b'a'; 32];
                let tag = ring::hmac::sign(&hmac, &secret);
                b.iter(|| black_box(ring::hmac::verify(&hmac, black_box(&secret), tag.as_ref())))
            });
        }
        let auth = format!("Bearer {key}");
        let body = vec![b'x'; BODY];
        g.bench_function(format!("{name}/direct_call_request_async"), |b| {
            b.iter_custom(|iters| rt.block_on(direct_calls(&sandbox, &plugin, &body, iters)))
        });
        for (row, app) in [
            ("router_without_layers", &bare),
            ("through_the_layers", &app),
        ] {
            g.bench_function(format!("{name}/{row}"), |b| {
                b.iter_custom(|iters| rt.block_on(http_requests(app, &auth, &body, iters)))
            });
        }
        // Paired: each iteration makes one direct call and one layered
        // request, one after the other, and counts only the difference, so
        // the machine's drift between criterion's blocks cancels out. The
        // figure is what the router and its layers add to one request.
        g.bench_function(format!("{name}/layers_minus_direct_paired"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(paired(
                    iters,
                    || direct_calls(&sandbox, &plugin, &body, 1),
                    || http_requests(&app, &auth, &body, 1),
                ))
            })
        });
        // The same pairing between the bare router and the layered one:
        // what authentication and rate limiting alone add.
        g.bench_function(format!("{name}/layers_minus_bare_router_paired"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(paired(
                    iters,
                    || http_requests(&bare, &auth, &body, 1),
                    || http_requests(&app, &auth, &body, 1),
                ))
            })
        });
        g.bench_function(
            format!("{name}/router_layer_minus_service_layers_paired"),
            |b| {
                b.iter_custom(|iters| {
                    rt.block_on(paired(
                        iters,
                        || http_requests(&app, &auth, &body, 1),
                        || http_requests(&per_route, &auth, &body, 1),
                    ))
                })
            },
        );
    }
    // The host's own HTTP plumbing without any of Vodo: the same request
    // through the same kind of route to a service that answers with the
    // body it read. What is left of a layered request after this and the
    // direct call is what Vodo's layers and its plugin service add.
    let echo: Router = Router::new().route_service(
        "/plugins/{*rest}",
        tower::service_fn(|request: http::Request<Body>| async move {
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::from(body)))
        }),
    );
    let body = vec![b'x'; BODY];
    g.bench_function("router_to_an_echo_service", |b| {
        b.iter_custom(|iters| rt.block_on(http_requests(&echo, "Bearer x", &body, iters)))
    });
    g.finish();
    entity_read(c, &rt);
}

/// A record read through the whole platform router (request id, span, key,
/// rate limit, permission) beside the same read from the store alone.
fn entity_read(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let data = tempfile::tempdir().unwrap();
    let platform = Arc::new(Platform::open(PlatformConfig::new(data.path())).unwrap());
    let shop = InstallationId::new("shop");
    let m = Manifest::parse(
        r#"{"name":"Reader","slug":"reader","version":"1.0.0","description":"reads",
            "author":"A","license":"MIT",
            "permissions":{"entities":["read:order"],
            "api":{"rate_limit":"1000000/second","endpoints":["orders"]}}}"#,
    )
    .unwrap();
    platform
        .host
        .install(&m, &shop, &Consent::all(&m, "bench"))
        .unwrap();
    let order = r#"{"total":"49.90","currency":"SAR","lines":[{"sku":"A-1","qty":2}]}"#;
    platform
        .store
        .put_entity(&shop, "order", "1001", order)
        .unwrap();
    let auth = format!("Bearer {}", issue(&platform.host, &shop, &m));
    let app = platform.router();
    let mut g = c.benchmark_group("entity_read");
    g.bench_function("store_alone", |b| {
        b.iter(|| {
            let json = platform.store.get_entity(&shop, "order", "1001").unwrap();
            assert_eq!(black_box(json).map(|j| j.len()), Some(order.len()));
        })
    });
    let read = || async {
        let start = Instant::now();
        let request = http::Request::get("/api/orders/1001")
            .header("authorization", &auth)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(black_box(bytes).len(), order.len());
        start.elapsed()
    };
    let alone = || {
        let start = Instant::now();
        let json = platform.store.get_entity(&shop, "order", "1001").unwrap();
        assert_eq!(black_box(json).map(|j| j.len()), Some(order.len()));
        start.elapsed()
    };
    g.bench_function("through_the_layers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += read().await;
                }
                total
            })
        })
    });
    // Paired: one read of each kind per iteration, only the difference
    // counted: what the router and its layers add to the store's read.
    g.bench_function("layers_minus_store_paired", |b| {
        b.iter_custom(|iters| rt.block_on(paired(iters, || async { alone() }, read)))
    });
    g.finish();
}

/// A paired row: `iters` times, one `less` and then one `more`, each
/// timing itself; only the difference of the totals counts.
async fn paired<L, M>(
    iters: u64,
    mut less: impl FnMut() -> L,
    mut more: impl FnMut() -> M,
) -> Duration
where
    L: std::future::Future<Output = Duration>,
    M: std::future::Future<Output = Duration>,
{
    let (mut low, mut high) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..iters {
        low += less().await;
        high += more().await;
    }
    difference(high, low)
}

/// `more - less` of a paired row, at least 1 ns: a block of a few fresh
/// calls can come out the other way round (their own spread is larger than
/// the difference), and criterion refuses a zero time; the median is what is
/// read, and a handful of such blocks do not move it.
fn difference(more: Duration, less: Duration) -> Duration {
    more.saturating_sub(less).max(Duration::from_nanos(1))
}

/// `iters` calls of the bench plugin's echo route straight through
/// `Sandbox::call_request_async`, timed.
async fn direct_calls(sandbox: &Sandbox, plugin: &Installed, body: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let request = vodo_sandbox::Request {
            method: "POST".into(),
            path: "/echo".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_vec(),
        };
        let call = sandbox.call_request_async(plugin, &request).await;
        assert_eq!(black_box(call.result.unwrap()).body.len(), BODY);
    }
    start.elapsed()
}

/// `iters` requests to the bench plugin's echo route through `app`, timed.
async fn http_requests(app: &Router, auth: &str, body: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let request = http::Request::post("/plugins/bench/echo")
            .header("authorization", auth)
            .header("content-type", "text/plain")
            .body(Body::from(body.to_vec()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(black_box(bytes).len(), BODY);
    }
    start.elapsed()
}

fn issue(host: &Host, installation: &InstallationId, manifest: &Manifest) -> String {
    let (key, _) = host
        .keys
        .issue(IssueKey {
            installation: installation.clone(),
            plugin: manifest.slug.clone(),
            name: "bench".into(),
            scopes: manifest.scopes().clone(),
            ttl: None,
        })
        .unwrap();
    key.expose_secret().to_owned()
}

criterion_group! {
    name = server;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(server);
