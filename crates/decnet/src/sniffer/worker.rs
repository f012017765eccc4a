//! `decnet sniffer`: the capture thread and what it emits.
//!
//! Capture and parsing run on one plain thread (a blocking read loop has
//! no business on the async runtime); events leave it without waiting:
//! the RFC 5424 line is appended (a short local write), the bus event goes
//! through the SDK's [`ThreadSafePublisher`], and the database row through
//! a bounded channel to an async task (a full channel drops the row and
//! counts it; the log line and the event are already out).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use decnet_bus::{Bus, ThreadSafePublisher};
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::capture::{Capture, NoCapturePrivilege, SNAPLEN};
use super::dedup::{Dedup, DEFAULT_MAX_KEYS};
use super::flows::{Analyzer, TrafficEvent};
use super::packet;
use crate::prober::emit::{append_line, log_line};
use crate::prober::store::{self, Source};

#[derive(Debug, Clone)]
pub struct SnifferConfig {
    pub interface: String,
    /// Deckies given on the command line (name, address).
    pub deckies: Vec<(String, IpAddr)>,
    /// Also watch the addresses of deployed deckies in this database, and store fingerprints in it.
    pub db_path: Option<PathBuf>,
    pub log_path: PathBuf,
    pub dedup_window: Duration,
    /// How often the decky addresses are re-read from the database.
    pub refresh: Duration,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub packets: AtomicU64,
    pub matched: AtomicU64,
    pub events: AtomicU64,
    pub suppressed: AtomicU64,
    pub store_dropped: AtomicU64,
    pub deckies: AtomicU64,
    /// Set once the capture socket is open (heartbeats before that say false).
    pub capturing: AtomicBool,
    /// Why the capture socket could not be opened (shown in the heartbeat).
    pub capture_error: std::sync::Mutex<Option<String>>,
}

impl Stats {
    pub fn health(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("packets", &self.packets),
            ("matched", &self.matched),
            ("events", &self.events),
            ("suppressed", &self.suppressed),
            ("store_dropped", &self.store_dropped),
            ("deckies", &self.deckies),
        ] {
            m.insert(k.into(), Value::from(v.load(Ordering::Relaxed)));
        }
        m.insert("capturing".into(), Value::from(self.capturing.load(Ordering::Relaxed)));
        if let Some(e) = self.capture_error.lock().ok().and_then(|e| e.clone()) {
            m.insert("capture_error".into(), Value::String(e));
        }
        m
    }
}

/// Parse `NAME=ADDRESS`.
pub fn parse_decky(s: &str) -> anyhow::Result<(String, IpAddr)> {
    let (name, addr) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--decky {s:?} is not NAME=ADDRESS"))?;
    decnet_bus::topics::validate_segment(name).map_err(|e| anyhow::anyhow!("--decky {s:?}: bad decky name: {e}"))?;
    let ip = addr.trim().parse().map_err(|_| anyhow::anyhow!("--decky {s:?}: {addr:?} is not an IP address"))?;
    Ok((name.to_string(), ip))
}

async fn db_deckies(pool: &SqlitePool) -> Vec<(String, IpAddr)> {
    let rows: Vec<(String, String)> =
        match sqlx::query_as("SELECT name, address FROM fleet_deckies WHERE address IS NOT NULL AND deployed = 1")
            .fetch_all(pool)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read decky addresses");
                return Vec::new();
            }
        };
    rows.into_iter().filter_map(|(n, a)| a.trim().parse().ok().map(|ip| (n, ip))).collect()
}

fn now() -> f64 {
    crate::mutator::now_secs()
}

struct Emitter {
    publisher: ThreadSafePublisher,
    log_path: PathBuf,
    store: Option<mpsc::Sender<TrafficEvent>>,
    stats: Arc<Stats>,
    log_failed: bool,
}

impl Emitter {
    fn emit(&mut self, ev: TrafficEvent) {
        let payload = ev.payload();
        let line = log_line(&ev.decky, "sniffer", ev.event_type, &payload);
        match append_line(&self.log_path, &line) {
            Ok(()) => self.log_failed = false,
            Err(e) if !self.log_failed => {
                self.log_failed = true;
                tracing::error!(path = %self.log_path.display(), error = %e, "cannot write to the ingest log (repeats not logged)");
            }
            Err(_) => {}
        }
        match decnet_bus::topics::decky_traffic(&ev.decky) {
            Ok(topic) => self.publisher.publish(topic.as_str(), ev.event_type, payload),
            Err(e) => tracing::error!(decky = %ev.decky, error = %e, "decky name is not a topic segment"),
        }
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        if let Some(store) = &self.store {
            if store.try_send(ev).is_err() {
                self.stats.store_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn capture_loop(
    cap: Capture,
    deckies: Arc<RwLock<(u64, HashMap<IpAddr, String>)>>,
    mut emitter: Emitter,
    dedup_window: f64,
    stop: Arc<AtomicBool>,
) {
    let (mut generation, initial) = {
        let d = deckies.read().expect("deckies lock");
        (d.0, d.1.clone())
    };
    let mut analyzer = Analyzer::new(initial);
    let mut dedup = Dedup::new(dedup_window, DEFAULT_MAX_KEYS);
    let mut buf = vec![0u8; SNAPLEN];
    let mut last_expire = now();
    let stats = emitter.stats.clone();
    while !stop.load(Ordering::Relaxed) {
        {
            let d = deckies.read().expect("deckies lock");
            if d.0 != generation {
                generation = d.0;
                analyzer.set_deckies(d.1.clone());
            }
        }
        let n = match cap.next(&mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => 0,
            Err(e) => {
                tracing::error!(interface = %cap.interface, error = %e, "capture read failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let t = now();
        if t - last_expire > 10.0 {
            analyzer.expire(t);
            last_expire = t;
        }
        if n == 0 {
            continue;
        }
        stats.packets.fetch_add(1, Ordering::Relaxed);
        let Some(p) = packet::parse(&buf[..n]) else { continue };
        if !analyzer.is_decky(&p.dst) && !analyzer.is_decky(&p.src) {
            continue;
        }
        stats.matched.fetch_add(1, Ordering::Relaxed);
        for ev in analyzer.on_packet(&p, t) {
            if dedup.first(ev.attacker_ip, ev.event_type, &ev.fingerprint, t) {
                emitter.emit(ev);
            } else {
                stats.suppressed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How often a capture socket that could not be opened is tried again.
pub const REOPEN_EVERY: Duration = Duration::from_secs(30);

/// Open the capture socket, or wait for the privilege to: without
/// CAP_NET_RAW the failure is logged once and put in the heartbeat, and the
/// worker stays up retrying quietly every [`REOPEN_EVERY`], rather than
/// exiting into its supervisor's restart loop, which could not fix it and
/// would repeat the same error forever. Other failures (no such interface)
/// are configuration errors and end the worker with their cause. `Ok(None)`
/// on shutdown.
async fn open_capture(interface: &str, stats: &Stats, shutdown: &CancellationToken) -> anyhow::Result<Option<Capture>> {
    let mut logged = false;
    loop {
        match Capture::open(interface) {
            Ok(cap) => {
                if logged {
                    tracing::info!(interface, "capture socket open after all");
                }
                if let Ok(mut e) = stats.capture_error.lock() {
                    *e = None;
                }
                return Ok(Some(cap));
            }
            Err(e) if e.downcast_ref::<NoCapturePrivilege>().is_none() => return Err(e),
            Err(e) => {
                if !logged {
                    logged = true;
                    tracing::error!(interface, error = %e, retry_secs = REOPEN_EVERY.as_secs(), "sniffer cannot capture; passive fingerprints are off until it can (retrying quietly)");
                }
                if let Ok(mut slot) = stats.capture_error.lock() {
                    *slot = Some(e.to_string());
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(REOPEN_EVERY) => {}
        }
    }
}

/// Run the sniffer until `shutdown`.
pub async fn run(
    config: SnifferConfig,
    bus: Arc<dyn Bus>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = match &config.db_path {
        Some(p) => Some(crate::store::open(p).await?),
        None => None,
    };
    let load = |db: Vec<(String, IpAddr)>| -> HashMap<IpAddr, String> {
        config.deckies.iter().cloned().chain(db).map(|(n, ip)| (ip, n)).collect()
    };
    let initial = load(match &pool {
        Some(p) => db_deckies(p).await,
        None => Vec::new(),
    });
    if initial.is_empty() {
        tracing::warn!("no decky addresses yet (--decky NAME=ADDR, or deployed deckies with an address); capturing nothing until there are");
    }
    stats.deckies.store(initial.len() as u64, Ordering::Relaxed);
    let Some(cap) = open_capture(&config.interface, &stats, &shutdown).await? else { return Ok(()) };
    tracing::info!(interface = %config.interface, deckies = ?initial, "sniffer capturing");
    stats.capturing.store(true, Ordering::Relaxed);
    let deckies = Arc::new(RwLock::new((0u64, initial)));

    let store_tx = pool.clone().map(|pool| {
        let (tx, mut rx) = mpsc::channel::<TrafficEvent>(4096);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let ip = ev.attacker_ip.to_string();
                if let Err(e) = store::upsert_retrying(
                    &pool,
                    &ip,
                    ev.event_type,
                    ev.decky_port,
                    &ev.fingerprint,
                    &ev.payload(),
                    Source::Sniffer,
                    now(),
                )
                .await
                {
                    tracing::error!(attacker_ip = %ip, error = %e, "cannot store a sniffer fingerprint");
                }
            }
        });
        tx
    });
    let emitter = Emitter {
        publisher: ThreadSafePublisher::current(bus.clone()),
        log_path: config.log_path.clone(),
        store: store_tx,
        stats: stats.clone(),
        log_failed: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (deckies, stop) = (deckies.clone(), stop.clone());
        let window = config.dedup_window.as_secs_f64();
        std::thread::Builder::new()
            .name("sniffer-capture".into())
            .spawn(move || capture_loop(cap, deckies, emitter, window, stop))?
    };
    let mut refresh = tokio::time::interval(config.refresh.max(Duration::from_secs(1)));
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refresh.tick(), if pool.is_some() => {
                let fresh = load(db_deckies(pool.as_ref().expect("guarded")).await);
                let mut d = deckies.write().expect("deckies lock");
                if fresh != d.1 {
                    tracing::info!(deckies = ?fresh, "decky addresses changed");
                    stats.deckies.store(fresh.len() as u64, Ordering::Relaxed);
                    d.0 += 1;
                    d.1 = fresh;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    stats.capturing.store(false, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(())
}
