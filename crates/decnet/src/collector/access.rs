//! The collector's trust boundary: how a line arrived and whether its
//! sender may speak for a decky.
//!
//! - The UNIX socket (file mode 0660: the collector's user and group) is
//!   where this host's deckies ship; lines on it are trusted.
//! - Container output read from the Docker daemon is trusted (only the
//!   daemon's clients can label containers).
//! - The network syslog listener (UDP and TCP) accepts only senders in
//!   `--allow` (default loopback); anything else is refused before a byte
//!   is read (TCP) or dropped (UDP), and counted. What it accepts is
//!   stored, but as *untrusted* unless the sender is also in
//!   `--trust-network`: a process on the host that can reach
//!   127.0.0.1:5514 can then not invent attackers, credentials or
//!   commands for the profiler.

use std::net::IpAddr;

use ipnet::IpNet;

/// How a line reached the collector (the `ingest_transport` of its record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
    Udp,
    Docker,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Docker => "docker",
        }
    }
}

/// A set of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

impl Networks {
    /// 127.0.0.0/8 and ::1.
    pub fn loopback() -> Networks {
        Networks(vec!["127.0.0.0/8".parse().expect("valid"), "::1/128".parse().expect("valid")])
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Parse a network: `10.0.0.0/8`, or a bare address for just that host.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR network"))
}

/// Whether a line from `source` over `transport` may be used as a decky's word.
pub fn trusted(transport: Transport, source: IpAddr, trust_networks: &Networks) -> bool {
    match transport {
        Transport::Unix | Transport::Docker => true,
        Transport::Tcp | Transport::Udp => trust_networks.contains(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_trust() {
        let lo = Networks::loopback();
        assert!(lo.contains("127.9.9.9".parse().unwrap()));
        assert!(lo.contains("::1".parse().unwrap()));
        // An IPv4-mapped IPv6 sender is judged as the IPv4 address it is.
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("10.0.0.1".parse().unwrap()));
        let trust = Networks(vec![parse_network("10.1.0.0/16").unwrap(), parse_network("192.0.2.7").unwrap()]);
        assert!(trusted(Transport::Unix, "0.0.0.0".parse().unwrap(), &Networks::default()));
        assert!(!trusted(Transport::Tcp, "127.0.0.1".parse().unwrap(), &Networks::default()));
        assert!(trusted(Transport::Udp, "10.1.2.3".parse().unwrap(), &trust));
        assert!(trusted(Transport::Tcp, "192.0.2.7".parse().unwrap(), &trust));
        assert!(!trusted(Transport::Tcp, "192.0.2.8".parse().unwrap(), &trust));
        assert!(parse_network("nonsense").is_err());
    }
}
