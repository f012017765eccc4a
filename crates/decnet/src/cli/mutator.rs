//! `decnet mutator`: the rotation daemon. Also the home of the flags that
//! `deploy`, `teardown` and `mutate --now` share with it (store, bus,
//! driver, ingest log), so all four agree on where things are.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use decnet_bus::Bus;

use crate::mutator::drivers::{build_driver, DriverKind};
use crate::mutator::{Mutator, MutatorConfig};

/// Where the fleet lives and how it is deployed.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// SQLite database (default: `$DECNET_HOME/decnet.db`).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// Bus socket (default as for `decnet bus`).
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// How decky changes are deployed: `compose` (docker compose up),
    /// `command` (runs --command with the decky and its services), or
    /// `dry-run` (only logs; the default, for demos and development).
    #[arg(long, value_enum, env = "DECNET_MUTATOR_DRIVER", default_value = "dry-run")]
    pub driver: DriverKind,
    /// Executable for the `command` driver: called as `PATH DECKY [SERVICE...]`
    /// with DECNET_DECKY, DECNET_SERVICES and DECNET_ACTION (deploy|teardown) set.
    #[arg(long, env = "DECNET_MUTATOR_COMMAND")]
    pub command: Option<PathBuf>,
    /// RFC 5424 ingest log the mutation events are appended to
    /// (default: `$DECNET_HOME/ingest.log`).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Native driver: send the deckies' lines to this collector TCP
    /// listener (syslog, octet counting) instead of its UNIX socket. Lines
    /// that arrive over the network are stored untrusted unless the
    /// collector is told to trust the sender (`--trust-network`).
    #[arg(long, env = "DECNET_COLLECTOR_ADDR")]
    pub collector_addr: Option<std::net::SocketAddr>,
    /// Native driver: the collector's UNIX socket the deckies' lines are
    /// sent to (default: `$DECNET_HOME/collector.sock`); ignored when
    /// --collector-addr is given.
    #[arg(long, env = "DECNET_COLLECTOR_SOCKET")]
    pub collector_socket: Option<PathBuf>,
    /// Native driver: lines of log one attacker session may produce before
    /// one `log_budget_exhausted` line ends its logging.
    #[arg(long, env = "DECNET_SESSION_LOG_LINES", default_value_t = crate::decky::Limits::default().max_log_lines)]
    pub session_log_lines: u64,
    /// Native driver: bytes of log one attacker session may produce.
    #[arg(long, env = "DECNET_SESSION_LOG_BYTES", default_value_t = crate::decky::Limits::default().max_log_bytes)]
    pub session_log_bytes: u64,
    /// Native driver: concurrent sessions per decky.
    #[arg(long, env = "DECNET_DECKY_MAX_SESSIONS", default_value_t = crate::decky::Limits::default().max_sessions)]
    pub decky_max_sessions: usize,
    /// Native driver: concurrent sessions one source address may hold on one decky.
    #[arg(long, env = "DECNET_DECKY_MAX_SESSIONS_PER_SOURCE",
          default_value_t = crate::decky::Limits::default().max_sessions_per_source)]
    pub decky_max_sessions_per_source: usize,
    /// Native driver: bytes of lines held while the collector is away
    /// (the oldest are dropped and counted beyond it).
    #[arg(long, env = "DECNET_SINK_QUEUE_BYTES", default_value_t = crate::decky::sink::DEFAULT_QUEUE_BYTES)]
    pub sink_queue_bytes: usize,
    /// Native driver: added to every service's default port (10000 puts
    /// ssh on 10022), for hosts where ports below 1024 are not available.
    #[arg(long, env = "DECNET_NATIVE_PORT_OFFSET", default_value_t = 0)]
    pub native_port_offset: u16,
    /// Native driver: when loopback deckies share one listening socket
    /// per port instead of a socket each. `auto` shares once the fleet's
    /// sockets would not fit under the open-file limit (10,000 ssh + http
    /// deckies need 20,000 descriptors, or 2 when shared). On a shared
    /// port, an address where no decky serves it accepts and resets
    /// instead of refusing. Deckies on a LAN always keep their own sockets.
    #[arg(long, env = "DECNET_NATIVE_SHARED_PORTS", value_enum, default_value = "auto")]
    pub native_shared_ports: crate::mutator::native::SharePorts,
    /// Native driver: folder of the shell sessions' asciicast recordings
    /// (default: `$DECNET_HOME/recordings`).
    #[arg(long, env = "DECNET_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Native driver: do not record shell sessions.
    #[arg(long, env = "DECNET_NO_RECORDINGS")]
    pub no_recordings: bool,
    /// Native driver: the quarantine folder for what attackers bring
    /// (uploads, files written in the shell, fetched payloads), each file
    /// named by its sha256, mode 0600 (default: `$DECNET_HOME/artifacts`).
    #[arg(long, env = "DECNET_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,
    /// Native driver: bytes the quarantine may hold; the files stored
    /// longest ago are evicted beyond it.
    #[arg(long, env = "DECNET_ARTIFACTS_MAX_BYTES",
          default_value_t = crate::decky::artifacts::StoreLimits::default().max_total)]
    pub artifacts_max_bytes: u64,
    /// Native driver: fetch the payloads attackers ask wget/curl for, and
    /// keep them in the quarantine. Off by default: fetching is traffic to
    /// an address the attacker chose (only the URL is recorded then).
    #[arg(long, env = "DECNET_FETCH")]
    pub fetch: bool,
    /// Networks payloads may be fetched from (CIDR or address, repeatable
    /// or comma-separated). Default: loopback only.
    #[arg(long = "fetch-allow", env = "DECNET_FETCH_ALLOW", value_delimiter = ',')]
    pub fetch_allow: Vec<String>,
    /// Networks never fetched from; wins over --fetch-allow.
    #[arg(long = "fetch-deny", env = "DECNET_FETCH_DENY", value_delimiter = ',')]
    pub fetch_deny: Vec<String>,
    /// Largest payload fetched (bytes); a larger one is abandoned.
    #[arg(long, env = "DECNET_FETCH_MAX_BYTES",
          default_value_t = crate::decky::fetch::FetchSettings::default().max_bytes)]
    pub fetch_max_bytes: u64,
    /// Seconds one fetch may take, redirects and body included.
    #[arg(long, env = "DECNET_FETCH_TIMEOUT",
          default_value_t = crate::decky::fetch::FetchSettings::default().timeout.as_secs())]
    pub fetch_timeout: u64,
    #[command(flatten)]
    pub lan: LanArgs,
}

/// Placing deckies on a real LAN (native driver).
#[derive(clap::Args, Debug, Clone)]
pub struct LanArgs {
    /// Give each decky a network namespace of its own with a macvlan (or
    /// ipvlan) interface on this host interface: its own MAC, address and
    /// OS personality on the wire. Needs CAP_NET_ADMIN. Without it, decky
    /// addresses must already be on this host (loopback by default).
    #[arg(long, env = "DECNET_LAN_PARENT")]
    pub lan_parent: Option<String>,
    /// Link type on the parent: macvlan (own MAC per decky) or ipvlan (for
    /// parents that carry one MAC only, such as Wi-Fi).
    #[arg(long, env = "DECNET_LAN_MODE", value_enum, default_value = "macvlan")]
    pub lan_mode: crate::mutator::lan::LinkKind,
    /// Addresses given to deckies without one in the fleet file,
    /// FIRST-LAST (e.g. 192.168.1.100-192.168.1.150).
    #[arg(long, env = "DECNET_LAN_RANGE", value_parser = crate::mutator::lan::parse_range)]
    pub lan_range: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    /// Prefix length of the LAN.
    #[arg(long, env = "DECNET_LAN_PREFIX", default_value_t = 24)]
    pub lan_prefix: u8,
    /// The LAN's default gateway, routed through by the deckies.
    #[arg(long, env = "DECNET_LAN_GATEWAY")]
    pub lan_gateway: Option<std::net::IpAddr>,
}

impl LanArgs {
    /// The placement, when a parent is given; errors name the bad setting.
    pub fn lan(&self) -> anyhow::Result<Option<crate::mutator::lan::Lan>> {
        let Some(parent) = &self.lan_parent else {
            anyhow::ensure!(self.lan_range.is_none(), "--lan-range needs --lan-parent");
            return Ok(None);
        };
        anyhow::ensure!((1..=32).contains(&self.lan_prefix), "--lan-prefix must be 1 to 32");
        let lan = crate::mutator::lan::Lan {
            parent: parent.clone(),
            kind: self.lan_mode,
            prefix: self.lan_prefix,
            gateway: self.lan_gateway,
            range: self.lan_range,
        };
        lan.check().map_err(anyhow::Error::msg)?;
        Ok(Some(lan))
    }
}

impl FleetArgs {
    pub fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(crate::store::default_db_path)
    }

    pub fn socket_path(&self) -> PathBuf {
        decnet_bus::paths::resolve_socket_path(self.socket.as_deref())
    }

    /// The native driver's settings; the SSH host-key seed lives in `$DECNET_HOME`.
    pub fn native_options(&self) -> anyhow::Result<crate::mutator::native::NativeOptions> {
        let home = crate::home::decnet_home();
        let seed = crate::mutator::native::load_host_key_seed(&home)?;
        let target = match self.collector_addr {
            Some(addr) => crate::decky::sink::CollectorTarget::Tcp(addr),
            None => crate::decky::sink::CollectorTarget::Unix(
                self.collector_socket.clone().unwrap_or_else(crate::collector::default_socket_path),
            ),
        };
        let mut options = crate::mutator::native::NativeOptions::new(target, seed);
        options.port_offset = self.native_port_offset;
        options.share_ports = self.native_shared_ports;
        anyhow::ensure!(
            self.session_log_lines > 0 && self.session_log_bytes > 0 && self.sink_queue_bytes > 0,
            "--session-log-lines, --session-log-bytes and --sink-queue-bytes must be positive"
        );
        options.limits.max_log_lines = self.session_log_lines;
        options.limits.max_log_bytes = self.session_log_bytes;
        options.limits.max_sessions = self.decky_max_sessions.max(1);
        options.limits.max_sessions_per_source = self.decky_max_sessions_per_source.max(1);
        options.queue_bytes = self.sink_queue_bytes;
        options.recordings = self.recordings_path(&home);
        options.host_key_cache = Some(home.join("host_keys"));
        options.lan = self.lan.lan()?;
        options.artifacts = Some(self.artifacts_dir.clone().unwrap_or_else(|| home.join("artifacts")));
        options.artifact_limits.max_total = self.artifacts_max_bytes;
        options.fetch = self.fetch_settings()?;
        Ok(options)
    }

    /// The fetch policy the flags describe (fetching off unless --fetch).
    pub fn fetch_settings(&self) -> anyhow::Result<crate::decky::fetch::FetchSettings> {
        anyhow::ensure!(
            self.fetch_timeout > 0 && self.fetch_max_bytes > 0,
            "--fetch-timeout and --fetch-max-bytes must be positive"
        );
        Ok(crate::decky::fetch::FetchSettings {
            enabled: self.fetch,
            policy: crate::decky::net_policy::CidrPolicy::parse(&self.fetch_allow, &self.fetch_deny)?,
            max_bytes: self.fetch_max_bytes,
            timeout: Duration::from_secs(self.fetch_timeout),
        })
    }

    /// Where recordings go, `None` with --no-recordings.
    pub fn recordings_path(&self, home: &std::path::Path) -> Option<PathBuf> {
        (!self.no_recordings).then(|| self.recordings_dir.clone().unwrap_or_else(|| home.join("recordings")))
    }

    pub fn log_path(&self) -> PathBuf {
        self.ingest_log.clone().unwrap_or_else(crate::events::default_ingest_log_path)
    }

    /// A mutator for a one-shot command. The bus is used if it is up;
    /// when it is not, events still reach the ingest log.
    pub async fn one_shot_mutator(&self, client: &str) -> anyhow::Result<(Mutator, Arc<decnet_bus::client::UnixBus>)> {
        let pool = crate::store::open(&self.db_path()).await?;
        let driver = match self.driver {
            // New deckies' addresses come from the LAN range when one is set.
            crate::mutator::drivers::DriverKind::Native => Box::new(
                crate::mutator::native::NativeDriver::deferred(Some(pool.clone())).with_auto_range(self.lan.lan_range),
            ),
            kind => build_driver(kind, self.command.as_deref(), &pool, None)?,
        };
        let bus = Arc::new(decnet_bus::client::UnixBus::new(client, self.socket_path()));
        let dyn_bus: Arc<dyn Bus> = bus.clone();
        Ok((Mutator::new(pool, driver.into(), Some(dyn_bus), self.log_path()), bus))
    }
}

#[derive(Debug, clap::Args)]
pub struct MutatorArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Longest sleep between checks for due deckies, in seconds.
    #[arg(long, env = "DECNET_MUTATOR_POLL_SECS", default_value_t = 30)]
    pub poll_secs: u64,
    /// Seconds between `system.mutator.health` heartbeats.
    #[arg(long, env = "DECNET_MUTATOR_HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

pub async fn run(args: MutatorArgs) -> anyhow::Result<()> {
    // Two mutators on one database break every decky's mutation chain.
    let home = crate::state_dir::prepare_home()?;
    let _lock = crate::lock::acquire(&home, "mutator")?;
    // Each decky service holds a socket and each session one more.
    match crate::rlimit::raise_nofile() {
        Ok((soft, _)) => tracing::info!(open_files = soft, "file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!("cannot raise the file limit: {e}"),
    }
    let config = MutatorConfig {
        db_path: args.fleet.db_path(),
        socket_path: args.fleet.socket_path(),
        driver: args.fleet.driver,
        command: args.fleet.command.clone(),
        poll: Duration::from_secs(args.poll_secs),
        log_path: args.fleet.log_path(),
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        native: args.fleet.native_options()?,
        metrics: args.metrics.clone(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping");
        on_signal.cancel();
    });
    crate::mutator::run(config, shutdown).await
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Close a one-shot command's bus, sending what is queued first.
pub async fn finish_bus(bus: &decnet_bus::client::UnixBus) {
    if bus.is_connected() {
        let _ = bus.flush().await;
    }
    bus.close().await;
}

/// The local user, for the `actor` of operator-triggered events.
pub fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        fleet: FleetArgs,
    }

    fn recordings(args: &[&str]) -> Option<PathBuf> {
        let cli = Cli::try_parse_from(std::iter::once("mutator").chain(args.iter().copied())).unwrap();
        cli.fleet.recordings_path(std::path::Path::new("/home/decnet"))
    }

    fn fleet(args: &[&str]) -> Result<FleetArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("mutator").chain(args.iter().copied())).map(|c| c.fleet)
    }

    #[test]
    fn fetching_is_off_by_default_and_the_flags_make_its_policy() {
        let off = fleet(&[]).unwrap().fetch_settings().unwrap();
        assert!(!off.enabled);
        assert_eq!(off.max_bytes, 16 * 1024 * 1024);
        assert_eq!(off.timeout, Duration::from_secs(30));
        let on = fleet(&[
            "--fetch",
            "--fetch-allow",
            "192.0.2.0/24",
            "--fetch-allow",
            "198.51.100.0/24,127.0.0.0/8",
            "--fetch-deny",
            "192.0.2.9",
            "--fetch-max-bytes",
            "1000",
            "--fetch-timeout",
            "5",
        ])
        .unwrap()
        .fetch_settings()
        .unwrap();
        assert!(on.enabled);
        assert_eq!(on.policy.allow.len(), 3);
        assert!(on.policy.permits("192.0.2.1".parse().unwrap()));
        assert!(!on.policy.permits("192.0.2.9".parse().unwrap()));
        assert!(!on.policy.permits("203.0.113.1".parse().unwrap()));
        assert_eq!((on.max_bytes, on.timeout), (1000, Duration::from_secs(5)));
        let bad = fleet(&["--fetch-deny", "nope"]).unwrap().fetch_settings().unwrap_err().to_string();
        assert!(bad.contains("nope"), "{bad}");
        assert!(fleet(&["--fetch-timeout", "0"]).unwrap().fetch_settings().is_err());
    }

    #[test]
    fn recordings_default_to_the_home_and_can_move_or_be_turned_off() {
        assert_eq!(recordings(&[]), Some(PathBuf::from("/home/decnet/recordings")));
        assert_eq!(recordings(&["--recordings-dir", "/srv/casts"]), Some(PathBuf::from("/srv/casts")));
        assert_eq!(recordings(&["--no-recordings"]), None);
        assert_eq!(recordings(&["--recordings-dir", "/srv/casts", "--no-recordings"]), None);
    }
}
