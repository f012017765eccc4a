//! Issue 25's log-line attacks, end to end through the real collector
//! (in-process library, real TCP/UDP on loopback, real files), the real
//! ingester and a real SQLite file: a hidden session (a 70,000-character
//! username), BSD syslog from util-linux `logger`, and lines longer than
//! the collector's limit. The forged-record attack through the log
//! shipper is in `logship.rs`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet::collector::{Collector, CollectorConfig, Record, Stats};
use decnet::events::rfc5424::{format_event, RelayEvent, Severity, MAX_NAME_CHARS};
use decnet::ingest::{IngestBus, IngestConfig, IngestStats};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

struct Running {
    collector: Option<Collector>,
    stop: CancellationToken,
    dir: tempfile::TempDir,
    tcp: SocketAddr,
    udp: SocketAddr,
    stats: Arc<Stats>,
}

impl Running {
    async fn start(tune: impl FnOnce(&mut CollectorConfig)) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CollectorConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("ingest.log"));
        config.noise_apps.clear();
        tune(&mut config);
        let stop = CancellationToken::new();
        let collector = Collector::start(config, None, stop.clone()).await.unwrap();
        let (tcp, udp) = (collector.tcp_addr.unwrap(), collector.udp_addr.unwrap());
        let stats = collector.stats.clone();
        Running { collector: Some(collector), stop, dir, tcp, udp, stats }
    }

    fn json_path(&self) -> PathBuf {
        self.dir.path().join("ingest.log.json")
    }

    fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(self.json_path()).unwrap_or_default();
        // The collector may be mid-write: only whole lines (newline-ended) count.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    async fn wait_records(&self, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.records();
            if r.len() >= n || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        self.collector.take().unwrap().wait().await;
    }
}

/// What a decky's SSH session emits (`decnet_decky::event::Session`): the
/// session's fields first, the username repeated on every later line.
fn session_line(msgid: &str, username: &str, extra: Vec<(&str, String)>, msg: Option<String>) -> String {
    let mut params = vec![
        ("src_ip".to_string(), "203.0.113.5".to_string()),
        ("src_port".to_string(), "40000".to_string()),
        ("sid".to_string(), "s-1".to_string()),
    ];
    params.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    if msgid != "login_attempt" {
        params.push(("username".into(), username.to_string()));
    }
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Notice,
        host: "web-01".into(),
        app: "ssh".into(),
        msgid: msgid.into(),
        params,
        msg,
    })
}

async fn ingest_into(db: &Path, json: PathBuf) -> (sqlx::SqlitePool, CancellationToken) {
    let pool = decnet::store::open(db).await.unwrap();
    let stop = CancellationToken::new();
    let config = IngestConfig { poll: Duration::from_millis(20), ..IngestConfig::new(json) };
    tokio::spawn(decnet::ingest::run(
        pool.clone(),
        config,
        IngestBus::None,
        Arc::new(IngestStats::default()),
        stop.clone(),
    ));
    (pool, stop)
}

/// The issue's hidden session: before, every line carried the 70,000
/// characters, each was over 64 KiB and dropped, and 0 credentials were
/// stored. Now the login, three commands and the session summary are all
/// stored, the credential with the username's first 256 characters, and
/// the rows say what was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_70000_character_username_cannot_hide_a_session() {
    use base64::Engine as _;
    // The lines play a decky's own, sent over loopback TCP: loopback is
    // trusted here so the credential is stored as a decky's would be.
    let c = Running::start(|cfg| cfg.trust_networks = decnet::collector::access::Networks::loopback()).await;
    let username = "A".repeat(70_000);
    let secret = base64::engine::general_purpose::STANDARD.encode(b"hunter2");
    let mut lines = vec![session_line(
        "login_attempt",
        &username,
        vec![("username", username.clone()), ("secret_b64", secret.clone()), ("auth_method", "password".into())],
        Some(format!("password login attempt for {username}")),
    )];
    for cmd in ["id", "uname -a", "cat /etc/passwd"] {
        lines.push(session_line("command", &username, vec![("command", cmd.into())], Some(format!("CMD {cmd}"))));
    }
    lines.push(session_line(
        "session_recorded",
        &username,
        vec![("duration_s", "3".into()), ("commands", "3".into())],
        None,
    ));
    let mut tcp = tokio::net::TcpStream::connect(c.tcp).await.unwrap();
    for l in &lines {
        assert!(l.len() < 64 * 1024, "a line the collector would have cut: {}", l.len());
        tcp.write_all(format!("{} {l}", l.len()).as_bytes()).await.unwrap();
    }
    let records = c.wait_records(5).await;
    assert_eq!(records.len(), 5, "login, 3 commands, summary");
    assert_eq!(Stats::get(&c.stats.oversize), 0);

    let db = c.dir.path().join("decnet.db");
    let (pool, stop) = ingest_into(&db, c.json_path()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let creds: Vec<(String, String, String)> = loop {
        let rows =
            sqlx::query_as("SELECT attacker_ip, username, secret_b64 FROM credentials").fetch_all(&pool).await.unwrap();
        if !rows.is_empty() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(creds, vec![("203.0.113.5".to_string(), "A".repeat(MAX_NAME_CHARS), secret)]);
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT event_type, fields FROM logs ORDER BY id").fetch_all(&pool).await.unwrap();
    let kinds: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["login_attempt", "command", "command", "command", "session_recorded"]);
    for (kind, fields) in &rows {
        let fields: serde_json::Value = serde_json::from_str(fields).unwrap();
        let cut = fields["truncated"].as_str().unwrap_or_default();
        assert!(cut.split(',').any(|f| f == "username"), "{kind} row is marked: {cut:?}");
    }
    stop.cancel();
    c.stop().await;
}

/// util-linux `logger`, the real client: BSD syslog over UDP and TCP,
/// and a syslog line carried inside a BSD one (what rsyslog relays from
/// Docker's syslog/journald drivers). rsyslog's double space is sent raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bsd_syslog_from_logger_and_relayed_lines_are_records() {
    let c = Running::start(|_| {}).await;
    let logger = |transport: &str, port: u16, tag: &str, msg: &str| {
        let out = std::process::Command::new("logger")
            .args(["--rfc3164", "-n", "127.0.0.1", "-P", &port.to_string(), transport, "-t", tag, "--id=4242", msg])
            .output()
            .expect("util-linux logger (apt-get install bsdutils)");
        assert!(out.status.success(), "logger: {}", String::from_utf8_lossy(&out.stderr));
    };
    logger("-d", c.udp.port(), "sshd", "Failed password for root from 198.51.100.1 port 2222 ssh2");
    c.wait_records(1).await;
    logger("-T", c.tcp.port(), "ftpd", "login from 198.51.100.2 refused");
    c.wait_records(2).await;
    let inner = r#"<134>1 2026-12-03T10:00:00.000000Z web-01 ssh - login_attempt [relay@55555 src_ip="198.51.100.3" username="root"] relayed"#;
    logger("-d", c.udp.port(), "docker", inner);
    c.wait_records(3).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(b"<30>Dec  3 11:20:00 rsyshost telnetd:  connect from 198.51.100.4", c.udp).await.unwrap();
    let records = c.wait_records(4).await;
    let got: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| (r.service.as_str(), r.event_type.as_str(), r.attacker_ip.as_str(), r.msg.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("sshd", "log", "198.51.100.1", "Failed password for root from 198.51.100.1 port 2222 ssh2"),
            ("ftpd", "log", "198.51.100.2", "login from 198.51.100.2 refused"),
            ("ssh", "login_attempt", "198.51.100.3", "relayed"),
            ("telnetd", "log", "198.51.100.4", "connect from 198.51.100.4"),
        ]
    );
    assert_eq!(records[0].field("pid"), Some("4242"));
    assert_eq!((records[2].decky.as_str(), records[2].field("username")), ("web-01", Some("root")));
    assert_eq!(records[3].decky, "rsyshost");
    assert_eq!(Stats::get(&c.stats.malformed), 0);
    c.stop().await;
}

/// A line over the limit from a sender that is not decnet's formatter:
/// cut, kept, parsed as far as it goes and marked, in both TCP framings
/// and over UDP; ANSI escapes in it reach the raw log escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_line_is_cut_kept_and_marked() {
    let c = Running::start(|cfg| cfg.max_line = 1000).await;
    let long = format!(
        r#"<134>1 2026-12-03T10:00:00Z web-01 http - request [relay@55555 src_ip="198.51.100.9" path="/{}"] tail"#,
        "\u{1b}[2J".repeat(400)
    );
    let mut tcp = tokio::net::TcpStream::connect(c.tcp).await.unwrap();
    tcp.write_all(format!("{} {long}", long.len()).as_bytes()).await.unwrap();
    tcp.write_all(format!("{long}\n").as_bytes()).await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(long.as_bytes(), c.udp).await.unwrap();
    let records = c.wait_records(3).await;
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r.attacker_ip, "198.51.100.9");
        assert_eq!(r.field("truncated"), Some("line"));
        let path = r.field("path").unwrap();
        assert!(path.starts_with("/\u{1b}[2J") && path.len() < 1000, "{path:?}");
    }
    assert_eq!(Stats::get(&c.stats.oversize), 3);
    assert_eq!(Stats::get(&c.stats.dropped), 0);
    let raw = std::fs::read_to_string(c.dir.path().join("ingest.log")).unwrap();
    assert!(!raw.contains('\u{1b}') && raw.contains(r"\x1b[2J"), "{raw}");
    assert_eq!(raw.lines().count(), 3);
    c.stop().await;
}

/// rsyslog, the real relay: `logger` sends BSD lines to an rsyslogd this
/// test runs, which forwards each one to the collector in its three
/// forwarding formats (traditional BSD, BSD with an RFC 3339 time, and
/// RFC 5424 with its double space before the message). Every copy is the
/// same record; a decky's RFC 5424 line relayed inside a BSD one is the
/// decky's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwarding_formats_are_read_alike() {
    let c = Running::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let rsyslog_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut conf = format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{rsyslog_port}\")\n",
        dir.path().display()
    );
    for template in ["RSYSLOG_TraditionalForwardFormat", "RSYSLOG_ForwardFormat", "RSYSLOG_SyslogProtocol23Format"] {
        conf.push_str(&format!(
            "*.* action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{}\" protocol=\"udp\" template=\"{template}\")\n",
            c.udp.port()
        ));
    }
    std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
    // /usr/sbin is not on every user's PATH.
    let bin = if Path::new("/usr/sbin/rsyslogd").exists() { "/usr/sbin/rsyslogd" } else { "rsyslogd" };
    let mut rsyslogd = std::process::Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(dir.path().join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.path().join("rsyslog.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rsyslogd (apt-get install rsyslog)");
    let logger = |tag: &str, msg: &str| {
        let out = std::process::Command::new("logger")
            .args(["--rfc3164", "-n", "127.0.0.1", "-P", &rsyslog_port.to_string(), "-d", "-t", tag, "--id=7", msg])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    // rsyslogd takes a moment to listen; UDP says nothing, so resend until
    // the first copy arrives (bounded: 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.records().is_empty() {
        assert!(Instant::now() < deadline, "rsyslogd forwarded nothing");
        logger("sshd", "Failed password for root from 198.51.100.1 port 22 ssh2");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = c.wait_records(3).await.len();
    let inner = r#"<134>1 2026-12-03T10:00:00.000000Z web-01 ssh - login_attempt [relay@55555 src_ip="198.51.100.3" username="root"] relayed"#;
    logger("web-01", inner);
    let records = c.wait_records(before + 3).await;
    let _ = rsyslogd.kill();
    let _ = rsyslogd.wait();
    assert_eq!(records.len(), before + 3, "{records:?}");
    assert_eq!(before % 3, 0, "every sshd line arrived in all three formats: {records:?}");
    for r in &records[..before] {
        assert_eq!(
            (r.service.as_str(), r.attacker_ip.as_str(), r.msg.as_str()),
            ("sshd", "198.51.100.1", "Failed password for root from 198.51.100.1 port 22 ssh2"),
            "{}",
            r.raw_line
        );
    }
    for r in &records[before..] {
        assert_eq!(
            (r.decky.as_str(), r.service.as_str(), r.event_type.as_str(), r.attacker_ip.as_str(), r.msg.as_str()),
            ("web-01", "ssh", "login_attempt", "198.51.100.3", "relayed"),
            "{}",
            r.raw_line
        );
    }
    assert_eq!(Stats::get(&c.stats.malformed), 0);
    c.stop().await;
}
