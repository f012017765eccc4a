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
    /// Native driver: the collector the deckies' lines are sent to
    /// (syslog over TCP, octet counting).
    #[arg(long, env = "DECNET_COLLECTOR_ADDR", default_value = crate::decky::sink::DEFAULT_COLLECTOR_ADDR)]
    pub collector_addr: std::net::SocketAddr,
    /// Native driver: added to every service's default port (10000 puts
    /// ssh on 10022), for hosts where ports below 1024 are not available.
    #[arg(long, env = "DECNET_NATIVE_PORT_OFFSET", default_value_t = 0)]
    pub native_port_offset: u16,
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
        let seed = crate::mutator::native::load_host_key_seed(&crate::home::decnet_home())?;
        let mut options = crate::mutator::native::NativeOptions::new(self.collector_addr, seed);
        options.port_offset = self.native_port_offset;
        Ok(options)
    }

    pub fn log_path(&self) -> PathBuf {
        self.ingest_log.clone().unwrap_or_else(crate::events::default_ingest_log_path)
    }

    /// A mutator for a one-shot command. The bus is used if it is up;
    /// when it is not, events still reach the ingest log.
    pub async fn one_shot_mutator(&self, client: &str) -> anyhow::Result<(Mutator, Arc<decnet_bus::client::UnixBus>)> {
        let pool = crate::store::open(&self.db_path()).await?;
        let driver = build_driver(self.driver, self.command.as_deref(), &pool, None)?;
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
}

pub async fn run(args: MutatorArgs) -> anyhow::Result<()> {
    // Two mutators on one database break every decky's mutation chain.
    let home = crate::state_dir::prepare_home()?;
    let _lock = crate::lock::acquire(&home, "mutator")?;
    let config = MutatorConfig {
        db_path: args.fleet.db_path(),
        socket_path: args.fleet.socket_path(),
        driver: args.fleet.driver,
        command: args.fleet.command.clone(),
        poll: Duration::from_secs(args.poll_secs),
        log_path: args.fleet.log_path(),
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        native: args.fleet.native_options()?,
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
