//! The Fleet, Attackers and attacker pages in a real headless Chromium,
//! over real processes: `decnet bus`, `decnet api`, `decnet profiler`, one
//! SQLite file. Logs rows are inserted as the collector writes them (an
//! SSH login on one decky, an HTTP request on a second, from 127.0.0.1)
//! and the browser must show one attacker with a 2-decky traversal,
//! delivered live over the attackers SSE stream.
//!
//! Rows are inserted here so that the detail page's timeline and the
//! clusterer's identity (two attackers sharing a HASSH, which needs a
//! fingerprint no client of this test produces) are exact and known. The
//! same criterion with nothing inserted, through `decnet up` and real
//! OpenSSH/curl clients, is `up_senses.rs`.

mod support;

use fantoccini::Locator;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{browser, free_port, text_of, wait_text, Daemon, Proc, BIN};

fn spawn(dir: &Path, socket: &Path, args: &[&str]) -> Proc {
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

async fn insert_log(pool: &sqlx::SqlitePool, decky: &str, service: &str, event_type: &str, msg: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    sqlx::query(
        "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
         VALUES (?, ?, ?, ?, '127.0.0.1', '{}', ?, '-')",
    )
    .bind(now)
    .bind(decky)
    .bind(service)
    .bind(event_type)
    .bind(msg)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_fleet_then_a_live_two_decky_traversal() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Daemon::start(dir.path(), &[]);
    let pool = decnet::store::open(&dir.path().join("decnet.db")).await.unwrap();
    let hash = decnet::auth::hash_password("pw-viewer").unwrap();
    decnet::store::users::create(&pool, "eve", &hash, decnet::auth::Role::Viewer).await.unwrap();
    sqlx::query(
        "INSERT INTO fleet_deckies (name, services, interval_minutes, deployed, address, last_mutated) VALUES
         ('web-01', '[\"ssh\",\"http\"]', 5, 1, '127.0.0.21', 1), ('ws-finance', '[\"http\",\"smb\"]', 5, 1, '127.0.0.22', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO decky_mutations (timestamp, decky, old_services, new_services, trigger) VALUES
         (1, 'web-01', '[]', '[\"ssh\",\"http\"]', 'creation')",
    )
    .execute(&pool)
    .await
    .unwrap();

    let port = free_port();
    let _api = spawn(dir.path(), &bus.socket, &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let _profiler = spawn(dir.path(), &bus.socket, &["profiler", "--poll-ms", "100"]);
    let _clusterer = spawn(dir.path(), &bus.socket, &["clusterer", "--interval-secs", "0.2"]);
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{url}api/v1/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (_driver, b) = browser(dir.path()).await;
    b.goto(&url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys("eve").await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys("pw-viewer").await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();

    // First screen: the fleet, with addresses, services and the mutation.
    let web = wait_text(&b, "#decky-web-01", |t| t.contains("127.0.0.21")).await;
    assert!(web.contains("ssh, http"), "{web}");
    assert!(web.contains("creation"), "the mutation history is shown: {web}");
    assert!(text_of(&b, "#decky-ws-finance").await.contains("127.0.0.22"));
    assert!(text_of(&b, "#recent-empty").await.contains("No attackers yet"));

    // The Attackers page, live: wait until its stream is subscribed.
    b.goto(&format!("{url}#attackers")).await.unwrap();
    wait_text(&b, "#live", |t| t.to_lowercase().contains("● live")).await;

    // Someone connects: an SSH login on web-01, then HTTP on ws-finance.
    let connected = Instant::now();
    insert_log(&pool, "web-01", "ssh", "login_attempt", "root / hunter2").await;
    insert_log(&pool, "ws-finance", "http", "request", "GET /admin").await;
    let row = wait_text(&b, r#"#attackers tr[data-ip="127.0.0.1"] .traversal"#, |t| t == "web-01 → ws-finance").await;
    eprintln!(
        "attacker with a 2-decky traversal shown {} ms after the rows were written",
        connected.elapsed().as_millis()
    );
    assert_eq!(row, "web-01 → ws-finance");
    let rows = b.find_all(Locator::Css("#attackers tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1, "one attacker");
    // The live events went through the SSE stream (logged on the System page).
    let events = b.find(Locator::Id("events")).await.unwrap().html(true).await.unwrap();
    assert!(events.contains("attacker.scored"), "attacker.scored arrived over SSE: {events}");

    // The detail page.
    b.find(Locator::Css(r#"#attackers tr[data-ip="127.0.0.1"] a"#)).await.unwrap().click().await.unwrap();
    let path = wait_text(&b, "#attacker-traversal", |t| t.contains('→')).await;
    assert_eq!(path, "web-01 → ws-finance");
    assert_eq!(text_of(&b, "#attacker-ip").await, "127.0.0.1");
    let timeline = b.find_all(Locator::Css("#attacker-timeline tbody tr")).await.unwrap();
    assert_eq!(timeline.len(), 2);
    assert!(text_of(&b, "#attacker-timeline").await.contains("GET /admin"));

    // Back on the first screen the attacker is there too.
    b.goto(&format!("{url}#fleet")).await.unwrap();
    wait_text(&b, r#"#recent-attackers tr[data-ip="127.0.0.1"]"#, |t| t.contains("web-01 → ws-finance")).await;

    // Two attackers share a HASSH: the clusterer links them and the
    // Attackers page lists the identity.
    for ip in ["127.0.0.1", "127.0.0.2"] {
        sqlx::query(
            "INSERT INTO fingerprints (attacker_ip, kind, port, hash, source, first_seen, last_seen)
             VALUES (?, 'hassh', 22, 'ec7378c1a92f5a8dde7e8b7a1ddf33d1', 'sniffer', 1, 1)",
        )
        .bind(ip)
        .execute(&pool)
        .await
        .unwrap();
    }
    b.goto(&format!("{url}#attackers")).await.unwrap();
    let identity = wait_text(&b, "#identities tbody tr", |t| t.contains("127.0.0.2")).await;
    assert!(identity.contains("127.0.0.1") && identity.contains("hassh:ec7378c1"), "{identity}");

    let shot = b.screenshot().await.unwrap();
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("attackers-fleet.png"), shot).unwrap();
    b.close().await.unwrap();
}
