//! The prober: active fingerprints of attackers' own hosts.
//!
//! Once an attacker is known (`attacker.observed`, or the `attackers`
//! table at start since the bus is at-most-once), the prober looks back at
//! it: JARM and the certificate of its TLS servers, HASSH of its SSH
//! servers, and a TCP/IP stack fingerprint from a SYN-ACK. These survive
//! the attacker changing source address, so they feed the clusterer.
//!
//! One file per probe (pure parsing separated from the socket work so the
//! parsers are tested on hostile bytes); [`policy`] decides what may be
//! probed and how often; [`worker`] runs it all as `decnet prober`;
//! [`store`] keeps results in the `fingerprints` table.

pub mod emit;
pub mod hassh;
pub mod jarm;
pub mod policy;
pub mod store;
pub mod tcpfp;
pub mod tls_certificate;
pub mod worker;

#[cfg(test)]
mod fuzz;

use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Every probe gives up after this long (SPEC: 5 s timeouts).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The probes, named as their `attacker.fingerprinted` event type and `fingerprints.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Probe {
    Jarm,
    Hassh,
    #[value(name = "tls", alias = "tls_certificate")]
    TlsCertificate,
    Tcpfp,
}

impl Probe {
    pub const ALL: [Probe; 4] = [Probe::Jarm, Probe::Hassh, Probe::TlsCertificate, Probe::Tcpfp];

    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Jarm => "jarm",
            Probe::Hassh => "hassh",
            Probe::TlsCertificate => "tls_certificate",
            Probe::Tcpfp => "tcpfp",
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    /// JARM of 62 zeros: nothing there speaks TLS.
    #[error("no TLS server answered (JARM is 62 zeros)")]
    NotTls,
    /// The probe needs a capability this process lacks (tcpfp: CAP_NET_RAW).
    #[error("{0}")]
    NoPrivilege(String),
}

/// One successful probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    pub probe: Probe,
    pub ip: IpAddr,
    pub port: u16,
    pub hash: String,
    /// Probe-specific fields, added to the payload next to the base keys.
    pub details: Map<String, Value>,
}

impl Fingerprint {
    /// The `attacker.fingerprinted` payload: `{attacker_ip, port, hash, probe, …details}`.
    pub fn payload(&self) -> Value {
        let mut extra = self.details.clone();
        extra.insert("probe".into(), Value::String(self.probe.as_str().into()));
        decnet_bus::fingerprint::fingerprint_payload(self.ip, self.port, &self.hash, Some(extra))
    }
}

/// Run one probe against `addr`. `host` is the name the operator gave
/// (SNI for the TLS probes; the IP text when probing an attacker).
pub async fn run_probe(
    probe: Probe,
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<Fingerprint, ProbeError> {
    let (hash, details) = match probe {
        Probe::Jarm => {
            let (hash, raw) = jarm::probe(addr, host, timeout).await?;
            if hash == jarm::NOT_TLS {
                return Err(ProbeError::NotTls);
            }
            let mut d = Map::new();
            d.insert("raw".into(), Value::String(raw));
            (hash, d)
        }
        Probe::Hassh => hassh::probe(addr, timeout).await?,
        Probe::TlsCertificate => tls_certificate::probe(addr, host, timeout).await?,
        Probe::Tcpfp => tcpfp::probe(addr, timeout).await?,
    };
    Ok(Fingerprint { probe, ip: addr.ip(), port: addr.port(), hash, details })
}
