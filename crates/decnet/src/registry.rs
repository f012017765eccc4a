//! The worker registry: which known workers have been heard from, and when.
//!
//! Fed by heartbeats on `system.*.health` (which includes the daemon's own
//! `system.bus.health`). Only names on the known list ever get a row, so a
//! stray or hostile publisher cannot grow the table or invent workers.
//! Status is derived at read time from the last-seen time and the stale
//! window, so nothing has to sweep the table.
//!
//! The bus may be down when the API starts or die later; [`WorkerRegistry::run`]
//! loops "get the bus, subscribe, consume until the stream ends, retry",
//! so the registry picks the bus back up without an API restart.

use decnet_bus::{Bus, Envelope, Subscription};
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
    seen: Mutex<HashMap<String, Seen>>,
}

impl WorkerRegistry {
    pub fn new(known: Vec<String>, stale_after: Duration) -> Self {
        WorkerRegistry { known, stale_after, seen: Mutex::new(HashMap::new()) }
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

    /// Note a heartbeat from `worker` at unix time `at`. Unknown names are
    /// ignored (returns false).
    pub fn record(&self, worker: &str, at: f64, extra: serde_json::Value) -> bool {
        if !self.is_known(worker) {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(worker.to_owned(), Seen { at, extra });
        true
    }

    /// Record one heartbeat envelope; the worker is the topic's middle
    /// token (the routed topic, which a publisher cannot spoof).
    pub fn record_envelope(&self, env: &Envelope) -> bool {
        let mut parts = env.topic.split('.');
        let (Some("system"), Some(worker), Some("health"), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let extra = match &env.payload {
            serde_json::Value::Object(map) => {
                let mut map = map.clone();
                map.remove("worker");
                map.remove("ts");
                serde_json::Value::Object(map)
            }
            _ => serde_json::json!({}),
        };
        // Arrival time on our own clock: status must not depend on the
        // publisher's clock being right.
        self.record(worker, decnet_bus::envelope::now_ts(), extra)
    }

    /// Every known worker, in known-list order, as of unix time `now`.
    pub fn snapshot(&self, now: f64) -> Vec<WorkerStatus> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.known
            .iter()
            .map(|name| match seen.get(name) {
                Some(s) => {
                    let since = (now - s.at).max(0.0);
                    let status =
                        if since < self.stale_after.as_secs_f64() { WorkerHealth::Ok } else { WorkerHealth::Stale };
                    WorkerStatus {
                        name: name.clone(),
                        status,
                        last_heartbeat_ts: Some(s.at),
                        seconds_since: Some(since),
                        extra: s.extra.clone(),
                        installed: false,
                    }
                }
                None => WorkerStatus {
                    name: name.clone(),
                    status: WorkerHealth::Unknown,
                    last_heartbeat_ts: None,
                    seconds_since: None,
                    extra: serde_json::json!({}),
                    installed: false,
                },
            })
            .collect()
    }

    /// Record every event from `subs` until all of them end or `cancel`.
    pub async fn consume(&self, subs: Vec<Subscription>, cancel: &CancellationToken) {
        let mut merged = futures_util::stream::select_all(subs);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                next = merged.next() => match next {
                    Some(env) => { self.record_envelope(&env); }
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
