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

/// `o` with `overrides` (persona fields) merged over `decky`'s persona.
fn with_persona(mut o: NativeOptions, decky: &str, overrides: serde_json::Value) -> NativeOptions {
    o.personas.insert(decky.to_string(), overrides);
    o
}

/// The auth policy that takes the first password: for tests about what
/// happens after the login.
fn first_try() -> serde_json::Value {
    serde_json::json!({ "accept_after": [1, 1], "credentials": [] })
}

fn driver_at(o: NativeOptions, decky: &str, ip: &str) -> NativeDriver {
    let mut o = o;
    o.addresses.insert(decky.to_string(), ip.parse().unwrap());
    NativeDriver::live(o, None)
}

async fn deploy(driver: &NativeDriver, decky: &str, services: &[&str]) -> Result<(), String> {
    let wanted: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    driver
        .apply(&Change { project: "fleet", decky, services: &wanted, fleet: &[] })
        .await
        .map_err(|e| e.to_string())?;
    // A decky's first SSH session waits for its host keys (RSA takes
    // seconds, more on a loaded CI machine). Wait for the banner here, so
    // tests that time the server or give the client 5 s measure SSH, not
    // key generation.
    if let Some((_, a)) = driver.listening("fleet", decky).await.into_iter().find(|(s, _)| s == "ssh") {
        let mut s = TcpStream::connect(a).await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(120), s.read(&mut b))
            .await
            .map_err(|_| "no ssh banner within 120 s".to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
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
    let o =
        with_persona(options(&rx), "web-01", serde_json::json!({ "auth": first_try(), "permit_root_login": "yes" }));
    let driver = driver_at(o, "web-01", "127.1.1.1");
    deploy(&driver, "web-01", &["ssh"]).await.unwrap();

    // The banner is the persona's.
    let persona = decnet::decky::Persona::derive("web-01", None, None, 0);
    let mut raw = TcpStream::connect(addr("127.1.1.1", 22)).await.unwrap();
    assert!(read_until(&mut raw, "\r\n").await.starts_with(&format!("{}\r\n", persona.ssh_banner)));
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
    assert_eq!(sd(&login, "outcome"), Some("success"));
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
    let driver = driver_at(
        with_persona(options(&rx), "db-02", serde_json::json!({ "auth": first_try() })),
        "db-02",
        "127.1.2.1",
    );
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
    // `admin` is not one of the persona's accounts: it gets the next free
    // uid, with a group of its own, as `useradd` would have made it.
    let id_line = stdout.lines().find(|l| l.starts_with("uid=")).unwrap_or_default().to_string();
    let uid = id_line.trim_start_matches("uid=").split('(').next().unwrap_or("").to_string();
    assert!(
        stdout.contains("admin\n") && id_line.starts_with(&format!("uid={uid}(admin) gid={uid}(admin)")),
        "{stdout:?}"
    );
    assert!(uid.parse::<u32>().is_ok_and(|u| u >= 1000), "{stdout:?}");

    let offered =
        rx.wait_for("publickey", |l| is(l, "ssh", "login_attempt") && sd(l, "auth_method") == Some("publickey")).await;
    assert_eq!(sd(&offered, "username"), Some("admin"));
    assert_eq!(sd(&offered, "outcome"), Some("failure"), "public keys are refused");
    assert_eq!(sd(&offered, "key_fingerprint"), Some(fingerprint.as_str()));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let secret = base64::engine::general_purpose::STANDARD.decode(sd(&offered, "secret_b64").unwrap()).unwrap();
    let secret = String::from_utf8(secret).unwrap();
    assert!(public.starts_with(secret.split_whitespace().take(2).collect::<Vec<_>>().join(" ").as_str()));
    let password =
        rx.wait_for("password", |l| is(l, "ssh", "login_attempt") && sd(l, "auth_method") == Some("password")).await;
    assert_eq!(sd(&password, "secret_b64"), Some(b64(b"letmein").as_str()));
    // The login's session (deploy's banner probe is one of its own).
    let recorded = rx
        .wait_for("session_recorded", |l| is(l, "ssh", "session_recorded") && sd(l, "username") == Some("admin"))
        .await;
    assert_eq!(sd(&recorded, "commands"), Some(r#"["whoami","id","exit"]"#));
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_login_and_shell_dialogue() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "cam-lobby", "127.1.3.1");
    deploy(&driver, "cam-lobby", &["telnet"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.3.1", 23)).await.unwrap();
    let tries = telnet_login(&mut s, "cam-lobby", "admin", "hunter2").await;
    assert!(tries.ends_with("admin@cam-lobby:~$ "), "{tries:?}");
    // Enter as CR NUL (what a telnet client in character mode sends).
    s.write_all(b"cat /etc/passwd\r\0").await.unwrap();
    assert!(read_until(&mut s, "$ ").await.contains("root:x:0:0:root"));
    s.write_all(b"exit\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await);

    let login = rx.wait_for("login_attempt", |l| is(l, "telnet", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("admin"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"hunter2").as_str()));
    rx.wait_for("accepted", |l| is(l, "telnet", "login_attempt") && sd(l, "result") == Some("accepted")).await;
    let cmd = rx.wait_for("command", |l| is(l, "telnet", "command")).await;
    assert_eq!(cmd.msg.as_deref(), Some("CMD cat /etc/passwd"));
    let end = rx.wait_for("disconnect", |l| is(l, "telnet", "disconnect")).await;
    assert_eq!(sd(&end, "reason"), Some("done"));
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_keystrokes_are_edited_like_readline() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "cam-desk", "127.1.62.1");
    deploy(&driver, "cam-desk", &["telnet"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.62.1", 23)).await.unwrap();
    telnet_login(&mut s, "cam-desk", "admin", "hunter2").await;
    // Tab, Left, End and Ctrl-U as a character-mode client sends them.
    s.write_all(b"junk\x15ec\thel\x1b[D\x1b[DX\x1b[Flo\r\0").await.unwrap();
    let screen = read_until(&mut s, "hXello\r\n").await;
    assert!(!screen.contains('\x1b'), "escape sequences are not echoed: {screen:?}");
    let cmd = rx.wait_for("command", |l| is(l, "telnet", "command")).await;
    assert_eq!(cmd.msg.as_deref(), Some("CMD echo hXello"));
    s.write_all(b"\x04").await.unwrap();
    assert!(closed_by_server(&mut s).await, "Ctrl-D on an empty line logs out");
    driver.shutdown().await;
}

/// The netkit telnetd opening: DO TTYPE, DO TSPEED, DO XDISPLOC, DO NEW-ENVIRON.
const NETKIT_OPENING: &[u8] = b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27";

/// Answer the opening as a client that wants none of it, and wait for
/// the login prompt.
async fn telnet_negotiate(s: &mut TcpStream, host: &str) -> String {
    let mut opening = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut opening)).await.unwrap().unwrap();
    assert_eq!(&opening, NETKIT_OPENING);
    s.write_all(b"\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27").await.unwrap();
    read_until(s, &format!("{host} login: ")).await
}

/// Log in over telnet, trying again (same password) until the decky's
/// auth policy lets this source in; what the last attempt showed.
async fn telnet_login(s: &mut TcpStream, host: &str, user: &str, password: &str) -> String {
    telnet_negotiate(s, host).await;
    for _ in 0..5 {
        s.write_all(format!("{user}\r\n").as_bytes()).await.unwrap();
        read_until(s, "Password: ").await;
        s.write_all(format!("{password}\r\n").as_bytes()).await.unwrap();
        // A failure shows `Login incorrect` then the prompt again.
        let got = read_until_any(s, &["login: ", "$ ", "# "]).await;
        if !got.contains("Login incorrect") {
            return got;
        }
    }
    panic!("telnet never let {user} in");
}

/// Read until any of `needles` appears (at most 8 s).
async fn read_until_any(stream: &mut TcpStream, needles: &[&str]) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(8);
    while !needles.iter().any(|n| String::from_utf8_lossy(&got).contains(n)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            other => panic!("waiting for {needles:?}: {other:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_login_pasv_list_and_quit() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "files", "127.1.4.1");
    deploy(&driver, "files", &["ftp"]).await.unwrap();
    // Anonymous is off (the persona's default): vsftpd's refusal, after its delay.
    let mut s = TcpStream::connect(addr("127.1.4.1", 21)).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("220 (vsFTPd 3."));
    say(&mut s, "LIST", "530 Please login with USER and PASS.").await;
    say(&mut s, "USER anonymous", "331 Please specify the password.").await;
    let started = Instant::now();
    say(&mut s, "PASS guest@example.com", "530 Login incorrect.").await;
    assert!(started.elapsed() >= Duration::from_millis(2900), "vsftpd+PAM delay a failure");
    drop(s);

    let mut s = ftp_login(addr("127.1.4.1", 21), "deploy", "guest@example.com").await;
    say(&mut s, "SYST", "215 UNIX Type: L8").await;
    say(&mut s, "PWD", "257 \"/home/deploy\" is the current directory").await;
    let pasv = say(&mut s, "PASV", "227").await;
    let nums: Vec<u16> = pasv[pasv.find('(').unwrap() + 1..pasv.find(')').unwrap()]
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert_eq!(&nums[..4], &[127, 1, 4, 1], "data port on the decky's own address");
    let mut data = TcpStream::connect(("127.1.4.1", nums[4] * 256 + nums[5])).await.unwrap();
    s.write_all(b"LIST -a\r\n").await.unwrap();
    let mut listing = String::new();
    tokio::time::timeout(Duration::from_secs(5), data.read_to_string(&mut listing)).await.unwrap().unwrap();
    assert!(listing.contains(" .bashrc\r\n") && listing.contains(" .profile\r\n"), "{listing}");
    assert!(!listing.contains("id_rsa") && !listing.contains("backup"), "no bait: {listing}");
    // 150 before the transfer, 226 after it (often in one read).
    let replies = read_until(&mut s, "226").await;
    assert!(replies.starts_with("150 Here comes the directory listing.\r\n"), "{replies}");
    // STAT with a path lists on the control connection, dot files included.
    s.write_all(b"STAT .\r\n").await.unwrap();
    let stat = read_until(&mut s, "213 End of status\r\n").await;
    assert!(stat.starts_with("213-Status follows:\r\n") && stat.contains(" .profile\r\n"), "{stat}");
    say(&mut s, "QUIT", "221 Goodbye.").await;

    let login = rx.wait_for("login_attempt", |l| is(l, "ftp", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("anonymous"));
    assert_eq!(sd(&login, "result"), Some("refused"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64(b"guest@example.com").as_str()));
    rx.wait_for("accepted", |l| is(l, "ftp", "login_attempt") && sd(l, "result") == Some("accepted")).await;
    rx.wait_for("SYST command", |l| is(l, "ftp", "command") && l.msg.as_deref() == Some("CMD SYST")).await;
    let lines = rx.lines.lock().unwrap().join("\n");
    assert!(!lines.contains("guest@example.com"), "the password only travels as secret_b64");
    driver.shutdown().await;
}

/// Log in to FTP as `user`, reconnecting after vsftpd's three failures,
/// until the decky's auth policy lets this source in.
async fn ftp_login(at: SocketAddr, user: &str, password: &str) -> TcpStream {
    for _ in 0..3 {
        let mut s = TcpStream::connect(at).await.unwrap();
        read_until(&mut s, "220 ").await;
        for _ in 0..3 {
            s.write_all(format!("USER {user}\r\n").as_bytes()).await.unwrap();
            if !read_until(&mut s, "\r\n").await.starts_with("331") {
                break;
            }
            s.write_all(format!("PASS {password}\r\n").as_bytes()).await.unwrap();
            let reply = read_until_any(&mut s, &["\r\n"]).await;
            if reply.starts_with("230 Login successful.") {
                return s;
            }
            assert!(reply.starts_with("530 Login incorrect."), "{reply}");
        }
    }
    panic!("ftp never let {user} in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_auth_plain_and_login_and_a_message() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "mail-01", "127.1.5.1");
    deploy(&driver, "mail-01", &["smtp"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.5.1", 25)).await.unwrap();
    let banner = read_until(&mut s, "\r\n").await;
    assert!(banner.starts_with("220 mail-01.") && banner.contains(" ESMTP Postfix ("), "{banner}");
    let fqdn = banner.split_whitespace().nth(1).unwrap().to_string();
    s.write_all(b"EHLO spam.example\r\n").await.unwrap();
    let ehlo = read_until(&mut s, "250 CHUNKING\r\n").await;
    assert!(ehlo.contains("250-STARTTLS\r\n") && !ehlo.contains("AUTH"), "{ehlo}");
    // AUTH is not enabled (Postfix's default); the credentials are kept anyway.
    say(&mut s, &format!("AUTH PLAIN {}", b64(b"\0bob\0pl4in")), "503 5.5.1 Error: authentication not enabled").await;
    say(&mut s, "RCPT TO:<b@victim.example>", "503 5.5.1 Error: need MAIL command").await;
    say(&mut s, "MAIL FROM:<a@spam.example>", "250 2.1.0 Ok").await;
    say(&mut s, "MAIL FROM:<a@spam.example>", "503 5.5.1 Error: nested MAIL command").await;
    say(&mut s, "RCPT TO:<b@victim.example>", "454 4.7.1 <b@victim.example>: Relay access denied").await;
    say(
        &mut s,
        &format!("RCPT TO:<nobody@{fqdn}>"),
        &format!("550 5.1.1 <nobody@{fqdn}>: Recipient address rejected: User unknown in local recipient table"),
    )
    .await;
    say(&mut s, &format!("RCPT TO:<root@{fqdn}>"), "250 2.1.5 Ok").await;
    say(&mut s, "DATA", "354 End data with <CR><LF>.<CR><LF>").await;
    s.write_all(b"Subject: cheap pills\r\n\r\nbuy now\r\n.\r\n").await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.starts_with("250 2.0.0 Ok: queued as "));
    // CHUNKING is offered, so BDAT works: the chunk is read by its size.
    say(&mut s, "MAIL FROM:<c@spam.example>", "250 2.1.0 Ok").await;
    say(&mut s, &format!("RCPT TO:<root@{fqdn}>"), "250 2.1.5 Ok").await;
    s.write_all(b"BDAT 7\r\nQUIT\r\n\r").await.unwrap();
    assert_eq!(read_until(&mut s, "\r\n").await, "250 2.0.0 Ok: 7 bytes\r\n", "the chunk's QUIT is data");
    say(&mut s, "DATA", "503 5.5.1 Error: DATA after BDAT").await;
    say(&mut s, "BDAT 0 LAST", "250 2.0.0 Ok: 7 bytes queued as ").await;
    say(&mut s, "FOO", "500 5.5.2 Error: command not recognized").await;
    say(&mut s, "", "500 5.5.2 Error: bad syntax").await;
    say(&mut s, "QUIT", "221 2.0.0 Bye").await;
    // A web request gets Postfix's goodbye; twenty errors end a session.
    let mut web = TcpStream::connect(addr("127.1.5.1", 25)).await.unwrap();
    read_until(&mut web, "\r\n").await;
    say(&mut web, "GET / HTTP/1.0", "221 2.7.0 Error: I can break rules, too. Goodbye.").await;
    assert!(closed_by_server(&mut web).await);
    let mut noisy = TcpStream::connect(addr("127.1.5.1", 25)).await.unwrap();
    read_until(&mut noisy, "\r\n").await;
    for _ in 0..19 {
        say(&mut noisy, "RCPT TO:<x@y>", "503 5.5.1 Error: need MAIL command").await;
    }
    say(&mut noisy, "RCPT TO:<x@y>", &format!("421 4.7.0 {fqdn} Error: too many errors")).await;
    assert!(closed_by_server(&mut noisy).await);
    let mut bad = TcpStream::connect(addr("127.1.5.1", 25)).await.unwrap();
    read_until(&mut bad, "\r\n").await;
    say(&mut bad, "BDAT lots", "521 5.5.4 Syntax: BDAT count [LAST]").await;
    assert!(closed_by_server(&mut bad).await);

    let plain = rx.wait_for("plain", |l| is(l, "smtp", "login_attempt") && sd(l, "auth_method") == Some("plain")).await;
    assert_eq!((sd(&plain, "username"), sd(&plain, "secret_b64")), (Some("bob"), Some(b64(b"pl4in").as_str())));
    assert_eq!(sd(&plain, "result"), Some("refused"));
    let msg = rx.wait_for("message", |l| is(l, "smtp", "message") && sd(l, "size") != Some("7")).await;
    assert_eq!(sd(&msg, "subject"), Some("cheap pills"));
    rx.wait_for("bdat message", |l| is(l, "smtp", "message") && sd(l, "size") == Some("7")).await;
    assert_eq!(sd(&msg, "rcpt_to"), Some(format!("root@{fqdn}").as_str()), "only the local recipient");
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
    // The persona's server (Apache or nginx, http_personas.rs checks each against the real one).
    let server = home.headers()["server"].to_str().unwrap().to_string();
    assert!(server.starts_with("Apache/2.4.") || server.starts_with("nginx/1."), "{server}");
    let page = home.text().await.unwrap();
    assert!(page.contains("It works!") || page.contains("Welcome to nginx!"), "{page}");
    let challenge = client.get(format!("{base}/admin")).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    assert!(challenge.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let tried = client.get(format!("{base}/admin")).basic_auth("admin", Some("s3cret:x")).send().await.unwrap();
    assert_eq!(tried.status(), 401, "credentials never work: asked again");
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
    telnet_login(&mut good, "tough", "root", "x").await;

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
    telnet_negotiate(&mut odd, "tough").await;
    odd.write_all(b"\x00\xff\xfe\x01\xc3\x28\x1b[31m\r\n").await.unwrap();
    read_until(&mut odd, "Password: ").await;

    // The good session still answers, and new ones are served.
    good.write_all(b"whoami\r\n").await.unwrap();
    assert!(read_until(&mut good, "# ").await.contains("root"));
    let mut fresh = TcpStream::connect(addr("127.1.7.1", 80)).await.unwrap();
    fresh.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(read_until(&mut fresh, "</html>").await.starts_with("HTTP/1.1 200 OK"));

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
    // (At the login prompt: an empty name is prompted for again at once.)
    let mut s = TcpStream::connect(addr("127.1.15.1", 23)).await.unwrap();
    telnet_negotiate(&mut s, "timed").await;
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"\r\n").await.is_err() {
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
    // (deploy's banner probe closed its own session itself.)
    rx.wait_for("ssh end", |l| {
        is(l, "ssh", "disconnect") && matches!(sd(l, "reason"), Some("idle timeout") | Some("session time limit"))
    })
    .await;
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
    assert_eq!(listening.keys().map(String::as_str).collect::<Vec<_>>(), ["http", "smb", "ssh"], "all three served");
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

    // The real openssl client: the certificate is the one the persona's
    // own tooling would have made for the host (RSA 2048, CN = its name,
    // issued in the past), not rcgen's defaults or a made-up company.
    let printed = run_tool("openssl", &["s_client", "-connect", &target, "-showcerts", "-ign_eof"], b"");
    let pem_start = printed.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("{printed}"));
    let pem_end = printed.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let x509 = run_tool("openssl", &["x509", "-noout", "-text"], &printed.as_bytes()[pem_start..pem_end]);
    assert!(x509.contains("Subject: CN = web-01"), "{x509}");
    assert!(x509.contains("Public-Key: (2048 bit)") && x509.contains("sha256WithRSAEncryption"), "{x509}");
    for made_up in ["rcgen", "corp.local", "Contoso", "Fabrikam", "Northwind"] {
        assert!(!x509.contains(made_up), "{made_up}: {x509}");
    }

    // curl over TLS reaches the HTTP honeypot: pages and credentials recorded as https.
    let status =
        run_tool("curl", &["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("https://{target}/")], b"");
    assert_eq!(status, "200");
    let denied = run_tool(
        "curl",
        &["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", "admin:hunter2", &format!("https://{target}/admin")],
        b"",
    );
    assert_eq!(denied, "401", "credentials never work: asked again");
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
    let status =
        run_tool("curl", &["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("https://{target}/")], b"");
    assert_eq!(status, "200", "still serving after hostile input");
    driver.shutdown().await;
}

// ---------------------------------------------------------------------
// SSH as the persona's release: auth policy, failure path, host keys,
// forwarding, login messages, bad handshakes. Where a real sshd is the
// reference, the test starts one (Debian's openssh-server, PAM on, as the
// releases ship it) and measures it alongside the decky.

/// A real OpenSSH sshd on 127.0.0.1, configured like a distribution's:
/// PAM on, passwords allowed, keyboard-interactive off, no forwarding.
struct RealSshd {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RealSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn real_sshd() -> RealSshd {
    let sshd = std::path::Path::new("/usr/sbin/sshd");
    assert!(sshd.exists(), "/usr/sbin/sshd missing: install openssh-server (scripts/test.sh does)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    // sshd refuses to start without its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM yes\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nAllowTcpForwarding no\nStrictModes no\n",
            key.display(),
            dir.path().join("sshd.pid").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
    let child =
        std::process::Command::new(sshd).arg("-D").arg("-e").arg("-f").arg(&config).stderr(log).spawn().unwrap();
    let real = RealSshd { child, port, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    real
}

/// OpenSSH `ssh` answering up to `prompts` password prompts through an
/// askpass script that notes when it was asked (the gaps between prompts
/// are the server's failure path). Prompt times (unix s) and stderr.
async fn askpass_login(port: u16, target: &str, prompts: u32) -> (Vec<f64>, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let script = dir.path().join("askpass.sh");
    std::fs::write(&script, format!("#!/bin/sh\ndate +%s.%N >> '{}'\necho wrong-password\n", asked.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = tokio::process::Command::new("ssh")
        .env("SSH_ASKPASS", &script)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "ConnectTimeout=5"])
        .arg("-o")
        .arg(format!("NumberOfPasswordPrompts={prompts}"))
        .args(["-p", &port.to_string(), target, "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run).await.expect("ssh finished").unwrap();
    let times =
        std::fs::read_to_string(&asked).unwrap_or_default().lines().map(|l| l.trim().parse::<f64>().unwrap()).collect();
    (times, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_passwords_take_as_long_as_real_sshd_s_and_the_sixth_ends_the_connection() {
    let real = real_sshd();
    let rx = Receiver::start().await;
    // A policy that never accepts: every attempt takes the failure path.
    let never = serde_json::json!({ "release": "debian-12", "auth": { "accept_after": [0, 0], "credentials": [] } });
    // sshd's failure delay reaches ~4.8 s: the idle limit must not end the
    // session between two slow failures on a loaded machine.
    let mut o = options(&rx);
    o.limits.idle = Duration::from_secs(30);
    let driver = driver_at(with_persona(o, "slow", never), "slow", "127.1.24.1");
    deploy(&driver, "slow", &["ssh"]).await.unwrap();

    let (real_times, real_err) = askpass_login(real.port, "nosuchuser@127.0.0.1", 10).await;
    let (our_times, our_err) = askpass_login(22 + OFFSET, "nosuchuser@127.1.24.1", 10).await;
    for (who, err) in [("real sshd", &real_err), ("decky", &our_err)] {
        assert!(err.contains("Too many authentication failures"), "{who}: {err:?}");
    }
    assert_eq!(real_times.len(), 6, "the real sshd asks six times");
    // The client may start a seventh prompt before it reads the disconnect
    // that follows our sixth failure; the seventh answer is never judged.
    assert!((6..=7).contains(&our_times.len()), "{our_times:?}");
    let gaps = |t: &[f64]| t.windows(2).take(5).map(|w| w[1] - w[0]).collect::<Vec<f64>>();
    let (real_gaps, our_gaps) = (gaps(&real_times), gaps(&our_times));
    let (real_mean, our_mean) = (mean(&real_gaps), mean(&our_gaps));
    println!(
        "failure path per attempt: real sshd {real_mean:.3} s {real_gaps:.3?}; decky {our_mean:.3} s {our_gaps:.3?}"
    );
    // Both are PAM's 1–3 s padded to a per-user floor × 2^k, so single
    // attempts differ by up to 2x; the means of five stay within a band.
    let ratio = our_mean / real_mean;
    assert!((0.45..2.2).contains(&ratio), "decky {our_gaps:?} vs real sshd {real_gaps:?}");
    let real_min = real_gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(our_gaps.iter().all(|g| *g > real_min * 0.25), "an attempt came back too soon: {our_gaps:?}");

    let recorded = rx
        .wait_for("session_recorded", |l| is(l, "ssh", "session_recorded") && sd(l, "username") == Some("nosuchuser"))
        .await;
    let sid = sd(&recorded, "sid").unwrap().to_string();
    let attempts: Vec<SyslogLine> =
        rx.parsed().into_iter().filter(|l| is(l, "ssh", "login_attempt") && sd(l, "sid") == Some(&sid)).collect();
    assert_eq!(attempts.len(), 6, "every judged attempt is recorded, and only those");
    assert!(attempts.iter().all(|l| sd(l, "outcome") == Some("failure") && sd(l, "username") == Some("nosuchuser")));
    let end = rx.wait_for("disconnect", |l| is(l, "ssh", "disconnect") && sd(l, "sid") == Some(&sid)).await;
    assert_eq!(sd(&end, "reason"), Some("too many authentication failures"));
    driver.shutdown().await;
}

/// Log in once with `password`; whether it got in, and what it printed.
async fn try_login(ip: &str, user: &str, password: &str) -> (bool, String) {
    let port = (22 + OFFSET).to_string();
    let target = format!("{user}@{ip}");
    let out = ssh(&["-p", &port, "-o", "PubkeyAuthentication=no", &target, "whoami"], password, None).await;
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn outcomes(rx: &Receiver, decky: &str) -> Vec<String> {
    rx.parsed()
        .iter()
        .filter(|l| is(l, "ssh", "login_attempt") && l.hostname.as_deref() == Some(decky))
        .map(|l| format!("{}:{}", sd(l, "username").unwrap_or("?"), sd(l, "outcome").unwrap_or("?")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_gets_in_on_the_source_s_nth_attempt_and_not_before() {
    let rx = Receiver::start().await;
    let mut o =
        with_persona(options(&rx), "nth", serde_json::json!({ "auth": { "accept_after": [3, 3], "credentials": [] } }));
    o.addresses.insert("nth-default".into(), "127.1.25.2".parse().unwrap());
    let driver = driver_at(o, "nth", "127.1.25.1");
    deploy(&driver, "nth", &["ssh"]).await.unwrap();
    deploy(&driver, "nth-default", &["ssh"]).await.unwrap();

    // Counted across connections: one attempt per connection here.
    assert!(!try_login("127.1.25.1", "admin", "guess1").await.0);
    assert!(!try_login("127.1.25.1", "admin", "guess2").await.0);
    let third = try_login("127.1.25.1", "admin", "guess3").await;
    assert_eq!(third, (true, "admin\n".to_string()), "{}", rx.lines.lock().unwrap().join("\n"));
    // The password that got in is admin's from now on, and only it.
    assert!(try_login("127.1.25.1", "admin", "guess3").await.0);
    assert!(!try_login("127.1.25.1", "admin", "guess1").await.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes(&rx, "nth").len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        outcomes(&rx, "nth"),
        ["admin:failure", "admin:failure", "admin:success", "admin:success", "admin:failure"]
    );

    // The derived policy: in the persona's range (2–5 by default).
    let (lo, hi) = decnet::decky::Persona::derive("nth-default", None, None, 0).auth.accept_after;
    assert!(lo >= 2 && hi <= 5 && lo <= hi, "{lo}..{hi}");
    let mut got_in = None;
    for attempt in 1..=hi + 1 {
        if try_login("127.1.25.2", "deploy", &format!("pw{attempt}")).await.0 {
            got_in = Some(attempt);
            break;
        }
    }
    let n = got_in.expect("the derived policy lets a source in");
    assert!((lo..=hi).contains(&n), "got in on attempt {n}, policy {lo}..={hi}");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_refused_where_the_release_s_sshd_config_says_so_and_accepted_on_centos() {
    let rx = Receiver::start().await;
    let policy = serde_json::json!({ "accept_after": [2, 2], "credentials": [] });
    let mut o = with_persona(options(&rx), "ubu", serde_json::json!({ "release": "ubuntu-22.04", "auth": policy }));
    o = with_persona(o, "cent", serde_json::json!({ "release": "centos-7", "auth": policy }));
    o.addresses.insert("cent".into(), "127.1.26.2".parse().unwrap());
    let driver = driver_at(o, "ubu", "127.1.26.1");
    deploy(&driver, "ubu", &["ssh"]).await.unwrap();
    deploy(&driver, "cent", &["ssh"]).await.unwrap();

    // PermitRootLogin prohibit-password: never with a password, however often.
    for i in 0..3 {
        assert!(!try_login("127.1.26.1", "root", &format!("toor{i}")).await.0);
    }
    // PermitRootLogin yes: root gets in on its Nth attempt like anyone.
    assert!(!try_login("127.1.26.2", "root", "123456").await.0);
    assert_eq!(try_login("127.1.26.2", "root", "password").await, (true, "root\n".to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcomes(&rx, "ubu").len() + outcomes(&rx, "cent").len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcomes(&rx, "ubu"), ["root:failure", "root:failure", "root:failure"], "still recorded");
    assert_eq!(outcomes(&rx, "cent"), ["root:failure", "root:success"]);
    driver.shutdown().await;
}

/// `ssh-keyscan` of `ip` on the decky ssh port: (key type, base64 blob) pairs.
async fn keyscan(ip: &str) -> Vec<(String, String)> {
    let run = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "60", "-t", "rsa,ecdsa,ed25519", "-p", &(22 + OFFSET).to_string(), ip])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("ssh-keyscan finished").unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace().skip(1);
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// Bits of an OpenSSH public key line, as `ssh-keygen -l` reports them.
fn key_bits(kind: &str, blob: &str) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.pub");
    std::fs::write(&file, format!("{kind} {blob}\n")).unwrap();
    let out = std::process::Command::new("ssh-keygen").arg("-lf").arg(&file).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decky_offers_its_release_s_host_key_types_and_keys_of_its_own() {
    let rx = Receiver::start().await;
    let deckies = [
        ("kx-ubu", "127.1.27.1", "ubuntu-22.04", vec!["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"], 3072),
        ("kx-cent", "127.1.27.2", "centos-7", vec!["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"], 2048),
        ("kx-cam", "127.1.27.3", "busybox-camera", vec!["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"], 2048),
    ];
    let mut o = options(&rx);
    for (name, ip, release, _, _) in &deckies {
        o.addresses.insert(name.to_string(), ip.parse().unwrap());
        o.personas.insert(name.to_string(), serde_json::json!({ "release": release }));
    }
    let driver = NativeDriver::live(o, None);
    let mut seen: Vec<String> = Vec::new();
    for (name, ip, release, types, rsa_bits) in &deckies {
        deploy(&driver, name, &["ssh"]).await.unwrap();
        let keys = keyscan(ip).await;
        let mut offered: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
        offered.sort();
        assert_eq!(&offered, types, "{release}: {keys:?}");
        let (kind, rsa) = keys.iter().find(|(t, _)| t == "ssh-rsa").unwrap();
        assert_eq!(key_bits(kind, rsa), *rsa_bits, "{release}");
        for (_, blob) in &keys {
            assert!(!seen.contains(blob), "{name} shares a host key with another decky");
            seen.push(blob.clone());
        }
    }
    driver.shutdown().await;

    // Another process with the same seed: the same keys (the fleet's
    // known_hosts entries stay valid across restarts).
    let mut o = options(&rx);
    o.personas.insert("kx-ubu".into(), serde_json::json!({ "release": "ubuntu-22.04" }));
    let again = driver_at(o, "kx-ubu", "127.1.27.1");
    deploy(&again, "kx-ubu", &["ssh"]).await.unwrap();
    for (_, blob) in keyscan("127.1.27.1").await {
        assert!(seen.contains(&blob), "a restarted decky changed its host key");
    }
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding_is_refused_at_once_and_connects_nowhere() {
    let rx = Receiver::start().await;
    let driver = driver_at(
        with_persona(options(&rx), "pivot", serde_json::json!({ "auth": first_try() })),
        "pivot",
        "127.1.28.1",
    );
    deploy(&driver, "pivot", &["ssh"]).await.unwrap();
    // What an attacker would reach through the decky: must never see a connection.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let target_port = target.local_addr().unwrap().port();
    let local = free_port();
    let port = (22 + OFFSET).to_string();
    let forwarding = |spec: &[String]| {
        let mut cmd = tokio::process::Command::new("sshpass");
        cmd.args(["-p", "x", "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=INFO", "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5", "-N"])
            .args(spec)
            .args(["-p", &port, "admin@127.1.28.1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };

    // -L: the tunnel opens on the client; each connection through it is
    // refused by the decky at once with sshd's words.
    let mut tunnel = forwarding(&["-L".into(), format!("127.0.0.1:{local}:127.0.0.1:{target_port}")]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut through = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", local)).await {
            break s;
        }
        assert!(Instant::now() < deadline, "ssh -L never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let asked = Instant::now();
    assert!(closed_by_server(&mut through).await, "the forwarded connection hangs");
    println!("direct-tcpip refused after {:?}", asked.elapsed());
    let _ = tunnel.start_kill();
    let out = tunnel.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open failed: administratively prohibited: open failed"), "{err:?}");
    let line = rx.wait_for("port_forward", |l| is(l, "ssh", "port_forward")).await;
    assert_eq!(sd(&line, "kind"), Some("direct-tcpip"));
    assert_eq!(sd(&line, "target"), Some(format!("127.0.0.1:{target_port}").as_str()));

    // -R: the server says no, and a client that insists gives up at once.
    let remote = forwarding(&[
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-R".into(),
        format!("127.0.0.1:0:127.0.0.1:{target_port}"),
    ])
    .output();
    let out = tokio::time::timeout(Duration::from_secs(20), remote).await.expect("ssh -R hangs").unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("remote port forwarding failed"), "{out:?}");
    rx.wait_for("tcpip-forward", |l| is(l, "ssh", "port_forward") && sd(l, "kind") == Some("tcpip-forward")).await;
    assert!(matches!(target.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the decky connected out");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_login_shows_the_persona_s_motd_and_last_login_and_commands_exit_like_bash() {
    let rx = Receiver::start().await;
    let overrides = serde_json::json!({
        "release": "debian-12",
        "auth": first_try(),
        "last_logins": [
            { "user": "admin", "tty": "pts/0", "from": "10.9.8.7", "at": 1_717_492_364 },
            { "user": "admin", "tty": "pts/1", "from": "10.9.8.1", "at": 1_717_000_000 },
        ],
    });
    let persona = decnet::decky::Persona::derive("lobby", None, None, 0).with_overrides(&overrides).unwrap();
    let driver = driver_at(with_persona(options(&rx), "lobby", overrides), "lobby", "127.1.29.1");
    deploy(&driver, "lobby", &["ssh"]).await.unwrap();
    let port = (22 + OFFSET).to_string();

    let out =
        ssh(&["-tt", "-p", &port, "-o", "PubkeyAuthentication=no", "admin@127.1.29.1"], "pw", Some("exit\n")).await;
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    let motd = persona.motd.replace('\n', "\r\n");
    assert!(screen.starts_with(&motd), "{screen:?}");
    assert!(motd.starts_with("Linux lobby 6.1.0-"), "Debian's MOTD names the host and kernel: {motd:?}");
    assert!(
        screen.contains("\r\nLast login: Tue Jun  4 09:12:44 2024 from 10.9.8.7\r\nadmin@lobby:~$ "),
        "the latest of the persona's logins for the user, then the prompt: {screen:?}"
    );

    // `ssh host cmd` runs `bash -c cmd`: Debian 12's bash 5.2 says
    // `bash: X: command not found` on stderr (checked against the real one).
    for (command, status, output, errors) in [
        ("exit 3", 3, "", ""),
        ("nosuchcmd", 127, "", "bash: nosuchcmd: command not found\n"),
        ("hostname", 0, "lobby\n", ""),
    ] {
        let out = ssh(&["-p", &port, "-o", "PubkeyAuthentication=no", "admin@127.1.29.1", command], "pw", None).await;
        assert_eq!(out.status.code(), Some(status), "{command}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), output, "{command}");
        assert!(String::from_utf8_lossy(&out.stderr).ends_with(errors), "{command}: {out:?}");
    }
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystrokes_on_a_pty_are_edited_like_readline_and_the_edited_line_runs() {
    let rx = Receiver::start().await;
    let overrides = serde_json::json!({ "release": "debian-12", "auth": first_try() });
    let driver = driver_at(with_persona(options(&rx), "desk", overrides), "desk", "127.1.61.1");
    deploy(&driver, "desk", &["ssh"]).await.unwrap();
    let port = (22 + OFFSET).to_string();

    // Tab completes `ec` to `echo `; two Left arrows, an `X`, End, `lo`:
    // the real client sends the keys' bytes unchanged through its pty.
    let keys = "ec\thel\x1b[D\x1b[DX\x1b[Flo\rexit\r";
    let out = ssh(&["-tt", "-p", &port, "-o", "PubkeyAuthentication=no", "admin@127.1.61.1"], "pw", Some(keys)).await;
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("\r\nhXello\r\nadmin@desk:~$ "), "{screen:?}");
    assert!(!screen.contains("\x1b[D") && !screen.contains("\x1b[F"), "arrow keys are not echoed raw: {screen:?}");
    let command = rx.wait_for("command", |l| is(l, "ssh", "command")).await;
    assert_eq!(command.msg.as_deref(), Some("CMD echo hXello"));
    driver.shutdown().await;
}

/// What a server sends after its banner to a client whose first line is
/// an HTTP request, until it closes (at most 5 s).
async fn answer_to_http(a: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect(a).await.unwrap();
    let banner = read_until(&mut s, "\r\n").await;
    assert!(banner.starts_with("SSH-2.0-") && banner.ends_with("\r\n"), "{banner:?}");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            Ok(_) => return got,
            Err(_) => panic!("still open after 5 s; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ssh_first_line_is_answered_like_the_release_s_sshd() {
    let real = real_sshd();
    let rx = Receiver::start().await;
    let mut o = with_persona(options(&rx), "ident", serde_json::json!({ "release": "debian-12" }));
    o = with_persona(o, "ident7", serde_json::json!({ "release": "centos-7" }));
    o.addresses.insert("ident7".into(), "127.1.30.2".parse().unwrap());
    let driver = driver_at(o, "ident", "127.1.30.1");
    deploy(&driver, "ident", &["ssh"]).await.unwrap();
    deploy(&driver, "ident7", &["ssh"]).await.unwrap();

    // The real sshd resets the connection with the request's rest unread,
    // and a reset may drop the tail of its answer before it is read: its
    // words are compared, and ours must be complete.
    let reference = answer_to_http(SocketAddr::from(([127, 0, 0, 1], real.port))).await;
    let ours = answer_to_http(addr("127.1.30.1", 22)).await;
    let words = String::from_utf8_lossy(&reference).trim_end().to_string();
    assert!(!words.is_empty(), "the real sshd explains itself");
    assert_eq!(String::from_utf8_lossy(&ours), format!("{words}\r\n"), "the real sshd's answer");
    // OpenSSH 7.4 (before the check moved to kex.c) said it differently.
    assert_eq!(answer_to_http(addr("127.1.30.2", 22)).await, b"Protocol mismatch.\n");
    let end = rx
        .wait_for("disconnect", |l| {
            is(l, "ssh", "disconnect")
                && l.hostname.as_deref() == Some("ident")
                && sd(l, "reason") != Some("client closed")
        })
        .await;
    assert!(sd(&end, "reason").unwrap().contains("invalid SSH identification \"GET / HTTP/1.0\""), "{end:?}");
    driver.shutdown().await;
}

/// A decky name (`prefix-N`) whose derived persona runs `release`: names
/// are searched, not hard-coded, so the test follows the persona rules.
fn decky_running(prefix: &str, release: &str) -> String {
    (0..500)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| decnet::decky::Persona::derive(n, None, None, 0).release == release)
        .unwrap_or_else(|| panic!("no {prefix}-N runs {release}"))
}

/// Send `lines` one at a time and collect each reply (multi-line replies
/// whole), as `(line, reply, seconds it took)`.
async fn ftp_script(at: SocketAddr, lines: &[&str]) -> (Vec<(String, String, f64)>, TcpStream) {
    let mut s = TcpStream::connect(at).await.unwrap();
    let mut out = vec![("".to_string(), read_until(&mut s, "\r\n").await, 0.0)];
    for line in lines {
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut reply = String::new();
        // A reply ends with a line "NNN text".
        while !reply.lines().last().is_some_and(|l| l.len() > 3 && l.as_bytes()[3] == b' ') || !reply.ends_with("\r\n")
        {
            reply.push_str(&read_until_any(&mut s, &["\r\n"]).await);
        }
        out.push((line.to_string(), reply, started.elapsed().as_secs_f64()));
    }
    (out, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_answers_exactly_as_the_real_vsftpd_beside_it() {
    // Real vsftpd (Debian's package: 3.0.3) on a loopback address of its
    // own, as an unprivileged standalone server with anonymous off, and a
    // decky whose persona runs the same vsftpd release.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let conf = dir.path().join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_address=127.1.41.2\nlisten_port=10021\nrun_as_launching_user=YES\n\
anonymous_enable=NO\nlocal_enable=YES\nbackground=NO\nsecure_chroot_dir={}\n",
            dir.path().join("empty").display()
        ),
    )
    .unwrap();
    let mut real = tokio::process::Command::new("/usr/sbin/vsftpd")
        .arg(&conf)
        .kill_on_drop(true)
        .spawn()
        .expect("vsftpd is installed by scripts/test.sh");
    let real_at: SocketAddr = "127.1.41.2:10021".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(real_at).await.is_err() {
        assert!(Instant::now() < deadline, "real vsftpd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rx = Receiver::start().await;
    let name = decky_running("ftp", "debian-12");
    let driver = driver_at(options(&rx), &name, "127.1.41.1");
    deploy(&driver, &name, &["ftp"]).await.unwrap();

    let script = [
        "SYST",
        "FEAT",
        "STAT",
        "HELP",
        "PWD",
        "OPTS UTF8 ON",
        "BOGUS x",
        "PASS early",
        "USER anonymous",
        "PASS a@b.c",
        "USER root",
        "PASS toor",
        "USER admin",
        "PASS admin",
    ];
    let ((ours, mut my_conn), (theirs, mut real_conn)) =
        tokio::join!(ftp_script(addr("127.1.41.1", 21), &script), ftp_script(real_at, &script));
    for ((line, mine, my_time), (_, real, real_time)) in ours.iter().zip(&theirs) {
        assert_eq!(mine, real, "reply to {line:?}");
        if real.starts_with("530 Login incorrect") {
            assert!((my_time - real_time).abs() < 1.5, "{line}: delay {my_time:.2}s vs vsftpd's {real_time:.2}s");
        }
    }
    assert_eq!(ours.len(), script.len() + 1);
    // The third failure ends the session on both (max_login_fails).
    assert!(closed_by_server(&mut real_conn).await, "real vsftpd closes after three failures");
    assert!(closed_by_server(&mut my_conn).await, "the decky closes after three failures");
    let _ = real.kill().await;
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_lists_the_persona_home_and_nothing_planted() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "ftp-home", "127.1.42.1");
    deploy(&driver, "ftp-home", &["ftp"]).await.unwrap();
    let url = format!("ftp://ops:Spring2024@127.1.42.1:{}/", 21 + OFFSET);
    // Each curl run is one login attempt; the policy lets a source in
    // within a few.
    let mut listing = None;
    for _ in 0..6 {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "--max-time", "20", "-X", "LIST -a", &url])
            .output()
            .await
            .expect("curl is installed by scripts/test.sh");
        if out.status.success() {
            listing = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
        assert_eq!(out.status.code(), Some(67), "curl's 'login denied': {out:?}");
    }
    let listing = listing.expect("curl got in");
    let names: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(names, [".", "..", ".bash_logout", ".bashrc", ".profile"], "{listing}");
    assert!(listing.lines().all(|l| l.len() > 40 && l.as_bytes()[10] == b' '), "vsftpd's columns: {listing}");
    rx.wait_for("LIST", |l| is(l, "ftp", "command") && l.msg.as_deref() == Some("CMD LIST -a")).await;
    driver.shutdown().await;
}

fn run_with_stdin(cmd: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/test.sh installs it)"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_starttls_really_upgrades_and_relaying_is_refused() {
    let rx = Receiver::start().await;
    let name = decky_running("mx", "ubuntu-22.04");
    let driver = driver_at(options(&rx), &name, "127.1.43.1");
    deploy(&driver, &name, &["smtp"]).await.unwrap();
    let target = format!("127.1.43.1:{}", 25 + OFFSET);
    let persona = decnet::decky::Persona::derive(&name, None, None, 0);
    let fqdn = persona.fqdn();

    // openssl's STARTTLS client: the handshake completes with the decky's
    // certificate, and inside TLS the EHLO list no longer offers STARTTLS.
    let script = format!(
        "EHLO client.example\nMAIL FROM:<x@spam.example>\nRCPT TO:<victim@elsewhere.example>\nRCPT TO:<root@{fqdn}>\nQUIT\n"
    );
    let t = target.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_with_stdin(
            "timeout",
            &[
                "20",
                "openssl",
                "s_client",
                "-starttls",
                "smtp",
                "-crlf",
                "-connect",
                &t,
                "-servername",
                "x",
                "-ign_eof",
            ],
            script.as_bytes(),
        )
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-----BEGIN CERTIFICATE-----"), "{text}");
    // Everything printed came after the handshake (s_client hides its own
    // EHLO/STARTTLS exchange).
    let ehlo = text.lines().filter(|l| l.starts_with("250")).map(|l| &l[4..]).collect::<Vec<_>>();
    assert!(ehlo.contains(&"PIPELINING") && ehlo.contains(&"CHUNKING") && !ehlo.contains(&"STARTTLS"), "{text}");
    assert!(text.contains("454 4.7.1 <victim@elsewhere.example>: Relay access denied"), "{text}");
    assert!(text.contains("250 2.1.5 Ok"), "{text}");

    // curl as a mail client: a local recipient gets the message, an
    // outside one is refused (curl's 55: the server said no).
    let mail = dir_file("Subject: hello\r\n\r\nhi\r\n");
    let url = format!("smtp://{target}");
    let local = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20", &url, "--mail-from", "a@b.example", "--mail-rcpt"])
        .arg(format!("root@{fqdn}"))
        .arg("-T")
        .arg(mail.1.as_path())
        .output()
        .await
        .unwrap();
    assert!(local.status.success(), "{local:?}");
    let relay = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            &url,
            "--mail-from",
            "a@b.example",
            "--mail-rcpt",
            "v@elsewhere.example",
            "-T",
        ])
        .arg(mail.1.as_path())
        .output()
        .await
        .unwrap();
    assert_eq!(relay.status.code(), Some(55), "{relay:?}");

    let msg = rx.wait_for("message", |l| is(l, "smtp", "message")).await;
    assert_eq!(sd(&msg, "subject"), Some("hello"));
    assert_eq!(sd(&msg, "tls"), Some("false"));
    rx.wait_for("relay try", |l| {
        is(l, "smtp", "command") && l.msg.as_deref() == Some("CMD RCPT TO:<v@elsewhere.example>")
    })
    .await;
    rx.wait_for("tls session", |l| is(l, "smtp", "command") && l.msg.as_deref() == Some("CMD STARTTLS")).await;
    driver.shutdown().await;
}

/// A temporary file holding `text` (the directory lives as long as the pair).
fn dir_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.txt");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_probe_on_telnet_is_recorded_and_never_a_login() {
    let rx = Receiver::start().await;
    let driver = driver_at(options(&rx), "web-07", "127.1.44.1");
    deploy(&driver, "web-07", &["telnet"]).await.unwrap();
    let port = (23 + OFFSET).to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_with_stdin("timeout", &["10", "nc", "-q", "2", "127.1.44.1", &port], b"GET / HTTP/1.0\r\n\r\n")
    })
    .await
    .unwrap();
    assert_eq!(out.stdout, NETKIT_OPENING, "only the negotiation, never a prompt");
    let probe = rx.wait_for("probe", |l| is(l, "telnet", "probe")).await;
    assert_eq!(sd(&probe, "data"), Some("GET / HTTP/1.0"));
    rx.wait_for("disconnect", |l| is(l, "telnet", "disconnect")).await;
    let lines = rx.lines.lock().unwrap().join("\n");
    assert!(!lines.contains("login_attempt"), "{lines}");
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_names_each_service_as_the_persona_release() {
    let rx = Receiver::start().await;
    let name = decky_running("srv", "ubuntu-22.04");
    let driver = driver_at(options(&rx), &name, "127.1.45.1");
    deploy(&driver, &name, &["ftp", "telnet", "smtp"]).await.unwrap();
    let ports = format!("{},{},{}", 21 + OFFSET, 23 + OFFSET, 25 + OFFSET);
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("nmap")
            .args(["-sV", "-sC", "-Pn", "-n", "--host-timeout", "200s", "-p", &ports, "127.1.45.1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("nmap finished")
    .expect("nmap is installed by scripts/test.sh");
    let report = String::from_utf8_lossy(&out.stdout);
    let line = |port: u16| report.lines().find(|l| l.starts_with(&format!("{}/tcp", port + OFFSET))).unwrap_or("");
    assert!(line(21).contains("vsftpd 3.0.5"), "{report}");
    assert!(line(23).contains("Linux telnetd"), "{report}");
    assert!(line(25).contains("Postfix smtpd"), "{report}");
    let persona = decnet::decky::Persona::derive(&name, None, None, 0);
    assert!(report.contains(&persona.fqdn()), "smtp-commands shows the EHLO name: {report}");
    assert!(!report.contains("Anonymous FTP login allowed"), "{report}");
    // The scan's probes reach the telnet decky; none becomes a login.
    let lines = rx.lines.lock().unwrap().join("\n");
    assert!(!lines.lines().any(|l| l.contains(" telnet ") && l.contains("login_attempt")), "{lines}");
    driver.shutdown().await;
}

/// A TLS client that accepts any certificate (the decky's is self-signed).
#[derive(Debug)]
struct AnyCert(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn tls_client() -> tokio_rustls::TlsConnector {
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider.signature_verification_algorithms)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Read from a TLS stream until `needle` (at most 5 s).
async fn tls_read_until<S: tokio::io::AsyncRead + Unpin>(s: &mut S, needle: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed waiting for {needle:?}: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_after_starttls_are_discarded_not_run_inside_tls() {
    let rx = Receiver::start().await;
    let name = decky_running("relay", "debian-12");
    let driver = driver_at(options(&rx), &name, "127.1.46.1");
    deploy(&driver, &name, &["smtp"]).await.unwrap();
    let mut s = TcpStream::connect(addr("127.1.46.1", 25)).await.unwrap();
    assert!(read_until(&mut s, "\r\n").await.ends_with(" ESMTP Postfix (Debian/GNU)\r\n"));
    // The STARTTLS command-injection attack: plaintext sent after STARTTLS
    // must not be taken as if it came inside the encrypted session.
    s.write_all(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n").await.unwrap();
    read_until(&mut s, "220 2.0.0 Ready to start TLS\r\n").await;
    let mut tls = tls_client().connect("decky".try_into().unwrap(), s).await.expect("the handshake completes");
    tls.write_all(b"EHLO x\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("250 CHUNKING\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let ehlo = String::from_utf8_lossy(&got).into_owned();
    assert!(ehlo.starts_with("250-") && !ehlo.contains("STARTTLS") && !ehlo.contains("Error"), "{ehlo}");
    // No MAIL is in progress: the injected one was thrown away.
    tls.write_all(b"MAIL FROM:<real@example.org>\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut chunk)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&chunk[..n]), "250 2.1.0 Ok\r\n");
    tls.write_all(b"QUIT\r\n").await.unwrap();
    rx.wait_for("quit", |l| is(l, "smtp", "command") && l.msg.as_deref() == Some("CMD QUIT")).await;
    let lines = rx.lines.lock().unwrap().join("\n");
    assert!(!lines.contains("injected@evil.example"), "{lines}");
    driver.shutdown().await;
}

/// A live driver over a real fleet database where `decky` has `archetype`
/// and the persona `overrides` an operator would write in the fleet file.
async fn driver_with_persona(
    rx: &Receiver,
    dir: &tempfile::TempDir,
    decky: &str,
    ip: &str,
    archetype: &str,
    overrides: serde_json::Value,
) -> NativeDriver {
    let pool = decnet::store::open(&dir.path().join(format!("{decky}.db"))).await.unwrap();
    let row = decnet::store::fleet::FleetDecky {
        name: decky.to_string(),
        archetype: Some(archetype.to_string()),
        services: vec![],
        interval_minutes: 5,
        last_mutated: None,
        deployed: true,
    };
    decnet::store::fleet::upsert(&pool, &row).await.unwrap();
    decnet::store::fleet::set_persona(&pool, decky, Some(&overrides)).await.unwrap();
    let mut o = options(rx);
    o.addresses.insert(decky.to_string(), ip.parse().unwrap());
    NativeDriver::live(o, Some(pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persona_switches_open_smtp_auth_inside_tls_and_anonymous_ftp() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let overrides = serde_json::json!({
        "release": "debian-12", "smtp_auth": true, "ftp_anonymous": true,
        "auth": {"accept_after": [1, 1], "credentials": []}
    });
    let driver = driver_with_persona(&rx, &dir, "mx-9", "127.1.47.1", "mail-server", overrides).await;
    deploy(&driver, "mx-9", &["smtp", "ftp"]).await.unwrap();

    // SMTP: no AUTH in the clear, AUTH PLAIN LOGIN inside TLS, and a
    // client that got in may name any recipient (recorded, never relayed).
    let mut s = TcpStream::connect(addr("127.1.47.1", 25)).await.unwrap();
    read_until(&mut s, "\r\n").await;
    s.write_all(b"EHLO x\r\n").await.unwrap();
    assert!(!read_until(&mut s, "250 CHUNKING\r\n").await.contains("AUTH"));
    say(&mut s, &format!("AUTH PLAIN {}", b64(b"\0early\0bird")), "503 5.5.1 Error: authentication not enabled").await;
    say(&mut s, "STARTTLS", "220 2.0.0 Ready to start TLS").await;
    let mut tls = tls_client().connect("mx-9".try_into().unwrap(), s).await.unwrap();
    tls.write_all(b"EHLO x\r\n").await.unwrap();
    assert!(tls_read_until(&mut tls, "250 CHUNKING\r\n").await.contains("250-AUTH PLAIN LOGIN\r\n"));
    tls.write_all(format!("AUTH PLAIN {}\r\n", b64(b"\0mailer\0s3cret")).as_bytes()).await.unwrap();
    assert_eq!(tls_read_until(&mut tls, "\r\n").await, "235 2.7.0 Authentication successful\r\n");
    tls.write_all(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<far@away.example>\r\n").await.unwrap();
    assert!(tls_read_until(&mut tls, "250 2.1.5 Ok\r\n").await.starts_with("250 2.1.0 Ok\r\n"));
    tls.write_all(b"QUIT\r\n").await.unwrap();
    let early = rx.wait_for("early", |l| is(l, "smtp", "login_attempt") && sd(l, "username") == Some("early")).await;
    assert_eq!(sd(&early, "result"), Some("refused"));
    let ok = rx.wait_for("mailer", |l| is(l, "smtp", "login_attempt") && sd(l, "username") == Some("mailer")).await;
    assert_eq!((sd(&ok, "result"), sd(&ok, "secret_b64")), (Some("accepted"), Some(b64(b"s3cret").as_str())));

    // FTP: anonymous is allowed on this persona; its root is Debian's empty /srv/ftp.
    let mut f = TcpStream::connect(addr("127.1.47.1", 21)).await.unwrap();
    assert_eq!(read_until(&mut f, "\r\n").await, "220 (vsFTPd 3.0.3)\r\n");
    say(&mut f, "USER anonymous", "331 Please specify the password.").await;
    say(&mut f, "PASS x@y", "230 Login successful.").await;
    say(&mut f, "PWD", "257 \"/\" is the current directory").await;
    say(&mut f, "USER root", "530 Can't change from guest user.").await;
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_speaks_busybox_telnetd_and_its_policy_decides_logins() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let overrides = serde_json::json!({"auth": {"accept_after": [0, 0], "credentials": [["admin", "12345"]]}});
    let driver = driver_with_persona(&rx, &dir, "cam-9", "127.1.48.1", "iot-device", overrides).await;
    deploy(&driver, "cam-9", &["telnet"]).await.unwrap();
    // BusyBox telnetd: its options and the prompt at once, no waiting.
    let mut s = TcpStream::connect(addr("127.1.48.1", 23)).await.unwrap();
    let mut opening = [0u8; 15];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut opening)).await.unwrap().unwrap();
    assert_eq!(&opening, b"\xff\xfd\x01\xff\xfd\x1f\xff\xfd\x21\xff\xfb\x01\xff\xfb\x03");
    assert_eq!(read_until(&mut s, "login: ").await, "cam-9 login: ");
    // A policy that never accepts: three refusals (BusyBox login's
    // limit), each after the 3 s delay, then the session ends.
    let started = Instant::now();
    for i in 0..3 {
        s.write_all(b"root\r\n").await.unwrap();
        read_until(&mut s, "Password: ").await;
        s.write_all(format!("guess{i}\r\n").as_bytes()).await.unwrap();
        read_until(&mut s, "Login incorrect").await;
    }
    assert!(started.elapsed() >= Duration::from_secs(9), "three delays");
    assert!(closed_by_server(&mut s).await, "BusyBox login gives up after three");
    // The configured credentials always work.
    let mut s = TcpStream::connect(addr("127.1.48.1", 23)).await.unwrap();
    read_until(&mut s, "login: ").await;
    s.write_all(b"admin\r\n").await.unwrap();
    read_until(&mut s, "Password: ").await;
    s.write_all(b"12345\r\n").await.unwrap();
    assert!(read_until(&mut s, "$ ").await.contains("BusyBox"), "the persona's motd, then the shell");
    let ok = rx.wait_for("accepted", |l| is(l, "telnet", "login_attempt") && sd(l, "result") == Some("accepted")).await;
    assert_eq!(sd(&ok, "username"), Some("admin"));
    driver.shutdown().await;
}

/// The `.cast` file a `session_recorded` line names, checked against the
/// line (size, sha256, mode 0600) and parsed line by line as asciicast v2:
/// its header and its events.
fn recording_of(line: &SyslogLine, dir: &std::path::Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::path::PathBuf::from(sd(line, "recording").expect("session_recorded names its recording"));
    assert!(path.starts_with(dir), "{path:?} is under {dir:?}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(sd(line, "recording_bytes"), Some(bytes.len().to_string().as_str()));
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sd(line, "recording_sha256"), Some(hex.as_str()));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{path:?}");
    // The real player accepts it.
    let played = std::process::Command::new("asciinema")
        .arg("cat")
        .arg(&path)
        .output()
        .expect("asciinema is installed by scripts/test.sh");
    assert!(played.status.success(), "asciinema cat {path:?}: {played:?}");
    let mut lines = std::str::from_utf8(&bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap());
    let header: serde_json::Value = lines.next().unwrap();
    assert_eq!(header["version"], 2);
    let events: Vec<serde_json::Value> = lines.collect();
    let times: Vec<f64> = events.iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    (header, events)
}

/// The text of a recording's events of `kind` ("o" or "i"), in order.
fn stream(events: &[serde_json::Value], kind: &str) -> String {
    events.iter().filter(|e| e[1] == kind).map(|e| e[2].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_sessions_are_recorded_as_asciicast_files_the_closing_line_names() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = with_persona(options(&rx), "rec", serde_json::json!({ "auth": first_try(), "release": "debian-12" }));
    o.recordings = Some(dir.path().join("recordings"));
    let driver = driver_at(o, "rec", "127.1.49.1");
    deploy(&driver, "rec", &["ssh", "telnet"]).await.unwrap();
    let port = (22 + OFFSET).to_string();
    let closing = |sid: String| {
        move |l: &SyslogLine| {
            is(l, l.app_name.as_deref().unwrap_or(""), "session_recorded") && sd(l, "sid") == Some(&sid)
        }
    };

    // A pty shell, as an attacker's terminal gives it.
    let out =
        ssh(&["-tt", "-p", &port, "-o", "PubkeyAuthentication=no", "admin@127.1.49.1"], "pw", Some("hostname\nexit\n"))
            .await;
    assert!(out.status.success(), "{out:?}");
    let command =
        rx.wait_for("pty command", |l| is(l, "ssh", "command") && l.msg.as_deref() == Some("CMD hostname")).await;
    let recorded = rx.wait_for("pty session_recorded", closing(sd(&command, "sid").unwrap().to_string())).await;
    let (header, events) = recording_of(&recorded, dir.path());
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0, "{header}");
    assert!(header["env"]["TERM"].as_str().is_some_and(|t| !t.is_empty()), "{header}");
    assert!(stream(&events, "i").contains("hostname"), "{events:?}");
    let shown = stream(&events, "o");
    assert!(shown.contains("admin@rec:~$ hostname\r\nrec\r\nadmin@rec:~$ "), "{shown:?}");
    assert!(shown.ends_with("logout\r\n"), "{shown:?}");
    // What the client saw is what was recorded (the pty echo included).
    assert_eq!(String::from_utf8_lossy(&out.stdout), shown, "recorded once, no more, no less");

    // An exec: the command in, its stdout and stderr out.
    let out =
        ssh(&["-p", &port, "-o", "PubkeyAuthentication=no", "admin@127.1.49.1", "id; nosuchcmd"], "pw", None).await;
    let command =
        rx.wait_for("exec command", |l| is(l, "ssh", "command") && l.msg.as_deref() == Some("CMD id; nosuchcmd")).await;
    let recorded = rx.wait_for("exec session_recorded", closing(sd(&command, "sid").unwrap().to_string())).await;
    let (_, events) = recording_of(&recorded, dir.path());
    assert_eq!(stream(&events, "i"), "id; nosuchcmd");
    let shown = stream(&events, "o");
    assert!(shown.starts_with(&*String::from_utf8_lossy(&out.stdout)) && shown.contains("uid="), "{shown:?}");
    assert!(shown.ends_with(&*String::from_utf8_lossy(&out.stderr)) && shown.contains("nosuchcmd"), "{shown:?}");

    // Telnet, after the login.
    let mut s = TcpStream::connect(addr("127.1.49.1", 23)).await.unwrap();
    telnet_login(&mut s, "rec", "admin", "pw").await;
    s.write_all(b"uname\r\n").await.unwrap();
    read_until(&mut s, "$ ").await;
    s.write_all(b"exit\r\n").await.unwrap();
    assert!(closed_by_server(&mut s).await);
    let command = rx.wait_for("telnet command", |l| is(l, "telnet", "command")).await;
    let recorded = rx.wait_for("telnet session_recorded", closing(sd(&command, "sid").unwrap().to_string())).await;
    let (_, events) = recording_of(&recorded, dir.path());
    assert_eq!(stream(&events, "i"), "uname\rexit\r");
    let shown = stream(&events, "o");
    assert!(shown.contains("admin@rec:~$ uname\r\nLinux\r\nadmin@rec:~$ exit\r\nlogout\r\n"), "{shown:?}");

    // A session with no shell (a bare banner probe) leaves no file.
    let files = std::fs::read_dir(dir.path().join("recordings/rec")).unwrap().count();
    assert_eq!(files, 3);
    driver.shutdown().await;
}
