//! UDP services: one port's receive loop, the reply bound, and the lines
//! a datagram makes.
//!
//! A datagram is not a session. There is no `connect`, `disconnect` or
//! `session_recorded` around it and no `sid`: each datagram a protocol
//! finds worth recording gives at most [`LINES_PER_DATAGRAM`] lines
//! (`request`, `command`, `login_attempt`) with `src_ip`, `src_port` and
//! `transport="udp"`. What bounds an attacker instead of a session's
//! budgets is the per-source rate ([`crate::datagram_rate`]): datagrams and
//! bytes per second per source address, and for the decky as a whole.
//!
//! Replies are never larger than [`REPLY_FACTOR`] times the request, so a
//! decky cannot be used to amplify a spoofed flood; a protocol that could
//! say more cuts its answer to [`Datagram::max_reply`] itself (DNS sets TC,
//! SNMP's GETBULK returns fewer rows), and the loop drops anything larger.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::datagram_rate::Verdict;
use crate::event::MAX_COMMAND_CHARS;
use crate::rfc5424::{format_event, RelayEvent, Severity};
use crate::services::Protocol;
use crate::DeckyContext;

/// The largest reply, as a multiple of the request's size.
pub const REPLY_FACTOR: usize = 4;
/// Lines one datagram may produce; more are dropped (and counted).
pub const LINES_PER_DATAGRAM: usize = 4;
/// The largest datagram read; anything longer is cut by the kernel and
/// seen truncated, which every parser treats as garbage.
pub const MAX_DATAGRAM: usize = 65_535;

/// Datagrams dropped by the per-source or per-decky rate.
pub static DATAGRAMS_REFUSED: AtomicU64 = AtomicU64::new(0);
/// Replies a protocol made larger than the bound (dropped, never sent).
pub static REPLIES_OVERSIZE: AtomicU64 = AtomicU64::new(0);
/// Lines beyond [`LINES_PER_DATAGRAM`] not written.
pub static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// One datagram as a protocol sees it, and its way to log.
pub struct Datagram<'a> {
    pub ctx: &'a Arc<DeckyContext>,
    pub service: &'static str,
    pub peer: SocketAddr,
    /// The address the datagram came in on (the decky's address and port).
    pub local: SocketAddr,
    pub payload: &'a [u8],
    /// The decky's network namespace, for protocols that open another
    /// socket for a transfer (TFTP answers from a new port).
    pub netns: Option<&'a Path>,
    log: DatagramLog,
}

impl<'a> Datagram<'a> {
    pub fn new(
        ctx: &'a Arc<DeckyContext>,
        service: &'static str,
        peer: SocketAddr,
        local: SocketAddr,
        payload: &'a [u8],
        netns: Option<&'a Path>,
    ) -> Self {
        let log = DatagramLog::new(ctx.clone(), service, peer);
        Datagram { ctx, service, peer, local, payload, netns, log }
    }

    /// The most bytes a reply to this datagram may have.
    pub fn max_reply(&self) -> usize {
        self.payload.len() * REPLY_FACTOR
    }

    /// A log for what follows from this datagram later (a TFTP transfer),
    /// with its own [`LINES_PER_DATAGRAM`].
    pub fn detached_log(&self) -> DatagramLog {
        DatagramLog::new(self.ctx.clone(), self.service, self.peer)
    }
}

impl std::ops::Deref for Datagram<'_> {
    type Target = DatagramLog;
    fn deref(&self) -> &DatagramLog {
        &self.log
    }
}

impl std::ops::DerefMut for Datagram<'_> {
    fn deref_mut(&mut self) -> &mut DatagramLog {
        &mut self.log
    }
}

/// The lines of one datagram (or of what it started), at most
/// [`LINES_PER_DATAGRAM`].
pub struct DatagramLog {
    ctx: Arc<DeckyContext>,
    service: &'static str,
    peer: SocketAddr,
    lines: usize,
}

impl DatagramLog {
    pub fn new(ctx: Arc<DeckyContext>, service: &'static str, peer: SocketAddr) -> Self {
        DatagramLog { ctx, service, peer, lines: 0 }
    }

    /// The decky the datagram came to.
    pub fn context(&self) -> &Arc<DeckyContext> {
        &self.ctx
    }

    /// Lines written so far.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Emit one line (within [`LINES_PER_DATAGRAM`]).
    pub fn emit(&mut self, msgid: &str, severity: Severity, extra: Vec<(&str, String)>, msg: String) {
        if self.lines >= LINES_PER_DATAGRAM {
            LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.lines += 1;
        self.ctx.sink.push(datagram_line(&self.ctx, self.service, self.peer, msgid, severity, extra, Some(msg)));
    }

    /// A `request` line: what the datagram asked, in protocol terms
    /// (`name`, `qtype`, … as the protocol's fields).
    pub fn request(&mut self, fields: Vec<(&str, String)>, msg: String) {
        self.emit("request", Severity::Notice, fields, msg);
    }

    /// A `command` line, cut like a session's commands.
    pub fn command(&mut self, command: &str) {
        let command: String = command.chars().take(MAX_COMMAND_CHARS).collect();
        self.emit("command", Severity::Warning, vec![("command", command.clone())], format!("CMD {command}"));
    }

    /// A credential in clear: `username`, `secret_b64`, `auth_method`.
    pub fn login_attempt(&mut self, username: &str, secret: &[u8], method: &str, extra: Vec<(&str, String)>) {
        let mut fields = vec![
            ("username", username.to_string()),
            ("secret_b64", base64::engine::general_purpose::STANDARD.encode(secret)),
            ("auth_method", method.to_string()),
        ];
        fields.extend(extra);
        self.emit("login_attempt", Severity::Notice, fields, format!("{method} login attempt for {username}"));
    }

    /// A challenge/response credential: `username`, `hash` (crackable
    /// line), `hash_type`.
    pub fn login_hash(&mut self, username: &str, hash: &str, hash_type: &str, extra: Vec<(&str, String)>) {
        let mut fields = vec![
            ("username", username.to_string()),
            ("hash", hash.to_string()),
            ("hash_type", hash_type.to_string()),
            ("auth_method", hash_type.to_string()),
        ];
        fields.extend(extra);
        self.emit("login_attempt", Severity::Notice, fields, format!("{hash_type} login attempt for {username}"));
    }
}

/// A line about one datagram: HOST/APP as a session's, `src_ip`,
/// `src_port`, `transport="udp"`, no `sid`.
fn datagram_line(
    ctx: &DeckyContext,
    service: &str,
    peer: SocketAddr,
    msgid: &str,
    severity: Severity,
    extra: Vec<(&str, String)>,
    msg: Option<String>,
) -> String {
    let mut params = vec![
        ("src_ip".to_string(), peer.ip().to_canonical().to_string()),
        ("src_port".to_string(), peer.port().to_string()),
        ("transport".to_string(), "udp".to_string()),
    ];
    params.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity,
        host: ctx.name.clone(),
        app: service.to_string(),
        msgid: msgid.to_string(),
        params,
        msg,
    })
}

/// Serve `protocol` on `socket` until `stop`: each datagram is admitted by
/// the decky's per-source rate, handed to the protocol, and its reply (if
/// any, and within the bound) sent back to where it came from. Lines are
/// `service`'s (the protocol's own name, or the service it is a companion of).
pub(crate) async fn receive_loop(
    ctx: Arc<DeckyContext>,
    service: &'static str,
    protocol: &'static dyn Protocol,
    socket: UdpSocket,
    netns: Option<PathBuf>,
    stop: CancellationToken,
) {
    let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // An ICMP error for an earlier reply, or out of memory:
                // never fatal for the port.
                tracing::debug!(decky = %ctx.name, service, error = %e, "udp receive failed");
                continue;
            }
        };
        let verdict = {
            let mut rates = ctx.datagram_rates.lock().unwrap_or_else(|e| e.into_inner());
            rates.admit(peer.ip().to_canonical(), n, Instant::now())
        };
        if let Verdict::Refused(reason) = verdict {
            DATAGRAMS_REFUSED.fetch_add(1, Ordering::Relaxed);
            crate::listener::refused(&ctx, service, peer, reason);
            continue;
        }
        let reply = {
            let mut d = Datagram::new(&ctx, service, peer, local, &buf[..n], netns.as_deref());
            let reply = protocol.datagram(&mut d);
            reply.filter(|r| {
                let fits = r.len() <= d.max_reply();
                if !fits {
                    REPLIES_OVERSIZE.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(decky = %ctx.name, service, bytes = r.len(), "reply over the amplification bound dropped");
                }
                fits
            })
        };
        if let Some(reply) = reply {
            // A full socket buffer or an unreachable peer loses this reply
            // only, as it would on a real server.
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::LineSink;
    use crate::{Limits, Persona};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Echoes the request `n` times (n = the first byte) and logs six lines.
    struct Echo;

    impl Protocol for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn default_port(&self) -> u16 {
            7
        }
        fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
            for i in 0..6 {
                d.command(&format!("line {i}"));
            }
            let times = *d.payload.first()? as usize;
            Some(d.payload.repeat(times))
        }
    }

    static ECHO: Echo = Echo;

    /// A collector keeping the lines, and a context shipping to it.
    async fn context() -> (Arc<DeckyContext>, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = tokio::io::BufReader::new(stream);
            loop {
                let mut len = Vec::new();
                if reader.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                    return;
                }
                let n: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
                let mut line = vec![0u8; n];
                reader.read_exact(&mut line).await.unwrap();
                kept.lock().unwrap().push(String::from_utf8(line).unwrap());
            }
        });
        let sink = LineSink::start(addr, 1 << 20, CancellationToken::new());
        let persona = Persona::derive("udp-01", None, None, 1_764_000_000);
        (DeckyContext::new("udp-01", persona, sink, Limits::default(), b"seed"), lines)
    }

    async fn exchange(socket: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        socket.send_to(payload, to).await.unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        match tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn replies_within_the_bound_are_sent_and_larger_ones_dropped() {
        let (ctx, lines) = context().await;
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = server.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(receive_loop(ctx, ECHO.name(), &ECHO, server, None, stop.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Four times the request: sent whole.
        let four = [4u8, 1, 2, 3];
        assert_eq!(exchange(&client, at, &four).await, Some(four.repeat(4)));
        // Five times: never sent.
        let before = REPLIES_OVERSIZE.load(Ordering::Relaxed);
        assert_eq!(exchange(&client, at, &[5u8, 1, 2, 3]).await, None);
        assert!(REPLIES_OVERSIZE.load(Ordering::Relaxed) > before);
        // The port still serves.
        assert!(exchange(&client, at, &[1u8]).await.is_some());
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = lines.lock().unwrap().clone();
        // Three datagrams, four lines each at most: the other two dropped.
        assert_eq!(lines.len(), 3 * LINES_PER_DATAGRAM, "{lines:#?}");
        for line in &lines {
            let parsed = crate::rfc5424::parse_line(line).unwrap();
            let sd = parsed.element(crate::rfc5424::SD_ID).unwrap();
            assert_eq!(sd.param("transport"), Some("udp"));
            assert_eq!(sd.param("src_ip"), Some("127.0.0.1"));
            assert!(sd.param("sid").is_none(), "{line}");
            assert!(!line.contains(" connect ") && !line.contains(" disconnect "), "{line}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_stops_answering() {
        let (ctx, _) = context().await;
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = server.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(receive_loop(ctx, ECHO.name(), &ECHO, server, None, stop.clone()));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(exchange(&client, at, &[1u8]).await.is_some());
        stop.cancel();
        task.await.unwrap();
        assert_eq!(exchange(&client, at, &[1u8]).await, None);
    }
}
