//! IPv4/IPv6 + TCP headers out of a captured packet: a pure function over
//! bytes that returns `None` for anything it does not understand (other
//! protocols, truncated or lying headers). Never panics: these bytes are
//! whatever an attacker chose to send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prober::tcpfp::{parse_options, SynAck};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// One TCP segment with the IP fields the fingerprints use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Don't Fragment (always true for IPv6, which never fragments in flight).
    pub df: bool,
    pub window: u16,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl TcpPacket<'_> {
    /// The SYN fields (ttl, window, df, options in order) in the prober's shape.
    pub fn syn_fields(&self) -> SynAck {
        let mut s = SynAck { ttl: self.ttl, window: self.window, df: self.df, seq: self.seq, ..Default::default() };
        parse_options(self.options, &mut s);
        s
    }
}

/// Parse a network-layer packet (no link header) carrying TCP.
pub fn parse(pkt: &[u8]) -> Option<TcpPacket<'_>> {
    let version = pkt.first()? >> 4;
    let (src, dst, ttl, df, tcp) = match version {
        4 => {
            if pkt.len() < 20 || pkt[9] != 6 {
                return None;
            }
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([pkt[2], pkt[3]]) as usize;
            if ihl < 20 || total < ihl || total > pkt.len() {
                return None;
            }
            // Only first fragments carry the TCP header.
            let frag_offset = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
            if frag_offset != 0 {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]));
            (src, dst, pkt[8], pkt[6] & 0x40 != 0, &pkt[ihl..total])
        }
        6 => {
            if pkt.len() < 40 || pkt[6] != 6 {
                return None; // extension headers are not followed here
            }
            let plen = u16::from_be_bytes([pkt[4], pkt[5]]) as usize;
            let end = (40 + plen).min(pkt.len());
            let mut s = [0u8; 16];
            s.copy_from_slice(&pkt[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&pkt[24..40]);
            (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)), pkt[7], true, &pkt[40..end])
        }
        _ => return None,
    };
    if tcp.len() < 20 {
        return None;
    }
    let off = (tcp[12] >> 4) as usize * 4;
    if off < 20 || off > tcp.len() {
        return None;
    }
    Some(TcpPacket {
        src,
        dst,
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
        ttl,
        df,
        options: &tcp[20..off],
        payload: &tcp[off..],
    })
}
