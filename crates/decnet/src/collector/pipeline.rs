//! The pipeline: the one consumer of the receivers' queue. Per batch it
//! parses, filters (noise, dedup), writes the raw and JSON files, then
//! publishes; on its own thread, because file writes block.
//!
//! Order matters: a line is in the raw log before anything can fail on it
//! (malformed lines are kept there, counted, never fatal), and a record is
//! in `<log>.json` before its `system.log` event goes out, so whoever
//! reacts to the event can find the record.
//!
//! Every record is tagged with how it arrived, in fields the collector
//! owns (a sender's SD params of the same names are overwritten):
//! `ingest_transport` (unix, tcp, udp, docker), `ingest_source` (the
//! sender's address; `local` for the UNIX socket, `docker` for container
//! output) and `ingest_trusted` (see [`super::access`]). An untrusted
//! record makes no attacker (profiler), no credential (ingester) and no
//! `attacker.session.ended` (here); its raw line is written behind an
//! `[untrusted TRANSPORT SOURCE] ` prefix, so it is no RFC 5424 line for
//! whoever reads the raw log (`decnet correlate` counts no forged
//! mutation, a forwarder ships it as malformed).

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use tokio::sync::mpsc;

use super::access::{self, Networks, Transport};
use super::dedup::Dedup;
use super::noise::NoiseFilter;
use super::parse::{parse_record, parse_truncated, Record};
use super::publisher::Publisher;
use super::raw_budget::RawLogBudget;
use super::sessions::Sessions;
use super::stats::Stats;
use super::writer::RotatingFile;
use super::Incoming;

/// Lines taken off the queue per batch (one write per file per batch).
pub const BATCH: usize = 512;

pub struct Pipeline {
    pub raw: RotatingFile,
    /// The raw log's disk budget (rotation at a size).
    pub raw_budget: RawLogBudget,
    /// Network senders whose lines are trusted.
    pub trust_networks: Networks,
    pub json: RotatingFile,
    pub noise: NoiseFilter,
    pub dedup: Dedup,
    pub sessions: Sessions,
    pub publisher: Publisher,
    pub stats: Arc<Stats>,
}

/// One received line as text fit for a line-oriented log: invalid UTF-8
/// replaced (readers such as the correlator read the log as UTF-8) and
/// every control or bidi character (CR/LF inside an octet-counted frame,
/// ANSI escapes, …) in the formatter's visible form (`\x0a`, `\x1b`,
/// `\u202e`), so one message stays one line, nothing in the raw log acts
/// on a terminal, and the parser still gives the exact text back.
pub fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match crate::events::rfc5424::visible(&text) {
        std::borrow::Cow::Borrowed(_) => text.into_owned(),
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

impl Pipeline {
    /// Consume `rx` until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Incoming>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut raw = Vec::with_capacity(64 * 1024);
        let mut json = Vec::with_capacity(64 * 1024);
        let mut out = Vec::with_capacity(BATCH);
        let mut last_error_log: Option<Instant> = None;
        while rx.blocking_recv_many(&mut batch, BATCH) > 0 {
            self.stats.queue_depth.store(rx.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let now = now_unix();
            raw.clear();
            json.clear();
            out.clear();
            for incoming in batch.drain(..) {
                if let Some(record) = self.process(&incoming, now, &mut raw) {
                    serde_json::to_writer(&mut json, &record).expect("a record always serializes");
                    json.push(b'\n');
                    out.push(record);
                }
            }
            let mut failed = None;
            match self.raw_budget.make_room(raw.len()) {
                Ok(true) => Stats::inc(&self.stats.raw_rotations),
                Ok(false) => {}
                Err(e) => failed = Some((self.raw.path().to_path_buf(), e)),
            }
            for (file, bytes) in [(&mut self.raw, &raw), (&mut self.json, &json)] {
                if let Err(e) = file.append(bytes) {
                    Stats::inc(&self.stats.write_errors);
                    failed = Some((file.path().to_path_buf(), e));
                }
            }
            if let Some((path, e)) = failed {
                // Once per 10 s at most: a full disk must not also fill the journal.
                if last_error_log.is_none_or(|t| t.elapsed().as_secs() >= 10) {
                    last_error_log = Some(Instant::now());
                    tracing::error!(path = %path.display(), error = %e, "collector cannot write; this batch is lost for that file");
                }
            }
            self.stats.stored.fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.stats.publish_dropped.store(self.publisher.dropped(), std::sync::atomic::Ordering::Relaxed);
            for record in &out {
                self.publisher.system_log(record);
                if record.fields.get("ingest_trusted") == Some(&Value::Bool(false)) {
                    continue;
                }
                match record.event_type.as_str() {
                    "command" => self.sessions.on_command(record),
                    "session_recorded" => self.publisher.session_ended(self.sessions.on_end(record)),
                    _ => {}
                }
            }
        }
        self.stats.queue_depth.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Append the raw line to `raw`; the record to store, if any.
    pub fn process(&mut self, incoming: &Incoming, now: f64, raw: &mut Vec<u8>) -> Option<Record> {
        let line = sanitize(&incoming.line);
        let trusted = access::trusted(incoming.transport, incoming.source, &self.trust_networks);
        if !trusted {
            raw.extend_from_slice(
                format!("[untrusted {} {}] ", incoming.transport.as_str(), incoming.source).as_bytes(),
            );
        }
        raw.extend_from_slice(line.as_bytes());
        raw.push(b'\n');
        let parsed = match incoming.truncated {
            true => parse_truncated(&line, now),
            false => parse_record(&line, now),
        };
        let mut record = match parsed {
            Ok(r) => r,
            Err(e) => {
                Stats::inc(&self.stats.malformed);
                tracing::debug!(source = %incoming.source, error = %e, "malformed line kept in the raw log only");
                return None;
            }
        };
        Stats::inc(&self.stats.parsed);
        let source = match incoming.transport {
            Transport::Unix => "local".to_string(),
            Transport::Docker => "docker".to_string(),
            Transport::Tcp | Transport::Udp => incoming.source.to_string(),
        };
        record.fields.insert("ingest_transport".into(), Value::from(incoming.transport.as_str()));
        record.fields.insert("ingest_source".into(), Value::from(source));
        record.fields.insert("ingest_trusted".into(), Value::from(trusted));
        if !trusted {
            Stats::inc(&self.stats.untrusted);
        }
        if self.noise.is_noise(&record.service) {
            Stats::inc(&self.stats.noise);
            return None;
        }
        if self.dedup.is_duplicate(&record, Instant::now()) {
            Stats::inc(&self.stats.deduped);
            return None;
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_one_line_of_valid_utf8() {
        assert_eq!(sanitize(b"a\nb\r\nc"), r"a\x0ab\x0d\x0ac");
        assert_eq!(sanitize("\u{1b}[2J admin\u{202e}gnp.exe \u{85}".as_bytes()), r"\x1b[2J admin\u202egnp.exe \x85");
        assert_eq!(sanitize(b"ok \xff\xfe end"), "ok \u{fffd}\u{fffd} end");
        assert_eq!(sanitize("café".as_bytes()), "café");
    }
}
