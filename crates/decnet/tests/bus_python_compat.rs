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

/// One whole frame from a blocking socket: (verb line, body).
fn read_frame(sock: &mut std::os::unix::net::UnixStream) -> std::io::Result<(String, Vec<u8>)> {
    use std::io::Read;
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while header.last() != Some(&b'\n') {
        sock.read_exact(&mut byte)?;
        header.push(byte[0]);
    }
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    sock.read_exact(&mut body)?;
    Ok((String::from_utf8_lossy(&header).trim_end().to_owned(), body))
}

fn raw_frame(verb_line: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{verb_line}\n").into_bytes();
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Issue 25: bodies a Python worker's orjson cannot read, or whose
/// envelope would be over the 1 MiB frame limit its client enforces, never
/// reach it. Each is refused to its publisher (a BYE saying why, then the
/// close), and a subscriber reading every event as DECNET's client does
/// stays connected and receives the good events sent after each one.
#[test]
fn orjson_subscriber_survives_every_unreadable_publish() {
    use std::io::{BufRead, Write};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let ready = dir.path().join("ready");
    let mut child = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/orjson_subscriber.py"))
        .arg(&daemon.socket)
        .arg("t.>")
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert!(wait_until(10.0, || ready.exists()), "python subscriber never started");

    let mut good = UnixStream::connect(&daemon.socket).unwrap();
    good.write_all(&raw_frame("HELLO good-publisher", b"")).unwrap();
    // The SUB may not be applied yet when the ready file appears.
    let mut warm = false;
    for _ in 0..200 {
        good.write_all(&raw_frame("PUB t.warm", br#"{"type":"warm"}"#)).unwrap();
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            assert!(line.starts_with("warm"), "{line}");
            warm = true;
            break;
        }
    }
    assert!(warm, "the subscriber never received an event");
    while lines.recv_timeout(Duration::from_millis(200)).is_ok() {}

    let max = decnet_bus::frame::MAX_BODY_LEN;
    let mut at_limit = br#"{"type":"big","payload":{"pad":""#.to_vec();
    at_limit.resize(max - 3, b'x');
    at_limit.extend_from_slice(br#""}}"#);
    let deep = format!(r#"{{"type":"deep","payload":{{"a":{}{}}}}}"#, "[".repeat(1023), "]".repeat(1023));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("envelope over 1 MiB", at_limit, "over the 1048576-byte frame limit"),
        ("1e400", br#"{"type":"num","payload":{"n":1e400}}"#.to_vec(), "outside the range of a 64-bit float"),
        (
            "an integer of 401 digits",
            format!(r#"{{"type":"int","payload":{{"n":1{}}}}}"#, "0".repeat(400)).into_bytes(),
            "outside the range of a 64-bit float",
        ),
        ("a lone surrogate", br#"{"type":"sur","payload":{"s":"a\ud800b"}}"#.to_vec(), "lone UTF-16 surrogate"),
        ("1025 levels", deep.into_bytes(), "nested deeper than 1024 levels"),
    ];
    for (i, (what, body, reason)) in cases.iter().enumerate() {
        let mut publisher = UnixStream::connect(&daemon.socket).unwrap();
        publisher.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        publisher.write_all(&raw_frame("HELLO careless-worker", b"")).unwrap();
        publisher.write_all(&raw_frame("PUB t.bad", body)).unwrap();
        let (verb, bye) = read_frame(&mut publisher).unwrap_or_else(|e| panic!("{what}: no BYE: {e}"));
        assert_eq!(verb, "BYE", "{what}");
        let bye: serde_json::Value = serde_json::from_slice(&bye).unwrap();
        let error = bye["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {error}");
        assert!(read_frame(&mut publisher).is_err(), "{what}: the publisher is closed after its BYE");

        good.write_all(&raw_frame("PUB t.ok", format!(r#"{{"type":"ok","payload":{{"after":{i}}}}}"#).as_bytes()))
            .unwrap();
        let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
            panic!("{what}: the subscriber stopped: {stderr}")
        };
        assert_eq!(line, format!(r#"ok {{"after":{i}}}"#), "{what}");
    }
    good.write_all(&raw_frame("PUB t.end", br#"{"type":"done"}"#)).unwrap();
    assert_eq!(lines.recv_timeout(Duration::from_secs(10)).unwrap(), "done {}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = daemon.log();
    assert!(log.contains("publish refused") && log.contains("careless-worker"), "{log}");
    assert_eq!(log.matches("publish refused").count(), cases.len(), "one line per refusal: {log}");
}
