//! The prober's probes against real servers on loopback: a rustls server
//! (rcgen certificate) for JARM and the certificate probe, OpenSSH's sshd
//! for HASSH, a kernel TCP listener for the SYN-ACK fingerprint; each
//! checked against a value computed independently (the DER we served, the
//! lists the OpenSSH client reports, the Python JARM reference).

mod fp_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use decnet::prober::{run_probe, Probe, ProbeError};
use fp_support::*;
use md5::{Digest, Md5};
use sha2::Sha256;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn tls_certificate_probe_reports_the_served_certificate() {
    let cert = certificate("evil.test", &["evil.test", "127.0.0.1"]);
    let server = TlsServer::start(&["127.0.0.1"], &cert).await;
    let fp = run_probe(Probe::TlsCertificate, server.addrs[0], "127.0.0.1", T).await.unwrap();
    assert_eq!(fp.hash, hex(&Sha256::digest(&cert.0)), "hash is sha256 of the DER served");
    let d = &fp.details;
    assert_eq!(d["subject_cn"], "evil.test");
    assert_eq!(d["issuer_cn"], "evil.test");
    assert_eq!(d["self_signed"], true);
    assert_eq!(d["sans"], serde_json::json!(["evil.test", "127.0.0.1"]));
    assert!(d["not_before"].as_i64().unwrap() < d["not_after"].as_i64().unwrap());
    let p = fp.payload();
    assert_eq!((p["attacker_ip"].as_str(), p["port"].as_u64()), (Some("127.0.0.1"), Some(server.port() as u64)));
}

#[tokio::test]
async fn jarm_of_a_rustls_server_matches_the_python_reference() {
    let cert = certificate("jarm.test", &["jarm.test"]);
    let server = TlsServer::start(&["127.0.0.1"], &cert).await;
    let fp = run_probe(Probe::Jarm, server.addrs[0], "127.0.0.1", T).await.unwrap();
    assert_eq!(fp.hash.len(), 62);
    assert_ne!(fp.hash, decnet::prober::jarm::NOT_TLS);
    // Same server, same hash on a second run: nothing random leaks in.
    let again = run_probe(Probe::Jarm, server.addrs[0], "127.0.0.1", T).await.unwrap();
    assert_eq!(fp.hash, again.hash);

    let script = format!(
        "from jarm.scanner.scanner import Scanner\nprint(Scanner.scan('127.0.0.1', {}, timeout=5)[0])",
        server.port()
    );
    let out = match tokio::process::Command::new("python3").arg("-c").arg(&script).output().await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP reference comparison: python3 not runnable ({e}); pip install pyjarm");
            return;
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ModuleNotFoundError"), "pyjarm failed: {err}");
        eprintln!("SKIP reference comparison: pyjarm not installed (pip install pyjarm)");
        return;
    }
    let reference = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(fp.hash, reference, "our JARM vs pyjarm; raw answers: {}", fp.details["raw"]);
}

#[tokio::test]
async fn jarm_of_something_that_is_not_tls_publishes_nothing() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
        }
    });
    match run_probe(Probe::Jarm, addr, "127.0.0.1", T).await {
        Err(ProbeError::NotTls) => {}
        other => panic!("expected NotTls, got {other:?}"),
    }
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    assert!(matches!(run_probe(Probe::Jarm, closed, "127.0.0.1", T).await, Err(ProbeError::NotTls)));
    // The certificate probe says why, instead of recording garbage.
    let e = run_probe(Probe::TlsCertificate, addr, "127.0.0.1", T).await.unwrap_err().to_string();
    assert!(e.contains("TLS handshake"), "{e}");
}

/// The server's lists as the OpenSSH client logs them (`ssh -vv`).
fn openssh_client_view(port: u16) -> String {
    let out = Command::new("ssh")
        .args(["-vv", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "ConnectTimeout=5", "-p", &port.to_string(), "nobody@127.0.0.1", "true"])
        .output()
        .expect("ssh client (openssh-client) installed");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let peer = log.split("peer server KEXINIT proposal").nth(1).expect("ssh -vv shows the server proposal");
    let field = |name: &str| {
        peer.lines()
            .find_map(|l| l.split_once(&format!("debug2: {name}: ")).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in ssh -vv output"))
    };
    format!(
        "{};{};{};{}",
        field("KEX algorithms"),
        field("ciphers stoc"),
        field("MACs stoc"),
        field("compression stoc")
    )
}

#[tokio::test]
async fn hassh_of_openssh_matches_what_the_openssh_client_sees() {
    let (_dir, path) = tempdir();
    let (_sshd, port) = start_sshd(&path);
    let fp = run_probe(Probe::Hassh, SocketAddr::from(([127, 0, 0, 1], port)), "127.0.0.1", T).await.unwrap();
    assert!(fp.details["banner"].as_str().unwrap().starts_with("SSH-2.0-OpenSSH"), "{:?}", fp.details["banner"]);
    let expected = tokio::task::spawn_blocking(move || openssh_client_view(port)).await.unwrap();
    assert_eq!(fp.details["hassh_server_string"], expected.as_str());
    assert_eq!(fp.hash, hex(&Md5::digest(expected.as_bytes())));
}

#[tokio::test]
async fn hassh_refuses_servers_that_are_not_ssh() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let reply: Vec<u8> = match n {
                1 => vec![b'x'; 400],                           // one endless line
                2 => b"SSH-2.0-x\r\n\x00\x10\x00\x00".to_vec(), // packet length 1 MiB
                _ => b"hello\r\n".to_vec(),                     // then closes
            };
            let _ = s.write_all(&reply).await;
        }
    });
    let mut errors = Vec::new();
    for _ in 0..3 {
        errors.push(run_probe(Probe::Hassh, addr, "127.0.0.1", T).await.unwrap_err().to_string());
    }
    assert!(errors[0].contains("longer than 255"), "{errors:?}");
    assert!(errors[1].contains("packet length"), "{errors:?}");
    assert!(errors[2].contains("before the SSH banner"), "{errors:?}");
}

#[tokio::test]
async fn hassh_times_out_on_a_silent_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            keep.push(s);
        }
    });
    let r = run_probe(Probe::Hassh, addr, "127.0.0.1", Duration::from_millis(300)).await;
    assert!(matches!(r, Err(ProbeError::Timeout)), "{r:?}");
}

#[tokio::test]
async fn tcpfp_reads_the_syn_ack_of_a_local_listener() {
    if !have_net_raw() {
        eprintln!("SKIP tcpfp: no CAP_NET_RAW");
        let r = run_probe(Probe::Tcpfp, "127.0.0.1:1".parse().unwrap(), "127.0.0.1", T).await;
        assert!(matches!(r, Err(ProbeError::NoPrivilege(_))), "{r:?}");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fp = run_probe(Probe::Tcpfp, addr, "127.0.0.1", T).await.unwrap();
    let d = &fp.details;
    let raw = d["raw"].as_str().unwrap();
    assert_eq!(fp.hash, hex(&Sha256::digest(raw.as_bytes()))[..32]);
    // Linux on loopback: TTL 64, DF set, MSS 65495 (MTU 65536 - 40), SACK permitted.
    assert_eq!(d["ttl"], 64);
    assert_eq!(d["df"], true);
    assert_eq!(d["mss"], 65495);
    assert_eq!(d["sack"], true);
    assert!(raw.starts_with("64:"), "{raw}");
    // Our RST closed the half-open connection: nothing is left to accept.
    listener.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "the probe left a connection behind");
    // A closed port answers RST, which is reported, not fingerprinted.
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let e = run_probe(Probe::Tcpfp, closed, "127.0.0.1", T).await.unwrap_err().to_string();
    assert!(e.contains("RST"), "{e}");
}

/// The same over IPv6 loopback: the hop limit comes from ancillary data
/// (64 on Linux), there is no DF bit, MSS is 65476 (MTU 65536 - 60).
#[tokio::test]
async fn tcpfp_reads_the_syn_ack_of_a_local_ipv6_listener() {
    if !have_net_raw() {
        eprintln!("SKIP tcpfp ipv6: no CAP_NET_RAW");
        return;
    }
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("SKIP tcpfp ipv6: no ::1 on this host");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let fp = run_probe(Probe::Tcpfp, addr, "::1", T).await.unwrap();
    let d = &fp.details;
    let raw = d["raw"].as_str().unwrap();
    assert_eq!(fp.hash, hex(&Sha256::digest(raw.as_bytes()))[..32]);
    assert_eq!(d["ttl"], 64, "{d:?}");
    assert_eq!(d["df"], false);
    assert_eq!(d["mss"], 65476);
    assert_eq!(d["sack"], true);
    assert_eq!(fp.ip, addr.ip());
    listener.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "the probe left a connection behind");
    let closed: SocketAddr = format!("[::1]:{}", free_port()).parse().unwrap();
    let e = run_probe(Probe::Tcpfp, closed, "::1", T).await.unwrap_err().to_string();
    assert!(e.contains("RST"), "{e}");
}

#[test]
fn probe_cli_prints_the_payload_and_fails_clearly() {
    let (_dir, path) = tempdir();
    let (_sshd, port) = start_sshd(&path);
    let out = Command::new(BIN).args(["probe", "hassh", &format!("127.0.0.1:{port}")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attacker_ip"], "127.0.0.1");
    assert_eq!(v["port"], port);
    assert_eq!(v["probe"], "hassh");
    assert_eq!(v["hash"].as_str().unwrap().len(), 32);

    for (args, needle) in [
        (vec!["probe", "tls", "no-port"], "not HOST:PORT"),
        (vec!["probe", "jarm", "127.0.0.1:99999"], "not a port number"),
        (vec!["probe", "jarm", &format!("127.0.0.1:{port}")], "62 zeros"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
