//! The attackers work through the real API router over a real SQLite file:
//! rows inserted into `logs`, `credentials`, `fingerprints`,
//! `decky_mutations` and `fleet_deckies` exactly as the collector, prober
//! and mutator write them; the real profiler and clusterer passes over
//! them; then every route, its filters and its bad-input answers.

mod api_support;

use api_support::{no_bus, Harness, SystemctlMode, ADMIN, VIEWER};
use serde_json::{json, Value};
use sqlx::SqlitePool;

async fn log(pool: &SqlitePool, ts: f64, decky: &str, service: &str, event_type: &str, ip: &str, fields: Value) {
    sqlx::query(
        "INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(ts)
    .bind(decky)
    .bind(service)
    .bind(event_type)
    .bind(ip)
    .bind(fields.to_string())
    .bind(format!("{event_type} from {ip}"))
    .bind(format!("<134>1 - {decky} {service} - {event_type} -"))
    .execute(pool)
    .await
    .unwrap();
}

async fn credential(pool: &SqlitePool, ip: &str, decky: &str, service: &str, user: &str, secret: &str, ts: f64) {
    use std::fmt::Write;
    // Test-only stand-in for the ingester's sha256: any stable digest works
    // for matching, the profiler only compares the column.
    let mut hash = String::new();
    for b in secret.bytes() {
        let _ = write!(hash, "{b:02x}");
    }
    sqlx::query(
        "INSERT INTO credentials (attacker_ip, decky, service, username, secret_sha256, secret_b64, first_seen, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(ip)
    .bind(decky)
    .bind(service)
    .bind(user)
    .bind(hash)
    .bind(secret) // already "base64" for the test's purpose
    .bind(ts)
    .bind(ts)
    .execute(pool)
    .await
    .unwrap();
}

async fn fingerprint(pool: &SqlitePool, ip: &str, kind: &str, hash: &str, ts: f64) {
    sqlx::query(
        "INSERT INTO fingerprints (attacker_ip, kind, port, hash, source, first_seen, last_seen)
         VALUES (?, ?, 22, ?, 'prober', ?, ?)
         ON CONFLICT(attacker_ip, kind, port, source) DO UPDATE SET hash = excluded.hash, last_seen = excluded.last_seen",
    )
    .bind(ip)
    .bind(kind)
    .bind(hash)
    .bind(ts)
    .bind(ts)
    .execute(pool)
    .await
    .unwrap();
}

async fn mutation(pool: &SqlitePool, ts: f64, decky: &str, old: &[&str], new: &[&str]) {
    sqlx::query(
        "INSERT INTO decky_mutations (timestamp, decky, old_services, new_services, trigger) VALUES (?, ?, ?, ?, 'scheduled')",
    )
    .bind(ts)
    .bind(decky)
    .bind(serde_json::to_string(old).unwrap())
    .bind(serde_json::to_string(new).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

/// A small world: 10.0.0.5 logs in over ssh on web-01 then requests http
/// on db-02 (a traversal, crossing one mutation of web-01), 10.0.0.6
/// guesses ssh passwords on web-01, 10.0.0.7 shares 10.0.0.5's HASSH, and lines
/// with no address.
async fn world(h: &Harness) -> decnet::profiler::PassReport {
    let pool = &h.state.pool;
    sqlx::query("INSERT INTO fleet_deckies (name, services, interval_minutes, deployed, address) VALUES ('web-01', '[\"ssh\",\"http\"]', 5, 1, '127.0.0.11'), ('db-02', '[\"http\"]', 5, 1, '127.0.0.12')")
        .execute(pool)
        .await
        .unwrap();
    mutation(pool, 50.0, "web-01", &[], &["ssh"]).await;
    mutation(pool, 1005.0, "web-01", &["ssh"], &["ssh", "http"]).await;
    mutation(pool, 5000.0, "db-02", &["http"], &["smb"]).await; // after the window
    log(pool, 1000.0, "web-01", "ssh", "login_attempt", "10.0.0.5", json!({"username": "root"})).await;
    log(pool, 1003.0, "web-01", "ssh", "command", "10.0.0.5", json!({"command": "uname -a"})).await;
    log(pool, 1010.0, "db-02", "http", "request", "10.0.0.5", json!({"path": "/admin"})).await;
    for i in 0..6 {
        let guess = json!({"username": "admin", "secret_b64": format!("Z3Vlc3N{i}"), "outcome": "failure"});
        log(pool, 2000.0 + f64::from(i) * 0.5, "web-01", "ssh", "login_attempt", "10.0.0.6", guess).await;
    }
    log(pool, 3000.0, "db-02", "http", "request", "10.0.0.7", json!({})).await;
    log(pool, 3001.0, "db-02", "http", "request", "Unknown", json!({})).await;
    log(pool, 3002.0, "db-02", "http", "request", "not-an-ip", json!({})).await;
    credential(pool, "10.0.0.5", "web-01", "ssh", "root", "aHVudGVyMg==", 1000.0).await;
    credential(pool, "10.0.0.6", "web-01", "ssh", "admin", "aHVudGVyMg==", 2000.0).await;
    credential(pool, "10.0.0.6", "db-02", "ssh", "admin", "aHVudGVyMg==", 2001.0).await;
    fingerprint(pool, "10.0.0.5", "hassh", "hh1", 1000.0).await;
    fingerprint(pool, "10.0.0.7", "hassh", "hh1", 3000.0).await;
    let profiler = decnet::profiler::Profiler::new(pool.clone(), h.dir.path().join("ingest.log"));
    profiler.pass(None).await.unwrap()
}

#[tokio::test]
async fn profiler_pass_folds_the_world() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    let report = world(&h).await;
    assert_eq!(report.rows, 12);
    assert_eq!(report.skipped, 2, "Unknown and a garbage address are left out");
    assert_eq!(report.observed.len(), 3);
    assert_eq!(report.scored.len(), 3);
    // One traversal line, with the mutation of web-01 inside the window.
    assert_eq!(report.traversals.len(), 1);
    let ingest = std::fs::read_to_string(h.dir.path().join("ingest.log")).unwrap();
    let line = decnet::events::rfc5424::parse_line(ingest.lines().next().unwrap()).unwrap();
    assert_eq!(line.msgid.as_deref(), Some("traversal_detected"));
    let sd = line.element("relay@55555").unwrap();
    assert_eq!(sd.param("path"), Some("web-01 → db-02"));
    assert_eq!(sd.param("mutation_count"), Some("1"));
    // The same secret on web-01:ssh and db-02:ssh.
    assert_eq!(report.reuse.len(), 1);
    assert_eq!(report.reuse[0]["targets"], json!(["db-02:ssh", "web-01:ssh"]));
    assert_eq!(report.reuse[0]["attacker_ips"], json!(["10.0.0.5", "10.0.0.6"]));
    assert!(!report.reuse[0].to_string().contains("aHVudGVyMg=="), "the secret never leaves in the event");

    // A second pass has nothing new: no events, no second traversal line.
    let profiler = decnet::profiler::Profiler::new(h.state.pool.clone(), h.dir.path().join("ingest.log"));
    let again = profiler.pass(None).await.unwrap();
    assert_eq!((again.rows, again.observed.len(), again.scored.len(), again.reuse.len()), (0, 0, 0, 0));
    // More traffic from a known attacker on a known decky: scored, not
    // observed, no new traversal line, no reuse (target set unchanged).
    log(&h.state.pool, 1020.0, "db-02", "http", "request", "10.0.0.5", json!({})).await;
    let more = profiler.pass(None).await.unwrap();
    assert_eq!((more.observed.len(), more.scored.len(), more.traversals.len(), more.reuse.len()), (0, 1, 0, 0));
    assert_eq!(more.scored[0]["event_count"], 4);
    // A rotated fingerprint alone (no new log row) refreshes the profile.
    fingerprint(&h.state.pool, "10.0.0.7", "hassh", "rotated", 3100.0).await;
    let fp = profiler.pass(None).await.unwrap();
    assert_eq!(fp.rows, 0);
    assert_eq!(fp.scored.len(), 1);
    assert_eq!(fp.scored[0]["attacker_ip"], "10.0.0.7");
    h.shutdown().await;
}

#[tokio::test]
async fn attackers_list_filters_sorts_pages_and_refuses_bad_values() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let t = h.login(VIEWER).await;
    let t = Some(t.as_str());

    let (s, all) = h.call("GET", "/api/v1/attackers", t).await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["total"], 3);
    let ips: Vec<&str> = all["attackers"].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, ["10.0.0.7", "10.0.0.6", "10.0.0.5"], "newest last_seen first");
    let a5 = all["attackers"].as_array().unwrap().iter().find(|a| a["ip"] == "10.0.0.5").unwrap();
    assert_eq!(a5["traversal_path"], "web-01 → db-02");
    assert_eq!(a5["is_traversal"], true);
    assert_eq!(a5["deckies"], json!(["web-01", "db-02"]));
    assert_eq!(a5["credential_count"], 1);
    let a6 = all["attackers"].as_array().unwrap().iter().find(|a| a["ip"] == "10.0.0.6").unwrap();
    assert_eq!(a6["behavior"], "brute_force");

    let ips_of = |v: &Value| -> Vec<String> {
        v["attackers"].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect()
    };
    let (_, v) = h.call("GET", "/api/v1/attackers?sort=events", t).await;
    assert_eq!(ips_of(&v)[0], "10.0.0.6");
    let (_, v) = h.call("GET", "/api/v1/attackers?sort=first_seen", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.7", "10.0.0.6", "10.0.0.5"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?service=http", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.7", "10.0.0.5"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?decky=web-01", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.6", "10.0.0.5"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?behavior=brute_force", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.6"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?q=10.0.0.5", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.5"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?q=10.0.&since=2000", t).await;
    assert_eq!(ips_of(&v), ["10.0.0.7", "10.0.0.6"]);
    let (_, v) = h.call("GET", "/api/v1/attackers?limit=2&page=2", t).await;
    assert_eq!((ips_of(&v), v["total"].clone()), (vec!["10.0.0.5".to_string()], json!(3)));

    for bad in [
        "sort=name",
        "behavior=evil",
        "limit=0",
        "limit=501",
        "page=0",
        "page=-1",
        "since=yesterday",
        "since=-5",
        "q=10.0.0.1%27%20OR%201=1",
        "decky=a%20b",
        "colour=red",
    ] {
        let (s, body) = h.call("GET", &format!("/api/v1/attackers?{bad}"), t).await;
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    let (s, _) = h.call("GET", "/api/v1/attackers", None).await;
    assert_eq!(s, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn attacker_detail_has_timeline_credentials_commands_fingerprints_and_traversal() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let t = h.login(VIEWER).await;
    let t = Some(t.as_str());
    let (s, a) = h.call("GET", "/api/v1/attackers/10.0.0.5", t).await;
    assert_eq!(s, 200, "{a}");
    let types: Vec<&str> =
        a["timeline"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["request", "command", "login_attempt"], "newest first");
    assert_eq!(a["timeline"][0]["fields"]["path"], "/admin");
    assert_eq!(a["commands"], json!(["uname -a"]));
    assert_eq!(a["credentials"][0]["username"], "root");
    // A viewer sees the guess masked and never its base64 (issue 27).
    assert_eq!(a["credentials"][0]["secret"], "hu*****");
    assert_eq!(a["credentials"][0]["secret_b64"], Value::Null);
    assert_eq!(a["fingerprints"][0]["kind"], "hassh");
    assert_eq!(a["fingerprints"][0]["hash"], "hh1");
    assert_eq!(a["traversal"]["path"], "web-01 → db-02");
    let muts = a["traversal"]["mutations"].as_array().unwrap();
    assert_eq!(muts.len(), 1, "only mutations inside [first_seen, last_seen]: {muts:?}");
    assert_eq!(muts[0]["decky"], "web-01");
    assert_eq!(muts[0]["new_services"], json!(["ssh", "http"]));

    let (s, body) = h.call("GET", "/api/v1/attackers/10.9.9.9", t).await;
    assert_eq!(s, 404, "{body}");
    let (s, body) = h.call("GET", "/api/v1/attackers/not-an-ip", t).await;
    assert_eq!(s, 400, "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn logs_filter_and_page_by_cursor() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let t = h.login(VIEWER).await;
    let t = Some(t.as_str());
    let (s, v) = h.call("GET", "/api/v1/logs?ip=10.0.0.6&limit=4", t).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["logs"].as_array().unwrap().len(), 4);
    // The guess rides in a login line's fields: a viewer never gets it
    // here (only masked, in credentials); an admin does.
    assert!(v["logs"].as_array().unwrap().iter().all(|l| l["fields"].get("secret_b64").is_none()), "{v}");
    let admin = h.login(ADMIN).await;
    let (_, a) = h.call("GET", "/api/v1/logs?ip=10.0.0.6&limit=4", Some(admin.as_str())).await;
    assert!(a["logs"].as_array().unwrap().iter().all(|l| l["fields"]["secret_b64"].is_string()), "{a}");
    let cursor = v["next_cursor"].as_str().expect("a full page has a next cursor").to_string();
    let (_, v2) = h.call("GET", &format!("/api/v1/logs?ip=10.0.0.6&limit=4&cursor={cursor}"), t).await;
    assert_eq!(v2["logs"].as_array().unwrap().len(), 2);
    assert_eq!(v2["next_cursor"], Value::Null);
    let mut ids: Vec<i64> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v2["logs"].as_array().unwrap())
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no row on two pages");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first (these rows' times rise with their ids)");

    let (_, v) = h.call("GET", "/api/v1/logs?decky=db-02&type=request&since=1005&until=3000", t).await;
    let got: Vec<(String, f64)> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["attacker_ip"].as_str().unwrap().to_string(), l["timestamp"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, [("10.0.0.7".to_string(), 3000.0), ("10.0.0.5".to_string(), 1010.0)]);
    let (_, v) = h.call("GET", "/api/v1/logs?service=ssh&ip=10.0.0.5", t).await;
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    let (_, v) = h.call("GET", "/api/v1/logs?ip=Unknown", t).await;
    assert_eq!(v["logs"].as_array().unwrap().len(), 1);

    for bad in [
        "limit=0",
        "limit=1001",
        "cursor=0",
        "cursor=abc",
        "cursor=12",
        "cursor=1.5:0",
        "cursor=-1:3",
        "cursor=NaN:3",
        "since=10&until=5",
        "ip=10.0.0",
        "until=NaN",
        "type=",
        "foo=1",
    ] {
        let (s, body) = h.call("GET", &format!("/api/v1/logs?{bad}"), t).await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn fleet_lists_deckies_with_addresses_services_and_mutations() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let t = h.login(VIEWER).await;
    let (s, v) = h.call("GET", "/api/v1/fleet", Some(&t)).await;
    assert_eq!(s, 200, "{v}");
    let d = v["deckies"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    let web = d.iter().find(|x| x["name"] == "web-01").unwrap();
    assert_eq!(web["address"], "127.0.0.11");
    assert_eq!(web["services"], json!(["ssh", "http"]));
    assert_eq!(web["mutations"].as_array().unwrap().len(), 2);
    assert_eq!(web["mutations"][0]["timestamp"], 1005.0, "newest first");
    let (s, _) = h.call("GET", "/api/v1/fleet", None).await;
    assert_eq!(s, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn clusterer_links_a_shared_hassh_into_an_identity_once() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let pool = &h.state.pool;
    let r = decnet::clusterer::pass(pool, None).await.unwrap();
    assert_eq!(r.formed.len(), 1, "{r:?}");
    assert_eq!(r.formed[0]["members"], json!(["10.0.0.5", "10.0.0.7"]));
    assert!(decnet::clusterer::pass(pool, None).await.unwrap().is_empty(), "a re-run publishes nothing");

    let t = h.login(VIEWER).await;
    let (s, v) = h.call("GET", "/api/v1/identities", Some(&t)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["identities"][0]["members"], json!(["10.0.0.5", "10.0.0.7"]));
    assert_eq!(v["identities"][0]["fingerprints"], json!(["hassh:hh1"]));
    let id = v["identities"][0]["id"].clone();
    let (_, a) = h.call("GET", "/api/v1/attackers/10.0.0.7", Some(&t)).await;
    assert_eq!(a["identity_id"], id);

    // 10.0.0.7's HASSH rotates: the identity no longer holds.
    fingerprint(pool, "10.0.0.7", "hassh", "other", 4000.0).await;
    let r = decnet::clusterer::pass(pool, None).await.unwrap();
    assert_eq!(r.unmerged.len(), 1, "{r:?}");
    let (_, v) = h.call("GET", "/api/v1/identities", Some(&t)).await;
    assert_eq!(v["identities"], json!([]));
    let (_, a) = h.call("GET", "/api/v1/attackers/10.0.0.7", Some(&t)).await;
    assert_eq!(a["identity_id"], Value::Null);
    h.shutdown().await;
}

#[tokio::test]
async fn attackers_stream_needs_a_token_says_ready_and_caps_open_streams() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    let (s, body) = h.call("GET", "/api/v1/attackers/stream", None).await;
    assert_eq!(s, 401, "{body}");
    let (s, _) = h.call("GET", "/api/v1/attackers/stream?token=garbage", None).await;
    assert_eq!(s, 401);
    let t = h.login(VIEWER).await;
    let url = h.url(&format!("/api/v1/attackers/stream?token={t}"));
    let mut open = Vec::new();
    for _ in 0..decnet::api::events::DEFAULT_MAX_STREAMS_PER_USER {
        let r = h.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        open.push(r);
    }
    let first = open[0].chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(first.contains("event: ready"), "{first}");
    assert!(first.contains(r#""subscribed":false"#), "no bus: the client is told: {first}");
    let r = h.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429, "one stream over the cap");
    drop(open);
    api_support::eventually(5, "a closed stream frees its slot", || async {
        h.http.get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_failed_pass_commits_nothing_and_the_next_one_catches_up() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    let pool = &h.state.pool;
    let profiler = decnet::profiler::Profiler::new(pool.clone(), h.dir.path().join("ingest.log"));
    log(pool, 100.0, "web-01", "ssh", "login_attempt", "10.3.0.1", json!({})).await;
    // A row whose fields are not JSON still counts as an event.
    sqlx::query("INSERT INTO logs (timestamp, decky, service, event_type, attacker_ip, fields, raw_line) VALUES (101, 'web-01', 'ssh', 'command', '10.3.0.1', 'not json', '-')")
        .execute(pool)
        .await
        .unwrap();
    // Break the transaction half way: the reuse state table is gone.
    sqlx::query("ALTER TABLE credential_reuse RENAME TO credential_reuse_away").execute(pool).await.unwrap();
    credential(pool, "10.3.0.1", "web-01", "ssh", "root", "c2VjcmV0", 100.0).await;
    credential(pool, "10.3.0.1", "db-02", "ssh", "root", "c2VjcmV0", 100.0).await;
    assert!(profiler.pass(None).await.is_err(), "the pass fails");
    let cursor: Option<i64> =
        sqlx::query_scalar("SELECT position FROM cursors WHERE name = 'profiler'").fetch_optional(pool).await.unwrap();
    assert_eq!(cursor, None, "the cursor did not move");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attackers").fetch_one(pool).await.unwrap();
    assert_eq!(n, 0, "no half-written profile");

    sqlx::query("ALTER TABLE credential_reuse_away RENAME TO credential_reuse").execute(pool).await.unwrap();
    let r = profiler.pass(None).await.unwrap();
    assert_eq!(r.rows, 2);
    assert_eq!(r.observed.len(), 1, "the IP is still announced, once");
    assert_eq!(r.scored[0]["event_count"], 2);
    assert_eq!(r.scored[0]["credential_count"], 2);
    assert_eq!(r.reuse.len(), 1, "the reuse is published after all");
    h.shutdown().await;
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Issue 27: the Overview's counters and top lists, kept by the 0020
/// triggers as rows arrive; passwords in clear for an admin and masked for
/// a viewer on every route; a bad window is refused.
#[tokio::test]
async fn overview_counts_activity_and_shows_passwords_by_role() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let pool = &h.state.pool;
    let t = now();
    // This hour: two sessions, three commands (one repeated), one more try.
    for (ty, fields) in [
        ("connect", json!({"sid": "a"})),
        ("command", json!({"sid": "a", "command": "wget http://x/y"})),
        ("command", json!({"sid": "a", "command": "wget http://x/y"})),
        ("command", json!({"sid": "a", "command": "id"})),
        ("disconnect", json!({"sid": "a"})),
        ("connect", json!({"sid": "b"})),
    ] {
        log(pool, t, "web-01", "ssh", ty, "10.0.0.9", fields).await;
    }
    sqlx::query("UPDATE credentials SET attempts = attempts + 1, last_seen = ? WHERE username = 'root'")
        .bind(t)
        .execute(pool)
        .await
        .unwrap();
    let viewer = h.login(VIEWER).await;
    let admin = h.login(ADMIN).await;

    let (s, o) = h.call("GET", "/api/v1/overview?hours=24", Some(&viewer)).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["activity"].as_array().unwrap().len(), 24, "one bucket per hour, empty ones too");
    assert_eq!(o["totals"]["events"], 6, "only this window's rows: {o}");
    assert_eq!(o["totals"]["sessions"], 2);
    assert_eq!(o["totals"]["credentials"], 1, "the repeated try, counted in its hour");
    let last = o["activity"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["events"], 6, "the rows land in the current hour: {last}");
    assert_eq!(o["top_commands"][0], json!({"value": "wget http://x/y", "hits": 2, "last_seen": t}));
    assert_eq!(o["top_deckies"][0]["value"], "web-01");
    assert_eq!(o["top_usernames"][0], json!({"value": "admin", "hits": 2, "last_seen": 2001.0}));
    assert_eq!(o["top_passwords"][0]["value"], "hu*****", "masked for a viewer: {o}");
    assert_eq!(o["top_passwords"][0]["hits"], 4);
    assert_eq!(o["top_sources"][0]["value"], "10.0.0.6", "most events first");
    let (_, o) = h.call("GET", "/api/v1/overview?hours=720", Some(&admin)).await;
    assert_eq!(o["top_passwords"][0]["value"], "hunter2", "clear text for an admin");
    assert_eq!(o["bucket_seconds"], 86400, "a month is charted by day");
    for bad in ["hours=0", "hours=100000", "hours=x", "days=3"] {
        let (s, e) = h.call("GET", &format!("/api/v1/overview?{bad}"), Some(&viewer)).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }

    // Credentials: the admin/hunter2 pair was tried on two deckies (reuse).
    let (s, c) = h.call("GET", "/api/v1/credentials", Some(&viewer)).await;
    assert_eq!(s, 200, "{c}");
    let pair = c["credentials"].as_array().unwrap().iter().find(|p| p["username"] == "admin").unwrap().clone();
    assert_eq!(pair["secret"], "hu*****");
    let mut targets: Vec<&str> = pair["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    targets.sort_unstable();
    assert_eq!(targets, ["db-02:ssh", "web-01:ssh"]);
    assert_eq!(c["masked"], true);
    let (_, c) = h.call("GET", "/api/v1/credentials?username=admin", Some(&admin)).await;
    assert_eq!(c["credentials"].as_array().unwrap().len(), 1);
    assert_eq!(c["credentials"][0]["secret"], "hunter2");
    let (_, a) = h.call("GET", "/api/v1/attackers/10.0.0.5", Some(&admin)).await;
    assert_eq!(
        (a["credentials"][0]["secret"].as_str(), a["credentials"][0]["secret_b64"].as_str()),
        (Some("hunter2"), Some("aHVudGVyMg=="))
    );
    let (s, _) = h.call("GET", "/api/v1/credentials?decky=bad%20name", Some(&viewer)).await;
    assert_eq!(s, 400);
}

/// Issue 27: the Sessions page's list and filters, and the Fleet's truth
/// per service (listening only when the mutator said it serves the decky).
#[tokio::test]
async fn sessions_filter_and_fleet_listeners_tell_the_truth() {
    let h = Harness::start(no_bus(), SystemctlMode::Missing).await;
    world(&h).await;
    let pool = &h.state.pool;
    for (sid, ip, user, started) in [("s1", "10.0.0.5", "root", 100.0), ("s2", "10.0.0.6", "admin", 200.0)] {
        sqlx::query(
            "INSERT INTO recordings (sid, attacker_ip, decky, service, username, path, bytes, sha256, started, ended, commands)
             VALUES (?, ?, 'web-01', 'ssh', ?, '/x', 1, 'x', ?, ?, 3)",
        )
        .bind(sid)
        .bind(ip)
        .bind(user)
        .bind(started)
        .bind(started + 2.5)
        .execute(pool)
        .await
        .unwrap();
    }
    let viewer = h.login(VIEWER).await;
    let (s, l) = h.call("GET", "/api/v1/sessions", Some(&viewer)).await;
    assert_eq!(s, 200, "{l}");
    let sids: Vec<&str> = l["sessions"].as_array().unwrap().iter().map(|x| x["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, ["s2", "s1"], "newest first");
    assert_eq!(l["sessions"][0]["duration_s"], 2.5);
    let (_, l) = h.call("GET", "/api/v1/sessions?ip=10.0.0.5&username=root", Some(&viewer)).await;
    assert_eq!(l["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(l["sessions"][0]["sid"], "s1");
    for bad in ["ip=nope", "since=-1", "limit=0", "decky=a%20b"] {
        let (s, e) = h.call("GET", &format!("/api/v1/sessions?{bad}"), Some(&viewer)).await;
        assert_eq!(s, 400, "{bad}: {e}");
    }

    // web-01 served; db-02 never opened by the mutator; a retired service
    // name nothing serves on a third.
    sqlx::query("UPDATE fleet_deckies SET serving = 'ok' WHERE name = 'web-01'").execute(pool).await.unwrap();
    sqlx::query("INSERT INTO fleet_deckies (name, services, interval_minutes, deployed, serving) VALUES ('old-03', '[\"gopher\",\"ssh\"]', 5, 1, 'cannot bind 127.0.0.13:22: address in use')")
        .execute(pool)
        .await
        .unwrap();
    let (_, f) = h.call("GET", "/api/v1/fleet", Some(&viewer)).await;
    let decky = |n: &str| f["deckies"].as_array().unwrap().iter().find(|d| d["name"] == n).unwrap().clone();
    assert_eq!(
        decky("web-01")["listeners"][0],
        json!({"service": "ssh", "port": 22, "state": "listening", "detail": null})
    );
    assert_eq!(decky("db-02")["listeners"][0]["state"], "pending");
    let old = decky("old-03");
    assert_eq!(old["listeners"][0]["state"], "not_served");
    assert_eq!(old["listeners"][1]["state"], "down");
    assert!(old["listeners"][1]["detail"].as_str().unwrap().contains("address in use"));
    assert!(!decky("web-01")["persona"]["hostname"].as_str().unwrap().is_empty());
}
