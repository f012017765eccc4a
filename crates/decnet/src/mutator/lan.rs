//! Deckies as hosts of their own on a real LAN.
//!
//! With a LAN configured, the native driver gives each decky a network
//! namespace (`decnet-<decky>`) holding one macvlan (or ipvlan) interface
//! on the operator's parent interface: its own MAC (the persona's, so
//! `ip link` in the decky's shell and ARP on the wire agree), its own
//! address, routes, and the TCP/IP personality of its persona's OS family.
//! The decky's listeners stay in the one decnet process: their sockets are
//! made inside the namespace (see `decnet_decky::netns`), so no process
//! runs per decky.
//!
//! Links and namespaces are made with iproute2's `ip`, the tool operators
//! already read and trust for this, rather than a netlink client of our
//! own: every step is one command an operator can run by hand, and its
//! error text names the cause. Sysctls are written from a thread inside
//! the namespace (`/proc/sys/net` is per namespace), with no process.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::decky::persona::OsFamily;
use crate::decky::Persona;

/// The kind of link a decky's interface is on its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkKind {
    /// Own MAC per decky; the parent's switch port must accept several
    /// MACs (and a VM's virtual NIC promiscuous mode).
    Macvlan,
    /// Parent's MAC shared (L2 mode): for parents that cannot carry other
    /// MACs, such as Wi-Fi. Deckies then differ by address only on the wire.
    Ipvlan,
}

/// Where deckies are placed.
#[derive(Debug, Clone)]
pub struct Lan {
    /// The host interface the deckies' links hang off.
    pub parent: String,
    pub kind: LinkKind,
    /// Prefix length of the LAN the addresses are on.
    pub prefix: u8,
    /// Default route for the deckies, when the LAN has one.
    pub gateway: Option<IpAddr>,
    /// Addresses given to deckies without one, in order.
    pub range: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
}

/// The namespace a decky lives in.
pub fn namespace_name(decky: &str) -> String {
    format!("decnet-{decky}")
}

/// Its file, for `setns`.
pub fn namespace_path(decky: &str) -> PathBuf {
    Path::new("/run/netns").join(namespace_name(decky))
}

/// Name of the link in the host namespace between creation and its move:
/// interface names are at most 15 bytes, decky names are longer.
fn staging_link(decky: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(decky.as_bytes());
    format!("dn{:02x}{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3], d[4])
}

/// The TCP/IP stack settings that make a namespace answer like an OS
/// family, as far as Linux lets a namespace change them. What they cannot
/// change (option order in SYN-ACKs, IP ID sequence, ICMP quoting) is
/// measured with `nmap -O` in docs/deckies.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Personality {
    /// Initial TTL of every packet (ICMP included).
    pub ttl: u8,
    pub timestamps: bool,
    pub window_scaling: bool,
    pub sack: bool,
    pub ecn: u8,
    /// `tcp_rmem` (min default max): the max sets the window scale a
    /// SYN-ACK offers.
    pub rmem: (u32, u32, u32),
    /// The receive window a SYN-ACK offers (per-route `initrwnd`, in MSS).
    pub initrwnd: Option<u32>,
    /// Send without DF, so IP IDs are the incrementing kind (the ruleset
    /// puts DF back on TCP).
    pub no_pmtu_disc: bool,
    /// An nftables ruleset rewriting, on the way out, what no sysctl can
    /// (see [`WINDOWS_RULESET`]).
    pub ruleset: Option<&'static str>,
}

/// What makes Linux's replies read as Windows' to `nmap -O`, rewritten in
/// the decky's own namespace on output (nftables fixes the checksums):
/// - SYN-ACK options in Windows' order, MSS,NOP,WS,NOP,NOP,SACK, instead
///   of Linux's MSS,NOP,NOP,SACK,NOP,WS (same bytes, same length; only
///   rewritten when they are exactly Linux's with window scale 8);
/// - a RST answering a bare ACK carries a non-zero acknowledgement number;
/// - an echo reply has code 0 whatever the request's code;
/// - DF on TCP (sent without it so IP IDs increment, see `no_pmtu_disc`).
///
/// Measured with nmap 7.93 (docs/deckies.md): the top guess becomes
/// "Microsoft Windows 10 1709 - 1909". What stays Linux: no answer to
/// NULL/FIN-URG-PUSH probes on an open port (T2/T3) and SYN-ACK IP IDs.
pub const WINDOWS_RULESET: &str = "\
table inet decnet_personality {
  chain out {
    type filter hook output priority 0; policy accept;
    tcp flags & (syn | ack) == (syn | ack) @th,192,64 0x0101040201030308 @th,192,64 set 0x0103030801010402
    tcp flags == rst tcp ackseq set 0x1
    icmp type echo-reply icmp code set 0
    meta l4proto tcp ip frag-off set 0x4000
  }
}
";

impl Personality {
    pub fn of(family: OsFamily) -> Personality {
        match family {
            // Linux defaults, said explicitly so a namespace never inherits
            // a host's tuning.
            OsFamily::Linux => Personality {
                ttl: 64,
                timestamps: true,
                window_scaling: true,
                sack: true,
                ecn: 2,
                rmem: (4096, 131_072, 6_291_456),
                initrwnd: None,
                no_pmtu_disc: false,
                ruleset: None,
            },
            // Windows 10 / Server 2019: TTL 128, no timestamps, window
            // scale 8 (an 8 MiB max buffer), a 65535-byte SYN-ACK window.
            OsFamily::Windows => Personality {
                ttl: 128,
                timestamps: false,
                window_scaling: true,
                sack: true,
                ecn: 0,
                rmem: (4096, 262_144, 8_388_608),
                initrwnd: Some(46),
                no_pmtu_disc: true,
                ruleset: Some(WINDOWS_RULESET),
            },
            // Small embedded Linux (cameras, routers): TTL 64, small
            // buffers, so a small window and scale.
            OsFamily::Embedded => Personality {
                ttl: 64,
                timestamps: true,
                window_scaling: true,
                sack: true,
                ecn: 0,
                rmem: (4096, 29_200, 180_000),
                initrwnd: Some(10),
                no_pmtu_disc: false,
                ruleset: None,
            },
        }
    }

    /// The sysctls (under /proc/sys) this personality sets.
    pub fn sysctls(&self) -> Vec<(&'static str, String)> {
        let b = |on: bool| if on { "1" } else { "0" }.to_string();
        vec![
            ("net/ipv4/ip_default_ttl", self.ttl.to_string()),
            ("net/ipv6/conf/default/hop_limit", self.ttl.to_string()),
            ("net/ipv4/tcp_timestamps", b(self.timestamps)),
            ("net/ipv4/tcp_window_scaling", b(self.window_scaling)),
            ("net/ipv4/tcp_sack", b(self.sack)),
            ("net/ipv4/tcp_ecn", self.ecn.to_string()),
            ("net/ipv4/tcp_rmem", format!("{} {} {}", self.rmem.0, self.rmem.1, self.rmem.2)),
            ("net/ipv4/ip_no_pmtu_disc", b(self.no_pmtu_disc)),
        ]
    }
}

/// Run `ip args…`; its error output names the cause on failure.
async fn ip(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let hint = if err.contains("Operation not permitted") || err.contains("Permission denied") {
        " (placing deckies on a LAN needs CAP_NET_ADMIN: run the mutator as root or with its unit's capabilities)"
    } else {
        ""
    };
    Err(format!("ip {}: {err}{hint}", args.join(" ")))
}

/// Load an nftables ruleset inside namespace `ns`.
async fn nft(ns: &str, ruleset: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `ip netns exec … nft`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset.as_bytes()).await.map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let hint = if err.contains("nft") && err.contains("No such file") {
        " (the Windows TCP/IP personality needs nftables' `nft`)"
    } else {
        ""
    };
    Err(format!("nft in {ns}: {err}{hint}"))
}

impl Lan {
    /// Refuse early, with the cause, what cannot work: no parent interface.
    pub fn check(&self) -> Result<(), String> {
        // Asked of the kernel in this process's namespace (sysfs would
        // answer for the namespace that mounted it).
        let name = std::ffi::CString::new(self.parent.as_str()).map_err(|_| "bad interface name".to_string())?;
        // SAFETY: a valid NUL-terminated string; the call only reads it.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
            return Err(format!("LAN parent interface {:?} does not exist on this host", self.parent));
        }
        Ok(())
    }

    /// Give `decky` its namespace and interface at `address`. A namespace
    /// left by an earlier run is replaced. On error nothing is left behind.
    pub async fn place(&self, decky: &str, address: IpAddr, persona: &Persona) -> Result<PathBuf, String> {
        self.check()?;
        let ns = namespace_name(decky);
        let link = staging_link(decky);
        // Leftovers of a crash: a stale namespace or staging link.
        let _ = ip(&["netns", "del", &ns]).await;
        let _ = ip(&["link", "del", &link]).await;
        let result = self.build(decky, address, persona, &ns, &link).await;
        if let Err(e) = result {
            let _ = ip(&["link", "del", &link]).await;
            let _ = ip(&["netns", "del", &ns]).await;
            return Err(format!("decky {decky}: {e}"));
        }
        Ok(namespace_path(decky))
    }

    async fn build(&self, decky: &str, address: IpAddr, persona: &Persona, ns: &str, link: &str) -> Result<(), String> {
        ip(&["netns", "add", ns]).await?;
        match self.kind {
            LinkKind::Macvlan => {
                ip(&["link", "add", "link", &self.parent, "name", link, "type", "macvlan", "mode", "bridge"]).await?
            }
            LinkKind::Ipvlan => {
                ip(&["link", "add", "link", &self.parent, "name", link, "type", "ipvlan", "mode", "l2"]).await?
            }
        }
        ip(&["link", "set", link, "netns", ns]).await?;
        let nic = persona.interfaces.first().map(|i| i.name.as_str()).unwrap_or("eth0");
        ip(&["-n", ns, "link", "set", link, "name", nic]).await?;
        if self.kind == LinkKind::Macvlan {
            if let Some(mac) = persona.interfaces.first().map(|i| i.mac.as_str()) {
                ip(&["-n", ns, "link", "set", nic, "address", mac]).await?;
            }
        }
        let personality = Personality::of(persona.family);
        let path = namespace_path(decky);
        let sysctls = personality.sysctls();
        tokio::task::spawn_blocking(move || {
            crate::decky::netns::run_in(Some(&path), move || {
                for (key, value) in sysctls {
                    let file = Path::new("/proc/sys").join(key);
                    std::fs::write(&file, &value).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("cannot set {} = {value}: {e}", file.display()))
                    })?;
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        if let Some(ruleset) = personality.ruleset {
            nft(ns, ruleset).await?;
        }
        let cidr = format!("{address}/{}", self.prefix);
        ip(&["-n", ns, "addr", "add", &cidr, "dev", nic]).await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        ip(&["-n", ns, "link", "set", nic, "up"]).await?;
        // The connected route again, with the personality's initial
        // receive window (a per-route setting).
        if let Some(rwnd) = personality.initrwnd {
            let net = network_of(address, self.prefix);
            let rwnd = rwnd.to_string();
            ip(&[
                "-n",
                ns,
                "route",
                "replace",
                &net,
                "dev",
                nic,
                "proto",
                "kernel",
                "scope",
                "link",
                "src",
                &address.to_string(),
                "initrwnd",
                &rwnd,
            ])
            .await?;
        }
        if let Some(gw) = self.gateway {
            ip(&["-n", ns, "route", "add", "default", "via", &gw.to_string(), "dev", nic]).await?;
        }
        tracing::info!(decky, %address, namespace = ns, parent = %self.parent, "decky placed on the LAN");
        Ok(())
    }

    /// Remove the decky's namespace (its interface goes with it).
    pub async fn remove(&self, decky: &str) -> Result<(), String> {
        ip(&["netns", "del", &namespace_name(decky)]).await
    }
}

/// `address/prefix` with the host bits cleared, as `ip route` writes it.
fn network_of(address: IpAddr, prefix: u8) -> String {
    match address {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            format!("{}/{prefix}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            format!("{}/{prefix}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// Parse `--lan-range FIRST-LAST` (IPv4).
pub fn parse_range(text: &str) -> Result<(std::net::Ipv4Addr, std::net::Ipv4Addr), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: expected FIRST-LAST, e.g. 192.168.1.100-192.168.1.150"))?;
    let first: std::net::Ipv4Addr = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let last: std::net::Ipv4Addr = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if u32::from(last) < u32::from(first) {
        return Err(format!("{text:?}: the last address comes before the first"));
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_links_fit_an_interface_name_and_differ_per_decky() {
        let a = staging_link("a-very-long-decky-name-of-the-finance-floor");
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, staging_link("a-very-long-decky-name-of-the-finance-floor2"));
    }

    #[test]
    fn personalities_differ_where_scanners_look() {
        let (l, w, e) =
            (Personality::of(OsFamily::Linux), Personality::of(OsFamily::Windows), Personality::of(OsFamily::Embedded));
        assert_eq!((l.ttl, w.ttl, e.ttl), (64, 128, 64));
        assert!(l.timestamps && !w.timestamps);
        assert_ne!(l.rmem, e.rmem);
        assert!(w.sysctls().contains(&("net/ipv4/ip_default_ttl", "128".to_string())));
    }

    #[test]
    fn networks_and_ranges_parse() {
        assert_eq!(network_of("10.9.0.17".parse().unwrap(), 24), "10.9.0.0/24");
        assert_eq!(network_of("10.9.0.17".parse().unwrap(), 28), "10.9.0.16/28");
        assert_eq!(parse_range("10.0.0.5-10.0.0.9").unwrap().1, "10.0.0.9".parse::<std::net::Ipv4Addr>().unwrap());
        assert!(parse_range("10.0.0.9-10.0.0.5").unwrap_err().contains("before"));
        assert!(parse_range("10.0.0.9").unwrap_err().contains("FIRST-LAST"));
    }

    #[test]
    fn a_missing_parent_is_refused_naming_it() {
        let lan =
            Lan { parent: "decnet-no-such-if".into(), kind: LinkKind::Macvlan, prefix: 24, gateway: None, range: None };
        assert!(lan.check().unwrap_err().contains("decnet-no-such-if"));
    }
}
