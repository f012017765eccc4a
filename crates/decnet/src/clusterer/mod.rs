//! The clusterer (`decnet clusterer`): links attackers that share a strong
//! fingerprint into identities and announces what changed.
//!
//! Each pass loads every strong fingerprint and the stored identities,
//! runs the pure [`fold`], and when the state changed writes it in one
//! transaction (identities, members, `attackers.identity_id`) before
//! publishing the [`ClusterResult`](decnet_bus::identity::ClusterResult)
//! fan-out. A pass over unchanged data writes and publishes nothing, so a
//! restart or a re-run is silent. The whole table is re-clustered each
//! pass: union-find over tens of thousands of rows is milliseconds, and a
//! full pass is what makes an unmerge (a fingerprint that changed) visible.

pub mod fold;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::identity::ClusterResult;
use decnet_bus::Bus;
use sqlx::SqlitePool;

/// The worker name (heartbeat, control topic).
pub const WORKER: &str = "clusterer";

/// One pass: fold, persist when changed, return the events (published on
/// `bus` when given, after the commit).
pub async fn pass(pool: &SqlitePool, bus: Option<&dyn Bus>) -> anyhow::Result<ClusterResult> {
    let observations = store::observations(pool).await?;
    let state = store::load_state(pool).await?;
    let (new_state, result) = fold::fold(&state, &observations);
    if new_state.identities != state.identities {
        store::save_state(pool, &state, &new_state).await?;
    }
    if let Some(bus) = bus {
        if !result.is_empty() {
            if let Err(e) = result.publish(bus).await {
                tracing::warn!(error = %e, "identity events not published (the tables hold the result)");
            }
        }
    }
    Ok(result)
}

#[derive(Debug, Clone)]
pub struct ClustererConfig {
    pub db_path: PathBuf,
    pub socket_path: PathBuf,
    pub interval: Duration,
    pub heartbeat: Duration,
    pub metrics: crate::metrics::MetricsArgs,
}

/// Run until SIGTERM/SIGINT or a stop on `system.clusterer.control`.
pub async fn run(config: ClustererConfig) -> anyhow::Result<()> {
    let pool = crate::store::open(&config.db_path).await?;
    let bus: Arc<dyn Bus> = Arc::new(decnet_bus::client::UnixBus::new(WORKER, config.socket_path.clone()));
    // The heartbeat's and /metrics' counters (`decnet_clusterer_*`).
    let work =
        Arc::new(crate::metrics::NamedCounters::new(&["passes", "failures", "formed", "linked", "merged", "unmerged"]));
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    let fields = work.clone();
    crate::metrics::serve_worker(
        &config.metrics,
        &crate::metrics::catalogue::CLUSTERER,
        Arc::new(move || fields.snapshot()),
        metrics_stop,
    )
    .await?;
    let extra = work.clone();
    decnet_bus::sdk::Worker::new(WORKER)
        .heartbeat_interval(config.heartbeat)
        .bus(bus)
        .health_extra(move || Ok(extra.snapshot()))
        .run(|ctx| async move {
            loop {
                match pass(&pool, Some(ctx.bus.as_ref())).await {
                    Ok(r) => {
                        work.add("passes", 1);
                        work.add("formed", r.formed.len() as u64);
                        work.add("linked", r.linked.len() as u64);
                        work.add("merged", r.merged.len() as u64);
                        work.add("unmerged", r.unmerged.len() as u64);
                        if !r.is_empty() {
                            tracing::info!(
                                formed = r.formed.len(),
                                linked = r.linked.len(),
                                merged = r.merged.len(),
                                unmerged = r.unmerged.len(),
                                "clusterer pass"
                            );
                        }
                    }
                    Err(e) => {
                        work.add("failures", 1);
                        tracing::error!(error = %e, "clusterer pass failed; retrying");
                    }
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.interval) => {}
                }
            }
        })
        .await?;
    Ok(())
}
