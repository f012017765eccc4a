//! A tiny process supervisor for `decnet up`.
//!
//! `decnet up` runs the bus, the API and the mutator as separate child
//! processes of the same binary, exactly as systemd would run them in
//! production, so what a developer sees locally is what runs on a host: a
//! killed bus is a real outage the other workers must ride out, and it comes
//! back (restarted here with backoff, as `Restart=on-failure` would).
//!
//! Shutdown: cancelling the token sends SIGTERM to every child, waits for
//! them (bounded), then SIGKILLs stragglers.
//!
//! If the supervisor itself dies without a shutdown (`kill -9`, a crash),
//! the kernel sends each child SIGTERM (`PR_SET_PDEATHSIG`), so no bus,
//! API or mutator lives on as an orphan holding the socket, the port and
//! the database. (The signal follows the thread that spawned the child;
//! children are spawned from tokio worker threads, which live as long as
//! the runtime, i.e. the process.)

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How long children get to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Restart backoff: doubles from the first to the cap; reset after a child
/// has stayed up this long.
const RESTART_FIRST: Duration = Duration::from_millis(500);
const RESTART_CAP: Duration = Duration::from_secs(10);
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One supervised child: a name for the logs, the program and its arguments.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl ChildSpec {
    /// A child running this same executable with `args`.
    pub fn this_binary(name: &str, args: &[&str]) -> std::io::Result<ChildSpec> {
        Ok(ChildSpec {
            name: name.to_string(),
            program: std::env::current_exe()?,
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
        })
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v))).stdin(std::process::Stdio::null());
        // Our own Ctrl-C handling decides the shutdown order; children must
        // not also receive the terminal's SIGINT, so give them their own
        // process group.
        cmd.process_group(0);
        cmd.kill_on_drop(true);
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes two async-signal-safe syscalls (prctl, getppid); it
        // allocates only on the error path, right before the child exits.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
                // The parent may have died between fork and prctl: then the
                // signal will never come, so do not start at all.
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::other("supervisor exited during spawn"));
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

/// Keep `spec` running until `shutdown` is cancelled, restarting it with
/// backoff whenever it exits.
pub async fn supervise(spec: ChildSpec, shutdown: CancellationToken) {
    let mut backoff = RESTART_FIRST;
    loop {
        let started = Instant::now();
        let mut child = match spec.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(child = %spec.name, error = %e, "cannot start");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RESTART_CAP);
                continue;
            }
        };
        tracing::info!(child = %spec.name, pid = child.id(), "started");
        tokio::select! {
            _ = shutdown.cancelled() => {
                stop(&spec.name, &mut child).await;
                return;
            }
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if started.elapsed() > STABLE_AFTER {
                    backoff = RESTART_FIRST;
                }
                tracing::warn!(child = %spec.name, %status, restart_in = ?backoff, "exited; restarting");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RESTART_CAP);
    }
}

async fn stop(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(child = %name, %status, "stopped"),
        _ => {
            tracing::warn!(child = %name, "did not stop in time; killing");
            let _ = child.kill().await;
        }
    }
}
