//! What one successful probe leaves behind: a row in `fingerprints`, an
//! RFC 5424 line in the ingest log, `attacker.fingerprinted` on the bus,
//! and `attacker.fingerprint_rotated` when the stored hash changed.
//!
//! The three sinks fail independently (SPEC §8's rule for events): a dead
//! bus or an unwritable log costs neither the other sinks nor the prober.

use decnet_bus::topics::{ATTACKER_FINGERPRINTED, ATTACKER_FINGERPRINT_ROTATED};
use decnet_bus::Bus;
use serde_json::{json, Value};
use sqlx::SqlitePool;
use std::io::Write;
use std::path::Path;

use super::store::{self, Source, Upsert};
use super::Fingerprint;
use crate::events::rfc5424::{format_event, RelayEvent, Severity};

/// What happened to each sink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    pub stored: bool,
    pub logged: bool,
    pub published: bool,
    /// The hash this one replaced, when it changed.
    pub rotated_from: Option<String>,
}

/// This host's name, for the HOSTNAME of worker lines.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// Scalars as SD params; lists joined with `,`; objects skipped (they are in the bus payload and the DB).
pub fn sd_params(payload: &Value) -> Vec<(String, String)> {
    let Some(obj) = payload.as_object() else { return Vec::new() };
    obj.iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

/// Append one line (O_APPEND keeps concurrent writers' lines whole).
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// The ingest-log line of one fingerprint.
pub fn log_line(host: &str, app: &str, msgid: &str, payload: &Value) -> String {
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Info,
        host: host.into(),
        app: app.into(),
        msgid: msgid.into(),
        params: sd_params(payload),
        msg: None,
    })
}

/// Store, log and publish one probe result.
pub async fn record(pool: Option<&SqlitePool>, bus: &dyn Bus, log_path: &Path, fp: &Fingerprint) -> Recorded {
    let payload = fp.payload();
    let ip = fp.ip.to_string();
    let mut out = Recorded::default();
    if let Some(pool) = pool {
        match store::upsert_retrying(
            pool,
            &ip,
            fp.probe.as_str(),
            fp.port,
            &fp.hash,
            &payload,
            Source::Prober,
            crate::mutator::now_secs(),
        )
        .await
        {
            Ok(u) => {
                out.stored = true;
                if let Upsert::Changed(old) = u {
                    out.rotated_from = Some(old);
                }
            }
            Err(e) => tracing::error!(attacker_ip = %ip, probe = %fp.probe, error = %e, "cannot store fingerprint"),
        }
    }
    let line = log_line(&hostname(), "prober", fp.probe.as_str(), &payload);
    match append_line(log_path, &line) {
        Ok(()) => out.logged = true,
        Err(e) => tracing::error!(path = %log_path.display(), error = %e, "cannot write fingerprint to the ingest log"),
    }
    out.published = crate::events::publish_logged(bus, ATTACKER_FINGERPRINTED, fp.probe.as_str(), payload).await;
    if let Some(old) = &out.rotated_from {
        tracing::info!(attacker_ip = %ip, probe = %fp.probe, port = fp.port, old = %old, new = %fp.hash, "fingerprint rotated");
        let rotated =
            json!({"attacker_ip": ip, "port": fp.port, "probe": fp.probe.as_str(), "old": old, "new": fp.hash});
        crate::events::publish_logged(bus, ATTACKER_FINGERPRINT_ROTATED, fp.probe.as_str(), rotated).await;
    }
    out
}
