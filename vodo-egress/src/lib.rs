//! The one way out to the network for Vodo: plugins' outbound HTTP and the
//! webhook sender both send through an [`Egress`].
//!
//! Every request:
//!
//! - goes to an `http` or `https` URL without credentials in it;
//! - resolves its host once, through the [`Resolver`] the host chose, and is
//!   refused if **any** address is not globally reachable unicast
//!   ([`is_private`]) unless private networks are allowed; the connection
//!   then goes to exactly the checked addresses, so a second DNS answer
//!   cannot swap another in (DNS rebinding);
//! - runs under **one deadline**, fixed by the caller before anything else
//!   happens, that covers name resolution, connecting (all addresses
//!   together), the TLS handshake, the upload and the download;
//! - gets at most [`Request::max_response`] bytes back, counting the status
//!   line and headers as well as the body;
//! - follows no redirect and uses no proxy (a proxy would hide the address);
//! - speaks TLS with rustls (ring) against Mozilla's roots, checking the
//!   certificate against the host name in the URL, whatever address it was
//!   reached at.
//!
//! The HTTP/1.1 framing is [ureq](https://docs.rs/ureq)'s, a maintained
//! client whose parser the hostile inputs of an allowed server meet: no
//! response bytes can panic the host, a chunk size that overflows and a body
//! shorter than its `Content-Length` are errors.
//!
//! The client is blocking. An async host runs [`Egress::send`] on a bounded
//! blocking pool (`tokio::task::spawn_blocking` or its own threads), so a
//! plugin waiting on the network never holds a runtime worker.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use vodo_egress::{Egress, EgressConfig, Request, SystemResolver, Target};
//!
//! let egress = Egress::new(EgressConfig::default(), Arc::new(SystemResolver));
//! let target = Target::parse("https://api.partner.example/v1/orders")?;
//! let deadline = Instant::now() + Duration::from_secs(5);
//! let response = egress.send(&Request::new("GET", &target, deadline).max_response(1 << 20))?;
//! println!("{} with {} bytes", response.status, response.body.len());
//! # Ok::<(), vodo_egress::EgressError>(())
//! ```

#![forbid(unsafe_code)]

mod addr;
mod resolve;

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::DefaultConnector;

pub use addr::is_private;
pub use resolve::{Resolver, SystemResolver};

use resolve::{CheckedResolver, Refusal};

/// The most header bytes (status line and headers) a response may have,
/// whatever its overall limit. 64 KiB, as most servers allow for requests.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The most headers a response may have.
pub const MAX_HEADERS: usize = 100;

/// The methods a request may use.
pub const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// How an [`Egress`] behaves for all its requests.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Whether hosts may resolve to loopback, private or other non-global
    /// addresses. Default `false`; tests and on-premises hosts turn it on.
    pub allow_private: bool,
    /// The `User-Agent` sent when the request sets none. Default `vodo`.
    pub user_agent: String,
    /// Whether a connection may be kept for a later request to the same
    /// host. Default `false`: every request resolves and checks afresh.
    pub reuse_connections: bool,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            user_agent: "vodo".into(),
            reuse_connections: false,
        }
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The URL does not parse, has no host or carries credentials.
    #[error("{0}")]
    InvalidUrl(String),
    /// The URL's scheme is neither `https` nor `http`.
    #[error("scheme `{scheme}` is not allowed: use https or http")]
    Scheme {
        /// The scheme asked for.
        scheme: String,
    },
    /// The method or a header cannot be sent.
    #[error("{0}")]
    InvalidRequest(String),
    /// The host resolves to an address that must not be reached.
    #[error("`{host}` resolves to {ip}, a loopback, private or otherwise non-global address")]
    PrivateAddress {
        /// The host asked for.
        host: String,
        /// The first refused address.
        ip: std::net::IpAddr,
    },
    /// The host's name did not resolve.
    #[error("cannot resolve `{host}`: {message}")]
    Resolve {
        /// The host asked for.
        host: String,
        /// What the resolver said.
        message: String,
    },
    /// The deadline passed before the response was complete.
    #[error("`{host}` did not answer within {budget:?}, the time limit of the request ({phase})")]
    Timeout {
        /// The host asked for.
        host: String,
        /// The time the request had, from its start to its deadline.
        budget: Duration,
        /// What was under way: resolving, connecting, sending, receiving.
        phase: &'static str,
    },
    /// The response is larger than the request allowed.
    #[error("the response of `{host}` is larger than {limit} bytes (headers included)")]
    TooLarge {
        /// The host asked for.
        host: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Connecting, TLS or the exchange failed, or the response broke HTTP.
    #[error("request to `{host}` failed: {message}")]
    Failed {
        /// The host asked for.
        host: String,
        /// What went wrong.
        message: String,
    },
}

/// Where a request goes: a checked `http(s)` URL, split for grant checks.
#[derive(Debug, Clone)]
pub struct Target {
    url: url::Url,
    host: String,
    port: u16,
}

impl Target {
    /// Parses `url`: it must be `http` or `https`, have a host and carry no
    /// credentials.
    pub fn parse(url: &str) -> Result<Self, EgressError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| EgressError::InvalidUrl(format!("`{}` is not a URL: {e}", clip(url))))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| EgressError::InvalidUrl("the URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EgressError::Scheme {
                scheme: clip(parsed.scheme()),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(EgressError::InvalidUrl(
                "credentials in URLs are not allowed: send them in a header".into(),
            ));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        Ok(Self {
            url: parsed,
            host,
            port,
        })
    }

    /// The host, lowercase, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the request is made over TLS.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "https"
    }
}

/// The host part of `url` for a record, or empty; nothing is checked.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(clip))
        .unwrap_or_default()
}

fn clip(s: &str) -> String {
    s.chars().take(253).collect()
}

/// One request: what to send, by when, and how much may come back.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    target: &'a Target,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    deadline: Instant,
    max_response: u64,
    truncate: bool,
}

impl<'a> Request<'a> {
    /// A request with no headers and no body, allowed 1 MiB of response.
    ///
    /// `deadline` is the instant by which the whole exchange must be over;
    /// fix it when the caller's own call starts.
    pub fn new(method: &'a str, target: &'a Target, deadline: Instant) -> Self {
        Self {
            method,
            target,
            headers: Vec::new(),
            body: &[],
            deadline,
            max_response: 1 << 20,
            truncate: false,
        }
    }

    /// Adds a header. `Host`, `Connection`, `Content-Length` and
    /// `Transfer-Encoding` are the client's own and refused.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sends `body`.
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }

    /// The most bytes the response may have, status line and headers
    /// included. A larger response is [`EgressError::TooLarge`].
    pub fn max_response(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    /// Keeps the first bytes of a larger body instead of failing (the
    /// headers still count and are still limited).
    pub fn truncate_body(mut self) -> Self {
        self.truncate = true;
        self
    }
}

/// A response, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in the order received; values that are not UTF-8 are
    /// passed on lossily.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from its transfer framing.
    pub body: Vec<u8>,
    /// Whether [`Request::truncate_body`] cut the body short.
    pub truncated: bool,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends requests under the rules of the crate documentation.
pub struct Egress {
    agent: ureq::Agent,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress").finish_non_exhaustive()
    }
}

impl Egress {
    /// An egress resolving through `resolver`.
    pub fn new(config: EgressConfig, resolver: Arc<dyn Resolver>) -> Self {
        let mut builder = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(config.user_agent.as_str())
            .max_response_header_size(MAX_HEADER_BYTES);
        if !config.reuse_connections {
            builder = builder.max_idle_connections(0);
        }
        let agent = ureq::Agent::with_parts(
            builder.build(),
            DefaultConnector::default(),
            CheckedResolver::new(resolver, config.allow_private),
        );
        Self { agent }
    }

    /// Sends `request` and reads the whole response.
    pub fn send(&self, request: &Request<'_>) -> Result<Response, EgressError> {
        let start = Instant::now();
        let host = request.target.host.as_str();
        let budget = request.deadline.saturating_duration_since(start);
        if budget.is_zero() {
            return Err(EgressError::Timeout {
                host: host.to_owned(),
                budget,
                phase: "before it started",
            });
        }
        let method = METHODS
            .iter()
            .find(|m| **m == request.method)
            .ok_or_else(|| {
                EgressError::InvalidRequest(format!(
                    "method `{}` is not allowed: use one of {}",
                    clip(request.method),
                    METHODS.join(", ")
                ))
            })?;
        let uri: ureq::http::Uri = request.target.url.as_str().parse().map_err(|e| {
            EgressError::InvalidUrl(format!("`{}` cannot be sent: {e}", request.target.url))
        })?;
        // The host that is resolved and checked is the host the grant saw.
        if uri
            .host()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
            != Some(request.target.host.clone())
        {
            return Err(EgressError::InvalidUrl(format!(
                "the host of `{}` is ambiguous",
                request.target.url
            )));
        }
        let mut builder = ureq::http::Request::builder().method(*method).uri(uri);
        for (name, value) in &request.headers {
            check_header(name, value)?;
            builder = builder.header(*name, *value);
        }
        let header_limit = usize::try_from(request.max_response)
            .unwrap_or(usize::MAX)
            .min(MAX_HEADER_BYTES);
        // No body at all, not an empty one, for a request without content.
        let fail = |e: ureq::Error| map_error(e, host, budget, request.max_response);
        let mut response = if request.body.is_empty() {
            self.run(builder.body(()), budget, header_limit, fail)
        } else {
            self.run(builder.body(request.body), budget, header_limit, fail)
        }?;

        let mut headers = Vec::with_capacity(response.headers().len());
        // The status line: "HTTP/1.1 200 OK\r\n".
        let mut header_bytes: u64 = 17;
        for (name, value) in response.headers() {
            header_bytes += (name.as_str().len() + value.len() + 4) as u64;
            headers.push((
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
        }
        if headers.len() > MAX_HEADERS {
            return Err(EgressError::Failed {
                host: host.to_owned(),
                message: format!("the response has more than {MAX_HEADERS} headers"),
            });
        }
        let too_large = || EgressError::TooLarge {
            host: host.to_owned(),
            limit: request.max_response,
        };
        let left = request
            .max_response
            .checked_sub(header_bytes)
            .ok_or_else(too_large)?;
        let status = response.status().as_u16();
        let reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut body = Vec::new();
        // One byte past the limit tells a body that fits from one that does not.
        let read = reader.take(left.saturating_add(1)).read_to_end(&mut body);
        if let Err(e) = read {
            return Err(map_io(e, host, budget));
        }
        let mut truncated = false;
        if body.len() as u64 > left {
            if !request.truncate {
                return Err(too_large());
            }
            body.truncate(usize::try_from(left).unwrap_or(usize::MAX));
            truncated = true;
        }
        Ok(Response {
            status,
            headers,
            body,
            truncated,
        })
    }
}

impl Egress {
    /// Sends a built request under the deadline's budget and the header
    /// limit; `fail` says what a failure of ureq's means.
    fn run<B: ureq::AsSendBody>(
        &self,
        built: ureq::http::Result<ureq::http::Request<B>>,
        budget: Duration,
        header_limit: usize,
        fail: impl FnOnce(ureq::Error) -> EgressError,
    ) -> Result<ureq::http::Response<ureq::Body>, EgressError> {
        let req = built
            .map_err(|e| EgressError::InvalidRequest(format!("cannot build the request: {e}")))?;
        let req = self
            .agent
            .configure_request(req)
            .timeout_global(Some(budget))
            .max_response_header_size(header_limit)
            .build();
        self.agent.run(req).map_err(fail)
    }
}

fn check_header(name: &str, value: &str) -> Result<(), EgressError> {
    let reserved = ["host", "connection", "content-length", "transfer-encoding"];
    if reserved.iter().any(|r| name.eq_ignore_ascii_case(r))
        || name.is_empty()
        || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
        || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(EgressError::InvalidRequest(format!(
            "header `{}` is not allowed or not valid",
            clip(name)
        )));
    }
    Ok(())
}

fn phase(t: ureq::Timeout) -> &'static str {
    match t {
        ureq::Timeout::Resolve => "resolving the name",
        ureq::Timeout::Connect => "connecting",
        ureq::Timeout::SendRequest | ureq::Timeout::SendBody => "sending the request",
        ureq::Timeout::RecvResponse => "waiting for the response",
        ureq::Timeout::RecvBody => "receiving the body",
        _ => "in the exchange",
    }
}

fn map_error(e: ureq::Error, host: &str, budget: Duration, limit: u64) -> EgressError {
    let host_owned = || host.to_owned();
    match e {
        ureq::Error::Timeout(t) => EgressError::Timeout {
            host: host_owned(),
            budget,
            phase: phase(t),
        },
        ureq::Error::LargeResponseHeader(..) | ureq::Error::BodyExceedsLimit(_) => {
            EgressError::TooLarge {
                host: host_owned(),
                limit,
            }
        }
        ureq::Error::HostNotFound => EgressError::Resolve {
            host: host_owned(),
            message: "the name has no address".into(),
        },
        ureq::Error::Io(io) => map_io(io, host, budget),
        other => EgressError::Failed {
            host: host_owned(),
            message: other.to_string(),
        },
    }
}

fn map_io(e: io::Error, host: &str, budget: Duration) -> EgressError {
    if let Some(refusal) = e.get_ref().and_then(|i| i.downcast_ref::<Refusal>()) {
        return match refusal {
            Refusal::Private(ip) => EgressError::PrivateAddress {
                host: host.to_owned(),
                ip: *ip,
            },
            Refusal::Resolve(message) => EgressError::Resolve {
                host: host.to_owned(),
                message: message.clone(),
            },
            Refusal::ResolveTimeout => EgressError::Timeout {
                host: host.to_owned(),
                budget,
                phase: phase(ureq::Timeout::Resolve),
            },
        };
    }
    // ureq reports some of its own errors through io (a body read).
    if let Some(ureq::Error::Timeout(t)) = e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>())
    {
        return EgressError::Timeout {
            host: host.to_owned(),
            budget,
            phase: phase(*t),
        };
    }
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return EgressError::Timeout {
            host: host.to_owned(),
            budget,
            phase: "in the exchange",
        };
    }
    EgressError::Failed {
        host: host.to_owned(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
