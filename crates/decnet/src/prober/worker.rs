//! `decnet prober`: learn attackers, probe each (ip, probe, port) once per
//! period within the policy, record what comes back.
//!
//! Targets come from `attacker.observed` and, at start, from the
//! `attackers` table (the bus is at-most-once: an attacker observed while
//! the prober was down is still probed). Jobs that fail (timeout, closed
//! port, not TLS) are not retried before the next period: an attacker's
//! closed port stays closed, and hammering it would only make the decoy
//! network visible.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::topics::ATTACKER_OBSERVED;
use decnet_bus::Bus;
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::policy::{Limiter, Policy};
use super::{emit, run_probe, Probe, ProbeError};

/// Everything `decnet prober` is configured with.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    pub db_path: Option<PathBuf>,
    pub log_path: PathBuf,
    pub policy: Policy,
    /// Each (ip, probe, port) at most once per period.
    pub period: Duration,
    /// The ports each probe runs on; a probe with no ports is off.
    pub ports: Vec<(Probe, Vec<u16>)>,
    pub per_target_concurrency: usize,
    pub per_target_gap: Duration,
    pub max_in_flight: usize,
    pub timeout: Duration,
}

/// Counters for the heartbeat.
#[derive(Debug, Default)]
pub struct Stats {
    pub targets: AtomicU64,
    pub probes_run: AtomicU64,
    pub fingerprints: AtomicU64,
    pub failures: AtomicU64,
    pub refused_by_policy: AtomicU64,
    pub rotations: AtomicU64,
}

impl Stats {
    pub fn health(&self) -> serde_json::Map<String, Value> {
        let g = |a: &AtomicU64| Value::from(a.load(Ordering::Relaxed));
        let mut m = serde_json::Map::new();
        m.insert("targets".into(), g(&self.targets));
        m.insert("probes_run".into(), g(&self.probes_run));
        m.insert("fingerprints".into(), g(&self.fingerprints));
        m.insert("failures".into(), g(&self.failures));
        m.insert("refused_by_policy".into(), g(&self.refused_by_policy));
        m.insert("rotations".into(), g(&self.rotations));
        m
    }
}

/// The attacker address an `attacker.observed` payload names.
pub fn observed_ip(payload: &Value) -> Option<IpAddr> {
    ["attacker_ip", "ip", "src_ip"].iter().find_map(|k| payload.get(*k)?.as_str()?.trim().parse().ok())
}

struct Scheduler {
    config: ProberConfig,
    stats: Arc<Stats>,
    targets: HashSet<IpAddr>,
    next_due: HashMap<(IpAddr, Probe, u16), Instant>,
    tcpfp_disabled: Arc<AtomicBool>,
}

impl Scheduler {
    fn add_target(&mut self, ip: IpAddr) {
        if self.targets.contains(&ip) {
            return;
        }
        if !self.config.policy.permits(ip) {
            self.stats.refused_by_policy.fetch_add(1, Ordering::Relaxed);
            tracing::info!(attacker_ip = %ip, "not probing: outside the allow list or in the deny list");
            // Remembered so the refusal is logged once per address.
            self.targets.insert(ip);
            return;
        }
        tracing::info!(attacker_ip = %ip, "new probe target");
        self.targets.insert(ip);
        self.stats.targets.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for (probe, ports) in &self.config.ports {
            for port in ports {
                self.next_due.insert((ip, *probe, *port), now);
            }
        }
    }

    /// Jobs due now (marked done for this period), and when the next one is due.
    fn take_due(&mut self) -> (Vec<(IpAddr, Probe, u16)>, Option<Instant>) {
        let now = Instant::now();
        let mut due = Vec::new();
        let tcpfp_off = self.tcpfp_disabled.load(Ordering::Relaxed);
        for (job, at) in self.next_due.iter_mut() {
            if *at <= now {
                *at = now + self.config.period;
                if !(tcpfp_off && job.1 == Probe::Tcpfp) {
                    due.push(*job);
                }
            }
        }
        due.sort();
        (due, self.next_due.values().min().copied())
    }
}

/// Run the prober until `shutdown`.
pub async fn run(
    config: ProberConfig,
    bus: Arc<dyn Bus>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool: Option<SqlitePool> = match &config.db_path {
        Some(p) => Some(crate::store::open(p).await?),
        None => None,
    };
    // Subscribe before reading the table so nobody observed in between is missed.
    let mut observed = match bus.subscribe(ATTACKER_OBSERVED).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot subscribe to attacker.observed; probing only attackers from the database");
            None
        }
    };
    let mut sched = Scheduler {
        config: config.clone(),
        stats: stats.clone(),
        targets: HashSet::new(),
        next_due: HashMap::new(),
        tcpfp_disabled: Arc::new(AtomicBool::new(false)),
    };
    if let Some(pool) = &pool {
        match super::store::known_attackers(pool).await {
            Ok(ips) => {
                for ip in ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
                    sched.add_target(ip);
                }
                tracing::info!(count = ips.len(), "attackers loaded from the database");
            }
            Err(e) => tracing::warn!(error = %e, "cannot read attackers from the database"),
        }
    }
    let limiter = Limiter::new(config.per_target_concurrency, config.per_target_gap);
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut jobs = JoinSet::new();
    loop {
        let (due, next) = sched.take_due();
        for (ip, probe, port) in due {
            let (limiter, in_flight, bus, pool, stats) =
                (limiter.clone(), in_flight.clone(), bus.clone(), pool.clone(), stats.clone());
            let (log_path, timeout, tcpfp_off) =
                (config.log_path.clone(), config.timeout, sched.tcpfp_disabled.clone());
            jobs.spawn(async move {
                let _global = in_flight.acquire_owned().await.expect("never closed");
                let _slot = limiter.acquire(ip).await;
                if probe == Probe::Tcpfp && tcpfp_off.load(Ordering::Relaxed) {
                    return;
                }
                stats.probes_run.fetch_add(1, Ordering::Relaxed);
                let addr = SocketAddr::new(ip, port);
                match run_probe(probe, addr, &ip.to_string(), timeout).await {
                    Ok(fp) => {
                        let rec = emit::record(pool.as_ref(), &*bus, &log_path, &fp).await;
                        stats.fingerprints.fetch_add(1, Ordering::Relaxed);
                        if rec.rotated_from.is_some() {
                            stats.rotations.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::info!(attacker_ip = %ip, port, probe = %probe, hash = %fp.hash, "fingerprinted");
                    }
                    Err(ProbeError::NoPrivilege(why)) => {
                        // One line, then the probe is off for this run.
                        if !tcpfp_off.swap(true, Ordering::Relaxed) {
                            tracing::warn!(reason = %why, "tcpfp probe skipped: no CAP_NET_RAW");
                        }
                    }
                    Err(e) => {
                        stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(attacker_ip = %ip, port, probe = %probe, error = %e, "probe gave nothing");
                    }
                }
            });
        }
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(sleep_until) => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            ev = async { observed.as_mut().expect("guarded").recv().await }, if observed.is_some() => match ev {
                Some(ev) => match observed_ip(&ev.payload) {
                    Some(ip) => sched.add_target(ip),
                    None => tracing::warn!(payload = %ev.payload, "attacker.observed without an attacker_ip; ignored"),
                },
                None => {
                    tracing::warn!("attacker.observed subscription ended; probing known targets only");
                    observed = None;
                }
            },
        }
    }
    // Probes in flight end within their timeout; don't wait longer.
    jobs.abort_all();
    while jobs.join_next().await.is_some() {}
    Ok(())
}
