//! The SSH decky's KEXINIT is the named release's: compared field by
//! field with the real sshd of Debian 12 and the real dropbear of Debian
//! 12 (the openssh-server and dropbear-bin packages scripts/test.sh
//! installs), equal to the generated lists for every
//! release, negotiated by the real OpenSSH client for every algorithm it
//! advertises. (What ssh-audit and nmap make of each release, side by
//! side with the real sshd, is `crates/decnet/tests/ssh_audit_netns.rs`,
//! in a network namespace.)
//!
//! Everything runs on loopback ports the test opens.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_decky::listener::ServiceListener;
use decnet_decky::persona::releases::{SshProduct, RELEASES};
use decnet_decky::persona::Persona;
use decnet_decky::services::ssh::algorithms;
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits};

const SSHD: &str = "/usr/sbin/sshd";
const DROPBEAR: &str = "/usr/sbin/dropbear";

/// A decky of `release` serving ssh on a loopback port, its host keys made.
struct Decky {
    rt: tokio::runtime::Runtime,
    listener: Option<ServiceListener>,
    port: u16,
}

impl Decky {
    fn start(release: &str) -> Decky {
        Decky::start_with(release, serde_json::json!({ "accept_after": [1, 1], "credentials": [["root", "hunter2"]] }))
    }

    /// A decky of `release` under the persona `auth` policy given.
    fn start_with(release: &str, auth: serde_json::Value) -> Decky {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let name = format!("kex-{release}");
        let persona = Persona::derive(&name, None, None, 1_700_000_000)
            // The password the tests log in with works at once (the default
            // policy wants a few attempts first, root not at all).
            .with_overrides(&serde_json::json!({ "release": release, "auth": auth }))
            .unwrap();
        let (listener, port) = rt.block_on(async {
            let ctx: Arc<DeckyContext> =
                DeckyContext::new(&name, persona, LineSink::detached(1024), Limits::default(), b"kexinit-test-seed");
            ctx.host_keys.get().await.unwrap();
            let l = ServiceListener::open(ctx, "ssh", "127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
            let port = l.addr.port();
            (l, port)
        });
        Decky { rt, listener: Some(listener), port }
    }
}

impl Drop for Decky {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            self.rt.block_on(l.close());
        }
    }
}

/// A real SSH server of this machine on a loopback port, killed on drop.
struct RealServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RealServer {
    /// The real sshd, with the host keys a default install has (RSA,
    /// ECDSA, Ed25519, in sshd's load order).
    fn sshd() -> RealServer {
        assert!(Path::new(SSHD).exists(), "{SSHD} missing: scripts/test.sh installs openssh-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!("Port {port}\nListenAddress 127.0.0.1\nUsePAM no\nPidFile none\n");
        for t in ["rsa", "ecdsa", "ed25519"] {
            let key = dir.path().join(format!("host_{t}"));
            let ok = Command::new("ssh-keygen").args(["-q", "-t", t, "-N", "", "-f"]).arg(&key).status().unwrap();
            assert!(ok.success());
            config.push_str(&format!("HostKey {}\n", key.display()));
        }
        let cfg = dir.path().join("sshd_config");
        std::fs::write(&cfg, config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD).arg("-D").arg("-f").arg(&cfg).stderr(Stdio::null()).spawn().unwrap();
        RealServer::listening(child, port, dir)
    }

    /// The real dropbear, in the foreground, with the host keys Debian's
    /// package makes (`dropbearkey` RSA, ECDSA, Ed25519).
    fn dropbear() -> RealServer {
        assert!(Path::new(DROPBEAR).exists(), "{DROPBEAR} missing: scripts/test.sh installs dropbear-bin");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(DROPBEAR);
        cmd.args(["-F", "-E", "-p", &format!("127.0.0.1:{port}")]).arg("-P").arg(dir.path().join("pid"));
        for t in ["rsa", "ecdsa", "ed25519"] {
            let key = dir.path().join(format!("dropbear_{t}_host_key"));
            let made = Command::new("dropbearkey")
                .args(["-t", t, "-f"])
                .arg(&key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(made.success(), "dropbearkey -t {t} failed");
            cmd.arg("-r").arg(&key);
        }
        let child = cmd.stderr(Stdio::null()).spawn().unwrap();
        RealServer::listening(child, port, dir)
    }

    /// Returns once `child` accepts connections on `port`.
    fn listening(child: Child, port: u16, dir: tempfile::TempDir) -> RealServer {
        let server = RealServer { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the real server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The banner and the ten name-lists of the server's KEXINIT, read raw.
fn kexinit(port: u16) -> (String, Vec<String>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let banner = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "closed before the banner");
        if line.starts_with("SSH-") {
            break line.trim_end().to_string();
        }
    };
    (&stream).write_all(b"SSH-2.0-OpenSSH_9.2p1 kexinit-test\r\n").unwrap();
    let mut head = [0u8; 5];
    reader.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut packet = vec![0u8; len - 1];
    reader.read_exact(&mut packet).unwrap();
    let payload = &packet[..len - 1 - head[4] as usize];
    assert_eq!(payload[0], 20, "first packet is KEXINIT");
    let mut off = 17;
    let mut lists = Vec::new();
    for _ in 0..10 {
        let n = u32::from_be_bytes(payload[off..off + 4].try_into().unwrap()) as usize;
        off += 4;
        lists.push(String::from_utf8(payload[off..off + n].to_vec()).unwrap());
        off += n;
    }
    (banner, lists)
}

/// HASSH of a server: MD5 of `kex;ciphers;macs;compression` (server to client).
fn hassh_server(lists: &[String]) -> String {
    let s = format!("{};{};{};{}", lists[0], lists[3], lists[5], lists[7]);
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Every KEXINIT field of the decky equals the real server's, and so its HASSH.
fn assert_same_kexinit(decky_port: u16, real_port: u16, real: &str) {
    let (real_banner, real_lists) = kexinit(real_port);
    let (banner, lists) = kexinit(decky_port);
    let fields = [
        "kex",
        "host key",
        "cipher c2s",
        "cipher s2c",
        "mac c2s",
        "mac s2c",
        "comp c2s",
        "comp s2c",
        "lang c2s",
        "lang s2c",
    ];
    for (i, field) in fields.iter().enumerate() {
        assert_eq!(
            lists[i], real_lists[i],
            "{field}: decky vs real {real} (regenerate with scripts/gen-ssh-algorithms if the package moved)"
        );
    }
    assert_eq!(banner, real_banner);
    assert_eq!(hassh_server(&lists), hassh_server(&real_lists));
}

#[test]
fn debian_12_kexinit_is_the_real_sshd_s_field_by_field() {
    let real = RealServer::sshd();
    let decky = Decky::start("debian-12");
    assert_same_kexinit(decky.port, real.port, "sshd");
}

#[test]
fn the_camera_s_kexinit_is_the_real_dropbear_s_field_by_field() {
    let real = RealServer::dropbear();
    let decky = Decky::start("busybox-camera");
    assert_same_kexinit(decky.port, real.port, "dropbear");
}

/// Whether the server's KEXINIT comes without the client sending its
/// identification line: what a connection that only reads gets in `wait`.
fn kexinit_unasked(port: u16, wait: Duration) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    let after_banner = got.iter().position(|&b| b == b'\n').map(|i| &got[i + 1..]).unwrap_or(&[]);
    after_banner.len() > 5 && after_banner[5] == 20
}

#[test]
fn dropbear_sends_its_kexinit_with_its_banner_and_openssh_waits_for_the_client_s() {
    let real = RealServer::dropbear();
    let camera = Decky::start("busybox-camera");
    let debian = Decky::start("debian-12");
    let wait = Duration::from_millis(700);
    assert!(kexinit_unasked(real.port, wait), "the real dropbear sends its KEXINIT unasked");
    assert!(kexinit_unasked(camera.port, wait), "the camera decky as the real dropbear");
    assert!(!kexinit_unasked(debian.port, wait), "the OpenSSH decky waits for the client's line");
}

/// One unencrypted SSH packet around `payload` (block 8, 4+ bytes of padding).
fn packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut out = ((payload.len() + pad + 1) as u32).to_be_bytes().to_vec();
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0u8, pad));
    out
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A client that guesses: its KEXINIT lists `kex` (first choice
/// ecdh-sha2-nistp256, not the server's first) with first_kex_packet_follows
/// set, and the guessed ECDH_INIT follows at once. True when the server
/// answers the guess (ECDH_REPLY within `wait`), false when it ignores it
/// and waits for another.
fn answers_a_guess(port: u16, kex: &str, wait: Duration) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut kexinit = vec![20u8];
    kexinit.extend_from_slice(&[7u8; 16]);
    for list in [kex, "ssh-ed25519", "aes128-ctr", "aes128-ctr", "hmac-sha1", "hmac-sha1", "none", "none", "", ""] {
        ssh_string(&mut kexinit, list.as_bytes());
    }
    kexinit.extend_from_slice(&[1, 0, 0, 0, 0]);
    // The P-256 base point (private key 1) is a valid public key.
    let mut point = vec![4u8];
    for half in [
        "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    ] {
        point.extend((0..32).map(|i| u8::from_str_radix(&half[2 * i..2 * i + 2], 16).unwrap()));
    }
    let mut ecdh_init = vec![30u8];
    ssh_string(&mut ecdh_init, &point);
    let mut out = b"SSH-2.0-OpenSSH_9.2p1 guess-test\r\n".to_vec();
    out.extend(packet(&kexinit));
    out.extend(packet(&ecdh_init));
    stream.write_all(&out).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.starts_with("SSH-") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    let mut head = [0u8; 6];
    while reader.read_exact(&mut head).is_ok() {
        if head[5] == 31 {
            return true;
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let mut rest = vec![0u8; len - 2];
        if reader.read_exact(&mut rest).is_err() {
            break;
        }
    }
    false
}

#[test]
fn kexguess2_judges_a_client_s_guess_as_the_real_dropbear_does() {
    let real = RealServer::dropbear();
    let camera = Decky::start("busybox-camera");
    let with = "ecdh-sha2-nistp256,curve25519-sha256,kexguess2@matt.ucc.asn.au";
    let without = "ecdh-sha2-nistp256,curve25519-sha256";
    for (port, who) in [(real.port, "real dropbear"), (camera.port, "camera decky")] {
        // kexguess2 on both sides: the client's first choices were negotiated, the guess stands.
        assert!(answers_a_guess(port, with, Duration::from_secs(5)), "{who}: kexguess2 guess answered");
        // RFC 4253: the firsts differ (the server prefers curve25519), the guess is dropped.
        assert!(!answers_a_guess(port, without, Duration::from_millis(800)), "{who}: wrong guess ignored");
    }
}

/// The OpenSSH client guessing root's password (always wrong) until the
/// server ends it: how many refusals it got and how it ended.
fn guess_passwords(port: u16, dir: &Path) -> (usize, String) {
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho wrong-guess\n").unwrap();
    let executable = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&askpass, executable).unwrap();
    let out = Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20"])
        .args(["-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=15"])
        .args(["-p", &port.to_string(), "root@127.0.0.1", "true"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let refusals = log.matches("Permission denied, please try again.").count();
    let end = log.lines().last().unwrap_or("").replace(&port.to_string(), "PORT");
    (refusals, end)
}

#[test]
fn the_camera_ends_a_password_guesser_as_the_real_dropbear_does() {
    let real = RealServer::dropbear();
    // Never accepts: every guess fails, as on the real one.
    let camera = Decky::start_with("busybox-camera", serde_json::json!({ "accept_after": [0, 0], "credentials": [] }));
    let dir = tempfile::tempdir().unwrap();
    let want = guess_passwords(real.port, dir.path());
    assert_eq!(want.0, 9, "the real dropbear refuses 9 times, then ends at the 10th: {want:?}");
    assert_eq!(guess_passwords(camera.port, dir.path()), want);
}

#[test]
fn every_release_sends_its_generated_lists_and_so_its_own_hassh() {
    let mut hasshes = std::collections::HashSet::new();
    assert!(RELEASES.iter().any(|r| r.ssh == SshProduct::Dropbear));
    for r in RELEASES {
        let want = algorithms::lists(r.id).unwrap();
        let decky = Decky::start(r.id);
        let (banner, lists) = kexinit(decky.port);
        assert_eq!(banner, r.ssh_banner);
        assert_eq!(lists[0], want.kex.join(","), "{}", r.id);
        assert_eq!(lists[1], want.host_key.join(","), "{}", r.id);
        for (i, list) in [(2, &want.cipher), (3, &want.cipher), (4, &want.mac), (5, &want.mac)] {
            assert_eq!(&lists[i], &list.join(","), "{} field {i}", r.id);
        }
        assert_eq!(lists[6], want.compression.join(","), "{}", r.id);
        hasshes.insert(hassh_server(&lists));
    }
    // Releases of different OpenSSH lines (and Dropbear) differ, as real
    // hosts do (no fleet-wide HASSH).
    assert!(hasshes.len() >= 4, "{hasshes:?}");
}

/// Connect with the OpenSSH client forcing one algorithm; true when the
/// key exchange finished and encrypted packets went both ways
/// (`SERVICE_ACCEPT` is the server's first encrypted, MAC'd answer).
fn client_negotiates(port: u16, option: &[&str], name: &str) -> (bool, String) {
    let out = Command::new("ssh")
        .args(["-vv", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "ConnectTimeout=20", "-o", "PreferredAuthentications=none,password", "-p", &port.to_string()])
        .args(option)
        .args(["probe@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let ok = log.contains("SSH2_MSG_SERVICE_ACCEPT received") && log.contains(name);
    (ok, log)
}

#[test]
fn the_openssh_client_negotiates_every_advertised_algorithm_when_forced() {
    let mut done = std::collections::HashSet::new();
    for r in RELEASES {
        let want = algorithms::lists(r.id).unwrap();
        let mut todo: Vec<(&str, String)> = Vec::new();
        for k in &want.kex {
            // Markers, not algorithms: strict kex, ext-info, Dropbear's kexguess2.
            if !k.starts_with("kex-strict-") && !k.starts_with("ext-info-") && !k.starts_with("kexguess2@") {
                todo.push(("KexAlgorithms", k.clone()));
            }
        }
        for k in &want.host_key {
            todo.push(("HostKeyAlgorithms", k.clone()));
        }
        for c in &want.cipher {
            todo.push(("Ciphers", c.clone()));
        }
        for m in &want.mac {
            todo.push(("MACs", m.clone()));
        }
        // Each name once per server product: the OpenSSH personas share one
        // implementation, the Dropbear camera gets every one of its own.
        let product = format!("{:?}", r.ssh);
        todo.retain(|(option, name)| done.insert((product.clone(), *option, name.clone())));
        if r.ssh == SshProduct::Dropbear {
            assert_eq!(todo.len(), want.kex.len() - 2 + want.host_key.len() + want.cipher.len() + want.mac.len());
        }
        if todo.is_empty() {
            continue;
        }
        let decky = Decky::start(r.id);
        for (option, name) in todo {
            // AEAD ciphers carry their own MAC, so a MAC is forced with a CTR cipher.
            let mut args = vec!["-o".to_string(), format!("{option}={name}")];
            if option == "MACs" {
                args.extend(["-o".to_string(), "Ciphers=aes128-ctr".to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, log) = client_negotiates(decky.port, &args, &name);
            assert!(ok, "{}: {option}={name} did not negotiate:\n{log}", r.id);
        }
    }
}

#[test]
fn zlib_at_openssh_com_compresses_an_authenticated_session() {
    for release in ["debian-12", "busybox-camera"] {
        zlib_compresses(release);
    }
}

fn zlib_compresses(release: &str) {
    let decky = Decky::start(release);
    let out = Command::new("sshpass")
        .args(["-p", "hunter2", "ssh", "-v", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "Compression=yes", "-o", "PubkeyAuthentication=no", "-p", &decky.port.to_string()])
        .args(["root@127.0.0.1", "echo compressed"])
        .stdin(Stdio::null())
        .output()
        .expect("sshpass is installed by scripts/test.sh");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("compression: zlib@openssh.com"), "{release}: {log}");
    assert!(log.contains("Enabling compression"), "{release}: {log}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "compressed", "{release}: {log}");
}
