//! `decnet up` end to end: the whole stack as a user runs it, a real
//! Chromium signing in to the dashboard, operator mutations flowing through
//! the bus into the ingest log, a killed bus coming back, and Ctrl-C.

mod support;

use fantoccini::Locator;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{send_signal, wait_exit, wait_until, Up, BIN};

/// `decnet sub` with a 40 s timeout, so a failure is reported instead of
/// hanging the test.
fn sub(home: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["sub", "--timeout", "40"];
    full.extend_from_slice(args);
    cli(home, &full)
}

/// The `decnet` CLI as an operator runs it next to `decnet up`: only
/// `DECNET_HOME` set, everything else (socket, database) derived from it.
fn cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("DECNET_HOME", home)
        .env_remove("DECNET_BUS_SOCKET")
        .env_remove("DECNET_DB")
        .env("USER", "alice")
        .stdin(Stdio::null())
        .output()
        .expect("spawn decnet")
}

/// The latest `system.bus.health` payload's pid.
fn bus_pid(home: &Path) -> Option<i64> {
    let out = sub(home, &["system.bus.health", "--count", "1"]);
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.to_string();
    serde_json::from_str::<serde_json::Value>(&line).ok()?["payload"]["pid"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_stack_and_the_dashboard_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    let password = up.admin_password();
    assert!(up.output().contains(&up.url), "dashboard URL printed");

    // --- a real browser signs in and sees the workers ---
    let (driver, browser) = support::browser(dir.path()).await;
    browser.goto(&up.url).await.unwrap();
    browser.find(Locator::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys("wrong-password").await.unwrap();
    browser.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    let error = browser.wait().for_element(Locator::Css("#login-error:not(:empty)")).await.unwrap();
    assert!(!error.text().await.unwrap().is_empty(), "a wrong password shows an error");

    let field = browser.find(Locator::Id("password")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(&password).await.unwrap();
    browser.find(Locator::Id("login-button")).await.unwrap().click().await.unwrap();
    // Every worker `up` runs, and only those: none stays `unknown`.
    for worker in ["bus", "api", "mutator", "collector", "profiler", "clusterer"] {
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(&format!("#worker-{worker} .status.ok")))
            .await
            .unwrap_or_else(|e| panic!("{worker} never shown ok: {e}"));
    }
    for absent in ["sniffer", "prober", "agent", "updater", "forwarder"] {
        let row = browser.find(Locator::Id(&format!("worker-{absent}"))).await;
        assert!(row.is_err(), "{absent} is not run by `up` and has no row");
    }
    let bus_pill = browser.find(Locator::Id("bus")).await.unwrap().text().await.unwrap();
    assert_eq!(bus_pill, "bus connected");
    let shot = browser.screenshot().await.unwrap();
    let shot_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot_path, shot).unwrap();
    browser.close().await.unwrap();
    drop(driver);

    // --- operator mutations reach the bus, the ingest log and the correlator ---
    let socket = up.socket();
    // A watcher process whose lines we read as they come; it also listens
    // on `warm.up` so we can tell when it is subscribed (no SUB ack).
    let mut watcher = Command::new(BIN)
        .args(["sub", "decky.*.mutation", "warm.up"])
        .env("DECNET_HOME", dir.path())
        .env_remove("DECNET_BUS_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(serde_json::from_str(&line).unwrap());
        }
    });
    let mut subscribed = false;
    for _ in 0..100 {
        assert!(cli(dir.path(), &["pub", "warm.up", "{}"]).status.success());
        if lines.recv_timeout(Duration::from_millis(100)).is_ok_and(|e| e["topic"] == "warm.up") {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the watcher never subscribed");
    // One request for the whole fleet: one operator mutation per decky,
    // all within a second.
    let asked = std::time::Instant::now();
    let out = cli(dir.path(), &["mutate", "--all"]);
    assert!(out.status.success(), "{out:?}\n{}", up.output());
    let mut mutated = std::collections::BTreeSet::new();
    while mutated.len() < 4 {
        let left = Duration::from_secs(1).saturating_sub(asked.elapsed());
        let env = lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!("only {mutated:?} mutated within 1 s of `decnet mutate --all`\n{}", up.output())
        });
        if env["topic"] != "warm.up" && env["payload"]["trigger"] == "operator" {
            assert_eq!(env["payload"]["actor"], "alice", "the local user asked");
            assert!(mutated.insert(env["payload"]["decky"].as_str().unwrap().to_string()), "one per decky: {env}");
        }
    }
    assert_eq!(mutated.into_iter().collect::<Vec<_>>(), ["cam-lobby", "db-02", "web-01", "ws-finance"]);
    let _ = watcher.kill();
    let _ = watcher.wait();
    let log = std::fs::read_to_string(dir.path().join("ingest.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("trigger=\"creation\"")), "demo fleet creation logged");
    assert!(log.lines().any(|l| l.contains("trigger=\"operator\"")), "operator mutation logged");
    let correlate = cli(dir.path(), &["correlate", "--log", dir.path().join("ingest.log").to_str().unwrap()]);
    assert!(correlate.status.success(), "{correlate:?}");

    // --- a killed bus comes back and events resume ---
    let old_pid = bus_pid(dir.path()).unwrap_or_else(|| panic!("no bus heartbeat\n{}", up.output()));
    send_signal(old_pid as i32, "KILL");
    assert!(
        wait_until(20.0, || bus_pid(dir.path()).is_some_and(|p| p != old_pid)),
        "the bus was not restarted:\n{}",
        up.output()
    );
    let home = dir.path().to_path_buf();
    let watcher = tokio::task::spawn_blocking(move || sub(&home, &["decky.web-01.mutation", "--count", "1"]));
    for _ in 0..100 {
        if watcher.is_finished() {
            break;
        }
        cli(dir.path(), &["mutate", "web-01"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = watcher.await.unwrap();
    assert!(out.status.success(), "mutations did not resume after the bus restart: {out:?}\n{}", up.output());

    // --- Ctrl-C stops everything cleanly ---
    send_signal(up.child.id() as i32, "INT");
    let status = wait_exit(&mut up.child, 20.0).expect("decnet up exits on Ctrl-C");
    assert!(status.success(), "{status:?}\n{}", up.output());
    assert!(!socket.exists(), "socket removed");
    assert!(up.output().contains("decnet stopped"));

    // A second start keeps the users and fleet: no new password, no redeploy.
    let again = Up::start(dir.path(), &[]);
    assert!(!again.output().contains("Sign in as admin /"), "password is shown only once");
    assert!(!again.output().contains("decky(ies) in"), "demo fleet deployed only once");
}
