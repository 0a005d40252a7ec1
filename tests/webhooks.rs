//! Webhook delivery against a real HTTP receiver on loopback that fails,
//! times out and recovers; a host killed mid-delivery that loses nothing
//! and, with a receiver that drops duplicates by `webhook-id`, delivers each
//! event once per endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use vodo_core::{Clock, ManualClock, SecretKey, Timestamp};
use vodo_oauth::webhooks::{
    Deliverer, DeliveryConfig, DeliveryStatus, Endpoint, EndpointNotifier, MemoryOutbox, Outbox,
    Rule, SignatureScheme, SqliteOutbox, WebhookSecret, verify_at, verify_github, verify_salla,
    verify_stripe_at,
};

#[derive(Clone, Copy, Debug)]
enum Behave {
    Fail,
    Hang,
    Gone,
    /// 429 with `Retry-After: 3600`.
    Throttle,
    /// 422 with `webhook-delivery: abort-message`.
    Abort,
    /// Answers only after 10 s (the sender is killed before then).
    Stall,
    Ok,
}

/// One request as received: headers (lowercased names) and body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver that verifies signatures and drops duplicates by `webhook-id`.
#[derive(Clone)]
struct Receiver {
    url: String,
    script: Arc<Mutex<VecDeque<Behave>>>,
    /// Every request that arrived with a valid signature.
    raw: Arc<Mutex<Vec<String>>>,
    /// `webhook-id`s processed once (the receiver's dedupe).
    unique: Arc<Mutex<HashSet<String>>>,
    bad_signatures: Arc<Mutex<usize>>,
    /// Every request's headers (lowercased names) and body, as received.
    requests: Arc<Mutex<Vec<Received>>>,
}

/// `now` is the receiver's clock (the tests' manual clock), for the timestamp check.
fn receiver(secret: WebhookSecret, script: &[Behave], now: ManualClock) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let r = Receiver {
        url: format!(
            "http://127.0.0.1:{}/hooks",
            listener.local_addr().unwrap().port()
        ),
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        raw: Arc::default(),
        unique: Arc::default(),
        bad_signatures: Arc::default(),
        requests: Arc::default(),
    };
    let me = r.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (me, secret, now) = (me.clone(), secret.clone(), now.clone());
            // One thread per request: a hanging answer does not hold up the next.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let get = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let len: usize = get("content-length").parse().unwrap_or(0);
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let id = get("webhook-id");
                me.requests.lock().push((headers.clone(), body.clone()));
                let at = now.now().as_millis() / 1000;
                if verify_at(
                    &secret,
                    &id,
                    &get("webhook-timestamp"),
                    &get("webhook-signature"),
                    &body,
                    at,
                )
                .is_ok()
                {
                    me.raw.lock().push(id.clone());
                } else {
                    *me.bad_signatures.lock() += 1;
                }
                let behave = me.script.lock().pop_front().unwrap_or(Behave::Ok);
                let status = match behave {
                    Behave::Hang => {
                        std::thread::sleep(Duration::from_millis(900));
                        "200 OK"
                    }
                    Behave::Stall => {
                        std::thread::sleep(Duration::from_secs(10));
                        "200 OK"
                    }
                    Behave::Fail => "500 Internal Server Error",
                    Behave::Gone => "410 Gone",
                    Behave::Throttle => "429 Too Many Requests\r\nRetry-After: 3600",
                    Behave::Abort => "422 Unprocessable Entity\r\nWebhook-Delivery: abort-message",
                    Behave::Ok => {
                        me.unique.lock().insert(id);
                        "200 OK"
                    }
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            });
        }
    });
    r
}

fn endpoint(id: &str, url: &str, secret: &WebhookSecret, rules: Vec<Rule>) -> Endpoint {
    Endpoint {
        id: id.into(),
        client_id: "app_acme".into(),
        url: url.into(),
        secrets: vec![secret.clone()],
        event_types: vec!["order.*".into()],
        rules,
        installation: None,
        owner_email: "dev@acme.example".into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: Timestamp(0),
        scheme: Default::default(),
    }
}

fn config() -> DeliveryConfig {
    DeliveryConfig {
        timeout: Duration::from_millis(300),
        schedule: vec![
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(1800),
        ],
        lease: Duration::from_secs(60),
        allow_private: true,
        ..DeliveryConfig::default()
    }
}

fn host_key() -> SecretKey {
    SecretKey::from_bytes([3; 32])
}

#[test]
fn fails_times_out_recovers_and_keeps_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let secret = WebhookSecret::generate().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let rx = receiver(secret.clone(), &[Behave::Fail, Behave::Hang], clock.clone());
    let outbox = Arc::new(SqliteOutbox::open(dir.path().join("outbox.db"), &host_key()).unwrap());
    let big_orders = vec![Rule::GreaterThan {
        field: "data.total".into(),
        value: 100.0,
    }];
    outbox
        .put_endpoint(&endpoint("ep_1", &rx.url, &secret, big_orders))
        .unwrap();
    let d = Deliverer::new(outbox.clone(), config()).with_clock(Arc::new(clock.clone()));

    let id = d
        .publish("order.created", None, json!({ "id": 1, "total": "150.00" }))
        .unwrap();
    let small = d
        .publish("order.created", None, json!({ "id": 2, "total": "50.00" }))
        .unwrap();
    let other = d
        .publish("product.created", None, json!({ "id": 3 }))
        .unwrap();
    assert!(
        outbox.deliveries(&small).unwrap().is_empty(),
        "the rule filters small orders"
    );
    assert!(
        outbox.deliveries(&other).unwrap().is_empty(),
        "not subscribed"
    );

    assert_eq!(d.run_due().unwrap(), 1); // 500
    assert_eq!(d.run_due().unwrap(), 0, "not due until the backoff passes");
    clock.advance(Duration::from_secs(7));
    assert_eq!(d.run_due().unwrap(), 1); // hangs past the timeout
    clock.advance(Duration::from_secs(400));
    assert_eq!(d.run_due().unwrap(), 1); // recovers
    assert_eq!(
        outbox.deliveries(&id).unwrap(),
        [("ep_1".to_owned(), DeliveryStatus::Delivered, 3)]
    );

    let log = outbox.attempts(&id).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].status, Some(500));
    assert_eq!(log[1].status, None);
    assert!(
        log[1]
            .error
            .as_deref()
            .unwrap_or("")
            .to_lowercase()
            .contains("time"),
        "{:?}",
        log[1].error
    );
    assert_eq!((log[2].status, log[2].response.as_str()), (Some(200), "ok"));
    assert_eq!(*rx.bad_signatures.lock(), 0);
    assert_eq!(rx.unique.lock().len(), 1);

    // Manual redelivery sends the same message again, with the same id.
    outbox.redeliver(&id, "ep_1", clock.now()).unwrap();
    assert_eq!(d.run_due().unwrap(), 1);
    assert_eq!(rx.raw.lock().iter().filter(|r| **r == id).count(), 4);
    assert_eq!(
        rx.unique.lock().len(),
        1,
        "the receiver dropped the duplicate"
    );
}

#[test]
fn a_host_killed_mid_delivery_loses_nothing_and_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let secret = WebhookSecret::generate().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let rx = receiver(secret.clone(), &[], clock.clone());
    let ids: Vec<String> = {
        let outbox = Arc::new(SqliteOutbox::open(&path, &host_key()).unwrap());
        outbox
            .put_endpoint(&endpoint("ep_1", &rx.url, &secret, vec![]))
            .unwrap();
        outbox
            .put_endpoint(&endpoint("ep_2", &rx.url, &secret, vec![]))
            .unwrap();
        let d = Deliverer::new(outbox.clone(), config()).with_clock(Arc::new(clock.clone()));
        let ids: Vec<String> = (0..3)
            .map(|i| {
                d.publish("order.created", None, json!({ "id": i }))
                    .unwrap()
            })
            .collect();
        // A worker claims everything, sends one request, and the process dies
        // before it records anything.
        let claimed = outbox
            .claim_due(clock.now(), Duration::from_secs(60), 100)
            .unwrap();
        assert_eq!(claimed.len(), 6);
        let c = &claimed[0];
        let signer = vodo_oauth::webhooks::Signer::new(c.endpoint.secrets.clone()).unwrap();
        let mut req = ureq::post(&c.endpoint.url);
        for (k, v) in signer.headers(
            &c.message_id,
            clock.now().as_millis() / 1000,
            c.body.as_bytes(),
        ) {
            req = req.header(k, &v);
        }
        req.send(c.body.as_bytes()).unwrap();
        ids
    };
    // Restart: the outbox reopens from disk.
    let outbox = Arc::new(SqliteOutbox::open(&path, &host_key()).unwrap());
    let d = Deliverer::new(outbox.clone(), config()).with_clock(Arc::new(clock.clone()));
    assert_eq!(outbox.pending().unwrap(), 6, "nothing was lost");
    assert_eq!(
        d.run_due().unwrap(),
        0,
        "leased deliveries wait for the lease to run out"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(d.run_due().unwrap(), 6);
    assert_eq!(outbox.pending().unwrap(), 0);
    for id in &ids {
        let statuses: Vec<DeliveryStatus> = outbox
            .deliveries(id)
            .unwrap()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(
            statuses,
            [DeliveryStatus::Delivered, DeliveryStatus::Delivered]
        );
    }
    // 7 requests arrived (one twice); the receiver processed each message once.
    assert_eq!(rx.raw.lock().len(), 7);
    assert_eq!(rx.unique.lock().len(), 3);
}

#[derive(Debug, Default)]
struct Told(Mutex<Vec<(String, String)>>);

impl EndpointNotifier for Told {
    fn endpoint_disabled(&self, endpoint: &Endpoint, reason: &str) {
        self.0
            .lock()
            .push((endpoint.owner_email.clone(), reason.to_owned()));
    }
}

#[test]
fn an_endpoint_failing_for_days_is_disabled_and_its_owner_told() {
    let secret = WebhookSecret::generate().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let rx = receiver(secret.clone(), &[Behave::Fail; 20], clock.clone());
    let outbox = Arc::new(MemoryOutbox::new());
    outbox
        .put_endpoint(&endpoint("ep_1", &rx.url, &secret, vec![]))
        .unwrap();
    let told = Arc::new(Told::default());
    let cfg = DeliveryConfig {
        schedule: vec![Duration::from_secs(24 * 3600); 10],
        disable_after: Duration::from_secs(5 * 24 * 3600),
        ..config()
    };
    let d = Deliverer::new(outbox.clone(), cfg)
        .with_clock(Arc::new(clock.clone()))
        .with_notifier(told.clone());
    let id = d.publish("order.created", None, json!({})).unwrap();
    for _ in 0..7 {
        d.run_due().unwrap();
        clock.advance(Duration::from_secs(30 * 3600));
    }
    let e = outbox.endpoint("ep_1").unwrap().unwrap();
    assert!(!e.enabled);
    assert!(e.disabled_reason.unwrap().contains("failed for"));
    assert_eq!(told.0.lock()[0].0, "dev@acme.example");
    assert_eq!(outbox.deliveries(&id).unwrap()[0].1, DeliveryStatus::Failed);
    // New events no longer go to it.
    let later = d.publish("order.created", None, json!({})).unwrap();
    assert!(outbox.deliveries(&later).unwrap().is_empty());

    // 410 Gone disables at once.
    let rx2 = receiver(secret.clone(), &[Behave::Gone], clock.clone());
    outbox
        .put_endpoint(&endpoint("ep_2", &rx2.url, &secret, vec![]))
        .unwrap();
    d.publish("order.updated", None, json!({})).unwrap();
    d.run_due().unwrap();
    assert!(!outbox.endpoint("ep_2").unwrap().unwrap().enabled);
}

#[test]
fn the_test_tool_shows_the_signed_request_and_the_answer() {
    let secret = WebhookSecret::generate().unwrap();
    let rx = receiver(secret.clone(), &[], ManualClock::new(Timestamp::now()));
    let d = Deliverer::new(Arc::new(MemoryOutbox::new()), config());
    let report = d
        .send_test(&rx.url, &secret, "order.created", json!({ "id": 42 }))
        .unwrap();
    assert_eq!(report.status, Some(200));
    assert!(report.request_body.contains("\"type\":\"order.created\""));
    let names: Vec<&str> = report
        .request_headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        names,
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    );
    assert_eq!(*rx.bad_signatures.lock(), 0);
    // Private targets are refused unless the host allows them.
    let strict = Deliverer::new(Arc::new(MemoryOutbox::new()), DeliveryConfig::default());
    let refused = strict
        .send_test(&rx.url, &secret, "order.created", json!({}))
        .unwrap();
    assert!(refused.error.unwrap().contains("private"));
}

#[test]
fn secrets_rest_encrypted_and_need_the_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let secret = WebhookSecret::generate().unwrap();
    {
        let outbox = SqliteOutbox::open(&path, &host_key()).unwrap();
        outbox
            .put_endpoint(&endpoint(
                "ep_1",
                "https://acme.example/hooks",
                &secret,
                vec![],
            ))
            .unwrap();
    }
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.path().join("outbox.db-wal")).unwrap_or_default();
    let plain = secret.expose_secret();
    let needle = plain.as_bytes();
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle)
            && !wal.windows(needle.len()).any(|w| w == needle)
    );
    let other = SqliteOutbox::open(&path, &SecretKey::from_bytes([4; 32])).unwrap();
    assert!(other.endpoint("ep_1").is_err());
    let same = SqliteOutbox::open(&path, &host_key()).unwrap();
    assert_eq!(
        same.endpoint("ep_1").unwrap().unwrap().secrets[0].expose_secret(),
        plain
    );
}

/// Answers every name with fixed addresses (after an optional delay) and counts lookups.
#[derive(Debug)]
struct FixedDns {
    answer: Vec<std::net::SocketAddr>,
    delay: Duration,
    lookups: std::sync::atomic::AtomicUsize,
}

impl FixedDns {
    fn new(answer: &[&str], delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            answer: answer.iter().map(|a| a.parse().unwrap()).collect(),
            delay,
            lookups: Default::default(),
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl vodo_egress::Resolver for FixedDns {
    fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        self.lookups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(self.delay);
        Ok(self
            .answer
            .iter()
            .map(|a| std::net::SocketAddr::new(a.ip(), port))
            .collect())
    }
}

/// The address the sender checks is the address it connects to: one lookup
/// per attempt, through the host's resolver, so a name cannot be re-pointed
/// at an internal address between the check and the connection (DNS
/// rebinding). A name that does not exist in public DNS reaches the receiver
/// only through that lookup.
#[test]
fn the_sender_connects_to_the_addresses_it_checked() {
    let secret = WebhookSecret::generate().unwrap();
    let rx = receiver(secret.clone(), &[], ManualClock::new(Timestamp::now()));
    let port: u16 = rx
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hooks")
        .parse()
        .unwrap();
    let url = format!("http://hooks.partner.invalid:{port}/hooks");

    // Allowed to reach private addresses: the connection goes where the resolver said.
    let dns = FixedDns::new(&["127.0.0.1:0"], Duration::ZERO);
    let d = Deliverer::new(Arc::new(MemoryOutbox::new()), config()).with_resolver(dns.clone());
    let sent = d
        .send_test(&url, &secret, "order.created", json!({}))
        .unwrap();
    assert_eq!(sent.status, Some(200), "{sent:?}");
    assert_eq!(dns.lookups(), 1, "one lookup per attempt");
    assert_eq!(rx.raw.lock().len(), 1);

    // Strict: any private address in the answer refuses the attempt, and
    // nothing is sent, even with a public address beside it.
    let dns = FixedDns::new(&["93.184.215.14:0", "127.0.0.1:0"], Duration::ZERO);
    let strict = Deliverer::new(
        Arc::new(MemoryOutbox::new()),
        DeliveryConfig {
            allow_private: false,
            ..config()
        },
    )
    .with_resolver(dns.clone());
    let refused = strict
        .send_test(&url, &secret, "order.created", json!({}))
        .unwrap();
    let error = refused.error.unwrap();
    assert!(
        error
            .contains("resolves to 127.0.0.1, a loopback, private or otherwise non-global address"),
        "{error}"
    );
    assert_eq!(refused.status, None);
    assert_eq!(dns.lookups(), 1);
    assert_eq!(rx.raw.lock().len(), 1, "nothing reached the receiver");

    // A DNS server that never answers cannot hold an attempt past its timeout.
    let dns = FixedDns::new(&["127.0.0.1:0"], Duration::from_secs(3));
    let d = Deliverer::new(Arc::new(MemoryOutbox::new()), config()).with_resolver(dns);
    let started = std::time::Instant::now();
    let slow = d
        .send_test(&url, &secret, "order.created", json!({}))
        .unwrap();
    let error = slow.error.unwrap();
    assert!(
        error.contains("did not answer within") && error.contains("resolving the name"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A throttled receiver's `Retry-After` stretches the wait beyond the
/// schedule's; `webhook-delivery: abort-message` stops the retries of that
/// message without counting against the endpoint.
#[test]
fn retry_after_and_abort_message_are_honoured() {
    let secret = WebhookSecret::generate().unwrap();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let rx = receiver(
        secret.clone(),
        &[Behave::Throttle, Behave::Abort],
        clock.clone(),
    );
    let outbox = Arc::new(MemoryOutbox::new());
    outbox
        .put_endpoint(&endpoint("ep_1", &rx.url, &secret, vec![]))
        .unwrap();
    let d = Deliverer::new(outbox.clone(), config()).with_clock(Arc::new(clock.clone()));

    let throttled = d.publish("order.created", None, json!({})).unwrap();
    assert_eq!(d.run_due().unwrap(), 1); // 429, Retry-After: 3600
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        d.run_due().unwrap(),
        0,
        "the schedule's 5 s wait became an hour"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(d.run_due().unwrap(), 1); // abort-message
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(d.run_due().unwrap(), 0, "no retry after abort-message");
    let deliveries = outbox.deliveries(&throttled).unwrap();
    assert_eq!(deliveries[0].1, DeliveryStatus::Failed);
    let log = outbox.attempts(&throttled).unwrap();
    assert_eq!(log.len(), 2);
    assert!(log[1].error.as_deref().unwrap().contains("abort-message"));
    let ep = outbox.endpoint("ep_1").unwrap().unwrap();
    assert!(ep.enabled && ep.failing_since.is_none(), "{ep:?}");

    // The endpoint still takes the next message.
    let next = d.publish("order.created", None, json!({})).unwrap();
    assert_eq!(d.run_due().unwrap(), 1);
    assert_eq!(
        outbox.deliveries(&next).unwrap()[0].1,
        DeliveryStatus::Delivered
    );
}

/// The background worker sends what is published without being driven, and
/// sends nothing once stopped.
#[test]
fn the_worker_delivers_in_the_background_until_stopped() {
    let secret = WebhookSecret::generate().unwrap();
    let rx = receiver(secret.clone(), &[], ManualClock::new(Timestamp::now()));
    let outbox = Arc::new(MemoryOutbox::new());
    outbox
        .put_endpoint(&endpoint("ep_1", &rx.url, &secret, vec![]))
        .unwrap();
    let d = Arc::new(Deliverer::new(outbox.clone(), config()));
    let worker = d.spawn(Duration::from_millis(20)).unwrap();
    let first = d.publish("order.created", None, json!({ "n": 1 })).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while outbox.deliveries(&first).unwrap()[0].1 != DeliveryStatus::Delivered {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered in 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(*rx.raw.lock(), [first]);

    worker.stop();
    let second = d.publish("order.created", None, json!({ "n": 2 })).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        outbox.deliveries(&second).unwrap()[0].1,
        DeliveryStatus::Pending,
        "a stopped worker sends nothing"
    );
    assert_eq!(rx.raw.lock().len(), 1);
}

/// A clock that moves 20 s every time it is read: every attempt is "slow".
#[derive(Debug, Default)]
struct Ticking(std::sync::atomic::AtomicI64);

impl Clock for Ticking {
    fn now(&self) -> Timestamp {
        Timestamp(
            1_800_000_000_000
                + self
                    .0
                    .fetch_add(20_000, std::sync::atomic::Ordering::SeqCst),
        )
    }
}

/// Deliveries claimed in one round are not sent once the lease that makes
/// them this worker's could run out mid-attempt; they wait for a later round.
#[test]
fn a_round_stops_before_its_claims_run_out_of_lease() {
    let secret = WebhookSecret::generate().unwrap();
    let rx = receiver(secret.clone(), &[], ManualClock::new(Timestamp::now()));
    let outbox = Arc::new(MemoryOutbox::new());
    outbox
        .put_endpoint(&endpoint("ep_1", &rx.url, &secret, vec![]))
        .unwrap();
    let d = Deliverer::new(
        outbox.clone(),
        DeliveryConfig {
            lease: Duration::from_secs(60),
            ..config()
        },
    )
    .with_clock(Arc::new(Ticking::default()));
    let ids: Vec<String> = (0..5)
        .map(|n| d.publish("order.created", None, json!({ "n": n })).unwrap())
        .collect();
    let attempted = d.run_due().unwrap();
    assert!((1..5).contains(&attempted), "{attempted}");
    let untouched = ids
        .iter()
        .filter(|id| {
            outbox.deliveries(id).unwrap()[0] == ("ep_1".into(), DeliveryStatus::Pending, 0)
        })
        .count();
    assert_eq!(untouched, 5 - attempted, "the rest were left as they were");
}

/// An endpoint whose receiver was written for Salla, Stripe or GitHub gets
/// requests its existing verification code accepts, over real HTTP, from a
/// durable outbox that kept the endpoint's scheme.
#[test]
fn compat_endpoints_get_the_signatures_their_receivers_expect() {
    let dir = tempfile::tempdir().unwrap();
    let secret = WebhookSecret::generate().unwrap();
    let shown = secret.expose_secret();
    let rx = receiver(secret.clone(), &[], ManualClock::new(Timestamp::now()));
    let outbox = Arc::new(SqliteOutbox::open(dir.path().join("outbox.db"), &host_key()).unwrap());
    for (id, scheme) in [
        ("ep_salla", SignatureScheme::Salla),
        ("ep_stripe", SignatureScheme::Stripe),
        ("ep_github", SignatureScheme::GitHub),
    ] {
        outbox
            .put_endpoint(&Endpoint {
                scheme,
                ..endpoint(id, &rx.url, &secret, vec![])
            })
            .unwrap();
    }
    let d = Deliverer::new(outbox.clone(), config());
    let msg = d
        .publish("order.created", None, json!({ "id": 7 }))
        .unwrap();
    assert_eq!(d.run_due().unwrap(), 3);
    let requests = rx.requests.lock().clone();
    assert_eq!(requests.len(), 3);
    let now = Timestamp::now().as_millis() / 1000;
    for (headers, body) in &requests {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("webhook-id"),
            Some(msg.as_str()),
            "every scheme carries the id"
        );
        if let Some(sig) = get("x-salla-signature") {
            assert_eq!(get("x-salla-security-strategy"), Some("Signature"));
            assert_eq!(verify_salla(&shown, sig, body), Ok(()));
        } else if let Some(sig) = get("stripe-signature") {
            assert_eq!(verify_stripe_at(&shown, sig, body, now), Ok(()));
        } else if let Some(sig) = get("x-hub-signature-256") {
            assert_eq!(verify_github(&shown, sig, body), Ok(()));
        } else {
            panic!("no compat signature header in {headers:?}");
        }
        assert_eq!(get("webhook-signature"), None);
    }
    assert!(
        outbox
            .deliveries(&msg)
            .unwrap()
            .iter()
            .all(|(_, status, _)| *status == DeliveryStatus::Delivered)
    );
}

/// An outbox created before signature schemes existed opens, gains the
/// column, and its endpoints keep signing the standard way.
#[test]
fn an_outbox_from_before_signature_schemes_opens_and_keeps_its_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let secret = WebhookSecret::generate().unwrap();
    {
        let outbox = SqliteOutbox::open(&path, &host_key()).unwrap();
        outbox
            .put_endpoint(&endpoint(
                "ep_old",
                "https://acme.example/hooks",
                &secret,
                vec![],
            ))
            .unwrap();
    }
    // Take the database back to the old schema, as an earlier release left it.
    {
        let conn = vodo_core::open_sqlite(Some(&path)).unwrap();
        conn.execute_batch("ALTER TABLE webhook_endpoints DROP COLUMN scheme")
            .unwrap();
    }
    let outbox = SqliteOutbox::open(&path, &host_key()).unwrap();
    let ep = outbox.endpoint("ep_old").unwrap().unwrap();
    assert_eq!(ep.scheme, SignatureScheme::Standard);
    assert_eq!(ep.secrets[0].expose_secret(), secret.expose_secret());
    outbox
        .put_endpoint(&Endpoint {
            scheme: SignatureScheme::GitHub,
            ..ep
        })
        .unwrap();
    assert_eq!(
        outbox.endpoint("ep_old").unwrap().unwrap().scheme,
        SignatureScheme::GitHub
    );
}

/// The environment variable that turns the helper test below into a
/// delivery worker on the outbox at that path.
const WORKER_OUTBOX: &str = "VODO_TEST_WORKER_OUTBOX";

/// Not a test: the host process that `a_host_process_killed_mid_request`
/// starts and kills. It sends due webhooks from the outbox named by
/// `VODO_TEST_WORKER_OUTBOX` until it is killed.
#[test]
#[ignore = "a helper process, started by a_host_process_killed_mid_request_loses_nothing"]
fn webhook_worker_process() {
    let Ok(path) = std::env::var(WORKER_OUTBOX) else {
        return;
    };
    let outbox = Arc::new(SqliteOutbox::open(&path, &host_key()).unwrap());
    let d = Deliverer::new(
        outbox,
        DeliveryConfig {
            timeout: Duration::from_secs(30),
            lease: Duration::from_secs(2),
            ..config()
        },
    );
    loop {
        d.run_due().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real host process is killed (SIGKILL) while a webhook request is in
/// flight. Restarted on the same SQLite outbox, the host loses nothing, and
/// a receiver that dedupes by `webhook-id` processes each event once.
#[test]
fn a_host_process_killed_mid_request_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let secret = WebhookSecret::generate().unwrap();
    let rx = receiver(
        secret.clone(),
        &[Behave::Stall],
        ManualClock::new(Timestamp::now()),
    );
    let ids: Vec<String> = {
        let outbox = Arc::new(SqliteOutbox::open(&path, &host_key()).unwrap());
        for ep in ["ep_1", "ep_2"] {
            outbox
                .put_endpoint(&endpoint(ep, &rx.url, &secret, vec![]))
                .unwrap();
        }
        let d = Deliverer::new(outbox, config());
        (0..3)
            .map(|i| {
                d.publish("order.created", None, json!({ "id": i }))
                    .unwrap()
            })
            .collect()
    };

    let mut host = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "webhook_worker_process", "--quiet"])
        .env(WORKER_OUTBOX, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its first request is in flight (the receiver stalls on it).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rx.requests.lock().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the host process sent nothing"
        );
        assert!(
            host.try_wait().unwrap().is_none(),
            "the host process exited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    let sent_before_kill = rx.requests.lock().len();

    // Restart on the same file.
    let outbox = Arc::new(SqliteOutbox::open(&path, &host_key()).unwrap());
    assert_eq!(outbox.pending().unwrap(), 6, "nothing was lost");
    let d = Deliverer::new(
        outbox.clone(),
        DeliveryConfig {
            lease: Duration::from_secs(2),
            ..config()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while outbox.pending().unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "still pending after 30 s"
        );
        d.run_due().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &ids {
        let statuses: Vec<DeliveryStatus> = outbox
            .deliveries(id)
            .unwrap()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(
            statuses,
            [DeliveryStatus::Delivered, DeliveryStatus::Delivered]
        );
    }
    // Every delivery arrived; the one in flight at the kill arrived again,
    // and the receiver processed each event once.
    assert!(sent_before_kill >= 1);
    assert_eq!(*rx.bad_signatures.lock(), 0);
    assert_eq!(rx.unique.lock().len(), 3);
    assert!(rx.raw.lock().len() >= 7, "{}", rx.raw.lock().len());
}
