//! `decnet workers`: see and control the host's workers through the API.

use crate::api::workers::{StartAllResponse, StartResponse, StopAccepted, WorkersResponse};
use crate::registry::{WorkerHealth, WorkerStatus};

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    #[command(subcommand)]
    pub command: Option<WorkersCommand>,
    /// Base URL of the API.
    #[arg(long, global = true, env = "DECNET_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkersCommand {
    /// Table of known workers: status, time since last heartbeat, unit installed (default).
    List,
    /// Ask a worker to stop (published on system.<name>.control; admin).
    Stop { name: String },
    /// Start decnet-<name>.service through systemd (admin).
    Start { name: String },
    /// Start every installed decnet-*.service unit of a known worker (admin).
    StartAll,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the API at {}: {e}", self.base))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(super::login::api_error(resp).await)
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base))).await?;
        resp.json().await.map_err(|e| anyhow::anyhow!("unexpected answer from {path}: {e}"))
    }

    async fn post<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.http.post(format!("{}{path}", self.base))).await?;
        resp.json().await.map_err(|e| anyhow::anyhow!("unexpected answer from {path}: {e}"))
    }
}

/// `12s`, `3m04s`, `2h05m`, or `-` when never seen.
pub fn format_age(seconds: Option<f64>) -> String {
    let Some(s) = seconds else { return "-".into() };
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The `list` table, one line per worker.
pub fn render_table(workers: &[WorkerStatus]) -> String {
    let width = workers.iter().map(|w| w.name.len()).max().unwrap_or(4).max(4);
    // HOST last: with federated buses (SPEC §9) one API lists many hosts.
    let mut out = format!("{:<width$}  {:<7}  {:>7}  INSTALLED  HOST\n", "NAME", "STATUS", "AGE");
    for w in workers {
        let status = match w.status {
            WorkerHealth::Ok => "ok",
            WorkerHealth::Stale => "stale",
            WorkerHealth::Unknown => "unknown",
        };
        let installed = if w.installed { "yes" } else { "no" };
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:>7}  {installed:<9}  {}\n",
            w.name,
            status,
            format_age(w.seconds_since),
            w.host
        ));
    }
    out
}

/// Path segment for a worker name: the API validates it, but the client
/// still must not let it change the URL's shape.
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(args: WorkersArgs) -> anyhow::Result<()> {
    let api = Api {
        base: args.api.trim_end_matches('/').to_owned(),
        token: super::login::load_token()?,
        http: reqwest::Client::new(),
    };
    match args.command.unwrap_or(WorkersCommand::List) {
        WorkersCommand::List => {
            let resp: WorkersResponse = api.get("/api/v1/workers").await?;
            print!("{}", render_table(&resp.workers));
            println!("bus: {}", if resp.bus_connected { "connected" } else { "NOT connected" });
        }
        WorkersCommand::Stop { name } => {
            let resp: StopAccepted = api.post(&format!("/api/v1/workers/{}/stop", segment(&name))).await?;
            println!("stop requested for {}", resp.worker);
        }
        WorkersCommand::Start { name } => {
            let resp: StartResponse = api.post(&format!("/api/v1/workers/{}/start", segment(&name))).await?;
            println!("started {} ({})", resp.worker, resp.unit);
        }
        WorkersCommand::StartAll => {
            let resp: StartAllResponse = api.post("/api/v1/workers/start-all").await?;
            for name in &resp.started {
                println!("started {name}");
            }
            for f in &resp.failed {
                println!("FAILED  {} (code {}): {}", f.worker, f.returncode, f.stderr);
            }
            if resp.started.is_empty() && resp.failed.is_empty() {
                println!("no decnet-*.service units installed");
            }
            if !resp.failed.is_empty() {
                anyhow::bail!("{} worker(s) failed to start", resp.failed.len());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(format_age(None), "-");
        assert_eq!(format_age(Some(5.4)), "5s");
        assert_eq!(format_age(Some(184.0)), "3m04s");
        assert_eq!(format_age(Some(7500.0)), "2h05m");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("api"), "api");
        assert_eq!(segment("../x y"), "%2E%2E%2Fx%20y");
    }
}
