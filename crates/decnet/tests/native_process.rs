//! The native driver through the real binary: a `decnet mutator --driver
//! native` daemon, a one-shot `decnet deploy` whose deckies the daemon
//! opens on its next pass, a real OpenSSH login whose lines reach a
//! collector-side receiver, and a host key that survives a restart.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use support::{send_signal, wait_exit, wait_until, Daemon, BIN};

const SSH_PORT: u16 = 10_022;
const IP: &str = "127.1.13.1";

/// Collector side of the wire: octet-counted frames, appended to `lines`.
fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(space) = buf.iter().position(|b| *b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
                        if buf.len() < space + 1 + len {
                            break;
                        }
                        sink.lock().unwrap().push(String::from_utf8_lossy(&buf[space + 1..space + 1 + len]).into());
                        buf.drain(..space + 1 + len);
                    }
                }
            });
        }
    });
    (addr, lines)
}

fn env<'a>(cmd: &'a mut Command, home: &std::path::Path, collector: std::net::SocketAddr) -> &'a mut Command {
    cmd.env("DECNET_HOME", home)
        .env("DECNET_DB", home.join("decnet.db"))
        .env("DECNET_BUS_SOCKET", home.join("bus.sock"))
        .env("DECNET_INGEST_LOG_FILE", home.join("ingest.log"))
        .env("DECNET_COLLECTOR_ADDR", collector.to_string())
        .env("DECNET_NATIVE_PORT_OFFSET", "10000")
        .env("DECNET_MUTATOR_DRIVER", "native")
}

/// A child process that is killed if the test ends early (a panic), so
/// no daemon outlives its test holding a port.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_mutator(home: &std::path::Path, collector: std::net::SocketAddr) -> Killed {
    Killed(Some(
        env(Command::new(BIN).args(["mutator", "--poll-secs", "1", "--heartbeat-secs", "1"]), home, collector)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ))
}

fn stop(mut guard: Killed) {
    let Some(mut child) = guard.0.take() else { return };
    send_signal(child.id() as i32, "TERM");
    if wait_exit(&mut child, 10.0).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn ssh_accepts() -> bool {
    std::net::TcpStream::connect((IP, SSH_PORT)).is_ok()
}

fn host_key() -> String {
    let out = Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519", "-p", &SSH_PORT.to_string(), IP])
        .stderr(Stdio::null())
        .output()
        .expect("ssh-keyscan comes with openssh-client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_deployed_native_fleet_answers_ssh_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, lines) = receiver();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(&fleet, format!("[[decky]]\nname = \"gate\"\nservices = [\"ssh\"]\naddress = \"{IP}\"\n")).unwrap();

    let _bus = Daemon::start(dir.path(), &[]);
    // The one-shot deploy first: two processes migrating a brand-new
    // database at the same instant is not what this test is about.
    let deploy =
        env(Command::new(BIN).args(["deploy", "--config"]).arg(&fleet), dir.path(), collector).output().unwrap();
    assert!(deploy.status.success(), "{deploy:?}");
    let mutator = start_mutator(dir.path(), collector);
    assert!(wait_until(10.0, ssh_accepts), "the daemon did not open the deployed decky's ssh port");

    // The decky's persona takes a source's password on its 2nd to 5th
    // attempt (one attempt per connection here), the last one guessed.
    let login = |password: &str| {
        Command::new("sshpass")
            .args(["-p", password, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "PubkeyAuthentication=no"])
            .args(["-o", "NumberOfPasswordPrompts=1", "-p", &SSH_PORT.to_string(), &format!("deploy@{IP}"), "whoami"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mut out = login("Spring2024!");
    for _ in 0..5 {
        if out.status.success() {
            break;
        }
        out = login("Winter2024!");
    }
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deploy\n");
    let seen = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    assert!(
        wait_until(10.0, || seen("secret_b64=\"V2ludGVyMjAyNCE=\"") && seen("CMD whoami") && seen("session_recorded")),
        "lines: {:?}",
        lines.lock().unwrap()
    );
    assert!(lines.lock().unwrap().iter().all(|l| l.contains(" gate ssh - ")), "HOST = decky, APP = service");

    // The mutator's heartbeat carries the native counters.
    // Bounded: `timeout` ends the subscriber if no heartbeat ever comes.
    let health = Command::new("timeout")
        .args(["20", BIN, "sub", "system.mutator.health", "--count", "1"])
        .env("DECNET_BUS_SOCKET", dir.path().join("bus.sock"))
        .output()
        .unwrap();
    assert!(health.status.success(), "{health:?}");
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let native = &health["payload"]["native"];
    assert_eq!(health["payload"]["driver"], "native");
    assert_eq!(native["listeners"], 1, "{health}");
    assert!(native["lines_sent"].as_u64().unwrap() >= 5, "{health}");
    assert_eq!(native["lines_dropped"], 0, "{health}");

    // The host key is derived from a seed kept in DECNET_HOME: a restarted
    // daemon presents the same one.
    let before = host_key();
    assert!(before.contains("ssh-ed25519"), "{before:?}");
    stop(mutator);
    assert!(wait_until(5.0, || !ssh_accepts()), "ports close with the daemon");
    let mutator = start_mutator(dir.path(), collector);
    assert!(wait_until(10.0, ssh_accepts), "the restarted daemon reopens the decky");
    assert_eq!(host_key(), before);

    // A one-shot teardown: the daemon closes the port on its next pass.
    let teardown = env(Command::new(BIN).args(["teardown", "--all", "--yes"]), dir.path(), collector).output().unwrap();
    assert!(teardown.status.success(), "{teardown:?}");
    assert!(wait_until(10.0, || !ssh_accepts()), "the torn-down decky still listens");
    stop(mutator);
}

/// `serving` of every decky (what `decnet deckies` and the fleet page show).
fn serving(db: &std::path::Path) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let rows: Vec<Option<String>> =
            sqlx::query_scalar("SELECT serving FROM fleet_deckies").fetch_all(&pool).await.unwrap_or_default();
        pool.close().await;
        rows.into_iter().flatten().collect()
    })
}

/// Deploy deckies `lim-NN` with http + ftp at 127.1.15.NN for each NN in
/// `range` (the deckies already there stay).
fn deploy_lim(home: &std::path::Path, collector: std::net::SocketAddr, range: std::ops::RangeInclusive<u32>) {
    let mut fleet = String::new();
    for i in range {
        fleet.push_str(&format!(
            "[[decky]]\nname = \"lim-{i:02}\"\nservices = [\"http\", \"ftp\"]\naddress = \"127.1.15.{i}\"\n"
        ));
    }
    let fleet_file = home.join("fleet.toml");
    std::fs::write(&fleet_file, fleet).unwrap();
    let deploy =
        env(Command::new(BIN).args(["deploy", "--wait-secs", "0", "--config"]).arg(&fleet_file), home, collector)
            .output()
            .unwrap();
    assert!(deploy.status.success(), "{deploy:?}");
}

/// Deploy 40 deckies × http + ftp (80 listening sockets) at 127.1.15.1-40
/// and start the mutator under a limit of 60 open files for the whole
/// daemon, with `--native-shared-ports share`. Returns the home, the
/// daemon and its log's path.
fn fleet_over_a_limit_of_60(share: &str) -> (tempfile::TempDir, Daemon, Killed, std::path::PathBuf) {
    fleet_under_limit(share, 60, 1..=40).0
}

/// As [`fleet_over_a_limit_of_60`] with a limit of `limit` files and the
/// deckies of `range`; also returns the collector address.
fn fleet_under_limit(
    share: &str,
    limit: u32,
    range: std::ops::RangeInclusive<u32>,
) -> ((tempfile::TempDir, Daemon, Killed, std::path::PathBuf), std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let (collector, _lines) = receiver();
    let bus = Daemon::start(dir.path(), &[]);
    deploy_lim(dir.path(), collector, range);

    // setpriv drops CAP_SYS_RESOURCE, so the daemon cannot lift the hard
    // limit prlimit sets even where the test runs with that capability.
    let log_path = dir.path().join("mutator.log");
    let mutator = Killed(Some(
        env(
            Command::new("setpriv")
                .args(["--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource"])
                .arg("prlimit")
                .arg(format!("--nofile={limit}:{limit}"))
                .args(["--", BIN, "mutator", "--poll-secs", "1"])
                .args(["--native-shared-ports", share]),
            dir.path(),
            collector,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap(),
    ));
    ((dir, bus, mutator, log_path), collector)
}

#[test]
fn a_fleet_over_the_open_file_limit_is_said_up_front_and_each_decky_past_it_names_the_cause() {
    let (dir, _bus, mutator, log_path) = fleet_over_a_limit_of_60("never");
    let said = "the fleet's 80 services need at least 144 open files";
    assert!(
        wait_until(20.0, || std::fs::read_to_string(&log_path).unwrap_or_default().contains(said)),
        "no up-front word on the file limit:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let db = dir.path().join("decnet.db");
    assert!(
        wait_until(30.0, || serving(&db).iter().any(|s| s.contains("out of file descriptors"))),
        "no decky names the file limit as its cause: {:?}",
        serving(&db)
    );
    // The deckies within the limit serve.
    assert!(std::net::TcpStream::connect(("127.1.15.1", 10_080)).is_ok(), "the first decky does not listen");
    stop(mutator);
}

#[test]
fn a_fleet_over_the_open_file_limit_shares_one_socket_per_port_and_every_decky_serves() {
    let (dir, _bus, mutator, log_path) = fleet_over_a_limit_of_60("auto");
    let db = dir.path().join("decnet.db");
    let all_ok = || {
        let s = serving(&db);
        s.len() == 40 && s.iter().all(|s| s == "ok")
    };
    assert!(
        wait_until(30.0, all_ok),
        "not every decky serves: {:?}\n{}",
        serving(&db),
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("share one listening socket per port"), "sharing is not said:\n{log}");
    // Every decky answers at its own address, ftp with its banner.
    for i in [1, 20, 40] {
        let mut ftp = std::net::TcpStream::connect(("127.1.15.".to_string() + &i.to_string(), 10_021)).unwrap();
        ftp.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut banner = [0u8; 4];
        ftp.read_exact(&mut banner).unwrap();
        assert_eq!(&banner, b"220 ", "decky {i}");
        let http = std::net::TcpStream::connect(("127.1.15.".to_string() + &i.to_string(), 10_080));
        assert!(http.is_ok(), "decky {i}'s http");
    }
    // An address with no decky on the shared port is reset, not served.
    let mut stray = std::net::TcpStream::connect(("127.1.15.99", 10_021)).unwrap();
    stray.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let read = stray.read_to_end(&mut got);
    assert!(read.is_err() || got.is_empty(), "127.1.15.99 has no decky but answered {got:?}");
    stop(mutator);
}

#[test]
fn deckies_with_sockets_of_their_own_move_to_shared_ones_when_the_fleet_outgrows_the_limit() {
    // 20 deckies × 2 = 40 sockets fit under 200 files; 80 deckies do not.
    let ((dir, _bus, mutator, log_path), collector) = fleet_under_limit("auto", 200, 1..=20);
    let db = dir.path().join("decnet.db");
    let served = |n: usize| {
        let db = db.clone();
        move || serving(&db).iter().filter(|s| s.as_str() == "ok").count() == n
    };
    assert!(wait_until(30.0, served(20)), "the first 20 do not serve: {:?}", serving(&dir.path().join("decnet.db")));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log().contains("share one listening socket"), "shared before it had to:\n{}", log());
    let own = std::fs::read_to_string("/proc/net/tcp").unwrap();
    assert!(
        own.contains(&format!("{:08X}:{:04X}", u32::from_le_bytes([127, 1, 15, 1]), 10_080)),
        "decky 1 has no socket of its own"
    );

    deploy_lim(dir.path(), collector, 1..=80);
    assert!(wait_until(30.0, served(80)), "not all 80 serve: {:?}\n{}", serving(&dir.path().join("decnet.db")), log());
    assert!(log().contains("moving loopback deckies onto the shared sockets"), "{}", log());
    // The first deckies moved (their own sockets are gone) and still answer.
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let own = format!("{:08X}:{:04X} 00000000:0000 0A", u32::from_le_bytes([127, 1, 15, 1]), 10_080);
    assert!(
        !tcp.contains(&own),
        "decky 1 kept its own socket: {}",
        tcp.lines().filter(|l| l.contains(&own[..13])).collect::<Vec<_>>().join("\n")
    );
    for i in [1, 20, 21, 80] {
        let at = format!("127.1.15.{i}:10021");
        let mut ftp = std::net::TcpStream::connect(&at).unwrap();
        ftp.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut banner = [0u8; 4];
        ftp.read_exact(&mut banner).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(&banner, b"220 ", "{at}");
    }
    stop(mutator);
}
