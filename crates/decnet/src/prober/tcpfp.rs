//! TCP/IP stack fingerprint of an attacker's host from its SYN-ACK.
//!
//! Why a raw socket: the fields that tell stacks apart (initial TTL,
//! window, DF, the TCP options and their order) are in the SYN-ACK
//! itself, which an ordinary `connect` never shows. We send one SYN from
//! a port no socket owns, read the SYN-ACK off a raw socket, and answer
//! with RST so no half-open connection is left on the far side. Needs
//! CAP_NET_RAW; without it the probe reports [`ProbeError::NoPrivilege`]
//! and the worker skips it (one log line). IPv4 and IPv6: an IPv6 raw socket
//! hands over the TCP segment without its IP header, so the hop limit comes
//! from ancillary data (`IPV6_RECVHOPLIMIT`), and `df` is always false
//! (IPv6 has no DF bit: routers never fragment).
//!
//! The raw string is `ttl:window:df:mss:wscale:sack:ts:options`, e.g.
//! `64:65483:1:65495:7:1:1:M,S,T,N,W`; hash = first 32 hex of its sha256.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::ProbeError;

/// The SYN-ACK fields the fingerprint is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SynAck {
    pub ttl: u8,
    pub window: u16,
    pub df: bool,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack: bool,
    pub timestamps: bool,
    /// Option kinds in order: M(ss) S(ack permitted) T(imestamps) W(scale) N(op) E(nd) or the number.
    pub options: Vec<String>,
    pub seq: u32,
}

impl SynAck {
    pub fn raw_string(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        format!(
            "{}:{}:{}:{}:{}:{}:{}:{}",
            self.ttl,
            self.window,
            self.df as u8,
            opt(self.mss.map(|m| m.to_string())),
            opt(self.wscale.map(|w| w.to_string())),
            self.sack as u8,
            self.timestamps as u8,
            self.options.join(",")
        )
    }

    pub fn hash(&self) -> String {
        let d = Sha256::digest(self.raw_string().as_bytes());
        d.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// Walk TCP options; stops (without panicking) at anything malformed.
pub fn parse_options(mut opts: &[u8], out: &mut SynAck) {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => {
                out.options.push("E".into());
                break;
            }
            1 => {
                out.options.push("N".into());
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(1) else { break };
        let len = len as usize;
        if len < 2 || len > opts.len() {
            break;
        }
        let body = &opts[2..len];
        match kind {
            2 if body.len() == 2 => {
                out.mss = Some(u16::from_be_bytes([body[0], body[1]]));
                out.options.push("M".into());
            }
            3 if body.len() == 1 => {
                out.wscale = Some(body[0]);
                out.options.push("W".into());
            }
            4 => {
                out.sack = true;
                out.options.push("S".into());
            }
            8 => {
                out.timestamps = true;
                out.options.push("T".into());
            }
            k => out.options.push(k.to_string()),
        }
        opts = &opts[len..];
    }
}

/// Parse a TCP segment: `(sport, dport, flags, SynAck)` (the IP-level
/// fields of the SynAck, ttl and df, are left for the caller).
pub fn parse_tcp(tcp: &[u8]) -> Option<(u16, u16, u8, SynAck)> {
    if tcp.len() < 20 {
        return None;
    }
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let off = (tcp[12] >> 4) as usize * 4;
    let flags = tcp[13];
    let mut s = SynAck {
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ..Default::default()
    };
    if off >= 20 {
        parse_options(tcp.get(20..off.min(tcp.len())).unwrap_or_default(), &mut s);
    }
    Some((sport, dport, flags, s))
}

/// Parse an IPv4 packet carrying a TCP segment: `(src, dst, sport, dport, flags, SynAck)`.
pub fn parse_ipv4_tcp(pkt: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u16, u16, u8, SynAck)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
        return None;
    }
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    if ihl < 20 {
        return None;
    }
    let (sport, dport, flags, mut s) = parse_tcp(pkt.get(ihl..)?)?;
    s.ttl = pkt[8];
    s.df = pkt[6] & 0x40 != 0;
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    Some((src, dst, sport, dport, flags, s))
}

/// The TCP checksum over the pseudo-header of `src`/`dst` (RFC 793 for
/// IPv4, RFC 8200 §8.1 for IPv6) and the segment.
fn checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
            add(&[0, 6]);
            add(&(segment.len() as u16).to_be_bytes());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            add(&v6(s).octets());
            add(&v6(d).octets());
            add(&(segment.len() as u32).to_be_bytes());
            add(&[0, 0, 0, 6]);
        }
    }
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP segment with `flags`; SYNs carry the options a modern Linux sends.
fn segment(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let syn = flags & 0x02 != 0;
    let opts: &[u8] = if syn { &[2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 1, 1, 1, 0] } else { &[] };
    // pad options to a multiple of 4
    let mut options = opts.to_vec();
    while !options.len().is_multiple_of(4) {
        options.push(0);
    }
    let mut t = Vec::with_capacity(20 + options.len());
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&(if syn { 64240u16 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(&options);
    let c = checksum(src.ip(), dst.ip(), &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn raw_socket(family: libc::c_int) -> Result<OwnedFd, ProbeError> {
    // SAFETY: plain socket(2) call; the fd is owned right away.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => {
                ProbeError::NoPrivilege("tcpfp needs CAP_NET_RAW for a raw socket".into())
            }
            _ => ProbeError::Io(e),
        });
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_v4(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0, // raw socket: the port is in our TCP header
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    }
}

/// `sendto` on a raw socket. `addr` must be a `libc::sockaddr_in` or
/// `libc::sockaddr_in6` (made by [`sockaddr_v4`] / [`sockaddr_v6`]).
fn send_raw<A>(fd: &OwnedFd, data: &[u8], addr: &A) -> std::io::Result<()> {
    // SAFETY: data and addr outlive the call; sizes are the real ones, and
    // both callers pass a sockaddr of the socket's family.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            0,
            (addr as *const A).cast(),
            std::mem::size_of::<A>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_recv_timeout(fd: &OwnedFd, t: Duration) -> std::io::Result<()> {
    let tv =
        libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros().max(1) as libc::suseconds_t };
    // SAFETY: tv is a valid timeval for the call's duration.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The local address the kernel would use towards `dst` (no packet is
/// sent): a UDP socket of the same family, connected, tells.
fn source_for(dst: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal address");
    let udp = UdpSocket::bind(any)?;
    udp.connect(dst)?;
    Ok(udp.local_addr()?.ip())
}

/// Blocking: SYN to `dst`, wait for its SYN-ACK to our port, RST it.
pub fn probe_blocking(dst: SocketAddr, timeout: Duration) -> Result<(String, Map<String, Value>), ProbeError> {
    let synack = match dst {
        SocketAddr::V4(dst) => probe_v4(dst, timeout)?,
        SocketAddr::V6(dst) => probe_v6(dst, timeout)?,
    };
    let details = json!({
        "raw": synack.raw_string(),
        "ttl": synack.ttl,
        "window": synack.window,
        "df": synack.df,
        "mss": synack.mss,
        "wscale": synack.wscale,
        "sack": synack.sack,
        "timestamps": synack.timestamps,
        "options": synack.options,
    });
    Ok((synack.hash(), details.as_object().cloned().unwrap_or_default()))
}

/// What one received segment means for the probe.
fn judge(flags: u8, port: u16) -> Result<bool, ProbeError> {
    if flags & 0x04 != 0 {
        return Err(ProbeError::Protocol(format!("port {port} answered RST (closed)")));
    }
    Ok(flags & 0x12 == 0x12)
}

fn recv_error(e: std::io::Error) -> Option<ProbeError> {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Some(ProbeError::Timeout),
        std::io::ErrorKind::Interrupted => None,
        _ => Some(ProbeError::Io(e)),
    }
}

fn probe_v4(dst: SocketAddrV4, timeout: Duration) -> Result<SynAck, ProbeError> {
    let fd = raw_socket(libc::AF_INET)?;
    let IpAddr::V4(src_ip) = source_for(dst.into())? else {
        return Err(ProbeError::Io(std::io::Error::other("no IPv4 source address")));
    };
    let src = SocketAddrV4::new(src_ip, rand::random_range(40_000..60_000));
    let to = sockaddr_v4(*dst.ip());
    let seq: u32 = rand::random();
    send_raw(&fd, &segment(src.into(), dst.into(), seq, 0, 0x02), &to)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout);
        }
        set_recv_timeout(&fd, left)?;
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            match recv_error(std::io::Error::last_os_error()) {
                Some(e) => return Err(e),
                None => continue,
            }
        }
        let Some((from, _to, sport, dport, flags, synack)) = parse_ipv4_tcp(&buf[..n as usize]) else { continue };
        if from != *dst.ip() || sport != dst.port() || dport != src.port() || !judge(flags, dst.port())? {
            continue;
        }
        // Close the half-open connection on the far side.
        let rst = segment(src.into(), dst.into(), seq.wrapping_add(1), synack.seq.wrapping_add(1), 0x14);
        let _ = send_raw(&fd, &rst, &to);
        return Ok(synack);
    }
}

fn sockaddr_v6(ip: Ipv6Addr, scope_id: u32) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 0, // raw socket: the port is in our TCP header
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: ip.octets() },
        sin6_scope_id: scope_id,
    }
}

/// One segment from an IPv6 raw socket: its length, sender and hop limit.
fn recv_v6(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, Ipv6Addr, Option<u8>)> {
    // SAFETY: zeroed sockaddr_in6 is a valid value to be written into.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16]; // 128 bytes, aligned for cmsghdr
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: zeroed msghdr is valid; every pointer set below outlives recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg describes valid, writable buffers.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut hop_limit = None;
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
    // bounded by msg_controllen; the int is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                hop_limit = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, Ipv6Addr::from(from.sin6_addr.s6_addr), hop_limit))
}

fn probe_v6(dst: SocketAddrV6, timeout: Duration) -> Result<SynAck, ProbeError> {
    let fd = raw_socket(libc::AF_INET6)?;
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid int for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVHOPLIMIT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(ProbeError::Io(std::io::Error::last_os_error()));
    }
    let IpAddr::V6(src_ip) = source_for(dst.into())? else {
        return Err(ProbeError::Io(std::io::Error::other("no IPv6 source address")));
    };
    let src = SocketAddrV6::new(src_ip, rand::random_range(40_000..60_000), 0, 0);
    let to = sockaddr_v6(*dst.ip(), dst.scope_id());
    let seq: u32 = rand::random();
    send_raw(&fd, &segment(src.into(), dst.into(), seq, 0, 0x02), &to)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout);
        }
        set_recv_timeout(&fd, left)?;
        let (n, from, hop_limit) = match recv_v6(&fd, &mut buf) {
            Ok(r) => r,
            Err(e) => match recv_error(e) {
                Some(e) => return Err(e),
                None => continue,
            },
        };
        let Some((sport, dport, flags, mut synack)) = parse_tcp(&buf[..n]) else { continue };
        if from != *dst.ip() || sport != dst.port() || dport != src.port() || !judge(flags, dst.port())? {
            continue;
        }
        synack.ttl = hop_limit.unwrap_or(0);
        let rst = segment(src.into(), dst.into(), seq.wrapping_add(1), synack.seq.wrapping_add(1), 0x14);
        let _ = send_raw(&fd, &rst, &to);
        return Ok(synack);
    }
}

pub async fn probe(dst: SocketAddr, timeout: Duration) -> Result<(String, Map<String, Value>), ProbeError> {
    tokio::task::spawn_blocking(move || probe_blocking(dst, timeout))
        .await
        .map_err(|e| ProbeError::Protocol(format!("tcpfp task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_in_order_and_raw_string() {
        let mut s = SynAck { ttl: 64, window: 65483, df: true, ..Default::default() };
        parse_options(&[2, 4, 0xff, 0xd7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7], &mut s);
        assert_eq!(s.options, ["M", "S", "T", "N", "W"]);
        assert_eq!(s.raw_string(), "64:65483:1:65495:7:1:1:M,S,T,N,W");
        assert_eq!(s.hash().len(), 32);
    }

    #[test]
    fn hostile_options_stop_cleanly() {
        for o in [&[2u8][..], &[2, 0], &[2, 200, 1], &[3, 1], &[1, 1, 1, 8]] {
            let mut s = SynAck::default();
            parse_options(o, &mut s);
        }
        assert!(parse_ipv4_tcp(&[0x45; 10]).is_none());
        assert!(parse_ipv4_tcp(&[0x4f, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn syn_checksum_verifies() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 22);
        let seg = segment(src.into(), dst.into(), 1, 0, 0x02);
        // A correct checksum makes the sum over pseudo-header + segment zero.
        assert_eq!(checksum((*src.ip()).into(), (*dst.ip()).into(), &seg), 0);
        let (src6, dst6): (SocketAddr, SocketAddr) =
            ("[2001:db8::1]:40000".parse().unwrap(), "[::1]:22".parse().unwrap());
        let seg = segment(src6, dst6, 1, 0, 0x02);
        assert_eq!(checksum(src6.ip(), dst6.ip(), &seg), 0);
    }
}
