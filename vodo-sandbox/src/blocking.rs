//! Where a host function's waiting happens.
//!
//! Each host function that may wait on I/O (the host's services, the
//! plugin's folder, outbound HTTP) is written once, as an `async fn` over a
//! [`Runner`]. A synchronous call runs it with [`Inline`]: the work happens
//! on the calling thread and the future is ready at its first poll. A call
//! from [`Sandbox::call_event_async`](crate::Sandbox::call_event_async) and
//! its siblings runs it with [`Pool`]: the work goes to tokio's blocking
//! threads, at most [`SandboxConfig::max_blocking`](crate::SandboxConfig::max_blocking)
//! at a time for the whole sandbox, and the plugin's fiber is suspended
//! until it is done, so the runtime's worker goes on with other tasks.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::Semaphore;

/// Runs the part of a host call that may block.
pub(crate) trait Runner: Sync {
    /// Runs `work`; `waits` says whether it may wait on I/O (work that does
    /// not is run in place whatever the runner).
    fn run<R: Send + 'static>(
        &self,
        waits: bool,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = wasmtime::Result<R>> + Send;

    /// Whether work that `waits` leaves this thread (and so must own what
    /// it uses); when it does not, the caller runs it in place on borrowed
    /// data, with no reference counts taken.
    fn offloads(&self, waits: bool) -> bool;
}

/// Runs the work where the call is: the synchronous call path.
pub(crate) struct Inline;

impl Runner for Inline {
    fn offloads(&self, _waits: bool) -> bool {
        false
    }

    fn run<R: Send + 'static>(
        &self,
        _waits: bool,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = wasmtime::Result<R>> + Send {
        std::future::ready(Ok(work()))
    }
}

/// Runs work that may wait on tokio's blocking threads, bounded by the
/// sandbox's semaphore: the asynchronous call path.
pub(crate) struct Pool(pub(crate) Arc<Semaphore>);

impl Runner for Pool {
    fn offloads(&self, waits: bool) -> bool {
        waits
    }

    fn run<R: Send + 'static>(
        &self,
        waits: bool,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = wasmtime::Result<R>> + Send {
        let permits = Arc::clone(&self.0);
        async move {
            if !waits {
                return Ok(work());
            }
            // The semaphore is never closed, so acquiring only waits.
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| wasmtime::Error::msg("the sandbox's blocking pool is closed"))?;
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| wasmtime::Error::msg("an async call ran outside a tokio runtime"))?;
            handle
                .spawn_blocking(move || {
                    let out = work();
                    drop(permit);
                    out
                })
                .await
                .map_err(|e| wasmtime::Error::msg(format!("a host call's worker failed: {e}")))
        }
    }
}

/// The value of a future run with [`Inline`], which is ready at once.
pub(crate) fn now<T>(future: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => Err(wasmtime::Error::msg(
            "a synchronous host call waited: this is a bug in Vodo",
        )),
    }
}
