//! Issue 25's budgets and trust boundary end to end: native deckies (the
//! `native` driver, real listeners on loopback addresses 127.1.25x.1) ship
//! over the collector's real UNIX socket to an in-process collector that
//! writes real files; hostile clients are raw TCP/UDP sockets bound to
//! distinct 127.0.0.x addresses to act as distinct sources.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet::collector::{Collector, CollectorConfig, Networks, Record, Stats};
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use support::relay_line;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const OFFSET: u16 = 10_000;

struct Running {
    collector: Option<Collector>,
    stop: CancellationToken,
    dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: SocketAddr,
    udp: SocketAddr,
    stats: Arc<Stats>,
}

impl Running {
    async fn start(tune: impl FnOnce(&mut CollectorConfig)) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("collector.sock");
        let mut config = CollectorConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("ingest.log"));
        config.unix_socket = Some(socket.clone());
        tune(&mut config);
        let stop = CancellationToken::new();
        let collector = Collector::start(config, None, stop.clone()).await.unwrap();
        let (tcp, udp) = (collector.tcp_addr.unwrap(), collector.udp_addr.unwrap());
        let stats = collector.stats.clone();
        Running { collector: Some(collector), stop, dir, socket, tcp, udp, stats }
    }

    fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(self.dir.path().join("ingest.log.json")).unwrap_or_default();
        // The collector may be mid-write: only whole lines (newline-ended) count.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Wait (at most 10 s) until `pred` holds for the records; them.
    async fn wait(&self, what: &str, pred: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.records();
            if pred(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "{what}: never; records: {:#?}", r);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A native driver whose deckies ship to this collector's UNIX socket.
    fn driver(&self, decky: &str, ip: &str, tune: impl FnOnce(&mut NativeOptions)) -> NativeDriver {
        let mut o = NativeOptions::new(self.socket.clone(), b"budget tests seed".to_vec());
        o.port_offset = OFFSET;
        o.addresses.insert(decky.to_string(), ip.parse().unwrap());
        tune(&mut o);
        NativeDriver::live(o, None)
    }

    async fn stop(mut self) {
        self.stop.cancel();
        self.collector.take().unwrap().wait().await;
    }
}

async fn deploy(driver: &NativeDriver, decky: &str, services: &[&str]) {
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    driver.apply(&Change { project: "fleet", decky, services: &services, fleet: &[] }).await.unwrap();
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port + OFFSET)
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Read until `needle` appears (at most 5 s).
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("no {needle:?} (got {:?}): {other:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when the server closes the connection (EOF or reset) within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn camera_first_try() -> serde_json::Value {
    serde_json::json!({"release": "busybox-camera", "auth": {"accept_after": [1, 1], "credentials": []}})
}

fn of<'a>(records: &'a [Record], decky: &str, event: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.decky == decky && r.event_type == event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_log_budget_writes_one_exhausted_line_and_still_closes() {
    let c = Running::start(|_| {}).await;
    let driver = c.driver("chatty", "127.1.250.1", |o| {
        o.limits.max_log_lines = 12;
        o.limits.idle = Duration::from_secs(5);
        // A BusyBox camera's telnetd shows its prompt at once (netkit's waits
        // for option answers this raw client never sends); root gets in first.
        o.personas.insert("chatty".into(), camera_first_try());
    });
    deploy(&driver, "chatty", &["telnet"]).await;
    let exhausted_before = decnet::decky::event::LOG_BUDGET_EXHAUSTED.load(Ordering::Relaxed);
    let mut s = TcpStream::connect(addr("127.1.250.1", 23)).await.unwrap();
    read_until(&mut s, "login: ").await;
    s.write_all(b"root\r\n").await.unwrap();
    read_until(&mut s, "Password: ").await;
    s.write_all(b"toor\r\n").await.unwrap();
    read_until(&mut s, "# ").await;
    // 200 commands: far more lines than the budget allows.
    for i in 0..200 {
        s.write_all(format!("echo {i}\r\n").as_bytes()).await.unwrap();
        read_until(&mut s, "# ").await;
    }
    s.write_all(b"exit\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await);

    let records = c.wait("session_recorded", |r| !of(r, "chatty", "session_recorded").is_empty()).await;
    let sid = of(&records, "chatty", "session_recorded")[0].field("sid").unwrap().to_string();
    let session: Vec<&Record> = records.iter().filter(|r| r.field("sid") == Some(sid.as_str())).collect();
    let exhausted: Vec<_> = session.iter().filter(|r| r.event_type == "log_budget_exhausted").collect();
    assert_eq!(exhausted.len(), 1, "exactly one log_budget_exhausted line");
    // Budgeted lines, then the note, then the two closing lines.
    let budgeted = session
        .iter()
        .filter(|r| !["log_budget_exhausted", "disconnect", "session_recorded"].contains(&r.event_type.as_str()))
        .count();
    assert!(budgeted <= 12, "{budgeted} lines within a 12-line budget");
    assert_eq!(of(&records, "chatty", "disconnect").len(), 1, "the disconnect line is always written");
    let recorded = of(&records, "chatty", "session_recorded")[0];
    let suppressed: u64 = recorded.field("log_lines_suppressed").unwrap().parse().unwrap();
    assert!(suppressed >= 190, "200 commands, {suppressed} suppressed");
    assert!(decnet::decky::event::LOG_BUDGET_EXHAUSTED.load(Ordering::Relaxed) > exhausted_before);
    // Over the UNIX socket: tagged and trusted.
    assert!(session.iter().all(|r| r.fields["ingest_transport"] == "unix" && r.fields["ingest_trusted"] == true));
    assert!(session.iter().all(|r| r.fields["ingest_source"] == "local"));
    driver.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_budget_counts_bytes_too() {
    let c = Running::start(|_| {}).await;
    let driver = c.driver("wordy", "127.1.251.1", |o| {
        o.limits.max_log_bytes = 8 * 1024;
        o.limits.idle = Duration::from_secs(5);
        // A BusyBox camera's telnetd shows its prompt at once (netkit's waits
        // for option answers this raw client never sends); root gets in first.
        o.personas.insert("wordy".into(), camera_first_try());
    });
    deploy(&driver, "wordy", &["telnet"]).await;
    let mut s = TcpStream::connect(addr("127.1.251.1", 23)).await.unwrap();
    read_until(&mut s, "login: ").await;
    s.write_all(b"root\r\n").await.unwrap();
    read_until(&mut s, "Password: ").await;
    s.write_all(b"toor\r\n").await.unwrap();
    read_until(&mut s, "# ").await;
    // 1,000-character commands: a few fit in 8 KiB of log, most do not.
    let long = "A".repeat(1000);
    for _ in 0..40 {
        s.write_all(format!("echo {long}\r\n").as_bytes()).await.unwrap();
        read_until(&mut s, "# ").await;
    }
    s.write_all(b"exit\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await);
    let records = c.wait("session_recorded", |r| !of(r, "wordy", "session_recorded").is_empty()).await;
    let budgeted: usize = records
        .iter()
        .filter(|r| r.decky == "wordy")
        .filter(|r| !["log_budget_exhausted", "disconnect", "session_recorded"].contains(&r.event_type.as_str()))
        .map(|r| r.raw_line.len() + 1)
        .sum();
    assert!(budgeted <= 8 * 1024, "{budgeted} bytes of log within an 8 KiB budget");
    assert_eq!(of(&records, "wordy", "log_budget_exhausted").len(), 1);
    driver.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_session_slot_and_refusals_are_logged_rate_limited() {
    let c = Running::start(|_| {}).await;
    let driver = c.driver("slots", "127.1.252.1", |o| {
        o.limits.max_sessions = 4;
        o.limits.max_sessions_per_source = 2;
        o.limits.idle = Duration::from_secs(30);
    });
    deploy(&driver, "slots", &["smtp"]).await;
    let smtp = addr("127.1.252.1", 25);
    // One address holds its two slots (a slow client that never speaks).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.21", smtp).await;
        read_until(&mut s, "220").await;
        held.push(s);
    }
    // Its third connection is refused, and logged.
    let mut third = connect_from("127.0.0.21", smtp).await;
    assert!(closed_by_server(&mut third).await, "a third session from one address is refused");
    let records = c.wait("connection_refused", |r| !of(r, "slots", "connection_refused").is_empty()).await;
    let refused = of(&records, "slots", "connection_refused")[0];
    assert_eq!(refused.field("reason"), Some("source limit"));
    assert_eq!(refused.attacker_ip, "127.0.0.21");
    // Other addresses are still served: the decky is not blinded.
    for other in ["127.0.0.22", "127.0.0.23"] {
        let mut s = connect_from(other, smtp).await;
        read_until(&mut s, "220").await;
        held.push(s);
    }
    // Ten more refusals within the window: no new line for them.
    let unlogged_before = decnet::decky::listener::REFUSED_UNLOGGED.load(Ordering::Relaxed);
    for _ in 0..10 {
        let mut s = connect_from("127.0.0.21", smtp).await;
        assert!(closed_by_server(&mut s).await);
    }
    assert!(decnet::decky::listener::REFUSED_UNLOGGED.load(Ordering::Relaxed) >= unlogged_before + 10);
    // Now the decky is full (4 of 4): a new address is refused as busy.
    let mut fifth = connect_from("127.0.0.24", smtp).await;
    assert!(closed_by_server(&mut fifth).await);
    let records = c
        .wait("busy refusal", |r| of(r, "slots", "connection_refused").iter().any(|x| x.attacker_ip == "127.0.0.24"))
        .await;
    let busy = of(&records, "slots", "connection_refused").into_iter().find(|x| x.attacker_ip == "127.0.0.24").unwrap();
    assert_eq!(busy.field("reason"), Some("decky busy"));
    let from_21 = of(&records, "slots", "connection_refused").iter().filter(|x| x.attacker_ip == "127.0.0.21").count();
    assert_eq!(from_21, 1, "one line per address per window");
    // Closing the held sessions gives the slots back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from("127.0.0.21", smtp).await;
        let mut buf = [0u8; 3];
        if matches!(tokio::time::timeout(Duration::from_secs(2), again.read_exact(&mut buf)).await, Ok(Ok(_))) {
            assert_eq!(&buf, b"220");
            break;
        }
        assert!(Instant::now() < deadline, "the address never got a slot back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver.shutdown().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_lines_are_tagged_and_untrusted_unless_their_network_is_trusted() {
    let c = Running::start(|_| {}).await;
    let forged = relay_line("web-01", "ssh", "login_attempt", r#"src_ip="6.6.6.6" ingest_trusted="true""#, "forged");
    let mut tcp = connect_from("127.0.0.31", c.tcp).await;
    tcp.write_all(format!("{} {forged}", forged.len()).as_bytes()).await.unwrap();
    let udp = UdpSocket::bind("127.0.0.32:0").await.unwrap();
    udp.send_to(forged.as_bytes(), c.udp).await.unwrap();
    let mut unix = tokio::net::UnixStream::connect(&c.socket).await.unwrap();
    let honest = relay_line("web-01", "ssh", "login_attempt", r#"src_ip="7.7.7.7""#, "honest");
    unix.write_all(format!("{} {honest}", honest.len()).as_bytes()).await.unwrap();
    let records = c.wait("three records", |r| r.len() >= 3).await;
    let by = |transport: &str| records.iter().find(|r| r.fields["ingest_transport"] == transport).unwrap();
    assert_eq!(by("tcp").fields["ingest_source"], "127.0.0.31");
    assert_eq!(by("tcp").fields["ingest_trusted"], false, "the sender's own ingest_trusted is overwritten");
    assert_eq!(by("udp").fields["ingest_source"], "127.0.0.32");
    assert_eq!(by("udp").fields["ingest_trusted"], false);
    assert_eq!(by("unix").fields["ingest_trusted"], true);
    assert_eq!(Stats::get(&c.stats.untrusted), 2);
    // A forged mutation line from the host: in the raw log only behind the
    // untrusted prefix, so the correlator counts no mutation from it.
    let mutation = decnet::events::rfc5424::format_mutation(&decnet::events::MutationEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        decky: "web-01".into(),
        old_services: vec!["ssh".into()],
        new_services: vec!["telnet".into()],
        trigger: decnet::events::Trigger::Operator,
        actor: None,
    });
    tcp.write_all(format!("{} {mutation}", mutation.len()).as_bytes()).await.unwrap();
    let raw_path = c.dir.path().join("ingest.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&raw_path).unwrap().contains("decky_mutated") {
        assert!(Instant::now() < deadline, "the mutation line never reached the raw log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let raw = std::fs::read_to_string(&raw_path).unwrap();
    let forged_raw = raw.lines().find(|l| l.contains("decky_mutated")).unwrap();
    assert!(forged_raw.starts_with("[untrusted tcp 127.0.0.31] <"), "{forged_raw}");
    assert!(raw.lines().any(|l| l.starts_with("[untrusted udp 127.0.0.32] <")));
    assert!(raw.lines().any(|l| l.starts_with("<") && l.ends_with("honest")), "unix lines are written as received");
    let report = decnet::correlate::fold_lines(std::io::Cursor::new(raw.as_bytes())).unwrap();
    assert!(report.chains.is_empty(), "a forged mutation was counted: {:?}", report.chains);
    c.stop().await;

    // A trusted network (a remote decky host) is trusted, others still not.
    let c = Running::start(|cfg| cfg.trust_networks = Networks(vec!["127.0.0.33/32".parse().unwrap()])).await;
    for (source, decky) in [("127.0.0.33", "trusted"), ("127.0.0.34", "other")] {
        let udp = UdpSocket::bind(format!("{source}:0")).await.unwrap();
        udp.send_to(relay_line(decky, "ssh", "x", r#"src_ip="1.1.1.1""#, "").as_bytes(), c.udp).await.unwrap();
    }
    let records = c.wait("two records", |r| r.len() >= 2).await;
    for r in &records {
        assert_eq!(r.fields["ingest_trusted"], r.decky == "trusted", "{r:?}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_outside_allow_are_refused_and_counted() {
    let c = Running::start(|cfg| cfg.allow = Networks(vec!["127.0.0.41/32".parse().unwrap()])).await;
    // TCP from elsewhere: closed before a byte is read.
    let mut outsider = connect_from("127.0.0.42", c.tcp).await;
    let line = relay_line("x", "ssh", "x", r#"src_ip="1.1.1.1""#, "outsider");
    let _ = outsider.write_all(format!("{} {line}", line.len()).as_bytes()).await;
    assert!(closed_by_server(&mut outsider).await);
    let udp = UdpSocket::bind("127.0.0.42:0").await.unwrap();
    udp.send_to(line.as_bytes(), c.udp).await.unwrap();
    // The allowed sender gets through, over both.
    let inside = relay_line("x", "ssh", "x", r#"src_ip="1.1.1.1""#, "insider");
    let mut tcp = connect_from("127.0.0.41", c.tcp).await;
    tcp.write_all(format!("{} {inside}", inside.len()).as_bytes()).await.unwrap();
    let u = UdpSocket::bind("127.0.0.41:0").await.unwrap();
    u.send_to(inside.as_bytes(), c.udp).await.unwrap();
    let records = c.wait("two insider records", |r| r.iter().filter(|x| x.msg == "insider").count() >= 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(records.iter().all(|r| r.msg != "outsider"), "{records:?}");
    assert!(!std::fs::read_to_string(c.dir.path().join("ingest.log")).unwrap().contains("outsider"));
    assert_eq!(Stats::get(&c.stats.not_allowed), 2);
    assert_eq!(c.stats.snapshot()["not_allowed"], 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_log_rotates_within_its_disk_budget() {
    let c = Running::start(|cfg| {
        cfg.raw_log_max_bytes = 4096;
        cfg.raw_log_keep = 2;
    })
    .await;
    let path = c.dir.path().join("ingest.log");
    let rotated = |n: usize| decnet::collector::raw_budget::rotated_path(&path, n);
    let mut unix = tokio::net::UnixStream::connect(&c.socket).await.unwrap();
    // 300 lines of ~150 bytes (45 KB) through a 3 × 4 KiB budget, in
    // small batches (each waits until stored) so every batch is < 4 KiB.
    for batch in 0..30 {
        for i in 0..10 {
            let line = relay_line("disk", "http", "request", &format!(r#"src_ip="1.1.1.1" n="{batch}-{i}""#), "flood");
            unix.write_all(format!("{} {line}", line.len()).as_bytes()).await.unwrap();
        }
        c.wait("batch", |r| r.len() >= (batch + 1) * 10).await;
    }
    assert!(Stats::get(&c.stats.raw_rotations) >= 5, "rotations: {}", Stats::get(&c.stats.raw_rotations));
    for p in [path.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", p.display());
    }
    assert!(!rotated(3).exists(), "only two rotated files are kept");
    assert!(std::fs::read_to_string(&path).unwrap().contains(r#"n="29-9""#), "the newest line is in the live file");
    // The JSON records are untouched by the raw log's budget.
    assert_eq!(c.records().len(), 300);
    c.stop().await;
}
