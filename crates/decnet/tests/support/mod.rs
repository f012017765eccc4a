//! Test support: run the real `decnet` binary (daemon or CLI) against a
//! socket in a temp folder, and capture what it logs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_decnet");

/// Poll `cond` every 10 ms for up to `secs` seconds.
pub fn wait_until(secs: f64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A `decnet bus` child process. SIGKILLed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: Arc<Mutex<String>>,
    pub home: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_at(dir, &dir.join("bus.sock"), extra)
    }

    pub fn start_at(dir: &Path, socket: &Path, extra: &[&str]) -> Daemon {
        Self::start_wrapped(&[], dir, socket, extra)
    }

    /// Start the daemon under a wrapper command, e.g. `prlimit --nofile=32 --`.
    pub fn start_wrapped(wrapper: &[&str], dir: &Path, socket: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .arg("bus")
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("DECNET_HOME", dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn decnet bus");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let d = Daemon { child, socket: socket.to_path_buf(), log, home: dir.to_path_buf() };
        assert!(wait_until(10.0, || d.log().contains("bus listening")), "daemon did not start; log:\n{}", d.log());
        d
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        send_signal(self.pid(), "TERM");
        wait_exit(&mut self.child, 10.0).expect("daemon did not exit after SIGTERM")
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_hard();
        }
    }
}

pub fn wait_exit(child: &mut Child, secs: f64) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(secs, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Send a signal by name (`TERM`, `INT`, `KILL`) with the `kill` command,
/// which keeps tests free of unsafe code.
pub fn send_signal(pid: i32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Run `decnet <args>` to completion with `DECNET_BUS_SOCKET` set.
pub fn decnet(socket: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("DECNET_BUS_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn decnet");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The SDK's example worker binary (`decnet-bus/examples/heartbeat_worker.rs`),
/// built if needed: examples are not built for this crate's tests.
pub fn example_worker() -> PathBuf {
    let target_debug = Path::new(BIN).parent().unwrap().to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "--example", "heartbeat_worker", "-p", "decnet-bus"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the example failed");
    let bin = target_debug.join("examples").join("heartbeat_worker");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}
