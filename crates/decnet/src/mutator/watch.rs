//! The mutator's watch loop: mutate what is due, sleep until the next due
//! decky or the poll interval (at least 1 s), and wake at once for an
//! operator's `decky.<name>.mutate_request` or a newly enqueued topology
//! mutation.
//!
//! The bus is optional to the loop: wake-up requests arrive through a
//! channel fed by a subscriber task that keeps (re)subscribing while the
//! bus is down, so scheduled rotation and the ingest log go on regardless.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::sdk::{run_control_listener, run_health_heartbeat, HealthExtra};
use decnet_bus::Bus;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::drivers::{build_driver, DriverKind};
use super::{schedule, Mutator};
use crate::events::Trigger;

/// Patterns the loop wakes on.
pub use decnet_bus::topics::{
    DECKY_MUTATE_REQUEST_ALL as MUTATE_REQUEST_ALL, TOPOLOGY_MUTATION_ENQUEUED_ALL as TOPOLOGY_ENQUEUED_ALL,
    TOPOLOGY_STATUS_ALL,
};

/// The worker name on `system.mutator.health` / `.control`.
pub const WORKER: &str = "mutator";

/// Why the loop woke early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Mutate this decky now (trigger `operator`).
    MutateRequest { decky: String, actor: Option<String> },
    /// A topology mutation was enqueued, or a topology was asked to deploy
    /// (`topology.<id>.status` `deploying`, from the API): deploy and drain.
    TopologyWork,
}

/// Everything `decnet mutator` (or `decnet up`) configures.
#[derive(Debug, Clone)]
pub struct MutatorConfig {
    pub db_path: PathBuf,
    pub socket_path: PathBuf,
    pub driver: DriverKind,
    pub command: Option<PathBuf>,
    pub poll: Duration,
    pub log_path: PathBuf,
    /// Heartbeat interval on `system.mutator.health`.
    pub heartbeat: Duration,
    /// Settings of the native driver's listeners (used when `driver` is native).
    pub native: super::native::NativeOptions,
    /// `--metrics-listen`: the heartbeat's counters on `/metrics`.
    pub metrics: crate::metrics::MetricsArgs,
}

/// Run the mutator until `shutdown` is cancelled (or a `stop` control
/// intent arrives, which cancels it). Embeddable: `decnet up` calls this.
pub async fn run(config: MutatorConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = crate::store::open(&config.db_path).await?;
    let driver: Arc<dyn super::drivers::DeployDriver> =
        build_driver(config.driver, config.command.as_deref(), &pool, Some(config.native.clone()))?.into();
    let bus = connect_bus(&config.socket_path);
    tracing::info!(
        driver = driver.name(),
        db = %config.db_path.display(),
        log = %config.log_path.display(),
        socket = %config.socket_path.display(),
        poll_secs = config.poll.as_secs_f64(),
        "mutator starting"
    );
    let fields = driver.clone();
    crate::metrics::serve_worker(
        &config.metrics,
        &crate::metrics::catalogue::MUTATOR,
        Arc::new(move || fields.health()),
        shutdown.clone(),
    )
    .await?;
    let mutator = Mutator::new(pool, driver.clone(), Some(bus.clone()), config.log_path.clone());
    let side_tasks = start_side_tasks(bus.clone(), config.heartbeat, mutator.driver.clone(), shutdown.clone());
    decnet_bus::sdk::notify_ready("mutator watching", shutdown.clone());
    let result = watch_loop(mutator, config.poll, shutdown.clone()).await;
    shutdown.cancel();
    for t in side_tasks {
        let _ = t.await;
    }
    bus.close().await;
    driver.shutdown().await;
    tracing::info!("mutator stopped");
    result
}

/// The bus client the daemon uses: connects lazily, reconnects and
/// resubscribes on its own after the daemon comes back.
fn connect_bus(socket: &std::path::Path) -> Arc<dyn Bus> {
    Arc::new(decnet_bus::client::UnixBus::new("mutator", socket))
}

/// Heartbeat on `system.mutator.health` and the control listener (a
/// `stop` intent cancels `shutdown`, the same path as SIGTERM).
fn start_side_tasks(
    bus: Arc<dyn Bus>,
    heartbeat: Duration,
    driver: Arc<dyn super::drivers::DeployDriver>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let extra: HealthExtra = Arc::new(move || {
        let mut m = driver.health();
        m.insert("driver".into(), serde_json::Value::from(driver.name()));
        Ok(m)
    });
    let hb = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = run_health_heartbeat(bus, WORKER, heartbeat, Some(extra), shutdown).await {
                tracing::error!(error = %e, "heartbeat stopped");
            }
        })
    };
    let control = tokio::spawn(async move {
        if let Err(e) = run_control_listener(bus, WORKER, shutdown).await {
            tracing::error!(error = %e, "control listener stopped");
        }
    });
    vec![hb, control]
}

/// Decode a wake-up event; `None` for anything that is not one.
pub fn wake_from(topic: &str, payload: &serde_json::Value) -> Option<Wake> {
    let tokens: Vec<&str> = topic.split('.').collect();
    match tokens.as_slice() {
        ["decky", name, "mutate_request"] => Some(Wake::MutateRequest {
            decky: name.to_string(),
            actor: payload.get("actor").and_then(|a| a.as_str()).map(str::to_string),
        }),
        ["topology", _, "mutation", "enqueued"] => Some(Wake::TopologyWork),
        ["topology", _, "status"] if payload.get("status").and_then(|s| s.as_str()) == Some("deploying") => {
            Some(Wake::TopologyWork)
        }
        _ => None,
    }
}

/// Keep subscriptions to the wake-up patterns alive and forward what
/// arrives. Resubscribes every 2 s while the bus refuses or a stream ends.
fn spawn_wake_listener(
    bus: Arc<dyn Bus>,
    tx: mpsc::Sender<Wake>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    [MUTATE_REQUEST_ALL, TOPOLOGY_ENQUEUED_ALL, TOPOLOGY_STATUS_ALL]
        .into_iter()
        .map(|pattern| {
            let (bus, tx, shutdown) = (bus.clone(), tx.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut warned = false;
                while !shutdown.is_cancelled() {
                    match bus.subscribe(pattern).await {
                        Ok(mut sub) => {
                            warned = false;
                            loop {
                                tokio::select! {
                                    _ = shutdown.cancelled() => return,
                                    ev = sub.recv() => match ev {
                                        Some(env) => {
                                            if let Some(w) = wake_from(&env.topic, &env.payload) {
                                                if tx.send(w).await.is_err() { return; }
                                            }
                                        }
                                        None => break,
                                    }
                                }
                            }
                        }
                        Err(e) if !warned => {
                            tracing::warn!(pattern, error = %e, "cannot subscribe; retrying every 2 s");
                            warned = true;
                        }
                        Err(_) => {}
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            })
        })
        .collect()
}

/// Logs "no deployment" / "deployment present" only on changes.
#[derive(Default)]
struct DeploymentEdge {
    present: Option<bool>,
}

impl DeploymentEdge {
    fn observe(&mut self, deployed: usize) {
        let now = deployed > 0;
        if self.present != Some(now) {
            if now {
                tracing::info!(deckies = deployed, "deployment present; rotating deckies");
            } else {
                tracing::info!("no deployment; idle until a fleet is deployed");
            }
            self.present = Some(now);
        }
    }
}

/// Mutate due deckies until `shutdown`; `poll` caps each sleep.
pub async fn watch_loop(mutator: Mutator, poll: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(256);
    let listeners = match &mutator.bus {
        Some(bus) => spawn_wake_listener(bus.clone(), tx, shutdown.clone()),
        None => Vec::new(),
    };
    let mut edge = DeploymentEdge::default();
    while !shutdown.is_cancelled() {
        match crate::store::fleet::list_deployed(&mutator.pool).await {
            Ok(d) => edge.observe(d.len()),
            Err(e) => tracing::error!(error = %e, "cannot read the fleet"),
        }
        let next_due = mutator.mutate_all(None).await;
        mutator.drain_topologies().await;
        let sleep = schedule::sleep_for(next_due, poll);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(sleep) => {}
            wake = rx.recv() => {
                let mut pending: Vec<Wake> = wake.into_iter().collect();
                while let Ok(w) = rx.try_recv() {
                    pending.push(w);
                }
                for w in pending {
                    handle_wake(&mutator, w).await;
                }
            }
        }
    }
    for l in listeners {
        l.abort();
    }
    Ok(())
}

async fn handle_wake(mutator: &Mutator, wake: Wake) {
    match wake {
        Wake::MutateRequest { decky, actor } => {
            tracing::info!(decky = %decky, actor = actor.as_deref().unwrap_or("-"), "mutate request");
            if let Err(e) = mutator.mutate_decky(&decky, Trigger::Operator, actor.as_deref()).await {
                tracing::warn!(decky = %decky, error = %e, "requested mutation not done");
            }
        }
        Wake::TopologyWork => mutator.drain_topologies().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_topics_decode() {
        let p = serde_json::json!({"actor": "alice"});
        assert_eq!(
            wake_from("decky.web-01.mutate_request", &p),
            Some(Wake::MutateRequest { decky: "web-01".into(), actor: Some("alice".into()) })
        );
        assert_eq!(wake_from("topology.t1.mutation.enqueued", &p), Some(Wake::TopologyWork));
        let status = |s: &str| serde_json::json!({"topology_id": "t1", "status": s, "previous": "pending"});
        assert_eq!(wake_from("topology.t1.status", &status("deploying")), Some(Wake::TopologyWork));
        assert_eq!(wake_from("topology.t1.status", &status("active")), None, "its own results do not wake it");
        assert_eq!(wake_from("decky.web-01.state", &p), None);
    }
}
