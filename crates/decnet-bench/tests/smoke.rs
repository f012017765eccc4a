//! `decnet-bench` against a real bus daemon (in this process, on a real
//! UNIX socket) and a real nats-server on loopback: a check that the tool
//! speaks both protocols and counts deliveries right, never of speed.

use decnet_bus::server::{BusServer, ServerConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_decnet-bench");

/// A bus daemon on its own thread and runtime, like `decnet bus` runs it.
struct Bus {
    socket: PathBuf,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus.sock");
        let mut config = ServerConfig::new(&socket);
        // A queue larger than the runs: this checks counting, not speed.
        config.queue_capacity = 8192;
        config.heartbeat_interval = Duration::from_millis(200);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let server = BusServer::bind(config).unwrap();
                ready_tx.send(()).unwrap();
                server.run(token).await.unwrap();
            });
        });
        ready_rx.recv().expect("the bus bound its socket");
        Bus { socket, stop, thread: Some(thread), _dir: dir }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Nats(Child, u16);

impl Nats {
    fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server installed (scripts/test.sh installs it)");
        // Dropped (killed and waited for) on every path, including the panic.
        let nats = Nats(child, port);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nats;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nats-server did not start");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench(args: &[&str], socket: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(s) = socket {
        cmd.arg("--socket").arg(s);
    }
    let out = cmd.output().expect("run decnet-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "decnet-bench {args:?} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn summary(stdout: &str) -> &str {
    stdout.lines().find(|l| l.starts_with("summary ")).expect("a summary line")
}

fn field<'a>(summary: &'a str, key: &str) -> Option<&'a str> {
    summary.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn bus_throughput_counts_every_event() {
    let bus = Bus::start();
    let out = bench(&["--msgs", "2000", "--subs", "2"], Some(&bus.socket));
    let s = summary(&out);
    assert_eq!(field(s, "target"), Some("bus"));
    assert_eq!(field(s, "published"), Some("2000"));
    assert_eq!(field(s, "expected"), Some("4000"));
    assert_eq!(field(s, "delivered"), Some("4000"), "{out}");
    assert_eq!(field(s, "daemon_dropped"), Some("0"), "{out}");
}

#[test]
fn bus_latency_mode_records_every_event() {
    let bus = Bus::start();
    let out = bench(&["--rate", "2000", "--secs", "0.5"], Some(&bus.socket));
    let s = summary(&out);
    assert_eq!(
        (field(s, "mode"), field(s, "published"), field(s, "delivered")),
        (Some("latency"), Some("1000"), Some("1000")),
        "{out}"
    );
    let p99: f64 = field(s, "p99_us").unwrap().parse().unwrap();
    assert!(p99 > 0.0, "{out}");
}

/// Both pacings of the latency publisher send every event, and the floor
/// mode (no server) records one sample per event through its relays.
#[test]
fn spin_pacing_and_the_floor_mode_record_every_event() {
    let bus = Bus::start();
    let out = bench(&["--rate", "2000", "--secs", "0.25", "--pace", "spin"], Some(&bus.socket));
    let s = summary(&out);
    assert_eq!((field(s, "pace"), field(s, "delivered")), (Some("spin"), Some("500")), "{out}");
    for hops in ["1", "3"] {
        let out = bench(&["floor", "--rate", "2000", "--secs", "0.25", "--hops", hops], None);
        let s = summary(&out);
        assert_eq!(
            (field(s, "target"), field(s, "hops"), field(s, "samples")),
            (Some("floor"), Some(hops), Some("500"))
        );
        let p50: f64 = field(s, "p50_us").unwrap().parse().unwrap();
        assert!(p50 > 0.0 && p50 < 1e6, "{out}");
    }
}

#[test]
fn nats_is_loaded_with_the_raw_protocol() {
    let nats = Nats::start();
    let url = format!("nats://127.0.0.1:{}", nats.1);
    let out = bench(
        &["--nats", &url, "--msgs", "2000", "--subs", "2", "--idle-subs-conns", "1", "--idle-subs-per-conn", "50"],
        None,
    );
    let s = summary(&out);
    assert_eq!((field(s, "target"), field(s, "delivered")), (Some("nats"), Some("4000")), "{out}");
    let out = bench(&["--nats", &url, "--rate", "2000", "--secs", "0.5"], None);
    let s = summary(&out);
    assert_eq!(field(s, "delivered"), Some("1000"), "{out}");
    assert!(field(s, "p99_us").is_some(), "{out}");
}

#[test]
fn unreachable_targets_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(BIN).args(["--msgs", "10", "--socket"]).arg(dir.path().join("nobody.sock")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to the bus"), "{out:?}");
}

#[test]
fn soak_reports_memory_and_latency_for_each_load() {
    let bus = Bus::start();
    let pid = std::process::id().to_string();
    let out =
        bench(&["soak", "--pid", &pid, "--secs", "0.5", "--loads", "hostile-frames,big-patterns"], Some(&bus.socket));
    for load in ["baseline", "hostile-frames", "big-patterns"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("| {load} |")))
            .unwrap_or_else(|| panic!("no row for {load}:\n{out}"));
        let rss: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!(rss > 0.0, "{row}");
    }
    assert!(out.contains("VmHWM"), "{out}");
}
