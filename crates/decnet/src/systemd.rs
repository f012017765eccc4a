//! Talking to systemd: which `decnet-*.service` units are installed, and
//! starting one.
//!
//! `systemctl` is run as an argv vector through `tokio::process::Command`,
//! never through a shell, and only after the worker name passed
//! [`valid_worker_name`] and the known list (the caller checks the list).
//! The program is looked up on `PATH`; tests put a stand-in script first on
//! a `PATH` of their own (see [`Systemctl::with_search_path`]) so the real
//! code path runs without systemd.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::Mutex;

/// How long `installed()` reuses one `list-unit-files` answer.
pub const INSTALLED_CACHE_TTL: Duration = Duration::from_secs(30);

/// Upper bound on one systemctl call, so a wedged systemd cannot hold a
/// request (or the API's shutdown) forever.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest worker name accepted (unit names are limited to 255 bytes).
const MAX_WORKER_NAME: usize = 64;

static WORKER_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]*$").expect("static regex"));

/// Whether `name` is safe to embed in a unit name: `^[a-z][a-z0-9_-]*$`,
/// at most 64 characters. Rules out `/`, `..`, spaces, upper case, and
/// anything systemctl could read as an option.
pub fn valid_worker_name(name: &str) -> bool {
    name.len() <= MAX_WORKER_NAME && WORKER_NAME.is_match(name)
}

/// `decnet-<name>.service`.
pub fn unit_name(worker: &str) -> String {
    format!("decnet-{worker}.service")
}

/// Why a unit did not start; serialised as the API's `StartFailure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StartFailure {
    pub worker: String,
    /// systemctl's exit code; -1 when it could not be run or was killed.
    pub returncode: i32,
    pub stderr: String,
}

/// A systemctl runner with a short-lived cache of installed units.
#[derive(Debug)]
pub struct Systemctl {
    program: OsString,
    search_path: Option<OsString>,
    cache_ttl: Duration,
    cache: Mutex<Option<(Instant, BTreeSet<String>)>>,
}

impl Default for Systemctl {
    fn default() -> Self {
        Self::new()
    }
}

impl Systemctl {
    /// `systemctl` from the process's own `PATH`.
    pub fn new() -> Self {
        Systemctl {
            program: "systemctl".into(),
            search_path: None,
            cache_ttl: INSTALLED_CACHE_TTL,
            cache: Mutex::new(None),
        }
    }

    /// `systemctl` looked up on `path` instead of the process's `PATH`
    /// (the child also gets this `PATH`). Tests use it to run a stand-in.
    pub fn with_search_path(path: impl Into<OsString>) -> Self {
        Systemctl { search_path: Some(path.into()), ..Self::new() }
    }

    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(p) = &self.search_path {
            // std resolves the program on the child's PATH when it is set.
            cmd.env("PATH", p);
        }
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Run systemctl with `args`; (exit code, stdout, stderr). Exit code -1
    /// when it could not be spawned, timed out or died from a signal.
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.command();
        cmd.args(args);
        match tokio::time::timeout(SYSTEMCTL_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            Ok(Err(e)) => (-1, String::new(), format!("cannot run systemctl: {e}")),
            Err(_) => (-1, String::new(), format!("systemctl did not finish within {}s", SYSTEMCTL_TIMEOUT.as_secs())),
        }
    }

    /// Worker names whose `decnet-<name>.service` unit file is installed.
    /// Cached for the TTL; empty when systemctl is missing or fails (the
    /// caller still renders its page).
    pub async fn installed(&self) -> BTreeSet<String> {
        let mut cache = self.cache.lock().await;
        if let Some((at, set)) = cache.as_ref() {
            if at.elapsed() < self.cache_ttl {
                return set.clone();
            }
        }
        let (code, stdout, stderr) = self.run(&["list-unit-files", "decnet-*.service", "--no-legend"]).await;
        let set = if code == 0 {
            parse_unit_files(&stdout)
        } else {
            tracing::debug!(code, stderr = %stderr.trim(), "systemctl list-unit-files failed; treating nothing as installed");
            BTreeSet::new()
        };
        *cache = Some((Instant::now(), set.clone()));
        set
    }

    /// `systemctl start decnet-<worker>.service`. Refuses (without running
    /// anything) a name that fails [`valid_worker_name`].
    pub async fn start(&self, worker: &str) -> Result<(), StartFailure> {
        if !valid_worker_name(worker) {
            return Err(StartFailure {
                worker: worker.to_owned(),
                returncode: -1,
                stderr: "invalid worker name".into(),
            });
        }
        let unit = unit_name(worker);
        let (code, _stdout, stderr) = self.run(&["start", "--no-ask-password", &unit]).await;
        if code == 0 {
            // A started unit is certainly installed; the next list is fresh.
            *self.cache.lock().await = None;
            Ok(())
        } else {
            Err(StartFailure { worker: worker.to_owned(), returncode: code, stderr: stderr.trim_end().to_owned() })
        }
    }
}

/// Worker names from `list-unit-files --no-legend` lines such as
/// `decnet-bus.service  enabled  enabled`. Lines that are not a valid
/// decnet unit are skipped.
fn parse_unit_files(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|unit| unit.strip_prefix("decnet-")?.strip_suffix(".service"))
        .filter(|name| valid_worker_name(name))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["api", "bus", "my-worker_2"] {
            assert!(valid_worker_name(ok), "{ok}");
        }
        let long = "a".repeat(300);
        for bad in ["", "Api", "a b", "a/b", "..", "../x", "-x", "1abc", "a.b", "a\n", long.as_str()] {
            assert!(!valid_worker_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn parses_unit_list() {
        let out = "decnet-bus.service enabled enabled\ndecnet-api.service disabled enabled\n\
                   other.service enabled enabled\ndecnet-Bad.service enabled enabled\n\n";
        let got: Vec<_> = parse_unit_files(out).into_iter().collect();
        assert_eq!(got, ["api", "bus"]);
    }
}
