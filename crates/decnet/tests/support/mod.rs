//! Test support: run the real `decnet` binary (daemon or CLI) against a
//! socket in a temp folder, and capture what it logs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_decnet");

/// Poll `cond` every 10 ms for up to `secs` seconds.
pub fn wait_until(secs: f64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A `decnet bus` child process. SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: Arc<Mutex<String>>,
    pub home: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_at(dir, &dir.join("bus.sock"), extra)
    }

    pub fn start_at(dir: &Path, socket: &Path, extra: &[&str]) -> Daemon {
        Self::start_wrapped(&[], dir, socket, extra)
    }

    /// Start the daemon under a wrapper command, e.g. `prlimit --nofile=32 --`.
    pub fn start_wrapped(wrapper: &[&str], dir: &Path, socket: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .arg("bus")
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("DECNET_HOME", dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn decnet bus");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let d = Daemon { child, socket: socket.to_path_buf(), log, home: dir.to_path_buf() };
        assert!(wait_until(10.0, || d.log().contains("bus listening")), "daemon did not start; log:\n{}", d.log());
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        send_signal(self.pid(), "TERM");
        wait_exit(&mut self.child, 10.0).expect("daemon did not exit after SIGTERM")
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_hard();
        }
    }
}

pub fn wait_exit(child: &mut Child, secs: f64) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(secs, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Send a signal by name (`TERM`, `INT`, `KILL`) with the `kill` command,
/// which keeps tests free of unsafe code.
pub fn send_signal(pid: i32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Run `decnet <args>` to completion with `DECNET_BUS_SOCKET` set.
pub fn decnet(socket: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("DECNET_BUS_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn decnet");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The SDK's example worker binary (`decnet-bus/examples/heartbeat_worker.rs`),
/// built if needed: examples are not built for this crate's tests.
pub fn example_worker() -> PathBuf {
    let target_debug = Path::new(BIN).parent().unwrap().to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--example", "heartbeat_worker", "-p", "decnet-bus"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the example failed");
    let bin = target_debug.join("examples").join("heartbeat_worker");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A free TCP port on 127.0.0.1 (bound then released: good enough for a
/// test that binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port free for TCP and UDP alike (the collector binds both).
pub fn free_tcp_udp_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One RFC 5424 line as the fleet's deckies write it (relay@55555 SD).
pub fn relay_line(decky: &str, app: &str, msgid: &str, sd: &str, msg: &str) -> String {
    format!("<134>1 2026-12-02T16:10:00.000000Z {decky} {app} - {msgid} [relay@55555 {sd}] {msg}")
}

/// One session line as `decnet-decky` writes it (its own RFC 5424
/// formatter, now, with `src_ip`/`src_port` first), octet-counted the way
/// deckies frame lines on the collector's socket.
pub fn decky_line(decky: &str, src_ip: &str, app: &str, msgid: &str, params: &[(&str, &str)]) -> Vec<u8> {
    use decnet::events::rfc5424::{format_event, RelayEvent, Severity};
    let mut all = vec![("src_ip".to_string(), src_ip.to_string()), ("src_port".to_string(), "50000".to_string())];
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let line = format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Info,
        host: decky.into(),
        app: app.into(),
        msgid: msgid.into(),
        params: all,
        msg: None,
    });
    format!("{} {line}", line.len()).into_bytes()
}

/// Poll until a TCP connect to `addr` succeeds (`true`) or `secs` pass.
pub fn wait_tcp(addr: std::net::SocketAddr, secs: f64) -> bool {
    wait_until(secs, || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
}

/// True when a TCP socket listens on `addr` (IPv4), read from
/// /proc/net/tcp: unlike a connect, this leaves no trace on a honeypot.
pub fn tcp_listening(addr: std::net::SocketAddr) -> bool {
    let std::net::IpAddr::V4(ip) = addr.ip() else { return false };
    // The kernel prints the address as the in-memory u32, port in hex.
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), addr.port());
    let any = format!("00000000:{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() > 3 && cols[3] == "0A" && (cols[1] == local || cols[1] == any)
    })
}

/// How a TCP connect to `addr` ends: `Ok` when accepted, the error kind
/// otherwise (`ConnectionRefused` for a closed port on loopback).
pub fn tcp_connect(addr: std::net::SocketAddr) -> Result<(), std::io::ErrorKind> {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(drop).map_err(|e| e.kind())
}

/// A real OpenSSH client logging in with a password through `sshpass`
/// and running `command`: no host-key prompts, no keys offered, bounded
/// by ConnectTimeout and `timeout 30`.
pub fn sshpass(password: &str, host: &str, port: u16, user: &str, command: &str) -> std::process::Output {
    Command::new("timeout")
        .args(["30", "sshpass", "-p", password, "ssh", "-p", &port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "ConnectTimeout=5", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"])
        .arg(format!("{user}@{host}"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run sshpass ssh (installed by scripts/test.sh)")
}

/// The direct children of `pid` with their command lines, from /proc.
pub fn child_processes(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
            out.push((child, cmdline));
        }
    }
    out
}

/// Everything `child` writes to stdout and stderr, line by line, as it
/// comes (both must be piped).
pub fn capture_output(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().expect("stdout piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr piped")),
    ] {
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
    }
    out
}

/// `decnet up` as a user runs it: its own `$DECNET_HOME`, the API on
/// `--listen 127.0.0.1:<free port>`, everything else derived from the home
/// unless `env` says otherwise. Output (stdout and stderr) is captured;
/// SIGINT then SIGKILL on drop.
pub struct Up {
    pub child: Child,
    pub out: Arc<Mutex<String>>,
    pub home: PathBuf,
    pub url: String,
}

impl Up {
    pub fn start(home: &Path, env: &[(&str, &str)]) -> Up {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .env("DECNET_HOME", home)
            .env_remove("DECNET_BUS_SOCKET")
            .env_remove("DECNET_DB")
            .env_remove("DECNET_INGEST_LOG_FILE")
            .env_remove("DECNET_NATIVE_PORT_OFFSET")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Up::spawn(cmd, home, format!("http://127.0.0.1:{port}/"))
    }

    /// Runs `cmd` (a `decnet up` the caller configured, on `home`, serving
    /// `url`), captures its output and waits until it is up.
    pub fn spawn(mut cmd: Command, home: &Path, url: String) -> Up {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn decnet up");
        let out = capture_output(&mut child);
        let up = Up { child, out, home: home.to_path_buf(), url };
        assert!(wait_until(60.0, || up.output().contains("Press Ctrl-C")), "decnet up did not start:\n{}", up.output());
        up
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The generated admin password `up` prints once, last, in a box
    /// (a few lines after "Press Ctrl-C", so it is waited for).
    pub fn admin_password(&self) -> String {
        assert!(wait_until(10.0, || self.output().contains("Sign in as admin / ")), "password printed");
        let out = self.output();
        let line = out.lines().find(|l| l.contains("Sign in as admin / ")).unwrap();
        line.split("admin / ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
    }

    pub fn socket(&self) -> PathBuf {
        self.home.join("bus.sock")
    }

    pub fn db(&self) -> PathBuf {
        self.home.join("decnet.db")
    }

    /// The deckies `up` printed: name → (address, [(service, port)]) for
    /// the services that are served (the ones printed as `svc:port`).
    pub fn deckies(&self) -> std::collections::BTreeMap<String, (String, Vec<(String, u16)>)> {
        let out = self.output();
        let mut deckies = std::collections::BTreeMap::new();
        let Some(start) = out.find("deckies (native honeypots") else { return deckies };
        for line in out[start..].lines().skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 2 || words[1].parse::<std::net::IpAddr>().is_err() {
                break;
            }
            let served = words[2..]
                .iter()
                .filter_map(|w| w.split_once(':'))
                .filter_map(|(s, p)| Some((s.to_string(), p.parse().ok()?)))
                .collect();
            deckies.insert(words[0].to_string(), (words[1].to_string(), served));
        }
        deckies
    }

    /// The pid of `up`'s supervised child running `decnet <worker>`.
    pub fn worker_pid(&self, worker: &str) -> Option<u32> {
        child_processes(self.pid())
            .into_iter()
            .find(|(_, cmd)| cmd.split_whitespace().nth(1) == Some(worker))
            .map(|(pid, _)| pid)
    }

    /// The `decnet` CLI next to this stack: only `DECNET_HOME` set.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("DECNET_HOME", &self.home)
            .env_remove("DECNET_BUS_SOCKET")
            .env_remove("DECNET_DB")
            .stdin(Stdio::null())
            .output()
            .expect("spawn decnet")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id() as i32, "INT");
            let _ = wait_exit(&mut self.child, 15.0);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The chromedriver of a [`browser`] session. On drop it is killed, and so
/// is every process started with this session's own `--user-data-dir`: a
/// test that panics before `close()` would otherwise leave a Chromium
/// behind (killing chromedriver does not end the browser it started).
pub struct Driver {
    driver: Proc,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.driver.0.kill();
        let _ = self.driver.0.wait();
        let marker = format!("--user-data-dir={}", self.profile.display());
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for entry in procs.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).split('\0').any(|arg| arg == marker) {
                send_signal(pid, "KILL");
            }
        }
    }
}

/// A chromedriver on a free port and a headless Chromium session through
/// it (fresh profile under `dir`, no background networking: the machine's
/// network is closed).
pub async fn browser(dir: &Path) -> (Driver, fantoccini::Client) {
    let driver_port = free_port();
    let driver = Proc(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed by scripts/test.sh"),
    );
    let profile = dir.join("chromium-profile");
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,900", format!("--user-data-dir={}", profile.display())]
        }
    }))
    .unwrap();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    for _ in 0..100 {
        if let Ok(c) = fantoccini::ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            return (Driver { driver, profile }, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no chromedriver session");
}

/// The text of the first element matching `css`, empty when there is none.
pub async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    match b.find(fantoccini::Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Poll until the element's text satisfies `ok` (20 s cap, for a loaded CI box).
pub async fn wait_text(b: &fantoccini::Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = text_of(b, css).await;
        if ok(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "{css} never showed what was expected; last text {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Click the first element matching `css` on a page that re-renders live
/// (SSE updates replace table rows): an element found just before a
/// re-render is stale by the time it is clicked, so find and click again
/// until one click lands (20 s cap).
pub async fn click_live(b: &fantoccini::Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clicked = match b.find(fantoccini::Locator::Css(css)).await {
            Ok(e) => e.click().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match clicked {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "{css} could not be clicked: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
