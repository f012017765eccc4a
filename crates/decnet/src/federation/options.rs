//! `decnet bus` federation flags, checked into a [`FederationConfig`], and
//! the async-nats connection they describe.
//!
//! Everything async-nats offers for authentication is passed through
//! (token, user/password, creds file, nkey seed, TLS with a private CA and
//! client certificates) because the NATS deployment belongs to the
//! operator, not to us. Every flag has an environment variable behind it
//! so a systemd unit can carry secrets in an `EnvironmentFile=`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use decnet_bus::topic::{validate_pattern, validate_topic};

use super::counters::FederationCounters;

/// Default export queue: events held while NATS is slow or away before the
/// oldest are dropped. 8,192 × a typical 300-byte envelope ≈ 2.5 MiB.
pub const DEFAULT_EXPORT_QUEUE: u32 = 8192;

/// Default import buffer per pattern: async-nats's own default.
pub const DEFAULT_IMPORT_BUFFER: u32 = 65_536;

/// Longest pause between reconnect attempts. async-nats backs off to 4 s;
/// 2 s halves the worst-case gap after a NATS restart for a cost of one
/// TCP connect attempt per second per host.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s) to bridge to (comma-separated for a cluster, e.g.
    /// nats://10.0.0.1:4222,nats://10.0.0.2:4222). Without it, no federation.
    #[arg(long = "nats", env = "DECNET_NATS_URL", value_delimiter = ',')]
    pub nats: Vec<String>,
    /// Local topic patterns to send to NATS (repeat or comma-separate).
    #[arg(long, env = "DECNET_NATS_EXPORT", value_delimiter = ',', num_args = 1..)]
    pub export: Vec<String>,
    /// Topic patterns to take from NATS and deliver to local subscribers.
    #[arg(long, env = "DECNET_NATS_IMPORT", value_delimiter = ',', num_args = 1..)]
    pub import: Vec<String>,
    /// This host's id, stamped on every export as its origin. Default: the
    /// hostname.
    #[arg(long, env = "DECNET_HOST_ID")]
    pub host_id: Option<String>,
    /// First subject token(s) on NATS: topic `a.b` travels as `<prefix>.a.b`.
    #[arg(long, env = "DECNET_NATS_PREFIX", default_value = "decnet")]
    pub nats_prefix: String,
    /// Exported events held while NATS is slow or away before the oldest
    /// are dropped (and counted).
    #[arg(long, env = "DECNET_NATS_QUEUE", default_value_t = DEFAULT_EXPORT_QUEUE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub nats_queue: u32,
    /// NATS messages held per import pattern while the bridge delivers them
    /// locally; past it, async-nats drops the newest (counted as
    /// receive_overflow, and as lost by the sequence numbers).
    #[arg(long, env = "DECNET_NATS_IMPORT_BUFFER", default_value_t = DEFAULT_IMPORT_BUFFER,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub nats_import_buffer: u32,
    /// NATS auth token.
    #[arg(long, env = "DECNET_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// NATS user (with --nats-password).
    #[arg(long, env = "DECNET_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password (with --nats-user).
    #[arg(long, env = "DECNET_NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    pub nats_password: Option<String>,
    /// NATS credentials file (JWT + nkey seed, as `nsc` writes it).
    #[arg(long, env = "DECNET_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS nkey seed (SU…).
    #[arg(long, env = "DECNET_NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<String>,
    /// PEM CA bundle to verify the NATS server with (implies TLS).
    #[arg(long, env = "DECNET_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --nats-tls-key).
    #[arg(long, env = "DECNET_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of --nats-tls-cert.
    #[arg(long, env = "DECNET_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse a NATS server that does not offer TLS.
    #[arg(long, env = "DECNET_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
}

/// Checked federation settings.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    pub servers: Vec<String>,
    pub export: Vec<String>,
    pub import: Vec<String>,
    pub host_id: String,
    pub prefix: String,
    pub queue: usize,
    pub import_buffer: usize,
    pub auth: NatsArgs,
}

impl NatsArgs {
    /// The host id this daemon reports (flag, env, else hostname).
    pub fn resolved_host_id(&self) -> anyhow::Result<String> {
        match &self.host_id {
            Some(id) => {
                let id = id.trim();
                if !decnet_bus::sdk::valid_host_id(id) {
                    bail!("--host-id {id:?} is not a valid host id: 1-253 characters of A-Z a-z 0-9 . _ -");
                }
                Ok(id.to_owned())
            }
            None => Ok(decnet_bus::sdk::host_id()),
        }
    }

    /// `None` when federation is off; an error for flags that make no
    /// sense together or patterns that could never match.
    pub fn config(&self) -> anyhow::Result<Option<FederationConfig>> {
        let servers: Vec<String> = self.nats.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let export = clean(&self.export);
        let import = clean(&self.import);
        if servers.is_empty() {
            if !export.is_empty() || !import.is_empty() {
                bail!("--export/--import need --nats URL (or DECNET_NATS_URL)");
            }
            return Ok(None);
        }
        if export.is_empty() && import.is_empty() {
            bail!("--nats given without --export or --import: nothing would cross; name the topic patterns to bridge");
        }
        for p in export.iter().chain(&import) {
            validate_pattern(p).with_context(|| format!("bad federation pattern {p:?}"))?;
        }
        validate_topic(&self.nats_prefix).with_context(|| {
            format!("--nats-prefix {:?} must be dot-separated tokens without wildcards", self.nats_prefix)
        })?;
        Ok(Some(FederationConfig {
            servers,
            export,
            import,
            host_id: self.resolved_host_id()?,
            prefix: self.nats_prefix.clone(),
            queue: self.nats_queue as usize,
            import_buffer: self.nats_import_buffer as usize,
            auth: self.clone(),
        }))
    }
}

fn clean(patterns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if !out.iter().any(|q| q == p) {
            out.push(p.to_owned());
        }
    }
    out
}

/// Build the client. With `retry_on_initial_connect` this returns at once
/// even when NATS is down; the client keeps trying, and the event callback
/// keeps `connected` true to the connection state.
pub async fn connect(
    config: &FederationConfig,
    counters: Arc<FederationCounters>,
    announce: Arc<tokio::sync::Notify>,
) -> anyhow::Result<async_nats::Client> {
    let a = &config.auth;
    let mut opts = match &a.nats_creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .with_context(|| format!("cannot read the NATS creds file {}", path.display()))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &a.nats_token {
        opts = opts.token(token.clone());
    }
    if let (Some(user), Some(pass)) = (&a.nats_user, &a.nats_password) {
        opts = opts.user_and_password(user.clone(), pass.clone());
    }
    if let Some(seed) = &a.nats_nkey {
        opts = opts.nkey(seed.clone());
    }
    for path in [&a.nats_tls_ca, &a.nats_tls_cert, &a.nats_tls_key].into_iter().flatten() {
        if !path.is_file() {
            bail!("NATS TLS file {} does not exist", path.display());
        }
    }
    if let Some(ca) = &a.nats_tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&a.nats_tls_cert, &a.nats_tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if a.nats_tls_required {
        opts = opts.require_tls(true);
    }
    let events = counters.clone();
    opts = opts
        .name(format!("decnet-bus {}", config.host_id))
        // Our own publishes never come back on this connection; the origin
        // check catches the rest (another connection of the same host).
        .no_echo()
        .subscription_capacity(config.import_buffer)
        .retry_on_initial_connect()
        // The operator lists this host's nearest node first; async-nats
        // would otherwise shuffle and spread hosts at random.
        .retain_servers_order()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let ms = 2u64.saturating_pow(attempts.min(16) as u32);
            Duration::from_millis(ms).min(MAX_RECONNECT_DELAY)
        })
        .event_callback(move |event| {
            let counters = events.clone();
            let announce = announce.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        counters.connected.store(true, Ordering::Relaxed);
                        FederationCounters::add(&counters.connects, 1);
                        // Say who we are to the other bridges (see `presence`).
                        announce.notify_one();
                        tracing::info!("NATS connected");
                    }
                    // One per message async-nats dropped because an import
                    // subscription was full: counted, and one line a burst.
                    async_nats::Event::SlowConsumer(_) => {
                        let total = FederationCounters::add(&counters.receive_overflow, 1);
                        if counters.receive_drops.note(1) {
                            tracing::warn!(
                                receive_overflow = total,
                                "NATS import cannot keep up: messages dropped (counted in \
                                 federation.receive_overflow and lost; one line per burst)"
                            );
                        }
                    }
                    async_nats::Event::Disconnected => {
                        counters.connected.store(false, Ordering::Relaxed);
                        tracing::warn!("NATS disconnected; the local bus keeps running, reconnecting");
                    }
                    async_nats::Event::Closed => counters.connected.store(false, Ordering::Relaxed),
                    other => tracing::warn!(event = %other, "NATS event"),
                }
            }
        });
    // async-nats says only "IO error" when it cannot connect: name the cause.
    tokio::spawn(super::preflight::check(config.servers.clone()));
    let client = opts
        .connect(config.servers.clone())
        .await
        .with_context(|| format!("cannot set up the NATS client for {}", config.servers.join(",")))?;
    Ok(client)
}
