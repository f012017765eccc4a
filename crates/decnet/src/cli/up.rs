//! `decnet up`: the whole stack on one machine, for a first run and for
//! development.
//!
//! It runs the bus, the API and the mutator as supervised child processes
//! of this same binary (see [`crate::supervisor`]), all sharing one
//! `$DECNET_HOME`: the socket, the SQLite file, the ingest log. On first
//! start it creates an `admin` user (password printed once) and deploys a
//! small demo fleet of native deckies (in-process honeypots on 127.1.0.N,
//! see [`crate::decky`]) that rotate every few minutes, so an attacker can
//! be played at once without docker. With `--prober` / `--sniffer` it also
//! runs the fingerprinting workers (opt-in; see those flags for why).

use rand::distr::{Alphanumeric, SampleString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::auth::Role;
use crate::mutator::drivers::DriverKind;
use crate::supervisor::{supervise, ChildSpec};

/// The demo fleet deployed on first start.
pub const DEMO_FLEET: &str = r#"# decnet demo fleet, deployed by `decnet up` on first start.
# Each decky has its own loopback address (the native driver's listeners
# bind there), starts with the services listed and then rotates through its
# archetype's pool every `interval` minutes, one service at a time and only
# among the services decnet serves natively (each persona, the host a decky
# claims to be, is derived from its name and archetype; override any of its
# fields in a [decky.persona] table).
interval = 5

[[decky]]
name = "web-01"
archetype = "linux-server"
services = ["ssh", "http", "https", "ftp"]
address = "127.1.0.1"

[[decky]]
name = "ws-finance"
archetype = "windows-workstation"
services = ["http"]
address = "127.1.0.2"

[[decky]]
name = "db-02"
archetype = "database-host"
services = ["ssh"]
address = "127.1.0.3"

[[decky]]
name = "cam-lobby"
archetype = "iot-device"
services = ["telnet", "http"]
address = "127.1.0.4"
"#;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Address for the API and dashboard.
    #[arg(long, env = "DECNET_API_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Deploy driver for the mutator (native: in-process honeypots, no
    /// docker; `command` takes its executable from DECNET_MUTATOR_COMMAND).
    #[arg(long, value_enum, env = "DECNET_MUTATOR_DRIVER", default_value = "native")]
    pub driver: DriverKind,
    /// Native driver: added to every default port. Unset, `up` uses 0 when
    /// it can bind the well-known ports (root, or nothing else on them)
    /// and 10000 otherwise (ssh on 10022, http on 10080, …).
    #[arg(long, env = "DECNET_NATIVE_PORT_OFFSET")]
    pub native_port_offset: Option<u16>,
    /// Do not deploy the demo fleet on first start.
    #[arg(long)]
    pub no_demo: bool,
    /// Bus socket of the stack (default: $DECNET_HOME/bus.sock). Honoured
    /// from the environment so `decnet sub` in the same shell talks to it.
    #[arg(long, env = "DECNET_BUS_SOCKET")]
    pub socket: Option<PathBuf>,
    /// SQLite database (default: $DECNET_HOME/decnet.db).
    #[arg(long, env = "DECNET_DB")]
    pub db: Option<PathBuf>,
    /// RFC 5424 ingest log (default: $DECNET_HOME/ingest.log).
    #[arg(long = "ingest-log", env = "DECNET_INGEST_LOG_FILE")]
    pub ingest_log: Option<PathBuf>,
    /// Also run the prober: it probes back every attacker the profiler
    /// observes (JARM, TLS certificate, HASSH, TCP SYN-ACK) on the ports of
    /// `decnet prober` (DECNET_PROBER_* variables apply), within its policy
    /// (default: loopback only). Off by default: it sends traffic towards
    /// attacker addresses, which an operator should choose to do.
    #[arg(long, env = "DECNET_UP_PROBER")]
    pub prober: bool,
    /// Also run the sniffer: passive fingerprints (JA3/JA4, SYN, SSH banner,
    /// …) of traffic to the deckies' addresses on `lo` (DECNET_SNIFFER_*
    /// variables apply). Off by default: it needs CAP_NET_RAW (without it,
    /// it says so once in its log and in its heartbeat, and waits) and it
    /// reads every packet on the interface.
    #[arg(long, env = "DECNET_UP_SNIFFER")]
    pub sniffer: bool,
    /// Native driver: folder of the shell sessions' asciicast recordings
    /// (default: $DECNET_HOME/recordings).
    #[arg(long, env = "DECNET_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Native driver: do not record shell sessions.
    #[arg(long, env = "DECNET_NO_RECORDINGS")]
    pub no_recordings: bool,
    /// Deckies on a real LAN (each its own namespace, MAC and address;
    /// needs CAP_NET_ADMIN). The demo fleet then takes its addresses from
    /// --lan-range.
    #[command(flatten)]
    pub lan: super::mutator::LanArgs,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Children get the driver back as its command-line name.
    let driver = clap::ValueEnum::to_possible_value(&args.driver).map(|v| v.get_name().to_string()).unwrap_or_default();
    let lan = args.lan.lan()?;
    if lan.is_some() && args.lan.lan_range.is_none() && !args.no_demo {
        anyhow::bail!("--lan-parent needs --lan-range for the demo fleet's addresses (or --no-demo)");
    }
    let home = crate::state_dir::prepare_home()?;
    // Held for the whole run: a second `up`, `mutator` or `api` on this
    // home is refused; our own children find them held by their parent.
    let _locks = [crate::lock::acquire(&home, "api")?, crate::lock::acquire(&home, "mutator")?];
    let socket = args.socket.clone().unwrap_or_else(|| home.join("bus.sock"));
    let db = args.db.clone().unwrap_or_else(|| home.join("decnet.db"));
    let ingest = args.ingest_log.clone().unwrap_or_else(|| home.join("ingest.log"));
    for (what, path) in [("bus socket", &socket), ("database", &db), ("ingest log", &ingest)] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            anyhow::bail!("{what} {}: folder {} does not exist", path.display(), parent.display());
        }
    }
    tracing::info!(socket = %socket.display(), db = %db.display(), ingest = %ingest.display(), "stack paths");

    // Fail early, with the cause, on what would otherwise be a restart loop.
    let listener = std::net::TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the API: {e} (use --listen)", args.listen))?;
    let api_addr = listener.local_addr()?;
    drop(listener);

    let pool = crate::store::open(&db).await?;
    let admin_password = ensure_admin(&pool).await?;
    // Kept at once (not only when printed): a start that fails later
    // must not lose the only copy of a password already in the database.
    if let Some(password) = &admin_password {
        if let Err(e) = crate::initial_admin::write(&home, password) {
            tracing::warn!(error = %e, "cannot keep the initial admin password in a file; copy it from the screen");
        }
    }
    let first_start = crate::store::fleet::list(&pool).await?.is_empty();
    pool.close().await;

    let port_offset = match (args.driver, args.native_port_offset) {
        (_, Some(offset)) => offset,
        (DriverKind::Native, None) => native_port_offset(),
        _ => 0,
    };
    let port_offset_text = port_offset.to_string();
    // The deckies ship over the collector's UNIX socket (the trusted path,
    // see docs/collector.md); its UDP/TCP listener is for network sources.
    let collector_addr =
        std::env::var("DECNET_COLLECTOR_LISTEN").unwrap_or_else(|_| crate::collector::DEFAULT_LISTEN.into());
    let collector_socket = std::env::var_os("DECNET_COLLECTOR_SOCKET")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(crate::collector::SOCKET_NAME));
    let recordings = args.recordings_dir.clone().unwrap_or_else(|| home.join("recordings"));
    let no_recordings = args.no_recordings.to_string();
    // The LAN placement reaches the mutator and one-shot commands as the
    // environment their flags read.
    let lan_env: Vec<(&str, String)> = match &args.lan.lan_parent {
        Some(parent) => {
            let mut v = vec![
                ("DECNET_LAN_PARENT", parent.clone()),
                ("DECNET_LAN_PREFIX", args.lan.lan_prefix.to_string()),
                (
                    "DECNET_LAN_MODE",
                    clap::ValueEnum::to_possible_value(&args.lan.lan_mode)
                        .map(|v| v.get_name().to_string())
                        .unwrap_or_default(),
                ),
            ];
            if let Some((first, last)) = args.lan.lan_range {
                v.push(("DECNET_LAN_RANGE", format!("{first}-{last}")));
            }
            if let Some(gw) = args.lan.lan_gateway {
                v.push(("DECNET_LAN_GATEWAY", gw.to_string()));
            }
            v
        }
        None => Vec::new(),
    };
    let artifacts = home.join("artifacts");
    let env = |spec: ChildSpec| {
        let spec = lan_env.iter().fold(spec, |spec, (k, v)| spec.env(k, v));
        spec.env("DECNET_HOME", &home)
            // The quarantine under the home, and fetching off: what an
            // attacker downloads is only recorded unless an operator runs
            // the mutator with --fetch and a policy.
            .env("DECNET_ARTIFACTS_DIR", &artifacts)
            .env("DECNET_FETCH", "false")
            .env("DECNET_RECORDINGS_DIR", &recordings)
            .env("DECNET_NO_RECORDINGS", &no_recordings)
            .env("DECNET_NATIVE_PORT_OFFSET", &port_offset_text)
            .env("DECNET_BUS_SOCKET", &socket)
            .env("DECNET_DB", &db)
            .env("DECNET_INGEST_LOG_FILE", &ingest)
            .env("DECNET_COLLECTOR_LISTEN", &collector_addr)
            .env("DECNET_COLLECTOR_SOCKET", &collector_socket)
    };
    // The API starts after the bus and so misses its first heartbeat: a
    // 2 s period shows the bus `ok` on the dashboard at once instead of
    // after production's 10 s.
    let bus = env(ChildSpec::this_binary("bus", &["bus", "--heartbeat-secs", "2"])?);
    let api = env(ChildSpec::this_binary("api", &["api", "--listen", &api_addr.to_string()])?);
    // A shorter heartbeat than production's 30 s, so the dashboard shows a
    // restarted mutator within seconds in development.
    let mutator = env(ChildSpec::this_binary("mutator", &["mutator", "--driver", &driver, "--heartbeat-secs", "10"])?);
    // The syslog collector the deckies send to (its UNIX socket; network
    // syslog on DECNET_COLLECTOR_LISTEN, default 127.0.0.1:5514); the API's
    // ingester stores what it writes.
    let collector = env(ChildSpec::this_binary("collector", &["collector", "--heartbeat-secs", "10"])?);
    // The profiler and clusterer turn collected logs into attackers and
    // identities for the dashboard (same short heartbeat, for the same reason).
    let profiler = env(ChildSpec::this_binary("profiler", &["profiler", "--heartbeat-secs", "10"])?);
    let clusterer = env(ChildSpec::this_binary("clusterer", &["clusterer", "--heartbeat-secs", "10"])?);
    // The senses, when asked for (see --prober/--sniffer for why they are opt-in).
    let mut senses = Vec::new();
    if args.prober {
        senses.push(env(ChildSpec::this_binary("prober", &["prober"])?));
    }
    if args.sniffer {
        senses.push(env(ChildSpec::this_binary("sniffer", &["sniffer"])?));
    }

    // The Workers page lists what this deployment runs, so no row can only
    // ever be `unknown` (agent, updater and forwarder are not started here).
    let mut known_workers = vec!["api", "bus", "mutator", "collector", "profiler", "clusterer"];
    known_workers.extend(senses.iter().map(|s| s.name.as_str()));
    let api = api.env("DECNET_KNOWN_WORKERS", known_workers.join(","));

    let shutdown = CancellationToken::new();
    super::bus::spawn_signal_handler(&shutdown)?;

    // The bus outlives the workers at shutdown, so they can say goodbye on it.
    let bus_stop = CancellationToken::new();
    let bus_task = tokio::spawn(supervise(bus, bus_stop.clone()));
    if !wait_for_socket(&socket, Duration::from_secs(10)).await {
        bus_stop.cancel();
        let _ = bus_task.await;
        anyhow::bail!("the bus did not come up on {} within 10 s (see its log above)", socket.display());
    }

    if first_start && !args.no_demo {
        let fleet_file = home.join("demo-fleet.toml");
        // On a LAN the demo deckies take addresses from its range.
        let demo: String = if lan.is_some() {
            DEMO_FLEET.lines().filter(|l| !l.starts_with("address =")).map(|l| format!("{l}\n")).collect()
        } else {
            DEMO_FLEET.to_string()
        };
        std::fs::write(&fleet_file, demo).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", fleet_file.display()))?;
        let status = tokio::process::Command::new(std::env::current_exe()?)
            .arg("deploy")
            .arg("--config")
            .arg(&fleet_file)
            // `up` starts its mutator after this deploy: nothing to wait for.
            .arg("--wait-secs")
            .arg("0")
            .arg("--driver")
            .arg(&driver)
            .env("DECNET_HOME", &home)
            .env("DECNET_BUS_SOCKET", &socket)
            .env("DECNET_DB", &db)
            .env("DECNET_INGEST_LOG_FILE", &ingest)
            .envs(lan_env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .await?;
        if !status.success() {
            tracing::warn!(%status, "demo fleet deploy failed; continuing without it");
        }
    }

    // The API first: its registry must be listening before the mutator's
    // first heartbeat, or the dashboard shows the mutator unknown until the
    // next one.
    let workers_stop = CancellationToken::new();
    let api_task = tokio::spawn(supervise(api, workers_stop.clone()));
    if !wait_for_api(&api_addr, Duration::from_secs(15)).await {
        tracing::warn!(addr = %api_addr, "the API is not answering yet; starting the mutator anyway");
    }
    let mut workers = vec![
        api_task,
        tokio::spawn(supervise(mutator, workers_stop.clone())),
        tokio::spawn(supervise(collector, workers_stop.clone())),
        tokio::spawn(supervise(profiler, workers_stop.clone())),
        tokio::spawn(supervise(clusterer, workers_stop.clone())),
    ];
    let sense_names: Vec<String> = senses.iter().map(|s| s.name.clone()).collect();
    workers.extend(senses.into_iter().map(|spec| tokio::spawn(supervise(spec, workers_stop.clone()))));

    println!();
    println!("decnet is up (state in {})", home.display());
    println!("  dashboard and API: http://{api_addr}/");
    println!("  bus socket:        {}   (try: decnet sub 'decky.>')", socket.display());
    println!("  ingest log:        {}", ingest.display());
    println!(
        "  syslog collector:  {} (deckies), udp+tcp {collector_addr} (network, untrusted)",
        collector_socket.display()
    );
    if !sense_names.is_empty() {
        println!(
            "  fingerprinting:    {}   (try: decnet sub 'decky.*.traffic' 'attacker.fingerprinted')",
            sense_names.join(" + ")
        );
    }
    if args.driver == DriverKind::Native {
        if let Err(e) = print_deckies(&db, port_offset).await {
            tracing::warn!(error = %e, "cannot list the deckies");
        }
    }
    println!("  database:          {}", db.display());
    println!("Press Ctrl-C to stop.");
    println!();
    // Last, boxed: the one thing the operator must copy, below everything
    // else printed at start.
    let kept = crate::initial_admin::path_in(&home);
    match &admin_password {
        Some(password) => print!("{}", crate::initial_admin::render_box(password, &kept)),
        None if kept.exists() => {
            println!("The initial admin password is still in {} (removed after the first admin login).", kept.display())
        }
        None => println!("Sign in with an existing user (`decnet user add NAME --role admin` adds one)."),
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    shutdown.cancelled().await;
    workers_stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    bus_stop.cancel();
    let _ = bus_task.await;
    println!("decnet stopped");
    Ok(())
}

/// The port offset for native deckies: 0 when a well-known port can be
/// bound on the first demo address (root or CAP_NET_BIND_SERVICE, and no
/// sshd already on it), else 10000, so `up` works for any user.
fn native_port_offset() -> u16 {
    let ok = [22u16, 80, 443].iter().all(|p| std::net::TcpListener::bind(("127.1.0.1", *p)).is_ok());
    if ok {
        0
    } else {
        10_000
    }
}

/// Each deployed decky, its address and what listens there.
async fn print_deckies(db: &Path, port_offset: u16) -> anyhow::Result<()> {
    let pool = crate::store::open(db).await?;
    let deckies = crate::store::fleet::list_deployed(&pool).await?;
    let addresses = crate::store::fleet::addresses(&pool).await?;
    pool.close().await;
    if deckies.is_empty() {
        return Ok(());
    }
    println!("  deckies (native honeypots; services rotate):");
    for d in deckies {
        let address = addresses.get(&d.name).map(String::as_str).unwrap_or("(assigned at deploy)");
        let services: Vec<String> = d
            .services
            .iter()
            .map(|s| match crate::decky::default_ports(s) {
                ports if ports.is_empty() => format!("{s}(not served)"),
                // conpot:502+102: a service and its companions' ports.
                ports => {
                    let ports: Vec<String> = ports.iter().map(|p| p.saturating_add(port_offset).to_string()).collect();
                    format!("{s}:{}", ports.join("+"))
                }
            })
            .collect();
        println!("    {:<12} {:<12} {}", d.name, address, services.join(" "));
    }
    Ok(())
}

/// Create the `admin` user when the database has no users yet, returning
/// its generated password (to print once).
async fn ensure_admin(pool: &sqlx::SqlitePool) -> anyhow::Result<Option<String>> {
    if crate::store::users::count(pool).await? > 0 {
        return Ok(None);
    }
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    let hash = crate::auth::hash_password(&password)?;
    crate::store::users::create(pool, crate::initial_admin::USERNAME, &hash, Role::Admin).await?;
    Ok(Some(password))
}

async fn wait_for_api(addr: &std::net::SocketAddr, within: Duration) -> bool {
    let url = format!("http://{addr}/api/v1/health");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn wait_for_socket(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
