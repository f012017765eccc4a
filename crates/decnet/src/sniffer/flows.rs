//! From packets to traffic events: a bounded table of TCP flows to
//! deckies, the first bytes of each direction (enough for a ClientHello,
//! a ServerHello or an SSH banner, even split over segments), and the
//! handshake times `tcp_flow_timing` reports when a flow ends.
//!
//! Pure state machine: packets and a clock in, events out, no I/O, so it
//! is tested with crafted and hostile packets.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::packet::{TcpPacket, ACK, FIN, RST, SYN};
use super::{ssh_banner, tcp_syn, tls_client_hello, tls_session};

/// Bytes kept per direction while looking for a handshake message.
pub const STREAM_PREFIX: usize = 16 * 1024;
/// Flows tracked at once; new flows beyond this are not tracked (counted).
pub const MAX_FLOWS: usize = 65_536;
/// A flow silent this long is forgotten.
pub const FLOW_IDLE_SECS: f64 = 120.0;

/// One passive fingerprint of an attacker's traffic to a decky.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficEvent {
    pub decky: String,
    pub decky_ip: IpAddr,
    pub decky_port: u16,
    pub attacker_ip: IpAddr,
    pub attacker_port: u16,
    /// tcp_syn_fingerprint | tls_client_hello | tls_session | ssh_client_banner | tcp_flow_timing
    pub event_type: &'static str,
    /// What identifies it (JA3, JA3S, signature hash, banner, …): the dedup key.
    pub fingerprint: String,
    pub details: Map<String, Value>,
}

impl TrafficEvent {
    /// The `decky.<decky>.traffic` payload.
    pub fn payload(&self) -> Value {
        let mut p = self.details.clone();
        p.insert("decky".into(), Value::String(self.decky.clone()));
        p.insert("decky_ip".into(), Value::String(self.decky_ip.to_string()));
        p.insert("decky_port".into(), Value::from(self.decky_port));
        p.insert("attacker_ip".into(), Value::String(self.attacker_ip.to_string()));
        p.insert("attacker_port".into(), Value::from(self.attacker_port));
        p.insert("event_type".into(), Value::String(self.event_type.into()));
        p.insert("hash".into(), Value::String(self.fingerprint.clone()));
        Value::Object(p)
    }
}

type Key = (IpAddr, u16, IpAddr, u16); // attacker ip/port, decky ip/port

#[derive(Debug, Default)]
struct Direction {
    buf: Vec<u8>,
    next_seq: Option<u32>,
    done: bool,
    packets: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Flow {
    decky: String,
    syn_at: Option<f64>,
    synack_at: Option<f64>,
    ack_at: Option<f64>,
    first_at: f64,
    last_at: f64,
    c2s: Direction,
    s2c: Direction,
}

/// The flow table and event extraction for a set of decky addresses.
#[derive(Debug, Default)]
pub struct Analyzer {
    deckies: HashMap<IpAddr, String>,
    flows: HashMap<Key, Flow>,
    /// Flows not tracked because the table was full.
    pub untracked: u64,
}

impl Analyzer {
    pub fn new(deckies: HashMap<IpAddr, String>) -> Self {
        Analyzer { deckies, ..Default::default() }
    }

    pub fn set_deckies(&mut self, deckies: HashMap<IpAddr, String>) {
        self.deckies = deckies;
    }

    pub fn is_decky(&self, ip: &IpAddr) -> bool {
        self.deckies.contains_key(ip)
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Forget flows idle for [`FLOW_IDLE_SECS`].
    pub fn expire(&mut self, now: f64) {
        self.flows.retain(|_, f| now - f.last_at < FLOW_IDLE_SECS);
    }

    /// Feed one packet; returns the events it completes.
    pub fn on_packet(&mut self, p: &TcpPacket<'_>, now: f64) -> Vec<TrafficEvent> {
        let mut out = Vec::new();
        let fwd: Key = (p.src, p.sport, p.dst, p.dport);
        let rev: Key = (p.dst, p.dport, p.src, p.sport);
        let (key, c2s) = if self.flows.contains_key(&fwd) {
            (fwd, true)
        } else if self.flows.contains_key(&rev) {
            (rev, false)
        } else if let Some(decky) = self.deckies.get(&p.dst).cloned() {
            let is_syn = p.flags & (SYN | ACK) == SYN;
            // Mid-flow pickup only when the direction is unambiguous.
            if !is_syn && (self.deckies.contains_key(&p.src) || p.flags & (RST | FIN) != 0) {
                return out;
            }
            if self.flows.len() >= MAX_FLOWS {
                self.untracked += 1;
                return out;
            }
            let flow = Flow {
                decky: decky.clone(),
                syn_at: is_syn.then_some(now),
                synack_at: None,
                ack_at: None,
                first_at: now,
                last_at: now,
                c2s: Direction::default(),
                s2c: Direction::default(),
            };
            self.flows.insert(fwd, flow);
            if is_syn {
                let (hash, details) = tcp_syn::fingerprint(p);
                out.push(event(&fwd, &decky, "tcp_syn_fingerprint", hash, details));
            }
            (fwd, true)
        } else {
            return out;
        };
        let flow = self.flows.get_mut(&key).expect("present");
        flow.last_at = now;
        let syn = p.flags & SYN != 0;
        if !c2s && syn && p.flags & ACK != 0 && flow.synack_at.is_none() {
            flow.synack_at = Some(now);
        }
        if c2s && !syn && p.flags & ACK != 0 && flow.synack_at.is_some() && flow.ack_at.is_none() {
            flow.ack_at = Some(now);
        }
        let dir = if c2s { &mut flow.c2s } else { &mut flow.s2c };
        dir.packets += 1;
        dir.bytes += p.payload.len() as u64;
        // Data starts at seq+1 after a SYN.
        let data_seq = if syn { p.seq.wrapping_add(1) } else { p.seq };
        if !p.payload.is_empty() && !dir.done {
            let expected = *dir.next_seq.get_or_insert(data_seq);
            if data_seq == expected {
                let room = STREAM_PREFIX - dir.buf.len();
                dir.buf.extend_from_slice(&p.payload[..p.payload.len().min(room)]);
                dir.next_seq = Some(data_seq.wrapping_add(p.payload.len() as u32));
                if let Some(ev) = inspect(&key, &flow.decky, c2s, dir) {
                    out.push(ev);
                }
            }
        } else if syn && dir.next_seq.is_none() {
            dir.next_seq = Some(data_seq);
        }
        if p.flags & (FIN | RST) != 0 {
            let flow = self.flows.remove(&key).expect("present");
            out.push(timing(&key, &flow, now));
        }
        out
    }
}

fn event(key: &Key, decky: &str, ty: &'static str, fingerprint: String, details: Map<String, Value>) -> TrafficEvent {
    TrafficEvent {
        decky: decky.to_string(),
        decky_ip: key.2,
        decky_port: key.3,
        attacker_ip: key.0,
        attacker_port: key.1,
        event_type: ty,
        fingerprint,
        details,
    }
}

/// Look for the one handshake message this direction can carry.
fn inspect(key: &Key, decky: &str, c2s: bool, dir: &mut Direction) -> Option<TrafficEvent> {
    let buf = &dir.buf;
    let full = buf.len() >= STREAM_PREFIX;
    if buf.first() == Some(&0x16) {
        let msg_type = if c2s { 1 } else { 2 };
        match tls_client_hello::handshake_message(buf, msg_type) {
            Some(msg) => {
                dir.done = true;
                return if c2s {
                    let ch = tls_client_hello::parse_client_hello(&msg)?;
                    Some(event(key, decky, "tls_client_hello", ch.ja3(), ch.details()))
                } else {
                    let sh = tls_session::parse_server_hello(&msg)?;
                    Some(event(key, decky, "tls_session", sh.ja3s(), sh.details()))
                };
            }
            None => {
                // Not complete yet (wait), or not what we look for (stop).
                dir.done = full || buf.len() >= 6 && buf[5] != msg_type;
                return None;
            }
        }
    }
    if c2s && buf.starts_with(b"SSH-") {
        if let Some(banner) = ssh_banner::client_banner(buf) {
            dir.done = true;
            let details = json!({"banner": banner}).as_object().cloned().unwrap_or_default();
            return Some(event(key, decky, "ssh_client_banner", banner, details));
        }
        dir.done = buf.len() >= 256;
        return None;
    }
    // "SSH-" not fully arrived yet: wait for 4 bytes before deciding.
    dir.done = buf.len() >= 4 || !b"SSH-".starts_with(buf);
    None
}

fn ms(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(((b? - a?) * 1e6).round() / 1e3)
}

fn timing(key: &Key, f: &Flow, now: f64) -> TrafficEvent {
    let client_rtt = ms(f.synack_at, f.ack_at);
    // Bucket the attacker's handshake RTT by powers of two (µs) per decky
    // port: the same host on the same path lands in one bucket, so dedup
    // keeps one timing per path and service instead of one per connection.
    let bucket = client_rtt.map(|r| ((r * 1000.0).max(1.0)).log2().floor() as u32);
    let fingerprint = match bucket {
        Some(b) => format!("{}:rtt_2^{b}us", key.3),
        None => format!("{}:rtt_unknown", key.3),
    };
    let details = json!({
        "duration_ms": ((now - f.first_at) * 1e6).round() / 1e3,
        "server_rtt_ms": ms(f.syn_at, f.synack_at),
        "client_rtt_ms": client_rtt,
        "packets_c2s": f.c2s.packets,
        "packets_s2c": f.s2c.packets,
        "bytes_c2s": f.c2s.bytes,
        "bytes_s2c": f.s2c.bytes,
    });
    event(key, &f.decky, "tcp_flow_timing", fingerprint, details.as_object().cloned().unwrap_or_default())
}
