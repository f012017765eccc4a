//! The Overview's roll-ups as the ingester counts them (issue 24): per
//! batch in Rust (crates/decnet/src/ingest/rollups.rs), not per row by
//! the 0020 triggers. After a known set of records goes through the real
//! ingester in several batches, on top of rows another writer inserted
//! (which the triggers still count), `console_hourly` and `console_top`
//! must equal what a GROUP BY over `logs` gives: the Rust counting cannot
//! drift from the rows without this failing, nor can the triggers count a
//! batch a second time.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet::collector::Record;
use decnet::ingest::{IngestBus, IngestConfig, IngestStats};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn record(ts: f64, decky: &str, service: &str, event_type: &str, fields: Value) -> Record {
    let Value::Object(fields) = fields else { panic!("fields must be an object") };
    Record {
        timestamp: ts,
        decky: decky.into(),
        service: service.into(),
        event_type: event_type.into(),
        attacker_ip: "198.51.100.7".into(),
        fields,
        msg: String::new(),
        raw_line: format!("<134>1 - {decky} {service} - {event_type} -"),
        source: None,
    }
}

/// Rows over three hours (out of order), eight deckies, three services,
/// sessions, repeated commands, a command longer than 512 characters
/// (multi-byte, so characters and bytes differ), a numeric one, a
/// `command` row without the field and a non-command row carrying one.
fn records() -> Vec<Record> {
    let base = 1_700_000_000.0;
    let long = "é".repeat(600);
    let mut out = Vec::new();
    for i in 0..900usize {
        let ts = base + ((i * 7919) % 3) as f64 * 3600.0 + (i % 50) as f64 * 0.25;
        let decky = format!("decky-{}", i % 8);
        let service = ["ssh", "http", "smb"][i % 3];
        let r = match i % 6 {
            0 => record(ts, &decky, service, "connect", json!({"sid": format!("s{i}")})),
            1 => record(ts, &decky, service, "disconnect", json!({"sid": format!("s{i}"), "reason": "client closed"})),
            2 => record(ts, &decky, service, "command", json!({"command": format!("cmd-{}", i % 5)})),
            3 => record(
                ts,
                &decky,
                service,
                "command",
                json!({"command": if i % 4 == 3 { long.clone() } else { "id".into() }}),
            ),
            4 => record(ts, &decky, service, "command", if i % 4 == 0 { json!({"command": 42}) } else { json!({}) }),
            _ => record(ts, &decky, service, "request", json!({"command": "not a command row"})),
        };
        out.push(r);
    }
    // Logins: their credentials' triggers (console_pairs) must run in the
    // ingester's batches even while the `logs` triggers do not; each pair
    // is tried twice, so the repeat (UPDATE) trigger runs too.
    for i in 0..20usize {
        let secret = ["aHVudGVyMg==", "cm9vdA==", "MTIzNDU2", "YWRtaW4=", "cGFzcw=="][i % 5];
        let username = ["root", "admin"][i % 2];
        let fields = json!({"username": username, "secret_b64": secret});
        out.push(record(base + i as f64 * 97.0, &format!("decky-{}", i % 8), "ssh", "login_attempt", fields));
    }
    out
}

/// Rows another writer inserts with plain SQL: the triggers count them.
async fn other_writer(pool: &sqlx::SqlitePool) {
    for (ts, ty, fields) in [
        (1_700_000_000.5, "connect", "{}"),
        (1_700_003_700.0, "command", r#"{"command":"id"}"#),
        (1_700_090_000.0, "command", r#"{"command":"uname -a"}"#),
    ] {
        sqlx::query(
            "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line) \
             VALUES (?, 'decky-1', 'ssh', ?, '198.51.100.8', ?, '', '-')",
        )
        .bind(ts)
        .bind(ty)
        .bind(fields)
        .execute(pool)
        .await
        .unwrap();
    }
}

type Hourly = Vec<(i64, i64, i64)>;
type Top = Vec<(String, String, i64, f64)>;

async fn rollups(pool: &sqlx::SqlitePool) -> (Hourly, Top) {
    let hourly = sqlx::query_as("SELECT hour, events, sessions FROM console_hourly WHERE events > 0 ORDER BY hour")
        .fetch_all(pool)
        .await
        .unwrap();
    let top = sqlx::query_as(
        "SELECT kind, value, hits, last_seen FROM console_top WHERE kind IN ('decky', 'service', 'command') \
         ORDER BY kind, value",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (hourly, top)
}

/// The roll-ups counted from scratch over every `logs` row (0020's backfill).
async fn grouped(pool: &sqlx::SqlitePool) -> (Hourly, Top) {
    let hourly = sqlx::query_as(
        "SELECT CAST(timestamp / 3600 AS INTEGER) AS h, COUNT(*), SUM(event_type = 'connect') FROM logs \
         GROUP BY h ORDER BY h",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let top = sqlx::query_as(
        "SELECT kind, value, hits, last_seen FROM ( \
           SELECT 'decky' AS kind, decky AS value, COUNT(*) AS hits, MAX(timestamp) AS last_seen FROM logs GROUP BY decky \
           UNION ALL SELECT 'service', service, COUNT(*), MAX(timestamp) FROM logs GROUP BY service \
           UNION ALL SELECT 'command', substr(json_extract(fields, '$.command'), 1, 512), COUNT(*), MAX(timestamp) \
             FROM logs WHERE event_type = 'command' AND json_valid(fields) \
               AND json_extract(fields, '$.command') IS NOT NULL GROUP BY 2) \
         ORDER BY kind, value",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (hourly, top)
}

#[tokio::test]
async fn ingested_rollups_equal_a_group_by_over_logs() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    other_writer(&pool).await;

    let json_path = dir.path().join("ingest.log.json");
    let records = records();
    let mut f = std::fs::File::create(&json_path).unwrap();
    for r in &records {
        let mut line = serde_json::to_vec(r).unwrap();
        line.push(b'\n');
        f.write_all(&line).unwrap();
    }
    drop(f);

    let mut config = IngestConfig::new(json_path);
    // Many small batches: keys recur across batches, so the upserts add
    // to rows an earlier batch made.
    config.max_batch_bytes = 16 * 1024;
    let stats = Arc::new(IngestStats::default());
    let stop = CancellationToken::new();
    let ingester =
        tokio::spawn(decnet::ingest::run(pool.clone(), config, IngestBus::None, stats.clone(), stop.clone()));
    let started = Instant::now();
    while stats.rows.load(Ordering::Relaxed) < records.len() as u64 {
        assert!(started.elapsed() < Duration::from_secs(30), "ingester stored {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    ingester.await.unwrap().unwrap();
    assert!(stats.batches.load(Ordering::Relaxed) >= 5, "several batches: {stats:?}");

    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM logs").fetch_one(&pool).await.unwrap();
    assert_eq!(rows as usize, records.len() + 3);
    let (hourly, top) = rollups(&pool).await;
    let (want_hourly, want_top) = grouped(&pool).await;
    assert_eq!(hourly, want_hourly, "console_hourly against GROUP BY over logs");
    assert_eq!(top, want_top, "console_top against GROUP BY over logs");
    // The sample exercised what it claims to: a 512-character key, a
    // numeric command, and three hours plus the other writer's fourth.
    assert!(top.iter().any(|(k, v, ..)| k == "command" && v.chars().count() == 512));
    assert!(top.iter().any(|(k, v, ..)| k == "command" && v == "42"));
    assert_eq!(hourly.len(), 4);

    // Every try counted once, by the credentials' triggers.
    let (tried, pairs): (i64, i64) =
        sqlx::query_as("SELECT (SELECT SUM(attempts) FROM credentials), (SELECT SUM(attempts) FROM console_pairs)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((tried, pairs), (20, 20), "credentials tried and counted in console_pairs");

    // Every connection of the pool (the ingester's among them) counts
    // rows with the triggers again: one row through each, all held at once.
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(pool.acquire().await.unwrap());
    }
    for (i, conn) in conns.iter_mut().enumerate() {
        let (interval,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint").fetch_one(&mut **conn).await.unwrap();
        assert_eq!(interval, 1000, "connection {i} checkpoints as SQLite's default again");
        sqlx::query(
            "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line) \
             VALUES (?, 'decky-9', 'ssh', 'connect', '198.51.100.9', '{}', '', '-')",
        )
        .bind(1_700_000_100.0 + i as f64)
        .execute(&mut **conn)
        .await
        .unwrap();
    }
    drop(conns);
    other_writer(&pool).await;
    assert_eq!(rollups(&pool).await, grouped(&pool).await, "rows of other writers after the ingester's");
}
