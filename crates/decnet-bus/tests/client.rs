//! The socket client against an in-process daemon on a real UNIX socket.

use decnet_bus::client::{ClientOptions, UnixBus};
use decnet_bus::server::{Broker, BusServer, ServerConfig};
use decnet_bus::Bus;
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(5);

struct Running {
    broker: Arc<Broker>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn start(path: &Path) -> Running {
    let mut config = ServerConfig::new(path);
    config.heartbeat_interval = Duration::ZERO;
    let server = BusServer::bind(config).unwrap();
    let broker = server.broker();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.run(stop.clone()));
    Running { broker, stop, task }
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within {T:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publish until `sub` sees it (SUB and PUB on different connections race).
async fn publish_until_seen(p: &UnixBus, topic: &str, sub: &mut decnet_bus::Subscription) {
    for _ in 0..250 {
        p.publish(topic, "", json!({})).await.unwrap();
        if let Ok(Some(env)) = timeout(Duration::from_millis(20), sub.recv()).await {
            assert_eq!(env.topic, topic);
            return;
        }
    }
    panic!("{topic} never delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_connect_opens_exactly_one_connection_under_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("bus.sock"));
    let bus = UnixBus::new("racer", dir.path().join("bus.sock"));
    assert_eq!(server.broker.stats().connections, 0, "nothing before first use");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move { bus.publish("race.x", "", json!({ "i": i })).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    bus.flush().await.unwrap();
    eventually(|| server.broker.stats().published == 64).await;
    assert_eq!(server.broker.stats().connections, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn local_fan_out_and_unsubscribe_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("bus.sock"));
    let bus = UnixBus::connect("sub", dir.path().join("bus.sock")).await.unwrap();
    let publisher = UnixBus::connect("pub", dir.path().join("bus.sock")).await.unwrap();
    let mut wide = bus.subscribe("a.>").await.unwrap();
    let mut narrow = bus.subscribe("a.b").await.unwrap();
    let mut twin = bus.subscribe("a.b").await.unwrap();
    eventually(|| server.broker.stats().subscriptions == 2).await;
    publish_until_seen(&publisher, "a.b", &mut narrow).await;
    assert_eq!(timeout(T, twin.recv()).await.unwrap().unwrap().topic, "a.b");
    assert_eq!(timeout(T, wide.recv()).await.unwrap().unwrap().topic, "a.b");

    drop(twin);
    // `narrow` still uses a.b, so no UNSUB went out: a.b still delivers.
    publish_until_seen(&publisher, "a.b", &mut narrow).await;
    assert_eq!(server.broker.stats().subscriptions, 2, "one SUB per distinct pattern");
    drop(narrow);
    eventually(|| server.broker.stats().subscriptions == 1).await;
    drop(wide);
    eventually(|| server.broker.stats().subscriptions == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn close_is_idempotent_ends_streams_and_drops_later_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("bus.sock"));
    let bus = UnixBus::connect("closer", dir.path().join("bus.sock")).await.unwrap();
    let mut s1 = bus.subscribe("x.>").await.unwrap();
    let mut s2 = bus.subscribe("y").await.unwrap();
    bus.close().await;
    bus.close().await;
    assert!(bus.is_closed());
    assert!(timeout(T, s1.recv()).await.unwrap().is_none());
    assert!(timeout(T, s2.recv()).await.unwrap().is_none());
    let before = server.broker.stats().published;
    bus.publish("x.after", "", json!({})).await.expect("publish after close is not an error");
    assert!(matches!(bus.subscribe("x").await, Err(decnet_bus::BusError::Closed)));
    eventually(|| server.broker.stats().connections == 0).await;
    assert_eq!(server.broker.stats().published, before);
    server.shutdown().await;
}

/// Captures log lines so the WARN-once rule can be checked.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn publish_after_close_warns_once_then_debug() {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("bus.sock"));
    let bus = UnixBus::connect("late", dir.path().join("bus.sock")).await.unwrap();
    bus.close().await;
    for _ in 0..5 {
        bus.publish("late.event", "", json!({})).await.unwrap();
    }
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let dropped: Vec<&str> = log.lines().filter(|l| l.contains("publish on a closed bus dropped")).collect();
    assert_eq!(dropped.len(), 5, "{log}");
    assert!(dropped[0].contains("WARN"), "{log}");
    assert!(dropped[1..].iter().all(|l| l.contains("DEBUG")), "{log}");

    // A fresh instance warns again: the flag is per instance.
    let other = UnixBus::new("late2", dir.path().join("bus.sock"));
    other.close().await;
    other.publish("late.event", "", json!({})).await.unwrap();
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("WARN") && l.contains("closed bus")).count(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_ends_subscriptions_without_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("bus.sock"));
    let bus = UnixBus::with_options("once", dir.path().join("bus.sock"), ClientOptions { reconnect: false });
    let mut sub = bus.subscribe("a").await.unwrap();
    server.shutdown().await;
    assert!(timeout(T, sub.recv()).await.expect("stream must end, not hang").is_none());
    eventually(|| bus.is_closed()).await;
}

#[tokio::test]
async fn reconnects_resubscribes_and_counts_drops_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let server = start(&path);
    let bus = UnixBus::new("survivor", &path);
    let mut sub = bus.subscribe("keep.>").await.unwrap();
    let publisher = UnixBus::new("pub", &path);
    publish_until_seen(&publisher, "keep.before", &mut sub).await;

    server.shutdown().await;
    eventually(|| !bus.is_connected()).await;
    bus.publish("keep.lost", "", json!({})).await.unwrap();
    assert!(bus.dropped_while_disconnected() >= 1);

    // Stay down long enough for the backoff (20 ms doubling) to reach its
    // 1 s cap: tries at ~1.26 s and ~2.26 s. Uncapped, the next try would
    // only come at ~5.1 s, so the bound below would fail. (A sleep on
    // purpose: the outage's length is what is under test.)
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let server = start(&path);
    // `start` has bound the socket: the daemon is listening from here.
    let listening = Instant::now();
    eventually(|| bus.is_connected()).await;
    eventually(|| server.broker.stats().subscriptions >= 1).await;
    publish_until_seen(&publisher, "keep.after", &mut sub).await;
    let back = listening.elapsed();
    assert!(back < Duration::from_millis(1500), "resubscribed and delivering {back:?} after the daemon came back");
    server.shutdown().await;
}

/// close() while the link task sits in its reconnect loop: the streams end
/// at once, and the client never comes back, even to a daemon started later.
#[tokio::test]
async fn close_during_an_outage_ends_streams_and_stops_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let server = start(&path);
    let bus = UnixBus::new("quitter", &path);
    let mut s1 = bus.subscribe("a.>").await.unwrap();
    let mut s2 = bus.subscribe("b").await.unwrap();
    let publisher = UnixBus::connect("pub", &path).await.unwrap();
    publish_until_seen(&publisher, "a.live", &mut s1).await;
    publisher.close().await;

    server.shutdown().await;
    eventually(|| !bus.is_connected()).await;
    timeout(Duration::from_secs(1), bus.close()).await.expect("close() returns promptly during an outage");
    assert!(bus.is_closed());
    assert!(timeout(T, s1.recv()).await.expect("stream ends, not hangs").is_none());
    assert!(timeout(T, s2.recv()).await.expect("stream ends, not hangs").is_none());

    // A reconnect loop still running would be back within its 1 s backoff
    // cap: watch a new daemon for longer than that and see no connection.
    let server = start(&path);
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        assert_eq!(server.broker.stats().connections, 0, "the closed client reconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!bus.is_connected());
    server.shutdown().await;
}

/// The daemon closes a connection that sends a PUB body other than a JSON
/// object, so publish_raw refuses such a body before sending anything.
#[tokio::test]
async fn publish_raw_refuses_a_non_object_body_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sock");
    let server = start(&path);
    let reader = UnixBus::connect("reader", &path).await.unwrap();
    let mut sub = reader.subscribe("a.>").await.unwrap();
    // Without reconnect, had a bad frame reached the daemon this client
    // would be closed and the publishes below silently dropped.
    let publisher = UnixBus::with_options("raw", &path, ClientOptions { reconnect: false });
    publish_until_seen(&publisher, "a.warm", &mut sub).await;

    for bad in [&b"[1]"[..], b"42", b"\"s\"", b"null", b" ", b"{", b"}", b"{\"a\":1} x"] {
        let err = publisher.publish_raw("a.b", bad).await.unwrap_err();
        assert!(
            matches!(err, decnet_bus::BusError::Frame(decnet_bus::FrameError::BodyNotObject)),
            "{:?}: {err}",
            String::from_utf8_lossy(bad)
        );
    }
    // A non-object payload is refused by `publish` too (SPEC §2: the
    // daemon would close the connection over it).
    for bad in [json!([1, 2]), json!("s"), json!(5)] {
        let err = publisher.publish("a.b", "t", bad.clone()).await.unwrap_err();
        assert!(matches!(err, decnet_bus::BusError::Frame(decnet_bus::FrameError::PayloadNotObject)), "{bad}: {err}");
    }
    // An empty body and an object padded with whitespace are fine.
    publisher.publish_raw("a.empty", b"").await.unwrap();
    publisher.publish_raw("a.b", b" \n{\"type\":\"t\",\"payload\":{\"n\":1}}\r\n").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let env = timeout(T, sub.recv()).await.expect("delivered after the refused bodies").unwrap();
        if env.topic != "a.warm" {
            got.push(env); // skip warm-up events still in flight
        }
    }
    assert_eq!((got[0].topic.as_str(), got[0].event_type.as_str(), &got[0].payload), ("a.empty", "", &json!({})));
    assert_eq!((got[1].topic.as_str(), got[1].event_type.as_str(), &got[1].payload), ("a.b", "t", &json!({"n": 1})));
    assert!(!publisher.is_closed());
    assert_eq!(server.broker.stats().connections, 2, "no connection was dropped as hostile");
    server.shutdown().await;
}

#[tokio::test]
async fn connect_to_missing_daemon_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = UnixBus::connect("x", dir.path().join("none.sock")).await.unwrap_err();
    assert!(err.to_string().contains("cannot connect to bus at"), "{err}");
    // Lazy clients report the same error on first use, and can retry later.
    let lazy = UnixBus::new("y", dir.path().join("none.sock"));
    assert!(lazy.publish("a", "", json!({})).await.is_err());
    let server = start(&dir.path().join("none.sock"));
    lazy.publish("a", "", json!({})).await.unwrap();
    server.shutdown().await;
}
