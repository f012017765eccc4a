//! Retention (issue 26) against a real SQLite file and real files: the
//! pruner deletes everything past each kind's limit and nothing recent,
//! and the ingester keeps storing lines while it prunes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use decnet::collector::Record;
use decnet::retention::{prune_once, Pacing, PruneReport, RetentionPaths, RetentionPolicy};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

const DAY: f64 = 86_400.0;
const LIMIT: Duration = Duration::from_secs(30 * 86_400);

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn every_kind(age: Duration) -> RetentionPolicy {
    RetentionPolicy {
        logs: Some(age),
        ingest_files: Some(age),
        artifacts: Some(age),
        recordings: Some(age),
        attackers: Some(age),
    }
}

async fn count(pool: &SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// `n` log rows at `ts`, in one transaction (the fill, not the thing tested).
async fn add_logs(pool: &SqlitePool, ts: f64, decky: &str, n: usize) {
    let mut tx = pool.begin().await.unwrap();
    let raw = "x".repeat(800); // about the size of a real row
    for _ in 0..n {
        sqlx::query(
            "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, raw_line) \
             VALUES (?, ?, 'ssh', 'login_attempt', '10.0.0.9', ?)",
        )
        .bind(ts)
        .bind(decky)
        .bind(&raw)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

fn write_file(path: &Path, text: &str, mtime: SystemTime) {
    std::fs::write(path, text).unwrap();
    set_mtime(path, mtime);
}

struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pool: SqlitePool,
    paths: RetentionPaths,
}

async fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let pool = decnet::store::open(&root.join("decnet.db")).await.unwrap();
    let paths = RetentionPaths {
        ingest_log: root.join("ingest.log"),
        artifacts_dir: root.join("artifacts"),
        recordings_dir: root.join("recordings"),
    };
    std::fs::create_dir(&paths.artifacts_dir).unwrap();
    std::fs::create_dir(&paths.recordings_dir).unwrap();
    Home { _dir: dir, root, pool, paths }
}

#[tokio::test]
async fn prune_deletes_everything_old_and_nothing_recent() {
    let h = home().await;
    let pool = &h.pool;
    let now_t = SystemTime::now();
    let now = unix(now_t);
    let (old, recent) = (now - 40.0 * DAY, now - 1.0 * DAY);
    let old_t = now_t - Duration::from_secs(40 * 86_400);
    let recent_t = now_t - Duration::from_secs(86_400);

    // logs: more old rows than several batches hold.
    add_logs(pool, old, "old", 1_050).await;
    add_logs(pool, recent, "recent", 120).await;
    for (ip, seen) in [("10.0.0.1", old), ("10.0.0.2", recent)] {
        sqlx::query(
            "INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, first_seen, last_seen) \
             VALUES (?, 'd', 'ssh', 'root', 'h', 'cA==', ?, ?)",
        )
        .bind(ip)
        .bind(seen)
        .bind(seen)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO attackers (ip, first_seen, last_seen, updated_at) VALUES (?, ?, ?, ?)")
            .bind(ip)
            .bind(seen)
            .bind(seen)
            .bind(seen)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO fingerprints (attacker_ip, kind, hash, source, first_seen, last_seen) VALUES (?, 'jarm', 'j', 'prober', ?, ?)",
        )
        .bind(ip)
        .bind(seen)
        .bind(seen)
        .execute(pool)
        .await
        .unwrap();
        let id: i64 = sqlx::query_scalar("INSERT INTO identities (created_at, updated_at) VALUES (?, ?) RETURNING id")
            .bind(seen)
            .bind(seen)
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO identity_members (identity_id, attacker_ip) VALUES (?, ?)")
            .bind(id)
            .bind(ip)
            .execute(pool)
            .await
            .unwrap();
    }

    // artifacts: A only in an old row (file goes), B in an old and a
    // recent row (file stays), C recent.
    let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    for (sid, sha, seen) in [("s1", &a, old), ("s2", &b, old), ("s3", &b, recent), ("s4", &c, recent)] {
        sqlx::query(
            "INSERT INTO artifacts (attacker_ip, decky, sid, source, path, sha256, size, mime, first_seen) \
             VALUES ('10.0.0.1', 'd', ?, 'upload', '/tmp/x', ?, 3, 'text/plain', ?)",
        )
        .bind(sid)
        .bind(sha)
        .bind(seen)
        .execute(pool)
        .await
        .unwrap();
    }
    for sha in [&a, &b, &c] {
        write_file(&h.paths.artifacts_dir.join(sha), "bad", old_t);
    }

    // recordings: an old one inside the folder (row and file go), an old
    // row naming a file outside it (row goes, the file is not ours), a
    // recent one.
    let outside = h.root.join("not-a-recording.cast");
    let old_cast = h.paths.recordings_dir.join("old.cast");
    let new_cast = h.paths.recordings_dir.join("new.cast");
    for (sid, path, ended) in [("r1", &old_cast, old), ("r2", &outside, old), ("r3", &new_cast, recent)] {
        write_file(path, "{}\n", old_t);
        sqlx::query(
            "INSERT INTO recordings (sid, attacker_ip, decky, service, path, bytes, sha256, started, ended) \
             VALUES (?, '10.0.0.1', 'd', 'ssh', ?, 3, 'x', ?, ?)",
        )
        .bind(sid)
        .bind(path.to_str().unwrap())
        .bind(ended)
        .bind(ended)
        .execute(pool)
        .await
        .unwrap();
    }

    // ingest files: the live pair is never deleted however old.
    let f = |name: &str| h.root.join(name);
    for name in ["ingest.log", "ingest.log.json", "ingest.log.1", "ingest.log.2.gz", "ingest.log-20260101", "other.1"] {
        write_file(&f(name), "line\n", old_t);
    }
    write_file(&f("ingest.log.json.1"), "{}\n{}\n", old_t); // the ingester stopped half way
    write_file(&f("ingest.log.json.2"), "{}\n", old_t); // read to the end
    write_file(&f("ingest.log.json.3.gz"), "zz", old_t);
    write_file(&f("ingest.log.3"), "recent\n", recent_t);
    let key = decnet::ingest::follow::cursor_key(&f("ingest.log.json"));
    for (name, position) in [("ingest.log.json.1", 3), ("ingest.log.json.2", 3)] {
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(f(name)).unwrap().ino() as i64;
        sqlx::query("INSERT INTO file_cursors (path, inode, seq, position, updated_at) VALUES (?, ?, 1, ?, 0)")
            .bind(&key)
            .bind(inode)
            .bind(position)
            .execute(pool)
            .await
            .unwrap();
    }

    let pacing = Pacing { batch_rows: 100, pause: Duration::from_millis(1), vacuum_pages: 64 };
    let stop = CancellationToken::new();

    // Keep-forever deletes nothing.
    let report = prune_once(pool, &RetentionPolicy::keep_forever(), &h.paths, pacing, now_t, &stop).await.unwrap();
    assert_eq!(report, PruneReport::default());
    assert_eq!(count(pool, "SELECT count(*) FROM logs").await, 1_170);

    let auto_vacuum: i64 = count(pool, "PRAGMA auto_vacuum").await;
    assert_eq!(auto_vacuum, 2, "a new database has incremental auto-vacuum");
    let pages_before = count(pool, "PRAGMA page_count").await;

    let report = prune_once(pool, &every_kind(LIMIT), &h.paths, pacing, now_t, &stop).await.unwrap();
    assert_eq!(
        (report.logs, report.credentials, report.attackers, report.identities, report.fingerprints),
        (1_050, 1, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!((report.artifacts, report.artifact_files), (2, 1), "{report:?}");
    assert_eq!((report.recordings, report.recording_files), (2, 1), "{report:?}");
    assert_eq!(report.ingest_files, 5, "{report:?}");

    // Nothing recent lost, everything old gone.
    assert_eq!(count(pool, "SELECT count(*) FROM logs WHERE decky = 'recent'").await, 120);
    assert_eq!(count(pool, "SELECT count(*) FROM logs WHERE decky = 'old'").await, 0);
    for table in ["credentials", "attackers", "fingerprints"] {
        let ip_col = if table == "attackers" { "ip" } else { "attacker_ip" };
        let left: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {ip_col} FROM {table}")).fetch_all(pool).await.unwrap();
        assert_eq!(left, ["10.0.0.2"], "{table}");
    }
    let members: Vec<String> =
        sqlx::query_scalar("SELECT attacker_ip FROM identity_members").fetch_all(pool).await.unwrap();
    assert_eq!(members, ["10.0.0.2"]);
    assert_eq!(count(pool, "SELECT count(*) FROM identities").await, 1);
    let sids: Vec<String> = sqlx::query_scalar("SELECT sid FROM artifacts ORDER BY sid").fetch_all(pool).await.unwrap();
    assert_eq!(sids, ["s3", "s4"]);
    assert!(!h.paths.artifacts_dir.join(&a).exists());
    assert!(h.paths.artifacts_dir.join(&b).exists() && h.paths.artifacts_dir.join(&c).exists());
    let sids: Vec<String> = sqlx::query_scalar("SELECT sid FROM recordings").fetch_all(pool).await.unwrap();
    assert_eq!(sids, ["r3"]);
    assert!(!old_cast.exists() && new_cast.exists());
    assert!(outside.exists(), "a file outside the recordings folder is never deleted");
    let mut left: Vec<String> = std::fs::read_dir(&h.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("ingest") || n.starts_with("other"))
        .collect();
    left.sort();
    assert_eq!(left, ["ingest.log", "ingest.log.3", "ingest.log.json", "ingest.log.json.1", "other.1"]);

    // The freed pages went back to the filesystem.
    assert!(report.bytes_vacuumed > 0, "{report:?}");
    let pages_after = count(pool, "PRAGMA page_count").await;
    assert!(pages_after < pages_before, "{pages_before} -> {pages_after}");
    assert_eq!(count(pool, "PRAGMA freelist_count").await, 0);

    // A second round finds nothing more.
    let again = prune_once(pool, &every_kind(LIMIT), &h.paths, pacing, now_t, &stop).await.unwrap();
    assert!(!again.deleted_anything(), "{again:?}");
}

fn record(i: usize) -> String {
    let r = Record {
        timestamp: unix(SystemTime::now()),
        decky: "live".into(),
        service: "ssh".into(),
        event_type: "login_attempt".into(),
        attacker_ip: "10.9.0.1".into(),
        fields: Default::default(),
        msg: format!("n={i}"),
        raw_line: format!("line {i}"),
        source: None,
    };
    serde_json::to_string(&r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keeps_storing_while_the_pruner_deletes() {
    let h = home().await;
    let pool = h.pool.clone();
    let old = unix(SystemTime::now()) - 40.0 * DAY;
    add_logs(&pool, old, "old", 30_000).await;

    // The real ingester on a file a writer keeps appending to.
    let json = h.root.join("ingest.log.json");
    std::fs::write(&json, "").unwrap();
    let mut config = decnet::ingest::IngestConfig::new(json.clone());
    config.poll = Duration::from_millis(5);
    let stop = CancellationToken::new();
    let ingester = tokio::spawn(decnet::ingest::run(
        pool.clone(),
        config,
        decnet::ingest::IngestBus::None,
        Arc::new(decnet::ingest::IngestStats::default()),
        stop.clone(),
    ));
    const LINES: usize = 3_000;
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (json, writing) = (json.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&json).unwrap();
            for chunk in (0..LINES).collect::<Vec<_>>().chunks(10) {
                let text: String = chunk.iter().map(|&i| record(i) + "\n").collect();
                f.write_all(text.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
            writing.store(false, Ordering::SeqCst);
        })
    };
    let live = |pool: SqlitePool| async move { count(&pool, "SELECT count(*) FROM logs WHERE decky = 'live'").await };

    // Prune in small batches while the writer and the ingester run; watch
    // the stored count from a third connection.
    let pacing = Pacing { batch_rows: 200, pause: Duration::from_millis(5), vacuum_pages: 64 };
    let started = Instant::now();
    let pruning = {
        let (pool, paths, stop) = (pool.clone(), h.paths.clone(), CancellationToken::new());
        tokio::spawn(async move {
            let policy = RetentionPolicy { logs: Some(LIMIT), ..RetentionPolicy::keep_forever() };
            prune_once(&pool, &policy, &paths, pacing, SystemTime::now(), &stop).await.unwrap()
        })
    };
    let mut seen_while_pruning = Vec::new();
    while !pruning.is_finished() {
        seen_while_pruning.push(live(pool.clone()).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = pruning.await.unwrap();
    let took = started.elapsed();
    println!(
        "pruned {} rows in {:.0} ms ({:.0} rows/s, batches of {}) while ingesting; stored count samples: {:?}",
        report.logs,
        took.as_secs_f64() * 1e3,
        report.logs as f64 / took.as_secs_f64(),
        pacing.batch_rows,
        seen_while_pruning
    );
    assert_eq!(report.logs, 30_000);
    seen_while_pruning.dedup();
    assert!(
        seen_while_pruning.len() >= 4,
        "the ingester stored lines at least 3 separate times during the prune: {seen_while_pruning:?}"
    );

    writer.join().unwrap();
    let pool2 = pool.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while live(pool2.clone()).await < LINES as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!writing.load(Ordering::SeqCst));
    stop.cancel();
    ingester.await.unwrap().unwrap();
    assert_eq!(live(pool.clone()).await, LINES as i64, "every line written was stored");
    let distinct: i64 = count(&pool, "SELECT count(DISTINCT msg) FROM logs WHERE decky = 'live'").await;
    assert_eq!(distinct, LINES as i64, "none twice");
    assert_eq!(count(&pool, "SELECT count(*) FROM logs WHERE decky = 'old'").await, 0);
}
