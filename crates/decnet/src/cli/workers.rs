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
    /// A host id (a bus daemon's `--host-id`, the HOST column): list only its
    /// workers, or stop its worker over the federated bus. `start` runs
    /// systemctl on the API's own host, so another host is refused.
    #[arg(long, global = true)]
    pub host: Option<String>,
    /// Print the API's answer as JSON instead of a table or a sentence.
    #[arg(long, global = true)]
    pub json: bool,
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

/// The API as the CLI talks to it: base URL and the stored token.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// `base` with the token `decnet login` stored (or `DECNET_TOKEN`).
    pub fn new(base: &str) -> anyhow::Result<Api> {
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            token: super::login::load_token()?,
            http: reqwest::Client::new(),
        })
    }

    /// A request to `path` on the API, to be sent with [`Api::send`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Send `req` with the token; a non-2xx answer is the API's error.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
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

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base))).await?;
        resp.json().await.map_err(|e| anyhow::anyhow!("unexpected answer from {path}: {e}"))
    }

    pub async fn post<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
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

/// One JSON document on stdout (attacker-controlled text escaped, see
/// `terminal`), for `--json`.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", super::terminal::json_line(value)?);
    Ok(())
}

/// Path segment for a worker name: the API validates it, but the client
/// still must not let it change the URL's shape.
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(args: WorkersArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api)?;
    let host_query = args.host.as_deref().map(|h| format!("?host={}", segment(h))).unwrap_or_default();
    let json = args.json;
    match args.command.unwrap_or(WorkersCommand::List) {
        WorkersCommand::List => {
            let resp: WorkersResponse = api.get(&format!("/api/v1/workers{host_query}")).await?;
            if json {
                return print_json(&resp);
            }
            print!("{}", render_table(&resp.workers));
            println!("bus: {}", if resp.bus_connected { "connected" } else { "NOT connected" });
        }
        WorkersCommand::Stop { name } => {
            let resp: StopAccepted = api.post(&format!("/api/v1/workers/{}/stop{host_query}", segment(&name))).await?;
            if json {
                return print_json(&resp);
            }
            println!("stop requested for {} on host {}", resp.worker, resp.host);
        }
        WorkersCommand::Start { name } => {
            let resp: StartResponse =
                api.post(&format!("/api/v1/workers/{}/start{host_query}", segment(&name))).await?;
            if json {
                return print_json(&resp);
            }
            println!("started {} ({})", resp.worker, resp.unit);
        }
        WorkersCommand::StartAll => {
            anyhow::ensure!(
                args.host.is_none(),
                "start-all runs systemctl on the API's own host; --host is not supported (use that host's API)"
            );
            let resp: StartAllResponse = api.post("/api/v1/workers/start-all").await?;
            if json {
                print_json(&resp)?;
                anyhow::ensure!(resp.failed.is_empty(), "{} worker(s) failed to start", resp.failed.len());
                return Ok(());
            }
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
