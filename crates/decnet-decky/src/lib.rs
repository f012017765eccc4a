//! decnet's attacker-facing side: native deckies, in-process honeypot
//! listeners that really answer, each from its decky's [`persona`].
//!
//! This crate holds everything an attacker's bytes touch (the protocols
//! in [`services`], one file each behind [`services::Protocol`], the
//! shell, the line format) and nothing else: no SQL, no HTTP server, so
//! it can be fuzzed and reviewed on its own.
//!
//! Each decky has its own IP address (on one machine, an address of
//! 127.0.0.0/8, all of which is loopback on Linux) and runs its services
//! as listeners inside the process that deployed it (the mutator, through
//! the `native` deploy driver). Every interaction becomes one RFC 5424
//! line in the fleet-wide format ([`crate::events::rfc5424::format_event`])
//! handed to a [`sink::LineSink`], which ships it to the collector.
//!
//! Everything an attacker controls is bounded ([`Limits`]): line length,
//! idle time, session duration, bytes per session, lines and bytes of log
//! per session, and concurrent sessions per decky and per source address. A hostile client can end its own session, never another's,
//! and never blocks the process: each session is its own task, and the
//! sink never waits on the network.

pub mod artifacts;
pub mod auth;
pub mod capture;
pub mod catalogue;
pub mod datagram_rate;
pub mod event;
pub mod fetch;
pub mod io;
pub mod listener;
pub mod net_policy;
pub mod netns;
pub mod persona;
pub mod recording;
pub mod rfc5424;
pub mod services;
pub mod shared_port;
pub mod shell;
pub mod sink;
pub mod udp;

pub use persona::Persona;
pub use services::{ftp, http, https, smtp, ssh, telnet};

use std::sync::Arc;
use std::time::Duration;

/// The default port of a natively served service, `None` when decnet has
/// no native honeypot for it.
pub fn default_port(service: &str) -> Option<u16> {
    services::protocol(service).map(|p| p.default_port())
}

/// Every port a natively served service opens at its defaults: its own,
/// then its companions' (conpot: 502, 102). Empty when not served.
pub fn default_ports(service: &str) -> Vec<u16> {
    services::protocol(service)
        .map(|p| std::iter::once(p.default_port()).chain(p.companions().iter().map(|c| c.default_port())).collect())
        .unwrap_or_default()
}

/// Whether decnet serves `service` natively.
pub fn is_served(service: &str) -> bool {
    services::protocol(service).is_some()
}

/// Bounds on what one attacker can make a decky do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest accepted input line (bytes, without the line end). A longer
    /// line closes the session: no protocol here needs more.
    pub max_line: usize,
    /// A session with nothing received for this long is closed.
    pub idle: Duration,
    /// A session is closed after this long, however busy.
    pub max_session: Duration,
    /// Bytes a client may send in one session before it is closed.
    pub max_bytes: u64,
    /// Concurrent sessions per decky (all its services together); a
    /// connection beyond it is closed at once.
    pub max_sessions: usize,
    /// Concurrent sessions of one source address on one decky, so a single
    /// address cannot hold every slot and blind the decky to everyone else.
    pub max_sessions_per_source: usize,
    /// Log lines one session may produce (besides its closing
    /// `disconnect` and `session_recorded`); past it one
    /// `log_budget_exhausted` line is written and the rest are counted only.
    pub max_log_lines: u64,
    /// Bytes of log one session may produce, counted like `max_log_lines`.
    pub max_log_bytes: u64,
    /// Commands kept for `session_recorded` (each is logged on its own anyway).
    pub max_recorded_commands: usize,
    /// Bytes of one session's recording file (see [`recording`]).
    pub max_recording_bytes: usize,
    /// What UDP services take from each source (see [`udp`]).
    pub datagrams: datagram_rate::DatagramLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            idle: Duration::from_secs(120),
            max_session: Duration::from_secs(900),
            max_bytes: 1024 * 1024,
            max_sessions: 64,
            // A quarter: three other addresses can still be heard while one
            // holds its share.
            max_sessions_per_source: 16,
            // ~2,000 interactions are far beyond any human session and a
            // few hundred KB of log; 1 MiB matches the input budget, so a
            // session logs at most about as much as it sent.
            max_log_lines: 2_000,
            max_log_bytes: 1024 * 1024,
            max_recorded_commands: 200,
            max_recording_bytes: recording::DEFAULT_LIMIT,
            datagrams: datagram_rate::DatagramLimits::default(),
        }
    }
}

/// What every session of one decky shares: its name (the HOSTNAME of its
/// lines), its persona, the sink, the limits, the session slots, the SSH
/// host keys and the per-source password attempt counts.
pub struct DeckyContext {
    pub name: String,
    pub persona: Arc<Persona>,
    pub sink: sink::LineSink,
    pub limits: Limits,
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Made when the ssh port first opens, then kept (RSA takes seconds).
    pub host_keys: ssh::host_keys::HostKeys,
    /// Password attempts per source, across connections and services.
    pub auth: auth::AuthTracker,
    /// Sessions open per source address, and when each address last had a
    /// refused connection logged (see [`listener`]).
    pub sources: std::sync::Mutex<listener::SourceSlots>,
    /// The UDP services' per-source and per-decky datagram budgets.
    pub datagram_rates: std::sync::Mutex<datagram_rate::DatagramRates>,
    /// The services listening now (catalogue name → port), kept by
    /// [`listener::ServiceListener`]: what the decky's mDNS advertises.
    pub serving: std::sync::Mutex<std::collections::BTreeMap<String, u16>>,
    /// The `https` service's TLS configuration (its self-signed
    /// certificate), made when the decky's first https listener opens and
    /// kept for the decky's life, so a rotated-back https serves the same
    /// certificate.
    tls: std::sync::OnceLock<Result<Arc<rustls::ServerConfig>, String>>,
    /// Secret the TLS key is derived from: per installation and per decky,
    /// so the certificate is stable across restarts without a second seed.
    tls_secret: Vec<u8>,
    /// Where shell sessions are recorded (`<dir>/<decky>/<sid>.cast`);
    /// `None`: not recorded.
    pub recordings: Option<std::path::PathBuf>,
    /// The quarantine and fetch policy for what attackers bring
    /// ([`capture`]); `None`: nothing is stored, downloads are only logged.
    pub artifacts: Option<Arc<artifacts::Artifacts>>,
}

/// What a decky keeps on disk; each `None` when it is not kept.
#[derive(Clone, Default)]
pub struct Keeping {
    /// Where shell sessions are recorded (`<dir>/<decky>/<sid>.cast`).
    pub recordings: Option<std::path::PathBuf>,
    /// The quarantine and fetch policy for what attackers bring.
    pub artifacts: Option<Arc<artifacts::Artifacts>>,
    /// Where its SSH host keys are cached across restarts.
    pub host_keys: Option<std::path::PathBuf>,
}

impl DeckyContext {
    pub fn new(name: &str, persona: Persona, sink: sink::LineSink, limits: Limits, host_key_seed: &[u8]) -> Arc<Self> {
        Self::with_recordings(name, persona, sink, limits, host_key_seed, None)
    }

    /// As [`DeckyContext::new`], recording shell sessions under `recordings`.
    pub fn with_recordings(
        name: &str,
        persona: Persona,
        sink: sink::LineSink,
        limits: Limits,
        host_key_seed: &[u8],
        recordings: Option<std::path::PathBuf>,
    ) -> Arc<Self> {
        Self::keeping(name, persona, sink, limits, host_key_seed, Keeping { recordings, ..Keeping::default() })
    }

    /// As [`DeckyContext::new`], keeping on disk what `keeping` names.
    pub fn keeping(
        name: &str,
        persona: Persona,
        sink: sink::LineSink,
        limits: Limits,
        host_key_seed: &[u8],
        keeping: Keeping,
    ) -> Arc<Self> {
        Arc::new(DeckyContext {
            recordings: keeping.recordings,
            artifacts: keeping.artifacts,
            name: name.to_string(),
            host_keys: ssh::host_keys::HostKeys::cached(host_key_seed, name, &persona, keeping.host_keys),
            auth: auth::AuthTracker::default(),
            persona: Arc::new(persona),
            sink,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_sessions.max(1))),
            sources: std::sync::Mutex::new(listener::SourceSlots::default()),
            datagram_rates: std::sync::Mutex::new(datagram_rate::DatagramRates::new(limits.datagrams.clone())),
            serving: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            limits,
            tls: std::sync::OnceLock::new(),
            tls_secret: {
                let mut material = host_key_seed.to_vec();
                material.extend_from_slice(b"\0decnet-tls-key\0");
                material.extend_from_slice(name.as_bytes());
                ring::digest::digest(&ring::digest::SHA256, &material).as_ref().to_vec()
            },
        })
    }

    /// The decky's TLS configuration, made on first use.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.tls.get_or_init(|| https::server_config(&self.persona, &self.tls_secret)).clone()
    }
}
