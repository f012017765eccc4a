//! Deploy drivers: how a decky's new shape reaches the real world.
//!
//! The mutator only decides *what* a decky exposes; a driver makes it so.
//! All drivers take the same [`Change`] (the decky, its new services, and
//! the whole fleet after the change, which compose needs to write one
//! file) and either succeed or fail with a message. A failure means the
//! mutation did not happen: the caller records and announces nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// One decky's shape, as a driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeckyShape {
    pub name: String,
    pub services: Vec<String>,
}

/// What to deploy.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Which set of deckies this belongs to: [`FLEET_PROJECT`] for the
    /// fleet, `topology-<id>` for a topology. Compose keeps one file and
    /// project per set, so `--remove-orphans` never touches another set.
    pub project: &'a str,
    pub decky: &'a str,
    /// The decky's services after the change; empty means tear it down.
    pub services: &'a [String],
    /// Every decky that should be running after the change (this one
    /// included unless it is being torn down).
    pub fleet: &'a [DeckyShape],
}

/// The project of the fleet file's deckies.
pub const FLEET_PROJECT: &str = "fleet";

impl Change<'_> {
    pub fn is_teardown(&self) -> bool {
        self.services.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{driver} driver failed for decky {decky}: {reason}")]
pub struct DeployError {
    pub driver: &'static str,
    pub decky: String,
    pub reason: String,
}

#[async_trait::async_trait]
pub trait DeployDriver: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether a decky deployed by this driver answers on `service`. The
    /// mutator draws only such services, so a rotation never opens a port
    /// nothing serves. Drivers that run containers or commands serve what
    /// the operator gave them: every catalogue service.
    fn serves(&self, _service: &str) -> bool {
        true
    }
    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError>;

    /// Whether [`Change::fleet`] must hold the whole fleet after the
    /// change (a compose file or a command rewrites it all). Drivers that
    /// change one decky at a time say no, so a deploy of N deckies does
    /// not read the fleet N times.
    fn wants_fleet(&self) -> bool {
        true
    }

    /// Bring what this process runs for `project` in line with the
    /// deckies deployed (called on every pass of the mutator's loop).
    /// Only drivers whose deckies live in the process need it: the native
    /// driver, whose deckies may have been deployed by a one-shot command.
    async fn sync(&self, _project: &str, _deployed: &[DeckyShape]) {}

    /// Release what the driver holds in this process (the native driver:
    /// ports, and the namespaces it made on a LAN). Called once as the
    /// mutator stops.
    async fn shutdown(&self) {}

    /// Counters for the worker's heartbeat (`extra`); none by default.
    fn health(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// Which driver to build, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// In-process honeypot listeners on each decky's address.
    Native,
    Compose,
    Command,
    DryRun,
}

/// Build a driver. `command` is required for `command`; the compose file
/// goes under `$DECNET_HOME`. `native` is `Some` in the process that keeps
/// the native deckies' listeners (the mutator daemon); one-shot commands
/// pass `None` and get a deferred native driver.
pub fn build_driver(
    kind: DriverKind,
    command: Option<&Path>,
    pool: &sqlx::SqlitePool,
    native: Option<super::native::NativeOptions>,
) -> anyhow::Result<Box<dyn DeployDriver>> {
    Ok(match kind {
        DriverKind::Native => match native {
            Some(options) => Box::new(super::native::NativeDriver::live(options, Some(pool.clone()))),
            None => Box::new(super::native::NativeDriver::deferred(Some(pool.clone()))),
        },
        DriverKind::DryRun => Box::new(DryRunDriver),
        DriverKind::Compose => Box::new(ComposeDriver::new(crate::home::decnet_home().join("compose"))),
        DriverKind::Command => {
            let program = command.ok_or_else(|| {
                anyhow::anyhow!("the command driver needs --command PATH (or DECNET_MUTATOR_COMMAND)")
            })?;
            Box::new(CommandDriver::new(program.to_path_buf()))
        }
    })
}

/// Logs what it would deploy and succeeds: for demos and development.
#[derive(Debug, Default)]
pub struct DryRunDriver;

#[async_trait::async_trait]
impl DeployDriver for DryRunDriver {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError> {
        if change.is_teardown() {
            tracing::info!(decky = change.decky, "dry-run: would tear down");
        } else {
            tracing::info!(decky = change.decky, services = %change.services.join(","), "dry-run: would deploy");
        }
        Ok(())
    }
}

/// Output of a finished child process.
struct Finished {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Run `cmd` to completion within `timeout`, capturing stderr. The child
/// is killed if the timeout fires (kill_on_drop).
async fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Finished, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.as_std().get_program()))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
        Ok(Err(e)) => Err(format!("waiting for the process failed: {e}")),
        Ok(Ok(out)) => {
            Ok(Finished { status: out.status, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
        }
    }
}

/// Runs a configured executable per change:
/// `PROGRAM DECKY [SERVICE...]` with `DECNET_DECKY`, `DECNET_SERVICES`
/// (comma-separated) and `DECNET_ACTION` (`deploy` or `teardown`) in its
/// environment. A non-zero exit or a timeout is a failure; its stderr is logged.
#[derive(Debug, Clone)]
pub struct CommandDriver {
    pub program: PathBuf,
    pub timeout: Duration,
}

impl CommandDriver {
    pub fn new(program: PathBuf) -> Self {
        CommandDriver { program, timeout: Duration::from_secs(120) }
    }
}

#[async_trait::async_trait]
impl DeployDriver for CommandDriver {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError> {
        let fail = |reason: String| DeployError { driver: "command", decky: change.decky.to_string(), reason };
        let mut cmd = Command::new(&self.program);
        cmd.arg(change.decky)
            .args(change.services)
            .env("DECNET_DECKY", change.decky)
            .env("DECNET_SERVICES", change.services.join(","))
            .env("DECNET_ACTION", if change.is_teardown() { "teardown" } else { "deploy" });
        let done = run_bounded(cmd, self.timeout).await.map_err(fail)?;
        if done.status.success() {
            if !done.stderr.is_empty() {
                tracing::debug!(decky = change.decky, stderr = %done.stderr, "deploy command stderr");
            }
            return Ok(());
        }
        tracing::error!(decky = change.decky, status = %done.status, stderr = %done.stderr, "deploy command failed");
        Err(fail(format!("{} exited with {}: {}", self.program.display(), done.status, done.stderr)))
    }
}

/// Writes one compose file per project (the fleet, each topology) and runs
/// `docker compose -f FILE up -d --remove-orphans`, retrying a bounded
/// number of times with doubling backoff (the Docker daemon is often
/// briefly busy while containers restart).
#[derive(Debug, Clone)]
pub struct ComposeDriver {
    /// Folder of the compose files, one `<project>.json` per project.
    pub compose_dir: PathBuf,
    /// The docker executable (`docker`, looked up on PATH, by default).
    pub docker: PathBuf,
    /// Image every decky container runs; it reads `DECNET_SERVICES`.
    pub image: String,
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl ComposeDriver {
    pub fn new(compose_dir: PathBuf) -> Self {
        ComposeDriver {
            compose_dir,
            docker: PathBuf::from("docker"),
            image: std::env::var("DECNET_DECKY_IMAGE").unwrap_or_else(|_| "decnet/decky:latest".to_string()),
            attempts: 3,
            first_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(300),
        }
    }

    /// The compose document. JSON is valid YAML and docker compose reads
    /// it, so serde_json does all the quoting (no YAML dependency).
    pub fn compose_document(&self, project: &str, fleet: &[DeckyShape]) -> serde_json::Value {
        let mut services = serde_json::Map::new();
        for decky in fleet {
            services.insert(
                decky.name.clone(),
                serde_json::json!({
                    "image": self.image,
                    "hostname": decky.name,
                    "restart": "unless-stopped",
                    "environment": {
                        "DECNET_DECKY": decky.name,
                        "DECNET_SERVICES": decky.services.join(","),
                    },
                    "labels": { "decnet.decky": decky.name },
                }),
            );
        }
        serde_json::json!({ "name": format!("decnet-{}", compose_name(project)), "services": services })
    }

    /// The compose file of `project`.
    pub fn compose_file(&self, project: &str) -> PathBuf {
        self.compose_dir.join(format!("{}.json", compose_name(project)))
    }

    fn write_compose_file(&self, project: &str, fleet: &[DeckyShape]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.compose_dir)?;
        // Write then rename, so docker never reads a half-written file.
        let file = self.compose_file(project);
        let tmp = file.with_extension("tmp");
        let body =
            serde_json::to_vec_pretty(&self.compose_document(project, fleet)).expect("compose document serialises");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &file)?;
        Ok(file)
    }
}

#[async_trait::async_trait]
impl DeployDriver for ComposeDriver {
    fn name(&self) -> &'static str {
        "compose"
    }

    async fn apply(&self, change: &Change<'_>) -> Result<(), DeployError> {
        let fail = |reason: String| DeployError { driver: "compose", decky: change.decky.to_string(), reason };
        let file = self
            .write_compose_file(change.project, change.fleet)
            .map_err(|e| fail(format!("cannot write the compose file in {}: {e}", self.compose_dir.display())))?;
        let mut backoff = self.first_backoff;
        let mut last_error = String::new();
        for attempt in 1..=self.attempts.max(1) {
            let mut cmd = Command::new(&self.docker);
            cmd.arg("compose").arg("-f").arg(&file).args(["up", "-d", "--remove-orphans"]);
            match run_bounded(cmd, self.timeout).await {
                Ok(done) if done.status.success() => return Ok(()),
                Ok(done) => last_error = format!("docker compose exited with {}: {}", done.status, done.stderr),
                Err(e) => last_error = e,
            }
            tracing::warn!(decky = change.decky, attempt, attempts = self.attempts, error = %last_error, "docker compose up failed");
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        Err(fail(last_error))
    }
}

/// A compose project name: lowercase letters, digits, `-` and `_` only.
fn compose_name(project: &str) -> String {
    project
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}
