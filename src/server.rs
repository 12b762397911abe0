//! The HTTP/1 server loop, with the limits a server on the internet needs (SPEC §8): request
//! headers must arrive within [`HttpLimits::header_timeout`], a whole request within
//! [`HttpLimits::request_timeout`], an idle keep-alive connection is closed after
//! [`HttpLimits::keepalive_timeout`], and at most [`HttpLimits::max_connections`] connections
//! are served at once (the next ones wait in the listen backlog until one closes).
//!
//! `axum::serve` runs hyper without a timer, so none of these held there. hyper's own header
//! timer also runs while a keep-alive connection waits for its next request, which would close
//! idle proxy connections after the header timeout; so each connection here keeps its own small
//! state ([`Watch`]): *head* (bytes of a request are arriving, or a new connection has sent
//! nothing yet), *busy* (a request is being handled) or *idle* (between requests). The IO
//! wrapper moves idle → head on the first byte of a request; the service moves head → busy and
//! busy → idle. One timer per connection closes it when its phase has lasted too long; it looks at
//! least once per header timeout, so phase changes need not wake it (nothing per request but two
//! atomic stores). A request that overruns its time is answered `408 request_timeout` with
//! `Connection: close`.

use crate::error::ApiError;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;

/// How long a stopping server lets in-flight requests finish.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What one client may hold of the server (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a connection's first byte of a request (or from its accept) to the end of the headers.
    pub header_timeout: Duration,
    /// From the first byte of a request to the end of its response's handling.
    pub request_timeout: Duration,
    /// How long a connection may wait, idle, for its next request.
    pub keepalive_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

/// Serves `router` on `listener` until `stop` is cancelled; in-flight requests then get up to
/// [`DRAIN`] to finish. Used for the API and for the simulator.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    limits: HttpLimits,
) -> io::Result<()> {
    // A trailing slash is accepted on every route, as Django clients send `login/`.
    let service = NormalizePathLayer::trim_trailing_slash().layer(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::error!(error = %e, "accept failed; retrying in 1s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = stop.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            crate::metrics::connections_open(1.0);
            connection(stream, peer, service, limits, stop).await;
            crate::metrics::connections_open(-1.0);
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

type Service = tower_http::normalize_path::NormalizePath<Router>;

/// On a request whose path ended in `/` before the slash was trimmed: for a page that must know
/// where it is for its relative links (the admin console at `/admin/`).
#[derive(Debug, Clone, Copy)]
pub struct TrailingSlash;

/// Serves one connection until the client closes it, a limit closes it, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: Service,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: watch.clone(),
    });
    let handler = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let path = req.uri().path();
            if path.len() > 1 && path.ends_with('/') {
                req.extensions_mut().insert(TrailingSlash);
            }
            let deadline = later(watch.request_started(), limits.request_timeout);
            let reply = service.clone().oneshot(req);
            let watch = watch.clone();
            async move {
                let reply = tokio::time::timeout_at(deadline, reply).await;
                watch.set(Phase::Idle);
                Ok::<_, Infallible>(match reply {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        crate::metrics::request_timed_out();
                        let mut response = ApiError::RequestTimeout.into_response();
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        response
                    }
                })
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, handler);
    tokio::pin!(conn);
    // The timer looks at least this often, so a phase that began since it was armed (a request
    // arriving on an idle connection) is timed exactly without waking it on every request.
    let tick = limits.header_timeout.min(limits.keepalive_timeout);
    let mut draining = false;
    loop {
        let deadline = watch.deadline(&limits).min(later(Instant::now(), tick));
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if watch.expired(&limits) {
                    // Dropping the connection closes the socket.
                    tracing::debug!(%peer, "closing a slow or idle connection");
                    crate::metrics::connection_timed_out();
                    return;
                }
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// `t + d`, or a year after `t` when a configured timeout is too large to add.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(365 * 86400)))
        .unwrap_or(t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Head = 0,
    Busy = 1,
    Idle = 2,
}

/// A connection's phase and since when it has been in it.
struct Watch {
    born: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Watch {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            // A new connection owes its first request's headers.
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }

    fn since(&self) -> Instant {
        self.born + Duration::from_millis(self.since_ms.load(Ordering::Acquire))
    }

    fn set(&self, phase: Phase) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.since_ms.store(ms, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// A request's headers are in: it is being handled from now. Returns when it began.
    fn request_started(&self) -> Instant {
        let began = match self.phase() {
            Phase::Head => self.since(),
            // Its bytes came in the same read as the previous request's.
            Phase::Busy | Phase::Idle => Instant::now(),
        };
        self.set(Phase::Busy);
        began
    }

    /// Bytes arrived: if the connection was idle, a request has begun.
    fn bytes_arrived(&self) {
        if self.phase() == Phase::Idle {
            self.set(Phase::Head);
        }
    }

    /// When the current phase runs out (a busy request is timed by the service; the timer
    /// only looks again later).
    fn deadline(&self, limits: &HttpLimits) -> Instant {
        let since = self.since();
        match self.phase() {
            Phase::Head => later(since, limits.header_timeout),
            Phase::Busy => later(
                since,
                limits
                    .request_timeout
                    .saturating_add(limits.keepalive_timeout),
            ),
            Phase::Idle => later(since, limits.keepalive_timeout),
        }
    }

    fn expired(&self, limits: &HttpLimits) -> bool {
        let now = Instant::now();
        match self.phase() {
            Phase::Busy => false,
            Phase::Head | Phase::Idle => now >= self.deadline(limits),
        }
    }
}

/// The socket, telling its [`Watch`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
