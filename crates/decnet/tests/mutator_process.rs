//! End to end with real processes: `decnet bus`, `decnet mutator
//! --driver dry-run`, `decnet deploy`, `decnet mutate --all`, then the
//! ingest log holds the RFC 5424 lines and `decnet correlate` passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use decnet::events::{rfc5424, Trigger};

const BIN: &str = env!("CARGO_BIN_EXE_decnet");

/// A child stopped with SIGTERM (then killed) when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn decnet(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("DECNET_HOME", home)
        .env("DECNET_BUS_SOCKET", home.join("bus.sock"))
        .env("DECNET_DB", home.join("decnet.db"))
        .env("DECNET_INGEST_LOG_FILE", home.join("ingest.log"))
        .env("DECNET_MUTATOR_DRIVER", "dry-run")
        .env("USER", "tester")
        .env("RUST_LOG", "warn");
    cmd
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_events(path: &PathBuf) -> Vec<rfc5424::MutationEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| rfc5424::parse_mutation(l).unwrap())
        .collect()
}

#[test]
fn bus_mutator_mutate_and_correlate() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let log = home.join("ingest.log");
    std::fs::write(
        home.join("fleet.toml"),
        "interval = 60\n[[decky]]\nname = \"web-01\"\narchetype = \"linux-server\"\n[[decky]]\nname = \"db-01\"\narchetype = \"database-host\"\n",
    )
    .unwrap();

    let _bus = Daemon(decnet(home).arg("bus").stdout(Stdio::null()).spawn().unwrap());
    wait_for("the bus socket", || home.join("bus.sock").exists());

    let status = decnet(home).args(["deploy", "--config"]).arg(home.join("fleet.toml")).status().unwrap();
    assert!(status.success());
    assert_eq!(log_events(&log).len(), 2, "one creation per decky");

    let _mutator = Daemon(decnet(home).args(["mutator", "--poll-secs", "60"]).spawn().unwrap());
    // `mutate` refuses while no mutator holds the home's lock.
    wait_for("the mutator's lock", || decnet::lock::holder(home, "mutator").unwrap().is_some());

    // The request is fire-and-forget: until the mutator has subscribed it
    // is lost, so ask again (at most every second) until both deckies
    // show an operator mutation.
    let mut last_ask = Instant::now() - Duration::from_secs(2);
    wait_for("operator mutations of both deckies", || {
        if last_ask.elapsed() >= Duration::from_secs(1) {
            assert!(decnet(home).args(["mutate", "--all"]).stdout(Stdio::null()).status().unwrap().success());
            last_ask = Instant::now();
        }
        let events = log_events(&log);
        ["web-01", "db-01"].iter().all(|d| {
            events
                .iter()
                .any(|e| e.decky == *d && e.trigger == Trigger::Operator && e.actor.as_deref() == Some("tester"))
        })
    });

    let out = decnet(home).args(["correlate", "--log"]).arg(&log).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "correlate failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("web-01") && stdout.contains("db-01") && stdout.contains("0 break(s)"), "{stdout}");

    // A tampered log is a break, and correlate says so with its exit code.
    let mut text = std::fs::read_to_string(&log).unwrap();
    let forged = rfc5424::format_mutation(&rfc5424::MutationEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        decky: "web-01".into(),
        old_services: vec!["gopher".into()],
        new_services: vec!["ssh".into()],
        trigger: Trigger::Scheduled,
        actor: None,
    });
    text.push_str(&forged);
    text.push('\n');
    let tampered = home.join("tampered.log");
    std::fs::write(&tampered, text).unwrap();
    let out = decnet(home).args(["correlate", "--log"]).arg(&tampered).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("break: web-01"));
}

/// Make `decky` due now, as if last mutated two minutes ago.
async fn make_due(home: &Path, decky: &str) {
    let pool = decnet::store::open(&home.join("decnet.db")).await.unwrap();
    let mut d = decnet::store::fleet::get(&pool, decky).await.unwrap().unwrap();
    d.last_mutated = Some(decnet::mutator::now_secs() - 120.0);
    decnet::store::fleet::upsert(&pool, &d).await.unwrap();
    pool.close().await;
}

fn scheduled_count(log: &PathBuf, decky: &str) -> usize {
    log_events(log).iter().filter(|e| e.decky == decky && e.trigger == Trigger::Scheduled).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_mutations_keep_going_while_the_bus_is_dead_and_events_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let log = home.join("ingest.log");
    std::fs::write(
        home.join("fleet.toml"),
        "interval = 1\n[[decky]]\nname = \"web-01\"\nservices = [\"ssh\", \"http\"]\n",
    )
    .unwrap();
    let mut bus = Daemon(decnet(home).arg("bus").stdout(Stdio::null()).spawn().unwrap());
    wait_for("the bus socket", || home.join("bus.sock").exists());
    assert!(decnet(home).args(["deploy", "--config"]).arg(home.join("fleet.toml")).status().unwrap().success());
    let mut mutator = Daemon(decnet(home).args(["mutator", "--poll-secs", "1"]).spawn().unwrap());

    // A due decky is mutated by the schedule within a poll.
    make_due(home, "web-01").await;
    wait_for("a scheduled mutation", || scheduled_count(&log, "web-01") == 1);

    // Kill the bus: the mutator keeps mutating and logging.
    bus.0.kill().unwrap();
    bus.0.wait().unwrap();
    make_due(home, "web-01").await;
    wait_for("a scheduled mutation with the bus dead", || scheduled_count(&log, "web-01") == 2);
    assert!(mutator.0.try_wait().unwrap().is_none(), "the mutator is still running");

    // Bus back: the mutator's events reach subscribers again.
    let _bus = Daemon(decnet(home).arg("bus").stdout(Stdio::null()).spawn().unwrap());
    // The killed daemon left its socket file behind: wait for a listener.
    wait_for("the new bus listening", || std::os::unix::net::UnixStream::connect(home.join("bus.sock")).is_ok());
    let mut watcher = decnet(home)
        .args(["sub", "decky.web-01.mutation", "--count", "1", "--timeout", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Due again every second until the watcher (subscribing on its own
    // schedule; SUB has no acknowledgement) has one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while watcher.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no mutation event after the bus came back");
        make_due(home, "web-01").await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let out = watcher.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let env: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(env["payload"]["trigger"], "scheduled");
    let out = decnet(home).args(["correlate", "--log"]).arg(&log).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
