//! Delivering webhooks from the outbox: signed requests, retries with
//! exponential backoff and jitter, endpoints disabled after failing for
//! days (and their owners told), and a test tool.

use std::fmt;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use vodo_core::{Clock, InstallationId, SystemClock, Timestamp};
use vodo_egress::{
    Egress, EgressConfig, MAX_HEADER_BYTES, Request, Resolver, SystemResolver, Target,
};

use super::outbox::{Attempt, Claimed, Endpoint, Message, Outbox};
use super::sign::{Signer, WebhookSecret};
use crate::{Error, Result};

/// How deliveries are made. Every default is listed.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Time for one attempt, connect to last byte. Default 15 s.
    pub timeout: Duration,
    /// Waits before each retry; the number of entries is the number of
    /// retries. Default Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    /// (8 attempts in all over about 27.5 hours). A receiver that answers
    /// 429, 502, 503 or 504 with `Retry-After: <seconds>` stretches its wait
    /// (up to a day); one that answers `webhook-delivery: abort-message`
    /// stops the retries of that message.
    pub schedule: Vec<Duration>,
    /// Random spread applied to each wait, as a fraction. Default 0.2 (±20%).
    pub jitter: f64,
    /// An endpoint that has failed without a success for this long is
    /// disabled and its owner told. Default 5 days.
    pub disable_after: Duration,
    /// How long a claimed delivery waits for its outcome before it is sent
    /// again (after a crash). Default 2 minutes.
    pub lease: Duration,
    /// Deliveries claimed per round. Default 100.
    pub batch: usize,
    /// Whether endpoints may resolve to loopback or private addresses.
    /// Default `false` (SSRF protection); tests turn it on. Either way the
    /// sender connects only to the addresses its [`Resolver`] returned for
    /// that attempt, and it uses no proxy (a proxy would hide the address).
    pub allow_private: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(n * 60);
        Self {
            timeout: Duration::from_secs(15),
            schedule: vec![
                Duration::from_secs(5),
                m(5),
                m(30),
                m(120),
                m(300),
                m(600),
                m(600),
            ],
            jitter: 0.2,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            lease: Duration::from_secs(120),
            batch: 100,
            allow_private: false,
        }
    }
}

/// Told when an endpoint is disabled.
///
/// ```
/// use std::sync::Mutex;
/// use vodo_oauth::webhooks::{Endpoint, EndpointNotifier};
///
/// /// Queues an email to the endpoint's owner (here: keeps it in a list).
/// #[derive(Debug, Default)]
/// struct Mailer(Mutex<Vec<(String, String)>>);
///
/// impl EndpointNotifier for Mailer {
///     fn endpoint_disabled(&self, endpoint: &Endpoint, reason: &str) {
///         self.0.lock().unwrap().push((endpoint.owner_email.clone(), format!("{} disabled: {reason}", endpoint.url)));
///     }
/// }
/// # use vodo_core::Timestamp;
/// # use vodo_oauth::webhooks::{SignatureScheme, WebhookSecret};
/// # let endpoint = Endpoint {
/// #     id: "ep_1".into(),
/// #     client_id: "app_1".into(),
/// #     url: "https://app.example/hooks".into(),
/// #     secrets: vec![WebhookSecret::generate()?],
/// #     event_types: vec!["order.*".into()],
/// #     rules: Vec::new(),
/// #     installation: None,
/// #     owner_email: "dev@app.example".into(),
/// #     enabled: true,
/// #     disabled_reason: None,
/// #     failing_since: None,
/// #     created_at: Timestamp(0),
/// #     scheme: SignatureScheme::Standard,
/// # };
/// let mailer = Mailer::default();
/// mailer.endpoint_disabled(&endpoint, "failing for 5 days");
/// assert_eq!(mailer.0.lock().unwrap()[0].0, "dev@app.example");
/// # Ok::<(), vodo_oauth::Error>(())
/// ```
pub trait EndpointNotifier: fmt::Debug + Send + Sync {
    /// `endpoint` was disabled for `reason`; tell its owner.
    fn endpoint_disabled(&self, endpoint: &Endpoint, reason: &str);
}

/// A notifier that only logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

impl EndpointNotifier for LogNotifier {
    fn endpoint_disabled(&self, endpoint: &Endpoint, reason: &str) {
        tracing::warn!(endpoint = %endpoint.id, owner = %endpoint.owner_email, reason, "webhook endpoint disabled");
    }
}

/// The JSON body of an event, per the Standard Webhooks payload shape.
pub fn event_body(event_type: &str, at: Timestamp, data: Value) -> Value {
    json!({ "type": event_type, "timestamp": rfc3339(at), "data": data })
}

/// `at` as an RFC 3339 UTC timestamp with milliseconds.
fn rfc3339(at: Timestamp) -> String {
    let ms = at.as_millis().rem_euclid(1000);
    let secs = at.as_millis().div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A background thread sending due webhooks; see [`Deliverer::spawn`].
/// Stopping (or dropping) it lets the attempt in flight finish, then joins.
#[derive(Debug)]
pub struct DeliveryWorker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DeliveryWorker {
    /// Stops the worker and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Dropping the sender wakes the worker at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sends webhooks from an [`Outbox`].
#[derive(Debug)]
pub struct Deliverer {
    outbox: Arc<dyn Outbox>,
    config: DeliveryConfig,
    notifier: Arc<dyn EndpointNotifier>,
    clock: Arc<dyn Clock>,
    egress: Egress,
}

/// The webhook sender's way out: the one egress path, with its resolver.
fn egress(config: &DeliveryConfig, resolver: &Arc<dyn Resolver>) -> Egress {
    let egress = EgressConfig {
        allow_private: config.allow_private,
        user_agent: "vodo-webhooks/0.1".into(),
        // Deliveries to one receiver come in runs; its connection is kept.
        reuse_connections: true,
    };
    Egress::new(egress, Arc::clone(resolver))
}

/// What one HTTP attempt came to.
struct Sent {
    status: Option<u16>,
    response: String,
    error: Option<String>,
    latency: Duration,
    /// The receiver's `Retry-After`, in seconds.
    retry_after: Option<u64>,
    /// The receiver sent `webhook-delivery: abort-message`.
    abort: bool,
}

impl Sent {
    fn failed(error: String, start: Instant) -> Self {
        Self {
            status: None,
            response: String::new(),
            error: Some(error),
            latency: start.elapsed(),
            retry_after: None,
            abort: false,
        }
    }
}

/// The longest `Retry-After` honoured; a receiver cannot park a message for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Deliverer {
    /// A deliverer over `outbox`.
    pub fn new(outbox: Arc<dyn Outbox>, config: DeliveryConfig) -> Self {
        let resolver: Arc<dyn Resolver> = Arc::new(SystemResolver);
        Self {
            egress: egress(&config, &resolver),
            outbox,
            config,
            notifier: Arc::new(LogNotifier),
            clock: Arc::new(SystemClock),
        }
    }

    /// Resolves endpoint names with `resolver` instead of the system's.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.egress = egress(&self.config, &resolver);
        self
    }

    /// Tells `notifier` of disabled endpoints.
    pub fn with_notifier(mut self, notifier: Arc<dyn EndpointNotifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The outbox.
    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.outbox
    }

    /// Publishes an event: written to the outbox for every subscribed
    /// endpoint, to be sent by [`run_due`](Self::run_due). Returns the
    /// message id (the `webhook-id` of every delivery).
    pub fn publish(
        &self,
        event_type: &str,
        installation: Option<&InstallationId>,
        data: Value,
    ) -> Result<String> {
        self.publish_where(event_type, installation, data, &|_| true)
    }

    /// [`publish`](Self::publish) to the subscribed endpoints that `allowed`
    /// also lets through: a host passes the check that the endpoint's app
    /// may see this installation's event (its merchant consented to the app,
    /// with a scope that covers the event), so that an endpoint without an
    /// installation filter still receives only the events of installations
    /// that let its app in.
    pub fn publish_where(
        &self,
        event_type: &str,
        installation: Option<&InstallationId>,
        data: Value,
        allowed: &dyn Fn(&Endpoint) -> bool,
    ) -> Result<String> {
        if event_type.is_empty()
            || !event_type
                .split('.')
                .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(Error::Invalid(format!(
                "event type `{event_type}` is not `.`-separated segments of letters, digits and `_`"
            )));
        }
        let now = self.clock.now();
        let body = event_body(event_type, now, data);
        let targets: Vec<String> = self
            .outbox
            .endpoints()?
            .into_iter()
            .filter(|e| e.wants(event_type, installation, &body) && allowed(e))
            .map(|e| e.id)
            .collect();
        let message = Message {
            id: crate::crypto::random_id("msg_")?.replace(['-', '_'], "x"),
            event_type: event_type.to_owned(),
            installation: installation.cloned(),
            body: body.to_string(),
            created_at: now,
        };
        self.outbox.enqueue(&message, &targets)?;
        Ok(message.id)
    }

    fn jittered(&self, wait: Duration) -> Duration {
        let mut b = [0u8; 2];
        let r = if SystemRandom::new().fill(&mut b).is_ok() {
            f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
        } else {
            0.5
        };
        let factor = 1.0 + self.config.jitter * (2.0 * r - 1.0);
        wait.mul_f64(factor.max(0.0))
    }

    fn send(&self, url: &str, headers: &[(&str, String)], body: &str) -> Sent {
        let start = Instant::now();
        let target = match Target::parse(url) {
            Ok(t) => t,
            Err(e) => return Sent::failed(e.to_string(), start),
        };
        let mut req = Request::new("POST", &target, start + self.config.timeout)
            .header("content-type", "application/json")
            .body(body.as_bytes())
            // The receiver's headers and the first KiB of its answer.
            .max_response(MAX_HEADER_BYTES as u64 + 1024)
            .truncate_body();
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match self.egress.send(&req) {
            Ok(resp) => {
                let header = |name: &str| resp.header(name).map(|v| v.trim().to_owned());
                // Seconds only; an HTTP-date falls back to the schedule.
                let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
                let abort = header("webhook-delivery")
                    .is_some_and(|v| v.eq_ignore_ascii_case("abort-message"));
                let excerpt = &resp.body[..resp.body.len().min(1024)];
                Sent {
                    status: Some(resp.status),
                    response: String::from_utf8_lossy(excerpt).into_owned(),
                    error: None,
                    latency: start.elapsed(),
                    retry_after,
                    abort,
                }
            }
            Err(e) => Sent::failed(e.to_string(), start),
        }
    }

    /// Attempts every delivery that is due now; returns how many were attempted.
    ///
    /// A claim is this deliverer's for `lease`, and an attempt can take up
    /// to `timeout`: claims whose attempt could not finish inside the lease
    /// (behind slow endpoints) are left for a later round rather than sent
    /// while another worker may already have claimed them again.
    pub fn run_due(&self) -> Result<usize> {
        let claimed_at = self.clock.now();
        let claimed = self
            .outbox
            .claim_due(claimed_at, self.config.lease, self.config.batch)?;
        let last_start = claimed_at.plus(self.config.lease.saturating_sub(self.config.timeout));
        let mut attempted = 0;
        for c in claimed {
            if attempted > 0 && self.clock.now() > last_start {
                break;
            }
            self.attempt(c)?;
            attempted += 1;
        }
        Ok(attempted)
    }

    /// Runs [`run_due`](Self::run_due) on a background thread until the
    /// returned worker is stopped or dropped: again at once while full
    /// batches come back, otherwise every `interval`. An outbox error is
    /// logged and retried after `interval`; it never ends the worker.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> Result<DeliveryWorker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let me = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("vodo-webhooks".into())
            .spawn(move || {
                loop {
                    let wait = match me.run_due() {
                        Ok(n) if n >= me.config.batch.max(1) => Duration::ZERO,
                        Ok(_) => interval,
                        Err(e) => {
                            tracing::error!(error = %e, "webhook delivery round failed");
                            interval
                        }
                    };
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // Stopped, or the worker handle is gone.
                        _ => break,
                    }
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the delivery thread: {e}")))?;
        Ok(DeliveryWorker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn attempt(&self, c: Claimed) -> Result<()> {
        let now = self.clock.now();
        let signer = Signer::new(c.endpoint.secrets.clone())?;
        let timestamp = now.as_millis() / 1000;
        let headers = signer.headers_for(
            c.endpoint.scheme,
            &c.message_id,
            timestamp,
            c.body.as_bytes(),
        );
        let sent = self.send(&c.endpoint.url, &headers, &c.body);
        let delivered = sent.status.is_some_and(|s| (200..300).contains(&s));
        let attempts = c.attempts + 1;
        let gone = sent.status == Some(410);
        let aborted = sent.abort && !delivered;
        // A throttled receiver's `Retry-After` stretches the wait (never
        // shortens it, and never past a day).
        let throttled = matches!(sent.status, Some(429 | 502 | 503 | 504));
        let asked = sent
            .retry_after
            .filter(|_| throttled)
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
            .unwrap_or_default();
        let next = if delivered || gone || aborted {
            None
        } else {
            self.config
                .schedule
                .get(c.attempts as usize)
                .map(|wait| now.plus(self.jittered(*wait).max(asked)))
        };
        let attempt = Attempt {
            delivery_id: c.delivery_id,
            message_id: c.message_id.clone(),
            endpoint_id: c.endpoint.id.clone(),
            at: now,
            status: sent.status,
            latency: sent.latency,
            error: sent.error.or_else(|| {
                (!delivered).then(|| {
                    let status = sent.status.unwrap_or(0);
                    if aborted {
                        format!("HTTP {status}; the receiver asked not to retry (webhook-delivery: abort-message)")
                    } else {
                        format!("HTTP {status}")
                    }
                })
            }),
            response: sent.response,
        };
        self.outbox.record(&attempt, delivered, next, attempts)?;
        if delivered || aborted {
            // An endpoint that answers on purpose, even to refuse one message, is alive.
            self.outbox.set_failing(&c.endpoint.id, None)?;
            return Ok(());
        }
        self.outbox.set_failing(&c.endpoint.id, Some(now))?;
        let failing_since = self
            .outbox
            .endpoint(&c.endpoint.id)?
            .and_then(|e| e.failing_since)
            .unwrap_or(now);
        let reason = if gone {
            Some("the endpoint answered 410 Gone".to_owned())
        } else if now.since(failing_since) >= self.config.disable_after {
            Some(format!(
                "every delivery failed for {:?}",
                now.since(failing_since)
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            self.outbox.disable(&c.endpoint.id, &reason)?;
            self.notifier.endpoint_disabled(&c.endpoint, &reason);
        }
        Ok(())
    }

    /// The test tool: sends a sample event of `event_type` to `url`, signed
    /// with `secret`, now, outside the outbox, and reports the signed request
    /// and the answer.
    pub fn send_test(
        &self,
        url: &str,
        secret: &WebhookSecret,
        event_type: &str,
        data: Value,
    ) -> Result<TestDelivery> {
        let now = self.clock.now();
        let id = format!("msg_test{}", now.as_millis());
        let body = event_body(event_type, now, data).to_string();
        let signer = Signer::new(vec![secret.clone()])?;
        let headers: Vec<(String, String)> = signer
            .headers(&id, now.as_millis() / 1000, body.as_bytes())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let refs: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let sent = self.send(url, &refs, &body);
        Ok(TestDelivery {
            request_headers: headers,
            request_body: body,
            status: sent.status,
            response: sent.response,
            error: sent.error,
            latency: sent.latency,
        })
    }
}

/// What the test tool sent and got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDelivery {
    /// The signed request's webhook headers.
    pub request_headers: Vec<(String, String)>,
    /// The request body.
    pub request_body: String,
    /// The answer's status, if one came.
    pub status: Option<u16>,
    /// The first bytes of the answer.
    pub response: String,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Time to the answer.
    pub latency: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp(1_649_367_553_123)),
            "2022-04-07T21:39:13.123Z"
        );
        assert_eq!(
            rfc3339(Timestamp(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
