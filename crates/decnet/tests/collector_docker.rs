//! The collector's Docker source, run as an operator runs it: the real
//! `decnet collector` binary, a real bus daemon, real loopback UDP/TCP.
//!
//! This machine has the docker CLI but no daemon, so most tests talk to a
//! stand-in Docker daemon served here over a UNIX socket in a temp folder.
//! It implements the Engine API calls the collector makes with Docker's
//! semantics: the label filter on `GET /containers/json` (running
//! containers only), `Config.Tty` on inspect, and `GET .../logs` with
//! `follow` (the response stays open and new lines stream in), `since`
//! (inclusive), `timestamps`, multiplexed frames without a TTY and a raw
//! stream with one. It runs on its own runtime thread, so "the daemon
//! restarts" drops every connection at once, as a real exit does.
//! `real_docker_daemon` uses a real daemon where `docker info` succeeds and
//! otherwise prints SKIP.

mod support;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use decnet_bus::Bus;
use serde_json::{json, Value};
use support::{free_tcp_udp_port, relay_line, wait_until, Daemon, BIN};

const LABEL: &str = "decnet.fleet.service";

// ---------------------------------------------------------------- stand-in daemon

#[derive(Clone)]
struct Entry {
    ts: i128,
    stream: u8,
    bytes: Vec<u8>,
}

#[derive(Clone)]
struct Container {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    tty: bool,
    running: bool,
    log: Vec<Entry>,
    /// Bytes sent verbatim at the start of every log response (hostile output).
    hostile: Option<Vec<u8>>,
}

/// The daemon's state; it outlives a daemon restart, as containers do.
struct World {
    containers: Mutex<Vec<Container>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Every request path (with query) the daemon served.
    requests: Mutex<Vec<String>>,
    /// List every running container, whatever the filters (a daemon that
    /// ignores them: the collector must check the label itself).
    ignore_filters: std::sync::atomic::AtomicBool,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128
}

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            containers: Mutex::new(Vec::new()),
            changed: tokio::sync::watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            ignore_filters: Default::default(),
        })
    }

    fn add(&self, id: &str, name: &str, labelled: Option<&str>, tty: bool) {
        let mut labels = HashMap::new();
        if let Some(v) = labelled {
            labels.insert(LABEL.to_string(), v.to_string());
        }
        labels.insert("other".into(), "x".into());
        self.containers.lock().unwrap().push(Container {
            id: id.into(),
            name: name.into(),
            labels,
            tty,
            running: true,
            log: Vec::new(),
            hostile: None,
        });
        self.notify();
    }

    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Container) -> R) -> R {
        let r = f(self.containers.lock().unwrap().iter_mut().find(|c| c.id == id).expect("container"));
        self.notify();
        r
    }

    /// The container writes `line` (plus LF) to stdout (1) or stderr (2), at `ts`.
    fn write_at(&self, id: &str, stream: u8, ts: i128, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        self.with(id, |c| c.log.push(Entry { ts, stream, bytes }));
    }

    fn write(&self, id: &str, line: &str) {
        self.write_at(id, 1, now_ns(), line.as_bytes());
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn log_requests_for(&self, id: &str) -> usize {
        let prefix = format!("/containers/{id}/logs");
        self.requests.lock().unwrap().iter().filter(|r| r.starts_with(&prefix)).count()
    }
}

fn rfc3339(ts: i128) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ts)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `since` as Docker takes it: unix seconds, optionally with a fraction.
fn parse_since(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac = format!("{frac:0<9}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
}

fn matches_filters(c: &Container, filters: Option<&String>) -> bool {
    let Some(filters) = filters else { return true };
    let f: HashMap<String, Vec<String>> = serde_json::from_str(filters).expect("filters JSON");
    f.get("label").into_iter().flatten().all(|want| match want.split_once('=') {
        Some((k, v)) => c.labels.get(k).is_some_and(|have| have == v),
        None => c.labels.contains_key(want),
    })
}

async fn list(State(w): State<Arc<World>>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let cs = w.containers.lock().unwrap().clone();
    let out: Vec<Value> = cs
        .iter()
        .filter(|c| {
            c.running
                && (w.ignore_filters.load(std::sync::atomic::Ordering::Relaxed) || matches_filters(c, q.get("filters")))
        })
        .map(|c| json!({"Id": c.id, "Names": [format!("/{}", c.name)], "Labels": c.labels, "State": "running"}))
        .collect();
    Json(Value::Array(out))
}

async fn inspect(State(w): State<Arc<World>>, UrlPath(id): UrlPath<String>) -> Response {
    let cs = w.containers.lock().unwrap().clone();
    match cs.iter().find(|c| c.id == id) {
        Some(c) => Json(json!({"Id": c.id, "Name": format!("/{}", c.name),
                               "Config": {"Tty": c.tty, "Labels": c.labels},
                               "State": {"Running": c.running}}))
        .into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": format!("No such container: {id}")}))).into_response(),
    }
}

struct LogState {
    world: Arc<World>,
    id: String,
    next: usize,
    since: i128,
    follow: bool,
    timestamps: bool,
    hostile_sent: bool,
    changed: tokio::sync::watch::Receiver<u64>,
}

async fn logs(
    State(w): State<Arc<World>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !w.containers.lock().unwrap().iter().any(|c| c.id == id) {
        return (StatusCode::NOT_FOUND, "no such container").into_response();
    }
    let state = LogState {
        world: w.clone(),
        id,
        next: 0,
        since: q.get("since").map(|s| parse_since(s)).unwrap_or(0),
        follow: q.get("follow").is_some_and(|v| v == "1" || v == "true"),
        timestamps: q.get("timestamps").is_some_and(|v| v == "1" || v == "true"),
        hostile_sent: false,
        changed: w.changed.subscribe(),
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            let (hostile, found, running, tty) = {
                let cs = s.world.containers.lock().unwrap();
                let c = cs.iter().find(|c| c.id == s.id)?;
                let found =
                    c.log.iter().enumerate().skip(s.next).find(|(_, e)| e.ts >= s.since).map(|(i, e)| (i, e.clone()));
                (c.hostile.clone(), found, c.running, c.tty)
            };
            if !s.hostile_sent {
                s.hostile_sent = true;
                if let Some(h) = hostile {
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(h)), s));
                }
            }
            if let Some((i, e)) = found {
                s.next = i + 1;
                let mut content = Vec::new();
                if s.timestamps {
                    content.extend_from_slice(rfc3339(e.ts).as_bytes());
                    content.push(b' ');
                }
                content.extend_from_slice(&e.bytes);
                let chunk = if tty {
                    content
                } else {
                    let mut f = vec![e.stream, 0, 0, 0];
                    f.extend_from_slice(&(content.len() as u32).to_be_bytes());
                    f.extend(content);
                    f
                };
                return Some((Ok(Bytes::from(chunk)), s));
            }
            if !running || !s.follow {
                return None;
            }
            s.changed.changed().await.ok()?;
        }
    });
    Response::builder()
        .header("content-type", "application/vnd.docker.multiplexed-stream")
        .body(axum::body::Body::from_stream(body))
        .unwrap()
}

async fn record(State(w): State<Arc<World>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    w.requests.lock().unwrap().push(uri);
    next.run(req).await
}

/// A running stand-in daemon; `stop` (or drop) ends it and every connection.
struct StandIn {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    fn start(world: Arc<World>, socket: &Path) -> StandIn {
        let _ = std::fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/containers/json", get(list))
                    .route("/containers/{id}/json", get(inspect))
                    .route("/containers/{id}/logs", get(logs))
                    .layer(axum::middleware::from_fn_with_state(world.clone(), record))
                    .with_state(world);
                tokio::select! {
                    _ = axum::serve(listener, app).into_future() => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task: like a daemon exiting.
            drop(rt);
        });
        StandIn { stop: Some(stop), thread: Some(thread) }
    }

    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------- the collector

struct CollectorProc {
    child: Child,
    log: Arc<Mutex<String>>,
    ingest: PathBuf,
    addr: SocketAddr,
}

impl CollectorProc {
    fn start(dir: &Path, bus: &Path, extra: &[&str], env: &[(&str, &str)]) -> CollectorProc {
        let port = free_tcp_udp_port();
        let listen = format!("127.0.0.1:{port}");
        let ingest = dir.join("ingest.log");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "collector",
            "--listen",
            &listen,
            "--ingest-log",
            ingest.to_str().unwrap(),
            "--heartbeat-secs",
            "0.3",
        ])
        .args(extra)
        .env("DECNET_HOME", dir)
        .env("DECNET_BUS_SOCKET", bus)
        .env("RUST_LOG", "info")
        .env_remove("DECNET_BUS_TYPE")
        .env_remove("DECNET_BUS_ENABLED")
        .env_remove("DECNET_INGEST_LOG_FILE")
        .env_remove("DECNET_COLLECTOR_DOCKER_SOCKET")
        .env_remove("DOCKER_HOST")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        CollectorProc { child, log, ingest, addr: listen.parse().unwrap() }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Parsed records in `<log>.json`.
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.ingest.with_extension("log.json")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.ingest).unwrap_or_default()).into_owned()
    }

    fn records_with_msg(&self, msg: &str) -> usize {
        self.records().iter().filter(|r| r["msg"] == msg).count()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for CollectorProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next event on `sub` that `pred` accepts, within `secs`.
async fn wait_event(
    sub: &mut decnet_bus::Subscription,
    secs: f64,
    what: &str,
    mut pred: impl FnMut(&decnet_bus::Envelope) -> bool,
) -> decnet_bus::Envelope {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no event {what} within {secs} s"))
            .expect("subscription open");
        if pred(&ev) {
            return ev;
        }
    }
}

/// The first heartbeat whose payload `pred` accepts.
async fn wait_health(
    health: &mut decnet_bus::Subscription,
    secs: f64,
    what: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        match tokio::time::timeout_at(deadline, health.recv()).await {
            Ok(Some(ev)) => {
                if pred(&ev.payload) {
                    return ev.payload;
                }
                last = ev.payload;
            }
            _ => panic!("heartbeat never showed {what}; last: {last}"),
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    _bus_daemon: Daemon,
    bus: decnet_bus::client::UnixBus,
    docker_socket: PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let bus_daemon = Daemon::start_at(dir.path(), &socket, &[]);
    let bus = decnet_bus::client::UnixBus::connect("test", &socket).await.unwrap();
    let docker_socket = dir.path().join("docker.sock");
    Setup { _bus_daemon: bus_daemon, bus, docker_socket, dir }
}

impl Setup {
    fn collector(&self, extra: &[&str]) -> CollectorProc {
        let mut args = vec!["--docker-socket", self.docker_socket.to_str().unwrap(), "--docker-poll-secs", "0.2"];
        args.extend_from_slice(extra);
        CollectorProc::start(self.dir.path(), &self.dir.path().join("bus.sock"), &args, &[])
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_containers_output_is_collected_and_others_are_not_read() {
    let s = setup().await;
    let mut logs = s.bus.subscribe("system.log").await.unwrap();
    let mut health = s.bus.subscribe("system.collector.health").await.unwrap();
    let world = World::new();
    world.add("aaa111", "web", Some("true"), false);
    world.add("bbb222", "shell", Some("true"), true);
    world.add("ccc333", "unlabelled", None, false);
    world.add("ddd444", "label-false", Some("false"), false);
    // Written an hour before the collector started: not read.
    world.write_at(
        "aaa111",
        1,
        now_ns() - 3_600_000_000_000,
        relay_line("web", "http", "request", r#"src_ip="10.6.0.1""#, "old-line").as_bytes(),
    );
    let _daemon = StandIn::start(world.clone(), &s.docker_socket);
    let c = s.collector(&[]);
    let hb = wait_health(&mut health, 10.0, "docker connected", |p| {
        p["docker"]["state"] == "connected" && p["docker"]["containers"] == 2
    })
    .await;
    assert_eq!(hb["docker"]["errors"], 0, "{hb}");

    world.write("aaa111", &relay_line("web", "http", "request", r#"src_ip="10.1.0.1""#, "stdout-line"));
    world.write_at(
        "aaa111",
        2,
        now_ns(),
        relay_line("web", "http", "error", r#"src_ip="10.1.0.1""#, "stderr-line").as_bytes(),
    );
    world.write("bbb222", &relay_line("shell", "ssh", "login_attempt", r#"src_ip="10.1.0.2""#, "tty-line"));
    world.write("ccc333", &relay_line("unlabelled", "http", "request", r#"src_ip="10.9.9.9""#, "must-not-appear"));
    world.write("ddd444", &relay_line("label-false", "http", "request", r#"src_ip="10.9.9.8""#, "must-not-appear"));
    let mut seen = HashMap::new();
    while seen.len() < 3 {
        let ev = wait_event(&mut logs, 10.0, "for the container lines", |_| true).await;
        seen.insert(ev.event_type.clone(), ev.payload);
    }
    assert_eq!(
        seen["request"],
        json!({"decky": "web", "service": "http", "event_type": "request",
                                       "attacker_ip": "10.1.0.1", "timestamp": 1796227800.0})
    );
    assert_eq!(seen["error"]["decky"], "web");
    assert_eq!(seen["login_attempt"]["attacker_ip"], "10.1.0.2");
    for msg in ["stdout-line", "stderr-line", "tty-line"] {
        assert_eq!(c.records_with_msg(msg), 1, "{msg} in <log>.json once");
    }
    let rec = c.records().into_iter().find(|r| r["msg"] == "tty-line").unwrap();
    assert!(rec["raw_line"].as_str().unwrap().starts_with("<134>1 "), "timestamp prefix removed: {rec}");

    // A container that starts later is read, from its first line.
    world.add("eee555", "late", Some("true"), false);
    world.write("eee555", &relay_line("late", "ftp", "login_attempt", r#"src_ip="10.1.0.3""#, "late-line"));
    let ev = wait_event(&mut logs, 10.0, "from the late container", |e| e.payload["decky"] == "late").await;
    assert_eq!(ev.payload["attacker_ip"], "10.1.0.3");

    // A stopped container is no longer followed.
    world.with("aaa111", |c| c.running = false);
    wait_health(&mut health, 10.0, "two containers followed", |p| p["docker"]["containers"] == 2).await;
    let hb = wait_health(&mut health, 10.0, "docker counters", |p| p["docker"]["lines"] == 4).await;
    assert_eq!(hb["stored"], 4, "{hb}");

    // The list asked the daemon for the label.
    let list_request =
        world.requests.lock().unwrap().iter().find(|r| r.starts_with("/containers/json")).cloned().unwrap();
    let url = reqwest::Url::parse(&format!("http://docker{list_request}")).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(serde_json::from_str::<Value>(&query["filters"]).unwrap(), json!({"label": [format!("{LABEL}=true")]}));
    // A daemon that ignores the filter: the collector checks the label itself.
    world.ignore_filters.store(true, std::sync::atomic::Ordering::Relaxed);
    world.notify();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Unlabelled containers were never asked for their log; nothing old was read.
    assert_eq!(world.log_requests_for("ccc333"), 0);
    assert_eq!(world.log_requests_for("ddd444"), 0);
    assert!(world.log_requests_for("aaa111") >= 1);
    let raw = c.raw();
    assert!(!raw.contains("must-not-appear") && !raw.contains("old-line"), "{raw}");
    assert!(c.log().contains("docker: daemon at"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_container_output_neither_crashes_nor_blocks_syslog() {
    let s = setup().await;
    let mut health = s.bus.subscribe("system.collector.health").await.unwrap();
    let world = World::new();
    // A frame header claiming 4 GiB, then garbage, on a stream that stays open.
    world.add("f00001", "huge-frame", Some("true"), false);
    let mut huge = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    huge.extend((0..256 * 1024u32).map(|i| (i * 7 % 251) as u8 | 0x80));
    world.with("f00001", |c| c.hostile = Some(huge));
    // Binary garbage, a 1 MiB line, then a good line, in well-formed frames.
    world.add("f00002", "garbage", Some("true"), false);
    // Not the stream format at all.
    world.add("f00003", "bad-header", Some("true"), false);
    world.with("f00003", |c| c.hostile = Some(b"HTTP/1.1 200 OK\r\n\r\nnot frames".to_vec()));
    // A flood of lines against a small queue.
    world.add("f00004", "flood", Some("true"), false);
    let _daemon = StandIn::start(world.clone(), &s.docker_socket);
    let mut c = s.collector(&["--queue", "64"]);
    wait_health(&mut health, 10.0, "docker connected", |p| p["docker"]["state"] == "connected").await;

    let ts = now_ns();
    world.write_at("f00002", 1, ts, b"\xff\xfe\x00GARBAGE-MARK\x01\x02\x1b[31m\xc3\x28");
    world.write_at("f00002", 1, ts + 1, &vec![b'x'; 1024 * 1024]);
    world.write_at(
        "f00002",
        1,
        ts + 2,
        relay_line("garbage", "http", "request", r#"src_ip="10.6.0.1""#, "after-big").as_bytes(),
    );
    world.with("f00004", |c| {
        for i in 0..20_000 {
            let line = relay_line("flood", "http", "request", r#"src_ip="10.2.0.1""#, &format!("flood-{i}"));
            c.log.push(Entry { ts: ts + i, stream: 1, bytes: format!("{line}\n").into_bytes() });
        }
    });
    // Syslog sent at the same time still gets through, over UDP and TCP.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(relay_line("udp-decky", "ssh", "login_attempt", r#"src_ip="10.3.0.1""#, "udp-line").as_bytes(), c.addr)
        .unwrap();
    let mut tcp = TcpStream::connect(c.addr).unwrap();
    let line = relay_line("tcp-decky", "ssh", "login_attempt", r#"src_ip="10.3.0.2""#, "tcp-line");
    tcp.write_all(format!("{} {line}", line.len()).as_bytes()).unwrap();
    let started = Instant::now();
    // UDP cannot wait for room in the queue: 100 more datagrams while the flood
    // is read, none of which may be dropped (the containers hold at most half).
    for i in 0..100 {
        let line = relay_line("udp-decky", "ssh", "login_attempt", r#"src_ip="10.3.0.1""#, &format!("udp-{i}"));
        udp.send_to(line.as_bytes(), c.addr).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // Watched in `<log>.json`, not on the bus: under a flood the bus may drop
    // events by design (publishing never waits), the file never does.
    let json = c.ingest.with_extension("log.json");
    let stored = |msg: &str| std::fs::read_to_string(&json).unwrap_or_default().contains(&format!(r#""msg":"{msg}""#));
    let want = ["udp-line", "tcp-line", "after-big"];
    if !wait_until(20.0, || want.iter().all(|m| stored(m))) {
        let hb = wait_health(&mut health, 5.0, "any", |_| true).await;
        let missing: Vec<_> = want.iter().filter(|m| !stored(m)).collect();
        panic!("not stored: {missing:?}; heartbeat {hb}; log:\n{}", c.log());
    }
    let flood_so_far = c.records().iter().filter(|r| r["decky"] == "flood").count();
    eprintln!(
        "UDP, TCP and post-1MiB lines through in {:?}, with {flood_so_far} of the 20,000 flood lines stored by then",
        started.elapsed()
    );
    assert!(flood_so_far < 20_000, "the syslog lines went through while the flood was still being read, not after it");
    let hb =
        wait_health(&mut health, 30.0, "the whole flood stored", |p| p["docker"]["lines"].as_u64() >= Some(20_002))
            .await;
    assert!(hb["docker"]["oversize"].as_u64() >= Some(1), "{hb}");
    assert!(hb["docker"]["errors"].as_u64() >= Some(1), "the bad header is an error: {hb}");
    assert!(hb["malformed"].as_u64() >= Some(1), "{hb}");
    assert!(wait_until(10.0, || c.records_with_msg("flood-19999") == 1));
    let udp_stored = c.records().iter().filter(|r| r["decky"] == "udp-decky").count();
    let hb = wait_health(&mut health, 5.0, "a heartbeat", |_| true).await;
    assert_eq!(udp_stored, 101, "no UDP datagram dropped beside the flood; heartbeat {hb}");
    assert_eq!(hb["per_source_drops"], json!({}), "{hb}");
    eprintln!("20,000 flood lines stored {:?} after they were written (debug build, queue 64)", started.elapsed());
    assert_eq!(c.records().iter().filter(|r| r["decky"] == "flood").count(), 20_000);
    let raw = c.raw();
    assert!(raw.contains("GARBAGE-MARK"), "garbage kept in the raw log");
    assert!(!raw.contains(&"x".repeat(70_000)), "the 1 MiB line is not stored whole");
    assert!(raw.contains(&"x".repeat(64 * 1024)), "its first 64 KiB are kept");
    let rss = c.rss_kib();
    eprintln!("collector RSS after a 4 GiB frame header and a 1 MiB line: {rss} KiB");
    assert!(rss < 256 * 1024, "RSS {rss} KiB");
    assert!(c.alive(), "collector still running; log:\n{}", c.log());
}

/// Double-wrapped container output: a container whose stdout is an
/// rsyslog relay (BSD lines carrying a decky's RFC 5424 line, as from
/// Docker's journald or syslog driver) or a json-file record; and a
/// container writing raw ANSI escapes. Each is the inner line's record;
/// the raw log shows the escapes, never acts on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_and_escaped_container_lines() {
    let s = setup().await;
    let mut health = s.bus.subscribe("system.collector.health").await.unwrap();
    let world = World::new();
    world.add("eee555", "relay", Some("true"), false);
    let _daemon = StandIn::start(world.clone(), &s.docker_socket);
    let c = s.collector(&[]);
    wait_health(&mut health, 10.0, "docker connected", |p| p["docker"]["containers"] == 1).await;

    let inner = relay_line("web-01", "ssh", "login_attempt", r#"src_ip="10.4.0.1" username="root""#, "wrapped");
    world.write("eee555", &format!("<30>Dec  3 11:20:19 dockerhost web-01[77]: {inner}"));
    let json = serde_json::json!({"log": format!("{}\n", inner.replace("wrapped", "json-file")), "stream": "stdout"});
    world.write("eee555", &json.to_string());
    world.write("eee555", &relay_line("web-01", "ssh", "command", r#"src_ip="10.4.0.2""#, "CMD echo \u{1b}[2Jx"));
    assert!(wait_until(10.0, || c.records().len() >= 3), "records: {:?}; log:\n{}", c.records(), c.log());
    let records = c.records();
    let by_msg = |m: &str| records.iter().find(|r| r["msg"] == m).unwrap_or_else(|| panic!("{m}: {records:?}"));
    let wrapped = by_msg("wrapped");
    assert_eq!((&wrapped["decky"], &wrapped["service"]), (&json!("web-01"), &json!("ssh")));
    assert_eq!((&wrapped["attacker_ip"], &wrapped["fields"]["relayed_by"]), (&json!("10.4.0.1"), &json!("dockerhost")));
    assert_eq!(by_msg("json-file")["fields"]["relayed_by"], "docker");
    assert_eq!(by_msg("CMD echo \u{1b}[2Jx")["event_type"], "command");
    let raw = c.raw();
    assert!(raw.contains(r"CMD echo \x1b[2Jx") && !raw.contains('\u{1b}'), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restart_resumes_without_duplicates() {
    let s = setup().await;
    let mut logs = s.bus.subscribe("system.log").await.unwrap();
    let mut health = s.bus.subscribe("system.collector.health").await.unwrap();
    let world = World::new();
    world.add("abc123", "web", Some("true"), false);
    world.add("def456", "shell", Some("true"), true);
    let mut daemon = StandIn::start(world.clone(), &s.docker_socket);
    let c = s.collector(&[]);
    wait_health(&mut health, 10.0, "docker connected", |p| p["docker"]["containers"] == 2).await;
    // Two lines with the very same timestamp: the cursor counts them.
    let ts = now_ns();
    for (i, t) in [(1, ts), (2, ts), (3, ts + 1000)] {
        world.write_at(
            "abc123",
            1,
            t,
            relay_line("web", "http", "request", r#"src_ip="10.6.0.1""#, &format!("line-{i}")).as_bytes(),
        );
    }
    world.write("def456", &relay_line("shell", "ssh", "request", r#"src_ip="10.6.0.1""#, "tty-1"));
    for _ in 0..4 {
        wait_event(&mut logs, 10.0, "before the restart", |_| true).await;
    }

    daemon.stop();
    wait_health(&mut health, 10.0, "daemon lost", |p| p["docker"]["state"] == "unreachable").await;
    // Written while the daemon is away (as the daemon's log driver keeps them), then
    // the daemon comes back: everything is sent again from `since`.
    world.write_at(
        "abc123",
        1,
        ts + 1000,
        relay_line("web", "http", "request", r#"src_ip="10.6.0.1""#, "line-4").as_bytes(),
    );
    world.write("abc123", &relay_line("web", "http", "request", r#"src_ip="10.6.0.1""#, "line-5"));
    world.write("def456", &relay_line("shell", "ssh", "request", r#"src_ip="10.6.0.1""#, "tty-2"));
    let _daemon = StandIn::start(world.clone(), &s.docker_socket);
    let mut after = Vec::new();
    while after.len() < 3 {
        let ev = wait_event(&mut logs, 15.0, "after the restart", |_| true).await;
        after.push(ev);
    }
    let hb = wait_health(&mut health, 10.0, "reconnected", |p| {
        p["docker"]["reconnects"] == 1 && p["docker"]["containers"] == 2 && p["stored"] == 7
    })
    .await;
    // A little longer: nothing else arrives.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for msg in ["line-1", "line-2", "line-3", "line-4", "line-5", "tty-1", "tty-2"] {
        assert_eq!(c.records_with_msg(msg), 1, "{msg} stored exactly once; records: {:?}", c.records());
    }
    assert_eq!(c.records().len(), 7, "{hb}");
    assert!(c.log().contains("docker: lost the daemon"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_the_collector_says_so_once_and_hears_syslog() {
    let s = setup().await;
    let mut logs = s.bus.subscribe("system.log").await.unwrap();
    let mut health = s.bus.subscribe("system.collector.health").await.unwrap();
    let c = s.collector(&[]);
    let hb = wait_health(&mut health, 10.0, "docker unreachable", |p| p["docker"]["state"] == "unreachable").await;
    assert_eq!(hb["docker"]["containers"], 0);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(relay_line("d1", "ssh", "login_attempt", r#"src_ip="10.4.0.1""#, "hi").as_bytes(), c.addr).unwrap();
    let ev = wait_event(&mut logs, 10.0, "the UDP line", |_| true).await;
    assert_eq!(ev.payload["attacker_ip"], "10.4.0.1");
    // Retries at 0.5, 1, 2 s happen in this time; they do not log again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = c.log();
    let want = format!("docker: no daemon at {}", s.docker_socket.display());
    assert_eq!(log.matches(&want).count(), 1, "{log}");
    assert!(log.contains("container ingestion off until one answers"), "{log}");
    drop(c);

    // A daemon that comes up later is picked up.
    let world = World::new();
    world.add("abc", "late-daemon", Some("true"), false);
    let c = s.collector(&[]);
    wait_health(&mut health, 10.0, "docker unreachable", |p| p["docker"]["state"] == "unreachable").await;
    let _daemon = StandIn::start(world.clone(), &s.docker_socket);
    wait_health(&mut health, 10.0, "docker connected", |p| p["docker"]["containers"] == 1).await;
    world.write("abc", &relay_line("late-daemon", "ssh", "login_attempt", r#"src_ip="10.6.0.1""#, "late"));
    wait_event(&mut logs, 10.0, "from the late daemon", |e| e.payload["decky"] == "late-daemon").await;
    drop(c);

    // --no-docker: off, and not a word about docker.
    let c = s.collector(&["--no-docker"]);
    wait_health(&mut health, 10.0, "docker off", |p| p["docker"]["state"] == "off").await;
    assert!(!c.log().contains("docker:"), "{}", c.log());
    drop(c);

    // DOCKER_HOST that is not a UNIX socket: one clear line, collector runs.
    let bus_socket = s.dir.path().join("bus.sock");
    let c = CollectorProc::start(s.dir.path(), &bus_socket, &[], &[("DOCKER_HOST", "tcp://127.0.0.1:2375")]);
    wait_health(&mut health, 10.0, "docker off", |p| p["docker"]["state"] == "off").await;
    assert!(c.log().contains("DOCKER_HOST=tcp://127.0.0.1:2375 is not a unix:// socket"), "{}", c.log());
    // DOCKER_HOST=unix://… is used.
    drop(c);
    let host = format!("unix://{}", s.docker_socket.display());
    let c = CollectorProc::start(s.dir.path(), &bus_socket, &["--docker-poll-secs", "0.2"], &[("DOCKER_HOST", &host)]);
    wait_health(&mut health, 10.0, "docker via DOCKER_HOST", |p| p["docker"]["containers"] == 1).await;
    drop(c);
}

/// The issue's own condition: against a real daemon where one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_docker_daemon() {
    let info = Command::new("docker").arg("info").output();
    match &info {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr);
            eprintln!("SKIP real_docker_daemon: `docker info` failed, no Docker daemon here: {}", why.trim());
            return;
        }
        Err(e) => {
            eprintln!("SKIP real_docker_daemon: no docker CLI ({e})");
            return;
        }
    }
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if !host.is_empty() && !host.starts_with("unix://") {
        eprintln!(
            "SKIP real_docker_daemon: DOCKER_HOST={host} is not a UNIX socket; the collector reads only local sockets"
        );
        return;
    }
    let s = setup().await;
    let mut logs = s.bus.subscribe("system.log").await.unwrap();
    let name = format!("decnet-test-{}", std::process::id());
    let line = relay_line("real-docker", "http", "request", r#"src_ip="10.5.0.1""#, "from-a-real-container");
    let script = format!("while true; do echo '{line}'; sleep 1; done");
    let mut started = None;
    for image in ["busybox", "alpine"] {
        let run = Command::new("docker")
            .args([
                "run",
                "-d",
                "--rm",
                "--name",
                &name,
                "--label",
                &format!("{LABEL}=true"),
                image,
                "sh",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        if run.status.success() {
            started = Some(image);
            break;
        }
        eprintln!("docker run {image} failed: {}", String::from_utf8_lossy(&run.stderr).trim());
    }
    let Some(image) = started else {
        eprintln!("SKIP real_docker_daemon: the daemon runs but neither busybox nor alpine could be started (no image, no network)");
        return;
    };
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
        }
    }
    let _remove = Remove(name.clone());
    let env: Vec<(&str, &str)> = if host.is_empty() { vec![] } else { vec![("DOCKER_HOST", host.as_str())] };
    let c = CollectorProc::start(s.dir.path(), &s.dir.path().join("bus.sock"), &["--docker-poll-secs", "0.5"], &env);
    let ev = wait_event(&mut logs, 20.0, "from the real container", |e| e.payload["decky"] == "real-docker").await;
    assert_eq!(ev.payload["attacker_ip"], "10.5.0.1");
    assert!(c.records_with_msg("from-a-real-container") >= 1);
    eprintln!("real docker daemon ({image}): container output collected");
}
