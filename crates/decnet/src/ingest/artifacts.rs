//! `artifact` lines → `artifacts` rows and `attacker.artifact` payloads.
//!
//! A decky writes one `artifact` line per file it put in its quarantine
//! folder (an upload, or a payload it fetched when fetching is on). The
//! file is `<artifacts dir>/<sha256>`, so the hash is also a file name: a
//! line whose `sha256` is not 64 hex digits makes no row (the API would
//! refuse to serve it anyway). Only trusted lines count, as for
//! credentials: a forged line could otherwise point an admin's download
//! at any stored file under a fake attacker.

use serde_json::{json, Value};
use sqlx::{Sqlite, Transaction};

use crate::collector::Record;

/// The MSGID of a captured file.
pub const EVENT_TYPE: &str = "artifact";

/// One captured file, as an `artifact` line describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub sid: String,
    /// `url` (fetched) or `upload`.
    pub source: String,
    pub url: Option<String>,
    /// Where the attacker put it in the session's filesystem.
    pub path: String,
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
    pub mime: String,
}

/// Whether `s` is a SHA-256 in hex (either case).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The artifact in `record`, if it is a trusted, well-formed `artifact` line.
pub fn artifact_of(record: &Record) -> Option<Artifact> {
    if record.event_type != EVENT_TYPE || !super::store::is_trusted(record) {
        return None;
    }
    let reject = |why: &str| {
        tracing::warn!(decky = %record.decky, attacker_ip = %record.attacker_ip, why, "artifact line not stored");
        None
    };
    let sha256 = match record.field("sha256") {
        Some(s) if is_sha256_hex(s) => s.to_ascii_lowercase(),
        _ => return reject("sha256 is not 64 hex digits"),
    };
    let Some(size) = record.field("size").and_then(|s| s.parse::<u64>().ok()) else {
        return reject("size is not a byte count");
    };
    let source = match record.field("source") {
        Some(s @ ("url" | "upload")) => s.to_string(),
        _ => return reject("source is neither url nor upload"),
    };
    // SPEC §11: `url` belongs to downloads only.
    let url = record.field("url").filter(|_| source == "url").map(str::to_string);
    if source == "url" && url.is_none() {
        return reject("a fetched artifact names no url");
    }
    Some(Artifact {
        sid: record.field("sid").unwrap_or_default().to_string(),
        source,
        url,
        path: record.field("path").unwrap_or_default().to_string(),
        sha256,
        size,
        mime: record.field("mime").filter(|m| !m.is_empty()).unwrap_or("application/octet-stream").to_string(),
    })
}

/// Store `artifact`; true when this (attacker, decky, session, file, path)
/// is new, i.e. when `attacker.artifact` should go out.
pub async fn insert(tx: &mut Transaction<'_, Sqlite>, record: &Record, artifact: &Artifact) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO artifacts (attacker_ip, decky, sid, source, url, path, sha256, size, mime, first_seen) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (attacker_ip, decky, sid, sha256, path) DO NOTHING",
    )
    .bind(&record.attacker_ip)
    .bind(&record.decky)
    .bind(&artifact.sid)
    .bind(&artifact.source)
    .bind(&artifact.url)
    .bind(&artifact.path)
    .bind(&artifact.sha256)
    // SQLite integers are signed; no real file is 2^63 bytes.
    .bind(i64::try_from(artifact.size).unwrap_or(i64::MAX))
    .bind(&artifact.mime)
    .bind(record.timestamp)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The `attacker.artifact` payload (SPEC §11); `url` only for downloads.
pub fn payload(record: &Record, artifact: &Artifact) -> Value {
    let mut p = json!({
        "attacker_ip": record.attacker_ip,
        "decky": record.decky,
        "sid": artifact.sid,
        "source": artifact.source,
        "path": artifact.path,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "mime": artifact.mime,
    });
    if let Some(url) = &artifact.url {
        p["url"] = Value::String(url.clone());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn record(sd: &str) -> Record {
        crate::collector::parse_record(
            &format!("<134>1 - web-01 ssh - artifact [relay@55555 src_ip=\"203.0.113.7\" sid=\"ab12\" {sd}]"),
            0.0,
        )
        .unwrap()
    }

    #[test]
    fn a_download_and_an_upload_are_read_exactly() {
        let r = record(&format!(
            r#"source="url" url="http://198.51.100.2/x.sh" path="/tmp/x.sh" sha256="{}" size="4" mime="text/x-shellscript""#,
            SHA.to_ascii_uppercase()
        ));
        let a = artifact_of(&r).unwrap();
        assert_eq!(a.sha256, SHA, "stored lower-case: it is a file name");
        assert_eq!((a.source.as_str(), a.url.as_deref(), a.size), ("url", Some("http://198.51.100.2/x.sh"), 4));
        assert_eq!(
            payload(&r, &a),
            json!({"attacker_ip": "203.0.113.7", "decky": "web-01", "sid": "ab12", "source": "url",
                   "url": "http://198.51.100.2/x.sh", "path": "/tmp/x.sh", "sha256": SHA, "size": 4,
                   "mime": "text/x-shellscript"})
        );
        let up = artifact_of(&record(&format!(
            r#"source="upload" url="http://stray/" path="/root/a" sha256="{SHA}" size="0""#
        )))
        .unwrap();
        assert_eq!((up.url.as_deref(), up.mime.as_str()), (None, "application/octet-stream"));
        assert!(payload(&r, &up).get("url").is_none(), "an upload's payload has no url");
    }

    #[test]
    fn malformed_or_untrusted_lines_make_no_artifact() {
        let good = format!(r#"source="upload" path="/a" sha256="{SHA}" size="1""#);
        assert!(artifact_of(&record(&good)).is_some());
        for bad in [
            r#"source="upload" path="/a" sha256="../../etc/passwd" size="1""#.to_string(),
            format!(r#"source="upload" path="/a" sha256="{}" size="1""#, &SHA[..63]),
            format!(r#"source="upload" path="/a" sha256="{SHA}" size="-1""#),
            format!(r#"source="upload" path="/a" sha256="{SHA}""#),
            format!(r#"source="tftp" path="/a" sha256="{SHA}" size="1""#),
            format!(r#"source="url" path="/a" sha256="{SHA}" size="1""#),
        ] {
            assert!(artifact_of(&record(&bad)).is_none(), "{bad}");
        }
        let mut forged = record(&good);
        forged.fields.insert("ingest_trusted".into(), Value::Bool(false));
        assert!(artifact_of(&forged).is_none(), "an untrusted line is no evidence");
        let mut other = record(&good);
        other.event_type = "download".into();
        assert!(artifact_of(&other).is_none());
    }
}
