//! `decnet prober` end to end with real processes: the bus daemon, the
//! prober binary, a SQLite file with one known attacker, a rustls server
//! and an OpenSSH sshd on loopback. Checks: attackers from the database
//! and from `attacker.observed` are probed, the deny list holds, results
//! land on the bus, in `fingerprints` and in the ingest log, a changed
//! certificate publishes `attacker.fingerprint_rotated`, heartbeats carry
//! counters, and a bus stop request ends the worker.

mod fp_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use decnet::events::rfc5424;
use decnet_bus::client::UnixBus;
use decnet_bus::{Bus, Envelope};
use fp_support::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Next event on `sub` matching `pred`, within `limit`.
async fn expect_event(
    sub: &mut decnet_bus::Subscription,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&Envelope) -> bool,
) -> Envelope {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("subscription ended waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_probes_known_and_observed_attackers_and_reports_rotation() {
    let (_dir, home) = tempdir();
    let db = home.join("decnet.db");
    let log = home.join("ingest.log");
    let sock = home.join("bus.sock");
    let pool = decnet::store::open(&db).await.unwrap();
    sqlx::query("INSERT INTO attackers (ip, first_seen, last_seen, updated_at) VALUES ('127.0.0.1', 1, 1, 1)")
        .execute(&pool)
        .await
        .unwrap();

    let first = certificate("first.test", &["first.test"]);
    let second = certificate("second.test", &["second.test"]);
    let tls = TlsServer::start(&["127.0.0.1", "127.0.0.2", "127.0.0.3"], &first).await;
    let ssh_dir = home.join("ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let (_sshd, ssh_port) = start_sshd(&ssh_dir);

    let env = |c: &mut Command| {
        c.env("DECNET_HOME", &home).env("DECNET_BUS_SOCKET", &sock).env("RUST_LOG", "info");
    };
    let mut bus_cmd = Command::new(BIN);
    env(&mut bus_cmd);
    let _bus = Daemon(bus_cmd.arg("bus").stdout(Stdio::null()).spawn().unwrap());
    wait_for("the bus socket", Duration::from_secs(10), || sock.exists());

    let watcher = UnixBus::new("watcher", &sock);
    let mut events = watcher.subscribe("attacker.>").await.unwrap();
    let mut health = watcher.subscribe("system.prober.health").await.unwrap();

    let port = tls.port().to_string();
    let mut prober_cmd = Command::new(BIN);
    env(&mut prober_cmd);
    prober_cmd
        .env("DECNET_HEARTBEAT_SECS", "0.5")
        .args(["prober", "--db"])
        .arg(&db)
        .arg("--ingest-log")
        .arg(&log)
        .args(["--probes", "jarm,tls,hassh", "--period-secs", "2", "--per-target-gap-ms", "10"])
        .args(["--jarm-ports", &port, "--tls-ports", &port, "--hassh-ports", &ssh_port.to_string()])
        .args(["--allow", "127.0.0.0/8", "--deny", "127.0.0.3"])
        .stderr(std::fs::File::create(home.join("prober.log")).unwrap());
    let mut prober = Daemon(prober_cmd.spawn().unwrap());

    // The attacker from the database: all three probes.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        let ev = expect_event(&mut events, Duration::from_secs(20), "fingerprints of 127.0.0.1", |e| {
            e.topic == "attacker.fingerprinted" && e.payload["attacker_ip"] == "127.0.0.1"
        })
        .await;
        assert_eq!(ev.payload["probe"], ev.event_type.as_str());
        if ev.event_type == "tls_certificate" {
            assert_eq!(ev.payload["hash"], hex(&Sha256::digest(&first.0)));
            assert_eq!(ev.payload["port"], tls.port());
        }
        seen.insert(ev.event_type.clone());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["hassh", "jarm", "tls_certificate"]);

    // Attackers observed on the bus: one allowed, one denied.
    for ip in ["127.0.0.3", "127.0.0.2"] {
        watcher.publish("attacker.observed", "observed", json!({"attacker_ip": ip})).await.unwrap();
    }
    expect_event(&mut events, Duration::from_secs(20), "a fingerprint of the observed 127.0.0.2", |e| {
        e.topic == "attacker.fingerprinted" && e.payload["attacker_ip"] == "127.0.0.2"
    })
    .await;

    // The attacker's server changes its certificate: the next period says so.
    tls.swap_certificate(&second);
    let rotated = expect_event(&mut events, Duration::from_secs(20), "a tls_certificate rotation", |e| {
        e.topic == "attacker.fingerprint_rotated"
            && e.payload["attacker_ip"] == "127.0.0.1"
            && e.payload["probe"] == "tls_certificate"
    })
    .await;
    assert_eq!(rotated.payload["old"], hex(&Sha256::digest(&first.0)));
    assert_eq!(rotated.payload["new"], hex(&Sha256::digest(&second.0)));
    assert_eq!(rotated.payload["port"], tls.port());

    // Heartbeats queued since the start show zeros; a current one shows the work.
    let beat = expect_event(&mut health, Duration::from_secs(5), "a heartbeat counting the work", |e| {
        e.payload["fingerprints"].as_u64().unwrap_or(0) >= 4
    })
    .await;
    assert!(beat.payload["refused_by_policy"].as_u64().unwrap() >= 1, "{}", beat.payload);
    assert_eq!(beat.payload["targets"], 2, "{}", beat.payload);

    // The store: one row per (ip, probe, port), the denied address absent.
    let rows: Vec<(String, String, i64, String, String)> =
        sqlx::query_as("SELECT attacker_ip, kind, port, hash, source FROM fingerprints ORDER BY attacker_ip, kind")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(rows.iter().all(|r| r.4 == "prober"), "{rows:?}");
    assert!(!rows.iter().any(|r| r.0 == "127.0.0.3"), "denied address was probed: {rows:?}");
    let kinds_1: Vec<&str> = rows.iter().filter(|r| r.0 == "127.0.0.1").map(|r| r.1.as_str()).collect();
    assert_eq!(kinds_1, ["hassh", "jarm", "tls_certificate"]);
    let cert_row = rows.iter().find(|r| r.0 == "127.0.0.1" && r.1 == "tls_certificate").unwrap();
    assert_eq!(cert_row.3, hex(&Sha256::digest(&second.0)), "the row holds the latest hash");

    // The ingest log: RFC 5424 lines from the prober, parseable, one per result.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<_> = text.lines().map(|l| rfc5424::parse_line(l).unwrap()).collect();
    assert!(lines.len() >= 4, "{text}");
    for l in &lines {
        assert_eq!(l.app_name.as_deref(), Some("prober"));
        let sd = l.element(rfc5424::SD_ID).unwrap();
        assert_eq!(l.msgid.as_deref(), sd.param("probe"));
        assert!(sd.param("hash").is_some() && sd.param("attacker_ip").is_some());
    }
    assert!(!text.contains("127.0.0.3"));

    // Stop over the bus, like the API's stop button.
    watcher
        .publish("system.prober.control", "control", json!({"action": "stop", "requested_by": "test"}))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = prober.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "prober did not stop on the control request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "prober exit {status:?}: {}", std::fs::read_to_string(home.join("prober.log")).unwrap());
    watcher.close().await;
}

#[test]
fn prober_refuses_a_bad_policy() {
    let (_dir, home) = tempdir();
    let out = Command::new(BIN)
        .env("DECNET_HOME", &home)
        .env("DECNET_BUS_ENABLED", "false")
        .args(["prober", "--allow", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10.0.0.0/33") && err.contains("not a CIDR"), "{err}");
}
