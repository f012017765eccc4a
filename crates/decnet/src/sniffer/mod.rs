//! The sniffer: passive fingerprints of attackers' traffic to deckies.
//!
//! Where the prober looks at attackers' own servers, the sniffer watches
//! what they send: the SYN of their OS (`tcp_syn_fingerprint`), their TLS
//! client (`tls_client_hello`: JA3/JA4, SNI, ALPN) and how the decky
//! answered it (`tls_session`: JA3S/JA4S), their SSH client's banner
//! (`ssh_client_banner`), and handshake timing (`tcp_flow_timing`).
//!
//! Layout: [`capture`] reads packets (AF_PACKET), [`packet`] parses IP/TCP,
//! one file per fingerprint parser, [`flows`] turns packets into events,
//! [`dedup`] keeps one event per (ip, type, fingerprint) per window, and
//! [`worker`] runs the capture thread and emits (RFC 5424 line,
//! `decky.<decky>.traffic`, `fingerprints` row with source `sniffer`).
//! Every parser is a pure function over bytes, property-tested on hostile input.

pub mod capture;
pub mod dedup;
pub mod flows;
pub mod packet;
pub mod ssh_banner;
pub mod tcp_syn;
pub mod tls_client_hello;
pub mod tls_session;
pub mod worker;

#[cfg(test)]
mod tests;
