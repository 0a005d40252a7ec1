//! What the checking layers share: the [`Check`] each makes, the one
//! service that runs it, [`Checking`], and its future, [`Checked`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use http::header::{HeaderName, HeaderValue};
use http::{Request, StatusCode};
use tower::Service;

use crate::Problem;

/// What a checking layer decides about a request before the inner service
/// sees it: refuse it with a [`Problem`], or let it through (perhaps with
/// something added to its extensions, and a header for the response).
///
/// [`ApiKeyAuthLayer`](crate::ApiKeyAuthLayer),
/// [`RateLimitLayer`](crate::RateLimitLayer) and
/// [`PermissionLayer`](crate::PermissionLayer) are checks; a host can write
/// its own and wrap a service in [`Checking`].
///
/// A check that refuses requests without a tenant header, and names the
/// tenant in the answer:
///
/// ```
/// use http::header::{HeaderName, HeaderValue};
/// use http::{Request, StatusCode};
/// use vodo_server::{Check, Problem};
///
/// #[derive(Clone)]
/// struct Tenant;
///
/// impl Check for Tenant {
///     fn check<B>(&self, request: &mut Request<B>) -> Result<Option<(HeaderName, HeaderValue)>, Problem> {
///         match request.headers().get("x-tenant").cloned() {
///             Some(t) => Ok(Some((HeaderName::from_static("x-served-tenant"), t))),
///             None => Err(Problem::new(StatusCode::BAD_REQUEST, "no_tenant", "send `x-tenant`")),
///         }
///     }
/// }
///
/// let mut ok = Request::get("/").header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(Tenant.check(&mut ok).unwrap().unwrap().1, "acme");
/// let mut refused = Request::get("/").body(()).unwrap();
/// assert_eq!(Tenant.check(&mut refused).unwrap_err().status, StatusCode::BAD_REQUEST);
/// // In a service stack: `vodo_server::Checking::new(inner_service, Tenant)`.
/// ```
pub trait Check: Clone {
    /// Refuses `request`, or lets it through with an optional response header.
    fn check<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, Problem>;
}

/// The service of a checking layer: runs its [`Check`], then the inner
/// service (or answers with the refusal without calling it).
#[derive(Debug, Clone)]
pub struct Checking<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Checking<S, C> {
    /// `inner`, behind `check`.
    pub fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }
}

impl<S, C, B> Service<Request<B>> for Checking<S, C>
where
    S: Service<Request<B>, Response = Response>,
    C: Check,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Checked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.check.check(&mut request) {
            Ok(header) => Checked::inner(self.inner.call(request), header),
            Err(problem) => Checked::refused(problem),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a checking layer: its refusal, ready at once, or the
    /// inner service's response, with the layer's header (if any) added.
    pub struct Checked<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Refused { response: Option<Response> },
        Inner {
            #[pin]
            future: F,
            header: Option<(HeaderName, HeaderValue)>,
        },
    }
}

impl<F> Checked<F> {
    pub(crate) fn refused(problem: Problem) -> Self {
        Self {
            state: State::Refused {
                response: Some(problem.response()),
            },
        }
    }

    pub(crate) fn inner(future: F, header: Option<(HeaderName, HeaderValue)>) -> Self {
        Self {
            state: State::Inner { future, header },
        }
    }
}

impl<F, E> Future for Checked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "polled_twice",
                        "a response future was polled after it completed",
                    )
                    .response()
                })))
            }
            StateProj::Inner { future, header } => match future.poll(cx) {
                Poll::Ready(Ok(mut response)) => {
                    if let Some((name, value)) = header.take() {
                        response.headers_mut().append(name, value);
                    }
                    Poll::Ready(Ok(response))
                }
                other => other,
            },
        }
    }
}
