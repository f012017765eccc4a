//! The collector over real loopback sockets (in-process library, real UDP
//! and TCP, real files): framing, filtering, and the bad-input guarantees.
//! Client sockets bind distinct 127.0.0.x addresses to act as distinct sources.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet::collector::{Collector, CollectorConfig, Record, Stats};
use support::relay_line;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
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
        tune(&mut config);
        let stop = CancellationToken::new();
        let collector = Collector::start(config, None, stop.clone()).await.unwrap();
        let (tcp, udp) = (collector.tcp_addr.unwrap(), collector.udp_addr.unwrap());
        let stats = collector.stats.clone();
        Running { collector: Some(collector), stop, dir, tcp, udp, stats }
    }

    fn raw_path(&self) -> PathBuf {
        self.dir.path().join("ingest.log")
    }

    fn records(&self) -> Vec<Record> {
        read_records(&self.dir.path().join("ingest.log.json"))
    }

    fn raw(&self) -> String {
        std::fs::read_to_string(self.raw_path()).unwrap_or_default()
    }

    async fn wait_records(&self, n: usize, secs: f64) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
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

fn read_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The collector may be mid-write: only whole lines (newline-ended) count.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

fn octet(line: &str) -> Vec<u8> {
    format!("{} {line}", line.len()).into_bytes()
}

async fn wait_stat(stat: &std::sync::atomic::AtomicU64, at_least: u64, secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Stats::get(stat) < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Stats::get(stat)
}

#[tokio::test]
async fn udp_and_both_tcp_framings_reach_both_files() {
    let c = Running::start(|_| {}).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(relay_line("d1", "http", "request", r#"src_ip="1.1.1.1""#, "GET /").as_bytes(), c.udp).await.unwrap();

    let mut tcp = connect_from("127.0.0.1", c.tcp).await;
    let mut bytes = octet(&relay_line("d2", "ssh", "login_attempt", r#"src_ip="2.2.2.2:5000""#, "octet"));
    bytes.extend(relay_line("d3", "telnet", "connect", r#"src_ip="3.3.3.3""#, "lf-framed\n").as_bytes());
    bytes.extend(octet(&relay_line("d4", "ftp", "command", r#"src_ip="4.4.4.4""#, "multi\nline")));
    tcp.write_all(&bytes).await.unwrap();

    let records = c.wait_records(4, 10.0).await;
    assert_eq!(records.len(), 4, "{records:?}");
    let by_decky = |d: &str| records.iter().find(|r| r.decky == d).unwrap_or_else(|| panic!("no {d}: {records:?}"));
    assert_eq!(by_decky("d1").attacker_ip, "1.1.1.1");
    assert_eq!(by_decky("d2").field("remote_port"), Some("5000"));
    assert_eq!(by_decky("d3").event_type, "connect");
    // CR/LF inside an octet-counted frame: still one line in both files,
    // escaped in the raw log, the exact text in the record.
    assert_eq!(by_decky("d4").msg, "multi\nline");
    assert_eq!(c.raw().lines().count(), 4);
    assert!(c.raw().contains(r"multi\x0aline"), "{}", c.raw());
    c.stop().await;
}

#[tokio::test]
async fn malformed_noise_and_duplicates_stay_in_the_raw_log_only() {
    let c = Running::start(|_| {}).await;
    let mut tcp = connect_from("127.0.0.1", c.tcp).await;
    let mut lines = vec![
        "this is not syslog".to_string(),
        "<13>Oct 11 22:14 host app: neither RFC 5424 nor RFC 3164".to_string(),
        relay_line("host", "sshd", "-", "x=\"1\"", "Accepted password for bob from 9.9.9.9"),
        relay_line("host", "kernel", "-", "x=\"1\"", "eth0 up"),
    ];
    for _ in 0..5 {
        lines.push(relay_line("d1", "ssh", "connect", r#"src_ip="5.5.5.5""#, "again"));
    }
    lines.push(relay_line("d1", "ssh", "login_attempt", r#"src_ip="5.5.5.5""#, "kept"));
    lines.push(relay_line("d1", "ssh", "login_attempt", r#"src_ip="5.5.5.5""#, "kept too"));
    for l in &lines {
        tcp.write_all(&octet(l)).await.unwrap();
    }
    assert_eq!(wait_stat(&c.stats.received, lines.len() as u64, 10.0).await, lines.len() as u64);
    let records = c.wait_records(3, 10.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records_after = c.records();
    assert_eq!(records_after.len(), 3, "one connect + two login attempts: {records:?}");
    assert_eq!(records_after.iter().filter(|r| r.event_type == "connect").count(), 1);
    let raw = c.raw();
    for l in &lines {
        assert!(raw.contains(l.as_str()), "raw log lacks {l}");
    }
    assert_eq!(Stats::get(&c.stats.malformed), 2);
    assert_eq!(Stats::get(&c.stats.noise), 2);
    assert_eq!(Stats::get(&c.stats.deduped), 4);
    assert_eq!(Stats::get(&c.stats.stored), 3);
    c.stop().await;
}

#[tokio::test]
async fn a_64k_line_is_kept_and_a_longer_one_cut_and_marked_without_closing() {
    let c = Running::start(|_| {}).await;
    let mut tcp = connect_from("127.0.0.1", c.tcp).await;
    let head = relay_line("big", "http", "request", r#"src_ip="6.6.6.6""#, "");
    let exact = format!("{head}{}", "a".repeat(64 * 1024 - head.len()));
    assert_eq!(exact.len(), 64 * 1024);
    let over = format!("{head}{}", "b".repeat(64 * 1024 - head.len() + 1));
    tcp.write_all(&octet(&over)).await.unwrap();
    tcp.write_all(over.as_bytes()).await.unwrap(); // LF-framed, too long as well
    tcp.write_all(b"\n").await.unwrap();
    tcp.write_all(&octet(&exact)).await.unwrap();
    tcp.write_all(format!("{exact}\n").as_bytes()).await.unwrap();
    tcp.write_all(&octet(&relay_line("after", "http", "request", r#"src_ip="6.6.6.7""#, "small"))).await.unwrap();
    let records = c.wait_records(5, 10.0).await;
    assert_eq!(records.len(), 5, "{:?}", records.iter().map(|r| &r.decky).collect::<Vec<_>>());
    for r in &records[..2] {
        // The first 64 KiB, the rest of the message gone, the record marked.
        assert_eq!(r.raw_line, over[..64 * 1024]);
        assert_eq!((r.attacker_ip.as_str(), r.field("truncated")), ("6.6.6.6", Some("line")));
    }
    for r in &records[2..4] {
        assert_eq!(r.raw_line.len(), 64 * 1024);
        assert_eq!(r.field("truncated"), None);
    }
    assert_eq!(records[4].decky, "after");
    assert_eq!(Stats::get(&c.stats.oversize), 2);
    assert_eq!(c.stats.drops_from("127.0.0.1".parse().unwrap()), 0);
    c.stop().await;

    // UDP too (a datagram cannot reach 64 KiB, so with a smaller limit):
    // over the limit is cut and kept; the next one is whole.
    let c = Running::start(|cfg| cfg.max_line = 1000).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(format!("{head}{}", "c".repeat(2000)).as_bytes(), c.udp).await.unwrap();
    udp.send_to(relay_line("fits", "http", "request", r#"src_ip="6.6.6.8""#, "").as_bytes(), c.udp).await.unwrap();
    let records = c.wait_records(2, 10.0).await;
    assert_eq!((records[0].raw_line.len(), records[0].field("truncated")), (1000, Some("line")));
    assert_eq!((records[1].decky.as_str(), records[1].field("truncated")), ("fits", None));
    assert_eq!(Stats::get(&c.stats.oversize), 1);
    c.stop().await;
}

#[tokio::test]
async fn garbage_and_a_flood_from_one_source_never_stop_another() {
    let c = Running::start(|cfg| cfg.queue = 64).await;
    let flood_stop = CancellationToken::new();
    // Source A: binary garbage, then an endless stream of valid lines.
    let mut garbage = connect_from("127.0.0.2", c.tcp).await;
    let junk: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    garbage.write_all(&junk).await.unwrap();
    let flooder = {
        let stop = flood_stop.clone();
        let to = c.tcp;
        tokio::spawn(async move {
            let mut s = connect_from("127.0.0.2", to).await;
            let line = octet(&relay_line("flood", "http", "request", r#"src_ip="7.7.7.7""#, "x"));
            let chunk: Vec<u8> = line.iter().copied().cycle().take(line.len() * 200).collect();
            let mut sent = 0u64;
            // Bounded: at most 2,000 chunks (400k lines) or until told to stop.
            for _ in 0..2_000 {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = s.write_all(&chunk) => if r.is_err() { break },
                }
                sent += 200;
            }
            sent
        })
    };
    // Source B: 200 lines, one at a time, each must get through while A floods.
    let mut good = connect_from("127.0.0.3", c.tcp).await;
    let started = Instant::now();
    for i in 0..200 {
        good.write_all(&octet(&relay_line(
            "good",
            "ssh",
            "login_attempt",
            &format!("src_ip=\"8.8.8.{}\"", i % 250),
            "ok",
        )))
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let good_count = loop {
        let n = c.records().iter().filter(|r| r.decky == "good").count();
        if n >= 200 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    flood_stop.cancel();
    let flooded = flooder.await.unwrap();
    assert_eq!(good_count, 200, "the good source lost lines while another flooded ({:?})", started.elapsed());
    assert!(flooded > 1000, "the flood did run: {flooded} lines");
    assert!(Stats::get(&c.stats.malformed) > 0, "garbage was counted");
    // The garbage connection is still served: a valid line after it gets through.
    garbage.write_all(b"\n").await.unwrap();
    garbage.write_all(&octet(&relay_line("after-garbage", "ssh", "x", r#"a="b""#, ""))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.records().iter().any(|r| r.decky == "after-garbage") {
        assert!(Instant::now() < deadline, "line after garbage never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.stop().await;
}

#[tokio::test]
async fn udp_overflow_is_dropped_and_counted_per_source() {
    // A tiny queue and a burst of datagrams: some are dropped, each counted
    // against the sender; the collector keeps receiving afterwards.
    let c = Running::start(|cfg| cfg.queue = 1).await;
    let udp = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let line = relay_line("u", "http", "request", r#"src_ip="1.2.3.4""#, "burst");
    for _ in 0..5_000 {
        udp.send_to(line.as_bytes(), c.udp).await.unwrap();
    }
    let received = wait_stat(&c.stats.received, 1, 5.0).await;
    assert!(received > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped = Stats::get(&c.stats.dropped);
    let stored = Stats::get(&c.stats.stored);
    eprintln!("udp burst: received {} stored {stored} dropped {dropped}", Stats::get(&c.stats.received));
    assert_eq!(Stats::get(&c.stats.received), dropped + stored, "every received datagram is stored or counted");
    assert_eq!(c.stats.drops_from("127.0.0.4".parse().unwrap()), dropped);
    // A one-slot queue cannot take a 5,000-datagram burst: UDP never waits.
    assert!(dropped > 0, "nothing dropped: stored {stored}");
    let snap = c.stats.snapshot();
    assert_eq!(snap["per_source_drops"]["127.0.0.4"], dropped);
    c.stop().await;
}

#[tokio::test]
async fn connection_limits_and_idle_timeout() {
    let c = Running::start(|cfg| {
        cfg.max_connections_per_source = 2;
        cfg.max_connections = 3;
        cfg.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let mut a1 = connect_from("127.0.0.5", c.tcp).await;
    let mut a2 = connect_from("127.0.0.5", c.tcp).await;
    let mut a3 = connect_from("127.0.0.5", c.tcp).await;
    // Let the accept loop see all three.
    wait_stat(&c.stats.connections_refused, 1, 5.0).await;
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), a3.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "third connection from one source is closed: {closed:?}");
    // Another source still gets in (3rd slot overall) and is heard.
    let mut b = connect_from("127.0.0.6", c.tcp).await;
    b.write_all(&octet(&relay_line("b", "ssh", "x", r#"src_ip="1.1.1.1""#, ""))).await.unwrap();
    a1.write_all(&octet(&relay_line("a", "ssh", "x", r#"src_ip="1.1.1.1""#, ""))).await.unwrap();
    assert_eq!(c.wait_records(2, 5.0).await.len(), 2);
    // Total limit: a fourth connection is refused.
    let mut d = connect_from("127.0.0.7", c.tcp).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), d.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "over the total limit: {closed:?}");
    assert!(Stats::get(&c.stats.connections_refused) >= 2);
    // Idle: silent connections are closed after 500 ms, and counted.
    let closed = tokio::time::timeout(Duration::from_secs(3), a2.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "idle connection closed: {closed:?}");
    assert!(wait_stat(&c.stats.idle_closed, 1, 3.0).await >= 1);
    // Slots are released: the source can connect again once its idle ones went.
    wait_stat(&c.stats.idle_closed, 3, 3.0).await;
    let mut again = connect_from("127.0.0.5", c.tcp).await;
    again.write_all(&octet(&relay_line("again", "ssh", "x", r#"src_ip="1.1.1.1""#, ""))).await.unwrap();
    let records = c.wait_records(3, 5.0).await;
    assert!(records.iter().any(|r| r.decky == "again"), "{records:?}");
    c.stop().await;
}

#[tokio::test]
async fn rotation_of_both_files_is_followed() {
    let c = Running::start(|_| {}).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(relay_line("one", "http", "request", r#"src_ip="1.1.1.1""#, "").as_bytes(), c.udp).await.unwrap();
    assert_eq!(c.wait_records(1, 5.0).await.len(), 1);
    let dir = c.dir.path();
    std::fs::rename(dir.join("ingest.log"), dir.join("ingest.log.1")).unwrap();
    std::fs::rename(dir.join("ingest.log.json"), dir.join("ingest.log.json.1")).unwrap();
    udp.send_to(relay_line("two", "http", "request", r#"src_ip="1.1.1.1""#, "").as_bytes(), c.udp).await.unwrap();
    let records = c.wait_records(1, 5.0).await;
    assert_eq!(records.iter().map(|r| r.decky.as_str()).collect::<Vec<_>>(), ["two"]);
    assert!(c.raw().contains(" two http "));
    assert!(std::fs::read_to_string(dir.join("ingest.log.1")).unwrap().contains(" one http "));
    c.stop().await;
}
