//! Operations through the real binary: one writer per `$DECNET_HOME`
//! (flock), no orphans after `kill -9` of `decnet up`, `up` honouring
//! `DECNET_BUS_SOCKET` / `DECNET_INGEST_LOG_FILE`, `mutate` / `teardown`
//! that only report success when something happens, and errors that say
//! their cause once with the path.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{free_port, wait_exit, wait_until, Up, BIN};

/// The CLI with only `DECNET_HOME` (plus `extra`) set, as an operator's
/// shell next to `decnet up` would be.
fn cmd(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("DECNET_HOME", home)
        .env_remove("DECNET_BUS_SOCKET")
        .env_remove("DECNET_DB")
        .env_remove("DECNET_INGEST_LOG_FILE")
        .env_remove("DECNET_API_LISTEN")
        .env("DECNET_MUTATOR_DRIVER", "dry-run")
        .env("USER", "tester")
        .stdin(Stdio::null());
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    cmd(home).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Live (not zombie) processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        if field("PPid:") == ppid.to_string() && !field("State:").starts_with('Z') {
            found.push(pid);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
        .unwrap_or(false)
}

#[test]
fn a_second_writer_on_one_home_is_refused_and_kill_9_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut c = cmd(home);
    let port = free_port();
    c.args(["up", "--no-demo", "--listen", &format!("127.0.0.1:{port}")]);
    let mut up = Up::spawn(c, home, format!("http://127.0.0.1:{port}/"));
    let holder = format!("pid {}", up.pid());

    // A second `up` (on another port, as the old error message suggested),
    // a stand-alone mutator and a stand-alone API: all refused, naming the holder.
    for args in [
        vec!["up", "--no-demo", "--listen", &format!("127.0.0.1:{}", free_port())],
        vec!["mutator"],
        vec!["api", "--listen", &format!("127.0.0.1:{}", free_port())],
    ] {
        let mut child = cmd(home).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let status = wait_exit(&mut child, 15.0);
        let out = child.wait_with_output().unwrap();
        assert!(status.is_some_and(|s| !s.success()), "{args:?} was not refused:\n{}", text(&out));
        let msg = text(&out);
        assert!(msg.contains("is already running on") && msg.contains(&holder), "{args:?}: {msg}");
    }

    let kids = children_of(up.pid());
    assert_eq!(
        kids.len(),
        6,
        "bus, api, mutator, collector, profiler and clusterer expected under up: {kids:?}\n{}",
        up.output()
    );
    up.child.kill().unwrap(); // SIGKILL: no shutdown path runs in `up`.
    up.child.wait().unwrap();
    assert!(
        wait_until(10.0, || kids.iter().all(|&p| !alive(p))),
        "children outlived a SIGKILLed `decnet up`: {:?}",
        kids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
    );
    // The kernel released the locks with the holder: a new stand-alone
    // mutator may start now.
    let mut mutator = cmd(home).args(["mutator"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    assert!(wait_until(10.0, || decnet::lock::holder(home, "mutator").unwrap() == Some(mutator.id())));
    let _ = mutator.kill();
    let _ = mutator.wait();
}

#[test]
fn up_uses_the_socket_and_ingest_log_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let socket = elsewhere.join("other.sock");
    let ingest = elsewhere.join("other-ingest.log");
    let mut c = cmd(&home);
    let port = free_port();
    c.args(["up", "--listen", &format!("127.0.0.1:{port}")])
        .env("DECNET_BUS_SOCKET", &socket)
        .env("DECNET_INGEST_LOG_FILE", &ingest);
    let up = Up::spawn(c, &home, format!("http://127.0.0.1:{port}/"));
    let out = up.output();
    assert!(out.contains(&format!("bus socket:        {}", socket.display())), "{out}");
    assert!(out.contains(&format!("ingest log:        {}", ingest.display())), "{out}");
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok(), "nothing listens on {}", socket.display());
    assert!(!home.join("bus.sock").exists(), "a bus socket appeared in the home as well");
    // The demo fleet's creation events went to the configured log.
    assert!(
        wait_until(15.0, || std::fs::read_to_string(&ingest).is_ok_and(|s| s.contains("decky_mutated"))),
        "no events in {}",
        ingest.display()
    );
    assert!(!home.join("ingest.log").exists());
    // And `decnet sub` in that same shell talks to that bus.
    let sub = cmd(&home)
        .args(["sub", "system.bus.health", "--count", "1", "--timeout", "20"])
        .env("DECNET_BUS_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(sub.status.success(), "{}", text(&sub));
}

#[test]
fn up_refuses_a_socket_in_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("bus.sock");
    let out = cmd(dir.path())
        .args(["up", "--no-demo", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("DECNET_BUS_SOCKET", &missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("bus socket {}", missing.display())), "{}", text(&out));
}

#[test]
fn mutate_and_teardown_only_report_success_when_something_happens() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let fleet = home.join("fleet.toml");
    std::fs::write(&fleet, "interval = 60\n[[decky]]\nname = \"web-01\"\narchetype = \"linux-server\"\n[[decky]]\nname = \"db-01\"\narchetype = \"database-host\"\n").unwrap();
    let out = run(home, &["deploy", "--config", fleet.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let out = run(home, &["mutate", "nosuchdecky"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no deployed decky named nosuchdecky"), "{}", text(&out));
    assert!(text(&out).contains("db-01, web-01"), "lists what exists: {}", text(&out));

    for args in [&["mutate", "--all"][..], &["mutate", "web-01"]] {
        let out = run(home, args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("no mutator is running"), "{args:?}: {}", text(&out));
    }
    // --now needs no mutator.
    let out = run(home, &["mutate", "web-01", "--now"]);
    assert!(out.status.success(), "{}", text(&out));

    let deployed = || {
        let out = run(home, &["mutate", "--all", "--now"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let out = run(home, &["teardown"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--all --yes"), "{}", text(&out));
    let out = run(home, &["teardown", "--all"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("2 deployed decky(ies) (db-01, web-01); add --yes"), "{}", text(&out));
    assert_eq!(deployed(), 2, "a refused teardown must retire nothing");

    let out = run(home, &["teardown", "--all", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tore down 2 decky(ies)"), "{}", text(&out));
    let out = run(home, &["teardown", "--all", "--yes"]);
    assert!(text(&out).contains("nothing to tear down"), "{}", text(&out));
}

#[test]
fn errors_name_the_path_and_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("x").join("fleet.toml");
    let out = run(dir.path(), &["deploy", "--config", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");

    let sock = dir.path().join("no-bus.sock");
    let out = run(dir.path(), &["pub", "--socket", sock.to_str().unwrap(), "a.b", "{}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
