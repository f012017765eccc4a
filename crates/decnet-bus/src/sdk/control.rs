//! The control listener: lets an operator stop a worker through the bus
//! (`decnet pub system.<worker>.control '{"action":"stop"}'`, or the API's
//! stop button) by cancelling the same token SIGTERM cancels, so there is
//! one shutdown path to get right, not two.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError};
use crate::envelope::Envelope;
use crate::topic::TopicError;
use crate::topics::system_control;

/// Wait between subscribe attempts while the daemon is unreachable.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// What a control message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    Stop,
    /// `start` reaches a worker that is already running: nothing to do.
    Start,
    Unknown(String),
}

impl ControlAction {
    /// Parse a control payload; `None` when it has no string `action`.
    pub fn from_payload(payload: &Value) -> Option<ControlAction> {
        match payload.get("action")?.as_str()? {
            "stop" => Some(ControlAction::Stop),
            "start" => Some(ControlAction::Start),
            other => Some(ControlAction::Unknown(other.to_owned())),
        }
    }
}

/// Listen on `system.<worker>.control` until `shutdown` is cancelled (by
/// a stop message, a signal, or the worker itself). A stop cancels
/// `shutdown`; anything else is logged and ignored. If the bus is
/// unreachable it keeps retrying the subscription.
pub async fn run_control_listener(
    bus: impl Into<Option<Arc<dyn Bus>>>,
    worker: &str,
    shutdown: CancellationToken,
) -> Result<(), TopicError> {
    listen(bus.into(), worker, shutdown, None).await
}

/// As [`run_control_listener`], reporting through `ready` once the first
/// subscribe attempt is done (the worker runtime starts heartbeats after it,
/// so a heartbeat seen on the bus means the control channel is live).
pub(crate) async fn listen(
    bus: Option<Arc<dyn Bus>>,
    worker: &str,
    shutdown: CancellationToken,
    mut ready: Option<oneshot::Sender<()>>,
) -> Result<(), TopicError> {
    let topic = system_control(worker)?;
    let Some(bus) = bus else {
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        shutdown.cancelled().await;
        return Ok(());
    };
    let mut logged_unreachable = false;
    loop {
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            s = bus.subscribe(topic.as_str()) => s,
        };
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        let mut sub = match subscribed {
            Ok(sub) => sub,
            Err(BusError::Closed) => {
                // Closed bus: no more control messages can come; the worker
                // still stops on signals.
                shutdown.cancelled().await;
                return Ok(());
            }
            Err(e) => {
                if !logged_unreachable {
                    tracing::warn!(worker, error = %e, "control listener cannot subscribe yet; retrying");
                    logged_unreachable = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RESUBSCRIBE_EVERY) => continue,
                }
            }
        };
        tracing::debug!(worker, topic = %topic, "control listener subscribed");
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                e = sub.recv() => e,
            };
            match event {
                Some(env) => {
                    if handle(worker, &env, &shutdown) {
                        return Ok(());
                    }
                }
                // The stream ended: the bus was closed. Resubscribing would
                // fail, so fall through to the closed-bus wait.
                None => break,
            }
        }
        if bus.is_closed() {
            shutdown.cancelled().await;
            return Ok(());
        }
    }
}

/// Act on one control event; true when it stopped the worker.
fn handle(worker: &str, env: &Envelope, shutdown: &CancellationToken) -> bool {
    let requested_by = env.payload.get("requested_by").and_then(Value::as_str).unwrap_or("unknown");
    // Federated buses carry every host's control topics (SPEC §9): an
    // intent naming a host is for that host's worker only. One without
    // `host` keeps its pre-federation meaning, "this host".
    if let Some(target) = env.payload.get("host") {
        let own = super::host_id();
        if target.as_str() != Some(own.as_str()) {
            tracing::debug!(worker, requested_by, target = %target, own = %own, "control intent for another host ignored");
            return false;
        }
    }
    match ControlAction::from_payload(&env.payload) {
        Some(ControlAction::Stop) => {
            tracing::info!(worker, requested_by, "stop requested over the bus; shutting down");
            shutdown.cancel();
            true
        }
        Some(ControlAction::Start) => {
            tracing::info!(worker, requested_by, "start requested, but this worker is already running; ignored");
            false
        }
        Some(ControlAction::Unknown(action)) => {
            tracing::warn!(worker, requested_by, action, "unknown control action ignored");
            false
        }
        None => {
            tracing::warn!(worker, payload = %env.payload, "malformed control message ignored (expected {{\"action\": \"stop\"}})");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(payload: Value) -> Envelope {
        Envelope {
            v: 1,
            id: String::new(),
            topic: "system.sniffer.control".into(),
            event_type: "control".into(),
            ts: 0.0,
            payload,
        }
    }

    #[test]
    fn stop_obeys_only_its_own_host() {
        let own = super::super::host_id();
        let token = CancellationToken::new();
        let other = intent(serde_json::json!({"action": "stop", "host": format!("not-{own}")}));
        assert!(!handle("sniffer", &other, &token));
        assert!(!token.is_cancelled(), "a stop for another host must be ignored");
        let bad = intent(serde_json::json!({"action": "stop", "host": 7}));
        assert!(!handle("sniffer", &bad, &token));
        assert!(!token.is_cancelled(), "a non-string host names no host, so nobody obeys");
        let mine = intent(serde_json::json!({"action": "stop", "host": own}));
        assert!(handle("sniffer", &mine, &token));
        assert!(token.is_cancelled());
    }

    #[test]
    fn stop_without_host_means_this_host() {
        let token = CancellationToken::new();
        assert!(handle("sniffer", &intent(serde_json::json!({"action": "stop"})), &token));
        assert!(token.is_cancelled());
    }
}
