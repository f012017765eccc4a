//! `decnet api`: run the HTTP control plane.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiConfig, AppState};
use crate::auth::{self, JwtKeys};
use crate::registry::{WorkerRegistry, DEFAULT_KNOWN_WORKERS};
use crate::systemd::{self, Systemctl};

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address to listen on (host:port). Keep it on localhost or behind a
    /// TLS-terminating proxy: the API speaks plain HTTP.
    #[arg(long, env = "DECNET_API_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// SQLite database. Default: $DECNET_HOME/decnet.db.
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// Bus socket. Default: /run/decnet/bus.sock when /run/decnet exists,
    /// else $DECNET_HOME/bus.sock.
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Seconds of silence after which a worker is shown `stale`.
    #[arg(long, env = "DECNET_STALE_SECS", default_value_t = 90.0)]
    pub stale_secs: f64,
    /// Workers the registry tracks, comma-separated (heartbeats from other
    /// names are ignored; only these can be stopped or started).
    #[arg(long, env = "DECNET_KNOWN_WORKERS", value_delimiter = ',', default_values_t = DEFAULT_KNOWN_WORKERS.iter().map(|s| s.to_string()))]
    pub known_workers: Vec<String>,
    /// Lifetime of issued bearer tokens, in seconds (default 12 h).
    #[arg(long, env = "DECNET_TOKEN_TTL_SECS", default_value_t = auth::DEFAULT_TOKEN_TTL.as_secs())]
    pub token_ttl_secs: u64,
    /// Seconds between the API's own `system.api.health` heartbeats.
    #[arg(long, default_value_t = 30.0)]
    pub heartbeat_secs: f64,
}

fn positive_secs(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    if !secs.is_finite() || secs <= 0.0 {
        anyhow::bail!("{flag} must be a positive number of seconds, got {secs}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Check `--known-workers`: every name must be usable as a unit name.
pub fn parse_known_workers(names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut known: Vec<String> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !systemd::valid_worker_name(name) {
            anyhow::bail!(
                "--known-workers: {name:?} is not a valid worker name (^[a-z][a-z0-9_-]*$, at most 64 chars)"
            );
        }
        if !known.iter().any(|k| k == name) {
            known.push(name.to_owned());
        }
    }
    if known.is_empty() {
        anyhow::bail!("--known-workers is empty");
    }
    Ok(known)
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    let stale_after = positive_secs("--stale-secs", args.stale_secs)?;
    let heartbeat_interval = positive_secs("--heartbeat-secs", args.heartbeat_secs)?;
    if args.token_ttl_secs == 0 {
        anyhow::bail!("--token-ttl-secs must be positive");
    }
    let known = parse_known_workers(&args.known_workers)?;
    let home = crate::home::ensure_home()
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", crate::home::decnet_home().display()))?;
    let secret = auth::load_or_create_secret(&home)?;
    let db = args.db.unwrap_or_else(crate::store::default_db_path);
    let pool = crate::store::open(&db).await?;
    let socket = decnet_bus::paths::resolve_socket_path(args.socket.as_deref());
    let bus = Arc::new(decnet_bus::sdk::AppBus::new("api", &socket));

    if crate::store::users::count(&pool).await? == 0 {
        tracing::warn!("no users yet: create one with `decnet user add NAME --role admin`");
    }
    let state = AppState::new(
        pool,
        JwtKeys::new(&secret, Duration::from_secs(args.token_ttl_secs)),
        WorkerRegistry::new(known, stale_after),
        bus,
        Systemctl::new(),
        ApiConfig { heartbeat_interval },
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, db = %db.display(), socket = %socket.display(), "API listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(super::bus::cancel_on_signal(shutdown.clone()));
    let bus_handle = Arc::clone(&state.bus);
    api::serve(listener, state, async move { shutdown.cancelled().await }).await?;
    bus_handle.close().await;
    tracing::info!("API stopped");
    Ok(())
}
