//! Benchmark (ignored by default): the attackers and logs list pages over a
//! million `logs` rows and 50,000 attackers, through the real router on a
//! real SQLite file, timed from an HTTP client on loopback.
//!
//! ```text
//! cargo test -p decnet --test attackers_bench -- --ignored --nocapture
//! ```
//!
//! The database is built once (SQL recursive CTEs, ~1 min) and kept in
//! `target/tmp/attackers-bench.db` so later runs only time the requests.
//! Prints one line per page: median and worst of 15 requests. Numbers go
//! in BENCHMARKS.md ("Attackers API"); nothing here asserts a speed.
//!
//! `console_overview_over_a_million_rows` does the same for the Overview,
//! Credentials and Sessions routes (issue 27) over its own database, whose
//! million rows span the 30 days before it was built, so the charts have
//! something to count (`target/tmp/console-bench.db`; BENCHMARKS.md,
//! "Console").

use decnet::api::{self, ApiConfig, AppState};
use decnet::auth::{self, JwtKeys, Role};
use decnet::registry::WorkerRegistry;
use decnet::systemd::Systemctl;
use decnet_bus::sdk::AppBus;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOGS: i64 = 1_000_000;
const ATTACKERS: i64 = 50_000;
const RUNS: usize = 15;

/// `10.a.b.c` for attacker number `x` (SQL expression over column `x`).
const IP_SQL: &str =
    "'10.' || ((x % 50000) / 65536) || '.' || (((x % 50000) / 256) % 256) || '.' || ((x % 50000) % 256)";

async fn build(pool: &sqlx::SqlitePool) {
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM logs").fetch_one(pool).await.unwrap();
    if have == LOGS {
        return;
    }
    let started = Instant::now();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {LOGS} - 1)
         INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
         SELECT 1700000000.0 + x * 0.5, 'decky-' || (x % 8),
                CASE x % 5 WHEN 0 THEN 'ssh' WHEN 1 THEN 'http' WHEN 2 THEN 'smb' WHEN 3 THEN 'ftp' ELSE 'telnet' END,
                CASE x % 4 WHEN 0 THEN 'login_attempt' WHEN 1 THEN 'command' WHEN 2 THEN 'request' ELSE 'connection' END,
                {IP_SQL}, '{{}}', 'event ' || x, '<134>1 - - - - - -'
         FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {ATTACKERS} - 1)
         INSERT INTO attackers (ip, first_seen, last_seen, event_count, service_count, decky_count, services, deckies,
                                traversal_path, is_traversal, behavior, updated_at)
         SELECT {IP_SQL}, 1700000000.0 + x, 1700000000.0 + x * 10, 20, 2, 2,
                CASE x % 3 WHEN 0 THEN '[\"ssh\",\"http\"]' WHEN 1 THEN '[\"smb\"]' ELSE '[\"ftp\",\"telnet\"]' END,
                '[\"decky-' || (x % 8) || '\",\"decky-' || ((x + 1) % 8) || '\"]',
                'decky-' || (x % 8) || ' → decky-' || ((x + 1) % 8), 1,
                CASE x % 7 WHEN 0 THEN 'unknown' WHEN 1 THEN 'slow_scan' WHEN 2 THEN 'scanning' WHEN 3 THEN 'brute_force'
                           WHEN 4 THEN 'beaconing' WHEN 5 THEN 'interactive' ELSE 'mixed' END, 0
         FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    eprintln!("built {LOGS} logs rows and {ATTACKERS} attackers in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn attackers_api_lists_over_a_million_rows() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("attackers-bench.db");
    let pool = decnet::store::open(&path).await.unwrap();
    build(&pool).await;
    if decnet::store::users::count(&pool).await.unwrap() == 0 {
        let hash = auth::hash_password("bench").unwrap();
        decnet::store::users::create(&pool, "bench", &hash, Role::Viewer).await.unwrap();
    }
    let state = AppState::new(
        pool,
        JwtKeys::new(b"bench-secret", Duration::from_secs(3600)),
        WorkerRegistry::new(vec!["api".into()], Duration::from_secs(90)),
        Arc::new(AppBus::new("api", "/nonexistent/decnet-bench/bus.sock")),
        Systemctl::with_search_path(std::ffi::OsStr::new("/nonexistent")),
        ApiConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = state.shutdown.clone();
    let server = tokio::spawn(api::serve(listener, state.clone(), async move { shutdown.cancelled().await }));
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "bench", "password": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    // Row x (id x + 1) has timestamp 1700000000 + x / 2: a cursor half way down.
    let mid_cursor = format!("{}:{}", 1_700_000_000.0 + (LOGS / 2) as f64 * 0.5, LOGS / 2 + 1);
    let pages = [
        "/api/v1/attackers".to_string(),
        "/api/v1/attackers?sort=events".into(),
        "/api/v1/attackers?sort=first_seen&page=500".into(),
        "/api/v1/attackers?behavior=brute_force".into(),
        "/api/v1/attackers?service=ssh".into(),
        "/api/v1/attackers?decky=decky-3".into(),
        "/api/v1/attackers?q=10.0.12".into(),
        "/api/v1/attackers?since=1700400000".into(),
        "/api/v1/attackers/10.0.12.34".into(),
        "/api/v1/logs".into(),
        "/api/v1/logs?decky=decky-3".into(),
        "/api/v1/logs?ip=10.0.12.34".into(),
        "/api/v1/logs?type=login_attempt&service=ssh".into(),
        format!("/api/v1/logs?decky=decky-5&cursor={mid_cursor}"),
        "/api/v1/logs?since=1700200000&until=1700300000".into(),
    ];
    println!("| page | median ms | worst ms | rows |");
    println!("|---|---|---|---|");
    for page in &pages {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = http.get(format!("{base}{page}")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{page}");
            let body: serde_json::Value = resp.json().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            rows = body["attackers"]
                .as_array()
                .or(body["logs"].as_array())
                .or(body["timeline"].as_array())
                .map_or(0, Vec::len);
        }
        times.sort_by(f64::total_cmp);
        println!("| `{page}` | {:.1} | {:.1} | {rows} |", times[RUNS / 2], times[RUNS - 1]);
    }
    state.shutdown.cancel();
    let _ = server.await;
}

const CREDENTIALS: i64 = 100_000;
const RECORDINGS: i64 = 20_000;

/// A million log rows over the 30 days before now (a quarter of them
/// commands from 500 distinct ones), 50,000 attackers, 100,000 credentials
/// from 2,000 usernames and 5,000 passwords, 20,000 recordings, 5,000
/// artifacts; the 0020 triggers fill the roll-ups as the rows go in.
async fn build_console(pool: &sqlx::SqlitePool) {
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM logs").fetch_one(pool).await.unwrap();
    if have == LOGS {
        return;
    }
    let started = Instant::now();
    let now = decnet_bus::envelope::now_ts();
    let step = 30.0 * 86400.0 / LOGS as f64;
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {LOGS} - 1)
         INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
         SELECT {now} - 30 * 86400 + x * {step}, 'decky-' || (x % 8),
                CASE x % 5 WHEN 0 THEN 'ssh' WHEN 1 THEN 'http' WHEN 2 THEN 'smb' WHEN 3 THEN 'ftp' ELSE 'telnet' END,
                CASE x % 4 WHEN 0 THEN 'login_attempt' WHEN 1 THEN 'command' WHEN 2 THEN 'request' ELSE 'connect' END,
                {IP_SQL},
                CASE x % 4 WHEN 1 THEN json_object('sid', 's' || x, 'command', 'cmd-' || (x % 500)) ELSE '{{}}' END,
                'event ' || x, '<134>1 - - - - - -'
         FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {ATTACKERS} - 1)
         INSERT INTO attackers (ip, first_seen, last_seen, event_count, services, deckies, behavior, updated_at)
         SELECT {IP_SQL}, {now} - 30 * 86400 + x * 50, {now} - x, 20 + x % 97, '[\"ssh\"]', '[\"decky-1\"]', 'brute_force', 0 FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {CREDENTIALS} - 1)
         INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, secret_text,
                                  first_seen, last_seen, attempts)
         SELECT {IP_SQL}, 'decky-' || (x % 7), 'ssh', 'user' || (x % 2000), printf('%064d', x % 5000), 'eA==',
                'pw-' || (x % 5000), {now} - x * 20, {now} - x * 20, 1 + x % 3 FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {RECORDINGS} - 1)
         INSERT INTO recordings (sid, attacker_ip, decky, service, username, path, bytes, sha256, started, ended, commands)
         SELECT 'sid' || x, {IP_SQL}, 'decky-' || (x % 8), 'ssh', 'root', '/x', 1, 'x', {now} - x * 100, {now} - x * 100 + 5, 3 FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 5000 - 1)
         INSERT INTO artifacts (attacker_ip, decky, sid, source, url, path, sha256, size, mime, first_seen)
         SELECT {IP_SQL}, 'decky-1', 'sid' || x, 'url', 'http://198.51.100.1/' || x, '/tmp/' || x, printf('%064d', x), 100, 'text/plain',
                {now} - x * 500 FROM c"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    eprintln!("built the console bench database in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn console_overview_over_a_million_rows() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-bench.db");
    let pool = decnet::store::open(&path).await.unwrap();
    build_console(&pool).await;
    if decnet::store::users::count(&pool).await.unwrap() == 0 {
        let hash = auth::hash_password("bench").unwrap();
        decnet::store::users::create(&pool, "bench", &hash, Role::Admin).await.unwrap();
    }
    let state = AppState::new(
        pool,
        JwtKeys::new(b"bench-secret", Duration::from_secs(3600)),
        WorkerRegistry::new(vec!["api".into()], Duration::from_secs(90)),
        Arc::new(AppBus::new("api", "/nonexistent/decnet-bench/bus.sock")),
        Systemctl::with_search_path(std::ffi::OsStr::new("/nonexistent")),
        ApiConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = state.shutdown.clone();
    let server = tokio::spawn(api::serve(listener, state.clone(), async move { shutdown.cancelled().await }));
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "bench", "password": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let pages = [
        "/api/v1/overview",
        "/api/v1/overview?hours=168",
        "/api/v1/overview?hours=720",
        "/api/v1/credentials",
        "/api/v1/credentials?username=user7",
        "/api/v1/credentials?decky=decky-3",
        "/api/v1/sessions",
        "/api/v1/sessions?decky=decky-3",
        "/api/v1/sessions?ip=10.0.12.34",
    ];
    println!("| page | median ms | worst ms | events counted / rows |");
    println!("|---|---|---|---|");
    for page in pages {
        let mut times = Vec::with_capacity(RUNS);
        let mut counted = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = http.get(format!("{base}{page}")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{page}");
            let body: serde_json::Value = resp.json().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            counted = body["totals"]["events"]
                .as_i64()
                .or(body["credentials"].as_array().map(|a| a.len() as i64))
                .or(body["sessions"].as_array().map(|a| a.len() as i64))
                .unwrap_or(0);
        }
        times.sort_by(f64::total_cmp);
        println!("| `{page}` | {:.1} | {:.1} | {counted} |", times[RUNS / 2], times[RUNS - 1]);
    }
    state.shutdown.cancel();
    let _ = server.await;
}
