//! Name resolution: the host's [`Resolver`], run under the request's
//! deadline, and the address check between it and ureq.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};

use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver as UreqResolver};
use ureq::unversioned::transport::NextTimeout;

use crate::is_private;

/// Resolves host names; injected so that tests and hosts can control DNS.
///
/// A resolver with fixed answers, as a test or a host with its own DNS
/// policy would give the egress:
///
/// ```
/// use std::io;
/// use std::net::SocketAddr;
/// use vodo_egress::Resolver;
///
/// #[derive(Debug)]
/// struct Fixed;
///
/// impl Resolver for Fixed {
///     fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
///         match host {
///             "api.example.com" => Ok(vec![SocketAddr::from(([93, 184, 215, 14], port))]),
///             _ => Err(io::Error::new(io::ErrorKind::NotFound, format!("no such host {host}"))),
///         }
///     }
/// }
///
/// let r: Box<dyn Resolver> = Box::new(Fixed);
/// assert_eq!(r.resolve("api.example.com", 443)?[0].port(), 443);
/// assert!(r.resolve("elsewhere.example", 443).is_err());
/// // The egress checks every answer against private ranges before connecting.
/// assert!(vodo_egress::is_private("10.0.0.1".parse().unwrap()));
/// # Ok::<(), io::Error>(())
/// ```
pub trait Resolver: fmt::Debug + Send + Sync {
    /// The addresses of `host:port`.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// Why the checked resolver gave ureq no address; carried inside an
/// `io::Error` and read back by [`crate::Egress::send`].
#[derive(Debug)]
pub(crate) enum Refusal {
    Private(IpAddr),
    Resolve(String),
    ResolveTimeout,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Private(ip) => write!(f, "{ip} is not a public address"),
            Self::Resolve(m) => f.write_str(m),
            Self::ResolveTimeout => f.write_str("name resolution timed out"),
        }
    }
}

impl std::error::Error for Refusal {}

fn refused(r: Refusal) -> ureq::Error {
    ureq::Error::Io(io::Error::other(r))
}

/// ureq's name resolution through the host's [`Resolver`], refusing
/// non-global addresses. ureq connects to exactly the addresses returned
/// here, so the address checked is the address used.
#[derive(Debug)]
pub(crate) struct CheckedResolver {
    resolver: Arc<dyn Resolver>,
    allow_private: bool,
}

impl CheckedResolver {
    pub(crate) fn new(resolver: Arc<dyn Resolver>, allow_private: bool) -> Self {
        Self {
            resolver,
            allow_private,
        }
    }
}

impl UreqResolver for CheckedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri
            .host()
            .ok_or_else(|| refused(Refusal::Resolve("the URL has no host".into())))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                // The lookup runs on its own thread so that a stuck name
                // server cannot hold the request past its deadline.
                let (tx, rx) = mpsc::sync_channel(1);
                let (resolver, name) = (Arc::clone(&self.resolver), host.clone());
                std::thread::Builder::new()
                    .name("vodo-egress-dns".into())
                    .spawn(move || tx.send(resolver.resolve(&name, port)).ok())
                    .map_err(ureq::Error::Io)?;
                // "Not happening" (no deadline) cannot occur: every request has one.
                match rx.recv_timeout(*timeout.after) {
                    Ok(Ok(addrs)) => addrs,
                    Ok(Err(e)) => return Err(refused(Refusal::Resolve(e.to_string()))),
                    Err(_) => return Err(refused(Refusal::ResolveTimeout)),
                }
            }
        };
        let mut out = self.empty();
        for a in addrs {
            if !self.allow_private && is_private(a.ip()) {
                return Err(refused(Refusal::Private(a.ip())));
            }
            // ureq keeps at most 16 addresses; the rest are checked, not used.
            let _ = out.try_push(a);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
