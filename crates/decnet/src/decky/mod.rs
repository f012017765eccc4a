//! Native deckies: in-process honeypot listeners that really answer.
//!
//! Each decky has its own IP address (on one machine, an address of
//! 127.0.0.0/8, all of which is loopback on Linux) and runs its services
//! as listeners inside the process that deployed it (the mutator, through
//! the `native` deploy driver). Every interaction becomes one RFC 5424
//! line in the fleet-wide format ([`crate::events::rfc5424::format_event`])
//! handed to a [`sink::LineSink`], which ships it to the collector.
//!
//! Everything an attacker controls is bounded ([`Limits`]): line length,
//! idle time, session duration, bytes per session and concurrent sessions
//! per decky. A hostile client can end its own session, never another's,
//! and never blocks the process: each session is its own task, and the
//! sink never waits on the network.

pub mod event;
pub mod ftp;
pub mod http;
pub mod https;
pub mod io;
pub mod listener;
pub mod shell;
pub mod sink;
pub mod smtp;
pub mod ssh;
pub mod telnet;

use std::sync::Arc;
use std::time::Duration;

/// The services with a native honeypot, and the port each listens on by
/// default (the well-known port, what a scanner expects).
pub const NATIVE_SERVICES: &[(&str, u16)] =
    &[("ftp", 21), ("ssh", 22), ("telnet", 23), ("smtp", 25), ("http", 80), ("https", 443)];

/// The default port of a natively served service, `None` when decnet has
/// no native honeypot for it.
pub fn default_port(service: &str) -> Option<u16> {
    NATIVE_SERVICES.iter().find(|(s, _)| *s == service).map(|(_, p)| *p)
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
    /// Commands kept for `session_recorded` (each is logged on its own anyway).
    pub max_recorded_commands: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 4096,
            idle: Duration::from_secs(120),
            max_session: Duration::from_secs(900),
            max_bytes: 1024 * 1024,
            max_sessions: 64,
            max_recorded_commands: 200,
        }
    }
}

/// What every session of one decky shares: its name (the HOSTNAME of its
/// lines), the sink, the limits, the session slots and the SSH host key.
pub struct DeckyContext {
    pub name: String,
    pub sink: sink::LineSink,
    pub limits: Limits,
    pub slots: Arc<tokio::sync::Semaphore>,
    pub host_key: russh::keys::PrivateKey,
    /// The `https` service's TLS configuration (its self-signed
    /// certificate), made when the decky's first https listener opens and
    /// kept for the decky's life, so a rotated-back https serves the same
    /// certificate.
    tls: std::sync::OnceLock<Result<Arc<rustls::ServerConfig>, String>>,
}

impl DeckyContext {
    pub fn new(name: &str, sink: sink::LineSink, limits: Limits, host_key: russh::keys::PrivateKey) -> Arc<Self> {
        Arc::new(DeckyContext {
            name: name.to_string(),
            sink,
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_sessions.max(1))),
            limits,
            host_key,
            tls: std::sync::OnceLock::new(),
        })
    }

    /// The decky's TLS configuration, made on first use.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.tls.get_or_init(|| https::server_config(&self.name)).clone()
    }
}
