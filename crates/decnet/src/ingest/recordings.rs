//! `session_recorded` lines that name a recording → `recordings` rows.
//!
//! A decky ends every session with `session_recorded`; when the session
//! had a shell it also wrote an asciicast v2 file and names it in
//! `recording` (with `recording_bytes` and `recording_sha256`, which the
//! API checks the file against before serving it). The `sid` is the key
//! the dashboard asks for, so it must be a plain token. Trusted lines only.

use sqlx::{Sqlite, Transaction};

use crate::collector::Record;

/// The closing line of every decky session.
pub const EVENT_TYPE: &str = "session_recorded";

/// Longest session id accepted (deckies use 16 hex digits).
pub const MAX_SID_CHARS: usize = 64;

/// One recorded session, as its `session_recorded` line describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub sid: String,
    pub username: Option<String>,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub started: f64,
    pub ended: f64,
    pub commands: u64,
}

/// Whether `sid` can name a session in a URL path: 1–64 of `[A-Za-z0-9_-]`.
pub fn is_session_id(sid: &str) -> bool {
    !sid.is_empty()
        && sid.len() <= MAX_SID_CHARS
        && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The recording `record` names, if it is a trusted `session_recorded`
/// line with a well-formed recording. A session without a shell (no
/// `recording`) is no recording and not worth a warning.
pub fn recording_of(record: &Record) -> Option<Recorded> {
    if record.event_type != EVENT_TYPE || !super::store::is_trusted(record) {
        return None;
    }
    let path = record.field("recording")?;
    let reject = |why: &str| {
        tracing::warn!(decky = %record.decky, attacker_ip = %record.attacker_ip, why, "session recording not stored");
        None
    };
    let sid = match record.field("sid") {
        Some(s) if is_session_id(s) => s.to_string(),
        _ => return reject("sid is not a session id"),
    };
    let sha256 = match record.field("recording_sha256") {
        Some(s) if super::artifacts::is_sha256_hex(s) => s.to_ascii_lowercase(),
        _ => return reject("recording_sha256 is not 64 hex digits"),
    };
    let Some(bytes) = record.field("recording_bytes").and_then(|s| s.parse::<u64>().ok()) else {
        return reject("recording_bytes is not a byte count");
    };
    let duration = record
        .field("duration_s")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .unwrap_or(0.0);
    // `commands` is the JSON array of what was typed (bounded by the decky).
    let commands = record
        .field("commands")
        .and_then(|c| serde_json::from_str::<Vec<serde_json::Value>>(c).ok())
        .map_or(0, |c| c.len() as u64);
    Some(Recorded {
        sid,
        username: record.field("username").map(str::to_string),
        path: path.to_string(),
        bytes,
        sha256,
        started: record.timestamp - duration,
        ended: record.timestamp,
        commands,
    })
}

/// Store `rec`; a sid already stored (the same line read again from
/// another ingest log) keeps its first row.
pub async fn insert(tx: &mut Transaction<'_, Sqlite>, record: &Record, rec: &Recorded) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO recordings (sid, attacker_ip, decky, service, username, path, bytes, sha256, started, ended, commands) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sid) DO NOTHING",
    )
    .bind(&rec.sid)
    .bind(&record.attacker_ip)
    .bind(&record.decky)
    .bind(&record.service)
    .bind(&rec.username)
    .bind(&rec.path)
    .bind(i64::try_from(rec.bytes).unwrap_or(i64::MAX))
    .bind(&rec.sha256)
    .bind(rec.started)
    .bind(rec.ended)
    .bind(i64::try_from(rec.commands).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn record(sd: &str) -> Record {
        crate::collector::parse_record(
            &format!("<134>1 2026-12-02T16:10:00.000000Z web-01 ssh - session_recorded [relay@55555 src_ip=\"203.0.113.7\" {sd}]"),
            0.0,
        )
        .unwrap()
    }

    #[test]
    fn a_recorded_shell_session_is_read_exactly() {
        let r = record(&format!(
            r#"sid="0123abcd" service="ssh" duration_s="12.500" bytes="900" commands="[\"uname -a\",\"id\"\]" username="root" recording="/home/d/recordings/web-01/0123abcd.cast" recording_bytes="321" recording_sha256="{SHA}""#
        ));
        let rec = recording_of(&r).unwrap();
        assert_eq!(rec.sid, "0123abcd");
        assert_eq!(rec.path, "/home/d/recordings/web-01/0123abcd.cast");
        assert_eq!((rec.bytes, rec.commands, rec.username.as_deref()), (321, 2, Some("root")));
        assert_eq!(rec.ended - rec.started, 12.5);
        assert_eq!(rec.sha256, SHA);
    }

    #[test]
    fn sessions_without_a_good_recording_make_none() {
        let ok = format!(r#"sid="s1" recording="/r/s1.cast" recording_bytes="1" recording_sha256="{SHA}""#);
        assert!(recording_of(&record(&ok)).is_some());
        for bad in [
            r#"sid="s1" duration_s="1" commands="[\]""#.to_string(),
            format!(r#"sid="../s1" recording="/r/s1.cast" recording_bytes="1" recording_sha256="{SHA}""#),
            format!(r#"recording="/r/s1.cast" recording_bytes="1" recording_sha256="{SHA}""#),
            r#"sid="s1" recording="/r/s1.cast" recording_bytes="1" recording_sha256="abc""#.to_string(),
            format!(r#"sid="s1" recording="/r/s1.cast" recording_bytes="x" recording_sha256="{SHA}""#),
        ] {
            assert!(recording_of(&record(&bad)).is_none(), "{bad}");
        }
        let mut forged = record(&ok);
        forged.fields.insert("ingest_trusted".into(), serde_json::Value::Bool(false));
        assert!(recording_of(&forged).is_none());
        assert!(!is_session_id(&"a".repeat(65)));
    }
}
