//! Worker heartbeats: `system.<worker>.health` every interval, the signal
//! the control plane's worker registry lives on (SPEC §7: `ok` < 90 s).
//!
//! The heartbeat must outlive bugs in the worker's own status reporting: a
//! failing or panicking `extra` is logged and that tick still publishes the
//! base payload, because "alive but can't report details" is far more useful
//! to an operator than a worker that looks dead.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{publish_safely, BoxError};
use crate::bus::Bus;
use crate::envelope::now_ts;
use crate::topic::TopicError;
use crate::topics::system_health;

/// SPEC §6 default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Extra fields for each heartbeat (queue depths, counters, …).
pub type HealthExtra = Arc<dyn Fn() -> Result<Map<String, Value>, BoxError> + Send + Sync>;

/// `{worker, ts, host, ...extra()}`. `worker` and `ts` are always the real
/// ones: an `extra` cannot make one worker's heartbeat count as another's.
/// `host` is this process's [`host_id`](super::host_id) unless `extra`
/// names one (the bus daemon's `--host-id` flag does, so its heartbeat
/// agrees with what its NATS bridge stamps as origin).
pub fn health_payload(worker: &str, extra: Option<&HealthExtra>) -> Value {
    let mut payload = match extra {
        None => Map::new(),
        Some(extra) => match catch_unwind(AssertUnwindSafe(|| extra())) {
            Ok(Ok(map)) => map,
            Ok(Err(e)) => {
                tracing::warn!(worker, error = %e, "health extra failed; sending the base heartbeat");
                Map::new()
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                tracing::error!(worker, panic = %msg, "health extra panicked; sending the base heartbeat");
                Map::new()
            }
        },
    };
    let has_host = payload.get("host").and_then(Value::as_str).is_some_and(super::valid_host_id);
    if !has_host {
        payload.insert("host".into(), Value::String(super::host_id()));
    }
    payload.insert("worker".into(), Value::String(worker.into()));
    payload.insert("ts".into(), Value::from(now_ts()));
    Value::Object(payload)
}

/// Publish a heartbeat now and every `interval` until `cancel` fires.
/// With no bus it just waits for cancellation. Returns promptly on cancel,
/// even mid-publish. Errors only if `worker` cannot be a topic segment.
pub async fn run_health_heartbeat(
    bus: impl Into<Option<Arc<dyn Bus>>>,
    worker: &str,
    interval: Duration,
    extra: Option<HealthExtra>,
    cancel: CancellationToken,
) -> Result<(), TopicError> {
    let topic = system_health(worker)?;
    let Some(bus) = bus.into() else {
        cancel.cancelled().await;
        return Ok(());
    };
    let interval = if interval.is_zero() { DEFAULT_HEARTBEAT_INTERVAL } else { interval };
    let mut ticker = tokio::time::interval(interval);
    // After a stall, one heartbeat then back on rhythm; a burst says nothing.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let payload = health_payload(worker, extra.as_ref());
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = publish_safely(Some(&*bus), topic.as_str(), payload, "health") => {}
        }
    }
}
