//! `decnet api`: run the HTTP control plane.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::api::events::{EventsConfig, DEFAULT_KEEPALIVE, DEFAULT_MAX_STREAMS_PER_USER};
use crate::api::limits::{ApiLimits, ThrottleConfig};
use crate::api::{self, ApiConfig, AppState};
use crate::auth::{self, JwtKeys};
use crate::registry::{WorkerRegistry, DEFAULT_KNOWN_WORKERS};
use crate::retention::{self, RetentionPaths, RetentionPolicy};
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
    /// Seconds between `: keepalive` comments on idle SSE event streams
    /// (keeps proxies and load balancers from closing them).
    #[arg(long, env = "DECNET_SSE_KEEPALIVE_SECS", default_value_t = DEFAULT_KEEPALIVE.as_secs_f64())]
    pub sse_keepalive_secs: f64,
    /// SSE event streams one user may hold open at once (429 beyond).
    #[arg(long, env = "DECNET_SSE_MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS_PER_USER)]
    pub sse_max_streams_per_user: usize,
    /// The collector's ingest log; the API's ingester stores `<log>.json`
    /// in the database (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Do not run the ingester in this process (e.g. `decnet ingest` runs apart).
    #[arg(long)]
    pub no_ingest: bool,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
    /// The deckies' quarantine folder, whose files admins download
    /// (default: `$DECNET_HOME/artifacts`).
    #[arg(long, env = "DECNET_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// The deckies' session recordings, which the dashboard replays; no
    /// file outside it is served (default: `$DECNET_HOME/recordings`).
    #[arg(long, env = "DECNET_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// TCP connections served at once; one more gets a 503 and is closed.
    #[arg(long, env = "DECNET_API_MAX_CONNECTIONS", default_value_t = ApiLimits::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request head
    /// (after connecting, or after its previous response) before it is closed.
    #[arg(long, env = "DECNET_API_HEADER_TIMEOUT_SECS", default_value_t = ApiLimits::default().header_read_timeout.as_secs_f64())]
    pub header_timeout_secs: f64,
    /// Password checks (argon2, ~19 MiB each) running at once.
    #[arg(long, env = "DECNET_API_HASH_CONCURRENCY", default_value_t = ApiLimits::default().hash_concurrency)]
    pub hash_concurrency: usize,
    /// Failed logins of one user from one address per minute before 429
    /// (an address gets 4x this over all user names, a user name 4x over
    /// all addresses).
    #[arg(long, env = "DECNET_API_LOGIN_FAILURES", default_value_t = ThrottleConfig::default().per_user_addr)]
    pub login_failures_per_min: u32,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Export every bus event (heartbeats aside) as ECS JSON in octet-counted syslog to this
    /// receiver: `tcp://HOST:PORT` or `tls://HOST:PORT` (docs/alerts.md).
    #[arg(long, env = "DECNET_SIEM")]
    pub siem: Option<String>,
    /// CA certificate (PEM) the `tls://` SIEM receiver's certificate must chain to.
    #[arg(long, env = "DECNET_SIEM_CA")]
    pub siem_ca: Option<PathBuf>,
    /// Events queued for the SIEM receiver at most; more are dropped and counted.
    #[arg(long, env = "DECNET_SIEM_QUEUE", default_value_t = crate::alerts::siem::DEFAULT_QUEUE)]
    pub siem_queue: usize,
}

/// How long the API's pruner keeps each kind of data (`crate::retention`).
/// 0 keeps it forever.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Days of `logs` rows (by event time) and credentials (by last try) kept.
    #[arg(long, env = "DECNET_RETAIN_LOGS_DAYS", default_value_t = retention::defaults::LOGS_DAYS)]
    pub retain_logs_days: u32,
    /// Days rotated ingest log files (`ingest.log.1`, `ingest.log.json.2.gz`, …) are kept after their last write.
    #[arg(long, env = "DECNET_RETAIN_INGEST_FILES_DAYS", default_value_t = retention::defaults::INGEST_FILES_DAYS)]
    pub retain_ingest_files_days: u32,
    /// Days captured artifacts (rows and quarantined files) are kept after capture.
    #[arg(long, env = "DECNET_RETAIN_ARTIFACTS_DAYS", default_value_t = retention::defaults::ARTIFACTS_DAYS)]
    pub retain_artifacts_days: u32,
    /// Days session recordings (rows and files) are kept after the session ended.
    #[arg(long, env = "DECNET_RETAIN_RECORDINGS_DAYS", default_value_t = retention::defaults::RECORDINGS_DAYS)]
    pub retain_recordings_days: u32,
    /// Days an attacker profile (and its fingerprints) is kept after it was last seen.
    #[arg(long, env = "DECNET_RETAIN_ATTACKERS_DAYS", default_value_t = retention::defaults::ATTACKERS_DAYS)]
    pub retain_attackers_days: u32,
    /// Seconds between pruning rounds (the first runs at start).
    #[arg(long, env = "DECNET_PRUNE_INTERVAL_SECS", default_value_t = retention::defaults::INTERVAL_SECS as f64)]
    pub prune_interval_secs: f64,
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            logs: RetentionPolicy::days(self.retain_logs_days),
            ingest_files: RetentionPolicy::days(self.retain_ingest_files_days),
            artifacts: RetentionPolicy::days(self.retain_artifacts_days),
            recordings: RetentionPolicy::days(self.retain_recordings_days),
            attackers: RetentionPolicy::days(self.retain_attackers_days),
        }
    }
}

/// The alerts side from `--siem*`: webhooks always, listening on a bus
/// connection of its own (`api-alerts`) at `socket`.
pub fn alerts(args: &ApiArgs, socket: &std::path::Path) -> anyhow::Result<crate::alerts::Alerts> {
    let mut alerts =
        crate::alerts::Alerts::default().with_bus(Arc::new(decnet_bus::sdk::AppBus::new("api-alerts", socket)));
    if let Some(url) = &args.siem {
        anyhow::ensure!(args.siem_queue > 0, "--siem-queue must be at least 1");
        let mut config = crate::alerts::SiemConfig::parse(url, args.siem_ca.clone())?;
        config.queue = args.siem_queue;
        tracing::info!(destination = %url, "SIEM export on");
        alerts = alerts.with_siem(crate::alerts::Siem::new(config));
    }
    Ok(alerts)
}

/// The limits from `--max-connections`, `--header-timeout-secs`,
/// `--hash-concurrency` and `--login-failures-per-min`.
pub fn limits(args: &ApiArgs) -> anyhow::Result<ApiLimits> {
    let header_read_timeout = positive_secs("--header-timeout-secs", args.header_timeout_secs)?;
    anyhow::ensure!(args.max_connections > 0, "--max-connections must be at least 1");
    anyhow::ensure!(args.hash_concurrency > 0, "--hash-concurrency must be at least 1");
    anyhow::ensure!(args.login_failures_per_min > 0, "--login-failures-per-min must be at least 1");
    let n = args.login_failures_per_min;
    Ok(ApiLimits {
        max_connections: args.max_connections,
        header_read_timeout,
        hash_concurrency: args.hash_concurrency,
        throttle: ThrottleConfig {
            per_user_addr: n,
            per_addr: n.saturating_mul(4),
            per_user: n.saturating_mul(4),
            ..ThrottleConfig::default()
        },
        ..ApiLimits::default()
    })
}

fn positive_secs(flag: &str, secs: f64) -> anyhow::Result<Duration> {
    // try_: NaN, negative and out-of-range values are errors, not panics;
    // a value that rounds to zero would make tokio's interval panic.
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => anyhow::bail!("{flag} must be a positive number of seconds, got {secs}"),
    }
}

/// The SSE settings from `--sse-keepalive-secs` and `--sse-max-streams-per-user`.
pub fn events_config(args: &ApiArgs) -> anyhow::Result<EventsConfig> {
    let keepalive = positive_secs("--sse-keepalive-secs", args.sse_keepalive_secs)?;
    if args.sse_max_streams_per_user == 0 {
        // 0 would refuse every stream with a 429: surely not what was meant.
        anyhow::bail!("--sse-max-streams-per-user must be at least 1");
    }
    Ok(EventsConfig { keepalive, max_streams_per_user: args.sse_max_streams_per_user })
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
    let events = events_config(&args)?;
    let limits = limits(&args)?;
    if args.token_ttl_secs == 0 {
        anyhow::bail!("--token-ttl-secs must be positive");
    }
    let known = parse_known_workers(&args.known_workers)?;
    let prune_interval = positive_secs("--prune-interval-secs", args.retention.prune_interval_secs)?;
    let socket = decnet_bus::paths::resolve_socket_path(args.socket.as_deref());
    let alerts = alerts(&args, &socket)?;
    let home = crate::state_dir::prepare_home()?;
    // One API per home (a `decnet up` holds this for its own API child).
    let _lock = crate::lock::acquire(&home, "api")?;
    let secret = auth::load_or_create_secret(&home)?;
    let db = args.db.unwrap_or_else(crate::store::default_db_path);
    let pool = crate::store::open(&db).await?;
    let bus = Arc::new(decnet_bus::sdk::AppBus::new("api", &socket));
    let ingest_stop = CancellationToken::new();
    let ingest_stats = (!args.no_ingest).then(|| Arc::new(crate::ingest::IngestStats::default()));
    let ingester = ingest_stats.clone().map(|stats| {
        let json = super::ingest::json_path(args.ingest_log.clone());
        crate::ingest::spawn_in_api(pool.clone(), json, bus.clone(), stats, ingest_stop.clone())
    });
    let evidence = api::EvidenceDirs {
        artifacts: args.artifacts_dir.clone().unwrap_or_else(|| home.join("artifacts")),
        recordings: args.recordings_dir.clone().unwrap_or_else(|| home.join("recordings")),
    };
    let pruner = retention::spawn(
        pool.clone(),
        args.retention.policy(),
        RetentionPaths {
            ingest_log: args.ingest_log.clone().unwrap_or_else(crate::events::default_ingest_log_path),
            artifacts_dir: evidence.artifacts.clone(),
            recordings_dir: evidence.recordings.clone(),
        },
        prune_interval,
        ingest_stop.clone(),
    );

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
    )
    .with_events(events)
    .with_limits(limits)
    .with_metrics(api::metrics::ApiMetrics::with_ingest(ingest_stats))
    .with_alerts(alerts)
    .with_evidence(evidence)
    .with_initial_password_file(crate::initial_admin::path_in(&home));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, db = %db.display(), socket = %socket.display(), "API listening");
    let shutdown = CancellationToken::new();
    let registry = api::metrics::registry(state.metrics.clone(), state.registry.clone());
    crate::metrics::spawn(&args.metrics, registry, shutdown.clone()).await?;
    super::bus::spawn_signal_handler(&shutdown)?;
    decnet_bus::sdk::notify_ready("API listening", shutdown.clone());
    let bus_handle = Arc::clone(&state.bus);
    api::serve(listener, state, async move { shutdown.cancelled().await }).await?;
    decnet_bus::sdk::notify_stopping();
    ingest_stop.cancel();
    if let Some(task) = ingester {
        let _ = task.await;
    }
    let _ = pruner.await;
    bus_handle.close().await;
    tracing::info!("API stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        api: ApiArgs,
    }

    fn parse(args: &[&str]) -> ApiArgs {
        Cli::try_parse_from(std::iter::once("api").chain(args.iter().copied())).unwrap().api
    }

    #[test]
    fn sse_flags_reach_the_events_config() {
        let config =
            events_config(&parse(&["--sse-keepalive-secs", "2.5", "--sse-max-streams-per-user", "9"])).unwrap();
        assert_eq!(config.keepalive, Duration::from_millis(2500));
        assert_eq!(config.max_streams_per_user, 9);
    }

    #[test]
    fn sse_defaults_are_the_documented_ones() {
        // Skip when the environment overrides them (the flags read env vars).
        if std::env::var_os("DECNET_SSE_KEEPALIVE_SECS").is_some()
            || std::env::var_os("DECNET_SSE_MAX_STREAMS").is_some()
        {
            return;
        }
        let config = events_config(&parse(&[])).unwrap();
        assert_eq!(config.keepalive, Duration::from_secs(15));
        assert_eq!(config.max_streams_per_user, DEFAULT_MAX_STREAMS_PER_USER);
    }

    #[test]
    fn retention_flags_make_the_policy_and_zero_keeps_forever() {
        let policy = parse(&["--retain-logs-days", "0", "--retain-attackers-days", "7"]).retention.policy();
        assert_eq!(policy.logs, None);
        assert_eq!(policy.attackers, Some(Duration::from_secs(7 * 86_400)));
        for bad in ["-1", "ten", "1.5"] {
            let err = parse_err(&[&format!("--retain-logs-days={bad}")]);
            assert!(err.contains("--retain-logs-days"), "{bad}: {err}");
        }
    }

    fn parse_err(args: &[&str]) -> String {
        Cli::try_parse_from(std::iter::once("api").chain(args.iter().copied())).err().expect("refused").to_string()
    }

    #[test]
    fn sse_flags_refuse_values_that_would_break_streams() {
        for bad in ["0", "-1", "NaN", "inf", "1e-12", "1e300"] {
            let err = events_config(&parse(&[&format!("--sse-keepalive-secs={bad}")])).unwrap_err();
            assert!(err.to_string().contains("--sse-keepalive-secs"), "{bad}: {err}");
        }
        let err = events_config(&parse(&["--sse-max-streams-per-user", "0"])).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
