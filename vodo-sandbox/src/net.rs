//! Outbound HTTP for plugins: only to hosts the grant lists, never to a
//! private address (SSRF), with time and size limits.
//!
//! Guests get no sockets. The `http` interface is the only way out, and each
//! request is checked in order: the URL parses and is `http`; the host and
//! port are in the grant (`network:outbound:{host}`); the name resolves, and
//! **every** address it resolves to is public unless the host policy allows
//! private networks; then the connection goes to the checked address itself,
//! so a second DNS answer cannot swap in another (DNS rebinding).
//!
//! `https` is spoken with rustls (ring provider) against the Mozilla root
//! store from `webpki-roots`; the certificate must match the host name the
//! grant allowed, whatever address it was reached at.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
pub use vodo_core::net::is_private;

use vodo_scopes::ScopeSet;

use crate::SandboxViolation;

pub use vodo_core::net::{Resolver, SystemResolver};

/// A request as the plugin made it.
pub(crate) struct Outgoing<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// A response for the plugin.
pub(crate) struct Incoming {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a request can end in besides a response.
pub(crate) enum FetchError {
    /// The grant does not allow the host: the scope it would need, for the plugin.
    Denied(String),
    /// A rule was broken (a private address, a scheme): stop the plugin.
    Violation(SandboxViolation),
    /// The request was invalid; tell the plugin.
    Invalid(String),
    /// The network failed; tell the plugin.
    Failed(String),
}

pub(crate) struct Policy<'a> {
    pub scopes: &'a ScopeSet,
    pub resolver: &'a dyn Resolver,
    pub allow_private: bool,
    pub timeout: Duration,
    pub max_body: u64,
}

fn refuse(host: &str, reason: impl Into<String>) -> FetchError {
    FetchError::Violation(SandboxViolation::Network {
        host: host.chars().take(253).collect(),
        reason: reason.into(),
    })
}

/// The host of a URL, for the audit record, before anything else is checked.
pub(crate) fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn fetch(policy: &Policy<'_>, req: &Outgoing<'_>) -> Result<Incoming, FetchError> {
    let url = url::Url::parse(req.url)
        .map_err(|e| FetchError::Invalid(format!("`{}` is not a URL: {e}", req.url)))?;
    let host = url
        .host_str()
        .ok_or_else(|| FetchError::Invalid("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(refuse(
                &host,
                format!("scheme `{other}` is not allowed: use https or http"),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::Invalid(
            "credentials in URLs are not allowed: send them in a header".into(),
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    if !policy.scopes.can_connect(&host, port) {
        let host: String = host.chars().take(253).collect();
        return Err(FetchError::Denied(format!(
            "network:outbound:{host}:{port}"
        )));
    }
    if !matches!(
        req.method,
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD"
    ) {
        return Err(FetchError::Invalid(format!(
            "method `{}` is not allowed",
            req.method
        )));
    }

    let addrs = policy
        .resolver
        .resolve(&host, port)
        .map_err(|e| FetchError::Failed(format!("cannot resolve `{host}`: {e}")))?;
    if addrs.is_empty() {
        return Err(FetchError::Failed(format!("`{host}` has no address")));
    }
    if !policy.allow_private
        && let Some(bad) = addrs.iter().find(|a| is_private(a.ip()))
    {
        return Err(refuse(
            &host,
            format!(
                "it resolves to {}, a loopback, private or link-local address",
                bad.ip()
            ),
        ));
    }

    let deadline = Instant::now() + policy.timeout;
    let tcp = connect(&addrs, policy.timeout)
        .map_err(|e| FetchError::Failed(format!("cannot connect to `{host}`: {e}")))?;
    tcp.set_write_timeout(Some(policy.timeout))
        .map_err(|e| FetchError::Failed(format!("request to `{host}` failed: {e}")))?;
    let target = Target {
        host: &host,
        url: &url,
        port,
        deadline,
    };
    if tls {
        let conn = rustls::ClientConnection::new(tls_config()?, server_name(&host)?)
            .map_err(|e| FetchError::Failed(format!("TLS with `{host}`: {e}")))?;
        exchange(rustls::StreamOwned::new(conn, tcp), &target, req, policy)
    } else {
        exchange(tcp, &target, req, policy)
    }
}

/// Where a request goes, once checked.
struct Target<'a> {
    host: &'a str,
    url: &'a url::Url,
    port: u16,
    deadline: Instant,
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, FetchError> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| FetchError::Invalid(format!("`{host}` is not a valid TLS server name: {e}")))
}

/// The client configuration, built once: Mozilla's roots, safe defaults.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, FetchError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| FetchError::Failed(format!("TLS is unavailable on this host: {e}")))
}

/// Writes the request and reads the response on an open connection.
fn exchange<S: Conn>(
    mut stream: S,
    t: &Target<'_>,
    req: &Outgoing<'_>,
    policy: &Policy<'_>,
) -> Result<Incoming, FetchError> {
    let (host, url, port, deadline) = (t.host, t.url, t.port, t.deadline);
    let io_err = |e: io::Error| FetchError::Failed(format!("request to `{host}` failed: {e}"));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}",
        req.method,
        path_and_query(url)
    );
    if url.port().is_some() {
        head.push_str(&format!(":{port}"));
    }
    head.push_str("\r\nConnection: close\r\nUser-Agent: vodo-plugin\r\n");
    for (name, value) in req.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
            || value.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            return Err(FetchError::Invalid(format!(
                "header `{name}` is not allowed or not valid"
            )));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
    stream.write_all(head.as_bytes()).map_err(io_err)?;
    stream.write_all(req.body).map_err(io_err)?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let cap = policy.max_body + 64 * 1024;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FetchError::Failed(format!(
                "`{host}` did not answer within {:?}",
                policy.timeout
            )));
        }
        stream.tcp().set_read_timeout(Some(left)).map_err(io_err)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() as u64 > cap {
                    return Err(FetchError::Failed(format!(
                        "the response of `{host}` is larger than {} bytes",
                        policy.max_body
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A TLS peer that closes without close_notify after a complete
            // response: the framing below decides whether anything is missing.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(io_err(e)),
        }
    }
    parse_response(&raw, policy.max_body)
        .map_err(|e| FetchError::Failed(format!("bad response from `{host}`: {e}")))
}

/// A connection, plain or TLS; timeouts live on the TCP socket under both.
trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn connect(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn parse_response(raw: &[u8], max_body: u64) -> Result<Incoming, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status code")?;
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("a header line has no `:`")?;
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        headers.push((name, value));
        if headers.len() > 100 {
            return Err("more than 100 headers".into());
        }
    }
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    if body.len() as u64 > max_body {
        return Err(format!("the body is larger than {max_body} bytes"));
    }
    Ok(Incoming {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_str = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_and_without_chunks() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello",
            100,
        )
        .ok()
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = parse_response(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 100)
            .ok()
            .unwrap();
        assert_eq!(r.body, b"hello world");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\ntoo long", 3).is_err());
        assert!(parse_response(b"garbage", 3).is_err());
    }
}
