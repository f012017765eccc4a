//! Loopback deckies served from one shared socket per port: each
//! connection reaches the decky whose address it was made to, an address
//! with no decky on that port is reset, closing one decky leaves the
//! others serving, and the port stops listening with its last decky.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use decnet_decky::listener::ServiceListener;
use decnet_decky::shared_port::{SharedPorts, UNROUTED};
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits, Persona};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::collector;

/// A port free on every address (the shared socket binds the wildcard).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

fn decky(name: &str, sink: &LineSink) -> Arc<DeckyContext> {
    let persona = Persona::derive(name, Some("linux-server"), None, 1_764_000_000);
    DeckyContext::new(name, persona, sink.clone(), Limits::default(), b"seed")
}

/// The HTTP status line and whole answer to `GET /` at `addr`, or the
/// error (a reset shows as an error or an empty answer).
async fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await.map_err(std::io::Error::other)??;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn sessions_of(lines: &Arc<Mutex<Vec<String>>>, decky: &str) -> usize {
    lines.lock().unwrap().iter().filter(|l| l.contains(&format!(" {decky} http - connect "))).count()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn each_address_reaches_its_own_decky_and_an_unserved_one_is_reset() {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 1 << 20, Default::default());
    let shared = SharedPorts::new();
    let port = free_port();
    let (a, b, none): (SocketAddr, SocketAddr, SocketAddr) = (
        format!("127.3.0.1:{port}").parse().unwrap(),
        format!("127.3.0.2:{port}").parse().unwrap(),
        format!("127.3.0.3:{port}").parse().unwrap(),
    );
    let la = ServiceListener::open_shared(decky("shr-a", &sink), "http", a, &shared).unwrap();
    let lb = ServiceListener::open_shared(decky("shr-b", &sink), "http", b, &shared).unwrap();
    assert_eq!(shared.listening(), 1, "two deckies, one socket");
    assert_eq!((la.addr, lb.addr), (a, b), "each listener says its own address");

    assert!(get(a).await.unwrap().starts_with("HTTP/1."), "decky a answers");
    assert!(get(b).await.unwrap().starts_with("HTTP/1."), "decky b answers");
    assert!(get(b).await.is_ok());
    settle().await;
    assert_eq!((sessions_of(&lines, "shr-a"), sessions_of(&lines, "shr-b")), (1, 2), "{:?}", lines.lock().unwrap());

    // No decky at .3: reset, nothing logged for anyone.
    let before = UNROUTED.load(std::sync::atomic::Ordering::Relaxed);
    let answer = get(none).await;
    assert!(answer.as_deref().map_or(true, str::is_empty), "an unserved address answered: {answer:?}");
    assert!(UNROUTED.load(std::sync::atomic::Ordering::Relaxed) > before);

    // A second decky at a's address is refused with the cause.
    let twice = ServiceListener::open_shared(decky("shr-c", &sink), "http", a, &shared).err().expect("a is taken");
    assert_eq!(twice.source.kind(), std::io::ErrorKind::AddrInUse, "{twice}");

    // Closing a leaves b serving; closing b closes the port.
    la.close().await;
    assert!(get(a).await.map_or(true, |t| t.is_empty()), "a closed but still answers");
    assert!(get(b).await.unwrap().starts_with("HTTP/1."), "b stopped with a");
    lb.close().await;
    assert_eq!(shared.listening(), 0);
    let refused = TcpStream::connect(b).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused),
        "the port listens after its last decky closed"
    );
    // And the port can be shared again at once.
    let again = ServiceListener::open_shared(decky("shr-b", &sink), "http", b, &shared).unwrap();
    assert!(get(b).await.unwrap().starts_with("HTTP/1."), "b does not answer after reopening");
    again.close().await;
}

#[tokio::test]
async fn a_shared_port_is_bound_to_the_loopback_device() {
    // SO_BINDTODEVICE lo: the wildcard socket takes only connections that
    // arrive on lo. A connection to a non-loopback address of this host
    // also travels over lo, so this checks the device binding by reading
    // it back rather than from another host.
    let (collector, _lines) = collector().await;
    let sink = LineSink::start(collector, 1 << 20, Default::default());
    let shared = SharedPorts::new();
    let port = free_port();
    let l = ServiceListener::open_shared(
        decky("shr-d", &sink),
        "http",
        format!("127.3.0.4:{port}").parse().unwrap(),
        &shared,
    )
    .unwrap();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let wildcard = format!("00000000:{port:04X} 00000000:0000 0A");
    assert!(tcp.contains(&wildcard), "one wildcard listener on the port");
    // The device binding, from the socket's own options.
    let out =
        std::process::Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]).output().expect("ss (iproute2)");
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("%lo:"), "the shared socket is not bound to lo: {shown}");
    l.close().await;
}

#[tokio::test]
async fn a_decky_that_is_not_on_loopback_keeps_a_socket_of_its_own() {
    assert!(!SharedPorts::fits("192.0.2.1:80".parse().unwrap()));
    assert!(!SharedPorts::fits("127.0.0.1:0".parse().unwrap()), "any port: nothing to share");
    assert!(SharedPorts::fits("127.9.9.9:80".parse().unwrap()));
    assert!(SharedPorts::fits("[::1]:80".parse().unwrap()));
}
