//! Serving HTTP with bounds on what a client can hold: a connection cap,
//! a time limit for a request's headers, an idle limit for a connection,
//! and a graceful stop with a hard deadline. Shared by the log server and
//! the witness.
//!
//! - **Connections**: at most `max_connections` at once. Beyond it the
//!   server stops accepting (new connections wait in the kernel's backlog)
//!   until one closes; it never holds more.
//! - **Headers**: a request's headers must arrive within `header_timeout`,
//!   counted from the connection's first byte or from the end of the
//!   previous response; a client that sends half a request line is cut off.
//! - **Idle**: a connection on which nothing is read or written for
//!   `idle_timeout` is closed.
//! - **Stop**: on shutdown the listener closes, idle connections close,
//!   requests in flight get `shutdown_grace` to finish, and whatever is left
//!   then is dropped, so a stop never waits on a client.
//!
//! Request bodies and handler time are bounded elsewhere (body limits per
//! route, the request timeout layer).

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// The most a connection buffers: headers beyond it are refused, body
/// bytes wait in the socket.
pub const MAX_BUF: usize = 64 * 1024;

/// Bounds on connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then stop within
/// `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        // A free slot first: at the cap, stop accepting.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        conns.spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    // Idle connections close now; requests in flight get the grace period.
    let drained = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "connections still open after the shutdown grace period; dropping them"
        );
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// A stream that fails with `TimedOut` once nothing has been read or
/// written on it for the idle time.
///
/// Reads and writes only note the time; the timer is moved when it fires
/// and finds the stream was active since it was set. So a busy connection
/// touches the runtime's timer about once per idle period, not twice per
/// request.
struct Idle<S> {
    inner: S,
    idle: Duration,
    /// When a byte was last read or written.
    last: Instant,
    /// Set for `idle` after some earlier activity: never later than
    /// `last + idle`.
    deadline: Pin<Box<Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Idle {
            inner,
            idle,
            last: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn active(&mut self) {
        self.last = Instant::now();
    }

    /// Whether the stream has been idle for the whole idle time; if not,
    /// the timer is set (and this task woken) for the time it would be.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.idle;
            if due <= Instant::now() {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.active();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_millis(300);

    /// Await `op`, which must fail as timed out after about the idle time
    /// (within 5 s at most, so a stream that is never cut off fails the
    /// test rather than hang it).
    async fn times_out<T: std::fmt::Debug>(op: impl Future<Output = io::Result<T>>) {
        let from = std::time::Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(5), op)
            .await
            .expect("cut off in time")
            .expect_err("cut off");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let waited = from.elapsed();
        assert!(waited >= IDLE - Duration::from_millis(20), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    #[tokio::test]
    async fn activity_keeps_a_stream_open_past_the_idle_time_then_silence_ends_it() {
        let (a, mut peer) = tokio::io::duplex(64);
        let mut s = Idle::new(a, IDLE);
        let bytes = 10;
        let writer = tokio::spawn(async move {
            for i in 0..bytes {
                tokio::time::sleep(Duration::from_millis(100)).await;
                peer.write_all(&[i]).await.unwrap();
            }
            peer // held open, silent
        });
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        while got.len() < bytes as usize {
            let n = s
                .read(&mut buf)
                .await
                .expect("an active stream is not cut off");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, (0..bytes).collect::<Vec<u8>>());
        // Open for three times the idle time, all of it active.
        assert!(started.elapsed() >= 3 * IDLE, "{:?}", started.elapsed());
        // Then silence, and it is cut off.
        times_out(s.read(&mut buf)).await;
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        let (a, peer) = tokio::io::duplex(16);
        let mut s = Idle::new(a, IDLE);
        s.write_all(&[7; 16]).await.unwrap();
        // The buffer is full and the peer reads nothing.
        times_out(s.write_all(&[7; 16])).await;
        drop(peer);
    }
}
