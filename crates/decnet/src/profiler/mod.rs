//! The profiler (`decnet profiler`): turns the collector's `logs` rows into
//! one profile per attacker IP and tells the bus what it learned.
//!
//! A pass reads the rows after the `profiler` cursor, folds them into the
//! `attackers` rows of the IPs they mention (see [`fold`]), classifies
//! behaviour from what happened and when ([`behavior`]), and commits the upserts, the
//! credential-reuse state and the cursor in **one** transaction: a crash
//! re-reads the batch instead of counting it twice or skipping it. Only
//! then does it announce:
//!
//! - `attacker.observed` for an IP seen for the first time ever. The
//!   `observed_published` flag is set in that same transaction, so a
//!   restart never announces an IP again (the bus is at-most-once anyway);
//! - `attacker.scored` for every profile the pass changed;
//! - a `traversal_detected` line in the ingest log per new or longer
//!   traversal, and `credential.reuse.detected` per changed reuse
//!   ([`correlation`]).
//!
//! Fingerprints arrive in their own table, possibly after the last log row
//! of an attacker, so a second cursor (`profiler.fingerprints`, the newest
//! `last_seen` in ms) refreshes profiles whose fingerprints changed.

pub mod behavior;
pub mod correlation;
pub mod fold;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::{topics, Bus};
use serde_json::{json, Value};
use sqlx::SqlitePool;

use crate::events::publish_logged;
use fold::{LogRow, Profile, Skip};

/// The profiler's row in `cursors` (last `logs.id` folded).
pub const CURSOR: &str = "profiler";
/// Newest fingerprint `last_seen` (ms) folded into a profile.
pub const FINGERPRINT_CURSOR: &str = "profiler.fingerprints";
/// The worker name (heartbeat, control topic).
pub const WORKER: &str = "profiler";

/// What one pass did (for the log line, the tests and the benchmark).
#[derive(Debug, Default)]
pub struct PassReport {
    pub rows: usize,
    /// Rows with no usable attacker address ('Unknown' or garbage).
    pub skipped: usize,
    pub observed: Vec<Value>,
    pub scored: Vec<Value>,
    pub traversals: Vec<String>,
    pub reuse: Vec<Value>,
    /// Whether more rows were waiting when the pass stopped (batch full).
    pub more: bool,
}

/// The profiler over one database and ingest log.
#[derive(Clone)]
pub struct Profiler {
    pub pool: SqlitePool,
    pub log_path: PathBuf,
    /// Rows folded per pass (and per transaction).
    pub batch: i64,
}

fn observed_payload(p: &Profile) -> Value {
    json!({
        "attacker_ip": p.ip,
        "decky": p.deckies.first(),
        "service": p.services.first(),
        "ts": p.first_seen,
        "deckies": p.deckies,
        "services": p.services,
    })
}

fn scored_payload(p: &Profile) -> Value {
    json!({
        "attacker_ip": p.ip,
        "first_seen": p.first_seen,
        "last_seen": p.last_seen,
        "event_count": p.event_count,
        "service_count": p.services.len(),
        "decky_count": p.deckies.len(),
        "credential_count": p.credential_count,
        "is_traversal": p.is_traversal(),
        "traversal_path": p.traversal_path(),
        "behavior": p.behavior,
    })
}

impl Profiler {
    pub fn new(pool: SqlitePool, log_path: PathBuf) -> Self {
        Profiler { pool, log_path, batch: 5000 }
    }

    /// One pass: fold what is new, commit, then announce (on `bus` when given).
    pub async fn pass(&self, bus: Option<&dyn Bus>) -> anyhow::Result<PassReport> {
        let mut report = PassReport::default();
        let after = store::cursor(&self.pool, CURSOR).await?;
        let rows = store::read_logs(&self.pool, after, self.batch).await?;
        report.rows = rows.len();
        report.more = rows.len() as i64 == self.batch;
        let fp_since = store::cursor(&self.pool, FINGERPRINT_CURSOR).await? as f64 / 1000.0;
        let (fp_ips, fp_newest) = store::fingerprinted_since(&self.pool, fp_since).await?;
        if rows.is_empty() && fp_ips.is_empty() {
            return Ok(report);
        }

        let mut by_ip: BTreeMap<String, Vec<&LogRow>> = BTreeMap::new();
        for row in &rows {
            match fold::attacker_of(row) {
                Ok(ip) => by_ip.entry(ip).or_default().push(row),
                Err(Skip::NoAddress | Skip::Untrusted) => report.skipped += 1,
                Err(Skip::BadAddress) => {
                    report.skipped += 1;
                    tracing::warn!(id = row.id, attacker_ip = %row.attacker_ip, "log row with a malformed attacker address left out of the profiles");
                }
            }
        }
        let touched: BTreeSet<String> = by_ip.keys().cloned().chain(fp_ips.iter().cloned()).collect();
        let touched: Vec<String> = touched.into_iter().collect();
        let existing = store::load_profiles(&self.pool, &touched).await?;

        let mut changed: Vec<(Profile, bool, bool)> = Vec::new();
        for ip in &touched {
            let before = existing.get(ip);
            let new_rows = by_ip.get(ip).map(Vec::as_slice).unwrap_or(&[]);
            let mut profile = match (before, new_rows.first()) {
                (Some(p), _) => p.clone(),
                (None, Some(first)) => Profile::new(ip, first.timestamp),
                (None, None) => continue,
            };
            for row in new_rows {
                profile.apply(row);
            }
            profile.credential_count = store::credential_count(&self.pool, ip).await?;
            profile.fingerprints = store::fingerprints(&self.pool, ip).await?;
            profile.behavior = behavior::classify(&store::timeline(&self.pool, ip).await?).as_str().to_string();
            if before == Some(&profile) {
                continue;
            }
            let first_time = !profile.observed_published;
            profile.observed_published = true;
            let new_traversal = profile.is_traversal()
                && before.map(Profile::traversal_path).as_deref() != Some(profile.traversal_path().as_str());
            changed.push((profile, first_time, new_traversal));
        }

        let now = crate::mutator::now_secs();
        let secrets = correlation::secrets_of(&self.pool, &by_ip.keys().cloned().collect::<Vec<_>>()).await?;
        let mut tx = self.pool.begin().await?;
        for (profile, _, _) in &changed {
            store::save_profile(&mut tx, profile, now).await?;
        }
        report.reuse = correlation::reuse_to_publish(&mut tx, &secrets, now).await?;
        if let Some(last) = rows.last() {
            store::set_cursor(&mut tx, CURSOR, last.id, now).await?;
        }
        if fp_newest > fp_since {
            // Rounded up: a floor would leave the newest row "after" the
            // watermark and re-read it every pass.
            store::set_cursor(&mut tx, FINGERPRINT_CURSOR, (fp_newest * 1000.0).ceil() as i64, now).await?;
        }
        tx.commit().await?;

        for (profile, first_time, new_traversal) in &changed {
            if *first_time {
                report.observed.push(observed_payload(profile));
            }
            report.scored.push(scored_payload(profile));
            if *new_traversal {
                let mutations = correlation::mutations_in_window(
                    &self.pool,
                    &profile.deckies,
                    profile.first_seen,
                    profile.last_seen,
                )
                .await?;
                let line = correlation::traversal_line(profile, &mutations, time::OffsetDateTime::now_utc());
                // The profile is committed; a lost line is logged, not retried
                // (the API recomputes traversals from the tables anyway).
                if let Err(e) = crate::events::append_line(&self.log_path, &line) {
                    tracing::error!(path = %self.log_path.display(), error = %e, ip = %profile.ip, "cannot write traversal_detected to the ingest log");
                }
                report.traversals.push(line);
            }
        }
        if let Some(bus) = bus {
            for p in &report.observed {
                publish_logged(bus, topics::ATTACKER_OBSERVED, "observed", p.clone()).await;
            }
            for p in &report.scored {
                publish_logged(bus, topics::ATTACKER_SCORED, "scored", p.clone()).await;
            }
            for p in &report.reuse {
                publish_logged(bus, topics::CREDENTIAL_REUSE_DETECTED, "reuse_detected", p.clone()).await;
            }
        }
        Ok(report)
    }
}

/// Settings of the `decnet profiler` daemon.
#[derive(Debug, Clone)]
pub struct ProfilerConfig {
    pub db_path: PathBuf,
    pub socket_path: PathBuf,
    pub log_path: PathBuf,
    /// Sleep between passes when caught up.
    pub poll: Duration,
    pub heartbeat: Duration,
    pub metrics: crate::metrics::MetricsArgs,
}

/// Run the profiler until SIGTERM/SIGINT or a stop on `system.profiler.control`.
pub async fn run(config: ProfilerConfig) -> anyhow::Result<()> {
    let pool = crate::store::open(&config.db_path).await?;
    let profiler = Profiler::new(pool, config.log_path.clone());
    let bus: Arc<dyn Bus> = Arc::new(decnet_bus::client::UnixBus::new(WORKER, config.socket_path.clone()));
    let poll = config.poll;
    // The heartbeat's and /metrics' counters (`decnet_profiler_*`).
    let work = Arc::new(crate::metrics::NamedCounters::new(&["passes", "failures", "rows", "scored"]));
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let _stop_metrics = metrics_stop.clone().drop_guard();
    let fields = work.clone();
    crate::metrics::serve_worker(
        &config.metrics,
        &crate::metrics::catalogue::PROFILER,
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
            tracing::info!(db = %config.db_path.display(), "profiler running");
            loop {
                let more = match profiler.pass(Some(ctx.bus.as_ref())).await {
                    Ok(r) => {
                        work.add("passes", 1);
                        work.add("rows", r.rows as u64);
                        work.add("scored", r.scored.len() as u64);
                        if r.rows > 0 || !r.scored.is_empty() {
                            tracing::info!(
                                rows = r.rows,
                                skipped = r.skipped,
                                observed = r.observed.len(),
                                scored = r.scored.len(),
                                traversals = r.traversals.len(),
                                reuse = r.reuse.len(),
                                "profiler pass"
                            );
                        }
                        r.more
                    }
                    Err(e) => {
                        // The transaction rolled back: the same rows are read
                        // again next time, nothing is lost or doubled.
                        work.add("failures", 1);
                        tracing::error!(error = %e, "profiler pass failed; retrying");
                        false
                    }
                };
                let wait = if more { Duration::ZERO } else { poll };
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
        .await?;
    Ok(())
}
