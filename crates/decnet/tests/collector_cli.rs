//! The collector, ingester and parser as an operator runs them: the real
//! `decnet` binary, a real bus daemon on a UNIX socket, real loopback UDP/TCP
//! and a real SQLite file.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use decnet_bus::Bus;
use support::{free_tcp_udp_port, relay_line, send_signal, wait_exit, wait_until, Daemon, BIN};

fn octet(line: &str) -> Vec<u8> {
    format!("{} {line}", line.len()).into_bytes()
}

fn spawn(args: &[&str], home: &Path, socket: &Path) -> Child {
    Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env("DECNET_BUS_SOCKET", socket)
        .env("RUST_LOG", "info")
        .env_remove("DECNET_BUS_TYPE")
        .env_remove("DECNET_BUS_ENABLED")
        .env_remove("DECNET_DB")
        .env_remove("DECNET_INGEST_LOG_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn db_count(db: &Path, sql: &str) -> i64 {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    match sqlx::SqlitePool::connect_with(opts).await {
        Ok(pool) => {
            let n: Result<(i64,), _> = sqlx::query_as(sql).fetch_one(&pool).await;
            pool.close().await;
            n.map(|(n,)| n).unwrap_or(-1)
        }
        Err(_) => -1,
    }
}

async fn wait_db(db: &Path, sql: &str, want: i64, secs: f64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let n = db_count(db, sql).await;
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn recv(sub: &mut decnet_bus::Subscription) -> decnet_bus::Envelope {
    tokio::time::timeout(Duration::from_secs(10), sub.recv()).await.expect("event in time").expect("subscription open")
}

#[test]
fn parse_prints_records_and_reports_bad_lines() {
    let input = [
        relay_line(
            "web-01",
            "ssh",
            "login_attempt",
            r#"src_ip="1.2.3.4:2222" username="root" secret_b64="eA==""#,
            "hi",
        ),
        "garbage line".to_string(),
        "<134>1 - d ssh - - - CMD uname -a".to_string(),
        String::new(),
        "<13>1 - host sshd - - - Failed password for root from 5.6.7.8 port 22".to_string(),
    ]
    .join("\n");
    let out = support::decnet(Path::new("/nonexistent"), &["parse"], Some(&input));
    assert!(!out.status.success(), "a bad line makes the exit status non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2:") && stderr.contains("1 of 4 lines"), "{stderr}");
    let records: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["attacker_ip"], "1.2.3.4");
    assert_eq!(records[0]["fields"]["remote_port"], "2222");
    assert_eq!(records[0]["decky"], "web-01");
    assert_eq!(records[1]["event_type"], "command");
    assert_eq!(records[1]["attacker_ip"], "Unknown");
    assert_eq!(records[2]["attacker_ip"], "5.6.7.8");
    for key in ["timestamp", "decky", "service", "event_type", "attacker_ip", "fields", "msg", "raw_line"] {
        assert!(records[0].get(key).is_some(), "record lacks {key}");
    }
    let ok = support::decnet(Path::new("/nonexistent"), &["parse"], Some("<134>1 - d http - request -\n"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// What an attacker typed reaches the operator's terminal inert: ANSI,
/// C1 and bidi characters in a username come out of `decnet parse` as
/// JSON escapes, and the JSON still holds the exact text. BSD syslog lines
/// are parsed too.
#[test]
fn parse_output_shows_control_and_bidi_characters_escaped() {
    use decnet::events::rfc5424::{format_event, must_escape, RelayEvent, Severity};
    let nasty = "admin\u{202e}gnp.exe\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}6n\u{7f}";
    let line = format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::UNIX_EPOCH,
        severity: Severity::Notice,
        host: "web-01".into(),
        app: "ssh".into(),
        msgid: "login_attempt".into(),
        params: vec![("src_ip".into(), "203.0.113.5".into()), ("username".into(), nasty.into())],
        msg: Some(format!("password login attempt for {nasty}")),
    });
    // A foreign sender's raw ESC and bidi, in a BSD line.
    let bsd = format!("<13>Dec  3 11:20:19 vm sshd[1]: Invalid user {nasty} from 203.0.113.6");
    let out = support::decnet(Path::new("/nonexistent"), &["parse"], Some(&format!("{line}\n{bsd}\n")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().all(|l| !l.chars().any(must_escape)), "raw control/bidi on the terminal: {stdout:?}");
    assert!(stdout.contains(r"admin\u202egnp.exe\u001b]0;pwned\u0007\u001b[2J\u009b6n\u007f"), "{stdout}");
    let records: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["fields"]["username"], nasty);
    assert_eq!(records[1]["msg"], format!("Invalid user {nasty} from 203.0.113.6"));
    assert_eq!(records[1]["attacker_ip"], "203.0.113.6");
}

/// The same for `decnet sub`: a payload with attacker text is printed
/// with nothing in it a terminal would act on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_output_shows_control_and_bidi_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _daemon = Daemon::start_at(dir.path(), &socket, &[]);
    let bus = decnet_bus::client::UnixBus::connect("test", &socket).await.unwrap();
    let nasty = "root\u{1b}[2J\u{202e}exe.png\u{85}";
    let sub = Command::new(BIN)
        .args(["sub", "attacker.test", "--count", "1", "--timeout", "20", "--no-reconnect"])
        .env("DECNET_BUS_SOCKET", &socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sub.id();
    // Until the subscriber has one (bounded: 20 s at 100 ms).
    let waiter = std::thread::spawn(move || sub.wait_with_output().unwrap());
    for _ in 0..200 {
        if waiter.is_finished() {
            break;
        }
        bus.publish("attacker.test", "t", serde_json::json!({"username": nasty})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = waiter.join().unwrap();
    assert!(out.status.success(), "sub {pid}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().all(|l| !l.chars().any(decnet::events::rfc5424::must_escape)), "{stdout:?}");
    assert!(stdout.contains(r"root\u001b[2J\u202eexe.png\u0085"), "{stdout}");
    let env: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(env["payload"]["username"], nasty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_worker_publishes_logs_sessions_and_counters_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _daemon = Daemon::start_at(dir.path(), &socket, &[]);
    let bus = decnet_bus::client::UnixBus::connect("test", &socket).await.unwrap();
    let mut logs = bus.subscribe("system.log").await.unwrap();
    let mut ended = bus.subscribe("attacker.session.ended").await.unwrap();
    let mut health = bus.subscribe("system.collector.health").await.unwrap();

    let port = free_tcp_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path().join("ingest.log");
    let mut collector = spawn(
        // The lines below stand for a remote decky host's: its address is trusted.
        &[
            "collector",
            "--listen",
            &listen,
            "--ingest-log",
            log.to_str().unwrap(),
            "--heartbeat-secs",
            "0.3",
            "--trust-network",
            "127.0.0.1",
        ],
        dir.path(),
        &socket,
    );
    let first = recv(&mut health).await;
    assert_eq!(first.payload["worker"], "collector");

    let addr: SocketAddr = listen.parse().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(relay_line("web-01", "http", "request", r#"src_ip="10.0.0.1""#, "GET /").as_bytes(), addr).unwrap();
    let ev = recv(&mut logs).await;
    assert_eq!(ev.event_type, "request");
    assert_eq!(
        ev.payload,
        serde_json::json!({"decky": "web-01", "service": "http", "event_type": "request",
                           "attacker_ip": "10.0.0.1", "timestamp": 1796227800.0})
    );

    let mut tcp = TcpStream::connect(addr).unwrap();
    let sd = r#"src_ip="10.0.0.2" sid="s-1""#;
    for l in [
        relay_line("web-01", "ssh", "command", sd, "CMD whoami"),
        relay_line("web-01", "ssh", "command", sd, "CMD cat /etc/passwd"),
        "not syslog at all".to_string(),
        relay_line(
            "web-01",
            "ssh",
            "session_recorded",
            r#"sid="s-1" service="ssh" src_ip="10.0.0.2" duration_s="3.5" bytes="77""#,
            "",
        ),
    ] {
        tcp.write_all(&octet(&l)).unwrap();
    }
    let ev = recv(&mut ended).await;
    assert_eq!(ev.payload["commands"], serde_json::json!(["whoami", "cat /etc/passwd"]));
    assert_eq!(ev.payload["session_id"], "s-1");
    assert_eq!(ev.payload["attacker_ip"], "10.0.0.2");
    assert_eq!(ev.payload["duration_s"], 3.5);
    for want in ["command", "command", "session_recorded"] {
        assert_eq!(recv(&mut logs).await.event_type, want);
    }
    // The heartbeat carries the counters.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hb = recv(&mut health).await;
        let p = &hb.payload;
        if p["received"] == 5 && p["parsed"] == 4 && p["malformed"] == 1 {
            for key in ["dropped", "per_source_drops", "queue_depth", "stored", "noise", "deduped", "connections"] {
                assert!(p.get(key).is_some(), "heartbeat lacks {key}: {p}");
            }
            assert_eq!(p["stored"], 4);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counters never reached: {p}");
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("not syslog at all"));

    // Stop over the bus, like the API's stop button.
    bus.publish("system.collector.control", "control", serde_json::json!({"action": "stop", "requested_by": "test"}))
        .await
        .unwrap();
    let status = wait_exit(&mut collector, 10.0).expect("collector stopped on request");
    assert!(status.success(), "{status:?}");
    bus.close().await;
}

#[test]
fn collector_refuses_a_port_in_use_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["collector", "--listen", &listen])
        .env("DECNET_HOME", dir.path())
        .env("DECNET_BUS_ENABLED", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains(&listen), "{err}");
}

/// Appends `n` records to `<log>.json` slowly (one batch of 50 every few ms),
/// with a credential in every tenth.
fn write_records(json: &Path, range: std::ops::Range<usize>, pause: Duration) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(json).unwrap();
    let mut batch = String::new();
    for i in range {
        let sd = if i % 10 == 0 {
            format!(r#"src_ip="10.1.{}.{}" username="u{i}" secret_b64="c2VjcmV0""#, i / 250, i % 250)
        } else {
            format!(r#"src_ip="10.1.{}.{}""#, i / 250, i % 250)
        };
        let rec =
            decnet::collector::parse_record(&relay_line("d", "ssh", "login_attempt", &sd, &format!("n={i}")), 0.0)
                .unwrap();
        batch.push_str(&serde_json::to_string(&rec).unwrap());
        batch.push('\n');
        if i % 50 == 49 {
            f.write_all(batch.as_bytes()).unwrap();
            batch.clear();
            std::thread::sleep(pause);
        }
    }
    f.write_all(batch.as_bytes()).unwrap();
}

fn ingest(home: &Path, db: &Path, log: &Path) -> Child {
    Command::new(BIN)
        .args(["ingest", "--db"])
        .arg(db)
        .arg("--ingest-log")
        .arg(log)
        .args(["--poll-ms", "20"])
        .env("DECNET_HOME", home)
        .env("DECNET_BUS_ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingester_killed_and_restarted_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("decnet.db"), dir.path().join("ingest.log"));
    let json = PathBuf::from(format!("{}.json", log.display()));
    const N: usize = 3000;
    let writer = {
        let json = json.clone();
        std::thread::spawn(move || write_records(&json, 0..N, Duration::from_millis(15)))
    };
    // Kill -9 it three times while the file grows, at different points.
    for round in 0..3 {
        let mut child = ingest(dir.path(), &db, &log);
        let want = 200 * (round + 1) as i64;
        let got = wait_db(&db, "SELECT count(*) FROM logs", want, 20.0).await;
        assert!(got >= want, "round {round}: {got} rows");
        send_signal(child.id() as i32, "KILL");
        let _ = child.wait();
    }
    writer.join().unwrap();
    let mut child = ingest(dir.path(), &db, &log);
    assert_eq!(wait_db(&db, "SELECT count(*) FROM logs", N as i64, 30.0).await, N as i64);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db_count(&db, "SELECT count(*) FROM logs").await, N as i64, "nothing twice");
    assert_eq!(db_count(&db, "SELECT count(DISTINCT msg) FROM logs").await, N as i64);
    assert_eq!(db_count(&db, "SELECT count(*) FROM credentials").await, (N / 10) as i64);
    assert_eq!(db_count(&db, "SELECT sum(attempts) FROM credentials").await, (N / 10) as i64);
    assert_eq!(
        db_count(&db, "SELECT count(*) FROM credentials WHERE secret_sha256 = '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'").await,
        (N / 10) as i64,
        "sha256 of the decoded secret"
    );
    // A partial last line is not consumed until its LF arrives.
    let rec =
        decnet::collector::parse_record(&relay_line("d", "ssh", "x", r#"src_ip="9.9.9.9""#, "partial"), 0.0).unwrap();
    let text = serde_json::to_string(&rec).unwrap();
    let (a, b) = text.split_at(text.len() / 2);
    let mut f = std::fs::OpenOptions::new().append(true).open(&json).unwrap();
    f.write_all(a.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(db_count(&db, "SELECT count(*) FROM logs").await, N as i64);
    f.write_all(format!("{b}\n").as_bytes()).unwrap();
    assert_eq!(wait_db(&db, "SELECT count(*) FROM logs", N as i64 + 1, 10.0).await, N as i64 + 1);
    assert_eq!(db_count(&db, "SELECT count(*) FROM logs WHERE msg = 'partial'").await, 1);
    // A line that is not a record is skipped, not stalled on.
    f.write_all(b"{not json\n").unwrap();
    write_records(&json, N + 1..N + 2, Duration::ZERO);
    assert_eq!(wait_db(&db, "SELECT count(*) FROM logs", N as i64 + 2, 10.0).await, N as i64 + 2);
    send_signal(child.id() as i32, "TERM");
    assert!(wait_exit(&mut child, 10.0).is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingesters_on_one_database_store_each_line_once_and_follow_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("decnet.db"), dir.path().join("ingest.log"));
    let json = PathBuf::from(format!("{}.json", log.display()));
    // The schema first, so both start against a migrated file.
    decnet::store::open(&db).await.unwrap().close().await;
    let mut a = ingest(dir.path(), &db, &log);
    let mut b = ingest(dir.path(), &db, &log);
    write_records(&json, 0..1000, Duration::from_millis(5));
    assert_eq!(wait_db(&db, "SELECT count(*) FROM logs", 1000, 30.0).await, 1000);
    // Rotate: the old file is finished, the new one read from its start.
    std::fs::rename(&json, dir.path().join("ingest.log.json.1")).unwrap();
    write_records(&json, 1000..1500, Duration::from_millis(5));
    assert_eq!(wait_db(&db, "SELECT count(*) FROM logs", 1500, 30.0).await, 1500);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db_count(&db, "SELECT count(*) FROM logs").await, 1500);
    assert_eq!(db_count(&db, "SELECT count(DISTINCT msg) FROM logs").await, 1500);
    for c in [&mut a, &mut b] {
        send_signal(c.id() as i32, "TERM");
        assert!(wait_exit(c, 10.0).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decnet_up_hears_a_decky_line_stores_it_and_captures_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let api_port = free_tcp_udp_port();
    let syslog_port = free_tcp_udp_port();
    let mut up = Command::new(BIN)
        .args(["up", "--no-demo", "--listen", &format!("127.0.0.1:{api_port}")])
        .env("DECNET_HOME", home)
        .env("DECNET_COLLECTOR_LISTEN", format!("127.0.0.1:{syslog_port}"))
        .env_remove("DECNET_BUS_SOCKET")
        .env_remove("DECNET_DB")
        .env_remove("DECNET_INGEST_LOG_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = home.join("bus.sock");
    assert!(wait_until(30.0, || std::os::unix::net::UnixStream::connect(&socket).is_ok()), "bus up");
    let bus = decnet_bus::client::UnixBus::connect("test", &socket).await.unwrap();
    let mut logs = bus.subscribe("system.log").await.unwrap();
    let mut creds = bus.subscribe("credential.captured").await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{syslog_port}").parse().unwrap();
    let line = relay_line(
        "web-01",
        "ssh",
        "login_attempt",
        r#"src_ip="127.0.0.9" src_port="50000" username="root" secret_b64="aHVudGVyMg==""#,
        "",
    );
    // The collector child may still be starting: retry the connect. The
    // deckies' path: the collector's UNIX socket in $DECNET_HOME, 0660.
    let unix_path = home.join("collector.sock");
    let mut unix = None;
    assert!(wait_until(20.0, || {
        unix = std::os::unix::net::UnixStream::connect(&unix_path).ok();
        unix.is_some()
    }));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&unix_path).unwrap().permissions().mode() & 0o777, 0o660);
    unix.unwrap().write_all(&octet(&line)).unwrap();
    // The same kind of line forged by a process on the host over loopback
    // TCP is stored, but flagged, and captures no credential.
    let forged = relay_line(
        "web-01",
        "ssh",
        "login_attempt",
        r#"src_ip="127.0.0.8" src_port="50000" username="forger" secret_b64="aHVudGVyMg==""#,
        "",
    );
    let mut tcp = None;
    assert!(wait_until(20.0, || {
        tcp = TcpStream::connect(addr).ok();
        tcp.is_some()
    }));
    tcp.unwrap().write_all(&octet(&forged)).unwrap();
    // The socket's and the TCP listener's lines are read concurrently:
    // either may be published first. The trusted one must be among them.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let ev = recv(&mut logs).await;
        assert_eq!(ev.payload["event_type"], "login_attempt");
        seen.push(ev.payload["attacker_ip"].as_str().unwrap_or_default().to_string());
        if seen.iter().any(|ip| ip == "127.0.0.9") {
            break;
        }
    }
    assert!(seen.iter().any(|ip| ip == "127.0.0.9"), "the socket's line was published: {seen:?}");
    let db = home.join("decnet.db");
    assert_eq!(
        wait_db(
            &db,
            "SELECT count(*) FROM logs WHERE event_type = 'login_attempt' AND decky = 'web-01' AND attacker_ip = '127.0.0.9'",
            1,
            20.0
        )
        .await,
        1
    );
    let cred = tokio::time::timeout(Duration::from_secs(20), creds.recv()).await.unwrap().unwrap();
    assert_eq!(
        cred.payload,
        serde_json::json!({"attacker_ip": "127.0.0.9", "decky": "web-01", "service": "ssh", "username": "root",
                           "secret_sha256": "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"})
    );
    assert_eq!(db_count(&db, "SELECT count(*) FROM credentials WHERE username = 'root'").await, 1);
    let flagged = "SELECT count(*) FROM logs WHERE attacker_ip = '127.0.0.8' \
                   AND json_extract(fields, '$.ingest_trusted') = 0 AND json_extract(fields, '$.ingest_transport') = 'tcp'";
    assert_eq!(wait_db(&db, flagged, 1, 20.0).await, 1, "the forged line is stored, flagged");
    assert_eq!(db_count(&db, "SELECT count(*) FROM credentials WHERE username = 'forger'").await, 0);
    bus.close().await;
    send_signal(up.id() as i32, "TERM");
    assert!(wait_exit(&mut up, 30.0).is_some(), "decnet up stopped");
}
