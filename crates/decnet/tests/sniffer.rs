//! `decnet sniffer` end to end on the host's loopback: the bus daemon and
//! the sniffer binary capturing on `lo` for a decky address of its own
//! (127.77.x.y, so other tests' traffic is not its business); real clients
//! (OpenSSH `ssh`, `openssl s_client`, a rustls client, and a ClientHello
//! this test builds byte by byte) connect to real servers on that address.
//! JA3 is checked against the value computed here from the lists the
//! crafted ClientHello carried; JA3S's cipher against what the rustls
//! client negotiated. Needs CAP_NET_RAW (skipped with a message without).

mod fp_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use decnet::events::rfc5424;
use decnet_bus::client::UnixBus;
use decnet_bus::{Bus, Envelope, Subscription};
use fp_support::*;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DECKY_IP: &str = "127.77.1.1";
const OTHER_IP: &str = "127.77.1.9";

async fn next_traffic(
    sub: &mut Subscription,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&Envelope) -> bool,
) -> Envelope {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("subscription ended waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn vec16(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A ClientHello from explicit lists, and the JA3 string those lists make
/// (GREASE left out, as JA3 defines it).
fn crafted_client_hello() -> (Vec<u8>, String) {
    let ciphers: [u16; 5] = [0x8a8a, 0x1301, 0xc02b, 0xc02f, 0x009e];
    let groups: [u16; 3] = [0x8a8a, 0x001d, 0x0017];
    let ext = |ty: u16, body: Vec<u8>| {
        let mut e = ty.to_be_bytes().to_vec();
        e.extend(vec16(&body));
        e
    };
    let mut server_name = vec![0];
    server_name.extend(vec16(b"crafted.test"));
    let extensions: Vec<(u16, Vec<u8>)> = vec![
        (0x1a1a, vec![]),
        (0, vec16(&server_name)),
        (23, vec![]),
        (10, vec16(&groups.iter().flat_map(|g| g.to_be_bytes()).collect::<Vec<_>>())),
        (11, vec![2, 0, 1]),
        (13, vec16(&[4, 3, 8, 4, 4, 1])),
        (16, vec16(b"\x08http/1.1")),
    ];
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend(vec16(&ciphers.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<_>>()));
    body.extend_from_slice(&[1, 0]);
    body.extend(vec16(&extensions.iter().flat_map(|(t, b)| ext(*t, b.clone())).collect::<Vec<_>>()));
    let mut hs = vec![1, 0];
    hs.extend(vec16(&body));
    let mut record = vec![0x16, 3, 1];
    record.extend(vec16(&hs));
    let not_grease = |v: &&u16| !(**v & 0x0f0f == 0x0a0a && (**v >> 8) == (**v & 0xff));
    let join = |v: Vec<String>| v.join("-");
    let ja3 = format!(
        "771,{},{},{},0-1",
        join(ciphers.iter().filter(not_grease).map(|c| c.to_string()).collect()),
        join(extensions.iter().map(|(t, _)| t).filter(not_grease).map(|t| t.to_string()).collect()),
        join(groups.iter().filter(not_grease).map(|g| g.to_string()).collect()),
    );
    (record, ja3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sniffer_fingerprints_real_clients_talking_to_a_decky() {
    if !have_net_raw() {
        eprintln!("SKIP sniffer end to end: no CAP_NET_RAW for packet capture");
        return;
    }
    let (_dir, home) = tempdir();
    let sock = home.join("bus.sock");
    let log = home.join("ingest.log");
    let db = home.join("decnet.db");
    let pool = decnet::store::open(&db).await.unwrap();

    let cert = certificate("decky.test", &["decky.test"]);
    let tls = TlsServer::start(&[DECKY_IP], &cert).await;
    let other = tokio::net::TcpListener::bind((OTHER_IP, 0)).await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let ssh_dir = home.join("ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let (_sshd, ssh_port) = start_sshd_on(&ssh_dir, DECKY_IP);

    let mut bus_cmd = Command::new(BIN);
    bus_cmd.env("DECNET_HOME", &home).env("DECNET_BUS_SOCKET", &sock);
    let _bus = Daemon(bus_cmd.arg("bus").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    wait_for("the bus socket", Duration::from_secs(10), || sock.exists());
    let watcher = UnixBus::new("watcher", &sock);
    let mut traffic = watcher.subscribe("decky.*.traffic").await.unwrap();
    let mut health = watcher.subscribe("system.sniffer.health").await.unwrap();

    let mut sniffer_cmd = Command::new(BIN);
    sniffer_cmd
        .env("DECNET_HOME", &home)
        .env("DECNET_BUS_SOCKET", &sock)
        .env("DECNET_HEARTBEAT_SECS", "0.5")
        .env("RUST_LOG", "info")
        .args(["sniffer", "--interface", "lo", "--decky", &format!("web-01={DECKY_IP}"), "--db"])
        .arg(&db)
        .arg("--ingest-log")
        .arg(&log)
        .stderr(std::fs::File::create(home.join("sniffer.log")).unwrap());
    let _sniffer = Daemon(sniffer_cmd.spawn().unwrap());
    next_traffic(&mut health, Duration::from_secs(10), "a heartbeat saying the capture is open", |e| {
        e.payload["capturing"] == true
    })
    .await;

    // 1. A ClientHello built here, sent to the decky's TLS port.
    let (hello, ja3_string) = crafted_client_hello();
    {
        let mut s = tokio::net::TcpStream::connect(tls.addrs[0]).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut buf = [0u8; 512];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
    let ev = next_traffic(&mut traffic, Duration::from_secs(5), "the crafted ClientHello", |e| {
        e.event_type == "tls_client_hello" && e.payload["sni"] == "crafted.test"
    })
    .await;
    assert_eq!(ev.topic, "decky.web-01.traffic");
    assert_eq!(ev.payload["ja3_string"], ja3_string.as_str());
    let ja3: String = Md5::digest(ja3_string.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ev.payload["ja3"], ja3.as_str());
    assert_eq!(ev.payload["hash"], ja3.as_str());
    assert_eq!(ev.payload["alpn"], serde_json::json!(["http/1.1"]));
    assert!(ev.payload["ja4"].as_str().unwrap().starts_with("t12d0406h1_"), "{}", ev.payload["ja4"]);
    assert_eq!(ev.payload["decky_ip"], DECKY_IP);
    assert_eq!(ev.payload["attacker_ip"], "127.0.0.1");

    // 2. A real rustls client: the decky's answer gives JA3S with the negotiated suite.
    let config = decnet::prober::tls_certificate::collecting_client_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(tls.addrs[0]).await.unwrap();
    let client_port = tcp.local_addr().unwrap().port();
    let name = rustls::pki_types::ServerName::try_from("decky.test").unwrap();
    let client = connector.connect(name, tcp).await.unwrap();
    let suite = u16::from(client.get_ref().1.negotiated_cipher_suite().unwrap().suite());
    drop(client);
    let ev = next_traffic(&mut traffic, Duration::from_secs(5), "the decky's ServerHello", |e| {
        e.event_type == "tls_session" && e.payload["attacker_port"] == client_port
    })
    .await;
    assert_eq!(ev.payload["cipher"], format!("{suite:#06x}"));
    assert!(ev.payload["ja3s_string"].as_str().unwrap().contains(&format!(",{suite},")), "{}", ev.payload);
    assert!(ev.payload["ja4s"].as_str().unwrap().contains(&format!("_{suite:04x}_")), "{}", ev.payload);

    // 3. openssl s_client: its ClientHello with the SNI it was given.
    let mut s_client = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &tls.addrs[0].to_string(), "-servername", "openssl.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl installed");
    drop(s_client.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), s_client.wait()).await;
    let ev = next_traffic(&mut traffic, Duration::from_secs(5), "openssl's ClientHello", |e| {
        e.event_type == "tls_client_hello" && e.payload["sni"] == "openssl.test"
    })
    .await;
    assert_eq!(ev.payload["ja3"].as_str().unwrap().len(), 32);

    // 4. OpenSSH's ssh client, twice: SYN fingerprint, banner and timing once (dedup).
    let ssh_version = String::from_utf8(Command::new("ssh").arg("-V").output().unwrap().stderr).unwrap();
    let ssh_version = ssh_version.split(',').next().unwrap().trim().to_string(); // "OpenSSH_9.2p1 Debian-2+deb12u3"
    let run_ssh = move || {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "ConnectTimeout=5", "-p", &ssh_port.to_string(), &format!("nobody@{DECKY_IP}"), "true"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    tokio::task::spawn_blocking(run_ssh).await.unwrap();
    let mut got = std::collections::HashMap::new();
    while got.len() < 2 {
        let ev = next_traffic(&mut traffic, Duration::from_secs(5), "ssh fingerprints", |e| {
            e.payload["decky_port"] == ssh_port
                && matches!(e.event_type.as_str(), "ssh_client_banner" | "tcp_flow_timing")
        })
        .await;
        got.insert(ev.event_type.clone(), ev);
    }
    let banner = got["ssh_client_banner"].payload["banner"].as_str().unwrap().to_string();
    assert_eq!(banner, format!("SSH-2.0-{ssh_version}"));
    let timing = &got["tcp_flow_timing"].payload;
    assert!(timing["packets_c2s"].as_u64().unwrap() > 3 && timing["bytes_s2c"].as_u64().unwrap() > 0, "{timing}");
    tokio::task::spawn_blocking(run_ssh).await.unwrap();
    // Traffic to an address that is not a decky: nothing.
    drop(tokio::net::TcpStream::connect(other_addr).await.unwrap());
    let beat = next_traffic(&mut health, Duration::from_secs(10), "a heartbeat counting the repeat", |e| {
        e.payload["suppressed"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert!(beat.payload["events"].as_u64().unwrap() >= 6, "{}", beat.payload);
    // Everything published so far, drained: no second banner, nothing for the other address.
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), traffic.recv()).await {
        assert_ne!(ev.event_type, "ssh_client_banner", "the repeat banner was not deduplicated");
        assert_ne!(ev.payload["decky_ip"], OTHER_IP);
    }

    // The SYN fingerprint of this Linux client (loopback MSS 65495, TTL 64).
    let rows: Vec<(String, String, i64, String, String)> =
        sqlx::query_as("SELECT attacker_ip, kind, port, hash, details FROM fingerprints WHERE source = 'sniffer'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let syn = rows.iter().find(|r| r.1 == "tcp_syn_fingerprint").expect("a stored SYN fingerprint");
    let d: serde_json::Value = serde_json::from_str(&syn.4).unwrap();
    assert_eq!(
        (d["initial_ttl"].as_u64(), d["mss"].as_u64(), d["os_guess"].as_str()),
        (Some(64), Some(65495), Some("Linux"))
    );
    for kind in ["tls_client_hello", "tls_session", "ssh_client_banner", "tcp_flow_timing"] {
        assert!(rows.iter().any(|r| r.1 == kind && r.0 == "127.0.0.1"), "no {kind} row: {rows:?}");
    }
    let banner_row = rows.iter().find(|r| r.1 == "ssh_client_banner").unwrap();
    assert_eq!((banner_row.2, banner_row.3.as_str()), (ssh_port as i64, banner.as_str()));

    // The ingest log: one parseable line per event, HOSTNAME = the decky.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<_> = text.lines().map(|l| rfc5424::parse_line(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l.hostname.as_deref() == Some("web-01") && l.app_name.as_deref() == Some("sniffer")));
    assert_eq!(lines.iter().filter(|l| l.msgid.as_deref() == Some("ssh_client_banner")).count(), 1);
    assert!(!text.contains(OTHER_IP));
    watcher.close().await;
}

#[test]
fn sniffer_refuses_bad_arguments_clearly() {
    let (_dir, home) = tempdir();
    for (args, needle) in [
        (vec!["sniffer", "--decky", "web-01"], "not NAME=ADDRESS"),
        (vec!["sniffer", "--decky", "web.01=127.0.0.1"], "bad decky name"),
        (vec!["sniffer", "--decky", "web-01=nowhere"], "not an IP address"),
        (vec!["sniffer", "--interface", "no-such-if0", "--decky", "w=127.0.0.1"], "no network interface"),
    ] {
        let out = Command::new(BIN)
            .env("DECNET_HOME", &home)
            .env("DECNET_BUS_ENABLED", "false")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
