//! Bus federation over NATS (SPEC §9): the bus daemon of each host bridges
//! chosen topics to a NATS server or cluster, so a fleet of hosts shares
//! events through an existing distributed broker instead of a home-made one.
//!
//! - [`options`]: the `decnet bus --nats …` flags and the NATS connection they make.
//! - [`export`]: local events matching `--export` → NATS subject `<prefix>.<topic>`.
//! - [`import`]: NATS messages matching `--import` → local subscribers, validated as hostile.
//! - [`counters`]: what the bridge reports in `system.bus.health`.
//! - [`sequence`]: per-origin sequence numbers, so a receiver counts what it lost.
//! - [`presence`]: bridges announce themselves; a duplicate host id is refused.
//! - [`burst`]: one warning per burst of losses.
//!
//! Loop freedom rests on three rules, each enough on its own for the simple
//! case and together for every topology: the bridge is one in-process
//! connection of the broker and an import is delivered "from" it, so the
//! broker never hands it back for export (an import is never re-exported);
//! every NATS message carries `Decnet-Origin` and a bridge drops its own;
//! and the NATS connection is `no_echo`.
//!
//! NATS being down never touches the local bus: the export side is the
//! bridge connection's drop-oldest queue, which simply fills and drops
//! (counted) until async-nats has reconnected and resubscribed.

pub mod burst;
pub mod counters;
pub mod export;
pub mod import;
pub mod options;
pub mod preflight;
pub mod presence;
pub mod sequence;

use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::HealthExtra;
use decnet_bus::server::Broker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use counters::FederationCounters;
pub use options::{FederationConfig, NatsArgs};

/// NATS header naming the host an event comes from.
pub const ORIGIN_HEADER: &str = "Decnet-Origin";
/// NATS header naming the sending bridge's run (random per start).
pub const INSTANCE_HEADER: &str = "Decnet-Instance";
/// NATS header numbering an instance's exports per topic (see [`sequence`]).
pub const SEQ_HEADER: &str = "Decnet-Seq";

/// How often the end of a loss burst is looked for (see [`burst`]).
const BURST_TICK: Duration = Duration::from_secs(1);

/// Client name the bridge registers in the broker and announces to NATS.
const BRIDGE_NAME: &str = "nats-bridge";

/// How long shutdown waits for queued exports to reach NATS.
const FLUSH_ON_STOP: Duration = Duration::from_secs(2);

/// A running bridge: its counters, and the tasks to wait for at shutdown.
pub struct Bridge {
    pub counters: Arc<FederationCounters>,
    host_id: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Connect (or keep trying to, in the background) and start exporting
    /// and importing. Errors only on bad configuration (unreadable creds
    /// file, a TLS file that is missing): NATS being unreachable is not an
    /// error, the bridge waits for it.
    pub async fn start(
        broker: Arc<Broker>,
        config: FederationConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Bridge> {
        let counters = Arc::new(FederationCounters::default());
        let announce = Arc::new(tokio::sync::Notify::new());
        let client = options::connect(&config, counters.clone(), announce.clone()).await?;
        let id = Arc::new(presence::Identity {
            host: config.host_id.clone(),
            instance: format!("{:032x}", rand::random::<u128>()),
            halt: CancellationToken::new(),
            counters: counters.clone(),
        });
        tracing::info!(
            servers = %config.servers.join(","),
            host_id = %config.host_id,
            instance = %id.instance,
            prefix = %config.prefix,
            export = %config.export.join(" "),
            import = %config.import.join(" "),
            "NATS federation starting"
        );
        let conn = broker.connect_with_capacity(BRIDGE_NAME, config.queue);
        for pattern in &config.export {
            // An export pattern the daemon's own limits refuse is bad
            // configuration: say so at start rather than bridge nothing.
            broker
                .subscribe(conn.id, pattern)
                .map_err(|e| anyhow::anyhow!("export pattern {pattern:?} refused: {e}"))?;
        }
        let config = Arc::new(config);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(export::run(
            conn.clone(),
            client.clone(),
            config.clone(),
            id.clone(),
            shutdown.clone(),
        )));
        for index in 0..config.import.len() {
            tasks.push(tokio::spawn(import::run(
                broker.clone(),
                conn.id,
                client.clone(),
                config.clone(),
                index,
                id.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(presence::run(
            client.clone(),
            id.clone(),
            config.prefix.clone(),
            announce,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(log_burst_ends(counters.clone(), shutdown.clone())));
        // Close the NATS connection after the exporter's last flush, and
        // take the bridge's broker connection down with the daemon; or,
        // when the bridge refuses to federate, at once (nothing is queued
        // for export any more).
        tasks.push(tokio::spawn(async move {
            let refused = tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = id.halt.cancelled() => true,
            };
            if !refused {
                let _ = tokio::time::timeout(FLUSH_ON_STOP, client.flush()).await;
            }
            broker.disconnect(conn.id);
            conn.queue.close();
            conn.queue.clear();
            drop(client);
        }));
        Ok(Bridge { counters, host_id: config.host_id.clone(), tasks })
    }

    /// `system.bus.health` fields: `host` and a `federation` object.
    pub fn health_extra(&self) -> HealthExtra {
        let counters = self.counters.clone();
        let host = self.host_id.clone();
        Arc::new(move || {
            let mut map = serde_json::Map::new();
            map.insert("host".into(), serde_json::Value::String(host.clone()));
            map.insert("federation".into(), counters.to_json());
            Ok(map)
        })
    }

    /// Wait (bounded) for the bridge tasks after shutdown was cancelled.
    pub async fn join(self) {
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(FLUSH_ON_STOP + Duration::from_secs(1), all).await.is_err() {
            tracing::warn!("NATS bridge did not stop within its grace period");
        }
    }
}

/// Say once when a burst of losses is over, with its total.
async fn log_burst_ends(counters: Arc<FederationCounters>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(BURST_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(n) = counters.export_drops.tick() {
            tracing::warn!(dropped = n, "NATS export queue drained; {n} exports were dropped in that burst");
        }
        if let Some(n) = counters.receive_drops.tick() {
            tracing::warn!(dropped = n, "NATS import caught up; {n} messages were dropped in that burst");
        }
    }
}

/// `system.bus.health` fields for a daemon without federation: just `host`,
/// so the control plane can tell hosts apart even before NATS is set up.
pub fn host_only_extra(host_id: String) -> HealthExtra {
    Arc::new(move || {
        let mut map = serde_json::Map::new();
        map.insert("host".into(), serde_json::Value::String(host_id.clone()));
        Ok(map)
    })
}
