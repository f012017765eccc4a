//! Mutation events: one RFC 5424 line in the ingest log (what the
//! correlator reads) and one `decky.<id>.mutation` bus event (what live
//! consumers see).
//!
//! The two sides are independent on purpose: the log is the durable
//! record, the bus is fire-and-forget. An unwritable log must not cost
//! the live event, and a dead bus must not cost the record; neither ever
//! fails the caller (the mutator keeps mutating).

pub use decnet_decky::rfc5424;

use decnet_bus::Bus;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use rfc5424::{MutationEvent, Trigger};

/// The ingest log: `DECNET_INGEST_LOG_FILE`, else `$DECNET_HOME/ingest.log`.
pub fn default_ingest_log_path() -> PathBuf {
    match std::env::var_os("DECNET_INGEST_LOG_FILE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::home::decnet_home().join("ingest.log"),
    }
}

/// What happened to each side of one emit (for callers that care, and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitOutcome {
    pub logged: bool,
    pub published: bool,
}

/// Append one line to the log, creating the file (and its folder) if needed.
/// `O_APPEND` keeps concurrent writers' lines whole.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Owner-only like every state file (it holds what attackers typed).
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).mode(crate::state_dir::FILE_MODE).open(path)?;
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    file.write_all(buf.as_bytes())
}

/// The `decky.<id>.mutation` payload.
pub fn mutation_payload(event: &MutationEvent) -> serde_json::Value {
    let mut payload = serde_json::json!({
        "decky": event.decky,
        "old_services": event.old_services,
        "new_services": event.new_services,
        "trigger": event.trigger.as_str(),
    });
    if let Some(actor) = &event.actor {
        payload["actor"] = serde_json::Value::String(actor.clone());
    }
    payload
}

/// Record a decky transition: RFC 5424 line to `log_path`, then
/// `decky.<decky>.mutation` on `bus` (skipped when `None`). Failures are
/// logged and reported in the outcome, never returned.
pub async fn emit_decky_mutated(
    bus: Option<&dyn Bus>,
    log_path: &Path,
    decky: &str,
    old_services: &[String],
    new_services: &[String],
    trigger: Trigger,
    actor: Option<&str>,
) -> EmitOutcome {
    let event = MutationEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        decky: decky.to_string(),
        old_services: old_services.to_vec(),
        new_services: new_services.to_vec(),
        trigger,
        actor: actor.map(str::to_string),
    };
    let line = rfc5424::format_mutation(&event);
    let logged = match append_line(log_path, &line) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(path = %log_path.display(), error = %e, decky, "cannot write mutation event to the ingest log");
            false
        }
    };
    let published = match bus {
        None => false,
        Some(bus) => match decnet_bus::topics::decky_mutation(decky) {
            Ok(topic) => publish_logged(bus, topic.as_str(), "mutation", mutation_payload(&event)).await,
            Err(e) => {
                tracing::error!(decky, error = %e, "decky name is not a topic segment; mutation event not published");
                false
            }
        },
    };
    EmitOutcome { logged, published }
}

/// Publish, logging (not returning) a failure. True when handed to the bus.
/// A dead bus is logged at WARN at most every 30 s (like the SDK's
/// `publish_safely`), so a mutator running without a bus does not flood
/// its log; the caller still learns whether this event went out.
pub async fn publish_logged(bus: &dyn Bus, topic: &str, event_type: &str, payload: serde_json::Value) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_WARN: AtomicU64 = AtomicU64::new(0);
    match bus.publish(topic, event_type, payload).await {
        Ok(()) => true,
        Err(e) => {
            let now = crate::mutator::now_secs() as u64;
            let last = LAST_WARN.load(Ordering::Relaxed);
            if now >= last + 30 && LAST_WARN.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                tracing::warn!(topic, error = %e, "bus publish failed; event dropped (repeats logged at debug)");
            } else {
                tracing::debug!(topic, error = %e, "bus publish failed; event dropped");
            }
            false
        }
    }
}
