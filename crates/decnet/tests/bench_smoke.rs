//! `decnet bench` against a real daemon: a correctness check of the tool
//! (it connects, publishes, counts deliveries, reports), never of speed.

mod support;

use support::{Daemon, BIN};

fn field<'a>(summary: &'a str, key: &str) -> Option<&'a str> {
    summary.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn throughput_run_reports_every_event_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // A queue larger than the run, so the daemon can never drop here however
    // loaded the test machine is: this checks counting, not speed.
    let daemon = Daemon::start(dir.path(), &["--queue", "4096", "--heartbeat-secs", "0.2"]);
    let out = std::process::Command::new(BIN)
        .args(["bench", "--msgs", "2000", "--subs", "2", "--socket"])
        .arg(&daemon.socket)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run decnet bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().find(|l| l.starts_with("summary ")).expect("a summary line");
    assert_eq!(field(summary, "target"), Some("bus"));
    assert_eq!(field(summary, "published"), Some("2000"));
    assert_eq!(field(summary, "expected"), Some("4000"));
    assert_eq!(field(summary, "delivered"), Some("4000"), "{stdout}");
    assert_eq!(field(summary, "delivered_pct"), Some("100.00"), "{stdout}");
    assert_eq!(field(summary, "daemon_dropped"), Some("0"), "{stdout}");
    assert!(stdout.contains("(100.00 %)"), "{stdout}");
}

#[test]
fn unreachable_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["bench", "--msgs", "10", "--socket"])
        .arg(dir.path().join("nobody.sock"))
        .output()
        .expect("run decnet bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to the bus"), "{stderr}");
}
