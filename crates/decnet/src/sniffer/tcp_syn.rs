//! `tcp_syn_fingerprint`: the attacker's SYN, p0f style.
//!
//! The initial TTL (rounded up to 32/64/128/255 from what arrived), the
//! window, MSS, window scale and the order of TCP options are set by the
//! sender's OS, not by the tool it runs, so they survive a change of
//! scanner. The OS guess is a few well-known signatures, deliberately
//! coarse: it names the family, not a version.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::packet::TcpPacket;

/// The initial TTL a received TTL most likely started from.
pub fn initial_ttl(ttl: u8) -> u8 {
    match ttl {
        0..=32 => 32,
        33..=64 => 64,
        65..=128 => 128,
        _ => 255,
    }
}

/// A p0f-style family guess from initial TTL and option order.
pub fn os_guess(initial_ttl: u8, options: &str, window: u16) -> &'static str {
    match (initial_ttl, options) {
        (64, "M,S,T,N,W") | (64, "M,N,N,S,N,W") | (64, "M,S,N,W") => "Linux",
        (64, "M,N,W,N,N,T,S,E,E") | (64, "M,N,W,N,N,T,S,E") => "macOS/iOS",
        (64, "M,N,W,S,T") | (64, "M,N,W,N,N,S") | (64, "M,N,W,N,N,T") => "FreeBSD",
        (128, "M,N,W,N,N,S") | (128, "M,N,W,S,T") | (128, "M,N,W,N,N,T,S") => "Windows",
        (255, _) => "network device/Solaris",
        (64, "") if window == 1024 || window == 2048 || window == 3072 || window == 4096 => "nmap SYN scan",
        (64, "M") => "scanner (raw SYN)",
        _ => "unknown",
    }
}

/// The fingerprint of a SYN (without ACK). Hash: first 32 hex of sha256(signature).
pub fn fingerprint(p: &TcpPacket<'_>) -> (String, Map<String, Value>) {
    let s = p.syn_fields();
    let options = s.options.join(",");
    let ittl = initial_ttl(p.ttl);
    let signature = format!(
        "{ittl}:{}:{}:{}:{}:{}",
        p.window,
        s.mss.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
        s.wscale.map(|w| w.to_string()).unwrap_or_else(|| "-".into()),
        p.df as u8,
        options
    );
    let hash: String = Sha256::digest(signature.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    let details = json!({
        "signature": signature,
        "ttl": p.ttl,
        "initial_ttl": ittl,
        "window": p.window,
        "mss": s.mss,
        "wscale": s.wscale,
        "df": p.df,
        "sack": s.sack,
        "timestamps": s.timestamps,
        "options": options,
        "os_guess": os_guess(ittl, &options, p.window),
    });
    (hash, details.as_object().cloned().unwrap_or_default())
}
