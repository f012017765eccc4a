//! Bus federation over NATS (SPEC §9) with real `nats-server` processes on
//! loopback and real `decnet bus` daemons, each standing for one host:
//! both directions through one server with origin and no loop or
//! duplicate, hostile NATS messages refused and counted, NATS down at start
//! and restarted later, a two-node cluster losing a node, and one API
//! seeing (and stopping) another host's worker.
//!
//! Every wait is bounded; every load loop is bounded in count.

mod support;

use decnet_bus::client::UnixBus;
use decnet_bus::{Bus, RawEvent, Subscription};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{free_port, wait_until, Daemon, BIN};

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// One `nats-server` node, SIGKILLed on drop.
struct Nats {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Nats {
    fn start(port: u16) -> Nats {
        Self::start_with(port, vec![])
    }

    fn start_with(port: u16, extra: Vec<String>) -> Nats {
        let mut args = vec!["-a".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        args.extend(extra);
        let child = Command::new("nats-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it)");
        let n = Nats { child, port, args };
        assert!(wait_until(10.0, || port_open(port)), "nats-server on {port} did not start");
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Nats::start_with(self.port, self.args[4..].to_vec());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bus daemon for host `host` federated to `urls`.
fn host_bus(dir: &Path, host: &str, urls: &str, export: &[&str], import: &[&str]) -> Daemon {
    let mut args = vec!["--heartbeat-secs", "0.2", "--nats", urls, "--host-id", host];
    for p in export {
        args.extend(["--export", p]);
    }
    for p in import {
        args.extend(["--import", p]);
    }
    Daemon::start(dir, &args)
}

async fn client(d: &Daemon, name: &str) -> UnixBus {
    UnixBus::connect(name, &d.socket).await.expect("connect to the bus")
}

/// The next raw event within `secs`, decoded as JSON (origin included).
async fn next(sub: &mut Subscription, secs: f64) -> Option<serde_json::Value> {
    let ev: RawEvent = tokio::time::timeout(Duration::from_secs_f64(secs), sub.next_raw()).await.ok()??;
    Some(serde_json::from_slice(&ev.body).expect("an envelope is JSON"))
}

/// Every event until `topic` shows up (included), or `None` after `secs`.
async fn until_topic(sub: &mut Subscription, topic: &str, secs: f64) -> Option<Vec<serde_json::Value>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).as_secs_f64();
        let ev = next(sub, left).await?;
        let done = ev["topic"] == topic;
        got.push(ev);
        if done {
            return Some(got);
        }
    }
}

/// Publish `probe` on `from` every 100 ms until `sub` sees it (≤ `secs`):
/// NATS subscriptions have no ack, so this is how a test knows a path is up.
async fn until_flowing(from: &UnixBus, sub: &mut Subscription, probe: &str, secs: f64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while tokio::time::Instant::now() < deadline {
        from.publish(probe, "probe", serde_json::json!({})).await.unwrap();
        while let Some(ev) = next(sub, 0.1).await {
            if ev["topic"] == probe {
                return true;
            }
        }
    }
    false
}

/// The latest `system.bus.health` federation counters of `bus`.
async fn federation_health(bus: &UnixBus) -> serde_json::Value {
    let mut sub = bus.subscribe("system.bus.health").await.unwrap();
    let beat = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.expect("a bus heartbeat").unwrap();
    beat.payload
}

#[tokio::test]
async fn two_hosts_share_events_both_ways_without_loops_or_duplicates() {
    let nats = Nats::start(free_port());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Overlapping import patterns on purpose: decky.> and decky.*.state.
    let export = ["decky.>", "attacker.>"];
    let import = ["decky.>", "decky.*.state", "attacker.>"];
    let a = host_bus(da.path(), "host-a", &nats.url(), &export, &import);
    let b = host_bus(db.path(), "host-b", &nats.url(), &export, &import);
    let (ca, cb) = (client(&a, "t-a").await, client(&b, "t-b").await);
    let mut on_a = ca.subscribe(">").await.unwrap();
    let mut on_b = cb.subscribe("decky.>").await.unwrap();
    let mut on_b_attackers = cb.subscribe("attacker.>").await.unwrap();
    assert!(until_flowing(&ca, &mut on_b, "decky.warmup.state", 10.0).await, "A→B never flowed");

    // A → B: 50 events, then a marker; B gets each exactly once.
    let pub_a = client(&a, "pub-a").await;
    for i in 0..50 {
        pub_a.publish("decky.d1.state", "state", serde_json::json!({"i": i})).await.unwrap();
    }
    pub_a.publish("decky.end.state", "state", serde_json::json!({})).await.unwrap();
    let got_b = until_topic(&mut on_b, "decky.end.state", 10.0).await.expect("B got the marker");
    let got_b: Vec<_> = got_b.into_iter().filter(|e| e["topic"] == "decky.d1.state").collect();
    assert_eq!(got_b.len(), 50, "each event once, despite overlapping import patterns");
    let is: Vec<i64> = got_b.iter().map(|e| e["payload"]["i"].as_i64().unwrap()).collect();
    assert_eq!(is, (0..50).collect::<Vec<_>>(), "in order");
    assert!(got_b.iter().all(|e| e["origin"] == "host-a" && e["type"] == "state" && e["v"] == 1));

    // A's own subscriber saw the same envelopes (same id and ts), no origin,
    // and nothing came back from NATS (no loop).
    let got_a = until_topic(&mut on_a, "decky.end.state", 5.0).await.expect("A's subscriber got the marker");
    let got_a: Vec<_> = got_a.into_iter().filter(|e| e["topic"] == "decky.d1.state").collect();
    assert_eq!(got_a.len(), 50, "A sees its events once: none looped back");
    for (x, y) in got_a.iter().zip(&got_b) {
        assert_eq!((&x["id"], &x["ts"], &x["payload"]), (&y["id"], &y["ts"], &y["payload"]));
        assert!(x.get("origin").is_none(), "local events carry no origin: {x}");
    }

    // B → A on another exported prefix.
    let pub_b = client(&b, "pub-b").await;
    pub_b.publish("attacker.observed", "observed", serde_json::json!({"ip": "192.0.2.7"})).await.unwrap();
    let from_b = until_topic(&mut on_a, "attacker.observed", 5.0).await.expect("B→A flowed");
    let ev = from_b.last().unwrap();
    assert_eq!((ev["origin"].as_str(), ev["payload"]["ip"].as_str()), (Some("host-b"), Some("192.0.2.7")));
    // B's own subscriber has it once and A did not send it back.
    pub_b.publish("attacker.end", "end", serde_json::json!({})).await.unwrap();
    let on_b_seen = until_topic(&mut on_b_attackers, "attacker.end", 5.0).await.unwrap();
    assert_eq!(on_b_seen.iter().filter(|e| e["topic"] == "attacker.observed").count(), 1);

    // A topic that is not exported stays home.
    pub_a.publish("topology.t1.status", "status", serde_json::json!({})).await.unwrap();
    pub_a.publish("decky.end2.state", "state", serde_json::json!({})).await.unwrap();
    let tail = until_topic(&mut on_b, "decky.end2.state", 5.0).await.unwrap();
    assert!(tail.iter().all(|e| e["topic"] != "topology.t1.status"));

    // Counters in system.bus.health.
    let health = federation_health(&ca).await;
    assert_eq!(health["host"], "host-a", "{health}");
    let f = &health["federation"];
    assert_eq!(f["connected"], true, "{health}");
    assert!(f["exported"].as_u64().unwrap() >= 52, "{health}");
    assert!(f["imported"].as_u64().unwrap() >= 1, "{health}");
    assert_eq!((f["dropped"].as_u64(), f["rejected"].as_u64()), (Some(0), Some(0)), "{health}");
}

#[tokio::test]
async fn hostile_nats_messages_are_rejected_and_counted() {
    let nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let a = host_bus(dir.path(), "host-a", &nats.url(), &["decky.>"], &["decky.>"]);
    let ca = client(&a, "t").await;
    let mut sub = ca.subscribe("decky.>").await.unwrap();
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let good = |topic: &str, i: u32| {
        serde_json::json!({"v": 1, "id": format!("{i:032x}"), "topic": topic, "type": "state",
                           "ts": 1.5, "payload": {"i": i}})
        .to_string()
    };
    let with_origin = |o: &str| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Decnet-Origin", o);
        h
    };
    // A good message from a third host proves the path is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        nc.publish_with_headers("decnet.decky.up.state", with_origin("host-z"), good("decky.up.state", 0).into())
            .await
            .unwrap();
        if let Some(ev) = next(&mut sub, 0.2).await {
            assert_eq!(ev["topic"], "decky.up.state");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the import path never came up");
    }
    while next(&mut sub, 0.3).await.is_some() {} // the warm-up's extra copies

    let s = "decnet.decky.d1.state";
    let hostile: Vec<(async_nats::HeaderMap, String)> = vec![
        (async_nats::HeaderMap::new(), good("decky.d1.state", 1)), // no origin
        (with_origin("host-z"), "{not json".into()),
        (with_origin("host-z"), "[1,2]".into()),
        (with_origin("host-z"), good("decky.other.state", 2)), // body topic ≠ subject
        (with_origin("host-z"), good("decky.d1.state", 3).replace("\"v\":1", "\"v\":9")),
        (with_origin("bad host!"), good("decky.d1.state", 4)),
        (with_origin("host-z"), good("decky.d1.state", 5).replace("{\"i\":5}", "[5]")),
    ];
    for (headers, body) in hostile {
        nc.publish_with_headers(s, headers, body.into()).await.unwrap();
    }
    // Our own origin coming back is dropped quietly (own_origin, not rejected).
    nc.publish_with_headers(s, with_origin("host-a"), good("decky.d1.state", 6).into()).await.unwrap();
    nc.publish_with_headers(s, with_origin("host-z"), good("decky.d1.state", 7).into()).await.unwrap();
    nc.flush().await.unwrap();
    let ev = next(&mut sub, 5.0).await.expect("the good message after the junk arrives");
    assert_eq!(ev["payload"]["i"], 7, "only the good one is delivered: {ev}");
    assert_eq!(ev["origin"], "host-z");
    assert_eq!(ev["id"], format!("{:032x}", 7));
    assert!(next(&mut sub, 0.3).await.is_none(), "nothing else was delivered");

    // The daemon is unhurt: local pub/sub still works, the counters say why.
    let other = client(&a, "other").await;
    other.publish("decky.local.state", "state", serde_json::json!({})).await.unwrap();
    assert_eq!(next(&mut sub, 5.0).await.unwrap()["topic"], "decky.local.state");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let health = federation_health(&ca).await;
        let f = &health["federation"];
        if f["rejected"] == 7 && f["own_origin"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "counters never matched: {health}");
    }
    assert!(a.log().contains("NATS message rejected"), "{}", a.log());
}

#[tokio::test]
async fn nats_down_at_start_then_restarted_the_local_bus_keeps_working() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host_bus(da.path(), "host-a", &url, &["decky.>"], &[]);
    let b = host_bus(db.path(), "host-b", &url, &[], &["decky.>"]);
    let (ca, cb) = (client(&a, "t-a").await, client(&b, "t-b").await);
    let mut local = ca.subscribe("decky.>").await.unwrap();
    let mut remote = cb.subscribe("decky.>").await.unwrap();

    // No NATS at all: the local bus works and the bridge says disconnected.
    ca.publish("decky.x.state", "state", serde_json::json!({})).await.unwrap();
    let other = client(&a, "other").await;
    other.publish("decky.y.state", "state", serde_json::json!({})).await.unwrap();
    assert_eq!(next(&mut local, 5.0).await.unwrap()["topic"], "decky.y.state");
    let health = federation_health(&ca).await;
    assert_eq!(health["federation"]["connected"], false, "{health}");

    // NATS appears: both connect (A exports, B subscribes) without restarts.
    let mut nats = Nats::start(port);
    assert!(
        until_flowing(&other, &mut remote, "decky.after-start.state", 15.0).await,
        "never flowed after NATS came up"
    );

    // NATS dies: local delivery is unaffected.
    nats.kill();
    other.publish("decky.during.state", "state", serde_json::json!({})).await.unwrap();
    let seen = until_topic(&mut local, "decky.during.state", 5.0).await;
    assert!(seen.is_some(), "local delivery stopped while NATS was down");
    assert!(
        wait_until(10.0, || a.log().contains("NATS disconnected")),
        "the bridge did not notice NATS going away:\n{}",
        a.log()
    );

    // NATS is back on the same port: reconnect and resubscribe.
    nats.restart();
    assert!(until_flowing(&other, &mut remote, "decky.after-restart.state", 15.0).await, "never flowed after restart");
    let f = federation_health(&cb).await["federation"].clone();
    assert_eq!(f["connected"], true);
    assert!(f["connects"].as_u64().unwrap() >= 2, "{f}");
}

/// While NATS is away the export queue keeps the newest `--nats-queue`
/// events and drops (and counts) the oldest; once NATS is back exactly
/// the kept ones go out.
#[tokio::test]
async fn export_queue_drops_oldest_while_nats_is_away() {
    let mut nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--heartbeat-secs", "0.2", "--host-id", "host-a", "--nats-queue", "5"];
    let url = nats.url();
    args.extend(["--nats", url.as_str(), "--export", "decky.>"]);
    let a = Daemon::start(dir.path(), &args);
    let ca = client(&a, "t").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while federation_health(&ca).await["federation"]["connected"] != true {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
    }
    nats.kill();
    assert!(wait_until(10.0, || a.log().contains("NATS disconnected")), "{}", a.log());
    let before = federation_health(&ca).await["federation"].clone();
    for i in 0..20 {
        ca.publish("decky.d1.state", "state", serde_json::json!({"i": i})).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let f = federation_health(&ca).await["federation"].clone();
        if f["dropped"] == 15 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "20 events into a queue of 5 must drop 15: {f}");
    }
    assert!(a.log().contains("NATS export queue full"), "{}", a.log());
    nats.restart();
    let exported_before = before["exported"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let f = federation_health(&ca).await["federation"].clone();
        let sent = f["exported"].as_u64().unwrap() - exported_before;
        if f["connected"] == true && sent >= 5 {
            assert_eq!(sent, 5, "only the 5 kept events go out: {f}");
            assert_eq!(f["dropped"], 15, "{f}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "queued exports never went out: {f}");
    }
}

#[tokio::test]
async fn a_two_node_cluster_keeps_events_flowing_when_one_node_dies() {
    let (p1, p2, c1, c2) = (free_port(), free_port(), free_port(), free_port());
    let node = |port: u16, cport: u16, other: u16| {
        Nats::start_with(
            port,
            vec![
                "--cluster_name".into(),
                "decnet-test".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{cport}"),
                "--routes".into(),
                format!("nats://127.0.0.1:{other}"),
            ],
        )
    };
    let mut n1 = node(p1, c1, c2);
    let n2 = node(p2, c2, c1);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Each host on its own node first, the other node as fallback.
    let a = host_bus(da.path(), "host-a", &format!("{},{}", n1.url(), n2.url()), &["attacker.>"], &["attacker.>"]);
    let b = host_bus(db.path(), "host-b", &format!("{},{}", n2.url(), n1.url()), &["attacker.>"], &["attacker.>"]);
    let (ca, cb) = (client(&a, "t-a").await, client(&b, "t-b").await);
    let mut on_a = ca.subscribe("attacker.>").await.unwrap();
    let mut on_b = cb.subscribe("attacker.>").await.unwrap();
    let pub_a = client(&a, "pub-a").await;
    let pub_b = client(&b, "pub-b").await;
    // Through the cluster route (node 1 ↔ node 2), both ways.
    assert!(until_flowing(&pub_a, &mut on_b, "attacker.before.a", 15.0).await, "A→B never flowed across the route");
    assert!(until_flowing(&pub_b, &mut on_a, "attacker.before.b", 15.0).await, "B→A never flowed across the route");

    // Node 1 (host A's) dies: A fails over to node 2 and both ways still work.
    n1.kill();
    assert!(until_flowing(&pub_a, &mut on_b, "attacker.after.a", 15.0).await, "A→B stopped after node 1 died");
    assert!(until_flowing(&pub_b, &mut on_a, "attacker.after.b", 15.0).await, "B→A stopped after node 1 died");
    drop(n2);
}

/// The "done when", shrunk: two DECNET_HOMEs and two buses through
/// NATS, one API on host A. Host B's worker shows up on A's API with its
/// host, an attacker event from B reaches A, and a stop naming host B
/// stops B's worker and not A's worker of the same name.
#[tokio::test]
async fn one_api_sees_and_stops_another_hosts_worker() {
    let nats = Nats::start(free_port());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A (the master) imports B's heartbeats and events; B imports control.
    let a = host_bus(da.path(), "host-a", &nats.url(), &["system.*.control"], &["system.*.health", "attacker.>"]);
    let b = host_bus(db.path(), "host-b", &nats.url(), &["system.*.health", "attacker.>"], &["system.*.control"]);

    let db_path = da.path().join("decnet.db");
    let db_s = db_path.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["user", "add", "root", "--role", "admin", "--db", db_s])
        .env("DECNET_HOME", da.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"root-password-1\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _api = Killed(
        Command::new(BIN)
            .args(["api", "--listen", &format!("127.0.0.1:{port}"), "--db", db_s, "--socket"])
            .arg(&a.socket)
            .args(["--heartbeat-secs", "0.3"])
            .env("DECNET_HOME", da.path())
            .env("DECNET_HOST_ID", "host-a")
            .env("PATH", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let worker_bin = support::example_worker();
    let worker = |socket: &PathBuf, host: &str| {
        Killed(
            Command::new(&worker_bin)
                .env("DECNET_BUS_SOCKET", socket)
                .env("DECNET_WORKER_NAME", "sniffer")
                .env("DECNET_HOST_ID", host)
                .env("DECNET_HEARTBEAT_SECS", "0.2")
                .env_remove("DECNET_BUS_TYPE")
                .env_remove("DECNET_BUS_ENABLED")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut sniffer_a = worker(&a.socket, "host-a");
    let mut sniffer_b = worker(&b.socket, "host-b");

    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let token = loop {
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "root", "password": "root-password-1"}))
            .send()
            .await;
        if let Ok(r) = r {
            let body: serde_json::Value = r.json().await.unwrap();
            break body["access_token"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "API never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let row = |body: &serde_json::Value, host: &str, name: &str| {
        body["workers"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["host"] == host && w["name"] == name))
            .map(|w| w["status"].as_str().unwrap_or_default().to_owned())
    };
    let mut body: serde_json::Value;
    let ok = loop {
        body =
            http.get(format!("{base}/api/v1/workers")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let all_ok = [("host-a", "sniffer"), ("host-b", "sniffer"), ("host-b", "bus"), ("host-a", "bus")]
            .iter()
            .all(|(h, n)| row(&body, h, n).as_deref() == Some("ok"));
        if all_ok || tokio::time::Instant::now() > deadline {
            break all_ok;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ok, "both hosts' workers never showed ok on one API: {body}");
    let only_b: serde_json::Value = http
        .get(format!("{base}/api/v1/workers?host=host-b"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(only_b["workers"].as_array().unwrap().iter().all(|w| w["host"] == "host-b"), "{only_b}");

    // An attacker event on B reaches A's subscribers (what A's dashboard streams).
    let ca = client(&a, "t-a").await;
    let mut on_a = ca.subscribe("attacker.>").await.unwrap();
    let cb = client(&b, "t-b").await;
    assert!(until_flowing(&cb, &mut on_a, "attacker.observed", 10.0).await, "B's attacker event never reached A");

    // Stop B's sniffer through A's API: B's stops, A's keeps running.
    let r =
        http.post(format!("{base}/api/v1/workers/sniffer/stop?host=host-b")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(support::wait_exit(&mut sniffer_b.0, 10.0).is_some(), "host B's sniffer did not obey the stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sniffer_a.0.try_wait().unwrap().is_none(), "host A's sniffer obeyed a stop meant for host B");
    drop(b);
}

/// A child SIGKILLed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Cross-host throughput and latency: publisher on host A's bus, subscriber
/// on host B's bus, one nats-server between them. A benchmark, not a test:
/// run it on purpose and copy the numbers into BENCHMARKS.md.
#[tokio::test]
#[ignore = "benchmark: cargo test -p decnet --test federation -- --ignored --nocapture bench_"]
async fn bench_cross_host_throughput_and_latency() {
    const EVENTS: u64 = 20_000;
    const RATE: u64 = 1_000;
    const LATENCY_SECS: u64 = 3;
    let nats = Nats::start(free_port());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host_bus(da.path(), "host-a", &nats.url(), &["bench.>"], &[]);
    let b = host_bus(db.path(), "host-b", &nats.url(), &[], &["bench.>"]);
    let (pa, cb) = (client(&a, "pub").await, client(&b, "sub").await);
    let mut sub = cb.subscribe_with_capacity("bench.>", 65_536).await.unwrap();
    assert!(until_flowing(&pa, &mut sub, "bench.warmup", 10.0).await);
    while next(&mut sub, 0.2).await.is_some() {}

    // Throughput: EVENTS × a 128-byte payload as fast as one publisher goes.
    let pad = "x".repeat(100);
    let start = std::time::Instant::now();
    let publisher = tokio::spawn({
        let pa = client(&a, "pub2").await;
        async move {
            for i in 0..EVENTS {
                pa.publish("bench.load", "b", serde_json::json!({"i": i, "pad": pad})).await.unwrap();
            }
            pa
        }
    });
    let mut got = 0u64;
    let mut last = start;
    while got < EVENTS {
        match tokio::time::timeout(Duration::from_secs(2), sub.next_raw()).await {
            Ok(Some(_)) => {
                got += 1;
                last = std::time::Instant::now();
            }
            _ => break,
        }
    }
    let _pa2 = publisher.await.unwrap();
    let secs = last.duration_since(start).as_secs_f64();
    println!(
        "throughput: {got}/{EVENTS} delivered A→NATS→B in {secs:.3} s = {:.0} events/s ({} lost)",
        got as f64 / secs,
        EVENTS - got
    );
    while next(&mut sub, 0.2).await.is_some() {}

    // Latency: RATE events/s for LATENCY_SECS, publish → delivery on B.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let total = RATE * LATENCY_SECS;
    let pacer = tokio::spawn({
        let pa = client(&a, "pub3").await;
        async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            for _ in 0..total {
                tick.tick().await;
                pa.publish("bench.lat", "b", serde_json::json!({"t": now_ns()})).await.unwrap();
            }
            pa
        }
    });
    let mut seen = 0u64;
    while seen < total {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), sub.next_raw()).await else { break };
        let v: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
        let sent = v["payload"]["t"].as_u64().unwrap();
        hist.record(((now_ns().saturating_sub(sent)) / 1_000).max(1)).unwrap();
        seen += 1;
    }
    let _pa3 = pacer.await.unwrap();
    println!(
        "latency at {RATE}/s: {seen}/{total} delivered, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    let f = federation_health(&pa).await["federation"].clone();
    println!("host A federation counters: {f}");
}

/// `system.bus.health` of `bus` until `want` holds on its `federation`
/// object (within `secs`).
async fn federation_until(bus: &UnixBus, secs: f64, what: &str, want: impl Fn(&serde_json::Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let health = federation_health(bus).await;
        if want(&health["federation"]) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {health}");
    }
}

fn nats_headers(pairs: &[(&str, &str)]) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, *v);
    }
    h
}

/// Issue 25: every export carries its bus's instance and a number per
/// topic, and a receiving host counts the numbers it never saw, per
/// origin, in `system.bus.health` (NATS core loses messages silently: a
/// node killed mid-stream, an importer too slow for a flood).
#[tokio::test]
async fn exports_are_numbered_and_receivers_count_gaps_per_origin() {
    let nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let a = host_bus(dir.path(), "host-a", &nats.url(), &["decky.>"], &["decky.>"]);
    let ca = client(&a, "t").await;
    let mut sub = ca.subscribe("decky.>").await.unwrap();
    let nc = async_nats::connect(nats.url()).await.unwrap();

    // Sender side: numbered 1, 2, 3 on one topic, 1 on another.
    use futures_util::StreamExt;
    let mut raw = nc.subscribe("decnet.decky.>").await.unwrap();
    nc.flush().await.unwrap();
    let pub_a = client(&a, "pub").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The bridge's NATS connection may still be coming up.
        pub_a.publish("decky.warm.state", "state", serde_json::json!({})).await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), raw.next()).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "exports never reached NATS");
    }
    for topic in ["decky.d1.state", "decky.d1.state", "decky.d2.state", "decky.d1.state"] {
        pub_a.publish(topic, "state", serde_json::json!({})).await.unwrap();
    }
    let mut headers = Vec::new();
    while headers.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(5), raw.next()).await.unwrap().unwrap();
        if msg.subject.as_str() == "decnet.decky.warm.state" {
            continue; // the warm-up's other copies
        }
        let h = msg.headers.clone().expect("exports carry headers");
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_owned());
        headers.push((msg.subject.to_string(), get("Decnet-Seq"), get("Decnet-Instance")));
    }
    let seqs: Vec<(&str, &str)> =
        headers.iter().map(|(s, q, _)| (s.as_str(), q.as_deref().unwrap_or("none"))).collect();
    assert_eq!(
        seqs,
        [
            ("decnet.decky.d1.state", "1"),
            ("decnet.decky.d1.state", "2"),
            ("decnet.decky.d2.state", "1"),
            ("decnet.decky.d1.state", "3")
        ]
    );
    let instance = headers[0].2.clone().expect("an instance header");
    assert_eq!(instance.len(), 32);
    assert!(headers.iter().all(|(_, _, i)| i.as_deref() == Some(instance.as_str())));

    // Receiver side: host-z's numbers 1, 2, 5, 6 on one topic and 1 on
    // another: 3 and 4 were lost.
    let good = |topic: &str, i: u32| {
        serde_json::json!({"v": 1, "id": format!("{i:032x}"), "topic": topic, "type": "state",
                           "ts": 1.5, "payload": {"i": i}})
        .to_string()
    };
    let z = |seq: &str| nats_headers(&[("Decnet-Origin", "host-z"), ("Decnet-Instance", "zz"), ("Decnet-Seq", seq)]);
    for (seq, topic) in [
        ("1", "decky.z1.state"),
        ("2", "decky.z1.state"),
        ("5", "decky.z1.state"),
        ("1", "decky.z2.state"),
        ("6", "decky.z1.state"),
    ] {
        nc.publish_with_headers(format!("decnet.{topic}"), z(seq), good(topic, seq.parse().unwrap()).into())
            .await
            .unwrap();
    }
    nc.flush().await.unwrap();
    let got = until_topic(&mut sub, "decky.z2.state", 5.0).await.expect("host-z's events arrive");
    assert!(got.iter().any(|e| e["origin"] == "host-z"));
    federation_until(&ca, 5.0, "host-z's gap counted", |f| {
        f["lost"] == 2 && f["origins"]["host-z"] == serde_json::json!({"received": 5, "lost": 2})
    })
    .await;
}

/// Issue 25: two buses given the same host id used to drop each other's
/// exports as their own, silently. Now each notices the other and refuses
/// to federate with a clear error; local delivery goes on.
#[tokio::test]
async fn a_duplicate_host_id_is_refused_on_both_sides() {
    let nats = Nats::start(free_port());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host_bus(da.path(), "same-host", &nats.url(), &["decky.>"], &[]);
    let ca = client(&a, "t-a").await;
    federation_until(&ca, 10.0, "A connected", |f| f["connected"] == true).await;
    // B only imports: A could never hear B's events, only its announcement.
    let b = host_bus(db.path(), "same-host", &nats.url(), &[], &["decky.>"]);
    let cb = client(&b, "t-b").await;
    let refused =
        |f: &serde_json::Value| f["error"].as_str().is_some_and(|e| e.contains("duplicate host id \"same-host\""));
    federation_until(&cb, 10.0, "B refuses", refused).await;
    federation_until(&ca, 10.0, "A refuses", refused).await;
    for (name, d) in [("A", &a), ("B", &b)] {
        let lines: Vec<String> =
            d.log().lines().filter(|l| l.contains("NATS federation refused")).map(str::to_owned).collect();
        assert_eq!(lines.len(), 1, "{name}: one clear error line: {}", d.log());
        assert!(lines[0].contains("ERROR") && lines[0].contains("unique --host-id"), "{name}: {}", lines[0]);
    }
    // The local bus still works on both.
    let mut local = cb.subscribe("decky.>").await.unwrap();
    let other = client(&b, "other").await;
    other.publish("decky.local.state", "state", serde_json::json!({})).await.unwrap();
    assert_eq!(next(&mut local, 5.0).await.unwrap()["topic"], "decky.local.state");
}

/// Issue 25: "export queue full" was logged every 50 ms while NATS was
/// away. Now a burst of drops gives one warning when it starts and one
/// line with its total when it ends.
#[tokio::test]
async fn export_drops_are_logged_once_per_burst() {
    let mut nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    let args =
        ["--heartbeat-secs", "0.2", "--host-id", "host-a", "--nats-queue", "5", "--nats", &url, "--export", "decky.>"];
    let a = Daemon::start(dir.path(), &args);
    let ca = client(&a, "t").await;
    federation_until(&ca, 10.0, "connected", |f| f["connected"] == true).await;
    nats.kill();
    assert!(wait_until(10.0, || a.log().contains("NATS disconnected")), "{}", a.log());
    // Two and a half seconds of steady drops: 50 polls of the old code.
    for i in 0..50 {
        ca.publish("decky.d1.state", "state", serde_json::json!({"i": i})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 50 events into a queue of 5 (one may have left before the bridge
    // saw NATS go): at least 44 dropped, in one burst.
    federation_until(&ca, 5.0, "44 dropped", |f| f["dropped"].as_u64().unwrap_or(0) >= 44).await;
    let dropped = federation_health(&ca).await["federation"]["dropped"].as_u64().unwrap();
    nats.restart();
    let summary = format!("{dropped} exports were dropped in that burst");
    assert!(wait_until(15.0, || a.log().contains(&summary)), "no {summary:?} line:\n{}", a.log());
    assert_eq!(a.log().matches("NATS export queue full").count(), 1, "{}", a.log());
}

/// Issue 25: a flood faster than the importer used to be lost with no
/// counter and one warning line per message. Now what async-nats drops is
/// counted (`receive_overflow`), the sequence gaps count every message
/// that did not arrive (`lost`), and the log has one line per burst.
#[tokio::test]
async fn receive_overload_is_counted_and_logged_once_per_burst() {
    let nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    // A small import buffer, so the flood overflows it on any machine.
    let url = nats.url();
    let args = [
        "--heartbeat-secs",
        "0.2",
        "--host-id",
        "host-b",
        "--nats",
        &url,
        "--import",
        "decky.>",
        "--nats-import-buffer",
        "256",
    ];
    let b = Daemon::start(dir.path(), &args);
    let cb = client(&b, "t").await;
    let mut sub = cb.subscribe("decky.>").await.unwrap();
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let body = |i: u64| {
        serde_json::json!({"v": 1, "id": format!("{i:032x}"), "topic": "decky.flood.state", "type": "state",
                           "ts": 1.5, "payload": {"i": i}})
        .to_string()
    };
    let send = |seq: u64| {
        let nc = nc.clone();
        async move {
            let h = nats_headers(&[
                ("Decnet-Origin", "host-z"),
                ("Decnet-Instance", "zz"),
                ("Decnet-Seq", &seq.to_string()),
            ]);
            nc.publish_with_headers("decnet.decky.flood.state", h, body(seq).into()).await.unwrap();
        }
    };
    // The import path is up once the first message arrives.
    let mut seq = 1;
    // Numbers before the first one delivered were never seen: not lost.
    let first = loop {
        send(seq).await;
        if let Some(ev) = next(&mut sub, 0.2).await {
            break ev["payload"]["i"].as_u64().unwrap();
        }
        seq += 1;
        assert!(seq < 100, "the import path never came up");
    };
    // 30,000 messages as fast as NATS takes them: far more than the 256
    // slots hold while the daemon delivers them.
    const FLOOD: u64 = 30_000;
    for _ in 0..FLOOD {
        seq += 1;
        send(seq).await;
    }
    nc.flush().await.unwrap();
    // A last message, after the flood, shows any loss at its tail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seq += 1;
    send(seq).await;
    nc.flush().await.unwrap();
    let last = seq;
    federation_until(&cb, 30.0, "every number received or counted lost", |f| {
        let z = &f["origins"]["host-z"];
        z["received"].as_u64().unwrap_or(0) + z["lost"].as_u64().unwrap_or(0) == last - first + 1
    })
    .await;
    let f = federation_health(&cb).await["federation"].clone();
    assert!(f["receive_overflow"].as_u64().unwrap() > 0, "the flood overflowed nothing: {f}");
    assert!(f["lost"].as_u64().unwrap() >= f["receive_overflow"].as_u64().unwrap(), "{f}");
    assert!(wait_until(5.0, || b.log().contains("NATS import caught up")), "{}", b.log());
    let log = b.log();
    assert!(log.matches("NATS import cannot keep up").count() <= 2, "not one line per burst:\n{log}");
    assert!(!log.contains("slow consumers for subscription"), "one line per dropped message:\n{log}");
}

/// The other way a duplicate shows: an event bearing our host id from
/// another instance (its announcement missed, e.g. NATS permissions on
/// the announcement subject). Our own instance's events coming back stay
/// `own_origin`.
#[tokio::test]
async fn an_event_under_our_host_id_from_another_instance_is_refused() {
    let nats = Nats::start(free_port());
    let dir = tempfile::tempdir().unwrap();
    let a = host_bus(dir.path(), "host-a", &nats.url(), &[], &["decky.>"]);
    let ca = client(&a, "t").await;
    federation_until(&ca, 10.0, "connected", |f| f["connected"] == true).await;
    let nc = async_nats::connect(nats.url()).await.unwrap();
    let body = serde_json::json!({"v": 1, "id": format!("{:032x}", 1), "topic": "decky.d1.state", "type": "state",
                                  "ts": 1.5, "payload": {}})
    .to_string();
    // No instance: an old bus or a tool, counted as our own coming back.
    nc.publish_with_headers("decnet.decky.d1.state", nats_headers(&[("Decnet-Origin", "host-a")]), body.clone().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    federation_until(&ca, 5.0, "own_origin counted", |f| f["own_origin"] == 1 && f["error"].is_null()).await;
    let other = nats_headers(&[("Decnet-Origin", "host-a"), ("Decnet-Instance", "feedfacefeedfacefeedfacefeedface")]);
    nc.publish_with_headers("decnet.decky.d1.state", other, body.into()).await.unwrap();
    nc.flush().await.unwrap();
    federation_until(&ca, 5.0, "refused", |f| {
        f["error"].as_str().is_some_and(|e| e.contains("duplicate host id \"host-a\"") && e.contains("feedface"))
    })
    .await;
    assert_eq!(a.log().matches("NATS federation refused").count(), 1, "{}", a.log());
}

/// `decnet sub` on host B prints a federated event with every envelope key,
/// `origin` included (issue 27: decoding into the envelope type dropped it).
#[tokio::test]
async fn decnet_sub_keeps_the_origin_of_federated_events() {
    let nats = Nats::start(free_port());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host_bus(da.path(), "host-a", &nats.url(), &["decky.>"], &[]);
    let b = host_bus(db.path(), "host-b", &nats.url(), &[], &["decky.>"]);
    let ca = client(&a, "ca").await;
    let cb = client(&b, "cb").await;
    let mut on_b = cb.subscribe("decky.>").await.unwrap();
    assert!(until_flowing(&ca, &mut on_b, "decky.warmup.state", 10.0).await, "A→B never flowed");

    let sub = Command::new(BIN)
        .args(["sub", "decky.d1.state", "--count", "1", "--timeout", "20"])
        .env("DECNET_BUS_SOCKET", &b.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sub.id();
    let waiter = tokio::task::spawn_blocking(move || sub.wait_with_output().unwrap());
    // The CLI subscribes asynchronously: publish until it has printed one.
    for i in 0..200 {
        if waiter.is_finished() {
            break;
        }
        ca.publish("decky.d1.state", "state", serde_json::json!({"i": i})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = waiter.await.unwrap();
    assert!(out.status.success(), "decnet sub (pid {pid}): {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    let ev: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(ev["origin"], "host-a", "{line}");
    assert_eq!(
        (ev["topic"].as_str(), ev["type"].as_str(), ev["v"].as_i64()),
        (Some("decky.d1.state"), Some("state"), Some(1))
    );
    assert!(ev["id"].is_string() && ev["ts"].is_f64() && ev["payload"]["i"].is_i64(), "{line}");
}
