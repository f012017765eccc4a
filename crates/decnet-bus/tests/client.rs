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

    let server = start(&path);
    eventually(|| bus.is_connected()).await;
    eventually(|| server.broker.stats().subscriptions >= 1).await;
    publish_until_seen(&publisher, "keep.after", &mut sub).await;
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
