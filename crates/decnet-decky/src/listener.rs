//! One service of one decky listening on its address: the accept loop,
//! the per-decky session slots, and the per-session limits that do not
//! belong to any protocol (total duration, service shutdown). A service
//! served over UDP gets a UDP socket on the same port, served by
//! [`crate::udp`]'s receive loop; one [`ServiceListener`] holds every
//! transport of its service and closes them together.
//!
//! Slots are shared per source address: one address holds at most
//! [`crate::Limits::max_sessions_per_source`] of a decky's sessions, so a
//! slow client opening connection after connection cannot take every slot
//! and leave other attackers refused and unseen. A refused connection is
//! logged as a `connection_refused` line (reason `decky busy` or `source
//! limit`), at most once per [`REFUSED_LOG_EVERY`] per address; the ones
//! in between are counted in the next line's `refused_unlogged`.
//!
//! Closing a listener cancels its accept loop, which drops the socket, so
//! the port refuses connections as soon as [`ServiceListener::close`]
//! returns; sessions still open on it are ended with reason `service closed`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::Path;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::event::{self, Session, SharedSession};
use crate::io::Metered;
use crate::services::{self, Protocol, Transport};
use crate::DeckyContext;

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

/// The error for a socket of `service` that could not be made at `addr`.
fn bind_error(service: &str, addr: SocketAddr, source: std::io::Error) -> BindError {
    let hint = match source.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; see --native-port-offset)"
        }
        std::io::ErrorKind::AddrInUse => " (another process listens there)",
        std::io::ErrorKind::AddrNotAvailable => " (the address is not on this host)",
        _ if source.raw_os_error() == Some(libc::EMFILE) => {
            " (out of file descriptors: raise the open-file limit, LimitNOFILE in the unit or `ulimit -n`)"
        }
        _ => "",
    };
    BindError { service: service.to_string(), addr, source, hint }
}

/// Bind a listening socket, inside the network namespace `netns` when
/// given (see [`crate::netns`]). SO_REUSEADDR so a port closed by a
/// mutation can be reopened at once despite TIME_WAIT connections.
pub fn bind(service: &str, addr: SocketAddr, netns: Option<&Path>) -> Result<TcpListener, BindError> {
    let std_listener = crate::netns::run_in(netns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(256)?;
        Ok(std::net::TcpListener::from(socket))
    })
    .map_err(|e| bind_error(service, addr, e))?;
    TcpListener::from_std(std_listener).map_err(|e| bind_error(service, addr, e))
}

/// Bind a UDP socket, inside `netns` when given, as [`bind`] does for TCP.
pub fn bind_udp(service: &str, addr: SocketAddr, netns: Option<&Path>) -> Result<UdpSocket, BindError> {
    let std_socket = crate::netns::run_in(netns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        Ok(std::net::UdpSocket::from(socket))
    })
    .map_err(|e| bind_error(service, addr, e))?;
    UdpSocket::from_std(std_socket).map_err(|e| bind_error(service, addr, e))
}

/// Sessions given a slot (TCP connections, TFTP transfers), all deckies.
pub static SESSIONS_ADMITTED: AtomicU64 = AtomicU64::new(0);
/// Connections turned away because the decky had no free session slot.
pub static REFUSED_BUSY: AtomicU64 = AtomicU64::new(0);
/// Connections turned away because their address held its share of slots.
pub static REFUSED_SOURCE: AtomicU64 = AtomicU64::new(0);
/// Refused connections not logged as a line (rate limit, or too many
/// addresses being refused at once to remember them all).
pub static REFUSED_UNLOGGED: AtomicU64 = AtomicU64::new(0);

/// At most one `connection_refused` line per address this often.
pub const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);
/// Addresses remembered for the refusal rate limit (per decky).
const MAX_REFUSED_TRACKED: usize = 1024;

/// Per-decky bookkeeping by source address.
#[derive(Debug, Default)]
pub struct SourceSlots {
    open: HashMap<IpAddr, usize>,
    /// When a refusal from the address was last logged, and how many were
    /// refused since without a line.
    refused: HashMap<IpAddr, (Instant, u64)>,
}

impl SourceSlots {
    /// Sessions open now from `source`.
    pub fn open_from(&self, source: IpAddr) -> usize {
        self.open.get(&source).copied().unwrap_or(0)
    }

    /// Whether a refusal from `source` should be logged now, and how many
    /// went unlogged before it.
    fn refusal_to_log(&mut self, source: IpAddr, now: Instant) -> Option<u64> {
        if let Some((last, unlogged)) = self.refused.get_mut(&source) {
            if now.duration_since(*last) < REFUSED_LOG_EVERY {
                *unlogged += 1;
                return None;
            }
            let before = *unlogged;
            *last = now;
            *unlogged = 0;
            return Some(before);
        }
        if self.refused.len() >= MAX_REFUSED_TRACKED {
            self.refused.retain(|_, (last, _)| now.duration_since(*last) < REFUSED_LOG_EVERY);
            if self.refused.len() >= MAX_REFUSED_TRACKED {
                return None;
            }
        }
        self.refused.insert(source, (now, 0));
        Some(0)
    }
}

/// One session's hold on its address's share; released on drop.
struct SourceHold {
    ctx: Arc<DeckyContext>,
    source: IpAddr,
}

impl Drop for SourceHold {
    fn drop(&mut self) {
        let mut s = self.ctx.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.open.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.open.remove(&self.source);
            }
        }
    }
}

/// Take a slot for `source`: its share first, then the decky's.
fn admit(
    ctx: &Arc<DeckyContext>,
    source: IpAddr,
) -> Result<(SourceHold, tokio::sync::OwnedSemaphorePermit), &'static str> {
    {
        let mut s = ctx.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.open.entry(source).or_default();
        if *mine >= ctx.limits.max_sessions_per_source.max(1) {
            if *mine == 0 {
                s.open.remove(&source);
            }
            REFUSED_SOURCE.fetch_add(1, Ordering::Relaxed);
            return Err("source limit");
        }
        *mine += 1;
    }
    let hold = SourceHold { ctx: ctx.clone(), source };
    match ctx.slots.clone().try_acquire_owned() {
        Ok(permit) => {
            SESSIONS_ADMITTED.fetch_add(1, Ordering::Relaxed);
            Ok((hold, permit))
        }
        Err(_) => {
            REFUSED_BUSY.fetch_add(1, Ordering::Relaxed);
            Err("decky busy")
        }
    }
}

/// A session slot held by something that is not a TCP session (a TFTP
/// transfer): released on drop.
pub(crate) struct SessionSlot {
    _hold: SourceHold,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Take a session slot for `source`, as a TCP connection would; the
/// refusal's reason otherwise.
pub(crate) fn take_slot(ctx: &Arc<DeckyContext>, source: IpAddr) -> Result<SessionSlot, &'static str> {
    admit(ctx, source).map(|(hold, permit)| SessionSlot { _hold: hold, _permit: permit })
}

/// Log a refused connection (or datagram), rate-limited per address.
pub(crate) fn refused(ctx: &DeckyContext, service: &str, peer: SocketAddr, reason: &str) {
    let before = {
        let mut s = ctx.sources.lock().unwrap_or_else(|e| e.into_inner());
        s.refusal_to_log(peer.ip().to_canonical(), Instant::now())
    };
    match before {
        Some(unlogged) => event::connection_refused(ctx, service, peer, reason, unlogged),
        None => {
            let n = REFUSED_UNLOGGED.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(decky = %ctx.name, service, %peer, reason, unlogged = n, "connections refused (rate-limited lines)");
            }
        }
    }
}

pub struct ServiceListener {
    pub service: String,
    pub addr: SocketAddr,
    /// Where each of the service's [`Protocol::companions`] listens, by
    /// the companion's protocol name (conpot's `s7comm`), in their order.
    pub companions: Vec<(&'static str, SocketAddr)>,
    ctx: Arc<DeckyContext>,
    stop: CancellationToken,
    /// One task per transport and port (a TCP accept loop, a UDP receive loop).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Its TCP ports served from shared sockets instead (see
    /// [`crate::shared_port`]).
    routes: Vec<crate::shared_port::Routed>,
}

/// Where `companion` of `protocol` listens when `protocol` listens at
/// `addr`: any free port when the caller asked for any (port 0),
/// otherwise its well-known port moved by the same offset as the
/// service's own (`--native-port-offset 10000`: Modbus on 10502, S7comm
/// on 10102).
fn companion_addr(protocol: &dyn Protocol, companion: &dyn Protocol, addr: SocketAddr) -> Option<SocketAddr> {
    if addr.port() == 0 {
        return Some(addr);
    }
    let shifted = i32::from(companion.default_port()) + i32::from(addr.port()) - i32::from(protocol.default_port());
    u16::try_from(shifted).ok().filter(|p| *p != 0).map(|p| SocketAddr::new(addr.ip(), p))
}

impl ServiceListener {
    /// Bind `service` on `addr` and start accepting.
    pub fn open(ctx: Arc<DeckyContext>, service: &str, addr: SocketAddr) -> Result<ServiceListener, BindError> {
        Self::open_in(ctx, service, addr, None)
    }

    /// As [`ServiceListener::open`], with the socket made inside the
    /// network namespace `netns` (the decky's own, on a real LAN).
    pub fn open_in(
        ctx: Arc<DeckyContext>,
        service: &str,
        addr: SocketAddr,
        netns: Option<&Path>,
    ) -> Result<ServiceListener, BindError> {
        Self::open_with(ctx, service, addr, netns, None)
    }

    /// As [`ServiceListener::open`], with its TCP ports served from the
    /// process's shared sockets ([`crate::shared_port`]) when `addr` is a
    /// loopback address with a fixed port; UDP ports keep sockets of their own.
    pub fn open_shared(
        ctx: Arc<DeckyContext>,
        service: &str,
        addr: SocketAddr,
        shared: &crate::shared_port::SharedPorts,
    ) -> Result<ServiceListener, BindError> {
        let shared = crate::shared_port::SharedPorts::fits(addr).then_some(shared);
        Self::open_with(ctx, service, addr, None, shared)
    }

    fn open_with(
        ctx: Arc<DeckyContext>,
        service: &str,
        addr: SocketAddr,
        netns: Option<&Path>,
        shared: Option<&crate::shared_port::SharedPorts>,
    ) -> Result<ServiceListener, BindError> {
        let fail = |addr: SocketAddr, source: std::io::Error| BindError {
            service: service.to_string(),
            addr,
            source,
            hint: "",
        };
        let protocol = services::protocol(service)
            .ok_or_else(|| fail(addr, std::io::Error::other("no native honeypot for this service")))?;
        protocol.prepare(&ctx).map_err(|e| fail(addr, std::io::Error::other(e)))?;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut routes = Vec::new();
        let mut primary = addr;
        let mut companions = Vec::new();
        let speakers = std::iter::once(protocol).chain(protocol.companions().iter().copied());
        let opened = (|| {
            for (i, speaker) in speakers.enumerate() {
                let mut bound = if i == 0 {
                    addr
                } else {
                    companion_addr(protocol, speaker, addr).ok_or_else(|| {
                        fail(addr, std::io::Error::other(format!("{} has no port at this offset", speaker.name())))
                    })?
                };
                for transport in speaker.transports() {
                    if let (Transport::Tcp, Some(shared)) = (transport, shared) {
                        let route = crate::shared_port::Route {
                            ctx: ctx.clone(),
                            service: protocol.name(),
                            protocol: speaker,
                            stop: stop.clone(),
                        };
                        routes.push(shared.route(bound, route).map_err(|e| bind_error(service, bound, e))?);
                        continue;
                    }
                    // Every transport on the same port: the first one bound
                    // fixes it when the caller asked for any (port 0).
                    tasks.push(match transport {
                        Transport::Tcp => bind(service, bound, netns).map(|l| {
                            bound = l.local_addr().unwrap_or(bound);
                            tokio::spawn(accept_loop(ctx.clone(), protocol.name(), speaker, l, stop.clone()))
                        })?,
                        Transport::Udp => bind_udp(service, bound, netns).map(|s| {
                            bound = s.local_addr().unwrap_or(bound);
                            let netns = netns.map(Path::to_path_buf);
                            tokio::spawn(crate::udp::receive_loop(
                                ctx.clone(),
                                protocol.name(),
                                speaker,
                                s,
                                netns,
                                stop.clone(),
                            ))
                        })?,
                    });
                }
                if i == 0 {
                    primary = bound;
                } else {
                    companions.push((speaker.name(), bound));
                }
            }
            Ok(())
        })();
        if let Err(e) = opened {
            // The sockets opened so far close with their tasks.
            drop(routes);
            stop.cancel();
            for task in tasks {
                task.abort();
            }
            return Err(e);
        }
        ctx.serving.lock().unwrap_or_else(|e| e.into_inner()).insert(service.to_string(), primary.port());
        Ok(ServiceListener { service: service.to_string(), addr: primary, companions, ctx, stop, tasks, routes })
    }

    /// Stop accepting (the port refuses from now on, or on a shared port
    /// resets) and end its sessions.
    pub async fn close(self) {
        self.ctx.serving.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.service);
        drop(self.routes);
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Accept connections for `protocol`, recording its sessions as
/// `service`'s (its own name, or the service it is a companion of).
async fn accept_loop(
    ctx: Arc<DeckyContext>,
    service: &'static str,
    protocol: &'static dyn Protocol,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let on = format!("{} {service}", ctx.name);
    while let Some((stream, peer)) = next_connection(&listener, &stop, &on).await {
        serve_connection(&ctx, service, protocol, stream, peer, &stop);
    }
}

/// The next connection accepted on `listener`; `None` once `stop` is
/// cancelled. A failed accept (out of descriptors and the like) is logged,
/// naming the listener `on`, and retried after 100 ms instead of spinning.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    stop: &CancellationToken,
    on: &str,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(a) => return Some(a),
            // A shared port's socket is shut down just after its stop.
            Err(_) if stop.is_cancelled() => return None,
            Err(e) => {
                tracing::warn!(listener = on, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Give an accepted connection a session slot and serve it on a task of
/// its own, or refuse it (logged, rate-limited) when the decky or the
/// source has no slot left. `stop` ends the session with `service closed`.
pub(crate) fn serve_connection(
    ctx: &Arc<DeckyContext>,
    service: &'static str,
    protocol: &'static dyn Protocol,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: &CancellationToken,
) {
    let (hold, permit) = match admit(ctx, peer.ip().to_canonical()) {
        Ok(a) => a,
        Err(reason) => {
            drop(stream);
            refused(ctx, service, peer, reason);
            return;
        }
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
            end = protocol.serve(shared.clone(), io) => end.reason(),
        };
        // The slot is free before the session's last lines go out, so
        // whoever saw its `disconnect` can connect again at once.
        drop(permit);
        drop(hold);
        event::with(&shared, |s| s.finish(&reason));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_window_per_address() {
        let mut s = SourceSlots::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(s.refusal_to_log(a, t0), Some(0));
        assert_eq!(s.refusal_to_log(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(s.refusal_to_log(a, t0 + Duration::from_secs(2)), None);
        // Another address has its own window.
        assert_eq!(s.refusal_to_log(b, t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(s.refusal_to_log(a, t0 + REFUSED_LOG_EVERY), Some(2));
    }

    #[tokio::test]
    async fn a_transport_that_cannot_bind_fails_the_service_and_closes_the_others() {
        // dns is UDP then TCP on one port: take the TCP side first.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let sink =
            crate::sink::LineSink::start("127.0.0.1:9".parse::<SocketAddr>().unwrap(), 1024, CancellationToken::new());
        let persona = crate::Persona::derive("bind-01", None, None, 1_764_000_000);
        let ctx = DeckyContext::new("bind-01", persona, sink, crate::Limits::default(), b"seed");
        let err = ServiceListener::open(ctx, "dns", addr).err().expect("the TCP side is taken");
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        // The UDP socket it had opened is closed again.
        let mut freed = false;
        for _ in 0..50 {
            if std::net::UdpSocket::bind(addr).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(freed, "the UDP side of {addr} stayed bound");
    }

    #[test]
    fn a_companion_port_moves_with_its_service() {
        let (conpot, s7) =
            (services::protocol("conpot").unwrap(), services::protocol("conpot").unwrap().companions()[0]);
        let at = |port: u16| SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        assert_eq!(companion_addr(conpot, s7, at(502)), Some(at(102)));
        assert_eq!(companion_addr(conpot, s7, at(10502)), Some(at(10102)), "--native-port-offset 10000");
        assert_eq!(companion_addr(conpot, s7, at(0)), Some(at(0)), "any port for any port");
        assert_eq!(crate::default_ports("conpot"), [502, 102], "what `decnet up` shows");
        assert_eq!(crate::default_ports("ssh"), [22]);
        assert!(crate::default_ports("gopher").is_empty());
        assert_eq!(companion_addr(conpot, s7, at(300)), None, "an offset of -202 puts 102 below zero");
    }

    #[tokio::test]
    async fn a_service_opens_its_companions_and_the_decky_knows_what_it_serves() {
        let sink =
            crate::sink::LineSink::start("127.0.0.1:9".parse::<SocketAddr>().unwrap(), 1024, CancellationToken::new());
        let persona = crate::Persona::derive("plc-02", None, None, 1_764_000_000);
        let ctx = DeckyContext::new("plc-02", persona, sink, crate::Limits::default(), b"seed");
        let l = ServiceListener::open(ctx.clone(), "conpot", "127.0.0.1:0".parse().unwrap()).unwrap();
        let [(name, s7)] = l.companions[..] else { panic!("{:?}", l.companions) };
        assert_eq!(name, "s7comm");
        assert_ne!(s7.port(), l.addr.port());
        assert!(tokio::net::TcpStream::connect(s7).await.is_ok(), "S7comm accepts");
        assert_eq!(ctx.serving.lock().unwrap().get("conpot"), Some(&l.addr.port()));
        l.close().await;
        assert!(ctx.serving.lock().unwrap().is_empty());
        assert!(tokio::net::TcpStream::connect(s7).await.is_err(), "the companion closes with its service");
    }

    #[test]
    fn the_refusal_memory_is_bounded() {
        let mut s = SourceSlots::default();
        let t0 = Instant::now();
        for i in 0..MAX_REFUSED_TRACKED as u32 {
            assert_eq!(s.refusal_to_log(IpAddr::from(i.to_be_bytes()), t0), Some(0));
        }
        // Full of fresh entries: a new address is refused without a line.
        assert_eq!(s.refusal_to_log("192.0.2.1".parse().unwrap(), t0), None);
        assert_eq!(s.refused.len(), MAX_REFUSED_TRACKED);
        // Once they are stale, they make room.
        assert_eq!(s.refusal_to_log("192.0.2.1".parse().unwrap(), t0 + REFUSED_LOG_EVERY), Some(0));
        assert_eq!(s.refused.len(), 1);
    }
}
