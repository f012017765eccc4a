//! The collector's counters, shared by the receivers and the pipeline and
//! reported in every `system.collector.health` heartbeat.
//!
//! Why so many: an operator looking at a quiet dashboard must be able to
//! tell "nobody attacked" from "lines arrive but are malformed" from
//! "lines are dropped because one source floods us". Drops are also kept
//! per sending address (bounded), because the fix for a flood is usually
//! at that one sender.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{Map, Value};

/// Sending addresses tracked for per-source drops; the rest are summed
/// under `other`, so a spoofed-UDP flood cannot grow the map without bound.
pub const MAX_TRACKED_SOURCES: usize = 256;

#[derive(Debug, Default)]
pub struct Stats {
    /// Lines framed by a receiver (before any filtering).
    pub received: AtomicU64,
    /// Of `received`: by transport (UNIX socket, TCP, UDP); Docker's are
    /// `docker_lines`. Counted by [`Stats::received_on`].
    pub received_unix: AtomicU64,
    pub received_tcp: AtomicU64,
    pub received_udp: AtomicU64,
    /// Lines that were valid RFC 5424.
    pub parsed: AtomicU64,
    /// Lines that were not (kept in the raw log only).
    pub malformed: AtomicU64,
    /// Lines lost before reaching the raw log: queue full (UDP), over the
    /// line limit, a TCP frame cut off by the peer closing.
    pub dropped: AtomicU64,
    /// Of `dropped`: over the line limit.
    pub oversize: AtomicU64,
    /// Parsed lines from noise apps (raw log only).
    pub noise: AtomicU64,
    /// Parsed lines suppressed as duplicates of a recent connect/close.
    pub deduped: AtomicU64,
    /// Records written to `<log>.json`.
    pub stored: AtomicU64,
    /// Failed appends to either file (the batch is lost for that file).
    pub write_errors: AtomicU64,
    /// TCP connections open now.
    pub connections: AtomicU64,
    /// TCP connections refused by the total or per-source limit.
    pub connections_refused: AtomicU64,
    /// TCP connections and UDP datagrams from senders outside `--allow`.
    pub not_allowed: AtomicU64,
    /// Records stored flagged untrusted (network senders not in `--trust-network`).
    pub untrusted: AtomicU64,
    /// Times the raw log was rotated for its disk budget.
    pub raw_rotations: AtomicU64,
    /// The UDP listener's port (0: none), to find its kernel drop counter.
    pub udp_port: AtomicU64,
    /// TCP connections closed for being idle.
    pub idle_closed: AtomicU64,
    /// Lines waiting for the pipeline (updated by it each batch).
    pub queue_depth: AtomicU64,
    /// Bus events dropped because the queue to the bus was full.
    pub publish_dropped: AtomicU64,
    /// The Docker source: [`DockerState`] as a number, containers followed
    /// now, lines read, lines over the limit, follow/daemon errors, times the
    /// daemon came back after being lost.
    pub docker_state: AtomicU64,
    pub docker_containers: AtomicU64,
    pub docker_lines: AtomicU64,
    pub docker_oversize: AtomicU64,
    pub docker_errors: AtomicU64,
    pub docker_reconnects: AtomicU64,
    per_source_drops: Mutex<SourceDrops>,
}

/// Whether container output is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerState {
    /// `--no-docker`, or no usable socket configured.
    Off = 0,
    /// Configured, but the daemon does not answer (retried with backoff).
    Unreachable = 1,
    Connected = 2,
}

impl DockerState {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerState::Off => "off",
            DockerState::Unreachable => "unreachable",
            DockerState::Connected => "connected",
        }
    }
}

#[derive(Debug, Default)]
struct SourceDrops {
    by_source: HashMap<IpAddr, u64>,
    other: u64,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn set_docker_state(&self, state: DockerState) {
        self.docker_state.store(state as u64, Ordering::Relaxed);
    }

    pub fn docker_state(&self) -> DockerState {
        match Self::get(&self.docker_state) {
            1 => DockerState::Unreachable,
            2 => DockerState::Connected,
            _ => DockerState::Off,
        }
    }

    /// Count one line framed by a receiver of `transport`.
    pub fn received_on(&self, transport: super::access::Transport) {
        use super::access::Transport;
        Self::inc(&self.received);
        match transport {
            Transport::Unix => Self::inc(&self.received_unix),
            Transport::Tcp => Self::inc(&self.received_tcp),
            Transport::Udp => Self::inc(&self.received_udp),
            Transport::Docker => Self::inc(&self.docker_lines),
        }
    }

    /// Count one dropped line from `source`.
    pub fn drop_from(&self, source: IpAddr) {
        Self::inc(&self.dropped);
        let mut d = self.per_source_drops.lock().unwrap_or_else(|e| e.into_inner());
        let tracked = d.by_source.len();
        match d.by_source.get_mut(&source) {
            Some(n) => *n += 1,
            None if tracked < MAX_TRACKED_SOURCES => {
                d.by_source.insert(source, 1);
            }
            None => d.other += 1,
        }
    }

    /// Drops counted for `source` so far.
    pub fn drops_from(&self, source: IpAddr) -> u64 {
        let d = self.per_source_drops.lock().unwrap_or_else(|e| e.into_inner());
        d.by_source.get(&source).copied().unwrap_or(0)
    }

    /// The heartbeat's extra fields.
    pub fn snapshot(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (name, counter) in [
            ("received", &self.received),
            ("parsed", &self.parsed),
            ("malformed", &self.malformed),
            ("dropped", &self.dropped),
            ("oversize", &self.oversize),
            ("noise", &self.noise),
            ("deduped", &self.deduped),
            ("stored", &self.stored),
            ("write_errors", &self.write_errors),
            ("connections", &self.connections),
            ("connections_refused", &self.connections_refused),
            ("not_allowed", &self.not_allowed),
            ("untrusted", &self.untrusted),
            ("raw_rotations", &self.raw_rotations),
            ("idle_closed", &self.idle_closed),
            ("queue_depth", &self.queue_depth),
            ("publish_dropped", &self.publish_dropped),
        ] {
            m.insert(name.into(), Value::from(Self::get(counter)));
        }
        let mut by_transport = Map::new();
        for (name, counter) in [("unix", &self.received_unix), ("tcp", &self.received_tcp), ("udp", &self.received_udp)]
        {
            by_transport.insert(name.into(), Value::from(Self::get(counter)));
        }
        m.insert("received_by_transport".into(), Value::Object(by_transport));
        let d = self.per_source_drops.lock().unwrap_or_else(|e| e.into_inner());
        let mut per_source: Map<String, Value> =
            d.by_source.iter().map(|(ip, n)| (ip.to_string(), Value::from(*n))).collect();
        if d.other > 0 {
            per_source.insert("other".into(), Value::from(d.other));
        }
        m.insert("per_source_drops".into(), Value::Object(per_source));
        drop(d);
        let port = Self::get(&self.udp_port) as u16;
        if port != 0 {
            m.insert("udp_kernel_drops".into(), udp_kernel_drops(port).map(Value::from).unwrap_or(Value::Null));
        }
        let mut docker = Map::new();
        docker.insert("state".into(), Value::from(self.docker_state().as_str()));
        for (name, counter) in [
            ("containers", &self.docker_containers),
            ("lines", &self.docker_lines),
            ("oversize", &self.docker_oversize),
            ("errors", &self.docker_errors),
            ("reconnects", &self.docker_reconnects),
        ] {
            docker.insert(name.into(), Value::from(Self::get(counter)));
        }
        m.insert("docker".into(), Value::Object(docker));
        m
    }
}

/// Datagrams the kernel dropped for the UDP sockets bound to `port` (their
/// receive buffer was full: the collector did not read fast enough), from
/// the `drops` column of /proc/net/udp and udp6. `None` when unreadable.
pub fn udp_kernel_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for drops in kernel_drops_in(&text, port) {
            *total.get_or_insert(0) += drops;
        }
    }
    total
}

/// The `drops` (last column) of the rows of a /proc/net/udp table whose
/// local address has `port`.
fn kernel_drops_in(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).filter_map(move |row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let local = cols.get(1)?;
        if !local.ends_with(&wanted) {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_are_read_from_the_proc_table() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
   12: 0100007F:158A 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 17\n\
   13: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 5\n";
        assert_eq!(kernel_drops_in(table, 5514).collect::<Vec<_>>(), vec![17]);
        assert_eq!(kernel_drops_in(table, 53).collect::<Vec<_>>(), vec![5]);
        assert_eq!(kernel_drops_in(table, 1).count(), 0);
    }

    #[test]
    fn a_real_socket_that_overflows_shows_kernel_drops() {
        // A socket with the smallest receive buffer that nobody reads: the
        // kernel drops most of a burst, and the count is found by port.
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::RcvBuf, &1).unwrap();
        let addr = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..500 {
            let _ = tx.send_to(&[b'x'; 512], addr);
        }
        let drops = udp_kernel_drops(addr.port()).expect("/proc/net/udp is readable");
        assert!(drops > 0, "a 500-datagram burst into a full buffer dropped nothing");
    }

    #[test]
    fn per_source_drops_are_bounded() {
        let stats = Stats::default();
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            stats.drop_from(IpAddr::from(i.to_be_bytes()));
        }
        stats.drop_from(IpAddr::from([0, 0, 0, 0]));
        let snap = stats.snapshot();
        let per = snap["per_source_drops"].as_object().unwrap();
        assert_eq!(per.len(), MAX_TRACKED_SOURCES + 1);
        assert_eq!(per["other"], 10);
        assert_eq!(per["0.0.0.0"], 2);
        assert_eq!(snap["dropped"], MAX_TRACKED_SOURCES as u64 + 11);
    }
}
