//! One listening socket per port, shared by every loopback decky on it.
//!
//! A decky on a loopback address of its own does not need a socket of its
//! own: an accepted connection knows the address it was made to
//! (`getsockname`), and that names the decky. So a fleet of 10,000
//! ssh + http deckies listens on 2 descriptors instead of 20,000, which
//! decides whether it fits a host's open-file limit at all.
//!
//! Only for loopback addresses outside any namespace: the socket is bound
//! to the wildcard address *on the `lo` device* (SO_BINDTODEVICE), so
//! nothing from another host can reach it. It cannot sit beside a decky's
//! own socket on the same port (the wildcard bind conflicts), which is why
//! the driver moves every loopback decky over when sharing begins.
//! The price, and the reason this is not the default: on a shared port an
//! address where no decky serves that port completes the TCP handshake
//! and is reset at once, where a socket of its own would refuse the SYN
//! (`nmap -sT` sees it open, then closed). Deckies on a LAN, each in its
//! namespace, always have their own sockets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::services::Protocol;
use crate::DeckyContext;

/// Connections to a shared port at an address no decky serves it on
/// (reset at once), all ports.
pub static UNROUTED: AtomicU64 = AtomicU64::new(0);

/// Who answers connections made to one address on a shared port.
#[derive(Clone)]
pub(crate) struct Route {
    pub ctx: Arc<DeckyContext>,
    /// The service the sessions are recorded as.
    pub service: &'static str,
    /// What speaks on this port (the service, or one of its companions).
    pub protocol: &'static dyn Protocol,
    /// Cancelled when the decky's service closes; its sessions end with it.
    pub stop: CancellationToken,
}

type Routes = Arc<RwLock<HashMap<IpAddr, Route>>>;

/// One shared listening socket; it stops listening when the last
/// [`Routed`] holding it is dropped.
struct Port {
    routes: Routes,
    listener: Arc<TcpListener>,
    stop: CancellationToken,
}

impl Drop for Port {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket stops it listening now, so new
        // SYNs are refused before the accept task drops its handle. The
        // cancel comes first, so that task takes the error shutdown wakes
        // it with for the end it is, not a fault.
        self.stop.cancel();
        // SAFETY: the descriptor is open (`self.listener` owns it).
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// A decky's address routed on a shared port; dropping it takes the route
/// away (and closes the port when it was the last).
pub struct Routed {
    port: Arc<Port>,
    ip: IpAddr,
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.port.routes.write().unwrap_or_else(|e| e.into_inner()).remove(&self.ip);
    }
}

/// The shared ports of one process, by wildcard address and port.
#[derive(Default)]
pub struct SharedPorts {
    ports: std::sync::Mutex<HashMap<SocketAddr, Weak<Port>>>,
}

impl SharedPorts {
    pub fn new() -> Arc<SharedPorts> {
        Arc::new(SharedPorts::default())
    }

    /// Whether `addr` may be served from a shared port: a loopback address
    /// (outside any namespace: the caller's to know) and a fixed port.
    pub fn fits(addr: SocketAddr) -> bool {
        addr.ip().is_loopback() && addr.port() != 0
    }

    /// Shared ports listening now (descriptors this process spends on them).
    pub fn listening(&self) -> usize {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|p| p.strong_count() > 0).count()
    }

    /// Route connections made to `addr` to `route`, opening the port's
    /// shared socket if it is not open yet. Fails when the socket cannot be
    /// bound (the port held by another process) or `addr` is taken.
    pub(crate) fn route(&self, addr: SocketAddr, route: Route) -> std::io::Result<Routed> {
        let wildcard = match addr.ip() {
            IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), addr.port()),
        };
        let ip = addr.ip().to_canonical();
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let port = match ports.get(&wildcard).and_then(Weak::upgrade) {
            Some(p) => p,
            None => {
                let listener = Arc::new(bind_shared(wildcard)?);
                let (routes, stop) = (Routes::default(), CancellationToken::new());
                tokio::spawn(accept_loop(listener.clone(), routes.clone(), stop.clone()));
                let port = Arc::new(Port { routes, listener, stop });
                ports.insert(wildcard, Arc::downgrade(&port));
                port
            }
        };
        ports.retain(|_, p| p.strong_count() > 0);
        drop(ports);
        let mut routes = port.routes.write().unwrap_or_else(|e| e.into_inner());
        if routes.contains_key(&ip) {
            return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "another decky of this process serves it"));
        }
        routes.insert(ip, route);
        drop(routes);
        Ok(Routed { port, ip })
    }
}

/// The wildcard socket on `lo` (see the module's comment).
fn bind_shared(wildcard: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(wildcard), Type::STREAM, Some(Protocol::TCP))?;
    if wildcard.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // SO_REUSEADDR lets a port whose last decky just closed be bound again
    // while the old accept task still holds its shut-down socket.
    socket.set_reuse_address(true)?;
    // Unprivileged since Linux 5.7 for a socket not yet bound to a device.
    socket.bind_device(Some(b"lo"))?;
    socket.set_nonblocking(true)?;
    socket.bind(&wildcard.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(std::net::TcpListener::from(socket))
}

async fn accept_loop(listener: Arc<TcpListener>, routes: Routes, stop: CancellationToken) {
    let on = listener.local_addr().map_or_else(|_| "a shared port".to_string(), |a| format!("shared {a}"));
    while let Some((stream, peer)) = crate::listener::next_connection(&listener, &stop, &on).await {
        let to = stream.local_addr().map(|a| a.ip().to_canonical());
        let route = to.ok().and_then(|ip| routes.read().unwrap_or_else(|e| e.into_inner()).get(&ip).cloned());
        match route {
            Some(r) => crate::listener::serve_connection(&r.ctx, r.service, r.protocol, stream, peer, &r.stop),
            None => {
                // A reset, as close to a refused SYN as an accepted
                // connection gets; not logged (anyone local can cause it).
                UNROUTED.fetch_add(1, Ordering::Relaxed);
                let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            }
        }
    }
}
