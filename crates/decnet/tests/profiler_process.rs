//! The `decnet profiler` and `decnet clusterer` binaries against a real bus
//! daemon and a real SQLite file: events announced once, a restart that
//! announces no IP twice, heartbeat and a stop over the control topic.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use support::{decnet, send_signal, wait_exit, Daemon, BIN};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(dir: &Path, socket: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("DECNET_HOME", dir)
            .env("DECNET_DB", dir.join("decnet.db"))
            .env("DECNET_BUS_SOCKET", socket)
            .env("DECNET_INGEST_LOG_FILE", dir.join("ingest.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `decnet sub` on `patterns` (plus `warm.up`), its envelopes on a channel,
/// returned once it is provably subscribed.
fn watcher(socket: &Path, patterns: &[&str]) -> (Proc, Receiver<serde_json::Value>) {
    let mut args = vec!["sub"];
    args.extend_from_slice(patterns);
    args.push("warm.up");
    // Owned by `Proc` at once, so every path (the panic below too) reaps it.
    let mut child = Proc(
        Command::new(BIN)
            .args(&args)
            .env("DECNET_BUS_SOCKET", socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    for _ in 0..100 {
        assert!(decnet(socket, &["pub", "warm.up", "{}"], None).status.success());
        if rx.recv_timeout(Duration::from_millis(100)).is_ok_and(|e| e["topic"] == "warm.up") {
            while rx.try_recv().is_ok() {}
            return (child, rx);
        }
    }
    panic!("the watcher never subscribed");
}

/// Collect events for `secs` or until `done` says enough.
fn collect(
    rx: &Receiver<serde_json::Value>,
    secs: u64,
    mut done: impl FnMut(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Ok(e) = rx.recv_timeout(left) {
            if e["topic"] != "warm.up" {
                got.push(e);
            }
        }
    }
    got
}

fn count(events: &[serde_json::Value], topic: &str, ip: &str) -> usize {
    events.iter().filter(|e| e["topic"] == topic && e["payload"]["attacker_ip"] == ip).count()
}

async fn insert_log(pool: &sqlx::SqlitePool, ts: f64, decky: &str, service: &str, ip: &str) {
    sqlx::query(
        "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, raw_line) VALUES (?, ?, ?, 'connection', ?, '-')",
    )
    .bind(ts)
    .bind(decky)
    .bind(service)
    .bind(ip)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_profiler_announces_no_ip_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let (_w, events) = watcher(&bus.socket, &["attacker.>", "system.profiler.health"]);

    let mut profiler = worker(dir.path(), &bus.socket, &["profiler", "--poll-ms", "50", "--heartbeat-secs", "1"]);
    insert_log(&pool, 1000.0, "web-01", "ssh", "10.1.0.1").await;
    insert_log(&pool, 1001.0, "web-01", "ssh", "10.1.0.1").await;
    insert_log(&pool, 1002.0, "web-01", "ssh", "Unknown").await;
    let first = collect(&events, 20, |got| {
        count(got, "attacker.scored", "10.1.0.1") >= 1 && got.iter().any(|e| e["topic"] == "system.profiler.health")
    });
    assert_eq!(count(&first, "attacker.observed", "10.1.0.1"), 1, "{first:?}");
    assert_eq!(count(&first, "attacker.scored", "10.1.0.1"), 1, "{first:?}");
    let scored = first.iter().find(|e| e["topic"] == "attacker.scored").unwrap();
    assert_eq!(scored["payload"]["event_count"], 2);
    assert_eq!(scored["payload"]["behavior"], "unknown", "n < 3");
    assert!(first.iter().all(|e| e["payload"]["attacker_ip"] != "Unknown"), "Unknown is never an attacker");

    send_signal(profiler.0.id() as i32, "TERM");
    let status = wait_exit(&mut profiler.0, 10.0).expect("profiler exits on SIGTERM");
    assert!(status.success(), "{status:?}");

    // While it is down: more from the known IP (now on a second decky) and a new IP.
    insert_log(&pool, 1010.0, "db-02", "http", "10.1.0.1").await;
    insert_log(&pool, 1011.0, "web-01", "ssh", "10.1.0.2").await;
    let _profiler = worker(dir.path(), &bus.socket, &["profiler", "--poll-ms", "50", "--heartbeat-secs", "1"]);
    let second = collect(&events, 20, |got| {
        count(got, "attacker.scored", "10.1.0.1") >= 1 && count(got, "attacker.scored", "10.1.0.2") >= 1
    });
    // Whatever else may still come, give a late duplicate a moment to show.
    let late = collect(&events, 1, |_| false);
    let all: Vec<_> = second.into_iter().chain(late).collect();
    assert_eq!(count(&all, "attacker.observed", "10.1.0.1"), 0, "no second attacker.observed after a restart: {all:?}");
    assert_eq!(count(&all, "attacker.observed", "10.1.0.2"), 1, "{all:?}");
    let rescored =
        all.iter().find(|e| e["topic"] == "attacker.scored" && e["payload"]["attacker_ip"] == "10.1.0.1").unwrap();
    assert_eq!(rescored["payload"]["traversal_path"], "web-01 → db-02");
    assert_eq!(rescored["payload"]["event_count"], 3, "the cursor survived: nothing counted twice");
    let log = std::fs::read_to_string(dir.path().join("ingest.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("traversal_detected")).count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusterer_publishes_identity_formed_once_and_stops_on_a_control_message() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    for ip in ["10.2.0.1", "10.2.0.2"] {
        sqlx::query(
            "INSERT INTO fingerprints (attacker_ip, kind, port, hash, source, first_seen, last_seen) VALUES (?, 'jarm', 443, 'j1', 'prober', 1, 1)",
        )
        .bind(ip)
        .execute(&pool)
        .await
        .unwrap();
    }
    let (_w, events) = watcher(&bus.socket, &["identity.>", "system.clusterer.health"]);
    let mut clusterer =
        worker(dir.path(), &bus.socket, &["clusterer", "--interval-secs", "0.1", "--heartbeat-secs", "1"]);
    let got = collect(&events, 20, |got| {
        got.iter().any(|e| e["topic"] == "identity.formed")
            && got.iter().any(|e| e["topic"] == "system.clusterer.health")
    });
    // Many more passes over the same data: still one formed event.
    let later = collect(&events, 1, |_| false);
    let formed: Vec<_> =
        got.iter().chain(&later).filter(|e| e["topic"].as_str().unwrap_or("").starts_with("identity.")).collect();
    assert_eq!(formed.len(), 1, "{formed:?}");
    assert_eq!(formed[0]["payload"]["members"], serde_json::json!(["10.2.0.1", "10.2.0.2"]));

    assert!(decnet(
        &bus.socket,
        &["pub", "system.clusterer.control", r#"{"action":"stop"}"#, "--type", "control"],
        None
    )
    .status
    .success());
    let status = wait_exit(&mut clusterer.0, 10.0).expect("clusterer stops on a control message");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    for args in [&["clusterer", "--interval-secs", "0"][..], &["profiler", "--poll-ms", "0"][..]] {
        let out = Command::new(BIN).args(args).env("DECNET_BUS_SOCKET", "/nonexistent/x.sock").output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: a message on stderr");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profiler_keeps_profiling_with_the_bus_down() {
    let dir = tempfile::tempdir().unwrap();
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let nobody = dir.path().join("no-bus.sock");
    let mut profiler = worker(dir.path(), &nobody, &["profiler", "--poll-ms", "50"]);
    insert_log(&pool, 1000.0, "web-01", "ssh", "10.4.0.1").await;
    insert_log(&pool, 1001.0, "db-02", "http", "10.4.0.1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let path: Option<String> = sqlx::query_scalar("SELECT traversal_path FROM attackers WHERE ip = '10.4.0.1'")
            .fetch_optional(&pool)
            .await
            .unwrap();
        if path.as_deref() == Some("web-01 → db-02") {
            break;
        }
        assert!(Instant::now() < deadline, "no profile without a bus: {path:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("ingest.log")).unwrap_or_default();
    assert!(log.contains("traversal_detected"), "the ingest log side does not need the bus: {log}");
    send_signal(profiler.0.id() as i32, "TERM");
    assert!(wait_exit(&mut profiler.0, 10.0).is_some_and(|s| s.success()));
}
