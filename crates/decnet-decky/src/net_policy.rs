//! Which networks decnet may send traffic to on an attacker's behalf.
//!
//! The prober (probing back) and the deckies' fetcher (downloading what an
//! attacker asked for) both aim at addresses an attacker chooses, so both
//! are judged by the same rule: nothing is touched unless the operator
//! allowed its network, the default allow list is loopback only (the
//! demo), and deny always wins.

use ipnet::IpNet;
use std::net::IpAddr;

/// Networks allowed when the operator sets none.
pub const DEFAULT_ALLOW: &[&str] = &["127.0.0.0/8", "::1/128"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrPolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// An entry of an allow or deny list that is not a network.
#[derive(Debug, thiserror::Error)]
#[error("{list} entry {entry:?} is not a CIDR network or address")]
pub struct PolicyError {
    pub list: &'static str,
    pub entry: String,
}

impl CidrPolicy {
    /// Parse CIDR lists (a bare address is a /32 or /128; entries may also
    /// be comma-separated). An empty allow list means [`DEFAULT_ALLOW`].
    pub fn parse(allow: &[String], deny: &[String]) -> Result<CidrPolicy, PolicyError> {
        let parse = |list: &[String], what: &'static str| -> Result<Vec<IpNet>, PolicyError> {
            list.iter()
                .flat_map(|s| s.split(','))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpNet>()
                        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| PolicyError { list: what, entry: s.to_string() })
                })
                .collect()
        };
        let mut allow = parse(allow, "allow")?;
        if allow.is_empty() {
            allow = DEFAULT_ALLOW.iter().map(|s| s.parse().expect("valid default")).collect();
        }
        Ok(CidrPolicy { allow, deny: parse(deny, "deny")? })
    }

    /// Allowed: inside some allow network and no deny network. IPv4-mapped
    /// IPv6 addresses are judged as the IPv4 address they carry.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        !self.deny.iter().any(|n| n.contains(&ip)) && self.allow.iter().any(|n| n.contains(&ip))
    }
}

impl Default for CidrPolicy {
    fn default() -> Self {
        CidrPolicy::parse(&[], &[]).expect("the default lists parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_loopback_only_and_deny_wins() {
        let p = CidrPolicy::parse(&[], &[]).unwrap();
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("::1".parse().unwrap()));
        assert!(p.permits("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!p.permits("10.0.0.1".parse().unwrap()));
        let p = CidrPolicy::parse(&["127.0.0.0/8,192.0.2.0/24".into()], &["127.0.0.9".into()]).unwrap();
        assert!(p.permits("192.0.2.7".parse().unwrap()));
        assert!(!p.permits("127.0.0.9".parse().unwrap()));
        assert!(!p.permits("::ffff:127.0.0.9".parse().unwrap()), "a mapped address is judged as IPv4");
        let e = CidrPolicy::parse(&[], &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("deny") && e.contains("nope"), "{e}");
    }
}
