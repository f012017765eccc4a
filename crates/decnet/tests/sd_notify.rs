//! Under a `Type=notify` unit with `WatchdogSec=`, each daemon sends
//! READY=1 once it serves and then WATCHDOG=1 at half of $WATCHDOG_USEC.
//! systemd is stood in for by a datagram socket at $NOTIFY_SOCKET, which
//! is all the protocol is. Three code paths: the bus's own, the worker
//! SDK's (`decnet ingest`), and the mutator's.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the environment says about the watchdog.
#[derive(Clone, Copy)]
enum Watchdog {
    Off,
    /// As systemd sets it: $WATCHDOG_USEC and $WATCHDOG_PID = the daemon.
    Systemd {
        ms: u64,
    },
    /// $WATCHDOG_USEC alone (sd_watchdog_enabled(3): then it is ours).
    NoPid {
        ms: u64,
    },
    /// Inherited from a parent: $WATCHDOG_PID names another process.
    OtherPid {
        ms: u64,
    },
}

/// Start `decnet ARGS` with a notify socket and `watchdog`; every datagram
/// received within `window` after READY.
fn notifications(home: &Path, args: &[&str], watchdog: Watchdog, window: Duration) -> Vec<String> {
    let notify_path = home.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // `exec` keeps the shell's pid, so $$ is the daemon's pid, as systemd's.
    let mut cmd = Command::new("sh");
    cmd.arg("-c");
    match watchdog {
        Watchdog::Systemd { .. } => cmd.arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#),
        _ => cmd.arg(r#"exec "$0" "$@""#),
    };
    cmd.arg(support::BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env("DECNET_BUS_SOCKET", home.join("bus.sock"))
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("WATCHDOG_PID")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match watchdog {
        Watchdog::Off => {}
        Watchdog::Systemd { ms } | Watchdog::NoPid { ms } => {
            cmd.env("WATCHDOG_USEC", (ms * 1000).to_string());
        }
        Watchdog::OtherPid { ms } => {
            cmd.env("WATCHDOG_USEC", (ms * 1000).to_string()).env("WATCHDOG_PID", "1");
        }
    }
    let _child = Killed(cmd.spawn().unwrap());
    let mut got = Vec::new();
    // Generous for a cold start on a loaded machine; the window for
    // keep-alives starts at READY.
    let mut deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        notify.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        let Ok(n) = notify.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == "READY=1") && !got.iter().any(|m: &String| m.contains("READY=1")) {
            deadline = Instant::now() + window;
        }
        got.push(msg);
    }
    got
}

fn count(got: &[String], line: &str) -> usize {
    got.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

/// READY first, then keep-alives at about half the 200 ms watchdog: 1.2 s
/// holds ~12; at least 4 proves a period, at most 20 that it is not busy.
fn assert_ready_then_keepalives(what: &str, got: &[String]) {
    assert!(got.first().is_some_and(|m| m.contains("READY=1")), "{what}: {got:?}");
    assert!(got[0].contains("STATUS="), "{what}: READY without a status: {got:?}");
    let keepalives = count(got, "WATCHDOG=1");
    assert!((4..=20).contains(&keepalives), "{what}: {keepalives} keep-alives in 1.2 s: {got:?}");
}

#[test]
fn the_bus_sends_ready_and_keepalives_at_half_the_watchdog() {
    let home = tempfile::tempdir().unwrap();
    let socket = home.path().join("bus.sock");
    let got = notifications(
        home.path(),
        &["bus", "--socket", socket.to_str().unwrap(), "--heartbeat-secs", "0"],
        Watchdog::Systemd { ms: 200 },
        Duration::from_millis(1200),
    );
    assert_ready_then_keepalives("bus", &got);
}

#[test]
fn a_worker_sends_ready_and_keepalives_and_none_without_a_watchdog() {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("decnet.db");
    let log = home.path().join("ingest.log");
    let args = ["ingest", "--db", db.to_str().unwrap(), "--ingest-log", log.to_str().unwrap()];
    let got = notifications(home.path(), &args, Watchdog::NoPid { ms: 200 }, Duration::from_millis(1200));
    assert_ready_then_keepalives("ingest", &got);

    // No $WATCHDOG_USEC (a unit without WatchdogSec=): READY only.
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("decnet.db");
    let args = ["ingest", "--db", db.to_str().unwrap(), "--ingest-log", log.to_str().unwrap()];
    let got = notifications(home.path(), &args, Watchdog::Off, Duration::from_millis(500));
    assert_eq!(count(&got, "READY=1"), 1, "{got:?}");
    assert_eq!(count(&got, "WATCHDOG=1"), 0, "keep-alives nobody asked for: {got:?}");

    // A watchdog meant for another process (inherited variables): none.
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("decnet.db");
    let args = ["ingest", "--db", db.to_str().unwrap(), "--ingest-log", log.to_str().unwrap()];
    let got = notifications(home.path(), &args, Watchdog::OtherPid { ms: 200 }, Duration::from_millis(500));
    assert_eq!(count(&got, "READY=1"), 1, "{got:?}");
    assert_eq!(count(&got, "WATCHDOG=1"), 0, "keep-alives for another pid's watchdog: {got:?}");
}

#[test]
fn the_mutator_sends_ready_and_keepalives() {
    let home = tempfile::tempdir().unwrap();
    let got = notifications(home.path(), &["mutator"], Watchdog::Systemd { ms: 200 }, Duration::from_millis(1200));
    assert_ready_then_keepalives("mutator", &got);
}
