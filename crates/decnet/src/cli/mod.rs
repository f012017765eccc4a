//! The `decnet` command line: one subcommand per file in this folder.
//!
//! Every subcommand is an async function returning `anyhow::Result<()>`;
//! [`run`] owns the runtime, logging and the mapping of errors to a
//! message on stderr and a non-zero exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod api;
pub mod backup;
pub mod bench;
pub mod bus;
pub mod ca;
pub mod clusterer;
pub mod collector;
pub mod collector_bench;
pub mod completions;
pub mod config;
pub mod correlate;
pub mod deploy;
pub mod ingest;
pub mod install;
pub mod listings;
pub mod login;
pub mod logship;
pub mod mutate;
pub mod mutator;
pub mod parse;
pub mod probe;
pub mod prober;
pub mod profiler;
pub mod pubsub;
pub mod sniffer;
pub mod teardown;
pub mod terminal;
pub mod up;
pub mod user;
pub mod webhook;
pub mod workers;

#[derive(Debug, Parser)]
#[command(
    name = "decnet",
    version,
    about = "decnet: service bus, control plane and mutator for a honeypot deception network"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Config file: a [section] per subcommand, keys = its long flag names
    /// (precedence: flag > environment > file > default). Default:
    /// $DECNET_HOME/decnet.toml, else /etc/decnet/decnet.toml, if present.
    #[arg(long, global = true, env = "DECNET_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bus daemon (UNIX-socket pub/sub broker, one per host).
    Bus(bus::BusArgs),
    /// Publish one event on the bus.
    Pub(pubsub::PubArgs),
    /// Print events matching patterns, one envelope JSON per line.
    Sub(pubsub::SubArgs),
    /// Run the whole stack locally: bus, API + dashboard, mutator, demo fleet.
    Up(up::UpArgs),
    /// Run the HTTP control plane (worker registry, worker stop/start).
    Api(api::ApiArgs),
    /// Manage control-plane users.
    User(user::UserArgs),
    /// Log in to the API and store the token under $DECNET_HOME.
    Login(login::LoginArgs),
    /// List, stop and start workers through the API.
    Workers(workers::WorkersArgs),
    /// Manage alert webhooks through the API: add, list, test, del, log.
    Webhook(webhook::WebhookArgs),
    /// Fold the ingest log's mutation events per decky and check every chain is unbroken.
    Correlate(correlate::CorrelateArgs),
    /// Deploy the deckies of a fleet file and start rotating them.
    Deploy(deploy::DeployArgs),
    /// Tear deckies down (the named ones, or every one with --all --yes).
    Teardown(teardown::TeardownArgs),
    /// Run the mutator: rotate decky services on schedule and on request.
    Mutator(mutator::MutatorArgs),
    /// Ask for deckies to be mutated now (or do it in-process with --now).
    Mutate(mutate::MutateArgs),
    /// Load the bus (or, with --nats, a NATS server) and report throughput, latency and drops (runs decnet-bench).
    #[command(disable_help_flag = true)]
    Bench(bench::BenchArgs),
    /// Run the syslog collector: hear the deckies (UDP/TCP), write the ingest log and its parsed records.
    Collector(collector::CollectorArgs),
    /// Run the ingester alone: the collector's parsed records into the database (`decnet api` runs one too).
    Ingest(ingest::IngestArgs),
    /// Parse syslog lines from stdin and print the collector's records as JSON lines.
    Parse(parse::ParseArgs),
    /// Measure collector lines/s end to end (TCP → ingest log → ingester → SQLite).
    BenchCollector(collector_bench::BenchCollectorArgs),
    /// Run the profiler: fold collected logs into attacker profiles.
    Profiler(profiler::ProfilerArgs),
    /// Run the clusterer: link attackers sharing a strong fingerprint into identities.
    Clusterer(clusterer::ClustererArgs),
    /// Run one fingerprint probe (jarm, hassh, tls, tcpfp) against HOST:PORT and print it as JSON.
    Probe(probe::ProbeArgs),
    /// Run the prober: fingerprint observed attackers (JARM, HASSH, TLS certificate, TCP).
    Prober(prober::ProberArgs),
    /// Run the sniffer: passive fingerprints (SYN, JA3/JA4, JA3S/JA4S, SSH banner, timing) of traffic to deckies.
    Sniffer(sniffer::SnifferArgs),
    /// Make and revoke the log-shipping certificates (`ca init`, `ca issue NAME`, `ca revoke NAME`).
    Ca(ca::CaArgs),
    /// Check the config file and print each daemon's effective settings.
    Config(config::ConfigArgs),
    /// Copy the database to a file (consistent while decnet runs; mode 0600).
    Backup(backup::BackupArgs),
    /// Replace the database with a backup (stop the daemons first).
    Restore(backup::RestoreArgs),
    /// Receive shipped logs from forwarders (master side, mutual TLS).
    Listener(logship::ListenerArgs),
    /// Ship this host's ingest log to the master's listener.
    Forwarder(logship::ForwarderArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(completions::CompletionsArgs),
    /// List attacker profiles through the API (table, or --json).
    Attackers(listings::AttackersArgs),
    /// List the fleet's deckies through the API (table, or --json).
    Deckies(listings::DeckiesArgs),
    /// Install the decnet user, folders, config, systemd units and logrotate snippet (from this binary alone).
    Install(install::InstallArgs),
}

/// Log to stderr; `RUST_LOG` (e.g. `debug`, `decnet_bus=trace`) overrides
/// the default `info`. async-nats is held to warnings unless `RUST_LOG`
/// names it: it logs every client event at info, one line per message a
/// full subscription drops (56,798 lines in one overload run, issue 25);
/// the NATS bridge logs connects, disconnects and one line per burst of
/// losses itself.
pub fn init_logging() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let spec = if spec.contains("async_nats") { spec } else { format!("{spec},async_nats=warn") };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    // The bus daemon routes on one thread unless told otherwise (see
    // `decnet bus --threads`); everything else uses the default pool.
    let mut builder = match &cli.command {
        Command::Bus(args) if args.threads == 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Bus(args) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads.into());
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        match cli.command {
            Command::Bus(args) => bus::run(args).await,
            Command::Pub(args) => pubsub::run_pub(args).await,
            Command::Sub(args) => pubsub::run_sub(args).await,
            Command::Up(args) => up::run(args).await,
            Command::Api(args) => api::run(args).await,
            Command::User(args) => user::run(args).await,
            Command::Login(args) => login::run(args).await,
            Command::Workers(args) => workers::run(args).await,
            Command::Webhook(args) => webhook::run(args).await,
            Command::Correlate(args) => correlate::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Teardown(args) => teardown::run(args).await,
            Command::Mutator(args) => mutator::run(args).await,
            Command::Mutate(args) => mutate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Collector(args) => collector::run(args).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::Parse(args) => parse::run(args).await,
            Command::BenchCollector(args) => collector_bench::run(args).await,
            Command::Profiler(args) => profiler::run(args).await,
            Command::Clusterer(args) => clusterer::run(args).await,
            Command::Probe(args) => probe::run(args).await,
            Command::Prober(args) => prober::run(args).await,
            Command::Sniffer(args) => sniffer::run(args).await,
            Command::Ca(args) => ca::run(args).await,
            Command::Config(args) => config::run(args, cli.config).await,
            Command::Backup(args) => backup::run_backup(args).await,
            Command::Restore(args) => backup::run_restore(args).await,
            Command::Listener(args) => logship::run_listener(args).await,
            Command::Forwarder(args) => logship::run_forwarder(args).await,
            Command::Completions(args) => completions::run(args).await,
            Command::Attackers(args) => listings::run_attackers(args).await,
            Command::Deckies(args) => listings::run_deckies(args).await,
            Command::Install(args) => install::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes joined by `: `, each said once. Many of our errors
/// (and sqlx's, and thiserror ones with `{0}`) already print their source
/// in their own message *and* return it from `source()`, so anyhow's `{:#}`
/// printed the cause twice (`...: No such file or directory (os error 2):
/// No such file or directory (os error 2)`). A cause whose text is already
/// in what was printed is skipped.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read fleet file /x/y: {0}")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let e = anyhow::Error::new(Wraps(io));
        assert_eq!(error_chain(&e), format!("cannot read fleet file /x/y: {text}"));
        // A context that does not repeat its cause keeps it.
        let e = anyhow::Error::new(std::io::Error::other("disk on fire")).context("cannot open /x/y");
        assert_eq!(error_chain(&e), "cannot open /x/y: disk on fire");
    }
}
