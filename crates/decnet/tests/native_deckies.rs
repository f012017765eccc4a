//! Native deckies end to end: real clients (OpenSSH `ssh` with `sshpass`,
//! reqwest, raw TCP telnet/FTP/SMTP dialogues) against the in-process
//! honeypots the `native` driver opens, on loopback addresses of their own
//! (127.1.<test>.1, so tests never share a port). The lines are captured
//! by a small TCP receiver speaking the collector's wire (RFC 6587 octet
//! counting) and read back with the fleet's RFC 5424 parser.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use decnet::events::rfc5424::{parse_line, SyslogLine, SD_ID};
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Tests run ports at default + 10000, so nothing needs root.
const OFFSET: u16 = 10_000;

/// The collector's side of the wire: accepts connections and splits
/// octet-counted frames into lines.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Receiver {
        Self::serve_closing_idle(listener, None)
    }

    /// Like a collector with an idle timeout: a connection quiet for
    /// `idle_close` is closed by the receiver.
    fn serve_closing_idle(listener: TcpListener, idle_close: Option<Duration>) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let read = stream.read(&mut chunk);
                        let n = match idle_close {
                            Some(idle) => match tokio::time::timeout(idle, read).await {
                                Ok(Ok(n)) => n,
                                _ => break,
                            },
                            None => read.await.unwrap_or(0),
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Frames: "<len> <line>".
                        while let Some(space) = buf.iter().position(|b| *b == b' ') {
                            let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
                            if buf.len() < space + 1 + len {
                                break;
                            }
                            let line = String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).unwrap();
                            buf.drain(..space + 1 + len);
                            sink.lock().unwrap().push(line);
                        }
                    }
                });
            }
        });
        Receiver { addr, lines }
    }

    fn parsed(&self) -> Vec<SyslogLine> {
        self.lines.lock().unwrap().iter().map(|l| parse_line(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    /// Wait (at most 10 s) for a line matching `pred`; all lines on timeout.
    async fn wait_for(&self, what: &str, pred: impl Fn(&SyslogLine) -> bool) -> SyslogLine {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.parsed().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(Instant::now() < deadline, "no {what} line; got:\n{}", self.lines.lock().unwrap().join("\n"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn sd<'a>(line: &'a SyslogLine, name: &str) -> Option<&'a str> {
    line.element(SD_ID).and_then(|e| e.param(name))
}

fn is(line: &SyslogLine, app: &str, msgid: &str) -> bool {
    line.app_name.as_deref() == Some(app) && line.msgid.as_deref() == Some(msgid)
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn options(receiver: &Receiver) -> NativeOptions {
    let mut o = NativeOptions::new(receiver.addr, b"test seed, fixed so keys are stable".to_vec());
    o.port_offset = OFFSET;
    o.limits.idle = Duration::from_secs(5);
    o
}

fn driver_at(o: NativeOptions, decky: &str, ip: &str) -> NativeDriver {
    let mut o = o;
    o.addresses.insert(decky.to_string(), ip.parse().unwrap());
    NativeDriver::live(o, None)
}

async fn deploy(driver: &NativeDriver, decky: &str, services: &[&str]) -> Result<(), String> {
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    driver.apply(&Change { project: "fleet", decky, services: &services, fleet: &[] }).await.map_err(|e| e.to_string())
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port + OFFSET)
}

/// Read from `stream` until `needle` appears (at most 5 s); what was read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            other => panic!("waiting for {needle:?}: {other:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when the server closed the connection (EOF or reset) within 5 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn ssh(args: &[&str], password: &str, stdin: Option<&str>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("sshpass");
    cmd.arg("-p")
        .arg(password)
        .arg("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(args)
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("sshpass and ssh are installed by scripts/test.sh");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("ssh finished").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_password_login_runs_a_command_and_is_recorded() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "web-01", "127.1.1.1");
    deploy(&driver, "web-01", &["ssh"]).await.unwrap();

    // The banner is an Ubuntu OpenSSH one.
    let mut raw = TcpStream::connect(addr("127.1.1.1", 22)).await.unwrap();
    assert!(read_until(&mut raw, "\r\n").await.starts_with("SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n"));
    drop(raw);

    let password = "pa\"ss]w0rd\\";
    let port = (22 + OFFSET).to_string();
    let out = ssh(&["-p", &port, "-o", "PubkeyAuthentication=no", "root@127.1.1.1", "uname -a"], password, None).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Linux web-01 "), "{out:?}");

    let login = rx
        .wait_for("login_attempt", |l| is(l, "ssh", "login_attempt") && sd(l, "auth_method") == Some("password"))
        .await;
    assert_eq!(login.hostname.as_deref(), Some("web-01"));
    assert_eq!(sd(&login, "username"), Some("root"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(password.as_bytes()).as_str()), "the exact password survives");
    assert_eq!(sd(&login, "src_ip"), Some("127.0.0.1"));
    assert_eq!(login.pri, 16 * 8 + 5, "local0.notice");
    let command = rx.wait_for("command", |l| is(l, "ssh", "command")).await;
    assert_eq!(command.msg.as_deref(), Some("CMD uname -a"));
    assert_eq!(sd(&command, "sid"), sd(&login, "sid"));
    let sid = sd(&login, "sid").unwrap().to_string();
    // The banner probe above was a session of its own; this is the login's.
    let recorded =
        rx.wait_for("session_recorded", |l| is(l, "ssh", "session_recorded") && sd(l, "sid") == Some(&sid)).await;
    assert_eq!(sd(&recorded, "service"), Some("ssh"));
    assert_eq!(sd(&recorded, "commands"), Some(r#"["uname -a"]"#));
    assert!(sd(&recorded, "duration_s").unwrap().parse::<f64>().unwrap() >= 0.0);
    assert!(sd(&recorded, "bytes").unwrap().parse::<u64>().unwrap() > 1000, "kex alone is over 1 KB");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_public_key_attempt_is_recorded_and_a_piped_shell_answers() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "db-02", "127.1.2.1");
    deploy(&driver, "db-02", &["ssh"]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let fp = std::process::Command::new("ssh-keygen").arg("-lf").arg(&key).output().unwrap();
    let fingerprint = String::from_utf8_lossy(&fp.stdout).split_whitespace().nth(1).unwrap().to_string();

    let port = (22 + OFFSET).to_string();
    let out = ssh(
        &[
            "-p",
            &port,
            "-i",
            key.to_str().unwrap(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey,password",
            "admin@127.1.2.1",
        ],
        "letmein",
        Some("whoami\nid\nexit\n"),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("admin\nuid=1000(admin)"), "{stdout:?}");

    let offered =
        rx.wait_for("publickey", |l| is(l, "ssh", "login_attempt") && sd(l, "auth_method") == Some("publickey")).await;
    assert_eq!(sd(&offered, "username"), Some("admin"));
    assert_eq!(sd(&offered, "key_fingerprint"), Some(fingerprint.as_str()));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let secret = base64::engine::general_purpose::STANDARD.decode(sd(&offered, "secret_b64").unwrap()).unwrap();
    let secret = String::from_utf8(secret).unwrap();
    assert!(public.starts_with(secret.split_whitespace().take(2).collect::<Vec<_>>().join(" ").as_str()));
    let password =
        rx.wait_for("password", |l| is(l, "ssh", "login_attempt") && sd(l, "auth_method") == Some("password")).await;
    assert_eq!(sd(&password, "secret_b64"), Some(b64(b"letmein").as_str()));
    let recorded = rx.wait_for("session_recorded", |l| is(l, "ssh", "session_recorded")).await;
    assert_eq!(sd(&recorded, "commands"), Some(r#"["whoami","id","exit"]"#));
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_login_and_shell_dialogue() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "cam-lobby", "127.1.3.1");
    deploy(&driver, "cam-lobby", &["telnet"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.3.1", 23)).await.unwrap();
    read_until(&mut s, "cam-lobby login: ").await;
    s.write_all(b"\xff\xfd\x01admin\r\n").await.unwrap();
    read_until(&mut s, "Password: ").await;
    s.write_all(b"hunter2\r\n").await.unwrap();
    read_until(&mut s, "admin@cam-lobby:~$ ").await;
    // Enter as CR NUL (what a telnet client in character mode sends).
    s.write_all(b"cat /etc/passwd\r\0").await.unwrap();
    assert!(read_until(&mut s, "$ ").await.contains("root:x:0:0:root"));
    s.write_all(b"exit\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await);

    let login = rx.wait_for("login_attempt", |l| is(l, "telnet", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("admin"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"hunter2").as_str()));
    let cmd = rx.wait_for("command", |l| is(l, "telnet", "command")).await;
    assert_eq!(cmd.msg.as_deref(), Some("CMD cat /etc/passwd"));
    let end = rx.wait_for("disconnect", |l| is(l, "telnet", "disconnect")).await;
    assert_eq!(sd(&end, "reason"), Some("done"));
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_login_pasv_list_and_quit() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "files", "127.1.4.1");
    deploy(&driver, "files", &["ftp"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.4.1", 21)).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("220 "));
    say(&mut s, "LIST", "530").await;
    say(&mut s, "USER anonymous", "331").await;
    say(&mut s, "PASS guest@example.com", "230").await;
    say(&mut s, "SYST", "215 UNIX").await;
    say(&mut s, "PWD", "257 \"/\"").await;
    let pasv = say(&mut s, "PASV", "227").await;
    let nums: Vec<u16> = pasv[pasv.find('(').unwrap() + 1..pasv.find(')').unwrap()]
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(&nums[..4], &[127, 1, 4, 1], "data port on the decky's own address");
    let mut data = TcpStream::connect(("127.1.4.1", nums[4] * 256 + nums[5])).await.unwrap();
    s.write_all(b"LIST\r\n").await.unwrap();
    let mut listing = String::new();
    tokio::time::timeout(Duration::from_secs(5), data.read_to_string(&mut listing)).await.unwrap().unwrap();
    assert!(listing.contains("backup.sql"), "{listing}");
    // 150 before the transfer, 226 after it (often in one read).
    let replies = read_until(&mut s, "226").await;
    assert!(replies.starts_with("150 "), "{replies}");
    say(&mut s, "QUIT", "221").await;

    let login = rx.wait_for("login_attempt", |l| is(l, "ftp", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("anonymous"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"guest@example.com").as_str()));
    rx.wait_for("SYST command", |l| is(l, "ftp", "command") && l.msg.as_deref() == Some("CMD SYST")).await;
    let lines = rx.lines.lock().unwrap().join("\n");
    assert!(!lines.contains("guest@example.com"), "the password only travels as secret_b64");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_plain_and_login_and_a_message() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "mail-01", "127.1.5.1");
    deploy(&driver, "mail-01", &["smtp"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.5.1", 25)).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("220 mail-01 ESMTP"));
    s.write_all(b"EHLO spam.example\r\n").await.unwrap();
    assert!(read_until(&mut s, "250 SMTPUTF8\r\n").await.contains("AUTH PLAIN LOGIN"));
    s.write_all(format!("AUTH PLAIN {}\r\n", b64(b"\0bob\0pl4in")).as_bytes()).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("235"));
    s.write_all(b"AUTH LOGIN\r\n").await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("334 VXNlcm5hbWU6"));
    s.write_all(format!("{}\r\n", b64(b"carol")).as_bytes()).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("334 UGFzc3dvcmQ6"));
    s.write_all(format!("{}\r\n", b64(b"l0gin")).as_bytes()).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("235"));
    s.write_all(b"MAIL FROM:<a@spam.example>\r\nRCPT TO:<b@victim.example>\r\nDATA\r\n").await.unwrap();
    read_until(&mut s, "354").await;
    s.write_all(b"Subject: cheap pills\r\n\r\nbuy now\r\n.\r\n").await.unwrap();
    assert!(read_until(&mut s, "queued as").await.contains("250 2.0.0 Ok"));
    s.write_all(b"QUIT\r\n").await.unwrap();
    assert!(read_until(&mut s, "221").await.contains("221"));

    let plain = rx.wait_for("plain", |l| is(l, "smtp", "login_attempt") && sd(l, "auth_method") == Some("plain")).await;
    assert_eq!((sd(&plain, "username"), sd(&plain, "secret_b64")), (Some("bob"), Some(b64(b"pl4in").as_str())));
    let login = rx.wait_for("login", |l| is(l, "smtp", "login_attempt") && sd(l, "auth_method") == Some("login")).await;
    assert_eq!((sd(&login, "username"), sd(&login, "secret_b64")), (Some("carol"), Some(b64(b"l0gin").as_str())));
    let msg = rx.wait_for("message", |l| is(l, "smtp", "message")).await;
    assert_eq!(sd(&msg, "subject"), Some("cheap pills"));
    assert_eq!(sd(&msg, "rcpt_to"), Some("<b@victim.example>"));
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_pages_and_basic_auth_are_recorded() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "ws-finance", "127.1.6.1");
    deploy(&driver, "ws-finance", &["http"]).await.unwrap();
    let base = format!("http://{}", addr("127.1.6.1", 80));
    let client = reqwest::Client::builder().user_agent("sqlmap/1.7").timeout(Duration::from_secs(5)).build().unwrap();
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.headers()["server"], "Apache/2.4.52 (Ubuntu)");
    assert!(home.text().await.unwrap().contains("It works!"));
    let challenge = client.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    assert!(challenge.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let tried = client.get(format!("{base}/admin")).basic_auth("admin", Some("s3cret:x")).send().await.unwrap();
    assert_eq!(tried.status(), 403);
    assert_eq!(client.get(format!("{base}/.env")).send().await.unwrap().status(), 404);

    let req = rx.wait_for("request /", |l| is(l, "http", "request") && sd(l, "path") == Some("/")).await;
    assert_eq!(sd(&req, "method"), Some("GET"));
    assert_eq!(sd(&req, "user_agent"), Some("sqlmap/1.7"));
    assert_eq!(sd(&req, "status"), Some("200"));
    let login = rx.wait_for("basic auth", |l| is(l, "http", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("admin"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"s3cret:x").as_str()), "only the first ':' splits");
    rx.wait_for("404", |l| is(l, "http", "request") && sd(l, "status") == Some("404")).await;
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_closes_only_that_session() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "tough", "127.1.7.1");
    deploy(&driver, "tough", &["telnet", "ssh", "http", "smtp"]).await.unwrap();

    // A good session, logged in, stays open throughout.
    let mut good = TcpStream::connect(addr("127.1.7.1", 23)).await.unwrap();
    read_until(&mut good, "login: ").await;
    good.write_all(b"root\r\n").await.unwrap();
    read_until(&mut good, "Password: ").await;
    good.write_all(b"x\r\n").await.unwrap();
    read_until(&mut good, "# ").await;

    // A 64 KiB line with no end on every line protocol: closed.
    for port in [23, 80, 25] {
        let mut bad = TcpStream::connect(addr("127.1.7.1", port)).await.unwrap();
        let _ = bad.write_all(&vec![b'A'; 64 * 1024]).await;
        assert!(closed_by_server(&mut bad).await, "port {port} kept a 64 KiB line open");
    }
    // Binary garbage instead of an SSH hello, and after a real one.
    let mut garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut bad = TcpStream::connect(addr("127.1.7.1", 22)).await.unwrap();
    let _ = bad.write_all(&garbage).await;
    assert!(closed_by_server(&mut bad).await, "ssh kept garbage open");
    let mut bad = TcpStream::connect(addr("127.1.7.1", 22)).await.unwrap();
    read_until(&mut bad, "\r\n").await;
    garbage.splice(0..0, b"SSH-2.0-evil\r\n".iter().copied());
    let _ = bad.write_all(&garbage).await;
    assert!(closed_by_server(&mut bad).await, "ssh kept a garbage packet stream open");
    // Garbage and NULs on telnet are just odd input: answered, not fatal.
    let mut odd = TcpStream::connect(addr("127.1.7.1", 23)).await.unwrap();
    read_until(&mut odd, "login: ").await;
    odd.write_all(b"\x00\xff\xfe\x01\xc3\x28\x1b[31m\r\n").await.unwrap();
    read_until(&mut odd, "Password: ").await;

    // The good session still answers, and new ones are served.
    good.write_all(b"whoami\r\n").await.unwrap();
    assert!(read_until(&mut good, "# ").await.contains("root"));
    let mut fresh = TcpStream::connect(addr("127.1.7.1", 80)).await.unwrap();
    fresh.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(read_until(&mut fresh, "It works!").await.starts_with("HTTP/1.1 200 OK"));

    let too_long = rx
        .wait_for("line too long", |l| is(l, "telnet", "disconnect") && sd(l, "reason") == Some("line too long"))
        .await;
    assert_eq!(sd(&too_long, "src_ip"), Some("127.0.0.1"));
    rx.wait_for("http line too long", |l| is(l, "http", "disconnect") && sd(l, "reason") == Some("line too long"))
        .await;
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_byte_and_session_limits_end_sessions() {
    let rx = Receiver::start().await;
    let mut o = options(&rx);
    o.limits.idle = Duration::from_millis(500);
    o.limits.max_bytes = 2048;
    o.limits.max_sessions = 2;
    let driver = driver_at(o, "bounded", "127.1.11.1");
    deploy(&driver, "bounded", &["smtp"]).await.unwrap();

    // Idle: the banner, then the server hangs up.
    let mut idle = TcpStream::connect(addr("127.1.11.1", 25)).await.unwrap();
    read_until(&mut idle, "220").await;
    assert!(closed_by_server(&mut idle).await);
    rx.wait_for("idle", |l| is(l, "smtp", "disconnect") && sd(l, "reason") == Some("idle timeout")).await;

    // Bytes: many short, valid lines still hit the session budget.
    let mut chatty = TcpStream::connect(addr("127.1.11.1", 25)).await.unwrap();
    read_until(&mut chatty, "220").await;
    for _ in 0..400 {
        if chatty.write_all(b"NOOP\r\n").await.is_err() {
            break;
        }
    }
    assert!(closed_by_server(&mut chatty).await);
    rx.wait_for("byte limit", |l| is(l, "smtp", "disconnect") && sd(l, "reason") == Some("byte limit")).await;

    // Sessions: two held open, the third is closed before any banner.
    let mut a = TcpStream::connect(addr("127.1.11.1", 25)).await.unwrap();
    read_until(&mut a, "220").await;
    let mut b = TcpStream::connect(addr("127.1.11.1", 25)).await.unwrap();
    read_until(&mut b, "220").await;
    let mut third = TcpStream::connect(addr("127.1.11.1", 25)).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "a session beyond the limit gets nothing: {:?}", String::from_utf8_lossy(&buf[..n]));
    driver.shutdown().await;
}

/// Send one command line, expect a reply starting with `code`.
async fn say(s: &mut TcpStream, line: &str, code: &str) -> String {
    s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    let reply = read_until(s, "\r\n").await;
    assert!(reply.starts_with(code), "{line} -> {reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_session_is_still_ended_at_the_time_limit_and_ssh_idles_out() {
    let rx = Receiver::start().await;
    let mut o = options(&rx);
    o.limits.max_session = Duration::from_millis(800);
    o.limits.idle = Duration::from_millis(600);
    let driver = driver_at(o, "timed", "127.1.15.1");
    deploy(&driver, "timed", &["telnet", "ssh"]).await.unwrap();
    // Typing all the time never trips the idle limit, only the duration one.
    let mut s = TcpStream::connect(addr("127.1.15.1", 23)).await.unwrap();
    read_until(&mut s, "login: ").await;
    s.write_all(b"root\r\nx\r\n").await.unwrap();
    read_until(&mut s, "# ").await;
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"pwd\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "a busy session outlived the time limit");
    rx.wait_for("time limit", |l| is(l, "telnet", "disconnect") && sd(l, "reason") == Some("session time limit")).await;
    // An SSH client that says hello and then nothing is cut off when idle.
    let mut quiet = TcpStream::connect(addr("127.1.15.1", 22)).await.unwrap();
    quiet.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert!(closed_by_server(&mut quiet).await);
    let end = rx.wait_for("ssh end", |l| is(l, "ssh", "disconnect")).await;
    assert!(matches!(sd(&end, "reason"), Some("idle timeout") | Some("session time limit")), "{end:?}");
    driver.shutdown().await;
}

async fn refuses(a: SocketAddr) -> bool {
    matches!(TcpStream::connect(a).await, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_closes_old_ports_and_opens_new_ones() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "shifty", "127.1.8.1");
    deploy(&driver, "shifty", &["ssh", "http", "smb"]).await.unwrap();
    let listening: BTreeMap<String, SocketAddr> = driver.listening("fleet", "shifty").await.into_iter().collect();
    assert_eq!(listening.keys().map(String::as_str).collect::<Vec<_>>(), ["http", "ssh"], "smb is not served natively");
    assert!(TcpStream::connect(addr("127.1.8.1", 22)).await.is_ok());
    assert!(refuses(addr("127.1.8.1", 21)).await);

    // An open session on a service that goes away is ended too.
    let mut held = TcpStream::connect(addr("127.1.8.1", 22)).await.unwrap();
    read_until(&mut held, "SSH-2.0").await;
    deploy(&driver, "shifty", &["ftp", "http"]).await.unwrap();
    assert!(refuses(addr("127.1.8.1", 22)).await, "ssh port still open after the mutation");
    assert!(closed_by_server(&mut held).await);
    let mut ftp = TcpStream::connect(addr("127.1.8.1", 21)).await.unwrap();
    assert!(read_until(&mut ftp, "\r\n").await.starts_with("220"));
    assert!(TcpStream::connect(addr("127.1.8.1", 80)).await.is_ok(), "http stayed");
    rx.wait_for("service closed", |l| is(l, "ssh", "disconnect") && sd(l, "reason") == Some("service closed")).await;

    // Teardown closes everything.
    deploy(&driver, "shifty", &[]).await.unwrap();
    for port in [21, 22, 80] {
        assert!(refuses(addr("127.1.8.1", port)).await, "port {port} open after teardown");
    }
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_cannot_be_bound_fails_the_deploy_and_opens_nothing() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "clash", "127.1.9.1");
    let squatter = std::net::TcpListener::bind(addr("127.1.9.1", 22)).unwrap();
    let err = deploy(&driver, "clash", &["http", "ssh"]).await.unwrap_err();
    assert!(err.contains("native driver failed for decky clash"), "{err}");
    assert!(err.contains(&format!("127.1.9.1:{}", 22 + OFFSET)) && err.contains("in use"), "{err}");
    assert!(refuses(addr("127.1.9.1", 80)).await, "all or nothing: http must not stay open");
    assert!(driver.listening("fleet", "clash").await.is_empty());
    drop(squatter);
    deploy(&driver, "clash", &["http", "ssh"]).await.unwrap();
    assert!(TcpStream::connect(addr("127.1.9.1", 22)).await.is_ok());
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_wait_for_a_collector_that_comes_up_later() {
    // Reserve a port, close it: the collector is "down" at first.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = probe.local_addr().unwrap();
    drop(probe);
    let mut o = NativeOptions::new(collector, b"seed".to_vec());
    o.port_offset = OFFSET;
    let driver = driver_at(o, "early", "127.1.12.1");
    deploy(&driver, "early", &["http"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.12.1", 80)).await.unwrap();
    s.write_all(b"GET /early HTTP/1.0\r\n\r\n").await.unwrap();
    read_until(&mut s, "404").await;
    // The session answered without a collector; its lines are queued.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(driver.sink().unwrap().backlog() >= 3, "connect, request, disconnect queued");

    let rx = Receiver::serve(TcpListener::bind(collector).await.unwrap());
    let req = rx.wait_for("queued request", |l| is(l, "http", "request")).await;
    assert_eq!(sd(&req, "path"), Some("/early"));
    rx.wait_for("session_recorded", |l| is(l, "http", "session_recorded")).await;
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_closes_an_idle_connection_loses_no_line() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx = Receiver::serve_closing_idle(listener, Some(Duration::from_millis(300)));
    let driver = driver_at(options(&rx), "quiet", "127.1.14.1");
    deploy(&driver, "quiet", &["http"]).await.unwrap();
    for (i, path) in ["/first", "/second"].iter().enumerate() {
        let mut s = TcpStream::connect(addr("127.1.14.1", 80)).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await.unwrap();
        read_until(&mut s, "404").await;
        drop(s);
        let req = rx.wait_for(path, |l| is(l, "http", "request") && sd(l, "path") == Some(*path)).await;
        let sid = sd(&req, "sid").unwrap().to_string();
        rx.wait_for("session_recorded", |l| is(l, "http", "session_recorded") && sd(l, "sid") == Some(&sid)).await;
        if i == 0 {
            // The receiver closes the quiet connection meanwhile.
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
    // Every line of the second session, its first one included, arrived.
    let lines = rx.parsed();
    for msgid in ["connect", "request", "disconnect", "session_recorded"] {
        assert_eq!(lines.iter().filter(|l| is(l, "http", msgid)).count(), 2, "{msgid}: {:?}", rx.lines.lock().unwrap());
    }
    driver.shutdown().await;
}

/// What `cmd` printed (stdout then stderr), run with a 10 s limit.
fn run_tool(cmd: &str, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("timeout")
        .arg("10")
        .arg(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_http_honeypot_over_tls_with_a_plausible_certificate() {
    let rx = Receiver::start().await;
    let mut o = options(&rx);
    o.limits.idle = Duration::from_secs(1);
    let driver = driver_at(o, "web-01", "127.1.16.1");
    deploy(&driver, "web-01", &["https"]).await.unwrap();
    let target = addr("127.1.16.1", 443).to_string();

    // The real openssl client: the certificate names an internal host, not rcgen.
    let printed = run_tool("openssl", &["s_client", "-connect", &target, "-showcerts", "-ign_eof"], b"");
    let pem_start = printed.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("{printed}"));
    let pem_end = printed.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let x509 = run_tool(
        "openssl",
        &["x509", "-noout", "-subject", "-issuer", "-startdate", "-enddate", "-ext", "subjectAltName"],
        &printed.as_bytes()[pem_start..pem_end],
    );
    assert!(x509.contains("CN = web-01.corp.local") && x509.contains("O = "), "{x509}");
    assert!(x509.contains("DNS:web-01.corp.local, DNS:web-01"), "{x509}");
    assert!(!x509.to_lowercase().contains("rcgen"), "{x509}");
    let year = |key: &str| -> i32 {
        let line = x509.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().rev().nth(1).unwrap().parse().unwrap()
    };
    let now_year = 1970
        + (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 31_556_952) as i32;
    assert!((now_year - 1..=now_year).contains(&year("notBefore=")), "issued recently: {x509}");
    assert!((now_year..=now_year + 1).contains(&year("notAfter=")), "valid about a year: {x509}");

    // curl over TLS reaches the HTTP honeypot: pages and credentials recorded as https.
    let page = run_tool("curl", &["-sk", &format!("https://{target}/")], b"");
    assert!(page.contains("It works!"), "{page}");
    let denied = run_tool(
        "curl",
        &["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", "admin:hunter2", &format!("https://{target}/admin")],
        b"",
    );
    assert_eq!(denied, "403");
    let hs = rx.wait_for("tls_handshake", |l| is(l, "https", "tls_handshake")).await;
    assert!(sd(&hs, "tls_version").is_some_and(|v| v.starts_with("TLSv1_")), "{hs:?}");
    rx.wait_for("request over tls", |l| is(l, "https", "request") && sd(l, "status") == Some("200")).await;
    let login = rx.wait_for("basic auth over tls", |l| is(l, "https", "login_attempt")).await;
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"hunter2").as_str()));

    // Hostile input before TLS: garbage, plain HTTP, silence. Each is one
    // failed-handshake line and a closed connection; nothing else is hurt.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for (what, bytes) in [("garbage", garbage), ("plain http", b"GET / HTTP/1.0\r\n\r\n".to_vec()), ("silence", vec![])]
    {
        let mut bad = TcpStream::connect(addr("127.1.16.1", 443)).await.unwrap();
        let _ = bad.write_all(&bytes).await;
        assert!(closed_by_server(&mut bad).await, "{what} kept open");
    }
    let failed: Vec<SyslogLine> = (0..50)
        .find_map(|_| {
            let f: Vec<SyslogLine> =
                rx.parsed().into_iter().filter(|l| is(l, "https", "tls_handshake_failed")).collect();
            if f.len() >= 3 {
                Some(f)
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
        .unwrap_or_else(|| panic!("three failed handshakes; got:\n{}", rx.lines.lock().unwrap().join("\n")));
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().any(|l| sd(l, "reason") == Some("handshake timeout")), "{failed:?}");
    assert!(failed.iter().all(|l| sd(l, "reason").is_some_and(|r| r.chars().count() <= 200)));
    let page = run_tool("curl", &["-sk", &format!("https://{target}/")], b"");
    assert!(page.contains("It works!"), "still serving after hostile input: {page}");
    driver.shutdown().await;
}
