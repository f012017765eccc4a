//! Correlation: what an attacker's profile means across deckies.
//!
//! - A traversal (≥ 2 deckies) carries the mutations of every touched decky
//!   inside the attacker's `[first_seen, last_seen]` window, from
//!   `decky_mutations` (the mutator's `decky_mutated` lines): an analyst
//!   needs to know that `web-01` was running `ftp` rather than `ssh` when the
//!   attacker moved on. Each new or changed traversal is written as one
//!   `traversal_detected` RFC 5424 line to the ingest log, the same
//!   durable record the mutator writes to.
//! - Credential reuse: one secret tried on ≥ 2 distinct `decky:service`
//!   targets. Published once per (secret, target set); the last published
//!   set is kept in `credential_reuse` so a restart publishes nothing new.

use serde_json::{json, Value};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::fold::Profile;
use crate::events::rfc5424::{format_event, RelayEvent, Severity};

/// The RFC 5424 MSGID (and event type) of a traversal line.
pub const TRAVERSAL_MSGID: &str = "traversal_detected";

/// One `decky_mutations` row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Mutation {
    pub timestamp: f64,
    pub decky: String,
    pub old_services: Vec<String>,
    pub new_services: Vec<String>,
    pub trigger: String,
    pub actor: Option<String>,
}

/// Services columns are written as JSON lists by the deckies worker; a
/// comma list (the RFC 5424 form) is accepted too.
pub fn services_list(text: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(list) => list,
        Err(_) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
    }
}

pub fn mutation_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Mutation, sqlx::Error> {
    Ok(Mutation {
        timestamp: r.try_get("timestamp")?,
        decky: r.try_get("decky")?,
        old_services: services_list(&r.try_get::<String, _>("old_services")?),
        new_services: services_list(&r.try_get::<String, _>("new_services")?),
        trigger: r.try_get("trigger")?,
        actor: r.try_get("actor")?,
    })
}

/// Mutations of `deckies` between `from` and `to` (inclusive), oldest first.
pub async fn mutations_in_window(
    pool: &SqlitePool,
    deckies: &[String],
    from: f64,
    to: f64,
) -> Result<Vec<Mutation>, sqlx::Error> {
    if deckies.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; deckies.len()].join(",");
    let sql = format!(
        "SELECT timestamp, decky, old_services, new_services, trigger, actor FROM decky_mutations
         WHERE decky IN ({marks}) AND timestamp >= ? AND timestamp <= ? ORDER BY timestamp, id LIMIT 1000"
    );
    let mut q = sqlx::query(&sql);
    for d in deckies {
        q = q.bind(d);
    }
    q.bind(from).bind(to).fetch_all(pool).await?.iter().map(mutation_from_row).collect()
}

/// The `traversal_detected` line for `profile` (host = the decky reached
/// last, app = `profiler`), mutations as a JSON list in one SD param.
pub fn traversal_line(profile: &Profile, mutations: &[Mutation], at: time::OffsetDateTime) -> String {
    let event = RelayEvent {
        timestamp: at,
        severity: Severity::Notice,
        host: profile.deckies.last().cloned().unwrap_or_else(|| "-".into()),
        app: "profiler".into(),
        msgid: TRAVERSAL_MSGID.into(),
        params: vec![
            ("attacker_ip".into(), profile.ip.clone()),
            ("path".into(), profile.traversal_path()),
            ("deckies".into(), profile.deckies.join(",")),
            ("decky_count".into(), profile.deckies.len().to_string()),
            ("first_seen".into(), format!("{:.3}", profile.first_seen)),
            ("last_seen".into(), format!("{:.3}", profile.last_seen)),
            ("mutation_count".into(), mutations.len().to_string()),
            ("mutations".into(), serde_json::to_string(mutations).unwrap_or_else(|_| "[]".into())),
        ],
        msg: Some(format!("{} moved {}", profile.ip, profile.traversal_path())),
    };
    format_event(&event)
}

/// Secrets of credentials `ips` tried.
pub async fn secrets_of(pool: &SqlitePool, ips: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in ips.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT DISTINCT secret_sha256 FROM credentials WHERE attacker_ip IN ({marks})");
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for ip in chunk {
            q = q.bind(ip);
        }
        out.extend(q.fetch_all(pool).await?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// For each of `secrets` used on ≥ 2 targets whose target set differs from
/// the one last published: record the new set in `tx` and return the
/// `credential.reuse.detected` payload to publish once `tx` commits. The
/// secret itself is never in the payload, only its hash.
pub async fn reuse_to_publish(
    tx: &mut Transaction<'_, Sqlite>,
    secrets: &[String],
    now: f64,
) -> Result<Vec<Value>, sqlx::Error> {
    let mut out = Vec::new();
    for secret in secrets {
        let rows = sqlx::query(
            "SELECT DISTINCT decky || ':' || service AS target, attacker_ip, username FROM credentials
             WHERE secret_sha256 = ? ORDER BY target",
        )
        .bind(secret)
        .fetch_all(&mut **tx)
        .await?;
        let mut targets: Vec<String> = Vec::new();
        let mut ips: Vec<String> = Vec::new();
        let mut users: Vec<String> = Vec::new();
        for r in &rows {
            for (list, col) in [(&mut targets, "target"), (&mut ips, "attacker_ip"), (&mut users, "username")] {
                let v: String = r.try_get(col)?;
                if !list.contains(&v) {
                    list.push(v);
                }
            }
        }
        targets.sort();
        ips.sort();
        users.sort();
        if targets.len() < 2 {
            continue;
        }
        let encoded = serde_json::to_string(&targets).unwrap_or_default();
        let last: Option<String> = sqlx::query_scalar("SELECT targets FROM credential_reuse WHERE secret_sha256 = ?")
            .bind(secret)
            .fetch_optional(&mut **tx)
            .await?;
        if last.as_deref() == Some(encoded.as_str()) {
            continue;
        }
        sqlx::query(
            "INSERT INTO credential_reuse (secret_sha256, targets, published_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(secret_sha256) DO UPDATE SET targets = ?2, published_at = ?3",
        )
        .bind(secret)
        .bind(&encoded)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        out.push(json!({
            "secret_sha256": secret,
            "targets": targets,
            "target_count": targets.len(),
            "attacker_ips": ips,
            "usernames": users,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::rfc5424::parse_line;

    #[test]
    fn traversal_line_parses_back_with_every_field() {
        let mut p = Profile::new("10.0.0.9", 100.0);
        p.deckies = vec!["web-01".into(), "db-02".into()];
        p.last_seen = 130.5;
        let m = Mutation {
            timestamp: 110.0,
            decky: "web-01".into(),
            old_services: vec!["ssh".into()],
            new_services: vec!["ftp".into(), "http".into()],
            trigger: "scheduled".into(),
            actor: None,
        };
        let line = traversal_line(&p, std::slice::from_ref(&m), time::OffsetDateTime::UNIX_EPOCH);
        let parsed = parse_line(&line).unwrap();
        assert_eq!(parsed.msgid.as_deref(), Some(TRAVERSAL_MSGID));
        assert_eq!(parsed.hostname.as_deref(), Some("db-02"));
        let sd = parsed.element("relay@55555").unwrap();
        assert_eq!(sd.param("path"), Some("web-01 → db-02"));
        assert_eq!(sd.param("attacker_ip"), Some("10.0.0.9"));
        assert_eq!(sd.param("mutation_count"), Some("1"));
        let back: Vec<Value> = serde_json::from_str(sd.param("mutations").unwrap()).unwrap();
        assert_eq!(back[0]["new_services"], json!(["ftp", "http"]));
    }

    #[test]
    fn services_columns_accept_json_or_commas() {
        assert_eq!(services_list(r#"["a","b"]"#), ["a", "b"]);
        assert_eq!(services_list("a, b,"), ["a", "b"]);
        assert!(services_list("").is_empty());
    }
}
