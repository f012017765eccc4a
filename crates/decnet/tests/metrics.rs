//! Prometheus metrics through the real binary: a bus, a collector, a native
//! mutator and an API, each with `--metrics-listen`; an attacker's SSH
//! connections to the native decky move the deckies', the collector's, the
//! ingester's and the API's counters (scraped with plain HTTP GETs before
//! and after), and every page is valid exposition text. Also: a
//! non-loopback address is refused, and the docs and the Grafana dashboard
//! name exactly the metrics that exist.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{free_port, free_tcp_udp_port, send_signal, wait_exit, wait_until, Daemon, BIN};

const IP: &str = "127.1.126.1";
const SSH_PORT: u16 = 10_022;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `GET /metrics`: the status line's code and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("metrics endpoint accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    (content_type, body.to_owned())
}

/// Check every line of an exposition page against the text format's
/// grammar (OpenMetrics 1.0, which is what prometheus-client writes and
/// Prometheus reads) and return its samples. Panics naming the bad line.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let name_re = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let sample_re = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$"#,
    )
    .unwrap();
    let label_re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    assert!(text.ends_with("# EOF\n"), "the page must end with # EOF: {text:?}");
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut seen_series = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert_eq!(i, lines.len() - 1, "# EOF before the end");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(name_re.is_match(name), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(name_re.is_match(name), "bad TYPE line {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "info", "stateset", "gaugehistogram", "unknown"]
                    .contains(&kind),
                "bad metric type in {line:?}"
            );
            assert!(families.insert(name.to_owned(), kind.to_owned()).is_none(), "family {name} declared twice");
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        let caps = sample_re.captures(line).unwrap_or_else(|| panic!("line {i} is not a valid sample: {line:?}"));
        let name = caps[1].to_owned();
        let family = families
            .iter()
            .find(|(f, kind)| name == **f || (kind.as_str() == "counter" && name == format!("{f}_total")))
            .unwrap_or_else(|| panic!("sample {name} has no TYPE line before it"));
        if family.1 == "counter" {
            assert!(name.ends_with("_total"), "counter sample without _total: {line:?}");
        }
        let labels: BTreeMap<String, String> = caps
            .get(2)
            .map(|l| label_re.captures_iter(l.as_str()).map(|c| (c[1].to_owned(), c[2].to_owned())).collect())
            .unwrap_or_default();
        assert!(seen_series.insert((name.clone(), labels.clone())), "series twice: {line:?}");
        let value: f64 = caps[3].parse().unwrap_or(f64::NAN);
        if family.1 == "counter" {
            assert!(value >= 0.0, "negative counter: {line:?}");
        }
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// Sum of the samples named `name` carrying every label in `with`.
fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn scrape_valid(addr: SocketAddr) -> Vec<Sample> {
    let (content_type, body) = scrape(addr);
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    parse_exposition(&body)
}

/// A child killed when the test ends early.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Killed {
    fn stop(mut self) {
        let Some(mut child) = self.0.take() else { return };
        send_signal(child.id() as i32, "TERM");
        if wait_exit(&mut child, 10.0).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn decnet(home: &std::path::Path, collector: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("DECNET_HOME", home)
        .env("DECNET_DB", home.join("decnet.db"))
        .env("DECNET_BUS_SOCKET", home.join("bus.sock"))
        .env("DECNET_INGEST_LOG_FILE", home.join("ingest.log"))
        .env("DECNET_COLLECTOR_ADDR", collector)
        .env("DECNET_NATIVE_PORT_OFFSET", "10000")
        .env("DECNET_MUTATOR_DRIVER", "native")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Each daemon's log beside it, for a failure to be read.
        .stderr(std::fs::File::create(home.join(format!("{}.log", args[0]))).unwrap());
    cmd
}

/// Every daemon's stderr (see [`decnet`]).
fn daemon_logs(home: &std::path::Path) -> String {
    let mut out = String::new();
    for name in ["collector", "mutator", "api", "profiler"] {
        let log = std::fs::read_to_string(home.join(format!("{name}.log"))).unwrap_or_default();
        out.push_str(&format!("--- {name}\n{log}"));
    }
    out
}

/// An attacker's look at the SSH port: read the banner, send a client
/// banner, hang up (one session, its connect and close lines).
fn knock_ssh() {
    let mut s = TcpStream::connect((IP, SSH_PORT)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut banner = [0u8; 64];
    let n = s.read(&mut banner).unwrap();
    assert!(banner[..n].starts_with(b"SSH-2.0-"), "{:?}", String::from_utf8_lossy(&banner[..n]));
    s.write_all(b"SSH-2.0-Go\r\n").unwrap();
}

#[test]
fn an_attack_moves_the_counters_every_daemon_serves() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let syslog = format!("127.0.0.1:{}", free_tcp_udp_port());
    let [bus_metrics, collector_metrics, mutator_metrics, api_metrics, api_port, profiler_metrics] =
        [free_port(), free_port(), free_port(), free_port(), free_port(), free_port()];
    let at = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let fleet = home.join("fleet.toml");
    std::fs::write(&fleet, format!("[[decky]]\nname = \"gate\"\nservices = [\"ssh\"]\naddress = \"{IP}\"\n")).unwrap();

    let bus_metrics_at = at(bus_metrics).to_string();
    let _bus = Daemon::start(home, &["--heartbeat-secs", "1", "--metrics-listen", &bus_metrics_at]);
    let deploy = decnet(home, &syslog, &["deploy", "--config", fleet.to_str().unwrap()]).output().unwrap();
    assert!(deploy.status.success(), "{deploy:?}");
    let collector = Killed(Some(
        decnet(home, &syslog, &["collector", "--listen", &syslog, "--no-unix", "--no-docker", "--heartbeat-secs", "1"])
            .args(["--metrics-listen", &at(collector_metrics).to_string()])
            .spawn()
            .unwrap(),
    ));
    let mutator = Killed(Some(
        decnet(home, &syslog, &["mutator", "--poll-secs", "1", "--heartbeat-secs", "1"])
            .args(["--metrics-listen", &at(mutator_metrics).to_string()])
            .spawn()
            .unwrap(),
    ));
    let api = Killed(Some(
        decnet(home, &syslog, &["api", "--listen", &at(api_port).to_string(), "--heartbeat-secs", "1"])
            .args(["--metrics-listen", &at(api_metrics).to_string()])
            .spawn()
            .unwrap(),
    ));
    let profiler = Killed(Some(
        decnet(home, &syslog, &["profiler", "--poll-ms", "100", "--heartbeat-secs", "1"])
            .args(["--metrics-listen", &at(profiler_metrics).to_string()])
            .spawn()
            .unwrap(),
    ));
    for (who, port) in [
        ("bus", bus_metrics),
        ("collector", collector_metrics),
        ("mutator", mutator_metrics),
        ("api", api_metrics),
        ("profiler", profiler_metrics),
    ] {
        assert!(
            wait_until(20.0, || TcpStream::connect(at(port)).is_ok()),
            "no metrics from the {who} on {port}; logs:\n{}",
            daemon_logs(home)
        );
    }
    assert!(wait_until(15.0, || TcpStream::connect((IP, SSH_PORT)).is_ok()), "the decky's ssh port never opened");

    let sessions = |s: &[Sample]| value(s, "decnet_decky_sessions_total", &[]).unwrap_or(0.0);
    let tcp_lines = |s: &[Sample]| value(s, "decnet_collector_lines_received_total", &[("transport", "tcp")]);
    let api_rows = |s: &[Sample]| value(s, "decnet_ingester_rows_total", &[("worker", "api")]);
    let delivered = |s: &[Sample]| value(s, "decnet_bus_events_delivered_total", &[]).unwrap();
    let before_bus = scrape_valid(at(bus_metrics));
    let before_mutator = scrape_valid(at(mutator_metrics));
    let before_collector = scrape_valid(at(collector_metrics));
    let before_api = scrape_valid(at(api_metrics));
    let tcp_before = tcp_lines(&before_collector).expect("the tcp series exists from the start");
    let rows_before = api_rows(&before_api).expect("the API's ingester reports from the start");

    for _ in 0..3 {
        knock_ssh();
    }
    assert!(
        wait_until(15.0, || sessions(&scrape_valid(at(mutator_metrics))) >= sessions(&before_mutator) + 3.0),
        "sessions did not move: {:?}",
        value(&scrape_valid(at(mutator_metrics)), "decnet_decky_sessions_total", &[])
    );
    let after_mutator = scrape_valid(at(mutator_metrics));
    assert!(
        value(&after_mutator, "decnet_decky_lines_sent_total", &[]).unwrap()
            > value(&before_mutator, "decnet_decky_lines_sent_total", &[]).unwrap_or(0.0)
    );
    assert_eq!(value(&after_mutator, "decnet_decky_listeners", &[]), Some(1.0));
    assert!(
        wait_until(15.0, || tcp_lines(&scrape_valid(at(collector_metrics))).unwrap() > tcp_before),
        "the collector's tcp lines did not move"
    );
    let after_collector = scrape_valid(at(collector_metrics));
    assert!(
        value(&after_collector, "decnet_collector_records_stored_total", &[]).unwrap()
            > value(&before_collector, "decnet_collector_records_stored_total", &[]).unwrap_or(0.0)
    );
    assert!(
        wait_until(20.0, || api_rows(&scrape_valid(at(api_metrics))).unwrap() > rows_before),
        "the API's ingester rows did not move"
    );

    // The profiler folds the rows the API's ingester stored.
    assert!(
        wait_until(15.0, || {
            value(&scrape_valid(at(profiler_metrics)), "decnet_profiler_rows_total", &[]).is_some_and(|v| v > 0.0)
        }),
        "the profiler's rows did not move: {:?}",
        value(&scrape_valid(at(profiler_metrics)), "decnet_profiler_passes_total", &[])
    );

    // The API aggregates heartbeats: the mutator's sessions arrive there,
    // labelled with the worker, within a heartbeat or two.
    assert!(
        wait_until(10.0, || {
            value(&scrape_valid(at(api_metrics)), "decnet_decky_sessions_total", &[("worker", "mutator")])
                .is_some_and(|v| v >= sessions(&before_mutator) + 3.0)
        }),
        "the mutator's heartbeat counters never reached the API's endpoint"
    );
    let api_now = scrape_valid(at(api_metrics));
    assert_eq!(value(&api_now, "decnet_worker_up", &[("worker", "mutator")]), Some(1.0));
    assert_eq!(value(&api_now, "decnet_worker_up", &[("worker", "collector")]), Some(1.0));
    // The bus daemon's heartbeat too, once one carries deliveries.
    assert!(wait_until(10.0, || {
        value(&scrape_valid(at(api_metrics)), "decnet_bus_events_delivered_total", &[("worker", "bus")])
            .is_some_and(|v| v > 0.0)
    }));

    // Requests are counted by route pattern and status.
    let health = || {
        value(
            &scrape_valid(at(api_metrics)),
            "decnet_api_requests_total",
            &[("route", "/api/v1/health"), ("status", "200")],
        )
        .unwrap_or(0.0)
    };
    let health_before = health();
    let mut s = TcpStream::connect(at(api_port)).unwrap();
    write!(s, "GET /api/v1/health HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert_eq!(health(), health_before + 1.0);

    // The bus daemon's own endpoint: the heartbeats it routed meanwhile.
    let after_bus = scrape_valid(at(bus_metrics));
    assert!(delivered(&after_bus) > delivered(&before_bus), "bus deliveries did not move");
    assert!(value(&after_bus, "decnet_bus_connections", &[]).unwrap() >= 3.0);

    profiler.stop();
    api.stop();
    mutator.stop();
    collector.stop();
}

#[test]
fn a_non_loopback_metrics_address_is_refused_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["ingest", "--metrics-listen", "0.0.0.0:9464"])
        .env("DECNET_HOME", dir.path())
        .env("DECNET_DB", dir.path().join("decnet.db"))
        .env("DECNET_INGEST_LOG_FILE", dir.path().join("ingest.log"))
        .env("DECNET_BUS_ENABLED", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--metrics-allow-remote"), "{err}");
}

/// Every `decnet_*` name in `text`.
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let re = regex::Regex::new(r"\bdecnet_[a-z0-9_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_owned()).collect()
}

#[test]
fn the_docs_list_every_metric_and_the_dashboard_uses_only_real_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let names: std::collections::BTreeSet<String> =
        decnet::metrics::catalogue::all_names().into_iter().map(str::to_owned).collect();

    let docs = std::fs::read_to_string(root.join("docs/deployment.md")).unwrap();
    let section = docs.split("\n## Metrics\n").nth(1).expect("docs/deployment.md has a Metrics section");
    let section = section.split("\n## ").next().unwrap();
    let listed = metric_names_in(section);
    let missing: Vec<_> = names.difference(&listed).collect();
    assert!(missing.is_empty(), "docs/deployment.md's Metrics section does not list {missing:?}");
    let unknown: Vec<_> = listed.difference(&names).collect();
    assert!(unknown.is_empty(), "docs/deployment.md lists metrics that do not exist: {unknown:?}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana-decnet.json")).unwrap())
            .expect("deploy/grafana-decnet.json is valid JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used = metric_names_in(&exprs.join("\n"));
    let unknown: Vec<_> = used.difference(&names).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics that do not exist: {unknown:?}");
    assert!(used.len() >= 20, "the dashboard uses few metrics: {used:?}");
}

#[test]
fn the_grammar_check_rejects_bad_pages() {
    // The validator above must be able to fail, or "valid" means nothing.
    let good = "# HELP a_b x\n# TYPE a_b counter\na_b_total{k=\"v\"} 1.0\n# EOF\n";
    assert_eq!(parse_exposition(good).len(), 1);
    for bad in [
        "# TYPE a counter\na_total 1\n",                // no EOF
        "# TYPE a gauge\na{k=v} 1\n# EOF\n",            // unquoted label value
        "a 1\n# EOF\n",                                 // no TYPE
        "# TYPE a counter\na 1\n# EOF\n",               // counter sample without _total
        "# TYPE a gauge\na 1\na 2\n# EOF\n",            // series twice
        "# TYPE a gauge\n# TYPE a gauge\na 1\n# EOF\n", // family twice
        "# TYPE a gauge\na one\n# EOF\n",               // not a number
    ] {
        assert!(std::panic::catch_unwind(|| parse_exposition(bad)).is_err(), "accepted {bad:?}");
    }
}

/// Run `decnet` to completion, asserting success.
fn run_ok(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "decnet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn log_shipping_reports_lines_lag_reconnects_and_refused_handshakes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_owned();
    run_ok(&["ca", "init", "--dir", &p("ca")]);
    run_ok(&["ca", "issue", "master", "--san", "127.0.0.1", "--dir", &p("ca")]);
    run_ok(&["ca", "issue", "sensor-1", "--dir", &p("ca")]);
    run_ok(&["ca", "init", "--dir", &p("other")]);
    run_ok(&["ca", "issue", "sensor-1", "--dir", &p("other")]);
    let [ship_port, listener_metrics, forwarder_metrics] = [free_port(), free_port(), free_port()];
    let at = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let spawn = |args: Vec<String>| {
        Killed(Some(
            Command::new(BIN)
                .args(args)
                .env("DECNET_HOME", root)
                .env("DECNET_BUS_ENABLED", "false")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ))
    };
    let listener = || {
        let l = spawn(
            ["listener", "--listen", &at(ship_port).to_string(), "--out", &p("master")]
                .iter()
                .map(|s| s.to_string())
                .chain(
                    ["--ca", &p("ca/ca.pem"), "--cert", &p("ca/master.pem"), "--key", &p("ca/master.key")]
                        .map(String::from),
                )
                .chain(["--metrics-listen".to_string(), at(listener_metrics).to_string()])
                .collect(),
        );
        assert!(wait_until(10.0, || TcpStream::connect(at(ship_port)).is_ok()), "listener did not start");
        l
    };
    let forwarder = |ca: &str, metrics: Option<u16>| {
        let mut args: Vec<String> = ["forwarder", "--master", &at(ship_port).to_string(), "--ca", &p("ca/ca.pem")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(
            ["--cert", &p(&format!("{ca}/sensor-1.pem")), "--key", &p(&format!("{ca}/sensor-1.key"))].map(String::from),
        );
        args.extend(["--log", &p("ingest.log"), "--state", &p(&format!("{ca}.state"))].map(String::from));
        if let Some(port) = metrics {
            args.extend(["--metrics-listen".to_string(), at(port).to_string()]);
        }
        spawn(args)
    };
    let append = |range: std::ops::Range<usize>| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(root.join("ingest.log")).unwrap();
        for i in range {
            writeln!(f, "<134>1 2026-12-03T10:00:00Z sensor app - - - line {i}").unwrap();
        }
    };
    let metric = |port: u16, name: &str| value(&scrape_valid(at(port)), name, &[]);

    append(0..10);
    let mut master = listener();
    let _sensor = forwarder("ca", Some(forwarder_metrics));
    assert!(wait_until(10.0, || TcpStream::connect(at(forwarder_metrics)).is_ok()), "no forwarder metrics");
    assert!(wait_until(15.0, || metric(forwarder_metrics, "decnet_forwarder_lines_shipped_total") == Some(10.0)));
    assert!(
        wait_until(10.0, || metric(forwarder_metrics, "decnet_forwarder_lag_bytes") == Some(0.0)),
        "all acknowledged: no lag"
    );
    assert!(wait_until(10.0, || metric(listener_metrics, "decnet_listener_lines_received_total") == Some(10.0)));
    assert_eq!(metric(listener_metrics, "decnet_listener_connections_open"), Some(1.0));
    assert_eq!(metric(forwarder_metrics, "decnet_forwarder_reconnects_total"), Some(0.0));

    // The master goes away: what is written meanwhile is lag.
    let master_port_free = || TcpStream::connect(at(ship_port)).is_err();
    std::mem::replace(&mut master, Killed(None)).stop();
    assert!(wait_until(10.0, master_port_free));
    append(10..15);
    let five_lines = (5 * "<134>1 2026-12-03T10:00:00Z sensor app - - - line 10\n".len()) as f64;
    assert!(
        wait_until(10.0, || metric(forwarder_metrics, "decnet_forwarder_lag_bytes").unwrap_or(0.0) >= five_lines),
        "lag while the master is down: {:?}",
        metric(forwarder_metrics, "decnet_forwarder_lag_bytes")
    );
    // Back: the forwarder reconnects and catches up.
    master = listener();
    assert!(wait_until(15.0, || metric(forwarder_metrics, "decnet_forwarder_lag_bytes") == Some(0.0)));
    // Lines written into the dead connection before the forwarder noticed
    // are sent again, so "shipped" may count them twice; the new master
    // writes each of the 5 once.
    assert!(metric(forwarder_metrics, "decnet_forwarder_lines_shipped_total").unwrap() >= 15.0);
    assert!(wait_until(10.0, || metric(listener_metrics, "decnet_listener_lines_received_total") == Some(5.0)));
    assert!(metric(forwarder_metrics, "decnet_forwarder_reconnects_total").unwrap() >= 1.0);

    // A forwarder with a certificate from another CA is refused, and counted.
    let _intruder = forwarder("other", None);
    assert!(wait_until(10.0, || {
        metric(listener_metrics, "decnet_listener_handshakes_refused_total").unwrap_or(0.0) >= 1.0
    }));
    master.stop();
}
