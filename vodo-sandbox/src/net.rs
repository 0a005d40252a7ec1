//! Outbound HTTP for plugins: only to hosts the grant lists, through the
//! one egress path of [`vodo_egress`] (checked addresses, one deadline,
//! bounded responses).
//!
//! Guests get no sockets. The `http` interface is the only way out, and each
//! request is checked in order: the URL parses and is `http(s)`; the host and
//! port are in the grant (`network:outbound:{host}`); then [`Egress::send`]
//! resolves the name, refuses the request if **any** address is not public
//! (unless the host allows private networks), and connects only to the
//! checked addresses. The deadline is fixed when the host call starts.

use std::time::Instant;

use vodo_egress::{Egress, EgressError, Request, Target};
use vodo_scopes::ScopeSet;

use crate::SandboxViolation;

pub use vodo_egress::{Resolver, SystemResolver, host_of, is_private};

/// A request as the plugin made it.
pub(crate) struct Outgoing<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
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
    pub egress: &'a Egress,
    /// When the whole request must be over.
    pub deadline: Instant,
    /// Bytes of the response, headers included.
    pub max_response: u64,
}

fn refuse(host: &str, reason: String) -> FetchError {
    FetchError::Violation(SandboxViolation::Network {
        host: host.chars().take(253).collect(),
        reason,
    })
}

pub(crate) fn fetch(
    policy: &Policy<'_>,
    req: &Outgoing<'_>,
) -> Result<vodo_egress::Response, FetchError> {
    let target = Target::parse(req.url).map_err(|e| match e {
        EgressError::Scheme { .. } => refuse(&host_of(req.url), e.to_string()),
        other => FetchError::Invalid(other.to_string()),
    })?;
    let (host, port) = (target.host(), target.port());
    if !policy.scopes.can_connect(host, port) {
        let host: String = host.chars().take(253).collect();
        return Err(FetchError::Denied(format!(
            "network:outbound:{host}:{port}"
        )));
    }
    let mut request = Request::new(req.method, &target, policy.deadline)
        .body(req.body)
        .max_response(policy.max_response);
    for (name, value) in req.headers {
        request = request.header(name, value);
    }
    policy.egress.send(&request).map_err(|e| match e {
        EgressError::PrivateAddress { .. } | EgressError::Scheme { .. } => {
            refuse(host, e.to_string())
        }
        EgressError::InvalidUrl(m) | EgressError::InvalidRequest(m) => FetchError::Invalid(m),
        other => FetchError::Failed(other.to_string()),
    })
}
