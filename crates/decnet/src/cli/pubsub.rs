//! `decnet pub` and `decnet sub`: poke the bus by hand.

use decnet_bus::client::{ClientOptions, UnixBus};
use decnet_bus::{Bus, Pattern, Topic};
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PubArgs {
    /// Topic to publish on (no wildcards), e.g. `topology.t1.status`.
    pub topic: String,
    /// Payload: a JSON object. Read from stdin when omitted or `-`.
    pub json: Option<String>,
    /// Event type carried in the envelope's `type`.
    #[arg(long = "type", default_value = "")]
    pub event_type: String,
    /// Bus socket (default as for `decnet bus`).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SubArgs {
    /// Patterns to subscribe to (`*` = one token, `>` = the rest), e.g. `topology.>`.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Exit 0 after printing this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Bus socket (default as for `decnet bus`).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Exit when the daemon goes away instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Give up after this many seconds (exit 1 if `--count` was not reached;
    /// exit 0 without `--count`). Useful in scripts and health checks.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

pub async fn run_pub(args: PubArgs) -> anyhow::Result<()> {
    // Validate everything before connecting: bad input sends nothing.
    let topic = Topic::new(args.topic)?;
    let text = match args.json.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let payload: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| anyhow::anyhow!("payload is not valid JSON: {e}"))?;
    if !payload.is_object() {
        anyhow::bail!("payload must be a JSON object, got {}", kind_of(&payload));
    }
    let socket = decnet_bus::paths::resolve_socket_path(args.socket.as_deref());
    let bus = UnixBus::connect("decnet-pub", &socket).await?;
    bus.publish(topic.as_str(), &args.event_type, payload).await?;
    bus.close().await;
    Ok(())
}

pub async fn run_sub(args: SubArgs) -> anyhow::Result<()> {
    let patterns = args.patterns.iter().map(|p| Pattern::new(p.as_str())).collect::<Result<Vec<_>, _>>()?;
    let socket = decnet_bus::paths::resolve_socket_path(args.socket.as_deref());
    let options = ClientOptions { reconnect: !args.no_reconnect };
    let bus = UnixBus::with_options("decnet-sub", &socket, options);
    // Raw envelopes, not decoded ones: decoding into `Envelope` keeps only
    // its known keys and dropped `origin` (which host a federated event
    // came from, SPEC §9); every key the bus sent is printed.
    let mut streams = Vec::new();
    for p in &patterns {
        let sub = bus.subscribe_with_capacity(p.as_str(), 65536).await?;
        streams.push(Box::pin(futures_util::stream::unfold(sub, |mut sub| async move {
            sub.next_raw().await.map(|raw| (raw, sub))
        })));
    }
    let mut merged = futures_util::stream::select_all(streams);
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    let deadline = args.timeout.map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.0)));
    while args.count.is_none_or(|n| seen < n) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, merged.next()).await {
                Ok(next) => next,
                Err(_) => {
                    bus.close().await;
                    if let Some(n) = args.count {
                        anyhow::bail!("timed out after {}s with {seen} of {n} events", args.timeout.unwrap_or(0.0));
                    }
                    return Ok(());
                }
            },
            None => merged.next().await,
        };
        let Some(raw) = next else {
            anyhow::bail!("the bus closed the subscription");
        };
        let env: serde_json::Value = match serde_json::from_slice(&raw.body) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(topic = %raw.topic, error = %e, "skipping an event that is not JSON");
                continue;
            }
        };
        // Attacker text (usernames, SNI, …) arrives in payloads: nothing in
        // it may act on the terminal.
        let line = super::terminal::json_line(&env)?;
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break; // stdout closed (e.g. piped into `head`)
        }
        seen += 1;
    }
    bus.close().await;
    Ok(())
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
