//! The mutator: rotates which services each decky exposes, on schedule and
//! on request, through a deploy driver, and records every transition.
//!
//! Order of a mutation matters: draw the new services, deploy them, and
//! only when the driver succeeded save the state, publish
//! `decky.<name>.state`, and emit the mutation event. A failed deploy
//! leaves the database, the bus and the ingest log untouched, so the log's
//! chain of `old_services -> new_services` stays exactly what is running.

pub mod drivers;
pub mod lan;
pub mod native;
pub mod schedule;
pub mod topologies;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::{topics, Bus};
use sqlx::SqlitePool;

use crate::catalogue;
use crate::events::{self, Trigger};
use crate::fleet::Fleet;
use crate::store::fleet::{self as fleet_store, FleetDecky};
use drivers::{Change, DeckyShape, DeployDriver, FLEET_PROJECT};

pub use watch::{run, MutatorConfig};

/// First deploys recorded per transaction by [`Mutator::deploy_fleet`]
/// (a crash in between leaves at most this many deployed but unrecorded;
/// the next deploy deploys them again).
const CREATIONS_PER_BATCH: usize = 256;

/// Unix seconds now.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Everything a mutation needs: the store, a driver, the bus (optional:
/// without it the ingest log is still written) and the ingest log path.
#[derive(Clone)]
pub struct Mutator {
    pub pool: SqlitePool,
    pub driver: Arc<dyn DeployDriver>,
    pub bus: Option<Arc<dyn Bus>>,
    pub log_path: PathBuf,
}

impl Mutator {
    pub fn new(pool: SqlitePool, driver: Arc<dyn DeployDriver>, bus: Option<Arc<dyn Bus>>, log_path: PathBuf) -> Self {
        Mutator { pool, driver, bus, log_path }
    }

    fn bus(&self) -> Option<&dyn Bus> {
        self.bus.as_deref()
    }

    /// The shapes of every deployed decky, with `name` set to `services`
    /// (or removed when `services` is empty): what should run after a change.
    async fn fleet_after(&self, name: &str, services: &[String]) -> anyhow::Result<Vec<DeckyShape>> {
        let mut shapes: Vec<DeckyShape> = fleet_store::list_deployed(&self.pool)
            .await?
            .into_iter()
            .filter(|d| d.name != name)
            .map(|d| DeckyShape { name: d.name, services: d.services })
            .collect();
        if !services.is_empty() {
            shapes.push(DeckyShape { name: name.to_string(), services: services.to_vec() });
            shapes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(shapes)
    }

    /// Deploy `services` on `name` through the driver; on success save it,
    /// publish the state and emit the mutation event.
    async fn deploy_and_record(
        &self,
        decky: &FleetDecky,
        services: Vec<String>,
        trigger: Trigger,
        actor: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let fleet =
            if self.driver.wants_fleet() { self.fleet_after(&decky.name, &services).await? } else { Vec::new() };
        let change = Change { project: FLEET_PROJECT, decky: &decky.name, services: &services, fleet: &fleet };
        if let Err(e) = self.driver.apply(&change).await {
            tracing::error!(decky = %decky.name, trigger = %trigger, error = %e, "deploy failed; mutation not recorded");
            return Err(e.into());
        }
        let old = if decky.deployed { decky.services.clone() } else { Vec::new() };
        let at = now_secs();
        if services.is_empty() {
            fleet_store::record_retirement(&self.pool, &decky.name, at).await?;
        } else {
            fleet_store::record_mutation(&self.pool, &decky.name, &services, at).await?;
            self.publish_state(&decky.name, &services, decky.archetype.as_deref()).await;
        }
        events::emit_decky_mutated(self.bus(), &self.log_path, &decky.name, &old, &services, trigger, actor).await;
        // History for the API; the ingest log stays the record, so a
        // failed insert is logged and the mutation still stands.
        if let Err(e) =
            crate::store::mutations::record(&self.pool, at, &decky.name, &old, &services, trigger.as_str(), actor).await
        {
            tracing::error!(decky = %decky.name, error = %e, "cannot record the mutation in decky_mutations");
        }
        tracing::info!(decky = %decky.name, trigger = %trigger, old = %old.join(","), new = %services.join(","), "decky mutated");
        Ok(services)
    }

    /// The services a decky of `archetype` may rotate through with this
    /// driver: the archetype's pool (the catalogue without one), only
    /// those the driver serves.
    fn pool_of(&self, archetype: Option<&str>) -> Vec<&'static str> {
        let pool: &[&'static str] = archetype.and_then(catalogue::archetype).map_or(&[], |a| a.services);
        catalogue::servable_pool(pool, |s| self.driver.serves(s))
    }

    /// Mutate one deployed decky now: draw new services from its archetype
    /// pool (or the catalogue) and deploy them. Returns the new services.
    pub async fn mutate_decky(&self, name: &str, trigger: Trigger, actor: Option<&str>) -> anyhow::Result<Vec<String>> {
        let decky = fleet_store::get(&self.pool, name)
            .await?
            .filter(|d| d.deployed)
            .ok_or_else(|| anyhow::anyhow!("no deployed decky named {name:?}"))?;
        let next =
            catalogue::rotate_services(&self.pool_of(decky.archetype.as_deref()), &decky.services, &mut rand::rng());
        self.deploy_and_record(&decky, next, trigger, actor).await
    }

    /// Mutate every due decky (only those named in `only`, when given),
    /// with trigger `scheduled`. Returns the time until the next decky is
    /// due, `None` when nothing is scheduled. A decky whose deploy failed
    /// this pass is left out of that estimate, so a broken driver is
    /// retried at the poll interval, not in a tight loop.
    pub async fn mutate_all(&self, only: Option<&HashSet<String>>) -> Option<Duration> {
        let deckies = match fleet_store::list_deployed(&self.pool).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fleet");
                return None;
            }
        };
        // Native deckies deployed or torn down by another process get (or
        // lose) their listeners here.
        let shapes: Vec<DeckyShape> =
            deckies.iter().map(|d| DeckyShape { name: d.name.clone(), services: d.services.clone() }).collect();
        self.driver.sync(FLEET_PROJECT, &shapes).await;
        let now = now_secs();
        let mut failed = HashSet::new();
        for decky in &deckies {
            let wanted = only.is_none_or(|set| set.contains(&decky.name));
            if wanted
                && schedule::is_due(decky, now)
                && self.mutate_decky(&decky.name, Trigger::Scheduled, None).await.is_err()
            {
                failed.insert(decky.name.clone());
            }
        }
        let after = match fleet_store::list_deployed(&self.pool).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the fleet");
                return None;
            }
        };
        schedule::until_next_due(after.iter().filter(|d| !failed.contains(&d.name)), now_secs())
    }

    /// Deploy a validated fleet: each decky not yet deployed gets its first
    /// services (explicit, else drawn) and a `creation` event; deckies
    /// already deployed keep their services and only take the new
    /// archetype and interval. Returns the names that failed to deploy.
    ///
    /// The database work is batched (one read of the fleet, one write of
    /// every decky's settings, creations recorded [`CREATIONS_PER_BATCH`]
    /// at a time): per-decky statements made 10,000 deckies take 8 s,
    /// almost all of it in hand-offs to SQLite's thread. A driver that
    /// needs the whole fleet for each change still has each creation
    /// recorded before the next decky is applied.
    pub async fn deploy_fleet(&self, fleet: &Fleet) -> anyhow::Result<Vec<String>> {
        let existing: HashMap<String, FleetDecky> =
            fleet_store::list(&self.pool).await?.into_iter().map(|d| (d.name.clone(), d)).collect();
        let specs: Vec<fleet_store::DeckySpec> = fleet
            .deckies
            .iter()
            .map(|spec| fleet_store::DeckySpec {
                name: spec.name.clone(),
                archetype: spec.archetype.clone(),
                interval_minutes: spec.interval_minutes,
                address: spec.address.map(|a| a.to_string()),
                persona: spec.persona.clone(),
            })
            .collect();
        fleet_store::save_specs(&self.pool, &specs).await?;
        let batch = if self.driver.wants_fleet() { 1 } else { CREATIONS_PER_BATCH };
        let mut failed = Vec::new();
        let mut created: Vec<(fleet_store::Creation, Option<String>)> = Vec::new();
        for spec in &fleet.deckies {
            if existing.get(&spec.name).is_some_and(|d| d.deployed) {
                tracing::info!(decky = %spec.name, "already deployed; schedule updated");
                continue;
            }
            // Listed services this driver cannot serve are left out (a port
            // nothing answers on is worse than no port); none left means a
            // draw from the archetype, as for a decky that lists none.
            let (served, unserved): (Vec<String>, Vec<String>) =
                spec.services.iter().cloned().partition(|s| self.driver.serves(s));
            if !unserved.is_empty() {
                tracing::warn!(decky = %spec.name, services = %unserved.join(","), driver = self.driver.name(),
                    "the deploy driver does not serve these services; left out");
            }
            let services = if served.is_empty() {
                catalogue::initial_services(&self.pool_of(spec.archetype.as_deref()), &mut rand::rng())
            } else {
                served
            };
            let shapes =
                if self.driver.wants_fleet() { self.fleet_after(&spec.name, &services).await? } else { Vec::new() };
            let change = Change { project: FLEET_PROJECT, decky: &spec.name, services: &services, fleet: &shapes };
            match self.driver.apply(&change).await {
                Ok(()) => {
                    created.push((fleet_store::Creation { name: spec.name.clone(), services }, spec.archetype.clone()))
                }
                Err(e) => {
                    tracing::error!(decky = %spec.name, trigger = %Trigger::Creation, error = %e, "deploy failed; mutation not recorded");
                    failed.push(spec.name.clone());
                }
            }
            if created.len() >= batch {
                self.record_creations(std::mem::take(&mut created)).await?;
            }
        }
        self.record_creations(created).await?;
        Ok(failed)
    }

    /// Publish `decky.<name>.state` (a deployed decky's services), when
    /// there is a bus.
    async fn publish_state(&self, name: &str, services: &[String], archetype: Option<&str>) {
        let Some(bus) = self.bus() else { return };
        let payload = serde_json::json!({"decky": name, "services": services, "archetype": archetype});
        match topics::decky_state(name) {
            Ok(topic) => {
                events::publish_logged(bus, topic.as_str(), "state", payload).await;
            }
            Err(e) => tracing::error!(decky = %name, error = %e, "state not published"),
        }
    }

    /// Record deckies deployed for the first time, then tell the bus and
    /// the ingest log, as [`Self::deploy_and_record`] does for one.
    async fn record_creations(&self, created: Vec<(fleet_store::Creation, Option<String>)>) -> anyhow::Result<()> {
        if created.is_empty() {
            return Ok(());
        }
        let rows: Vec<fleet_store::Creation> = created.iter().map(|(c, _)| c.clone()).collect();
        fleet_store::record_creations(&self.pool, &rows, now_secs()).await?;
        for (c, archetype) in created {
            self.publish_state(&c.name, &c.services, archetype.as_deref()).await;
            events::emit_decky_mutated(self.bus(), &self.log_path, &c.name, &[], &c.services, Trigger::Creation, None)
                .await;
            tracing::info!(decky = %c.name, trigger = %Trigger::Creation, old = "", new = %c.services.join(","), "decky mutated");
        }
        Ok(())
    }

    /// Tear down the named deployed deckies (all when `names` is empty),
    /// each with a `retirement` event. Returns the names that failed.
    pub async fn teardown(&self, names: &[String], actor: Option<&str>) -> anyhow::Result<Vec<String>> {
        let deployed = fleet_store::list_deployed(&self.pool).await?;
        for n in names {
            anyhow::ensure!(deployed.iter().any(|d| &d.name == n), "no deployed decky named {n:?}");
        }
        let mut failed = Vec::new();
        for decky in deployed.iter().filter(|d| names.is_empty() || names.contains(&d.name)) {
            if self.deploy_and_record(decky, Vec::new(), Trigger::Retirement, actor).await.is_err() {
                failed.push(decky.name.clone());
            }
        }
        Ok(failed)
    }
}
