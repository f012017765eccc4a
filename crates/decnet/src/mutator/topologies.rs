//! The mutator's side of topologies (SPEC §8): perform deploys of
//! topologies in `deploying` (-> `active` or `failed`), and drain each live
//! topology's mutation queue in order.
//!
//! Draining stops at a topology's first failure: the row is marked
//! `failed` with the reason, the topology goes `degraded`, and its later
//! mutations stay pending. Applying them on top of a state that did not
//! take would make what runs differ from what the database says.

use decnet_bus::topics::{self, MutationState as BusMutationState};
use decnet_bus::Bus;

use super::drivers::{Change, DeckyShape};
use super::Mutator;
use crate::events::publish_logged;
use crate::store::topology::{self as store, Mutation};
use crate::topology::{Decky, MutationOp, TopologyStatus};

/// The compose/driver project of a topology.
pub fn project_of(topology_id: &str) -> String {
    format!("topology-{topology_id}")
}

fn shapes(deckies: &[Decky]) -> Vec<DeckyShape> {
    deckies.iter().map(|d| DeckyShape { name: d.name.clone(), services: d.services.clone() }).collect()
}

impl Mutator {
    async fn publish_topology_mutation(&self, mutation: &Mutation, state: BusMutationState, reason: Option<&str>) {
        let Some(bus) = self.bus.as_deref() else { return };
        match topics::topology_mutation(&mutation.topology_id, state) {
            Ok(topic) => {
                let mut payload = serde_json::json!({
                    "topology_id": mutation.topology_id,
                    "mutation_id": mutation.id,
                    "op": mutation.op,
                    "payload": mutation.payload,
                    "state": topic.as_str().rsplit('.').next().unwrap_or_default(),
                });
                if let Some(r) = reason {
                    payload["reason"] = serde_json::Value::from(r);
                }
                publish_logged(bus as &dyn Bus, topic.as_str(), "mutation", payload).await;
            }
            Err(e) => tracing::error!(topology = %mutation.topology_id, error = %e, "topology event not published"),
        }
    }

    /// Move a topology to `next` and publish `topology.<id>.status`.
    async fn set_topology_status(&self, id: &str, next: TopologyStatus) {
        match store::set_status(&self.pool, id, next).await {
            Ok(change) => {
                if let (Some(bus), Ok(topic)) = (self.bus.as_deref(), topics::topology_status(id)) {
                    let payload = serde_json::json!({
                        "topology_id": id,
                        "status": change.status.as_str(),
                        "previous": change.previous.as_str(),
                    });
                    publish_logged(bus, topic.as_str(), "status", payload).await;
                }
            }
            Err(e) => tracing::warn!(topology = id, status = next.as_str(), error = %e, "status not changed"),
        }
    }

    /// Deploy every topology in `deploying`: all deckies through the
    /// driver, then `active`, or `failed` at the first decky that fails.
    pub async fn deploy_pending_topologies(&self) {
        let deploying = match store::topologies_with_status(&self.pool, TopologyStatus::Deploying).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read topologies");
                return;
            }
        };
        for topology in deploying {
            let project = project_of(&topology.id);
            let fleet = shapes(&topology.deckies);
            let mut outcome = Ok(());
            for decky in &topology.deckies {
                let change = Change { project: &project, decky: &decky.name, services: &decky.services, fleet: &fleet };
                if let Err(e) = self.driver.apply(&change).await {
                    outcome = Err(e);
                    break;
                }
            }
            match outcome {
                Ok(()) => {
                    tracing::info!(topology = %topology.id, deckies = topology.deckies.len(), "topology deployed");
                    self.set_topology_status(&topology.id, TopologyStatus::Active).await;
                }
                Err(e) => {
                    tracing::error!(topology = %topology.id, error = %e, "topology deploy failed");
                    self.set_topology_status(&topology.id, TopologyStatus::Failed).await;
                }
            }
        }
    }

    /// Drain the pending mutations of every live topology, oldest first,
    /// stopping each topology at its first failure.
    pub async fn drain_topology_mutations(&self) {
        let live = match store::live_topologies(&self.pool).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot read topologies");
                return;
            }
        };
        for id in live {
            loop {
                let mutation = match store::claim_next_pending(&self.pool, &id).await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(topology = %id, error = %e, "cannot claim a mutation");
                        break;
                    }
                };
                self.publish_topology_mutation(&mutation, BusMutationState::Applying, None).await;
                match self.apply_topology_mutation(&mutation).await {
                    Ok(applied) => self.publish_topology_mutation(&applied, BusMutationState::Applied, None).await,
                    Err(reason) => {
                        tracing::error!(topology = %id, mutation = mutation.id, %reason, "topology mutation failed");
                        if let Err(e) = store::mark_failed(&self.pool, mutation.id, &reason).await {
                            tracing::error!(mutation = mutation.id, error = %e, "cannot mark mutation failed");
                        }
                        self.publish_topology_mutation(&mutation, BusMutationState::Failed, Some(&reason)).await;
                        let degraded = store::get_topology(&self.pool, &id)
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|t| t.status == TopologyStatus::Degraded);
                        if !degraded {
                            self.set_topology_status(&id, TopologyStatus::Degraded).await;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Deploy what the op changes, then record it applied. The reason on failure.
    async fn apply_topology_mutation(&self, mutation: &Mutation) -> Result<Mutation, String> {
        let op = mutation.op().map_err(|e| e.to_string())?;
        let topology = store::get_topology(&self.pool, &mutation.topology_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("topology {} is gone", mutation.topology_id))?;
        let mut after = topology.deckies.clone();
        op.apply(&mut after).map_err(|e| e.to_string())?;
        let (decky, services) = match &op {
            MutationOp::AddDecky { name, services } => (name.clone(), services.clone()),
            MutationOp::RemoveDecky { name } => (name.clone(), Vec::new()),
            MutationOp::SetServices { decky, services } => (decky.clone(), services.clone()),
        };
        let project = project_of(&mutation.topology_id);
        let fleet = shapes(&after);
        let change = Change { project: &project, decky: &decky, services: &services, fleet: &fleet };
        self.driver.apply(&change).await.map_err(|e| e.to_string())?;
        store::mark_applied(&self.pool, mutation.id).await.map_err(|e| e.to_string())
    }

    /// Topology work for one loop pass: deploys first, then queues.
    pub async fn drain_topologies(&self) {
        self.deploy_pending_topologies().await;
        self.drain_topology_mutations().await;
    }
}
