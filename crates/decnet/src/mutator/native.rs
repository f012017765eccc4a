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
use crate::decky::shared_port::SharedPorts;
use crate::decky::sink::LineSink;
use crate::decky::{self, DeckyContext, Limits};

/// Settings of a live native driver.
#[derive(Debug, Clone)]
pub struct NativeOptions {
    /// Where the lines go: the collector's UNIX socket, or a TCP listener.
    pub collector: decky::sink::CollectorTarget,
    /// Added to every default port (e.g. 10000 puts ssh on 10022), for
    /// hosts where ports below 1024 are not available.
    pub port_offset: u16,
    /// Per-service port overrides (win over default + offset).
    pub ports: HashMap<String, u16>,
    pub limits: Limits,
    /// Seed of the deckies' SSH host keys.
    pub host_key_seed: Vec<u8>,
    /// Where the deckies' SSH host keys are kept across restarts (RSA
    /// takes seconds per decky to make); `None`: made at every start.
    pub host_key_cache: Option<std::path::PathBuf>,
    /// Fixed addresses by decky name (win over the database).
    pub addresses: HashMap<String, IpAddr>,
    /// Persona overrides by decky name (a JSON object of persona fields),
    /// merged over the derived persona after the fleet file's.
    pub personas: HashMap<String, serde_json::Value>,
    /// Bytes of lines held while the collector is away.
    pub queue_bytes: usize,
    /// Where shell sessions are recorded (`<dir>/<decky>/<sid>.cast`,
    /// asciicast v2); `None`: not recorded.
    pub recordings: Option<std::path::PathBuf>,
    /// Network namespaces by decky name (`/run/netns/NAME`): the decky's
    /// sockets are made inside it, so it can hold an address of its own.
    pub netns: HashMap<String, std::path::PathBuf>,
    /// Place each decky on a real LAN, in a namespace of its own (see
    /// [`crate::mutator::lan`]); `None`: addresses must exist already.
    pub lan: Option<crate::mutator::lan::Lan>,
    /// The quarantine for what attackers bring (files named by sha256,
    /// shared by every decky of the driver); `None`: nothing is stored.
    pub artifacts: Option<std::path::PathBuf>,
    pub artifact_limits: decky::artifacts::StoreLimits,
    /// Whether and from where payloads attackers download are fetched
    /// (off by default).
    pub fetch: decky::fetch::FetchSettings,
    /// Whether loopback deckies share one listening socket per port
    /// ([`decky::shared_port`]) instead of a socket each.
    pub share_ports: SharePorts,
}

/// When loopback deckies share one listening socket per port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SharePorts {
    /// When the fleet's sockets would not fit under the open-file limit
    /// (each decky keeps its own until then).
    #[default]
    Auto,
    /// One socket per port for the whole loopback fleet, from the start.
    Always,
    /// A socket per decky and service; deckies past the limit fail with the cause.
    Never,
}

impl NativeOptions {
    pub fn new(collector: impl Into<decky::sink::CollectorTarget>, host_key_seed: Vec<u8>) -> Self {
        NativeOptions {
            collector: collector.into(),
            port_offset: 0,
            ports: HashMap::new(),
            limits: Limits::default(),
            host_key_seed,
            host_key_cache: None,
            addresses: HashMap::new(),
            personas: HashMap::new(),
            queue_bytes: decky::sink::DEFAULT_QUEUE_BYTES,
            recordings: None,
            netns: HashMap::new(),
            lan: None,
            artifacts: None,
            artifact_limits: decky::artifacts::StoreLimits::default(),
            fetch: decky::fetch::FetchSettings::default(),
            share_ports: SharePorts::default(),
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

/// Addresses in use, and where the next free one is looked for (the scan
/// resumes after the last assignment instead of starting over).
struct TakenAddresses {
    set: BTreeSet<IpAddr>,
    /// Each decky's address as read with `set` (kept up to date by this
    /// driver's assignments). Only a deferred driver trusts it: a one-shot
    /// deploy is the one assigning, while the daemon must see addresses
    /// other processes assigned after it started.
    by_name: HashMap<String, String>,
    next: u32,
}

struct RunningDecky {
    address: IpAddr,
    ctx: Arc<DeckyContext>,
    listeners: BTreeMap<String, ServiceListener>,
    /// The namespace the driver made for the decky on the LAN (removed
    /// with it), if any.
    placed: Option<std::path::PathBuf>,
}

impl RunningDecky {
    /// Close its ports, then remove its namespace when the driver made one.
    async fn close(self, lan: Option<&crate::mutator::lan::Lan>) {
        for l in self.listeners.into_values() {
            l.close().await;
        }
        if let (Some(lan), Some(_)) = (lan, &self.placed) {
            if let Err(e) = lan.remove(&self.ctx.name).await {
                tracing::warn!(decky = %self.ctx.name, "namespace not removed: {e}");
            }
        }
    }
}

/// A decky's address as stored in the fleet table.
fn parse_address(decky: &str, text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| format!("decky {decky} has an invalid address {text:?}"))
}

/// Where automatically assigned addresses start (deckies with no address
/// in the fleet file): 127.2.0.1, 127.2.0.2, …, all loopback on Linux.
const AUTO_BASE: Ipv4Addr = Ipv4Addr::new(127, 2, 0, 1);

pub struct NativeDriver {
    /// `None`: deferred (a one-shot process that opens nothing).
    live: Option<Live>,
    pool: Option<SqlitePool>,
    fixed: HashMap<String, IpAddr>,
    /// Where addresses for deckies without one are drawn (FIRST, LAST):
    /// the LAN's range, `None` for loopback ones.
    auto_range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Addresses known taken, read from the database once and kept up to
    /// date by this driver's own assignments: assigning N addresses reads
    /// the fleet once, not N times.
    taken: tokio::sync::Mutex<Option<TakenAddresses>>,
    /// What was last recorded of each fleet decky being served ("ok" or
    /// the cause it is not), so the database and the log hear of a change
    /// once instead of on every pass.
    serving: tokio::sync::Mutex<HashMap<String, String>>,
    deckies: tokio::sync::Mutex<HashMap<(String, String), RunningDecky>>,
}

struct Live {
    options: NativeOptions,
    sink: LineSink,
    artifacts: Option<Arc<decky::artifacts::Artifacts>>,
    stop: CancellationToken,
    /// The shared listening sockets, used while `sharing` is on.
    shared: Arc<SharedPorts>,
    sharing: std::sync::atomic::AtomicBool,
    /// The fleet size the open-file budget was last judged for (said once
    /// per size, not on every pass).
    budget_for: std::sync::Mutex<Option<u64>>,
}

impl Live {
    fn sharing(&self) -> bool {
        self.sharing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Judge the open-file budget for a fleet of `listening` sockets: turn
    /// sharing on when it is needed and allowed (the caller then moves the
    /// loopback deckies onto shared sockets), or say up front that deckies
    /// past the limit will not listen. Returns whether sharing was just
    /// turned on.
    fn judge_budget(&self, listening: u64) -> bool {
        let mut judged = self.budget_for.lock().unwrap_or_else(|e| e.into_inner());
        if *judged == Some(listening) {
            return false;
        }
        *judged = Some(listening);
        let limit = crate::rlimit::nofile_soft().unwrap_or(u64::MAX);
        let short = crate::rlimit::shortfall(listening, limit);
        let want = match self.options.share_ports {
            SharePorts::Always => true,
            SharePorts::Never => false,
            // On a LAN every decky is in a namespace of its own: nothing to share.
            SharePorts::Auto => short.is_some() && self.options.lan.is_none(),
        };
        if want && !self.sharing() {
            self.sharing.store(true, std::sync::atomic::Ordering::Relaxed);
            match short {
                Some(_) => tracing::warn!(
                    listening,
                    limit,
                    "the fleet's services would not fit under the open-file limit with a socket each: \
                     loopback deckies share one listening socket per port from now on (a port a decky \
                     does not serve resets instead of refusing)"
                ),
                None => tracing::info!(
                    "loopback deckies share one listening socket per port (--native-shared-ports always)"
                ),
            }
            return true;
        }
        if let (Some(said), false) = (short, self.sharing()) {
            tracing::error!("{said}");
        }
        false
    }
}

impl NativeDriver {
    /// A driver that really listens, shipping lines to `options.collector`.
    pub fn live(options: NativeOptions, pool: Option<SqlitePool>) -> NativeDriver {
        let stop = CancellationToken::new();
        let sink = LineSink::start(options.collector.clone(), options.queue_bytes, stop.clone());
        // An unusable quarantine folder costs the captures, not the deckies.
        let artifacts = options.artifacts.as_ref().and_then(|dir| {
            match decky::artifacts::ArtifactStore::open(dir, options.artifact_limits) {
                Ok(store) => Some(Arc::new(decky::artifacts::Artifacts::new(store, options.fetch.clone()))),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "artifact quarantine unavailable, nothing will be stored: {e}");
                    None
                }
            }
        });
        let sharing = std::sync::atomic::AtomicBool::new(false);
        let (shared, budget_for) = (SharedPorts::new(), std::sync::Mutex::new(None));
        NativeDriver {
            fixed: options.addresses.clone(),
            auto_range: options.lan.as_ref().and_then(|l| l.range),
            taken: tokio::sync::Mutex::new(None),
            serving: tokio::sync::Mutex::new(HashMap::new()),
            live: Some(Live { options, sink, artifacts, stop, shared, sharing, budget_for }),
            pool,
            deckies: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A driver for one-shot commands: settles addresses, opens nothing.
    pub fn deferred(pool: Option<SqlitePool>) -> NativeDriver {
        NativeDriver {
            live: None,
            pool,
            fixed: HashMap::new(),
            auto_range: None,
            taken: tokio::sync::Mutex::new(None),
            serving: tokio::sync::Mutex::new(HashMap::new()),
            deckies: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Draw new deckies' addresses from `range` (a LAN's) instead of
    /// loopback: one-shot commands settle addresses the daemon then places.
    pub fn with_auto_range(mut self, range: Option<(Ipv4Addr, Ipv4Addr)>) -> NativeDriver {
        self.auto_range = range;
        self
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

    /// Close every listener and remove the namespaces made on a LAN
    /// (process shutdown).
    pub async fn shutdown(&self) {
        let drained: Vec<RunningDecky> = self.deckies.lock().await.drain().map(|(_, d)| d).collect();
        let lan = self.live.as_ref().and_then(|l| l.options.lan.as_ref());
        for d in drained {
            d.close(lan).await;
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
        let fleet = self.pool.as_ref().filter(|_| project == FLEET_PROJECT);
        if let (Some(pool), Some(_)) = (fleet, &self.live) {
            if let Some(text) = crate::store::fleet::address_of(pool, decky).await.map_err(|e| e.to_string())? {
                return parse_address(decky, &text);
            }
        }
        let mut cache = self.taken.lock().await;
        if cache.is_none() {
            let mut set: BTreeSet<IpAddr> = self.fixed.values().copied().collect();
            set.extend(running.values().map(|d| d.address));
            let mut by_name = HashMap::new();
            if let Some(pool) = &self.pool {
                by_name = crate::store::fleet::addresses(pool).await.map_err(|e| e.to_string())?;
                set.extend(by_name.values().filter_map(|t| t.parse::<IpAddr>().ok()));
            }
            *cache = Some(TakenAddresses { set, by_name, next: 0 });
        }
        let taken = cache.as_mut().expect("filled above");
        if let (Some(_), None) = (fleet, &self.live) {
            if let Some(text) = taken.by_name.get(decky) {
                return parse_address(decky, text);
            }
        }
        // On a LAN, the operator's range; else loopback addresses.
        let range = self.auto_range;
        let (base, count) = match range {
            Some((first, last)) => (u32::from(first), u32::from(last) - u32::from(first) + 1),
            None => (u32::from(AUTO_BASE), 65_000),
        };
        let (index, address) = (0..count)
            .map(|i| (taken.next + i) % count)
            .map(|i| (i, IpAddr::V4(Ipv4Addr::from(base + i))))
            .find(|(_, a)| !taken.set.contains(a))
            .ok_or_else(|| match range {
                Some((first, last)) => format!("no free address left in the LAN range {first}-{last}"),
                None => "no free automatic address left".to_string(),
            })?;
        taken.set.insert(address);
        taken.by_name.insert(decky.to_string(), address.to_string());
        taken.next = index + 1;
        if let (Some(pool), true) = (&self.pool, project == FLEET_PROJECT) {
            crate::store::fleet::set_address(pool, decky, &address.to_string()).await.map_err(|e| e.to_string())?;
            tracing::info!(decky, %address, "assigned an address to the decky");
        }
        Ok(address)
    }

    /// The persona of a decky about to open its first listener: derived
    /// from its name and archetype, with the fleet file's overrides.
    async fn persona_for(&self, project: &str, decky: &str, address: IpAddr) -> Result<decky::Persona, String> {
        let (archetype, overrides) = match (&self.pool, project == FLEET_PROJECT) {
            (Some(pool), true) => crate::store::fleet::persona_inputs(pool, decky).await.map_err(|e| e.to_string())?,
            _ => (None, None),
        };
        let now = crate::mutator::now_secs() as i64;
        let mut persona = decky::Persona::derive(decky, archetype.as_deref(), Some(address), now);
        if let Some(o) = overrides {
            persona = persona.with_overrides(&o).map_err(|e| e.to_string())?;
        }
        if let Some(o) = self.live.as_ref().and_then(|l| l.options.personas.get(decky)) {
            persona = persona.with_overrides(o).map_err(|e| e.to_string())?;
        }
        Ok(persona)
    }

    /// [`Self::apply_live`], then record whether the fleet decky is served
    /// (database and log), when that changed.
    async fn apply_and_note(&self, live: &Live, change: &Change<'_>) -> Result<(), String> {
        let result = self.apply_live(live, change).await;
        if change.project != FLEET_PROJECT || change.is_teardown() {
            return result;
        }
        let now = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        };
        let mut noted = self.serving.lock().await;
        if noted.get(change.decky) != Some(&now) {
            match &result {
                Ok(()) if noted.contains_key(change.decky) => {
                    tracing::info!(decky = change.decky, "the decky is served again")
                }
                Ok(()) => {}
                Err(e) => tracing::warn!(decky = change.decky, error = %e, "cannot serve the decky"),
            }
            if let Some(pool) = &self.pool {
                if let Err(e) = crate::store::fleet::set_serving(pool, change.decky, Some(&now)).await {
                    tracing::warn!(decky = change.decky, "cannot record whether the decky is served: {e}");
                }
            }
            noted.insert(change.decky.to_string(), now);
        }
        result
    }

    async fn apply_live(&self, live: &Live, change: &Change<'_>) -> Result<(), String> {
        let key = (change.project.to_string(), change.decky.to_string());
        let mut map = self.deckies.lock().await;
        if change.is_teardown() {
            if let Some(d) = map.remove(&key) {
                d.close(live.options.lan.as_ref()).await;
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
                d.close(live.options.lan.as_ref()).await;
            }
        }
        let (ctx, placed) = match map.get(&key) {
            Some(d) => (d.ctx.clone(), d.placed.clone()),
            None => {
                let ctx = DeckyContext::keeping(
                    change.decky,
                    self.persona_for(change.project, change.decky, address).await?,
                    live.sink.clone(),
                    live.options.limits.clone(),
                    &live.options.host_key_seed,
                    decky::Keeping {
                        recordings: live.options.recordings.clone(),
                        artifacts: live.artifacts.clone(),
                        host_keys: live.options.host_key_cache.clone(),
                    },
                );
                let placed = match &live.options.lan {
                    Some(_) if address.is_loopback() => {
                        return Err(format!(
                            "decky {} has the loopback address {address}: on a LAN give it an address in the fleet file or set --lan-range",
                            change.decky
                        ))
                    }
                    Some(lan) => Some(lan.place(change.decky, address, &ctx.persona).await?),
                    None => None,
                };
                (ctx, placed)
            }
        };
        let mut opened: Vec<ServiceListener> = Vec::new();
        for service in &wanted {
            if map.get(&key).is_some_and(|d| d.listeners.contains_key(*service)) {
                continue;
            }
            let port = live.options.port_for(service).unwrap_or(0);
            let netns = placed.as_deref().or_else(|| live.options.netns.get(change.decky).map(|p| p.as_path()));
            let at = SocketAddr::new(address, port);
            let opened_now = match netns {
                None if live.sharing() => ServiceListener::open_shared(ctx.clone(), service, at, &live.shared),
                _ => ServiceListener::open_in(ctx.clone(), service, at, netns),
            };
            match opened_now {
                Ok(l) => opened.push(l),
                Err(e) => {
                    for l in opened {
                        l.close().await;
                    }
                    // A decky that never opened a port keeps no namespace.
                    if let (Some(lan), Some(_), false) = (&live.options.lan, &placed, map.contains_key(&key)) {
                        let _ = lan.remove(change.decky).await;
                    }
                    return Err(e.to_string());
                }
            }
        }
        let entry = map.entry(key).or_insert_with(|| RunningDecky { address, ctx, listeners: BTreeMap::new(), placed });
        let removed: Vec<String> = entry.listeners.keys().filter(|s| !wanted.contains(s.as_str())).cloned().collect();
        for service in removed {
            if let Some(l) = entry.listeners.remove(&service) {
                l.close().await;
            }
        }
        for l in opened {
            tracing::info!(decky = change.decky, service = %l.service, addr = %l.addr, companions = ?l.companions, "native service listening");
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

    fn serves(&self, service: &str) -> bool {
        decky::is_served(service)
    }

    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError> {
        let fail = |reason: String| DeployError { driver: "native", decky: change.decky.to_string(), reason };
        match &self.live {
            Some(live) => self.apply_and_note(live, change).await.map_err(fail),
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
                    "collector": live.options.collector.to_string(),
                    "lines_sent": c.sent.load(Relaxed),
                    "lines_dropped": c.dropped.load(Relaxed),
                    "bytes_dropped": c.dropped_bytes.load(Relaxed),
                    "lines_queued": live.sink.backlog(),
                    "bytes_queued": live.sink.backlog_bytes(),
                    "collector_connects": c.connects.load(Relaxed),
                    "sessions": crate::decky::listener::SESSIONS_ADMITTED.load(Relaxed),
                    "sessions_refused_busy": crate::decky::listener::REFUSED_BUSY.load(Relaxed),
                    "sessions_refused_source": crate::decky::listener::REFUSED_SOURCE.load(Relaxed),
                    "refusals_unlogged": crate::decky::listener::REFUSED_UNLOGGED.load(Relaxed),
                    "sessions_log_budget_exhausted": crate::decky::event::LOG_BUDGET_EXHAUSTED.load(Relaxed),
                    "datagrams_refused": crate::decky::udp::DATAGRAMS_REFUSED.load(Relaxed),
                    "datagram_replies_oversize": crate::decky::udp::REPLIES_OVERSIZE.load(Relaxed),
                    "datagram_lines_dropped": crate::decky::udp::LINES_DROPPED.load(Relaxed),
                    "listeners": self.deckies.try_lock().map(|m| m.values().map(|d| d.listeners.len()).sum::<usize>()).ok(),
                    "shared_ports": live.sharing().then(|| live.shared.listening()),
                    "shared_port_resets": crate::decky::shared_port::UNROUTED.load(Relaxed),
                }),
            );
        }
        m
    }

    async fn shutdown(&self) {
        // The inherent method (inherent methods win over the trait's).
        NativeDriver::shutdown(self).await;
    }

    fn wants_fleet(&self) -> bool {
        false
    }

    async fn sync(&self, project: &str, deployed: &[DeckyShape]) {
        let Some(live) = &self.live else { return };
        let listening = deployed.iter().flat_map(|d| &d.services).filter(|s| decky::default_port(s).is_some()).count();
        if live.judge_budget(listening as u64) {
            // Sharing just began: the loopback deckies' own sockets close
            // here and the pass below reopens them on the shared ones.
            let (moved, listeners): (usize, Vec<ServiceListener>) = {
                let mut map = self.deckies.lock().await;
                let own = map
                    .values_mut()
                    .filter(|d| d.placed.is_none() && !live.options.netns.contains_key(&d.ctx.name))
                    .map(|d| std::mem::take(&mut d.listeners))
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>();
                (own.len(), own.into_iter().flat_map(BTreeMap::into_values).collect())
            };
            if moved > 0 {
                tracing::warn!(
                    deckies = moved,
                    "moving loopback deckies onto the shared sockets; their open sessions end"
                );
            }
            for l in listeners {
                l.close().await;
            }
        }
        let names: std::collections::HashSet<&str> = deployed.iter().map(|s| s.name.as_str()).collect();
        let stale: Vec<String> = {
            let map = self.deckies.lock().await;
            map.keys().filter(|(p, d)| p == project && !names.contains(d.as_str())).map(|(_, d)| d.clone()).collect()
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
                // Failures are logged (once per cause) and recorded there.
                let _ = self.apply_and_note(live, &change).await;
            }
        }
    }
}
