//! The `native` deploy driver: deckies as in-process honeypot listeners
//! (see [`crate::decky`]) on each decky's own address.
//!
//! A change opens the listeners of the services added and closes those of
//! the services removed, so after `apply` returns an old port refuses
//! connections and a new one answers. Opening comes first and is all or
//! nothing: if one new port cannot be bound (in use, below 1024 without
//! the right, address not on this host) the ports opened for this change
//! are closed again, nothing else is touched, and the deploy fails naming
//! `address:port` and the cause, so the mutation is not recorded.
//!
//! Listeners live in the process that applied the change. The mutator
//! daemon is that process; one-shot commands (`decnet deploy`, `teardown`,
//! `mutate --now`) get a *deferred* driver that only settles the decky's
//! address, and the daemon brings its listeners in line with the database
//! on every pass of its loop ([`DeployDriver::sync`]).
//!
//! Services without a native honeypot (smb, rdp, …) are accepted and
//! logged as not served: refusing them would make every archetype that
//! names one undeployable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use super::drivers::{Change, DeckyShape, DeployDriver, DeployError, FLEET_PROJECT};
use crate::decky::listener::ServiceListener;
use crate::decky::sink::LineSink;
use crate::decky::{self, DeckyContext, Limits};

/// Settings of a live native driver.
#[derive(Debug, Clone)]
pub struct NativeOptions {
    /// Where the lines go (the collector's TCP syslog listener).
    pub collector: SocketAddr,
    /// Added to every default port (e.g. 10000 puts ssh on 10022), for
    /// hosts where ports below 1024 are not available.
    pub port_offset: u16,
    /// Per-service port overrides (win over default + offset).
    pub ports: HashMap<String, u16>,
    pub limits: Limits,
    /// Seed of the deckies' SSH host keys.
    pub host_key_seed: Vec<u8>,
    /// Fixed addresses by decky name (win over the database).
    pub addresses: HashMap<String, IpAddr>,
    /// Lines held while the collector is away.
    pub queue: usize,
}

impl NativeOptions {
    pub fn new(collector: SocketAddr, host_key_seed: Vec<u8>) -> Self {
        NativeOptions {
            collector,
            port_offset: 0,
            ports: HashMap::new(),
            limits: Limits::default(),
            host_key_seed,
            addresses: HashMap::new(),
            queue: decky::sink::DEFAULT_QUEUE,
        }
    }

    /// The port `service` listens on, `None` when it has no native honeypot.
    pub fn port_for(&self, service: &str) -> Option<u16> {
        let default = decky::default_port(service)?;
        Some(self.ports.get(service).copied().unwrap_or_else(|| default.saturating_add(self.port_offset)))
    }
}

/// The SSH host-key seed under `home`, created (32 random bytes, mode
/// 0600) on first use so deckies keep their host keys across restarts.
pub fn load_host_key_seed(home: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join("decky_host_key.seed");
    if let Ok(seed) = std::fs::read(&path) {
        if seed.len() >= 32 {
            return Ok(seed);
        }
    }
    std::fs::create_dir_all(home)?;
    let mut seed = vec![0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed[..]);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(&seed)?;
    Ok(seed)
}

struct RunningDecky {
    address: IpAddr,
    ctx: Arc<DeckyContext>,
    listeners: BTreeMap<String, ServiceListener>,
}

/// Where automatically assigned addresses start (deckies with no address
/// in the fleet file): 127.2.0.1, 127.2.0.2, …, all loopback on Linux.
const AUTO_BASE: Ipv4Addr = Ipv4Addr::new(127, 2, 0, 1);

pub struct NativeDriver {
    /// `None`: deferred (a one-shot process that opens nothing).
    live: Option<Live>,
    pool: Option<SqlitePool>,
    fixed: HashMap<String, IpAddr>,
    deckies: tokio::sync::Mutex<HashMap<(String, String), RunningDecky>>,
}

struct Live {
    options: NativeOptions,
    sink: LineSink,
    stop: CancellationToken,
}

impl NativeDriver {
    /// A driver that really listens, shipping lines to `options.collector`.
    pub fn live(options: NativeOptions, pool: Option<SqlitePool>) -> NativeDriver {
        let stop = CancellationToken::new();
        let sink = LineSink::start(options.collector, options.queue, stop.clone());
        NativeDriver {
            fixed: options.addresses.clone(),
            live: Some(Live { options, sink, stop }),
            pool,
            deckies: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A driver for one-shot commands: settles addresses, opens nothing.
    pub fn deferred(pool: Option<SqlitePool>) -> NativeDriver {
        NativeDriver { live: None, pool, fixed: HashMap::new(), deckies: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// The sink (for counters), when live.
    pub fn sink(&self) -> Option<&LineSink> {
        self.live.as_ref().map(|l| &l.sink)
    }

    /// What `decky` of `project` listens on now, by service.
    pub async fn listening(&self, project: &str, decky: &str) -> Vec<(String, SocketAddr)> {
        let map = self.deckies.lock().await;
        map.get(&(project.to_string(), decky.to_string()))
            .map(|d| d.listeners.values().map(|l| (l.service.clone(), l.addr)).collect())
            .unwrap_or_default()
    }

    /// Close every listener (process shutdown).
    pub async fn shutdown(&self) {
        let drained: Vec<RunningDecky> = self.deckies.lock().await.drain().map(|(_, d)| d).collect();
        for d in drained {
            for l in d.listeners.into_values() {
                l.close().await;
            }
        }
        if let Some(live) = &self.live {
            live.stop.cancel();
        }
    }

    /// The decky's address: fixed, running, in the database, else the
    /// first free automatic one (saved for fleet deckies, so restarts and
    /// other processes agree).
    async fn address_for(
        &self,
        running: &HashMap<(String, String), RunningDecky>,
        project: &str,
        decky: &str,
    ) -> Result<IpAddr, String> {
        if let Some(a) = self.fixed.get(decky) {
            return Ok(*a);
        }
        if let Some(d) = running.get(&(project.to_string(), decky.to_string())) {
            return Ok(d.address);
        }
        let mut taken: BTreeSet<IpAddr> = running.values().map(|d| d.address).collect();
        taken.extend(self.fixed.values().copied());
        if let Some(pool) = &self.pool {
            let known = crate::store::fleet::addresses(pool).await.map_err(|e| e.to_string())?;
            if project == FLEET_PROJECT {
                if let Some(text) = known.get(decky) {
                    return text.parse().map_err(|_| format!("decky {decky} has an invalid address {text:?}"));
                }
            }
            taken.extend(known.values().filter_map(|t| t.parse::<IpAddr>().ok()));
        }
        let base = u32::from(AUTO_BASE);
        let address = (0..65_000u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(base + i)))
            .find(|a| !taken.contains(a))
            .ok_or("no free automatic address left")?;
        if let (Some(pool), true) = (&self.pool, project == FLEET_PROJECT) {
            crate::store::fleet::set_address(pool, decky, &address.to_string()).await.map_err(|e| e.to_string())?;
            tracing::info!(decky, %address, "assigned an address to the decky");
        }
        Ok(address)
    }

    async fn apply_live(&self, live: &Live, change: &Change<'_>) -> Result<(), String> {
        let key = (change.project.to_string(), change.decky.to_string());
        let mut map = self.deckies.lock().await;
        if change.is_teardown() {
            if let Some(d) = map.remove(&key) {
                for l in d.listeners.into_values() {
                    l.close().await;
                }
                tracing::info!(decky = change.decky, "native decky torn down; its ports are closed");
            }
            return Ok(());
        }
        let address = self.address_for(&map, change.project, change.decky).await?;
        let wanted: BTreeSet<&str> =
            change.services.iter().map(String::as_str).filter(|s| decky::default_port(s).is_some()).collect();
        let unserved: Vec<&str> =
            change.services.iter().map(String::as_str).filter(|s| decky::default_port(s).is_none()).collect();
        if !unserved.is_empty() {
            tracing::info!(decky = change.decky, services = %unserved.join(","), "no native honeypot for these services; nothing listens for them");
        }
        // A decky that moved address closes everything first.
        if map.get(&key).is_some_and(|d| d.address != address) {
            if let Some(d) = map.remove(&key) {
                for l in d.listeners.into_values() {
                    l.close().await;
                }
            }
        }
        let ctx = match map.get(&key) {
            Some(d) => d.ctx.clone(),
            None => DeckyContext::new(
                change.decky,
                live.sink.clone(),
                live.options.limits.clone(),
                decky::ssh::host_key(&live.options.host_key_seed, change.decky),
            ),
        };
        let mut opened: Vec<ServiceListener> = Vec::new();
        for service in &wanted {
            if map.get(&key).is_some_and(|d| d.listeners.contains_key(*service)) {
                continue;
            }
            let port = live.options.port_for(service).unwrap_or(0);
            match ServiceListener::open(ctx.clone(), service, SocketAddr::new(address, port)) {
                Ok(l) => opened.push(l),
                Err(e) => {
                    for l in opened {
                        l.close().await;
                    }
                    return Err(e.to_string());
                }
            }
        }
        let entry = map.entry(key).or_insert_with(|| RunningDecky { address, ctx, listeners: BTreeMap::new() });
        let removed: Vec<String> = entry.listeners.keys().filter(|s| !wanted.contains(s.as_str())).cloned().collect();
        for service in removed {
            if let Some(l) = entry.listeners.remove(&service) {
                l.close().await;
            }
        }
        for l in opened {
            tracing::info!(decky = change.decky, service = %l.service, addr = %l.addr, "native service listening");
            entry.listeners.insert(l.service.clone(), l);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DeployDriver for NativeDriver {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError> {
        let fail = |reason: String| DeployError { driver: "native", decky: change.decky.to_string(), reason };
        match &self.live {
            Some(live) => self.apply_live(live, change).await.map_err(fail),
            None => {
                if !change.is_teardown() {
                    let map = self.deckies.lock().await;
                    let address = self.address_for(&map, change.project, change.decky).await.map_err(fail)?;
                    tracing::info!(decky = change.decky, %address, services = %change.services.join(","),
                        "native: recorded; the running mutator opens the listeners");
                }
                Ok(())
            }
        }
    }

    /// Sink and listener counters, so an operator sees lines dropped or a
    /// decky at its session limit on the dashboard.
    fn health(&self) -> serde_json::Map<String, serde_json::Value> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut m = serde_json::Map::new();
        if let Some(live) = &self.live {
            let c = live.sink.counters();
            m.insert(
                "native".into(),
                serde_json::json!({
                    "lines_sent": c.sent.load(Relaxed),
                    "lines_dropped": c.dropped.load(Relaxed),
                    "lines_queued": live.sink.backlog(),
                    "collector_connects": c.connects.load(Relaxed),
                    "sessions_refused_busy": crate::decky::listener::REFUSED_BUSY.load(Relaxed),
                    "listeners": self.deckies.try_lock().map(|m| m.values().map(|d| d.listeners.len()).sum::<usize>()).ok(),
                }),
            );
        }
        m
    }

    async fn sync(&self, project: &str, deployed: &[DeckyShape]) {
        let Some(live) = &self.live else { return };
        let stale: Vec<String> = {
            let map = self.deckies.lock().await;
            map.keys()
                .filter(|(p, d)| p == project && !deployed.iter().any(|s| &s.name == d))
                .map(|(_, d)| d.clone())
                .collect()
        };
        for decky in stale {
            let change = Change { project, decky: &decky, services: &[], fleet: deployed };
            let _ = self.apply_live(live, &change).await;
        }
        for shape in deployed {
            let wanted: BTreeSet<&str> =
                shape.services.iter().map(String::as_str).filter(|s| decky::default_port(s).is_some()).collect();
            let in_line = {
                let map = self.deckies.lock().await;
                map.get(&(project.to_string(), shape.name.clone()))
                    .map(|d| d.listeners.keys().map(String::as_str).collect::<BTreeSet<&str>>() == wanted)
                    .unwrap_or(false)
            };
            if !in_line {
                let change = Change { project, decky: &shape.name, services: &shape.services, fleet: deployed };
                if let Err(e) = self.apply_live(live, &change).await {
                    tracing::warn!(decky = %shape.name, error = %e, "cannot open the decky's listeners");
                }
            }
        }
    }
}
