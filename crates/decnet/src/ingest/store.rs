//! The ingester's SQL: its cursor, `logs` rows and `credentials` upserts,
//! all inside the one transaction per batch (see [`super`]).

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::tail::Position;
use crate::collector::Record;

/// Rows per multi-row INSERT (9 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 400;

/// The stored cursor, `None` before the first batch.
pub async fn load_cursor(pool: &SqlitePool, name: &str) -> anyhow::Result<Option<Position>> {
    let row: Option<(Option<i64>, i64)> =
        sqlx::query_as("SELECT inode, position FROM cursors WHERE name = ?").bind(name).fetch_optional(pool).await?;
    Ok(row.and_then(|(inode, position)| {
        Some(Position { inode: inode? as u64, offset: u64::try_from(position).unwrap_or(0) })
    }))
}

/// Make sure the cursor row exists (position 0, no inode).
pub async fn ensure_cursor(pool: &SqlitePool, name: &str, file: &str) -> anyhow::Result<()> {
    sqlx::query("INSERT OR IGNORE INTO cursors (name, file, inode, position, updated_at) VALUES (?, ?, NULL, 0, ?)")
        .bind(name)
        .bind(file)
        .bind(now())
        .execute(pool)
        .await?;
    Ok(())
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Move the cursor from `from` to `to`, only if it is still at `from`:
/// the first statement of the batch's transaction, so it also takes the
/// write lock. False when another ingester got there first.
pub async fn advance_cursor(
    tx: &mut Transaction<'_, Sqlite>,
    name: &str,
    file: &str,
    from: Option<Position>,
    to: Position,
) -> anyhow::Result<bool> {
    let (from_inode, from_offset) = match from {
        Some(p) => (Some(p.inode as i64), p.offset as i64),
        None => (None, 0),
    };
    let done = sqlx::query(
        "UPDATE cursors SET file = ?, inode = ?, position = ?, updated_at = ? \
         WHERE name = ? AND inode IS ? AND position = ?",
    )
    .bind(file)
    .bind(to.inode as i64)
    .bind(to.offset as i64)
    .bind(now())
    .bind(name)
    .bind(from_inode)
    .bind(from_offset)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_logs(tx: &mut Transaction<'_, Sqlite>, records: &[Record]) -> anyhow::Result<()> {
    for rows in records.chunks(ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line, source) ",
        );
        q.push_values(rows, |mut b, r| {
            b.push_bind(r.timestamp)
                .push_bind(&r.decky)
                .push_bind(&r.service)
                .push_bind(&r.event_type)
                .push_bind(&r.attacker_ip)
                .push_bind(serde_json::Value::Object(r.fields.clone()).to_string())
                .push_bind(&r.msg)
                .push_bind(&r.raw_line)
                .push_bind(r.source.as_deref().unwrap_or("local"));
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A credential a record carries: `username` plus `secret_b64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret_b64: String,
    /// Hex SHA-256 of the decoded secret.
    pub secret_sha256: String,
}

/// The credential in `record`, if it has one. A `secret_b64` that is not
/// base64 is no credential (and the secret is not echoed in the warning).
pub fn credential_of(record: &Record) -> Option<Credential> {
    use base64::Engine as _;
    let username = record.field("username")?;
    let secret_b64 = record.field("secret_b64")?;
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let secret = match engine.decode(secret_b64.trim()) {
        Ok(s) => s,
        Err(_) => {
            tracing::warn!(decky = %record.decky, service = %record.service, attacker_ip = %record.attacker_ip,
                len = secret_b64.len(), "secret_b64 is not base64; credential not stored");
            return None;
        }
    };
    let digest = Sha256::digest(&secret);
    let secret_sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(Credential { username: username.to_string(), secret_b64: secret_b64.to_string(), secret_sha256 })
}

/// Count an attempt; true when this (attacker, decky, service, user,
/// secret) was never seen before.
pub async fn upsert_credential(
    tx: &mut Transaction<'_, Sqlite>,
    record: &Record,
    cred: &Credential,
) -> anyhow::Result<bool> {
    let (attempts,): (i64,) = sqlx::query_as(
        "INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, first_seen, last_seen, attempts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) \
         ON CONFLICT (attacker_ip, decky, service, username, secret_sha256) DO UPDATE SET \
           attempts = attempts + 1, \
           first_seen = min(first_seen, excluded.first_seen), \
           last_seen = max(last_seen, excluded.last_seen) \
         RETURNING attempts",
    )
    .bind(&record.attacker_ip)
    .bind(&record.decky)
    .bind(&record.service)
    .bind(&cred.username)
    .bind(&cred.secret_sha256)
    .bind(&cred.secret_b64)
    .bind(record.timestamp)
    .bind(record.timestamp)
    .fetch_one(&mut **tx)
    .await?;
    Ok(attempts == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_hash_the_decoded_secret() {
        let r = crate::collector::parse_record(
            r#"<134>1 - web ssh - login_attempt [relay@55555 src_ip="1.2.3.4" username="root" secret_b64="aHVudGVyMg=="]"#,
            0.0,
        )
        .unwrap();
        let c = credential_of(&r).unwrap();
        assert_eq!(c.username, "root");
        // sha256("hunter2")
        assert_eq!(c.secret_sha256, "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7");
        // Unpadded base64 is accepted too; garbage is no credential.
        let mut r2 = r.clone();
        r2.fields.insert("secret_b64".into(), "aHVudGVyMg".into());
        assert_eq!(credential_of(&r2).unwrap().secret_sha256, c.secret_sha256);
        r2.fields.insert("secret_b64".into(), "not base64!".into());
        assert!(credential_of(&r2).is_none());
        r2.fields.remove("secret_b64");
        assert!(credential_of(&r2).is_none());
    }
}
