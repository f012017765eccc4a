//! The ingester's SQL: its per-file cursors, `logs` rows and `credentials` upserts,
//! all inside the one transaction per batch (see [`super`]).

use sha2::{Digest, Sha256};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use crate::collector::Record;

/// Rows per multi-row INSERT (9 parameters each, well under SQLite's
/// limit), and so the lines decoded while SQLite stores the previous ones.
pub const ROWS_PER_INSERT: usize = 400;

/// One row of `file_cursors`: how far one generation of a followed path
/// has been stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FileCursor {
    pub inode: u64,
    pub seq: i64,
    pub position: u64,
    /// The bytes just before `position` (empty when unknown).
    pub check: Vec<u8>,
    /// The file's last write (unix seconds) when the cursor last moved.
    pub modified: f64,
    /// Read to its end after it was rotated away.
    pub finished: bool,
}

type CursorRow = (i64, i64, i64, Option<Vec<u8>>, f64, bool);

fn cursor_of_row((inode, seq, position, check, modified, finished): CursorRow) -> FileCursor {
    FileCursor {
        inode: inode as u64,
        seq,
        position: u64::try_from(position).unwrap_or(0),
        check: check.unwrap_or_default(),
        modified,
        finished,
    }
}

/// Unix seconds of `t` (0 before the epoch).
pub fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// The cursor of the newest generation of `path` (highest seq).
pub async fn latest_cursor(pool: &SqlitePool, path: &str) -> anyhow::Result<Option<FileCursor>> {
    let row: Option<CursorRow> = sqlx::query_as(
        "SELECT inode, seq, position, tail_check, modified, finished FROM file_cursors WHERE path = ? \
         ORDER BY seq DESC, updated_at DESC LIMIT 1",
    )
    .bind(path)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(cursor_of_row))
}

/// The cursor of the file `inode` followed as `path`.
pub async fn cursor_of(pool: &SqlitePool, path: &str, inode: u64) -> anyhow::Result<Option<FileCursor>> {
    let row: Option<CursorRow> = sqlx::query_as(
        "SELECT inode, seq, position, tail_check, modified, finished FROM file_cursors WHERE path = ? AND inode = ?",
    )
    .bind(path)
    .bind(inode as i64)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(cursor_of_row))
}

/// Generations kept below the newest: a reader this far behind is long
/// gone, and the rows only grow otherwise.
const KEEP_GENERATIONS: i64 = 16;

/// Start reading the file `inode` as generation `seq` of `path`, at
/// `position` (0, or the copy's offset after a copytruncate). A row that
/// already has this seq or a later one is another reader's progress and
/// wins; a row with an earlier seq is a reused inode number (or the
/// content before a truncation) and starts over. Returns the row as it now
/// stands.
pub async fn begin_generation(
    pool: &SqlitePool,
    path: &str,
    inode: u64,
    seq: i64,
    position: u64,
    check: &[u8],
) -> anyhow::Result<FileCursor> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO file_cursors (path, inode, seq, position, tail_check, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (path, inode) DO UPDATE SET seq = excluded.seq, position = excluded.position, \
           tail_check = excluded.tail_check, updated_at = excluded.updated_at \
         WHERE file_cursors.seq < excluded.seq",
    )
    .bind(path)
    .bind(inode as i64)
    .bind(seq)
    .bind(position as i64)
    .bind(check)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM file_cursors WHERE path = ? AND seq < ?")
        .bind(path)
        .bind(seq - KEEP_GENERATIONS)
        .execute(&mut *tx)
        .await?;
    let row: CursorRow = sqlx::query_as(
        "SELECT inode, seq, position, tail_check, modified, finished FROM file_cursors WHERE path = ? AND inode = ?",
    )
    .bind(path)
    .bind(inode as i64)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(cursor_of_row(row))
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// Where a batch starts: one generation of one path, at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorAt {
    pub path: String,
    pub inode: u64,
    pub seq: i64,
    pub offset: u64,
}

/// Move the cursor of `from`'s file to `to` (with the bytes before it and
/// the file's last write time, and whether that ends it), only if it is still at `from`: the first
/// statement of the batch's transaction, so it also takes the write lock.
/// False when another ingester got there first.
pub async fn advance_cursor(
    tx: &mut Transaction<'_, Sqlite>,
    from: &CursorAt,
    to: u64,
    check: &[u8],
    modified: f64,
    finished: bool,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE file_cursors SET position = ?, tail_check = ?, modified = ?, finished = ?, updated_at = ? \
         WHERE path = ? AND inode = ? AND seq = ? AND position = ?",
    )
    .bind(to as i64)
    .bind(check)
    .bind(modified)
    .bind(finished)
    .bind(now())
    .bind(&from.path)
    .bind(from.inode as i64)
    .bind(from.seq)
    .bind(from.offset as i64)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Record that the reader of `at` reached the end of its file after the
/// file was rotated away (a restart then need not call its loss a gap).
pub async fn mark_finished(pool: &SqlitePool, at: &CursorAt) -> anyhow::Result<()> {
    sqlx::query("UPDATE file_cursors SET finished = 1 WHERE path = ? AND inode = ? AND seq = ? AND position = ?")
        .bind(&at.path)
        .bind(at.inode as i64)
        .bind(at.seq)
        .bind(at.offset as i64)
        .execute(pool)
        .await?;
    Ok(())
}

/// Page cache and checkpointing of the connection while it stores a
/// batch. A batch inserts into `logs` and its five indexes, whose pages
/// are spread over the file: SQLite's default 2 MB cache read them back
/// from the kernel on every batch; 64 MiB (taken only as pages are used,
/// per connection, so the API's other connections keep the default) let
/// consecutive batches share them. No automatic checkpoint: the
/// [`super::checkpoint::Checkpointer`] runs them beside the ingester, and
/// [`restore_autocheckpoint`] gives the connection SQLite's default back
/// when the batch is done. Setting them again costs nothing.
pub async fn tune_for_batches(tx: &mut Transaction<'_, Sqlite>) -> anyhow::Result<()> {
    sqlx::query("PRAGMA cache_size = -65536").execute(&mut **tx).await?;
    sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut **tx).await?;
    Ok(())
}

/// After a batch, the connection goes back to the pool checkpointing as
/// every other one does.
pub async fn restore_autocheckpoint(conn: &mut sqlx::SqliteConnection) -> anyhow::Result<()> {
    let pragma = format!("PRAGMA wal_autocheckpoint = {}", super::checkpoint::SQLITE_DEFAULT_AUTOCHECKPOINT);
    sqlx::query(&pragma).execute(conn).await?;
    Ok(())
}

/// Turn the triggers of every table on or off for `conn` only (a setting
/// of the connection, `SQLITE_DBCONFIG_ENABLE_TRIGGER`, which sqlx has no
/// call for; changing it makes SQLite prepare statements again). Off while
/// the ingester inserts a batch's `logs` rows, whose roll-ups it counts
/// itself ([`super::rollups`]): the triggers' three upserts per row were
/// most of a row's cost, and even a trigger that only decides not to count
/// costs about 0.7 µs of the ~5 µs a row takes.
pub async fn set_triggers(conn: &mut sqlx::SqliteConnection, enabled: bool) -> anyhow::Result<()> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut now: std::os::raw::c_int = -1;
    // SAFETY: `db` is the connection's open handle, held exclusively by
    // the lock for the duration of the call; ENABLE_TRIGGER takes an int
    // and a pointer to an int that receives the setting after the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_TRIGGER,
            enabled as std::os::raw::c_int,
            &mut now as *mut std::os::raw::c_int,
        )
    };
    anyhow::ensure!(
        rc == libsqlite3_sys::SQLITE_OK && now == enabled as std::os::raw::c_int,
        "sqlite3_db_config(ENABLE_TRIGGER, {enabled}) failed (code {rc}, setting now {now})"
    );
    Ok(())
}

/// One multi-row INSERT of `rows` (at most [`ROWS_PER_INSERT`]) into `logs`.
pub async fn insert_logs(tx: &mut Transaction<'_, Sqlite>, rows: &[super::decode::StoredLine]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line, source) ",
    );
    q.push_values(rows, |mut b, line| {
        let r = &line.record;
        b.push_bind(r.timestamp)
            .push_bind(&r.decky)
            .push_bind(&r.service)
            .push_bind(&r.event_type)
            .push_bind(&r.attacker_ip)
            .push_bind(&line.fields_json)
            .push_bind(&r.msg)
            .push_bind(&r.raw_line)
            .push_bind(r.source.as_deref().unwrap_or("local"));
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

/// A credential a record carries: `username` plus `secret_b64` (a
/// password), or plus `hash` and `hash_type` (a challenge/response in an
/// offline cracker's format, kept as the base64 of that text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret_b64: String,
    /// Hex SHA-256 of the decoded secret.
    pub secret_sha256: String,
    /// The decoded secret as text (invalid UTF-8 as U+FFFD): what the
    /// attacker guessed, shown in clear to admins only (api::credentials).
    pub secret_text: String,
    /// `password`, or `hash:<hash_type>`.
    pub kind: String,
}

/// Longest `hash_type` kept (it names a format: `netntlmv2`, `mysql-sha2`…).
const MAX_HASH_TYPE: usize = 32;

/// Whether the collector trusts the line's sender to speak for a decky
/// (collector::access): only such lines are evidence (credentials,
/// artifacts, recordings); an untrusted one stays a `logs` row.
pub fn is_trusted(record: &Record) -> bool {
    record.fields.get("ingest_trusted") != Some(&serde_json::Value::Bool(false))
}

/// The credential in `record`, if it has one. A `secret_b64` that is not
/// base64 is no credential (and the secret is not echoed in the warning).
pub fn credential_of(record: &Record) -> Option<Credential> {
    use base64::Engine as _;
    if !is_trusted(record) {
        return None;
    }
    let username = record.field("username")?;
    let Some(secret_b64) = record.field("secret_b64") else {
        let hash = record.field("hash").filter(|h| !h.is_empty())?;
        let hash_type: String = record.field("hash_type").unwrap_or("unknown").chars().take(MAX_HASH_TYPE).collect();
        let secret_sha256 = Sha256::digest(hash.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        return Some(Credential {
            username: username.to_string(),
            secret_b64: base64::engine::general_purpose::STANDARD.encode(hash),
            secret_sha256,
            secret_text: hash.to_string(),
            kind: format!("hash:{hash_type}"),
        });
    };
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
    Some(Credential {
        username: username.to_string(),
        secret_b64: secret_b64.to_string(),
        secret_sha256,
        secret_text: String::from_utf8_lossy(&secret).into_owned(),
        kind: "password".to_string(),
    })
}

/// Count an attempt; true when this (attacker, decky, service, user,
/// secret) was never seen before.
pub async fn upsert_credential(
    tx: &mut Transaction<'_, Sqlite>,
    record: &Record,
    cred: &Credential,
) -> anyhow::Result<bool> {
    let (attempts,): (i64,) = sqlx::query_as(
        "INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, secret_text, secret_kind, first_seen, last_seen, attempts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) \
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
    .bind(&cred.secret_text)
    .bind(&cred.kind)
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
        assert_eq!(c.secret_text, "hunter2", "the guess kept in clear for the console");
        // Unpadded base64 is accepted too; garbage is no credential.
        let mut r2 = r.clone();
        r2.fields.insert("secret_b64".into(), "aHVudGVyMg".into());
        assert_eq!(credential_of(&r2).unwrap().secret_sha256, c.secret_sha256);
        r2.fields.insert("secret_b64".into(), "not base64!".into());
        assert!(credential_of(&r2).is_none());
        r2.fields.remove("secret_b64");
        assert!(credential_of(&r2).is_none());
    }

    #[test]
    fn a_challenge_response_hash_is_a_credential_of_its_kind() {
        let r = crate::collector::parse_record(
            r#"<134>1 - db mysql - login_attempt [relay@55555 src_ip="1.2.3.4" username="root" hash="$mysqlna$1122*3344" hash_type="mysql-native"]"#,
            0.0,
        )
        .unwrap();
        let c = credential_of(&r).unwrap();
        assert_eq!(c.kind, "hash:mysql-native");
        use base64::Engine as _;
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&c.secret_b64).unwrap(), b"$mysqlna$1122*3344");
        // A password wins over a hash on the same line; an empty hash is none.
        let mut r2 = r.clone();
        r2.fields.insert("hash".into(), "".into());
        assert!(credential_of(&r2).is_none());
        r2.fields.insert("secret_b64".into(), "aHVudGVyMg==".into());
        assert_eq!(credential_of(&r2).unwrap().kind, "password");
    }
}
