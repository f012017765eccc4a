//! The worker registry: which known workers have been heard from, and when.
//!
//! Fed by heartbeats on `system.*.health` (which includes the daemon's own
//! `system.bus.health`). Only names on the known list ever get a row, so a
//! stray or hostile publisher cannot grow the table or invent workers.
//! Status is derived at read time from the last-seen time and the stale
//! window, so nothing has to sweep the table.
//!
//! Rows are keyed by (host, worker): with federated buses (SPEC §9) the
//! API hears the heartbeats of every host, and two hosts run workers of the
//! same name. The host of a heartbeat is the `origin` the NATS bridge
//! stamped on it (the bridge's own `--host-id`, which a remote publisher
//! cannot forge past it), else the payload's `host`, else this host. The
//! local host always shows the whole known list; a remote host shows the
//! workers it was heard from, and at most [`MAX_REMOTE_HOSTS`] remote hosts
//! are tracked so a stray publisher cannot grow the table without bound.
//!
//! The bus may be down when the API starts or die later; [`WorkerRegistry::run`]
//! loops "get the bus, subscribe, consume until the stream ends, retry",
//! so the registry picks the bus back up without an API restart.

use decnet_bus::{Bus, Envelope, RawEvent, Subscription};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use decnet_bus::sdk::AppBus;

/// Default silence after which a worker turns `stale` (SPEC §7).
pub const DEFAULT_STALE_WINDOW: Duration = Duration::from_secs(90);

/// Workers the registry tracks unless configured otherwise (SPEC §7).
pub const DEFAULT_KNOWN_WORKERS: &[&str] = &[
    "api",
    "bus",
    "collector",
    "profiler",
    "sniffer",
    "prober",
    "mutator",
    "agent",
    "forwarder",
    "updater",
    "clusterer",
];

/// Every worker heartbeat, including the bus daemon's.
pub const HEALTH_PATTERN: &str = "system.*.health";
/// The bus daemon's heartbeat (also matched by [`HEALTH_PATTERN`]; subscribed
/// separately so a bus that filtered wildcard system topics is still seen).
pub const BUS_HEALTH_TOPIC: &str = "system.bus.health";

/// Remote hosts tracked at most; heartbeats from more are ignored.
pub const MAX_REMOTE_HOSTS: usize = 256;

/// Pause between attempts to (re)subscribe when the bus is away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerHealth {
    /// Heard from within the stale window.
    Ok,
    /// Heard from before, silent for at least the stale window.
    Stale,
    /// Never heard from since the API started.
    Unknown,
}

/// One row of the registry as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerStatus {
    /// Host the worker runs on (its bus daemon's `--host-id` / `DECNET_HOST_ID`).
    pub host: String,
    pub name: String,
    pub status: WorkerHealth,
    /// Unix time the last heartbeat arrived; null when never seen.
    pub last_heartbeat_ts: Option<f64>,
    /// Seconds since that heartbeat; null when never seen.
    pub seconds_since: Option<f64>,
    /// The heartbeat payload minus `worker` and `ts` (e.g. the bus counters).
    #[schema(value_type = Object)]
    pub extra: serde_json::Value,
    /// Whether `decnet-<name>.service` is installed (filled in by the route).
    pub installed: bool,
}

#[derive(Debug, Clone)]
struct Seen {
    at: f64,
    extra: serde_json::Value,
}

#[derive(Debug)]
pub struct WorkerRegistry {
    known: Vec<String>,
    stale_after: Duration,
    local_host: String,
    /// (host, worker) → last heartbeat.
    seen: Mutex<HashMap<(String, String), Seen>>,
}

impl WorkerRegistry {
    /// A registry for this host ([`decnet_bus::sdk::host_id`]).
    pub fn new(known: Vec<String>, stale_after: Duration) -> Self {
        Self::with_local_host(known, stale_after, decnet_bus::sdk::host_id())
    }

    pub fn with_local_host(known: Vec<String>, stale_after: Duration, local_host: String) -> Self {
        WorkerRegistry { known, stale_after, local_host, seen: Mutex::new(HashMap::new()) }
    }

    pub fn local_host(&self) -> &str {
        &self.local_host
    }

    /// Whether `host` is this host or one heard from.
    pub fn is_known_host(&self, host: &str) -> bool {
        host == self.local_host || self.seen.lock().unwrap_or_else(|p| p.into_inner()).keys().any(|(h, _)| h == host)
    }

    pub fn known(&self) -> &[String] {
        &self.known
    }

    pub fn is_known(&self, name: &str) -> bool {
        self.known.iter().any(|k| k == name)
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Note a heartbeat from `worker` on this host at unix time `at`.
    /// Unknown names are ignored (returns false).
    pub fn record(&self, worker: &str, at: f64, extra: serde_json::Value) -> bool {
        let host = self.local_host.clone();
        self.record_on(&host, worker, at, extra)
    }

    /// Note a heartbeat from `worker` on `host`. Unknown names, invalid
    /// host ids and hosts past [`MAX_REMOTE_HOSTS`] are ignored (false).
    pub fn record_on(&self, host: &str, worker: &str, at: f64, extra: serde_json::Value) -> bool {
        if !self.is_known(worker) || !decnet_bus::sdk::valid_host_id(host) {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = (host.to_owned(), worker.to_owned());
        if host != self.local_host && !seen.contains_key(&key) && !seen.keys().any(|(h, _)| h == host) {
            let remote_hosts: std::collections::HashSet<&str> =
                seen.keys().map(|(h, _)| h.as_str()).filter(|h| *h != self.local_host).collect();
            if remote_hosts.len() >= MAX_REMOTE_HOSTS {
                tracing::warn!(host, max = MAX_REMOTE_HOSTS, "too many remote hosts; heartbeat ignored");
                return false;
            }
        }
        seen.insert(key, Seen { at, extra });
        true
    }

    /// Record one heartbeat envelope; the worker is the topic's middle
    /// token (the routed topic, which a publisher cannot spoof).
    pub fn record_envelope(&self, env: &Envelope) -> bool {
        self.record_parts(&env.topic, &env.payload, None)
    }

    /// Record one heartbeat as it came off the bus, `origin` included.
    pub fn record_raw(&self, event: &RawEvent) -> bool {
        #[derive(Deserialize)]
        struct Beat {
            #[serde(default)]
            payload: serde_json::Value,
            #[serde(default)]
            origin: Option<String>,
        }
        match serde_json::from_slice::<Beat>(&event.body) {
            Ok(beat) => self.record_parts(&event.topic, &beat.payload, beat.origin.as_deref()),
            Err(_) => false,
        }
    }

    fn record_parts(&self, topic: &str, payload: &serde_json::Value, origin: Option<&str>) -> bool {
        let mut parts = topic.split('.');
        let (Some("system"), Some(worker), Some("health"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let claimed = payload.get("host").and_then(serde_json::Value::as_str);
        let host = origin.or(claimed).unwrap_or(&self.local_host).to_owned();
        let extra = match payload {
            serde_json::Value::Object(map) => {
                let mut map = map.clone();
                map.remove("worker");
                map.remove("ts");
                map.remove("host");
                serde_json::Value::Object(map)
            }
            _ => serde_json::json!({}),
        };
        // Arrival time on our own clock: status must not depend on the
        // publisher's clock being right.
        self.record_on(&host, worker, decnet_bus::envelope::now_ts(), extra)
    }

    /// Every row as of unix time `now`: this host's whole known list in
    /// known-list order, then each remote host (by name) with the workers
    /// it was heard from.
    pub fn snapshot(&self, now: f64) -> Vec<WorkerStatus> {
        self.snapshot_host(now, None)
    }

    /// As [`snapshot`](Self::snapshot), only `host`'s rows when given.
    pub fn snapshot_host(&self, now: f64, host: Option<&str>) -> Vec<WorkerStatus> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut hosts: Vec<&str> = seen.keys().map(|(h, _)| h.as_str()).filter(|h| *h != self.local_host).collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts.insert(0, &self.local_host);
        let mut out = Vec::new();
        for h in hosts.into_iter().filter(|h| host.is_none_or(|want| want == *h)) {
            let local = h == self.local_host;
            for name in &self.known {
                let row = seen.get(&(h.to_owned(), name.clone()));
                if row.is_none() && !local {
                    continue;
                }
                out.push(self.row(h, name, row, now));
            }
        }
        out
    }

    fn row(&self, host: &str, name: &str, seen: Option<&Seen>, now: f64) -> WorkerStatus {
        match seen {
            Some(s) => {
                let since = (now - s.at).max(0.0);
                let status =
                    if since < self.stale_after.as_secs_f64() { WorkerHealth::Ok } else { WorkerHealth::Stale };
                WorkerStatus {
                    host: host.to_owned(),
                    name: name.to_owned(),
                    status,
                    last_heartbeat_ts: Some(s.at),
                    seconds_since: Some(since),
                    extra: s.extra.clone(),
                    installed: false,
                }
            }
            None => WorkerStatus {
                host: host.to_owned(),
                name: name.to_owned(),
                status: WorkerHealth::Unknown,
                last_heartbeat_ts: None,
                seconds_since: None,
                extra: serde_json::json!({}),
                installed: false,
            },
        }
    }

    /// Record every event from `subs` until all of them end or `cancel`.
    /// Raw events, so the `origin` an import carries is not lost.
    pub async fn consume(&self, subs: Vec<Subscription>, cancel: &CancellationToken) {
        let raw = subs.into_iter().map(|sub| {
            Box::pin(futures_util::stream::unfold(sub, |mut sub| async move {
                sub.next_raw().await.map(|event| (event, sub))
            }))
        });
        let mut merged = futures_util::stream::select_all(raw);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                next = merged.next() => match next {
                    Some(event) => { self.record_raw(&event); }
                    None => return,
                },
            }
        }
    }

    /// Subscribe through `source` and consume, forever: when the bus is
    /// away or the subscription ends, wait a moment and start again.
    pub async fn run(self: Arc<Self>, source: Arc<AppBus>, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            if let Some(bus) = source.get().await {
                match subscribe_health(bus.as_ref()).await {
                    Ok(subs) => {
                        tracing::debug!("worker registry subscribed to heartbeats");
                        self.consume(subs, &cancel).await;
                        tracing::debug!("worker registry subscription ended; resubscribing");
                    }
                    Err(e) => tracing::debug!(error = %e, "worker registry cannot subscribe yet"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            }
        }
    }
}

async fn subscribe_health(bus: &dyn Bus) -> Result<Vec<Subscription>, decnet_bus::BusError> {
    Ok(vec![bus.subscribe(HEALTH_PATTERN).await?, bus.subscribe(BUS_HEALTH_TOPIC).await?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(topic: &str, payload: serde_json::Value) -> Envelope {
        Envelope { v: 1, id: String::new(), topic: topic.into(), event_type: "health".into(), ts: 0.0, payload }
    }

    #[test]
    fn statuses_and_unknown_names() {
        let reg = WorkerRegistry::new(vec!["api".into(), "bus".into(), "mutator".into()], Duration::from_secs(90));
        assert!(reg.record("api", 1000.0, serde_json::json!({})));
        assert!(reg.record("bus", 900.0, serde_json::json!({"pid": 1})));
        assert!(!reg.record("evil", 1000.0, serde_json::json!({})));
        let snap = reg.snapshot(1010.0);
        assert_eq!(snap.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(), ["api", "bus", "mutator"]);
        assert_eq!(snap[0].status, WorkerHealth::Ok);
        assert_eq!(snap[0].seconds_since, Some(10.0));
        assert_eq!(snap[1].status, WorkerHealth::Stale);
        assert_eq!(snap[1].extra["pid"], 1);
        assert_eq!(snap[2].status, WorkerHealth::Unknown);
        assert_eq!(snap[2].last_heartbeat_ts, None);
    }

    #[test]
    fn rows_are_keyed_by_host_and_worker() {
        let reg =
            WorkerRegistry::with_local_host(vec!["bus".into(), "sniffer".into()], DEFAULT_STALE_WINDOW, "h1".into());
        let raw =
            |topic: &str, body: serde_json::Value| RawEvent { topic: topic.into(), body: body.to_string().into() };
        // Local: no origin, payload host is ours.
        assert!(reg.record_raw(&raw("system.bus.health", serde_json::json!({"payload": {"host": "h1", "pid": 1}}))));
        // Imported: the bridge's origin wins over what the payload claims.
        assert!(reg.record_raw(&raw(
            "system.sniffer.health",
            serde_json::json!({"payload": {"host": "h9", "q": 2}, "origin": "h2"})
        )));
        assert!(!reg.record_raw(&raw("system.intruder.health", serde_json::json!({"origin": "h2"}))));
        assert!(!reg.record_on("bad host", "bus", 1.0, serde_json::json!({})));
        let now = decnet_bus::envelope::now_ts();
        let rows: Vec<(String, String, WorkerHealth)> =
            reg.snapshot(now).into_iter().map(|w| (w.host, w.name, w.status)).collect();
        assert_eq!(
            rows,
            [
                ("h1".into(), "bus".into(), WorkerHealth::Ok),
                ("h1".into(), "sniffer".into(), WorkerHealth::Unknown),
                ("h2".into(), "sniffer".into(), WorkerHealth::Ok),
            ]
        );
        let h2 = reg.snapshot_host(now, Some("h2"));
        assert_eq!(h2.len(), 1);
        assert_eq!(h2[0].extra, serde_json::json!({"q": 2}), "host is a column, not an extra");
        assert!(reg.snapshot_host(now, Some("nowhere")).is_empty());
        assert!(reg.is_known_host("h2") && reg.is_known_host("h1") && !reg.is_known_host("h3"));
    }

    #[test]
    fn remote_hosts_are_bounded() {
        let reg = WorkerRegistry::with_local_host(vec!["bus".into()], DEFAULT_STALE_WINDOW, "me".into());
        for i in 0..MAX_REMOTE_HOSTS {
            assert!(reg.record_on(&format!("h{i}"), "bus", 1.0, serde_json::json!({})));
        }
        assert!(!reg.record_on("one-too-many", "bus", 1.0, serde_json::json!({})));
        assert!(reg.record_on("h0", "bus", 2.0, serde_json::json!({})), "a known host still updates");
        assert!(reg.record("bus", 2.0, serde_json::json!({})), "the local host is never refused");
    }

    #[test]
    fn envelope_topic_names_the_worker() {
        let reg = WorkerRegistry::new(vec!["bus".into()], DEFAULT_STALE_WINDOW);
        assert!(reg.record_envelope(&env("system.bus.health", serde_json::json!({"worker": "x", "ts": 1, "pid": 7}))));
        assert!(!reg.record_envelope(&env("system.bus.control", serde_json::json!({}))));
        assert!(!reg.record_envelope(&env("system.bus.health.x", serde_json::json!({}))));
        let snap = reg.snapshot(decnet_bus::envelope::now_ts());
        assert_eq!(snap[0].status, WorkerHealth::Ok);
        assert_eq!(snap[0].extra, serde_json::json!({"pid": 7}));
    }
}
