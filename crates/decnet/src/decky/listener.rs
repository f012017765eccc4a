//! One service of one decky listening on its address: the accept loop,
//! the per-decky session slots, and the per-session limits that do not
//! belong to any protocol (total duration, service shutdown).
//!
//! Closing a listener cancels its accept loop, which drops the socket, so
//! the port refuses connections as soon as [`ServiceListener::close`]
//! returns; sessions still open on it are ended with reason `service closed`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::event::{self, Session, SharedSession};
use super::io::{End, Metered};
use super::DeckyContext;

/// A service's session handler.
pub type Serve = fn(SharedSession, Metered<TcpStream>) -> Pin<Box<dyn Future<Output = End> + Send>>;

/// The handler of a natively served service.
pub fn handler(service: &str) -> Option<Serve> {
    Some(match service {
        "ssh" => |s, io| Box::pin(super::ssh::serve(s, io)),
        "telnet" => |s, io| Box::pin(super::telnet::serve(s, io)),
        "http" => |s, io| Box::pin(super::http::serve(s, io)),
        "https" => |s, io| Box::pin(super::https::serve(s, io)),
        "ftp" => |s, io| Box::pin(super::ftp::serve(s, io)),
        "smtp" => |s, io| Box::pin(super::smtp::serve(s, io)),
        _ => return None,
    })
}

/// Why a listener could not be opened, naming the address and the cause.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {service}: {source}{hint}")]
pub struct BindError {
    pub service: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
    pub hint: &'static str,
}

/// Bind a listening socket. SO_REUSEADDR so a port closed by a mutation
/// can be reopened at once despite TIME_WAIT connections.
pub fn bind(service: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let fail = |source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE; see --native-port-offset)"
            }
            std::io::ErrorKind::AddrInUse => " (another process listens there)",
            std::io::ErrorKind::AddrNotAvailable => " (the address is not on this host)",
            _ => "",
        };
        BindError { service: service.to_string(), addr, source, hint }
    };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(256).map_err(fail)
}

/// Connections turned away because the decky had no free session slot.
pub static REFUSED_BUSY: AtomicU64 = AtomicU64::new(0);

pub struct ServiceListener {
    pub service: String,
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceListener {
    /// Bind `service` on `addr` and start accepting.
    pub fn open(ctx: Arc<DeckyContext>, service: &str, addr: SocketAddr) -> Result<ServiceListener, BindError> {
        let serve = handler(service).ok_or_else(|| BindError {
            service: service.to_string(),
            addr,
            source: std::io::Error::other("no native honeypot for this service"),
            hint: "",
        })?;
        if service == "https" {
            // The certificate is made before the port opens, so a failure
            // is a clear open error, never a session that cannot serve.
            ctx.tls_config().map_err(|e| BindError {
                service: service.to_string(),
                addr,
                source: std::io::Error::other(e),
                hint: "",
            })?;
        }
        let listener = bind(service, addr)?;
        let addr = listener.local_addr().unwrap_or(addr);
        let stop = CancellationToken::new();
        let name: &'static str =
            super::NATIVE_SERVICES.iter().find(|(s, _)| *s == service).map(|(s, _)| *s).unwrap_or("unknown");
        let task = tokio::spawn(accept_loop(ctx, name, listener, serve, stop.clone()));
        Ok(ServiceListener { service: service.to_string(), addr, stop, task })
    }

    /// Stop accepting (the port refuses from now on) and end its sessions.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    ctx: Arc<DeckyContext>,
    service: &'static str,
    listener: TcpListener,
    serve: Serve,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(decky = %ctx.name, service, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = ctx.slots.clone().try_acquire_owned() else {
            let n = REFUSED_BUSY.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(decky = %ctx.name, service, %peer, refused = n, "decky at its session limit; connection closed");
            }
            drop(stream);
            continue;
        };
        let (ctx, stop) = (ctx.clone(), stop.child_token());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let session = Session::open(ctx.clone(), service, peer);
            let bytes = session.bytes.clone();
            let shared: SharedSession = Arc::new(std::sync::Mutex::new(session));
            let io = Metered::new(stream, bytes, ctx.limits.max_bytes);
            let reason = tokio::select! {
                _ = stop.cancelled() => "service closed".to_string(),
                _ = tokio::time::sleep(ctx.limits.max_session) => "session time limit".to_string(),
                end = serve(shared.clone(), io) => end.reason(),
            };
            event::with(&shared, |s| s.finish(&reason));
            drop(permit);
        });
    }
}
