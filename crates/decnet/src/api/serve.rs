//! The API's accept loop: hyper's HTTP/1 server driven by hand instead of
//! `axum::serve`, for the two limits `axum::serve` cannot set.
//!
//! - A header-read timeout: a connection that does not deliver a complete
//!   request head within [`ApiLimits::header_read_timeout`] of connecting
//!   (or of its previous response, for keep-alive) is closed. Without it,
//!   idle or slow-loris connections are held forever, each costing a task
//!   and a file descriptor.
//! - A connection limit: at most [`ApiLimits::max_connections`] are served
//!   at once; one beyond gets a fixed `503` and is closed, so the process
//!   never runs into its file-descriptor limit (where `accept` itself fails
//!   and even healthy clients are turned away).
//!
//! Each request also carries the peer address (`ConnectInfo`), which the
//! login throttle keys on. Accept errors (EMFILE, ENFILE...) back off
//! instead of spinning, and their log lines are rate-limited.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::ApiLimits;

/// Longest shutdown waits for open connections after asking them to close.
const DRAIN: Duration = Duration::from_secs(10);
/// At most one "connection refused" / "accept failed" line per this period.
const LOG_EVERY: Duration = Duration::from_secs(10);
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 55\r\nconnection: close\r\n\r\n{\"error\":\"too many open connections; try again later\"}\n";

/// Counts events and says so at most once per [`LOG_EVERY`].
struct Quiet {
    last: Option<Instant>,
    suppressed: u64,
}

impl Quiet {
    fn new() -> Self {
        Quiet { last: None, suppressed: 0 }
    }

    /// `Some(n)` when a line should be logged now, `n` being how many
    /// events were swallowed since the last one.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Serve `app` on `listener` until `stop` is cancelled, then let open
/// connections finish (bounded by [`DRAIN`]).
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Arc<ApiLimits>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut refused = Quiet::new();
    let mut accept_errors = Quiet::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff = Duration::from_millis(10);
                    pair
                }
                Err(e) => {
                    // Per-connection errors (the peer already gone) are not
                    // worth a pause; resource exhaustion is, or the loop spins.
                    if let Some(skipped) = accept_errors.tick() {
                        tracing::warn!(error = %e, skipped, "API accept failed; backing off");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(skipped) = refused.tick() {
                tracing::warn!(%peer, limit = limits.max_connections, skipped, "API connection limit reached; refusing");
            }
            tracker.spawn(refuse(stream));
            continue;
        };
        let app = app.clone();
        let stop = stop.clone();
        let timeout = limits.header_read_timeout;
        tracker.spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, app, timeout, stop).await;
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("API connections still open after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}

/// Tell the client why, without waiting on it: a peer that never reads
/// must not hold this task.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(BUSY)).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeout: Duration,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        // Router is always ready, so `call` without `poll_ready` is fine.
        async move { tower::Service::call(&mut app, req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => log_end(peer, result),
        _ = stop.cancelled() => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            log_end(peer, conn.await);
        }
    }
}

fn log_end(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Timeouts and resets are the client's business; debug only.
        tracing::debug!(%peer, error = %e, "API connection ended with an error");
    }
}
