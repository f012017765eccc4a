//! `decnet backup` and `decnet restore` as an operator runs them: the
//! real binary, a real `decnet ingest` writing the whole time the backup
//! is taken, and a real SQLite file checked row by row afterwards.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decnet::collector::Record;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use support::{wait_until, Proc, BIN};

fn record(i: usize) -> String {
    let r = Record {
        timestamp: 1_800_000_000.0 + i as f64,
        decky: "d".into(),
        service: "ssh".into(),
        event_type: "login_attempt".into(),
        attacker_ip: "10.9.0.1".into(),
        fields: Default::default(),
        msg: format!("n={i}"),
        raw_line: format!("line {i} {}", "x".repeat(200)),
        source: None,
    };
    serde_json::to_string(&r).unwrap()
}

fn decnet(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env_remove("DECNET_DB")
        .env("DECNET_BUS_ENABLED", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

async fn connect(db: &Path) -> SqliteConnection {
    SqliteConnectOptions::new().filename(db).read_only(true).connect().await.unwrap()
}

/// The ids of the `logs` rows at or below `max_id`.
fn ids_up_to(db: &Path, max_id: i64) -> Vec<i64> {
    block_on(async {
        let mut c = connect(db).await;
        sqlx::query_scalar("SELECT id FROM logs WHERE id <= ? ORDER BY id")
            .bind(max_id)
            .fetch_all(&mut c)
            .await
            .unwrap()
    })
}

fn scalar(db: &Path, sql: &str) -> i64 {
    try_scalar(db, sql).unwrap()
}

/// `None` while the database is not there or not migrated yet.
fn try_scalar(db: &Path, sql: &str) -> Option<i64> {
    block_on(async {
        let mut c = SqliteConnectOptions::new().filename(db).read_only(true).connect().await.ok()?;
        sqlx::query_scalar(sql).fetch_one(&mut c).await.ok()
    })
}

#[test]
fn backup_while_ingesting_restores_every_committed_row() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    let log = home.join("ingest.log");
    let json = home.join("ingest.log.json");
    std::fs::write(&json, "").unwrap();
    let db_arg = db.to_str().unwrap();

    let ingest = Proc(
        Command::new(BIN)
            .args(["ingest", "--db", db_arg, "--ingest-log", log.to_str().unwrap(), "--poll-ms", "5"])
            .env("DECNET_HOME", home)
            .env("DECNET_BUS_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("ingest.stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    // A collector appending lines the whole time (bounded: 20,000 lines).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (json, stop) = (json.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&json).unwrap();
            for i in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    return i;
                }
                f.write_all((record(i) + "\n").as_bytes()).unwrap();
                if i % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            20_000
        })
    };
    assert!(
        wait_until(30.0, || try_scalar(&db, "SELECT count(*) FROM logs").is_some_and(|n| n >= 1_000)),
        "ingester stored nothing: {}",
        std::fs::read_to_string(home.join("ingest.stderr")).unwrap_or_default()
    );

    // Everything committed up to here must be in the backup.
    let committed = scalar(&db, "SELECT max(id) FROM logs");
    let committed_ids = ids_up_to(&db, committed);
    let backup = home.join("backup.db");
    let out = decnet(home, &["backup", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("schema version"), "{}", text(&out));
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        wait_until(10.0, || scalar(&db, "SELECT max(id) FROM logs") > scalar(&backup, "SELECT max(id) FROM logs")),
        "the ingester kept writing after the backup"
    );
    // A second backup to the same name is refused, the first left whole.
    let again = decnet(home, &["backup", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(!again.status.success() && text(&again).contains("already exists"), "{}", text(&again));

    // Restoring under a running ingester is refused: it has the database open.
    let refused = decnet(home, &["restore", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("open in another process"), "{}", text(&refused));

    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(ingest);
    let rows_before_restore = scalar(&db, "SELECT count(*) FROM logs");

    let out = decnet(home, &["restore", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("kept as"), "{}", text(&out));
    assert_eq!(ids_up_to(&db, committed), committed_ids, "every row committed before the backup is restored");
    assert!(scalar(&db, "SELECT count(*) FROM logs") < rows_before_restore, "the restored file is the backup");
    let verdict: String = block_on(async {
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connect(&db).await).await.unwrap()
    });
    assert_eq!(verdict, "ok");
    assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
    // The replaced database is kept beside it, whole.
    let aside: Vec<PathBuf> = std::fs::read_dir(home)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("decnet.db.before-restore-"))
        .filter(|p| !p.to_str().unwrap().ends_with("-wal") && !p.to_str().unwrap().ends_with("-shm"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(scalar(&aside[0], "SELECT count(*) FROM logs"), rows_before_restore);
}

#[test]
fn restore_refuses_a_backup_from_a_newer_decnet_and_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    let db_arg = db.to_str().unwrap();
    block_on(async { decnet::store::open(&db).await.unwrap().close().await });
    let backup = home.join("b.db");
    let out = decnet(home, &["backup", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(out.status.success(), "{}", text(&out));

    // A schema version this binary does not have, as a newer decnet leaves it.
    let newer = decnet::store::known_schema_version() + 1;
    block_on(async {
        let mut c = SqliteConnectOptions::new().filename(&backup).connect().await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, 'from the future', 1, x'00', 0)",
        )
        .bind(newer)
        .execute(&mut c)
        .await
        .unwrap();
    });
    let out = decnet(home, &["restore", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("schema version {newer}, written by a newer decnet")), "{}", text(&out));
    // And opening such a database refuses the same way.
    std::fs::copy(&backup, home.join("newer.db")).unwrap();
    let err = block_on(decnet::store::open(&home.join("newer.db"))).unwrap_err().to_string();
    assert!(err.contains("written by a newer decnet"), "{err}");

    let damaged = home.join("damaged.db");
    std::fs::write(&damaged, b"SQLite format 3\0 but not really a database at all, just bytes").unwrap();
    let out = decnet(home, &["restore", damaged.to_str().unwrap(), "--db", db_arg]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("will not restore"), "{}", text(&out));
    // The database was not touched by either refusal.
    assert!(std::fs::read_dir(home).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_str()
        .unwrap()
        .contains("before-restore")));
}

#[test]
fn restore_refuses_while_the_api_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    block_on(async { decnet::store::open(&db).await.unwrap().close().await });
    let backup = home.join("b.db");
    assert!(decnet(home, &["backup", backup.to_str().unwrap(), "--db", db.to_str().unwrap()]).status.success());
    let _api = decnet::lock::acquire(home, "api").unwrap().unwrap();
    let out = decnet(home, &["restore", backup.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("decnet api is running on {} (pid {}", home.display(), std::process::id())),
        "{}",
        text(&out)
    );
}

#[test]
fn backup_and_restore_convert_an_old_database_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let db = home.join("decnet.db");
    // A database as versions before incremental auto-vacuum left it.
    block_on(async {
        decnet::store::open(&db).await.unwrap().close().await;
        let mut c = SqliteConnectOptions::new().filename(&db).connect().await.unwrap();
        sqlx::query("PRAGMA auto_vacuum = NONE").execute(&mut c).await.unwrap();
        sqlx::query("VACUUM").execute(&mut c).await.unwrap();
    });
    assert_eq!(scalar(&db, "PRAGMA auto_vacuum"), 0);
    let backup = home.join("b.db");
    let db_arg = db.to_str().unwrap();
    assert!(decnet(home, &["backup", backup.to_str().unwrap(), "--db", db_arg]).status.success());
    assert_eq!(scalar(&backup, "PRAGMA auto_vacuum"), 2, "the backup has incremental auto-vacuum");
    let out = decnet(home, &["restore", backup.to_str().unwrap(), "--db", db_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(scalar(&db, "PRAGMA auto_vacuum"), 2, "and so has the restored database");
}
