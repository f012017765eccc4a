//! The done-criteria of issues 11 and 12, through the real `decnet up`
//! and real clients from 127.0.0.1, nothing inserted by hand:
//!
//! - a headless Chromium signed in to the dashboard sees the demo fleet
//!   on its first screen; then an OpenSSH login to web-01 and a curl to
//!   ws-finance show ONE attacker with a 2-decky traversal on the live
//!   Attackers page within 2 s, and a second attacker (from 127.0.0.2)
//!   shows on the open first screen within 2 s;
//! - that SSH login, that HTTP request, a telnet login to cam-lobby and an
//!   FTP login to web-01 each reach the bus as `system.log` within 1 s of
//!   the client starting, become `logs` rows in the SQLite file, and the
//!   passwords become `credentials` (sha256) with `credential.captured`;
//!   no clear password is in the database, the ingest logs or the stack's
//!   output;
//! - the profiler SIGKILLed and restarted by `up` publishes no second
//!   `attacker.observed` for the attacker, while it still scores new events;
//! - `decnet mutate web-01` closes a removed service's port (connection
//!   refused) and opens an added one on web-01's address (smtp, when
//!   drawn, answers a real SMTP AUTH that is captured too);
//! - the API (which runs the ingester) SIGKILLed and restarted by `up`:
//!   what the collector heard meanwhile is stored, and every parsed record
//!   is exactly one `logs` row.
//!
//! One test: two `decnet up` at once would fight over the demo addresses.

mod support;

use decnet_bus::client::UnixBus;
use decnet_bus::{Bus, Envelope};
use fantoccini::Locator;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{browser, send_signal, sshpass, tcp_connect, wait_text, Up};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSH_PASSWORD: &str = "ssh-Pw-q8Zr41";
const TELNET_PASSWORD: &str = "telnet-Pw-m3Xv77";
const FTP_PASSWORD: &str = "ftp-Pw-k2Jd09";
const SMTP_PASSWORD: &str = "smtp-Pw-w5Tn63";

/// Every event on the watched topics, stamped when it arrived here.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Instant, Envelope)>>>);

impl Events {
    /// Subscribe (before any client acts) and prove the subscriptions are
    /// live: the last one is `e2e.ready`, and the bus handles one
    /// connection's SUBs in order, so once it delivers all of them do.
    async fn watch(socket: &std::path::Path) -> (Events, UnixBus) {
        let bus = UnixBus::connect("e2e-watch", socket).await.unwrap();
        let events = Events::default();
        for pattern in ["system.log", "credential.>", "attacker.>", "decky.>", "e2e.ready"] {
            let mut sub = bus.subscribe_with_capacity(pattern, 100_000).await.unwrap();
            let sink = events.0.clone();
            tokio::spawn(async move {
                while let Some(env) = sub.recv().await {
                    sink.lock().unwrap().push((Instant::now(), env));
                }
            });
        }
        let publisher = UnixBus::connect("e2e-warmup", socket).await.unwrap();
        let mut ready = false;
        for _ in 0..250 {
            publisher.publish("e2e.ready", "ready", serde_json::json!({})).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            if events.count(|e| e.topic == "e2e.ready") > 0 {
                ready = true;
                break;
            }
        }
        assert!(ready, "the watcher never got its warm-up event");
        (events, bus)
    }

    fn count(&self, pred: impl Fn(&Envelope) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|(_, e)| pred(e)).count()
    }

    fn all(&self, pred: impl Fn(&Envelope) -> bool) -> Vec<Envelope> {
        self.0.lock().unwrap().iter().filter(|(_, e)| pred(e)).map(|(_, e)| e.clone()).collect()
    }

    /// The first matching event that arrived after `since`, waiting up to
    /// `secs`; returns how long after `since` it arrived.
    async fn first_after(
        &self,
        since: Instant,
        secs: f64,
        pred: impl Fn(&Envelope) -> bool,
    ) -> Option<(Duration, Envelope)> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            let found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(at, e)| *at >= since && pred(e))
                .map(|(at, e)| (at.duration_since(since), e.clone()));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A `system.log` event of `decky`/`service` with `event_type`, from us.
fn log_event(decky: &'static str, service: &'static str, event_type: &'static str) -> impl Fn(&Envelope) -> bool {
    move |e| {
        e.topic == "system.log"
            && e.payload["decky"] == decky
            && e.payload["service"] == service
            && e.payload["event_type"] == event_type
            && e.payload["attacker_ip"] == "127.0.0.1"
    }
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Assert the `system.log` event came within 1 s of the client starting
/// (the issue's functional criterion) and print the measured time.
async fn within_one_second(events: &Events, started: Instant, what: &str, pred: impl Fn(&Envelope) -> bool, up: &Up) {
    let (elapsed, env) = events
        .first_after(started, 10.0, pred)
        .await
        .unwrap_or_else(|| panic!("{what}: no system.log event within 10 s\n{}", up.output()));
    let pipeline = env.ts - env.payload["timestamp"].as_f64().unwrap_or(env.ts);
    eprintln!(
        "{what}: system.log {} ms after the client started ({} ms from the decky's line to the bus)",
        elapsed.as_millis(),
        (pipeline * 1000.0).round()
    );
    assert!(elapsed <= Duration::from_secs(1), "{what}: system.log took {elapsed:?} (> 1 s)");
}

/// Read from `s` until `needle` is in what was read (telnet negotiation
/// answered on the way), or fail after 10 s.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str, telnet: bool) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("waiting for {needle:?}; got {:?}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "closed while waiting for {needle:?}; got {:?}", String::from_utf8_lossy(&seen));
        let mut i = 0;
        while i < n {
            // Telnet: IAC WILL x → DO x, IAC DO x → WONT x (a client that
            // agrees to the server echoing and refuses everything else).
            if telnet && buf[i] == 255 && i + 2 < n && (251..=254).contains(&buf[i + 1]) {
                let answer = match buf[i + 1] {
                    251 => 253,
                    253 => 252,
                    _ => 0,
                };
                if answer != 0 {
                    s.write_all(&[255, answer, buf[i + 2]]).await.unwrap();
                }
                i += 3;
                continue;
            }
            seen.push(buf[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Read until `a` or `b` appears (telnet negotiation answered).
async fn read_until_either(s: &mut tokio::net::TcpStream, a: &str, b: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(a) && !seen.contains(b) {
        // Each read_until call returns once its needle is in what it read;
        // a short needle both end with keeps the reads small.
        seen.push_str(&read_until(s, " ", true).await);
    }
    seen
}

async fn connect(addr: SocketAddr) -> tokio::net::TcpStream {
    tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// A telnet login (user, password, tried again until the decky's auth
/// policy lets this source in) then `id` and `exit`.
async fn telnet_login(addr: SocketAddr, user: &str, password: &str) -> String {
    let mut s = connect(addr).await;
    read_until(&mut s, "login: ", true).await;
    let mut tries = 0;
    loop {
        s.write_all(format!("{user}\r\n").as_bytes()).await.unwrap();
        read_until(&mut s, "Password: ", true).await;
        s.write_all(format!("{password}\r\n").as_bytes()).await.unwrap();
        // A refusal ends with the login prompt again, a login with the shell's.
        let after = read_until_either(&mut s, "$ ", "login: ").await;
        if !after.contains("Login incorrect") {
            break;
        }
        tries += 1;
        assert!(tries < 5, "telnet never let {user} in");
    }
    s.write_all(b"id\r\n").await.unwrap();
    let out = read_until(&mut s, "$ ", true).await;
    s.write_all(b"exit\r\n").await.unwrap();
    out
}

/// An FTP login: banner, USER, PASS, QUIT; returns the reply to PASS.
async fn ftp_login(addr: SocketAddr, user: &str, password: &str) -> String {
    let mut s = connect(addr).await;
    read_until(&mut s, "220", false).await;
    s.write_all(format!("USER {user}\r\n").as_bytes()).await.unwrap();
    read_until(&mut s, "331", false).await;
    s.write_all(format!("PASS {password}\r\n").as_bytes()).await.unwrap();
    let reply = read_until(&mut s, "\r\n", false).await;
    s.write_all(b"QUIT\r\n").await.unwrap();
    read_until(&mut s, "221", false).await;
    reply
}

/// An SMTP session: banner, EHLO, AUTH PLAIN, QUIT; returns the AUTH reply.
async fn smtp_auth(addr: SocketAddr, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let mut s = connect(addr).await;
    read_until(&mut s, "220", false).await;
    s.write_all(b"EHLO attacker.example\r\n").await.unwrap();
    read_until(&mut s, "250 ", false).await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    s.write_all(format!("AUTH PLAIN {token}\r\n").as_bytes()).await.unwrap();
    let reply = read_until(&mut s, "\r\n", false).await;
    s.write_all(b"QUIT\r\n").await.unwrap();
    read_until(&mut s, "221", false).await;
    reply
}

fn curl(url: &str) -> std::process::Output {
    std::process::Command::new("curl").args(["-s", "-m", "10", url]).output().expect("curl is installed")
}

/// Poll the SQLite file until `sql` (one COUNT) reaches `at_least`.
async fn wait_count(pool: &sqlx::SqlitePool, sql: &str, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decnet_up_hears_real_clients_and_the_dashboard_shows_the_attacker() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let collector = format!("127.0.0.1:{}", support::free_port());
    let up = Up::start(&home, &[("DECNET_COLLECTOR_LISTEN", &collector)]);
    let deckies = up.deckies();
    let served = |decky: &str, service: &str| -> SocketAddr {
        let (address, services) = deckies.get(decky).unwrap_or_else(|| panic!("{decky} not printed:\n{}", up.output()));
        let port = services
            .iter()
            .find(|(s, _)| s == service)
            .unwrap_or_else(|| panic!("{decky} has no {service}:\n{}", up.output()))
            .1;
        format!("{address}:{port}").parse().unwrap()
    };
    let ssh = served("web-01", "ssh");
    let ftp = served("web-01", "ftp");
    let http = served("ws-finance", "http");
    let telnet = served("cam-lobby", "telnet");
    assert_eq!(ssh.ip().to_string(), "127.1.0.1");
    assert_eq!(http.ip().to_string(), "127.1.0.2");
    assert_eq!(telnet.ip().to_string(), "127.1.0.4");
    // `up` uses the well-known ports when it can bind them, else +10000.
    let offset = ssh.port() - 22;
    assert!(offset == 0 || offset == 10_000, "{ssh}");
    eprintln!("deckies as printed by up (port offset {offset}): {deckies:?}");
    // The deployed listeners come up on the mutator's first pass (looked
    // up in /proc: a test connect would already make 127.0.0.1 an attacker).
    for addr in [ssh, ftp, http, telnet] {
        assert!(support::wait_until(20.0, || support::tcp_listening(addr)), "{addr} never listened\n{}", up.output());
    }
    let watching_since = Instant::now();
    let (events, _watch) = Events::watch(&up.socket()).await;

    // --- the dashboard: the fleet, the first screen (overview), then the live Attackers page ---
    let (_driver, b) = browser(dir.path()).await;
    b.goto(&up.url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(&up.admin_password()).await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    wait_text(&b, "#who", |t| t.contains("admin")).await;
    b.goto(&format!("{}#fleet", up.url)).await.unwrap();
    let web = wait_text(&b, "#decky-web-01", |t| t.contains("127.1.0.1")).await;
    assert!(web.contains("ssh") && web.contains("http") && web.contains("ftp"), "{web}");
    // `up`'s mutator serves them: every service is shown listening.
    let web = wait_text(&b, "#decky-web-01", |t| t.contains("ssh:") && !t.contains("pending")).await;
    assert!(web.contains("listening") && !web.contains("down"), "{web}");
    assert!(web.contains("creation"), "the demo fleet's creation is in the mutation history: {web}");
    for (decky, address) in [("ws-finance", "127.1.0.2"), ("db-02", "127.1.0.3"), ("cam-lobby", "127.1.0.4")] {
        wait_text(&b, &format!("#decky-{decky}"), |t| t.contains(address)).await;
    }
    b.goto(&format!("{}#overview", up.url)).await.unwrap();
    wait_text(&b, "#recent-empty", |t| t.contains("No attackers yet")).await;
    b.goto(&format!("{}#attackers", up.url)).await.unwrap();
    wait_text(&b, "#live", |t| t.to_lowercase().contains("● live")).await;

    // --- an SSH login on web-01 (real OpenSSH client) ---
    // The decky takes a source's password on its 2nd to 5th attempt (the
    // persona's auth policy), so the attacker tries again, as they do.
    let mut started = Instant::now();
    let mut out = None;
    for _ in 0..6 {
        started = Instant::now();
        let port = ssh.port();
        let attempt =
            tokio::task::spawn_blocking(move || sshpass(SSH_PASSWORD, "127.1.0.1", port, "admin", "uname -a"))
                .await
                .unwrap();
        let done = attempt.status.success();
        out = Some(attempt);
        if done {
            break;
        }
    }
    let out = out.unwrap();
    eprintln!("ssh login + command took {} ms", started.elapsed().as_millis());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Linux web-01"),
        "the fake shell answered: {out:?}\n{}",
        up.output()
    );
    within_one_second(&events, started, "ssh login_attempt", log_event("web-01", "ssh", "login_attempt"), &up).await;
    within_one_second(&events, started, "ssh command", log_event("web-01", "ssh", "command"), &up).await;

    // --- an HTTP request on ws-finance (curl) ---
    let started = Instant::now();
    let url = format!("http://{http}/");
    let out = tokio::task::spawn_blocking(move || curl(&url)).await.unwrap();
    let after_http = Instant::now();
    // The persona's server's default page (IIS for this Windows
    // workstation), which never names the decky.
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains("<title>") && page.contains("</html>"), "{out:?}");
    assert!(!page.contains("ws-finance"), "{page}");
    within_one_second(&events, started, "http request", log_event("ws-finance", "http", "request"), &up).await;

    // The dashboard shows ONE attacker with the 2-decky traversal, live.
    let row = wait_text(&b, r#"#attackers tr[data-ip="127.0.0.1"] .traversal"#, |t| t == "web-01 → ws-finance").await;
    let shown = after_http.elapsed();
    eprintln!("dashboard showed the 2-decky traversal {} ms after the HTTP request", shown.as_millis());
    assert_eq!(row, "web-01 → ws-finance");
    assert_eq!(b.find_all(Locator::Css("#attackers tbody tr")).await.unwrap().len(), 1, "one attacker");
    assert!(shown <= Duration::from_secs(2), "the traversal took {shown:?} (> 2 s) to show on the dashboard");
    let sse = b.find(Locator::Id("events")).await.unwrap().html(true).await.unwrap();
    // The page logs each SSE event it gets (the 5 s poll logs nothing):
    // the attacker came over the live stream.
    assert!(
        sse.contains("attacker.observed") && sse.contains(r#""attacker_ip":"127.0.0.1""#),
        "attacker.observed for 127.0.0.1 arrived over SSE: {sse}"
    );
    // And on the first screen.
    b.goto(&format!("{}#overview", up.url)).await.unwrap();
    wait_text(&b, r#"#recent-attackers tr[data-ip="127.0.0.1"]"#, |t| t.contains("web-01 → ws-finance")).await;
    // The first screen is live too: a second attacker (another loopback
    // source address) shows while the browser stays on it.
    let started = Instant::now();
    let url = format!("http://{http}/");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl").args(["-s", "-m", "10", "--interface", "127.0.0.2", &url]).output().unwrap()
    })
    .await
    .unwrap();
    // The persona's server's default page (IIS for this Windows
    // workstation), which never names the decky.
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains("<title>") && page.contains("</html>"), "{out:?}");
    assert!(!page.contains("ws-finance"), "{page}");
    let second = wait_text(&b, r#"#recent-attackers tr[data-ip="127.0.0.2"]"#, |t| t.contains("ws-finance")).await;
    let shown = started.elapsed();
    // One request is two actions (connect, request): too few to classify.
    assert!(second.contains("unknown"), "one HTTP request has no behaviour class yet: {second}");
    eprintln!("a second attacker showed on the open first screen {} ms after its request", shown.as_millis());
    assert!(shown <= Duration::from_secs(2), "the second attacker took {shown:?} (> 2 s) to show on the first screen");
    let shot = b.screenshot().await.unwrap();
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("up-senses-fleet.png"), shot).unwrap();

    // --- a telnet login on cam-lobby ---
    let started = Instant::now();
    let out = telnet_login(telnet, "admin", TELNET_PASSWORD).await;
    assert!(out.contains("uid="), "the fake shell ran id: {out:?}");
    within_one_second(&events, started, "telnet login_attempt", log_event("cam-lobby", "telnet", "login_attempt"), &up)
        .await;

    // --- an FTP login on web-01 ---
    let started = Instant::now();
    let reply = ftp_login(ftp, "backup", FTP_PASSWORD).await;
    eprintln!("ftp PASS reply: {}", reply.trim());
    within_one_second(&events, started, "ftp login_attempt", log_event("web-01", "ftp", "login_attempt"), &up).await;

    // --- rows in the real SQLite file; credentials hashed, captured on the bus ---
    let pool = decnet::store::open(&up.db()).await.unwrap();
    for (decky, service, event_type) in [
        ("web-01", "ssh", "login_attempt"),
        ("web-01", "ssh", "command"),
        ("ws-finance", "http", "request"),
        ("cam-lobby", "telnet", "login_attempt"),
        ("web-01", "ftp", "login_attempt"),
    ] {
        let sql = format!(
            "SELECT COUNT(*) FROM logs WHERE decky = '{decky}' AND service = '{service}' \
             AND event_type = '{event_type}' AND attacker_ip = '127.0.0.1'"
        );
        assert!(wait_count(&pool, &sql, 1).await >= 1, "no logs row for {decky}/{service}/{event_type}");
    }
    for (decky, service, user, password) in [
        ("web-01", "ssh", "admin", SSH_PASSWORD),
        ("cam-lobby", "telnet", "admin", TELNET_PASSWORD),
        ("web-01", "ftp", "backup", FTP_PASSWORD),
    ] {
        let digest = sha256_hex(password);
        let sql = format!(
            "SELECT COUNT(*) FROM credentials WHERE decky = '{decky}' AND service = '{service}' \
             AND username = '{user}' AND secret_sha256 = '{digest}' AND attacker_ip = '127.0.0.1'"
        );
        assert_eq!(wait_count(&pool, &sql, 1).await, 1, "credential of {decky}/{service} stored once, hashed");
        let captured = events
            .first_after(watching_since, 10.0, |e| {
                e.topic == "credential.captured" && e.payload["secret_sha256"] == digest.as_str()
            })
            .await
            .unwrap_or_else(|| panic!("no credential.captured for {decky}/{service}"));
        assert_eq!(captured.1.payload["username"], user);
        assert_eq!(captured.1.payload["service"], service);
        assert!(!captured.1.payload.to_string().contains(password), "the clear secret is not on the bus");
    }

    // --- the profiler restarts (SIGKILL; `up` brings it back) ---
    let old_profiler = up.worker_pid("profiler").unwrap_or_else(|| panic!("no profiler child of up"));
    let observed = |e: &Envelope| e.topic == "attacker.observed" && e.payload["attacker_ip"] == "127.0.0.1";
    assert_eq!(events.count(observed), 1, "attacker.observed once before the restart");
    send_signal(old_profiler as i32, "KILL");
    assert!(
        support::wait_until(30.0, || up.worker_pid("profiler").is_some_and(|p| p != old_profiler)),
        "up did not restart the profiler\n{}",
        up.output()
    );
    let killed = Instant::now();
    // New activity from the same address after the restart: the new
    // profiler scores it (so it is really running), and observes nothing.
    let url = format!("http://{http}/after-restart");
    tokio::task::spawn_blocking(move || curl(&url)).await.unwrap();
    let scored = events
        .first_after(killed, 20.0, |e| e.topic == "attacker.scored" && e.payload["attacker_ip"] == "127.0.0.1")
        .await;
    assert!(scored.is_some(), "the restarted profiler never scored the new activity\n{}", up.output());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events.count(observed),
        1,
        "a second attacker.observed after the profiler restart: {:?}",
        events.all(observed)
    );

    // --- a mutation closes an old port and opens a new one on web-01 ---
    // Each mutation draws at random; every one is checked, and they go on
    // until one has closed a served port and one has opened one (the two
    // together are likely within a few draws; 20 bounds the loop).
    let (mut saw_closed, mut saw_opened) = (false, false);
    for attempt in 1..=20 {
        let asked = Instant::now();
        let out = up.cli(&["mutate", "web-01"]);
        assert!(out.status.success(), "{out:?}");
        let (_, env) = events
            .first_after(asked, 10.0, |e| e.topic == "decky.web-01.mutation")
            .await
            .unwrap_or_else(|| panic!("no decky.web-01.mutation after `decnet mutate`\n{}", up.output()));
        let list = |k: &str| -> Vec<String> {
            env.payload[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let (old, new) = (list("old_services"), list("new_services"));
        let port_of = |s: &str| decnet::decky::default_port(s).map(|p| p + offset);
        let closed: Vec<&String> = old.iter().filter(|s| !new.contains(s) && port_of(s).is_some()).collect();
        let opened: Vec<&String> = new.iter().filter(|s| !old.contains(s) && port_of(s).is_some()).collect();
        eprintln!("mutation {attempt}: {old:?} → {new:?} (closed {closed:?}, opened {opened:?})");
        // Whatever was drawn, the listeners follow it.
        for s in &old {
            if let (false, Some(p)) = (new.contains(s), port_of(s)) {
                let addr: SocketAddr = format!("127.1.0.1:{p}").parse().unwrap();
                assert_eq!(tcp_connect(addr), Err(std::io::ErrorKind::ConnectionRefused), "{s} still open on {addr}");
            }
        }
        for s in &new {
            if let Some(p) = port_of(s) {
                let addr: SocketAddr = format!("127.1.0.1:{p}").parse().unwrap();
                let tcp = decnet::decky::services::protocol(s)
                    .is_some_and(|p| p.transports().contains(&decnet::decky::services::Transport::Tcp));
                if tcp {
                    assert_eq!(tcp_connect(addr), Ok(()), "{s} not listening on {addr} after the mutation");
                } else {
                    // UDP only (snmp): its port is held, a bind there fails.
                    let bound = std::net::UdpSocket::bind(addr).map(drop).map_err(|e| e.kind());
                    assert_eq!(bound, Err(std::io::ErrorKind::AddrInUse), "{s} not bound on {addr} after the mutation");
                }
            }
        }
        if opened.iter().any(|s| *s == "smtp") {
            let addr: SocketAddr = format!("127.1.0.1:{}", 25 + offset).parse().unwrap();
            let started = Instant::now();
            let reply = smtp_auth(addr, "mailer", SMTP_PASSWORD).await;
            eprintln!("smtp AUTH reply: {}", reply.trim());
            // Postfix has no SASL by default; the credentials sent anyway are kept.
            assert!(reply.starts_with("503 5.5.1 Error: authentication not enabled"), "{reply}");
            within_one_second(
                &events,
                started,
                "smtp login_attempt",
                log_event("web-01", "smtp", "login_attempt"),
                &up,
            )
            .await;
            let sql = format!(
                "SELECT COUNT(*) FROM credentials WHERE decky = 'web-01' AND service = 'smtp' \
                 AND username = 'mailer' AND secret_sha256 = '{}'",
                sha256_hex(SMTP_PASSWORD)
            );
            assert_eq!(wait_count(&pool, &sql, 1).await, 1, "the smtp credential stored once, hashed");
        }
        saw_closed |= !closed.is_empty();
        saw_opened |= !opened.is_empty();
        if saw_closed && saw_opened {
            break;
        }
    }
    assert!(saw_closed, "20 mutations never closed a natively served port on web-01");
    assert!(saw_opened, "20 mutations never opened a natively served port on web-01");

    // --- the ingester (inside the API) killed: nothing lost, nothing twice ---
    b.close().await.unwrap();
    let old_api = up.worker_pid("api").unwrap_or_else(|| panic!("no api child of up"));
    send_signal(old_api as i32, "KILL");
    assert!(support::wait_until(10.0, || up.worker_pid("api") != Some(old_api)), "the api child did not die");
    // While the API is down the collector still hears and writes.
    let started = Instant::now();
    let url = format!("http://{http}/while-the-api-is-down");
    let out = tokio::task::spawn_blocking(move || curl(&url)).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    within_one_second(&events, started, "http request, API down", log_event("ws-finance", "http", "request"), &up)
        .await;
    assert!(
        support::wait_until(30.0, || up.worker_pid("api").is_some_and(|p| p != old_api)),
        "up did not restart the api\n{}",
        up.output()
    );
    let while_down = "SELECT COUNT(*) FROM logs WHERE msg LIKE '%/while-the-api-is-down%'";
    assert!(wait_count(&pool, while_down, 1).await >= 1, "the line written while the API was down was never stored");
    // Every parsed record the collector wrote is exactly one local row.
    let records = || {
        std::fs::read_to_string(home.join("ingest.log.json"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .count() as i64
    };
    let stored = wait_count(&pool, "SELECT COUNT(*) FROM logs WHERE source = 'local'", records()).await;
    assert_eq!(stored, records(), "logs rows vs records in ingest.log.json after the ingester's restart");
    let twice: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT raw_line FROM logs GROUP BY raw_line HAVING COUNT(*) > 1)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(twice, 0, "a line stored twice");
    eprintln!("{stored} logs rows = {stored} parsed records, none twice, across an ingester SIGKILL");

    // --- the clear guess only where the console reads it (issue 27) ---
    // `credentials.secret_text` keeps it for admins; nothing else decnet
    // writes (its logs, the ingest log, the log rows) holds it in clear.
    for password in [SSH_PASSWORD, TELNET_PASSWORD, FTP_PASSWORD, SMTP_PASSWORD] {
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE secret_text = ?")
            .bind(password)
            .fetch_one(&pool)
            .await
            .unwrap();
        // (smtp is tried only when a mutation happened to open it.)
        assert!(kept >= 1 || password == SMTP_PASSWORD, "the guess {password} is kept in clear for the console");
        let leaked: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM logs WHERE instr(raw_line, ?1) OR instr(msg, ?1) OR instr(fields, ?1)",
        )
        .bind(password)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(leaked, 0, "the clear password {password} is in a log row");
    }
    pool.close().await;
    let mut written = up.output().into_bytes();
    for file in ["ingest.log", "ingest.log.json"] {
        written.extend(std::fs::read(home.join(file)).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&written);
    for password in [SSH_PASSWORD, TELNET_PASSWORD, FTP_PASSWORD, SMTP_PASSWORD] {
        assert!(!text.contains(password), "the clear password {password} was written somewhere");
    }
}
