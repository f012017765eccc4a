//! Issue 13's done-criterion, end to end: `decnet up --prober --sniffer`,
//! then the real OpenSSH client and `openssl s_client` from 127.0.0.1 to a
//! demo decky. Checked, in order:
//!
//! - passive fingerprints (`ssh_client_banner`, `tcp_syn_fingerprint`,
//!   `tls_client_hello` with JA3/JA4, `tls_session`) on
//!   `decky.web-01.traffic` within 1 s of the client starting;
//! - once the profiler publishes `attacker.observed`, the prober's active
//!   ones (`hassh`, `tcpfp` against a real sshd, `jarm`, `tls_certificate`
//!   against a rustls server, both run by this test on the attacker's own
//!   address, 127.0.0.1, on the ports the prober is told to probe);
//! - all of them in `GET /api/v1/attackers/127.0.0.1`;
//! - a second attacker address (`openssl s_client -bind 127.0.0.2`, the
//!   same TLS client, so the same JA3) is linked into the same identity by
//!   the clusterer (`identity.formed` or `identity.observation.linked`, and
//!   `/api/v1/identities`).
//!
//! Traffic is loopback only. The sniffer and tcpfp need CAP_NET_RAW: this
//! runs as root here and in CI; without the capability the test prints
//! SKIP and returns (a namespace from `unshare -rn` would not help: the
//! deckies, the clients and the capture must share the host's `lo`, and a
//! user namespace grants no raw sockets on it).

mod fp_support;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use decnet_bus::client::UnixBus;
use decnet_bus::Bus;
use fp_support::{free_port, have_net_raw, start_sshd_on, tempdir, wait_for, TlsServer, BIN};
use serde_json::{json, Value};

/// A port offset for the native deckies where every demo port is free on
/// 127.1.0.1 (so this test runs beside another `decnet up`).
fn free_offset() -> u16 {
    for _ in 0..200 {
        let offset: u16 = rand::random_range(20_000..40_000);
        if [21u16, 22, 23, 25, 80, 443].iter().all(|p| std::net::TcpListener::bind(("127.1.0.1", p + offset)).is_ok()) {
            return offset;
        }
    }
    panic!("no free port offset for the deckies");
}

/// Bus events with the instant the test received each.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Instant, decnet_bus::Envelope)>>>);

impl Events {
    fn find(&self, pred: impl Fn(&decnet_bus::Envelope) -> bool) -> Option<(Instant, decnet_bus::Envelope)> {
        self.0.lock().unwrap().iter().find(|(_, e)| pred(e)).cloned()
    }
    async fn wait(
        &self,
        what: &str,
        secs: u64,
        pred: impl Fn(&decnet_bus::Envelope) -> bool,
    ) -> (Instant, decnet_bus::Envelope) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(found) = self.find(&pred) {
                return found;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, e)| format!("{} {} {}", e.topic, e.event_type, e.payload["attacker_ip"]))
                    .collect();
                panic!("timed out after {secs} s waiting for {what}; events seen:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn traffic(e: &decnet_bus::Envelope, ty: &str, ip: &str) -> bool {
    e.topic == "decky.web-01.traffic" && e.event_type == ty && e.payload["attacker_ip"] == ip
}

fn fingerprinted(e: &decnet_bus::Envelope, probe: &str, ip: &str, port: u16) -> bool {
    e.topic == "attacker.fingerprinted"
        && e.event_type == probe
        && e.payload["attacker_ip"] == ip
        && e.payload["port"] == port
}

/// `openssl s_client` to the decky's https, sending one HTTP request;
/// returns what it printed.
fn openssl_client(port: u16, bind: Option<&str>) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args([
        "10",
        "openssl",
        "s_client",
        "-connect",
        &format!("127.1.0.1:{port}"),
        "-servername",
        "web-01.corp.local",
        "-ign_eof",
    ]);
    if let Some(ip) = bind {
        cmd.args(["-bind", &format!("{ip}:0")]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"GET / HTTP/1.1\r\nHost: web-01\r\nConnection: close\r\n\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `decnet up --prober --sniffer` in `home` (under `wrapper`, e.g. a
/// capability-dropping `setpriv`), with the deckies at `offset` and the
/// prober told which ports to probe; returns once the stack is up and the
/// mutator has opened web-01's https.
fn start_up(home: &std::path::Path, offset: u16, wrapper: &[&str], ports: &[(&str, u16)]) -> (support::Up, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["up", "--listen", &api, "--prober", "--sniffer"])
        .env("DECNET_HOME", home)
        .env_remove("DECNET_BUS_SOCKET")
        .env_remove("DECNET_DB")
        .env_remove("DECNET_INGEST_LOG_FILE")
        .env("DECNET_NATIVE_PORT_OFFSET", offset.to_string())
        .env("DECNET_COLLECTOR_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("DECNET_PROBER_PER_TARGET_GAP_MS", "20")
        .env("DECNET_CLUSTERER_INTERVAL_SECS", "1")
        .env("DECNET_HEARTBEAT_SECS", "1")
        .env("RUST_LOG", "info");
    for (k, v) in ports {
        cmd.env(k, v.to_string());
    }
    let up = support::Up::spawn(cmd, home, format!("http://{api}/"));
    wait_for("decnet up, its sniffer and web-01's https", Duration::from_secs(60), || {
        let t = up.output();
        t.contains("Press Ctrl-C")
            && (t.contains("sniffer capturing") || t.contains("sniffer cannot capture"))
            && t.contains("service=https")
    });
    (up, api)
}

/// Subscribe to what the tests look at and wait until the subscriptions are live.
async fn watch(home: &std::path::Path, patterns: &[&str]) -> (UnixBus, Events) {
    let bus = UnixBus::connect("up-fingerprints-test", home.join("bus.sock")).await.unwrap();
    let events = Events::default();
    for pattern in patterns.iter().chain(&["warm.up"]) {
        let mut sub = bus.subscribe(pattern).await.unwrap();
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                events.0.lock().unwrap().push((Instant::now(), e));
            }
        });
    }
    // No SUB acknowledgement on the bus: publish from another connection until one arrives.
    let warm = UnixBus::connect("up-fingerprints-warm", home.join("bus.sock")).await.unwrap();
    for _ in 0..250 {
        warm.publish("warm.up", "", json!({})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if events.find(|e| e.topic == "warm.up").is_some() {
            break;
        }
    }
    assert!(events.find(|e| e.topic == "warm.up").is_some(), "subscriptions never became live");
    (bus, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_prober_and_sniffer_fingerprints_attackers_and_links_them() {
    if !have_net_raw() {
        println!("SKIP up_fingerprints: no CAP_NET_RAW (the sniffer and tcpfp need it; run as root)");
        return;
    }
    for tool in ["ssh", "sshpass", "openssl", "/usr/sbin/sshd"] {
        assert!(
            Command::new("sh").arg("-c").arg(format!("command -v {tool} >/dev/null")).status().unwrap().success(),
            "{tool} missing: scripts/test.sh installs openssh-client, openssh-server, sshpass and openssl"
        );
    }
    let (_dir, home) = tempdir();

    // The attacker's own servers, on its addresses, for the prober.
    let (_sshd, ssh_target) = start_sshd_on(&home, "127.0.0.1");
    let cert = fp_support::certificate("attacker-c2.example", &["attacker-c2.example"]);
    let tls_target = TlsServer::start(&["127.0.0.1", "127.0.0.2"], &cert).await;
    let tls_port = tls_target.port();

    let offset = free_offset();
    let (ssh_port, https_port) = (22 + offset, 443 + offset);
    let prober_ports = [
        ("DECNET_PROBER_HASSH_PORTS", ssh_target),
        ("DECNET_PROBER_TCPFP_PORTS", ssh_target),
        ("DECNET_PROBER_JARM_PORTS", tls_port),
        ("DECNET_PROBER_TLS_PORTS", tls_port),
    ];
    let (up, api) = start_up(&home, offset, &[], &prober_ports);
    assert!(up.output().contains(&format!("https:{https_port}")), "up lists web-01's https:\n{}", up.output());

    assert!(up.output().contains("sniffer capturing"), "{}", up.output());
    let (_bus, events) = watch(&home, &["decky.*.traffic", "attacker.>", "identity.>"]).await;

    // --- passive: the real OpenSSH client logs in to web-01 ---
    let started = Instant::now();
    let ssh = Command::new("timeout")
        .args(["20", "sshpass", "-p", "hunter2", "ssh", "-p", &ssh_port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no"])
        .args(["-o", "PreferredAuthentications=password", "-o", "ConnectTimeout=10"])
        .args(["root@127.1.0.1", "uname -a"])
        .output()
        .unwrap();
    let (at, banner) = events.wait("ssh_client_banner", 10, |e| traffic(e, "ssh_client_banner", "127.0.0.1")).await;
    let banner_latency = at.duration_since(started);
    assert!(banner.payload["banner"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH"), "{:?}", banner.payload);
    let (at, syn) = events.wait("tcp_syn_fingerprint", 10, |e| traffic(e, "tcp_syn_fingerprint", "127.0.0.1")).await;
    let syn_latency = at.duration_since(started);
    assert_eq!(syn.payload["decky_ip"], "127.1.0.1");
    assert!(syn.payload["os_guess"].as_str().unwrap().contains("Linux"), "{:?}", syn.payload);
    println!("ssh: banner after {banner_latency:?}, SYN after {syn_latency:?} (ssh exit {:?})", ssh.status);
    assert!(banner_latency < Duration::from_secs(1), "ssh_client_banner took {banner_latency:?}");
    assert!(syn_latency < Duration::from_secs(1), "tcp_syn_fingerprint took {syn_latency:?}");

    // --- passive: openssl s_client to web-01's https ---
    let started = Instant::now();
    let printed = openssl_client(https_port, None);
    let (at, hello) = events.wait("tls_client_hello", 10, |e| traffic(e, "tls_client_hello", "127.0.0.1")).await;
    let hello_latency = at.duration_since(started);
    println!("openssl: tls_client_hello after {hello_latency:?}");
    assert!(hello_latency < Duration::from_secs(1), "tls_client_hello took {hello_latency:?}");
    assert!(printed.contains("CN = web-01"), "the decky's certificate:\n{printed}");
    assert!(printed.contains("HTTP/1.1 200 OK"), "HTTP over TLS answered:\n{printed}");
    assert_eq!(hello.payload["sni"], "web-01.corp.local");
    let ja3 = hello.payload["ja3"].as_str().unwrap().to_string();
    assert_eq!(ja3.len(), 32, "{:?}", hello.payload);
    assert!(hello.payload["ja4"].as_str().unwrap().starts_with("t13d"), "{:?}", hello.payload);
    let (_, session) = events.wait("tls_session", 10, |e| traffic(e, "tls_session", "127.0.0.1")).await;
    assert_eq!(session.payload["ja3s"].as_str().map(str::len), Some(32), "{:?}", session.payload);

    // --- active: observed, then probed back on its own servers ---
    events
        .wait("attacker.observed 127.0.0.1", 15, |e| {
            e.topic == "attacker.observed" && e.payload["attacker_ip"] == "127.0.0.1"
        })
        .await;
    let (_, hassh) = events.wait("hassh", 30, |e| fingerprinted(e, "hassh", "127.0.0.1", ssh_target)).await;
    assert_eq!(hassh.payload["hash"].as_str().map(str::len), Some(32));
    let (_, jarm) = events.wait("jarm", 60, |e| fingerprinted(e, "jarm", "127.0.0.1", tls_port)).await;
    assert_eq!(jarm.payload["hash"].as_str().map(str::len), Some(62));
    let (_, certfp) =
        events.wait("tls_certificate", 30, |e| fingerprinted(e, "tls_certificate", "127.0.0.1", tls_port)).await;
    assert_eq!(certfp.payload["hash"], fp_support::hex(&sha256(&cert.0)), "sha256 of the DER we serve");
    events.wait("tcpfp", 30, |e| fingerprinted(e, "tcpfp", "127.0.0.1", ssh_target)).await;

    // --- the attacker's page has both kinds ---
    let http = reqwest::Client::new();
    let password = up.admin_password();
    let login: Value = http
        .post(format!("http://{api}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("token").to_string();
    let want = [
        ("ssh_client_banner", "sniffer"),
        ("tcp_syn_fingerprint", "sniffer"),
        ("tls_client_hello", "sniffer"),
        ("tls_session", "sniffer"),
        ("hassh", "prober"),
        ("jarm", "prober"),
        ("tls_certificate", "prober"),
        ("tcpfp", "prober"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let attacker = loop {
        let a: Value = get_json(&http, &format!("http://{api}/api/v1/attackers/127.0.0.1"), &token).await;
        let have = |kind: &str, source: &str| {
            a["fingerprints"].as_array().is_some_and(|f| f.iter().any(|x| x["kind"] == kind && x["source"] == source))
        };
        if want.iter().all(|(k, s)| have(k, s)) {
            break a;
        }
        let missing: Vec<_> = want.iter().filter(|(k, s)| !have(k, s)).collect();
        assert!(
            Instant::now() < deadline,
            "fingerprints {missing:?} missing from the attacker page: {}\nup's output:\n{}",
            a["fingerprints"],
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let fps = attacker["fingerprints"].as_array().unwrap();
    let stored_hello = fps.iter().find(|f| f["kind"] == "tls_client_hello").unwrap();
    assert_eq!(stored_hello["hash"], ja3);
    assert_eq!(stored_hello["details"]["ja4"], hello.payload["ja4"]);

    // --- and the dashboard's attacker page, in a real Chromium ---
    let page = dashboard_attacker_page(&home, &api, &password, "127.0.0.1", |t| {
        want.iter().all(|(k, _)| t.contains(k)) && t.contains(hello.payload["ja4"].as_str().unwrap())
    })
    .await;
    assert!(page.contains("SSH-2.0-OpenSSH"), "the banner is summarised: {page}");

    // --- a second address with the same TLS client joins the same identity ---
    let printed = openssl_client(https_port, Some("127.0.0.2"));
    assert!(printed.contains("HTTP/1.1 200 OK"), "{printed}");
    let (_, second) =
        events.wait("tls_client_hello 127.0.0.2", 10, |e| traffic(e, "tls_client_hello", "127.0.0.2")).await;
    assert_eq!(second.payload["ja3"], ja3.as_str(), "same client, same JA3");
    let (_, identity) = events
        .wait("identity.formed with both addresses", 30, |e| {
            e.topic == "identity.formed"
                && e.payload.to_string().contains("\"127.0.0.1\"")
                && e.payload.to_string().contains("\"127.0.0.2\"")
        })
        .await;
    println!("identity: {}", identity.payload);
    let identities: Value = get_json(&http, &format!("http://{api}/api/v1/identities"), &token).await;
    let linked = identities["identities"].as_array().unwrap().iter().find(|i| {
        let m = i["members"].to_string();
        m.contains("127.0.0.1") && m.contains("127.0.0.2")
    });
    let linked = linked.unwrap_or_else(|| panic!("no identity with both addresses: {identities}"));
    assert!(linked["fingerprints"].to_string().contains(&format!("tls_client_hello:{ja3}")), "{linked}");
}

/// `GET url` with the bearer `token`, as JSON.
async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

/// Sign in to the dashboard as admin in headless Chromium, open the
/// attacker page of `ip` and return its fingerprint table's text once
/// `ok` accepts it (20 s cap).
async fn dashboard_attacker_page(
    home: &std::path::Path,
    api: &str,
    password: &str,
    ip: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    use fantoccini::Locator;
    let (_driver, b) = support::browser(home).await;
    let url = format!("http://{api}/");
    b.goto(&url).await.unwrap();
    b.find(Locator::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    b.find(Locator::Id("password")).await.unwrap().send_keys(password).await.unwrap();
    b.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    b.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("#nav:not(.hidden)")).await.expect("signed in");
    b.goto(&format!("{url}#attacker/{ip}")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let t = match b.find(Locator::Id("attacker-fingerprints")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&t) {
            break t;
        }
        assert!(Instant::now() < deadline, "the attacker page never showed the fingerprints; last:\n{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = b.close().await;
    text
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Without CAP_NET_RAW (dropped from the bounding set of `decnet up` and
/// so of all its children), the sniffer says so in one line and in its
/// heartbeat and stays up (no restart loop), and the prober's tcpfp says
/// so in one line while the other probes still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cap_net_raw_sniffer_and_tcpfp_say_so_once_and_up_does_not_restart_them() {
    let wrapper: &[&str] = if have_net_raw() {
        &["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"]
    } else {
        &[] // already without it
    };
    let (_dir, home) = tempdir();
    let (_sshd, ssh_target) = start_sshd_on(&home, "127.0.0.1");
    let offset = free_offset();
    let ports = [("DECNET_PROBER_HASSH_PORTS", ssh_target), ("DECNET_PROBER_TCPFP_PORTS", ssh_target)];
    let (up, _api) = start_up(&home, offset, wrapper, &ports);
    let (_bus, events) = watch(&home, &["attacker.>", "system.sniffer.health"]).await;
    let (_, health) = events
        .wait("a sniffer heartbeat with its capture error", 10, |e| {
            e.topic == "system.sniffer.health" && e.payload["capture_error"].is_string()
        })
        .await;
    assert_eq!(health.payload["capturing"], false);
    assert!(health.payload["capture_error"].as_str().unwrap().contains("CAP_NET_RAW"), "{}", health.payload);

    // An attacker for the prober: a plain HTTP request to web-01.
    let mut s = std::net::TcpStream::connect(("127.1.0.1", 80 + offset)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    events
        .wait("attacker.observed", 15, |e| e.topic == "attacker.observed" && e.payload["attacker_ip"] == "127.0.0.1")
        .await;
    events.wait("hassh still probed", 30, |e| fingerprinted(e, "hassh", "127.0.0.1", ssh_target)).await;
    wait_for("tcpfp's skip line", Duration::from_secs(15), || up.output().contains("tcpfp probe skipped"));
    // Several heartbeats later: still one line each, and no restart.
    let heartbeats =
        |events: &Events| events.0.lock().unwrap().iter().filter(|(_, e)| e.topic == "system.sniffer.health").count();
    let before = heartbeats(&events);
    let deadline = Instant::now() + Duration::from_secs(10);
    while heartbeats(&events) < before + 3 {
        assert!(Instant::now() < deadline, "the sniffer stopped sending heartbeats");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = up.output();
    assert_eq!(text.matches("sniffer cannot capture").count(), 1, "{text}");
    assert_eq!(text.matches("tcpfp probe skipped").count(), 1, "{text}");
    assert!(
        !text.lines().any(|l| l.contains("exited; restarting") && (l.contains("sniffer") || l.contains("prober"))),
        "a sense was restarted:\n{text}"
    );
    assert!(!events
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(_, e)| e.topic == "attacker.fingerprinted" && e.event_type == "tcpfp"));
}
