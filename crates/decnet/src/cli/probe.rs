//! `decnet probe jarm|hassh|tls|tcpfp HOST:PORT`: run one probe now and
//! print its `attacker.fingerprinted` payload as JSON. For operators
//! checking a target by hand (and for tests); no policy, no bus, no store.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::prober::{run_probe, Probe, PROBE_TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Which probe.
    #[arg(value_enum)]
    pub probe: Probe,
    /// Target as HOST:PORT (`[::1]:443` for IPv6).
    pub target: String,
    /// Timeout in seconds.
    #[arg(long, default_value_t = PROBE_TIMEOUT.as_secs())]
    pub timeout_secs: u64,
}

/// Split `HOST:PORT`; the host keeps its brackets off.
pub fn split_target(target: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = target.rsplit_once(':').with_context(|| format!("{target:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(!host.is_empty(), "{target:?} has no host");
    Ok((host.to_string(), port))
}

pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let (host, port) = split_target(&args.target)?;
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let fp = run_probe(args.probe, addr, &host, Duration::from_secs(args.timeout_secs.max(1)))
        .await
        .with_context(|| format!("{} probe of {addr} failed", args.probe))?;
    println!("{}", serde_json::to_string(&fp.payload())?);
    Ok(())
}
