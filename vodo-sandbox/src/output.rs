//! The plugin's stdout and stderr: counted against the output limit and
//! dropped. Nothing reads what a plugin prints (its logs go through the
//! `log` interface), so the bytes are not kept; what is kept is how many
//! there were and whether the limit was hit, which the call pipeline reads
//! to name the violation. A warm instance resets the count for each call.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The most a single write may be granted: what WASI streams usually allow.
const PERMIT: u64 = 64 << 10;

/// stdout and stderr of one store, counted together. Clones share the count.
#[derive(Debug, Clone)]
pub(crate) struct Captured(Arc<Count>);

#[derive(Debug)]
struct Count {
    capacity: u64,
    used: AtomicU64,
    overflowed: AtomicBool,
}

impl Captured {
    /// Room for `capacity` bytes.
    pub(crate) fn new(capacity: u64) -> Self {
        Self(Arc::new(Count {
            capacity,
            used: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
        }))
    }

    /// Whether the plugin tried to write past the limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.0.overflowed.load(Ordering::Relaxed)
    }

    /// Starts a new call's count.
    pub(crate) fn reset(&self) {
        self.0.used.store(0, Ordering::Relaxed);
        self.0.overflowed.store(false, Ordering::Relaxed);
    }

    /// Counts `n` bytes; false (and remembered) if they do not fit.
    fn take(&self, n: u64) -> bool {
        let c = &self.0;
        let fits = c
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= c.capacity)
            })
            .is_ok();
        if !fits {
            c.overflowed.store(true, Ordering::Relaxed);
        }
        fits
    }

    fn room(&self) -> u64 {
        let c = &self.0;
        c.capacity.saturating_sub(c.used.load(Ordering::Relaxed))
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.take(bytes.len() as u64) {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::msg(
                "the plugin wrote more to stdout and stderr than its output limit",
            )))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.room() {
            0 => {
                self.0.overflowed.store(true, Ordering::Relaxed);
                Err(StreamError::Closed)
            }
            room => Ok(room.min(PERMIT) as usize),
        }
    }
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = (buf.len() as u64).min(self.room());
        if n == 0 && !buf.is_empty() {
            self.0.overflowed.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(std::io::ErrorKind::StorageFull.into()));
        }
        self.take(n);
        Poll::Ready(Ok(n as usize))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_to_the_limit_and_starts_again_after_a_reset() {
        let mut out = Captured::new(10);
        assert_eq!(out.check_write().ok(), Some(10));
        assert!(out.write(Bytes::from_static(b"12345678")).is_ok());
        assert_eq!(out.check_write().ok(), Some(2));
        assert!(!out.overflowed());
        assert!(out.write(Bytes::from_static(b"123")).is_err());
        assert!(out.overflowed());
        out.reset();
        assert!(!out.overflowed());
        assert_eq!(out.check_write().ok(), Some(10));
    }
}
