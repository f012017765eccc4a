//! The TCP sides of dns and sip: the same answers as over UDP, framed for
//! TCP, and the bounds a stream needs (a message cut short, a body or a
//! header list too long) ending only that session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use decnet_decky::listener::ServiceListener;
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits, Persona};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::collector;

async fn serve(service: &str) -> (ServiceListener, Arc<Mutex<Vec<String>>>) {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 1 << 20, Default::default());
    let mut persona = Persona::derive("tcp-01", Some("linux-server"), None, 1_764_000_000);
    persona.domain = "corp.internal".into();
    let limits = Limits { idle: Duration::from_secs(2), ..Limits::default() };
    let ctx = DeckyContext::new("tcp-01", persona, sink, limits, b"seed");
    (ServiceListener::open(ctx, service, "127.0.0.1:0".parse().unwrap()).unwrap(), lines)
}

async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got)).await;
    got
}

fn disconnect_reason(lines: &Arc<Mutex<Vec<String>>>, app: &str) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&format!(" tcp-01 {app} - disconnect ")))
        .map(|l| l.split("reason=\"").nth(1).unwrap_or("").split('"').next().unwrap_or("").to_string())
        .collect()
}

/// A `tcp-01.corp.internal A` query with id 0x4242.
fn query() -> Vec<u8> {
    let mut q = b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec();
    for label in ["tcp-01", "corp", "internal"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(b"\x00\x00\x01\x00\x01");
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tcp_answers_framed_and_a_cut_message_ends_the_session() {
    let (listener, lines) = serve("dns").await;
    let mut s = TcpStream::connect(listener.addr).await.unwrap();
    let q = query();
    s.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat()).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer[..2], b"\x42\x42");
    // The A record of its own name: the address the query came in on.
    assert!(answer.ends_with(&[127, 0, 0, 1]), "{answer:?}");
    // A length announcing more than comes, then silence: the idle limit.
    s.write_all(&[0x01, 0x00, 0x12]).await.unwrap();
    assert!(read_all(&mut s).await.is_empty());
    // A length then the client leaving.
    let mut s2 = TcpStream::connect(listener.addr).await.unwrap();
    s2.write_all(&[0x00, 0x40, 1, 2, 3]).await.unwrap();
    drop(s2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reasons = disconnect_reason(&lines, "dns");
    assert!(reasons.contains(&"idle timeout".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"client closed".to_string()), "{reasons:?}");
    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains(r#"name="tcp-01.corp.internal." qtype="A" qclass="IN" rcode="NOERROR""#), "{text}");
}

const OPTIONS: &str = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nUser-Agent: test-agent\r\nContent-Length: 0\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_tcp_answers_and_refuses_oversize_messages() {
    let (listener, lines) = serve("sip").await;
    let mut s = TcpStream::connect(listener.addr).await.unwrap();
    s.write_all(OPTIONS.as_bytes()).await.unwrap();
    let mut got = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&got[..n]).into_owned();
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n") && reply.contains("\r\nServer: Asterisk PBX "), "{reply}");

    // A body past the bound: closed without an answer.
    let big = OPTIONS.replace("Content-Length: 0", "Content-Length: 999999");
    s.write_all(big.as_bytes()).await.unwrap();
    assert!(read_all(&mut s).await.is_empty());
    // Too many headers: closed as well.
    let mut s2 = TcpStream::connect(listener.addr).await.unwrap();
    let many = OPTIONS.replacen("\r\n", &format!("\r\n{}", "X-Pad: 1\r\n".repeat(80)), 1);
    s2.write_all(many.as_bytes()).await.unwrap();
    assert!(read_all(&mut s2).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(disconnect_reason(&lines, "sip"), vec!["done", "done"]);
    let text = lines.lock().unwrap().join("\n");
    assert!(text.contains(r#"method="OPTIONS""#) && text.contains(r#"user_agent="test-agent""#), "{text}");
}
