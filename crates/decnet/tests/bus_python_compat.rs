//! Byte compatibility with Python workers: a client written from SPEC §2 in
//! Python (tests/python/bus_client.py) publishes to and subscribes from the
//! Rust daemon, talking to a Rust client on the other side.

mod support;

use decnet_bus::client::UnixBus;
use decnet_bus::Bus;
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use support::{wait_until, Daemon};

fn python_client() -> Command {
    let mut c = Command::new("python3");
    c.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/bus_client.py"));
    c
}

#[tokio::test]
async fn python_publishes_rust_receives() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let rust = UnixBus::connect("rust-sub", &daemon.socket).await.unwrap();
    let mut sub = rust.subscribe("decky.*.state").await.unwrap();
    let status = python_client()
        .arg(&daemon.socket)
        .args(["pub", "decky.d1.state", r#"{"services": ["ssh", "http"], "note": "caf\u00e9"}"#, "state"])
        .status()
        .unwrap();
    assert!(status.success());
    let env = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.unwrap().unwrap();
    assert_eq!(env.topic, "decky.d1.state");
    assert_eq!(env.event_type, "state");
    assert_eq!(env.payload, json!({"services": ["ssh", "http"], "note": "café"}));
    assert!(!daemon.log().contains("malformed"), "{}", daemon.log());
}

#[tokio::test]
async fn rust_publishes_python_receives() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let ready = dir.path().join("ready");
    let child = python_client()
        .arg(&daemon.socket)
        .args(["sub", "topology.>", "2"])
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(10.0, || ready.exists()), "python subscriber never started");
    let rust = UnixBus::connect("rust-pub", &daemon.socket).await.unwrap();
    // The ready file is written after the SUB is sent, not applied: repeat
    // until the subscriber has what it waits for (it exits after two).
    let waiter = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    let mut n = 0;
    while !waiter.is_finished() && n < 500 {
        rust.publish("topology.t1.status", "status", json!({"status": "active", "n": n})).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = waiter.await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for env in &lines {
        assert_eq!(env["v"], 1);
        assert_eq!(env["topic"], "topology.t1.status");
        assert_eq!(env["type"], "status");
        assert_eq!(env["payload"]["status"], "active");
        assert_eq!(env["id"].as_str().unwrap().len(), 32);
        assert!(env["ts"].as_f64().unwrap() > 1.7e9);
    }
}
