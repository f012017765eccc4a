//! The worker SDK against the real bus daemon (`decnet bus` as a child
//! process on a socket in a temp dir): the shared routing table, the
//! example worker as a real process, the thread-safe publisher, AppBus
//! pick-up, and subscriptions surviving a daemon restart.

#[path = "../../decnet-bus/tests/common/conformance.rs"]
mod conformance;
mod support;

use support::example_worker;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_bus::client::UnixBus;
use decnet_bus::sdk::{AppBus, ThreadSafePublisher};
use decnet_bus::{Bus, Envelope, Subscription};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

/// A `decnet bus` child process, killed on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(socket: &Path) -> Daemon {
        Self::start_with(socket, &[])
    }

    fn start_with(socket: &Path, extra: &[&str]) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_decnet"))
            .arg("bus")
            .arg("--socket")
            .arg(socket)
            .args(["--heartbeat-secs", "0"])
            .args(extra)
            .env("DECNET_HOME", socket.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn decnet bus");
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not listen on {}", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon { child }
    }

    /// SIGKILL: the crash case, socket file left behind.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(name: &str, socket: &Path) -> Arc<dyn Bus> {
    Arc::new(UnixBus::new(name, socket))
}

async fn recv(sub: &mut Subscription) -> Envelope {
    tokio::time::timeout(WAIT, sub.recv()).await.expect("event within 5 s").expect("stream open")
}

/// SUB has no acknowledgement and the daemon serves connections
/// concurrently: publish probes on `topic` until `sub` sees one, so later
/// publishes are known to find the subscription. Callers skip late probes
/// (event type `probe`).
async fn until_live(publisher: &dyn Bus, sub: &mut Subscription, topic: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        publisher.publish(topic, "probe", json!({})).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
            Ok(Some(env)) if env.event_type == "probe" => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("subscription ended"),
            Err(_) => assert!(Instant::now() < deadline, "subscription never became live"),
        }
    }
}

/// Next event that is not a late probe.
async fn recv_real(sub: &mut Subscription) -> Envelope {
    loop {
        let env = recv(sub).await;
        if env.event_type != "probe" {
            return env;
        }
    }
}

#[tokio::test]
async fn daemon_passes_the_shared_routing_table() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _daemon = Daemon::start(&socket);
    conformance::run_conformance(|name| client(name, &socket)).await;
}

fn spawn_worker(bin: &Path, socket: &Path, name: &str) -> Child {
    Command::new(bin)
        .env("DECNET_BUS_SOCKET", socket)
        .env("DECNET_WORKER_NAME", name)
        .env("DECNET_HEARTBEAT_SECS", "0.2")
        .env_remove("DECNET_BUS_TYPE")
        .env_remove("DECNET_BUS_ENABLED")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn example worker")
}

/// Poll `child` until it exits or `within` passes.
fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn example_worker_heartbeats_and_exits_0_on_a_stop_from_decnet_pub_or_sigterm() {
    let bin = example_worker();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _daemon = Daemon::start(&socket);
    let api = client("api", &socket);

    // Stop over the bus.
    let mut health = api.subscribe("system.*.health").await.unwrap();
    let mut worker = spawn_worker(&bin, &socket, "demo-1");
    let hb = recv(&mut health).await;
    assert_eq!(hb.topic, "system.demo-1.health");
    assert_eq!(hb.payload["worker"], "demo-1");
    assert!(hb.payload["ts"].is_f64());
    let status = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["pub", "--socket"])
        .arg(&socket)
        .args(["system.demo-1.control", r#"{"action":"stop","requested_by":"test"}"#])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(&mut worker, Duration::from_secs(1));
    if exit.is_none() {
        let _ = worker.kill();
    }
    assert_eq!(exit.expect("worker exited within 1 s of the stop").code(), Some(0));

    // Stop by SIGTERM: the same path.
    let mut worker = spawn_worker(&bin, &socket, "demo-2");
    loop {
        if recv(&mut health).await.topic == "system.demo-2.health" {
            break;
        }
    }
    let killed = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let exit = wait_exit(&mut worker, WAIT);
    if exit.is_none() {
        let _ = worker.kill();
    }
    assert_eq!(exit.expect("worker exited on SIGTERM").code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_threads_publish_everything_while_up_and_nothing_after_close() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    // A deep queue: this test is about the publisher, not slow-consumer drops.
    let _daemon = Daemon::start_with(&socket, &["--queue", "65536"]);
    let api = client("api", &socket);
    let mut sub = api.subscribe_with_capacity("load.>", 65536).await.unwrap();
    let bus = client("sniffer", &socket);
    until_live(&*bus, &mut sub, "load.probe").await;
    let publisher = ThreadSafePublisher::current(bus.clone());

    let spawn_threads = |tag: &'static str| {
        (0..THREADS)
            .map(|t| {
                let p = publisher.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        p.publish(&format!("load.t{t}"), tag, json!({"t": t, "i": i}));
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let join_all = |threads: Vec<std::thread::JoinHandle<()>>| async move {
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join().unwrap())).await.unwrap();
    };

    join_all(spawn_threads("before")).await;
    let mut seen = HashSet::new();
    while seen.len() < THREADS * PER_THREAD {
        let env = recv_real(&mut sub).await;
        assert_eq!(env.event_type, "before");
        seen.insert((env.payload["t"].as_u64().unwrap(), env.payload["i"].as_u64().unwrap()));
    }
    assert_eq!(publisher.dropped(), 0);

    bus.close().await;
    tokio::time::timeout(WAIT, join_all(spawn_threads("after"))).await.expect("publishing after close returns at once");
    // Nothing from after the close reaches the bus: a fence from another
    // client arrives with nothing before it.
    let other = client("other", &socket);
    other.publish("load.fence", "fence", json!({})).await.unwrap();
    assert_eq!(recv_real(&mut sub).await.event_type, "fence");
}

#[tokio::test]
async fn app_bus_is_none_while_down_and_picks_up_a_daemon_started_later() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let app = Arc::new(AppBus::new("api", &socket));
    assert!(app.get().await.is_none());
    assert!(app.get().await.is_none(), "within the retry window: no new attempt, still None");
    assert!(!app.is_connected());

    let _daemon = Daemon::start(&socket);
    // `start` returns once the socket accepts: the daemon is listening
    // (at most one 10 ms poll earlier) from here.
    let listening = Instant::now();
    let bus = loop {
        if let Some(bus) = app.get().await {
            break bus;
        }
        // One 2 s retry window, plus slack for a loaded 2-core host.
        let waited = listening.elapsed();
        assert!(waited < Duration::from_millis(2500), "not picked up {waited:?} after the daemon was listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = listening.elapsed();
    assert!(waited < Duration::from_millis(2500), "picked up {waited:?} after the daemon was listening");
    assert!(app.is_connected());

    // Concurrent callers share the one connection.
    let handles: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn({
                let app = app.clone();
                async move { app.get().await }
            })
        })
        .collect();
    for h in handles {
        assert!(Arc::ptr_eq(&h.await.unwrap().expect("connected"), &bus));
    }

    // It is a working bus.
    let peer = client("peer", &socket);
    let mut sub = peer.subscribe("api.ping").await.unwrap();
    until_live(&*bus, &mut sub, "api.ping").await;
    bus.publish("api.ping", "ping", json!({})).await.unwrap();
    assert_eq!(recv_real(&mut sub).await.event_type, "ping");

    app.close().await;
    assert!(app.get().await.is_none());
    assert!(bus.is_closed());
}

#[tokio::test]
async fn app_bus_concurrent_first_callers_open_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let _daemon = Daemon::start(&socket);
    let app = Arc::new(AppBus::new("api", &socket));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn({
                let app = app.clone();
                async move { app.get().await }
            })
        })
        .collect();
    let mut buses = Vec::new();
    for h in handles {
        buses.push(h.await.unwrap().expect("connected"));
    }
    assert!(buses.iter().all(|b| Arc::ptr_eq(b, &buses[0])));
}

#[tokio::test]
async fn subscriber_keeps_its_stream_across_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let daemon = Daemon::start(&socket);
    let api = client("api", &socket);
    let mutator = client("mutator", &socket);
    let mut sub = api.subscribe("topology.>").await.unwrap();
    until_live(&*mutator, &mut sub, "topology.t1.status").await;

    daemon.kill();
    // Stay down long enough for the clients' backoff (20 ms doubling) to
    // reach its 1 s cap; uncapped, their next try would be ~2.5 s away and
    // the bound below would fail. (A sleep on purpose: the outage's length
    // is what is under test.)
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let _daemon = Daemon::start(&socket);
    // `start` returns once the socket accepts: listening from here.
    let listening = Instant::now();
    // Both clients reconnect by themselves; publishes while the publisher
    // is still reconnecting are dropped, so keep publishing until one lands.
    // Each may take up to the 1 s cap to come back; 1.5 s leaves slack.
    let limit = Duration::from_millis(1500);
    let mut n = 0;
    loop {
        n += 1;
        mutator.publish("topology.t1.status", "status", json!({"phase": "after", "n": n})).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(20), sub.recv()).await {
            Ok(Some(env)) if env.event_type == "probe" => {}
            Ok(Some(env)) => {
                assert_eq!(env.payload["phase"], "after");
                assert_eq!(env.topic, "topology.t1.status");
                break;
            }
            Ok(None) => panic!("the subscription ended across the restart"),
            Err(_) => {}
        }
        assert!(listening.elapsed() < limit, "no event within {limit:?} of the daemon listening again");
    }
    let back = listening.elapsed();
    assert!(back < limit, "delivering again {back:?} after the daemon was listening");
}
