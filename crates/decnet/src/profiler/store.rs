//! The profiler's SQL: reading `logs` after its cursor, loading and saving
//! `attackers` rows, and the per-attacker lookups (timeline, credentials,
//! fingerprints) that complete a profile. Writes take a transaction handle
//! so a pass commits its upserts and its cursor together.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::behavior::Event;
use super::fold::{LogRow, Profile};

/// Newest events used to classify behaviour (older ones say little about
/// what the attacker does now, and the query stays bounded).
pub const TIMELINE_LIMIT: i64 = 500;

pub async fn cursor(pool: &SqlitePool, name: &str) -> anyhow::Result<i64> {
    let pos: Option<i64> =
        sqlx::query_scalar("SELECT position FROM cursors WHERE name = ?").bind(name).fetch_optional(pool).await?;
    Ok(pos.unwrap_or(0))
}

pub async fn set_cursor(tx: &mut Transaction<'_, Sqlite>, name: &str, position: i64, now: f64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO cursors (name, position, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO UPDATE SET position = ?2, updated_at = ?3",
    )
    .bind(name)
    .bind(position)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Up to `limit` rows with id > `after`, in id order.
pub async fn read_logs(pool: &SqlitePool, after: i64, limit: i64) -> anyhow::Result<Vec<LogRow>> {
    let rows = sqlx::query(
        "SELECT id, timestamp, decky, service, event_type, attacker_ip, fields, msg
         FROM logs WHERE id > ? ORDER BY id LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let fields: String = r.try_get("fields")?;
            Ok(LogRow {
                id: r.try_get("id")?,
                timestamp: r.try_get("timestamp")?,
                decky: r.try_get("decky")?,
                service: r.try_get("service")?,
                event_type: r.try_get("event_type")?,
                attacker_ip: r.try_get("attacker_ip")?,
                // A row whose fields are not JSON still counts; it just has none.
                fields: serde_json::from_str(&fields).unwrap_or(Value::Null),
                msg: r.try_get("msg")?,
            })
        })
        .collect()
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn profile_from_row(r: &sqlx::sqlite::SqliteRow) -> anyhow::Result<Profile> {
    let services: String = r.try_get("services")?;
    let deckies: String = r.try_get("deckies")?;
    let commands: String = r.try_get("commands")?;
    let fingerprints: String = r.try_get("fingerprints")?;
    Ok(Profile {
        ip: r.try_get("ip")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        event_count: r.try_get("event_count")?,
        services: json_list(&services),
        deckies: json_list(&deckies),
        credential_count: r.try_get("credential_count")?,
        commands: json_list(&commands),
        fingerprints: serde_json::from_str(&fingerprints).unwrap_or(Value::Array(vec![])),
        behavior: r.try_get("behavior")?,
        observed_published: r.try_get::<i64, _>("observed_published")? != 0,
    })
}

/// The stored profiles of `ips` (missing ones are simply absent).
pub async fn load_profiles(pool: &SqlitePool, ips: &[String]) -> anyhow::Result<HashMap<String, Profile>> {
    let mut out = HashMap::new();
    // SQLite's bound-parameter limit is 32766; stay far below it.
    for chunk in ips.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT ip, first_seen, last_seen, event_count, services, deckies, credential_count, commands,
                    fingerprints, behavior, observed_published FROM attackers WHERE ip IN ({marks})"
        );
        let mut q = sqlx::query(&sql);
        for ip in chunk {
            q = q.bind(ip);
        }
        for r in q.fetch_all(pool).await? {
            let p = profile_from_row(&r)?;
            out.insert(p.ip.clone(), p);
        }
    }
    Ok(out)
}

pub async fn save_profile(tx: &mut Transaction<'_, Sqlite>, p: &Profile, now: f64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO attackers (ip, first_seen, last_seen, event_count, service_count, decky_count, services,
             deckies, traversal_path, is_traversal, credential_count, commands, fingerprints, behavior,
             observed_published, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT(ip) DO UPDATE SET first_seen = ?2, last_seen = ?3, event_count = ?4, service_count = ?5,
             decky_count = ?6, services = ?7, deckies = ?8, traversal_path = ?9, is_traversal = ?10,
             credential_count = ?11, commands = ?12, fingerprints = ?13, behavior = ?14,
             observed_published = ?15, updated_at = ?16",
    )
    .bind(&p.ip)
    .bind(p.first_seen)
    .bind(p.last_seen)
    .bind(p.event_count)
    .bind(p.services.len() as i64)
    .bind(p.deckies.len() as i64)
    .bind(serde_json::to_string(&p.services)?)
    .bind(serde_json::to_string(&p.deckies)?)
    .bind(p.traversal_path())
    .bind(p.is_traversal() as i64)
    .bind(p.credential_count)
    .bind(serde_json::to_string(&p.commands)?)
    .bind(p.fingerprints.to_string())
    .bind(&p.behavior)
    .bind(p.observed_published as i64)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Event types that restate a session rather than record something the
/// attacker did: every session ends with both, a few ms after its last
/// action, so counting them would give every attacker two near-zero gaps
/// (one curl would be four events and "brute_force").
pub const SESSION_BOOKKEEPING: [&str; 2] = ["disconnect", "session_recorded"];

/// The newest [`TIMELINE_LIMIT`] events of `ip`, the behaviour
/// classifier's input: the attacker's own actions (connects, logins,
/// commands, requests…), not [`SESSION_BOOKKEEPING`]. Rows whose `fields`
/// is not JSON still count, with no fields.
pub async fn timeline(pool: &SqlitePool, ip: &str) -> anyhow::Result<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT timestamp, decky, service, event_type, fields FROM logs
         WHERE attacker_ip = ? AND event_type NOT IN (?, ?) ORDER BY timestamp DESC LIMIT ?",
    )
    .bind(ip)
    .bind(SESSION_BOOKKEEPING[0])
    .bind(SESSION_BOOKKEEPING[1])
    .bind(TIMELINE_LIMIT)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let fields: Option<String> = r.try_get("fields")?;
            let fields: Value = fields.and_then(|f| serde_json::from_str(&f).ok()).unwrap_or(Value::Null);
            Ok(Event::from_row(
                r.try_get("timestamp")?,
                r.try_get("decky")?,
                r.try_get("service")?,
                r.try_get("event_type")?,
                &fields,
            ))
        })
        .collect()
}

/// Distinct credentials `ip` tried (one row per target, username and secret).
pub async fn credential_count(pool: &SqlitePool, ip: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE attacker_ip = ?").bind(ip).fetch_one(pool).await?)
}

/// `ip`'s fingerprints as a JSON array of `{kind, hash, port, source}`,
/// in a stable order so "changed" means the data changed.
pub async fn fingerprints(pool: &SqlitePool, ip: &str) -> anyhow::Result<Value> {
    let rows = sqlx::query(
        "SELECT kind, hash, port, source FROM fingerprints WHERE attacker_ip = ? ORDER BY kind, port, source, hash",
    )
    .bind(ip)
    .fetch_all(pool)
    .await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(serde_json::json!({
                "kind": r.try_get::<String, _>("kind")?,
                "hash": r.try_get::<String, _>("hash")?,
                "port": r.try_get::<i64, _>("port")?,
                "source": r.try_get::<String, _>("source")?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Value::Array(list))
}

/// Attackers (with a profile) whose fingerprints were seen after `since`,
/// and the newest such `last_seen`.
pub async fn fingerprinted_since(pool: &SqlitePool, since: f64) -> anyhow::Result<(Vec<String>, f64)> {
    let rows = sqlx::query(
        "SELECT f.attacker_ip AS ip, MAX(f.last_seen) AS seen FROM fingerprints f
         JOIN attackers a ON a.ip = f.attacker_ip
         WHERE f.last_seen > ? GROUP BY f.attacker_ip",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut newest = since;
    let mut ips = Vec::with_capacity(rows.len());
    for r in rows {
        ips.push(r.try_get("ip")?);
        newest = newest.max(r.try_get::<f64, _>("seen")?);
    }
    Ok((ips, newest))
}
