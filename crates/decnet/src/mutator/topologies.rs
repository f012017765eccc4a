//! The mutator's side of topologies (SPEC §8): perform deploys of
//! topologies in `deploying` (-> `active` or `failed`), and drain each live
//! topology's mutation queue in order.
//!
//! Draining stops at a topology's first failure: the row is marked
//! `failed` with the reason, the topology goes `degraded`, and its later
//! mutations stay pending — also on later passes, since only `active`
//! topologies are drained. Applying them on top of a state that did not
//! take would make what runs differ from what the database says. A
//! redeploy (`POST …/deploy`: `degraded -> deploying -> active`) puts the
//! topology back in a known state and its queue drains again.

use decnet_bus::topics::MutationState as BusMutationState;

use super::drivers::{Change, DeckyShape};
use super::Mutator;
use crate::store::topology::{self as store, Mutation};
use crate::topology::{Decky, MutationOp, TopologyStatus};
use crate::topology_events::TopologyEvent;

/// The compose/driver project of a topology.
pub fn project_of(topology_id: &str) -> String {
    format!("topology-{topology_id}")
}

fn shapes(deckies: &[Decky]) -> Vec<DeckyShape> {
    deckies.iter().map(|d| DeckyShape { name: d.name.clone(), services: d.services.clone() }).collect()
}

impl Mutator {
    /// Publish `topology.<id>.mutation.<state>` in the shape the API uses
    /// for `enqueued` ([`TopologyEvent`]), with `reason` when it failed.
    async fn publish_topology_mutation(&self, mutation: &Mutation, state: BusMutationState, reason: Option<&str>) {
        let mut row = mutation.clone();
        if let Some(r) = reason {
            row.reason = Some(r.to_string());
        }
        match TopologyEvent::mutation(&row, state) {
            Ok(event) => {
                event.publish(self.bus.as_deref()).await;
            }
            Err(e) => tracing::error!(topology = %mutation.topology_id, error = %e, "topology event not published"),
        }
    }

    /// Move a topology to `next` and publish `topology.<id>.status`.
    async fn set_topology_status(&self, id: &str, next: TopologyStatus) {
        match store::set_status(&self.pool, id, next).await {
            Ok(change) => match TopologyEvent::status(id, change) {
                Ok(event) => {
                    event.publish(self.bus.as_deref()).await;
                }
                Err(e) => tracing::error!(topology = id, error = %e, "topology event not published"),
            },
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
