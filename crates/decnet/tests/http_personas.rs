//! The HTTP/HTTPS deckies against the real servers they pretend to be: a
//! real Apache 2.4 and nginx from the Debian packages, started on loopback
//! high ports by `scripts/real-httpd` with the packages' configuration,
//! and the real clients an attacker uses (`curl -v`, `openssl s_client`,
//! `nmap -sV -sC`). For every kind of request the decky must answer with
//! the same status and the same header names in the same order as the
//! real server; nothing it sends may name the decky; its certificate must
//! be the one the release's tooling makes; nmap must name the exact
//! release the persona claims.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use decnet::decky::listener::ServiceListener;
use decnet::decky::{DeckyContext, Limits, Persona};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SEED: &[u8] = b"http personas test seed";

/// A real apache2 or nginx on 127.0.0.1, stopped (by its pid) when dropped.
struct RealServer {
    port: u16,
    pid: i32,
    dir: tempfile::TempDir,
}

impl RealServer {
    fn start(kind: &str) -> RealServer {
        let dir = tempfile::Builder::new().prefix("real-httpd").tempdir_in("/tmp").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/real-httpd");
        let out = Command::new(script).args([kind, &port.to_string()]).arg(dir.path()).output().unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| {
            panic!(
                "{kind} did not start (is it installed? scripts/test.sh installs it): {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.path().join("start.log")).unwrap_or_default()
            )
        });
        let server = RealServer { port, pid, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{kind} is not listening on {port}");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        // The master process (apache2 -k start and nginx daemonise; the
        // pid file names the master, which takes its workers with it).
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        let _ = &self.dir;
    }
}

/// The lines a decky wrote, as the collector would receive them.
#[derive(Clone)]
struct Lines(Arc<std::sync::Mutex<String>>);

impl Lines {
    async fn start() -> (Lines, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Lines(Arc::default());
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        sink.0.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                });
            }
        });
        (lines, addr)
    }

    fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().matches(needle).count()
    }
}

/// A decky called `name` with the persona fields `overrides`, serving
/// http and https on `ip` (ephemeral ports).
struct Decky {
    name: String,
    persona: Persona,
    http: ServiceListener,
    https: ServiceListener,
}

async fn decky(name: &str, ip: &str, overrides: serde_json::Value, collector: SocketAddr) -> Decky {
    let persona = Persona::derive(name, Some("linux-server"), None, now()).with_overrides(&overrides).unwrap();
    let sink = decnet::decky::sink::LineSink::start(collector, 1000, Default::default());
    // The one place this file builds a decky context.
    let ctx = DeckyContext::new(
        name,
        persona.clone(),
        sink,
        Limits { idle: Duration::from_secs(10), ..Limits::default() },
        SEED,
    );
    let ip: IpAddr = ip.parse().unwrap();
    let http = ServiceListener::open(ctx.clone(), "http", SocketAddr::new(ip, 0)).unwrap();
    let https = ServiceListener::open(ctx, "https", SocketAddr::new(ip, 0)).unwrap();
    Decky { name: name.to_string(), persona, http, https }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Run a command (at most 120 s); stdout + stderr.
async fn run(cmd: &str, args: Vec<String>) -> String {
    let cmd = cmd.to_string();
    tokio::task::spawn_blocking(move || {
        let out =
            Command::new("timeout").arg("120").arg(&cmd).args(&args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
    .await
    .unwrap()
}

/// The responses `curl -v` saw: (status, header names in order) each.
fn responses(curl_v: &str) -> Vec<(u16, Vec<String>)> {
    let mut out: Vec<(u16, Vec<String>)> = Vec::new();
    for line in curl_v.lines().filter_map(|l| l.strip_prefix("< ")) {
        if let Some(rest) = line.strip_prefix("HTTP/") {
            let status = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            out.push((status, Vec::new()));
        } else if let (Some((name, _)), Some(last)) = (line.split_once(':'), out.last_mut()) {
            last.1.push(name.to_string());
        }
    }
    out
}

/// One raw exchange: what the server answered (until it closed or 3 s).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Every response in a raw exchange: (status, header lines in order);
/// bodies are skipped by their Content-Length.
fn raw_heads(text: &str) -> Vec<(u16, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find("\r\n\r\n") {
        let mut lines = rest[..end].lines();
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<String> = lines.map(str::to_string).collect();
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        out.push((status, headers));
        rest = rest.get(end + 4 + length..).unwrap_or("");
    }
    out
}

/// Every response in a raw exchange: (status, header names in order).
fn raw_response(text: &str) -> Vec<(u16, Vec<String>)> {
    raw_heads(text)
        .into_iter()
        .map(|(status, lines)| {
            (status, lines.iter().filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string())).collect())
        })
        .collect()
}

/// The `Connection`/`Keep-Alive` lines of each response.
fn connection_lines(text: &str) -> Vec<Vec<String>> {
    raw_heads(text)
        .into_iter()
        .map(|(_, lines)| {
            lines.into_iter().filter(|l| l.starts_with("Connection:") || l.starts_with("Keep-Alive:")).collect()
        })
        .collect()
}

/// The curl invocations compared, by what they exercise.
fn curl_cases(addr: SocketAddr) -> Vec<(&'static str, Vec<String>)> {
    let url = |p: &str| format!("http://{addr}{p}");
    let v = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["-sv".to_string(), "-o".into(), "/dev/null".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a
    };
    vec![
        ("GET /", v(&[&url("/")])),
        ("HEAD /", v(&["--head", &url("/")])),
        ("GET /nonexistent", v(&[&url("/nonexistent")])),
        ("OPTIONS /", v(&["-X", "OPTIONS", &url("/")])),
        ("POST /", v(&["-d", "a=b", &url("/")])),
        ("bogus method", v(&["-X", "FOO", &url("/")])),
        ("Basic auth on /admin", v(&["-u", "admin:hunter2", &url("/admin")])),
        ("HTTP/1.0", v(&["-0", &url("/")])),
        ("gzip", v(&["--compressed", &url("/")])),
        ("gzip HEAD", v(&["--compressed", "--head", &url("/")])),
        ("gzip 404", v(&["--compressed", &url("/nonexistent")])),
        (
            "keep-alive: two requests on one connection",
            v(&["-H", "Connection: keep-alive", &url("/"), "-o", "/dev/null", &url("/nonexistent")]),
        ),
    ]
}

/// Compare the decky's answers with the real server's, case by case;
/// returns everything the decky sent (for the "names nothing" check).
async fn compare(decky: SocketAddr, real: SocketAddr) -> String {
    let mut seen = String::new();
    for ((what, ours), (_, theirs)) in curl_cases(decky).into_iter().zip(curl_cases(real)) {
        let (ours, theirs) = (run("curl", ours).await, run("curl", theirs).await);
        assert_eq!(
            responses(&ours),
            responses(&theirs),
            "{what}: decky vs real\n--- decky:\n{ours}\n--- real:\n{theirs}"
        );
        assert!(!responses(&ours).is_empty(), "{what}: no response\n{ours}");
        if what.starts_with("keep-alive") {
            assert!(ours.contains("Re-using existing connection"), "{what}: one connection\n{ours}");
        }
        seen.push_str(&ours);
    }
    for (what, request) in [
        ("malformed request line", &b"GARBAGE\r\n\r\n"[..]),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("header without a colon", b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"),
        ("lower-case method", b"get / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("a Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n"),
        ("a Content-Length that is not a number", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        (
            "a chunked POST, then a request on the same connection",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              GET /nonexistent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let (ours, theirs) = (raw(decky, request).await, raw(real, request).await);
        assert_eq!(raw_response(&ours), raw_response(&theirs), "{what}\n--- decky:\n{ours}\n--- real:\n{theirs}");
        assert_eq!(connection_lines(&ours), connection_lines(&theirs), "{what}");
        seen.push_str(&ours);
    }
    seen
}

/// A body of everything sent, with the page bodies: `curl -v` above
/// dropped them, so fetch the pages a scanner would read.
async fn bodies(addr: SocketAddr) -> String {
    let mut all = String::new();
    for path in ["/", "/nonexistent", "/admin", "/.htaccess"] {
        all.push_str(&run("curl", vec!["-si".into(), format!("http://{addr}{path}")]).await);
    }
    all.push_str(&raw(addr, b"GET / HTTP/1.1\r\n\r\n").await);
    all.push_str(&raw(addr, b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n").await);
    all
}

fn assert_names_nothing(decky: &Decky, sent: &str) {
    let lower = sent.to_lowercase();
    for name in [decky.name.to_lowercase(), decky.persona.fqdn().to_lowercase()] {
        assert!(!lower.contains(&name), "a response names the decky ({name}):\n{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_persona_answers_like_a_real_apache() {
    let real = RealServer::start("apache");
    let (lines, collector) = Lines::start().await;
    let d = decky(
        "apache-persona-7f3",
        "127.4.1.1",
        serde_json::json!({"release": "ubuntu-22.04", "http_product": "apache", "http_server": "Apache/2.4.52 (Ubuntu)"}),
        collector,
    )
    .await;
    let sent = compare(d.http.addr, real.addr()).await;
    let pages = bodies(d.http.addr).await;
    assert!(pages.contains("<title>Apache2 Ubuntu Default Page: It works</title>"), "{pages}");
    assert!(
        pages.contains(&format!(
            "<address>Apache/2.4.52 (Ubuntu) Server at 127.4.1.1 Port {}</address>",
            d.http.addr.port()
        )),
        "the footer names the Host the client sent: {pages}"
    );
    assert_names_nothing(&d, &format!("{sent}{pages}"));

    // Keep-Alive's max counts down per request, as the real server's does.
    let two = |addr: SocketAddr| async move {
        let one = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
        let close = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        raw(addr, format!("{one}{one}{close}").as_bytes()).await
    };
    let ours = two(d.http.addr).await;
    let keep_alive: Vec<&str> = ours.lines().filter(|l| l.starts_with("Keep-Alive:")).collect();
    assert_eq!(keep_alive, ["Keep-Alive: timeout=5, max=100", "Keep-Alive: timeout=5, max=99"], "{ours}");
    let theirs = two(real.addr()).await;
    assert_eq!(keep_alive, theirs.lines().filter(|l| l.starts_with("Keep-Alive:")).collect::<Vec<_>>());
    // The ETag is Apache's "size-mtime(µs)" of the page it served, stable per decky.
    let etag = ours.lines().find_map(|l| l.strip_prefix("ETag: ")).unwrap().trim().to_string();
    let page_len = decnet::decky::http::apache_default_page(&d.persona).len();
    assert!(etag.starts_with(&format!("\"{page_len:x}-")), "{etag}");
    assert!(two(d.http.addr).await.contains(&etag), "stable ETag");

    // Apache's limits, as the real one applies them: LimitRequestFields
    // (101 header lines: 400) and MaxKeepAliveRequests (the 101st answer
    // on one connection closes it).
    let many_headers =
        format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", (0..101).map(|i| format!("X-H{i}: v\r\n")).collect::<String>());
    let (ours, theirs) =
        (raw(d.http.addr, many_headers.as_bytes()).await, raw(real.addr(), many_headers.as_bytes()).await);
    assert_eq!(raw_response(&ours), raw_response(&theirs), "101 header lines\n{ours}\n{theirs}");
    assert_eq!(raw_response(&ours)[0].0, 400);
    let many_requests = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".repeat(101);
    let (ours, theirs) =
        (raw(d.http.addr, many_requests.as_bytes()).await, raw(real.addr(), many_requests.as_bytes()).await);
    let (ours, theirs) = (connection_lines(&ours), connection_lines(&theirs));
    assert_eq!(ours.len(), 101, "{ours:?}");
    assert_eq!(ours, theirs);
    assert_eq!(ours[100], ["Connection: close"]);

    // A body past the decky's 64 KiB is answered, then the connection is
    // closed (what follows cannot be read as a request).
    let big = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n{}", "a".repeat(70_000));
    let answer = raw(d.http.addr, format!("{big}GET / HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    assert_eq!(connection_lines(&answer), [["Connection: close"]], "{answer}");
    let chunked_big = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n{}\r\n0\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw(d.http.addr, chunked_big.as_bytes()).await;
    assert_eq!(connection_lines(&answer), [["Connection: close"]], "{answer}");

    // Every request is one `request` line, credentials a login_attempt.
    let requests = lines.count(" request [");
    assert!(requests >= 20, "{requests} request lines:\n{}", lines.0.lock().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lines.count("login_attempt") >= 1, "{}", lines.0.lock().unwrap());

    // nmap names the exact release.
    let nmap = run(
        "nmap",
        ["-sV", "-sC", "-Pn", "-n", "-p", &d.http.addr.port().to_string(), "127.4.1.1"].map(String::from).to_vec(),
    )
    .await;
    assert!(nmap.contains("Apache httpd 2.4.52 ((Ubuntu))"), "{nmap}");
    assert!(nmap.contains("Apache2 Ubuntu Default Page: It works"), "http-title: {nmap}");
    assert_names_nothing(&d, &nmap);
    // Over TLS too; the certificate (only it) names the host, as a real one does.
    let nmap = run(
        "nmap",
        ["-sV", "-sC", "-Pn", "-n", "-p", &d.https.addr.port().to_string(), "127.4.1.1"].map(String::from).to_vec(),
    )
    .await;
    assert!(nmap.contains("Apache httpd 2.4.52 ((Ubuntu))"), "{nmap}");
    assert!(nmap.contains(&format!("commonName={}", d.persona.fqdn())), "ssl-cert: {nmap}");

    // KeepAliveTimeout: a kept-alive connection left idle is closed after
    // 5 s, by the decky as by the real server.
    let idle_close = |addr: SocketAddr| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = vec![0u8; 65_536];
        loop {
            match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => continue,
                Err(_) => panic!("{addr}: kept-alive connection not closed in 15 s"),
            }
        }
    };
    let (ours, theirs) = tokio::join!(idle_close(d.http.addr), idle_close(real.addr()));
    for waited in [ours, theirs] {
        assert!(
            (4_500..8_000).contains(&waited.as_millis()),
            "closed after {waited:?} (decky {ours:?}, real {theirs:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_persona_answers_like_a_real_nginx() {
    let real = RealServer::start("nginx");
    let (_lines, collector) = Lines::start().await;
    let d = decky(
        "nginx-persona-c41",
        "127.4.2.1",
        serde_json::json!({"release": "ubuntu-22.04", "http_product": "nginx", "http_server": "nginx/1.18.0 (Ubuntu)"}),
        collector,
    )
    .await;
    let sent = compare(d.http.addr, real.addr()).await;
    let pages = bodies(d.http.addr).await;
    assert!(pages.contains("<title>Welcome to nginx!</title>"), "{pages}");
    assert!(pages.contains("<hr><center>nginx/1.18.0 (Ubuntu)</center>"), "{pages}");
    assert_names_nothing(&d, &format!("{sent}{pages}"));

    let nmap = run(
        "nmap",
        ["-sV", "-sC", "-Pn", "-n", "-p", &d.http.addr.port().to_string(), "127.4.2.1"].map(String::from).to_vec(),
    )
    .await;
    assert!(nmap.contains("nginx 1.18.0 (Ubuntu)"), "{nmap}");
    assert!(nmap.contains("Welcome to nginx!"), "http-title: {nmap}");
    assert_names_nothing(&d, &nmap);

    // keepalive_requests: the same version as the real one closes the
    // connection on the same request (1000 since 1.19.10).
    let same = decky(
        "nginx-persona-d92",
        "127.4.2.2",
        serde_json::json!({"release": "debian-12", "http_product": "nginx", "http_server": "nginx/1.22.1"}),
        collector,
    )
    .await;
    let many = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1001);
    let (ours, theirs) = (raw(same.http.addr, many.as_bytes()).await, raw(real.addr(), many.as_bytes()).await);
    let (ours, theirs) = (connection_lines(&ours), connection_lines(&theirs));
    assert_eq!(ours.len(), 1000, "the 1000th answer closes");
    assert_eq!(ours, theirs);
    assert_eq!(ours[999], ["Connection: close"]);
}

/// `openssl x509 -text` of what a TLS server presents.
async fn served_certificate(addr: SocketAddr) -> String {
    let shown = run("openssl", vec!["s_client".into(), "-connect".into(), addr.to_string(), "-showcerts".into()]).await;
    let start = shown.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("{shown}"));
    let end = shown.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("cert.pem");
    std::fs::write(&pem, &shown[start..end]).unwrap();
    run("openssl", vec!["x509".into(), "-noout".into(), "-text".into(), "-in".into(), pem.display().to_string()]).await
}

/// The X509v3 extension names of `openssl x509 -text`, in order.
fn extensions(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("X509v3 "))
        .map(|l| l.trim_end_matches(':').to_string())
        .collect()
}

fn field<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix}: {text}"))
        .trim()
}

/// The hex lines of the RSA modulus.
fn modulus(text: &str) -> String {
    let after = text.split("Modulus:").nth(1).unwrap_or_else(|| panic!("no modulus: {text}"));
    let m = after.split("Exponent").next().unwrap().split_whitespace().collect::<String>();
    assert!(m.len() > 500, "{m}");
    m
}

fn parse_openssl_time(s: &str) -> time::OffsetDateTime {
    // "Mar  4 05:06:07 2031 GMT"
    let fmt =
        time::macros::format_description!("[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT");
    time::PrimitiveDateTime::parse(s, &fmt).unwrap_or_else(|e| panic!("{s}: {e}")).assume_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_certificate_is_the_snakeoil_the_release_makes_and_survives_a_restart() {
    let (_lines, collector) = Lines::start().await;
    let overrides = serde_json::json!({"release": "ubuntu-22.04"});
    let d = decky("tls-persona-9e2", "127.4.3.1", overrides.clone(), collector).await;
    let ours = served_certificate(d.https.addr).await;

    // What make-ssl-cert does on this (OpenSSL 3) machine, for the same name.
    let dir = tempfile::tempdir().unwrap();
    let fqdn = d.persona.fqdn();
    let template = std::fs::read_to_string("/usr/share/ssl-cert/ssleay.cnf").expect("ssl-cert's template");
    let conf = dir.path().join("snakeoil.cnf");
    std::fs::write(&conf, template.replace("@HostName@", &fqdn).replace("@SubjectAltName@", &format!("DNS:{fqdn}")))
        .unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let args = ["req", "-config", &conf.display().to_string(), "-new", "-x509", "-days", "3650", "-nodes", "-sha256"]
        .into_iter()
        .map(String::from)
        .chain(["-out".into(), cert.display().to_string(), "-keyout".into(), key.display().to_string()])
        .collect();
    run("openssl", args).await;
    let real =
        run("openssl", vec!["x509".into(), "-noout".into(), "-text".into(), "-in".into(), cert.display().to_string()])
            .await;

    assert_eq!(extensions(&ours), extensions(&real), "decky:\n{ours}\nmake-ssl-cert:\n{real}");
    for prefix in ["Subject: ", "Issuer: ", "Signature Algorithm: ", "Public-Key: ", "Version: "] {
        assert_eq!(field(&ours, prefix), field(&real, prefix), "{prefix}");
    }
    assert_eq!(field(&ours, "Subject: "), format!("CN = {fqdn}"));
    assert!(ours.contains(&format!("DNS:{fqdn}")), "{ours}");
    // Ten years from a past install, at a random second of the day.
    let not_before = parse_openssl_time(field(&ours, "Not Before: "));
    let not_after = parse_openssl_time(field(&ours, "Not After : "));
    assert_eq!(not_after - not_before, time::Duration::days(3650));
    assert!(not_before.unix_timestamp() < d.persona.boot_time, "issued before boot: {not_before}");
    for made_up in ["Contoso", "corp.local", "rcgen", "Fabrikam"] {
        assert!(!ours.contains(made_up), "{made_up}: {ours}");
    }

    // A restart (a new context from the same seed and name) serves the same certificate.
    drop(d.https);
    let again = decky("tls-persona-9e2", "127.4.3.2", overrides, collector).await;
    assert_eq!(served_certificate(again.https.addr).await, ours, "same certificate after a restart");
    let other =
        decky("tls-persona-other", "127.4.3.3", serde_json::json!({"release": "ubuntu-22.04"}), collector).await;
    assert_ne!(modulus(&served_certificate(other.https.addr).await), modulus(&ours), "another decky, another key");

    // HTTPS serves the same server as http: same header names for GET /.
    let url = format!("https://{}/", again.https.addr);
    let tls = run("curl", vec!["-skv".into(), "-o".into(), "/dev/null".into(), url]).await;
    let plain =
        run("curl", vec!["-sv".into(), "-o".into(), "/dev/null".into(), format!("http://{}/", again.http.addr)]).await;
    assert_eq!(responses(&tls), responses(&plain), "{tls}");
}
