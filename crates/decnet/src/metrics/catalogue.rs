//! Every metric decnet exposes, and where its value lives in the owning
//! worker's heartbeat.
//!
//! The heartbeat is the one place a daemon reports its counters (SPEC §7:
//! `system.<worker>.health {worker, ts, ...extra}`), so a metric is a name
//! for a heartbeat field, not a second count kept beside it: the daemon's
//! own `/metrics` renders its heartbeat fields as they would be sent now,
//! and the API's `/metrics` renders the last heartbeat of every worker it
//! heard. Adding a metric is adding a field to a worker's heartbeat and a
//! line here; `docs/deployment.md` lists every name (a test checks it).
//!
//! Counter names end in `_total`, as Prometheus expects; a field that is
//! missing from a heartbeat (a driver that has no native deckies, a daemon
//! with federation off) gives no sample rather than a made-up zero.

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Where one sample of a metric is in the heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// A dotted path into the heartbeat object (`native.lines_sent`).
    pub path: &'static str,
    /// Fixed labels of this sample (`reason="busy"`).
    pub labels: &'static [(&'static str, &'static str)],
    /// When set, the path names an object of numbers and each of its
    /// entries is one sample, its key the value of this label.
    pub per_key: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The exposed name (counters with their `_total`).
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub samples: &'static [Sample],
}

/// The metrics of one worker's heartbeat (`system.<worker>.health`).
#[derive(Debug, Clone, Copy)]
pub struct WorkerMetrics {
    pub worker: &'static str,
    pub metrics: &'static [Metric],
}

const fn at(path: &'static str) -> Sample {
    Sample { path, labels: &[], per_key: None }
}

const fn labeled(path: &'static str, labels: &'static [(&'static str, &'static str)]) -> Sample {
    Sample { path, labels, per_key: None }
}

const fn each(path: &'static str, label: &'static str) -> Sample {
    Sample { path, labels: &[], per_key: Some(label) }
}

const fn counter(name: &'static str, help: &'static str, samples: &'static [Sample]) -> Metric {
    Metric { name, kind: Kind::Counter, help, samples }
}

const fn gauge(name: &'static str, help: &'static str, samples: &'static [Sample]) -> Metric {
    Metric { name, kind: Kind::Gauge, help, samples }
}

/// The bus daemon: its broker counters, and the NATS bridge's when
/// federation is on (the same `system.bus.health`).
pub const BUS: WorkerMetrics = WorkerMetrics {
    worker: "bus",
    metrics: &[
        gauge("decnet_bus_connections", "Client connections open now.", &[at("connections")]),
        gauge("decnet_bus_subscriptions", "Subscriptions held by all clients.", &[at("subscriptions")]),
        counter("decnet_bus_events_published_total", "Events accepted from publishers.", &[at("published")]),
        counter(
            "decnet_bus_events_delivered_total",
            "Events queued to a subscriber (one per subscriber an event reached).",
            &[at("delivered")],
        ),
        counter(
            "decnet_bus_events_dropped_total",
            "Events dropped, by reason (slow_subscriber: the oldest event of a full subscriber queue).",
            &[labeled("dropped", &[("reason", "slow_subscriber")])],
        ),
        gauge("decnet_bus_queued_bytes", "Bytes waiting in all subscriber queues.", &[at("queued_bytes")]),
        gauge("decnet_bus_index_nodes", "Nodes of the subscription index.", &[at("index_nodes")]),
        gauge("decnet_bus_uptime_seconds", "Seconds since the bus daemon started.", &[at("uptime_sec")]),
        gauge("decnet_federation_connected", "1 while the NATS connection is up.", &[at("federation.connected")]),
        counter(
            "decnet_federation_connects_total",
            "Times the NATS connection came (back) up.",
            &[at("federation.connects")],
        ),
        counter(
            "decnet_federation_events_exported_total",
            "Local events handed to NATS.",
            &[at("federation.exported")],
        ),
        counter(
            "decnet_federation_events_imported_total",
            "NATS messages delivered to local subscribers.",
            &[at("federation.imported")],
        ),
        counter(
            "decnet_federation_events_dropped_total",
            "Federated events lost or refused, by reason (export_queue, rejected, own_origin, receive_overflow).",
            &[
                labeled("federation.dropped", &[("reason", "export_queue")]),
                labeled("federation.rejected", &[("reason", "rejected")]),
                labeled("federation.own_origin", &[("reason", "own_origin")]),
                labeled("federation.receive_overflow", &[("reason", "receive_overflow")]),
            ],
        ),
        counter(
            "decnet_federation_gap_events_total",
            "Events other hosts numbered that never arrived (sequence gaps).",
            &[at("federation.lost")],
        ),
    ],
};

/// The collector: syslog lines in, records out, and everything lost between.
pub const COLLECTOR: WorkerMetrics = WorkerMetrics {
    worker: "collector",
    metrics: &[
        counter(
            "decnet_collector_lines_received_total",
            "Lines framed by a receiver, by transport (tcp, udp, unix, docker).",
            &[each("received_by_transport", "transport"), labeled("docker.lines", &[("transport", "docker")])],
        ),
        counter("decnet_collector_lines_parsed_total", "Lines that were valid RFC 5424.", &[at("parsed")]),
        counter(
            "decnet_collector_parse_errors_total",
            "Lines that were not RFC 5424 (kept in the raw log only).",
            &[at("malformed")],
        ),
        counter(
            "decnet_collector_lines_dropped_total",
            "Lines lost before the raw log (queue full, over the line limit, cut off).",
            &[at("dropped")],
        ),
        counter(
            "decnet_collector_lines_dropped_by_source_total",
            "Dropped lines by sending address (the first 256 addresses; the rest under source=\"other\").",
            &[each("per_source_drops", "source")],
        ),
        counter(
            "decnet_collector_lines_oversize_total",
            "Lines over the line limit (part of the dropped).",
            &[at("oversize")],
        ),
        counter("decnet_collector_lines_noise_total", "Parsed lines from noise apps (raw log only).", &[at("noise")]),
        counter(
            "decnet_collector_lines_deduplicated_total",
            "Parsed lines suppressed as duplicates of a recent connect/close.",
            &[at("deduped")],
        ),
        counter(
            "decnet_collector_records_stored_total",
            "Records written to the JSON log (lines out).",
            &[at("stored")],
        ),
        counter("decnet_collector_write_errors_total", "Failed appends to the raw or JSON log.", &[at("write_errors")]),
        gauge("decnet_collector_connections", "TCP connections open now.", &[at("connections")]),
        counter(
            "decnet_collector_connections_refused_total",
            "Connections and datagrams refused, by reason (limit, not_allowed).",
            &[
                labeled("connections_refused", &[("reason", "limit")]),
                labeled("not_allowed", &[("reason", "not_allowed")]),
            ],
        ),
        counter(
            "decnet_collector_connections_idle_closed_total",
            "TCP connections closed for being idle.",
            &[at("idle_closed")],
        ),
        counter(
            "decnet_collector_records_untrusted_total",
            "Records stored flagged untrusted (senders outside --trust-network).",
            &[at("untrusted")],
        ),
        counter(
            "decnet_collector_raw_rotations_total",
            "Raw log rotations for its disk budget.",
            &[at("raw_rotations")],
        ),
        gauge("decnet_collector_queue_depth", "Lines waiting for the pipeline.", &[at("queue_depth")]),
        counter(
            "decnet_collector_bus_events_dropped_total",
            "Bus events dropped because the queue to the bus was full.",
            &[at("publish_dropped")],
        ),
        counter(
            "decnet_collector_udp_kernel_drops_total",
            "Datagrams the kernel dropped on the UDP socket (receive buffer full).",
            &[at("udp_kernel_drops")],
        ),
        gauge(
            "decnet_collector_docker_containers",
            "Containers whose output is followed now.",
            &[at("docker.containers")],
        ),
        counter("decnet_collector_docker_errors_total", "Docker follow and daemon errors.", &[at("docker.errors")]),
        counter(
            "decnet_collector_docker_reconnects_total",
            "Times the Docker daemon came back after being lost.",
            &[at("docker.reconnects")],
        ),
    ],
};

/// The ingester (standalone, or in `decnet api`): JSON log into SQLite.
pub const INGESTER: WorkerMetrics = WorkerMetrics {
    worker: "ingester",
    metrics: &[
        counter(
            "decnet_ingester_rows_total",
            "Log rows committed to the database (rate() gives rows/s).",
            &[at("rows")],
        ),
        counter("decnet_ingester_batches_total", "Batches committed.", &[at("batches")]),
        counter(
            "decnet_ingester_parse_errors_total",
            "Lines of the JSON log that were not a record (skipped).",
            &[at("bad_lines")],
        ),
        counter(
            "decnet_ingester_conflicts_total",
            "Batches rolled back because another ingester moved the cursor.",
            &[at("conflicts")],
        ),
        counter("decnet_ingester_gaps_total", "Stretches of the log no reader could have.", &[at("gaps")]),
        counter("decnet_ingester_credentials_new_total", "First-seen credentials stored.", &[at("credentials_new")]),
        counter("decnet_ingester_artifacts_new_total", "First-seen artifacts stored.", &[at("artifacts_new")]),
        counter("decnet_ingester_recordings_new_total", "Session recordings stored.", &[at("recordings_new")]),
        gauge("decnet_ingester_lag_bytes", "Bytes of the JSON log written but not yet ingested.", &[at("lag_bytes")]),
    ],
};

/// The mutator, and the native deckies it runs in-process.
pub const MUTATOR: WorkerMetrics = WorkerMetrics {
    worker: "mutator",
    metrics: &[
        counter(
            "decnet_decky_sessions_total",
            "Attacker sessions the native deckies accepted (TCP connections given a slot).",
            &[at("native.sessions")],
        ),
        counter(
            "decnet_decky_sessions_refused_total",
            "Connections the native deckies turned away, by reason (busy: no free slot; source: the address held its share).",
            &[
                labeled("native.sessions_refused_busy", &[("reason", "busy")]),
                labeled("native.sessions_refused_source", &[("reason", "source")]),
            ],
        ),
        counter(
            "decnet_decky_sessions_log_budget_exhausted_total",
            "Sessions that used up their log budget.",
            &[at("native.sessions_log_budget_exhausted")],
        ),
        counter("decnet_decky_lines_sent_total", "Log lines shipped to the collector.", &[at("native.lines_sent")]),
        counter(
            "decnet_decky_lines_dropped_total",
            "Log lines dropped, by reason (queue_full: the collector was away too long; datagram: past the lines a datagram may write).",
            &[
                labeled("native.lines_dropped", &[("reason", "queue_full")]),
                labeled("native.datagram_lines_dropped", &[("reason", "datagram")]),
            ],
        ),
        gauge("decnet_decky_lines_queued", "Log lines waiting for the collector.", &[at("native.lines_queued")]),
        gauge("decnet_decky_bytes_queued", "Bytes of log lines waiting for the collector.", &[at("native.bytes_queued")]),
        counter(
            "decnet_decky_collector_connects_total",
            "Connections made to the collector (more than one: it went away).",
            &[at("native.collector_connects")],
        ),
        counter(
            "decnet_decky_datagrams_refused_total",
            "Datagrams dropped by the per-source or per-decky rate.",
            &[at("native.datagrams_refused")],
        ),
        gauge("decnet_decky_listeners", "Ports the native deckies listen on.", &[at("native.listeners")]),
    ],
};

pub const PROFILER: WorkerMetrics = WorkerMetrics {
    worker: "profiler",
    metrics: &[
        counter("decnet_profiler_passes_total", "Profiling passes run.", &[at("passes")]),
        counter("decnet_profiler_pass_failures_total", "Passes that failed and were rolled back.", &[at("failures")]),
        counter("decnet_profiler_rows_total", "Log rows folded into attacker profiles.", &[at("rows")]),
        counter("decnet_profiler_attackers_scored_total", "Attacker scores (re)computed.", &[at("scored")]),
    ],
};

pub const CLUSTERER: WorkerMetrics = WorkerMetrics {
    worker: "clusterer",
    metrics: &[
        counter("decnet_clusterer_passes_total", "Clustering passes run.", &[at("passes")]),
        counter("decnet_clusterer_pass_failures_total", "Passes that failed and were retried.", &[at("failures")]),
        counter(
            "decnet_clusterer_changes_total",
            "Cluster changes, by kind (formed, linked, merged, unmerged).",
            &[
                labeled("formed", &[("change", "formed")]),
                labeled("linked", &[("change", "linked")]),
                labeled("merged", &[("change", "merged")]),
                labeled("unmerged", &[("change", "unmerged")]),
            ],
        ),
    ],
};

pub const SNIFFER: WorkerMetrics = WorkerMetrics {
    worker: "sniffer",
    metrics: &[
        counter("decnet_sniffer_packets_total", "Packets captured.", &[at("packets")]),
        counter("decnet_sniffer_packets_matched_total", "Packets to or from a decky.", &[at("matched")]),
        counter("decnet_sniffer_events_total", "Fingerprint events published.", &[at("events")]),
        counter("decnet_sniffer_events_suppressed_total", "Repeated fingerprints not published.", &[at("suppressed")]),
        counter("decnet_sniffer_store_dropped_total", "Fingerprints not stored (queue full).", &[at("store_dropped")]),
        gauge("decnet_sniffer_capturing", "1 while packets are being captured.", &[at("capturing")]),
    ],
};

pub const PROBER: WorkerMetrics = WorkerMetrics {
    worker: "prober",
    metrics: &[
        gauge("decnet_prober_targets", "Attacker addresses being probed.", &[at("targets")]),
        counter("decnet_prober_probes_total", "Probes run.", &[at("probes_run")]),
        counter("decnet_prober_fingerprints_total", "Fingerprints obtained.", &[at("fingerprints")]),
        counter("decnet_prober_failures_total", "Probes that failed.", &[at("failures")]),
        counter(
            "decnet_prober_refused_by_policy_total",
            "Probes the policy did not allow.",
            &[at("refused_by_policy")],
        ),
    ],
};

/// The log shipping pair: forwarder (sending host) and listener (master).
pub const FORWARDER: WorkerMetrics = WorkerMetrics {
    worker: "forwarder",
    metrics: &[
        counter(
            "decnet_forwarder_lines_shipped_total",
            "Log lines written to the listener (a line sent into a connection that then broke is sent, and counted, again).",
            &[at("lines_shipped")],
        ),
        gauge(
            "decnet_forwarder_lag_bytes",
            "Bytes of the local ingest log the listener has not acknowledged.",
            &[at("lag_bytes")],
        ),
        counter(
            "decnet_forwarder_connects_total",
            "Connections to the listener that reached RESUME.",
            &[at("connects")],
        ),
        counter(
            "decnet_forwarder_reconnects_total",
            "Connections to the listener after the first.",
            &[at("reconnects")],
        ),
        counter("decnet_forwarder_gaps_total", "Stretches of the log lost before they were shipped.", &[at("gaps")]),
    ],
};

pub const LISTENER: WorkerMetrics = WorkerMetrics {
    worker: "listener",
    metrics: &[
        gauge("decnet_listener_connections_open", "Forwarders connected now.", &[at("connections")]),
        counter("decnet_listener_connections_total", "Forwarder connections accepted.", &[at("connections_total")]),
        counter(
            "decnet_listener_handshakes_refused_total",
            "TLS handshakes refused or timed out.",
            &[at("handshakes_refused")],
        ),
        counter(
            "decnet_listener_lines_received_total",
            "Log lines written to the master log.",
            &[at("lines_received")],
        ),
    ],
};

/// Every worker whose heartbeat has metrics.
pub static WORKERS: &[WorkerMetrics] =
    &[BUS, COLLECTOR, INGESTER, MUTATOR, PROFILER, CLUSTERER, SNIFFER, PROBER, FORWARDER, LISTENER];

/// Metrics only the API's own endpoint has (not from a heartbeat).
pub const API_REQUESTS: &str = "decnet_api_requests_total";
pub const WORKER_UP: &str = "decnet_worker_up";
pub const WORKER_HEARTBEAT_AGE: &str = "decnet_worker_heartbeat_age_seconds";

/// The metrics of `worker`'s heartbeat, if it has any.
pub fn for_worker(worker: &str) -> Option<&'static WorkerMetrics> {
    WORKERS.iter().find(|w| w.worker == worker)
}

/// Every exposed metric name.
pub fn all_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = WORKERS.iter().flat_map(|w| w.metrics.iter().map(|m| m.name)).collect();
    names.extend([API_REQUESTS, WORKER_UP, WORKER_HEARTBEAT_AGE]);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_conventional_and_unique() {
        let names = all_names();
        let mut seen = std::collections::HashSet::new();
        for w in WORKERS {
            for m in w.metrics {
                assert!(m.name.starts_with("decnet_"), "{}", m.name);
                assert_eq!(
                    m.kind == Kind::Counter,
                    m.name.ends_with("_total"),
                    "{}: counters and only counters end in _total",
                    m.name
                );
                assert!(!m.samples.is_empty(), "{}", m.name);
            }
        }
        // A counter's family is its name without `_total`: a gauge of that
        // name would be the same family twice on one page.
        let families: Vec<&str> =
            WORKERS.iter().flat_map(|w| w.metrics.iter()).map(|m| m.name.trim_end_matches("_total")).collect();
        let mut distinct = families.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), families.len(), "two metrics share a family name: {families:?}");
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{n}");
            assert!(seen.insert(n), "{n} twice");
        }
    }
}
