//! `decnet webhook`: manage alert webhooks through the API (admin), with
//! the token `decnet login` stored, like `decnet workers`. Through the API
//! rather than the database: the API is what delivers, and a test
//! notification must come from the process that will send the real ones.

use std::io::{BufRead, IsTerminal};

use crate::alerts::DeliveryOutcome;
use crate::api::webhooks::WebhookView;
use crate::store::webhooks::{Delivery, DeliveryStatus, WebhookFormat, ALERT_TOPICS};

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub command: WebhookCommand,
    /// Base URL of the API.
    #[arg(long, global = true, env = "DECNET_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook. Topics: attacker.observed, credential.captured,
    /// attacker.artifact, identity.formed, credential.reuse.detected, worker.stale.
    Add(AddArgs),
    /// List webhooks (URLs redacted: they hold tokens).
    List,
    /// Send a test notification now and say whether it arrived.
    Test {
        /// Webhook name or id.
        webhook: String,
    },
    /// Delete a webhook.
    Del {
        /// Webhook name or id.
        webhook: String,
    },
    /// The delivery log, newest first.
    Log {
        /// Only this webhook's (name or id).
        webhook: Option<String>,
        /// Rows at most.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Name: 1-64 letters, digits, '.', '_' or '-'.
    pub name: String,
    /// The receiver's URL (http or https). `-`, or leaving it out, reads it
    /// from stdin, which keeps a Slack token out of shell history and `ps`.
    #[arg(long)]
    pub url: Option<String>,
    /// Body format: json, slack or teams.
    #[arg(long, default_value = "json", value_parser = |s: &str| s.parse::<WebhookFormat>())]
    pub format: WebhookFormat,
    /// A topic to notify on; repeat or comma-separate for several.
    #[arg(long = "topic", required = true, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Notifications per minute at most (more are logged `rate_limited`).
    #[arg(long, default_value_t = crate::store::webhooks::DEFAULT_RATE_PER_MIN)]
    pub rate_per_min: u32,
    /// Add it switched off.
    #[arg(long)]
    pub disabled: bool,
}

fn read_url(given: Option<String>) -> anyhow::Result<String> {
    match given.as_deref() {
        Some(u) if u != "-" => return Ok(u.to_owned()),
        _ => {}
    }
    if std::io::stdin().is_terminal() {
        eprint!("Webhook URL: ");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let url = line.trim().to_owned();
    anyhow::ensure!(!url.is_empty(), "no webhook URL given (--url URL, or the URL on stdin)");
    Ok(url)
}

/// The `list` table.
pub fn render_list(hooks: &[WebhookView]) -> String {
    let name_w = hooks.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    let dest_w = hooks.iter().map(|h| h.destination.chars().count()).max().unwrap_or(11).max(11);
    let mut out = format!(
        "{:>4}  {:<name_w$}  {:<6}  {:<dest_w$}  {:>8}  {:<7}  TOPICS\n",
        "ID", "NAME", "FORMAT", "DESTINATION", "RATE/MIN", "ENABLED"
    );
    for h in hooks {
        out.push_str(&format!(
            "{:>4}  {:<name_w$}  {:<6}  {:<dest_w$}  {:>8}  {:<7}  {}\n",
            h.id,
            h.name,
            h.format.as_str(),
            h.destination,
            h.rate_per_min,
            if h.enabled { "yes" } else { "no" },
            h.topics.join(",")
        ));
    }
    out
}

fn render_log(rows: &[Delivery]) -> String {
    let mut out =
        String::from("TIME                  WEBHOOK           TOPIC                  STATUS        ATTEMPTS  ERROR\n");
    for d in rows {
        let when = time::OffsetDateTime::from_unix_timestamp(d.created_at as i64)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).ok()
            })
            .unwrap_or_default();
        let status =
            serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        out.push_str(&format!(
            "{when:<20}  {:<16}  {:<21}  {status:<12}  {:>8}  {}\n",
            d.webhook_name,
            d.topic,
            d.attempts,
            d.last_error.as_deref().unwrap_or("")
        ));
    }
    out
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let api = super::workers::Api::new(&args.api)?;
    match args.command {
        WebhookCommand::Add(add) => {
            if let Some(t) = add.topics.iter().find(|t| !ALERT_TOPICS.contains(&t.as_str())) {
                anyhow::bail!("unknown topic {t:?}: choose from {}", ALERT_TOPICS.join(", "));
            }
            let url = read_url(add.url)?;
            let body = serde_json::json!({
                "name": add.name, "url": url, "format": add.format, "topics": add.topics,
                "rate_per_min": add.rate_per_min, "enabled": !add.disabled,
            });
            let resp = api.send(api.request(reqwest::Method::POST, "/api/v1/webhooks").json(&body)).await?;
            let hook: WebhookView = resp.json().await?;
            println!("added webhook {} (id {}) → {}", hook.name, hook.id, hook.destination);
        }
        WebhookCommand::List => {
            let resp = api.send(api.request(reqwest::Method::GET, "/api/v1/webhooks")).await?;
            #[derive(serde::Deserialize)]
            struct List {
                webhooks: Vec<WebhookView>,
            }
            let list: List = resp.json().await?;
            if list.webhooks.is_empty() {
                println!("no webhooks (add one with `decnet webhook add NAME --url URL --topic attacker.observed`)");
            } else {
                print!("{}", render_list(&list.webhooks));
            }
        }
        WebhookCommand::Test { webhook } => {
            let path = format!("/api/v1/webhooks/{}/test", key(&webhook)?);
            let resp = api.send(api.request(reqwest::Method::POST, &path)).await?;
            let outcome: DeliveryOutcome = resp.json().await?;
            match outcome.status {
                DeliveryStatus::Delivered => {
                    println!("test notification delivered to {webhook} (HTTP {})", outcome.http_status.unwrap_or(0))
                }
                _ => anyhow::bail!(
                    "test notification to {webhook} failed: {}",
                    outcome.error.unwrap_or_else(|| "no answer".into())
                ),
            }
        }
        WebhookCommand::Del { webhook } => {
            let path = format!("/api/v1/webhooks/{}", key(&webhook)?);
            api.send(api.request(reqwest::Method::DELETE, &path)).await?;
            println!("deleted webhook {webhook}");
        }
        WebhookCommand::Log { webhook, limit } => {
            let mut req =
                api.request(reqwest::Method::GET, "/api/v1/webhooks/deliveries").query(&[("limit", limit.to_string())]);
            if let Some(w) = webhook {
                req = req.query(&[("webhook", w)]);
            }
            let resp = api.send(req).await?;
            #[derive(serde::Deserialize)]
            struct Log {
                deliveries: Vec<Delivery>,
            }
            let log: Log = resp.json().await?;
            print!("{}", render_log(&log.deliveries));
        }
    }
    Ok(())
}

/// A webhook key for a URL path: names and ids only use URL-safe
/// characters, so anything else cannot name a webhook.
fn key(s: &str) -> anyhow::Result<&str> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    anyhow::ensure!(ok, "{s:?} is not a webhook name or id");
    Ok(s)
}
