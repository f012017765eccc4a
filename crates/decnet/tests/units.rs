//! The shipped systemd units: every daemon has one, each parses
//! (`systemd-analyze verify`, with the real binary as ExecStart, and with
//! the LAN and NATS drop-ins on top), each is a `Type=notify` unit with a
//! watchdog and a file limit running as `decnet`, and each scores at most
//! the exposure docs/deployment.md promises for it on
//! `systemd-analyze security --offline=yes` (no systemd as PID 1 needed).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every long-running `decnet` subcommand and the unit that runs it.
const DAEMONS: &[(&str, &str)] = &[
    ("bus", "decnet-bus.service"),
    ("api", "decnet-api.service"),
    ("mutator", "decnet-mutator.service"),
    ("collector", "decnet-collector.service"),
    ("ingest", "decnet-ingester.service"),
    ("profiler", "decnet-profiler.service"),
    ("clusterer", "decnet-clusterer.service"),
    ("prober", "decnet-prober.service"),
    ("sniffer", "decnet-sniffer.service"),
    ("forwarder", "decnet-forwarder.service"),
    ("listener", "decnet-listener.service"),
];

/// Drop-ins and the unit each extends (file name in deploy/, unit).
const DROPINS: &[(&str, &str)] =
    &[("decnet-mutator-lan.conf", "decnet-mutator.service"), ("decnet-bus-nats.conf", "decnet-bus.service")];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The shipped units (name → text), ExecStart pointed at the test binary.
fn shipped_units() -> BTreeMap<String, String> {
    let mut units = BTreeMap::new();
    for entry in std::fs::read_dir(deploy()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".service") {
            let text = std::fs::read_to_string(&path).unwrap();
            units.insert(name, decnet::install::unit_for(&text, Path::new(support::BIN)));
        }
    }
    units
}

/// A unit folder with every unit, plus the given drop-ins.
fn unit_dir(dropins: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in shipped_units() {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    for (file, unit) in dropins {
        let d = dir.path().join(format!("{unit}.d"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(deploy().join(file), d.join(file)).unwrap();
    }
    dir
}

fn verify(dir: &Path, unit: &str) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join(unit))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Complaints about the host's own units are not ours.
    let ours = err.lines().any(|l| l.contains("decnet"));
    (out.status.success() && !ours, err)
}

/// `systemd-analyze security --offline=yes UNIT` over `dir`: the overall
/// exposure (e.g. 1.1 from "→ Overall exposure level for x: 1.1 OK").
fn exposure(dir: &Path, unit: &str) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", unit])
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .current_dir(dir)
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    parse_exposure(&text)
        .unwrap_or_else(|| panic!("{unit}: no exposure line in\n{text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

fn parse_exposure(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("Overall exposure level"))?;
    line.rsplit_once(": ")?.1.split_whitespace().next()?.parse().ok()
}

/// The exposure table of docs/deployment.md: first column a unit (or
/// `unit + drop-in`), third its ceiling.
fn documented_ceilings() -> BTreeMap<String, f64> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment.md")).unwrap();
    let mut ceilings = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
        if cells.len() > 4 && cells[1].starts_with("decnet-") {
            if let Ok(ceiling) = cells[3].parse::<f64>() {
                ceilings.insert(cells[1].replace('`', ""), ceiling);
            }
        }
    }
    ceilings
}

#[test]
fn every_daemon_has_a_unit_that_runs_it_and_every_unit_is_embedded() {
    let units = shipped_units();
    for (cmd, unit) in DAEMONS {
        let text = units.get(*unit).unwrap_or_else(|| panic!("no deploy/{unit} for `decnet {cmd}`"));
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert_eq!(exec.split_whitespace().nth(1), Some(*cmd), "{unit}: {exec}");
        for needed in
            ["Type=notify", "WatchdogSec=", "User=decnet", "Group=decnet", "LimitNOFILE=", "NoNewPrivileges=yes"]
        {
            assert!(text.lines().any(|l| l.starts_with(needed)), "{unit} lacks {needed}");
        }
    }
    // No unit without a daemon, and `decnet install` ships exactly these.
    let embedded: Vec<&str> = decnet::install::UNITS.iter().map(|(n, _)| *n).collect();
    let on_disk: Vec<&str> = units.keys().map(String::as_str).collect();
    assert_eq!(embedded, on_disk, "install::UNITS and deploy/*.service differ");
    assert_eq!(on_disk.len(), DAEMONS.len(), "a unit runs no known daemon: {on_disk:?}");
    // The embedded copy is the file (include_str!), not a stale duplicate.
    for (name, text) in decnet::install::UNITS {
        assert_eq!(*text, std::fs::read_to_string(deploy().join(name)).unwrap(), "{name}");
    }
}

#[test]
fn ambient_capabilities_are_only_the_documented_ones() {
    let units = shipped_units();
    let expected: BTreeMap<&str, &str> = [
        ("decnet-mutator.service", "CAP_NET_BIND_SERVICE"),
        ("decnet-prober.service", "CAP_NET_RAW"),
        ("decnet-sniffer.service", "CAP_NET_RAW"),
    ]
    .into();
    for (name, text) in &units {
        let setting = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let ambient = setting("AmbientCapabilities=").unwrap_or("");
        assert_eq!(ambient, expected.get(name.as_str()).copied().unwrap_or(""), "{name}");
        assert_eq!(setting("CapabilityBoundingSet="), Some(ambient), "{name}: bounding set is not the ambient set");
    }
    let lan = std::fs::read_to_string(deploy().join("decnet-mutator-lan.conf")).unwrap();
    assert!(lan.lines().any(|l| l.starts_with("AmbientCapabilities=") && l.contains("CAP_NET_ADMIN")));
}

#[test]
fn every_unit_and_both_drop_ins_verify() {
    let dir = unit_dir(DROPINS);
    for name in shipped_units().keys() {
        let (ok, err) = verify(dir.path(), name);
        assert!(ok, "{name}: {err}");
    }
    // A misspelt setting is caught (the check can fail).
    let typo = dir.path().join("decnet-mutator.service.d/typo.conf");
    std::fs::write(&typo, "[Service]\nAmbientCapabilitie=CAP_NET_ADMIN\n").unwrap();
    let (_, err) = verify(dir.path(), "decnet-mutator.service");
    assert!(err.contains("AmbientCapabilitie"), "the typo went unnoticed: {err}");
}

#[test]
fn every_unit_scores_at_most_its_documented_exposure() {
    let ceilings = documented_ceilings();
    let plain = unit_dir(&[]);
    let mut measured = Vec::new();
    for name in shipped_units().keys() {
        let ceiling =
            *ceilings.get(name).unwrap_or_else(|| panic!("docs/deployment.md has no exposure row for {name}"));
        let got = exposure(plain.path(), name);
        measured.push(format!("{name} {got}"));
        assert!(got <= ceiling, "{name}: exposure {got} above its documented {ceiling}");
        // The bar: 2.0 for every base unit.
        assert!(ceiling <= 2.0, "{name}: documented ceiling {ceiling} above 2.0");
    }
    for dropin in DROPINS {
        let dir = unit_dir(&[*dropin]);
        let key = format!("{} + {}", dropin.1, dropin.0);
        let ceiling = *ceilings.get(&key).unwrap_or_else(|| panic!("docs/deployment.md has no exposure row for {key}"));
        let got = exposure(dir.path(), dropin.1);
        measured.push(format!("{key} {got}"));
        assert!(got <= ceiling, "{key}: exposure {got} above its documented {ceiling}");
    }
    println!("{}", measured.join("\n"));
    // The check can fail: the bus without its hardening scores far worse.
    let bare = tempfile::tempdir().unwrap();
    std::fs::write(
        bare.path().join("decnet-bus.service"),
        format!("[Service]\nType=notify\nExecStart={} bus\n", support::BIN),
    )
    .unwrap();
    assert!(exposure(bare.path(), "decnet-bus.service") > 2.0);
}

#[test]
fn the_exposure_line_is_parsed() {
    let line = "\n→ Overall exposure level for decnet-bus.service: 0.3 SAFE 😀\n";
    assert_eq!(parse_exposure(line), Some(0.3));
    assert_eq!(parse_exposure("nothing"), None);
}

/// The bus unit's sandbox without the NATS drop-in, reproduced with a
/// network namespace of its own (`unshare -rn`: only a downed loopback,
/// as PrivateNetwork=yes gives): the log names the cause and the drop-in,
/// instead of async-nats' bare "IO error".
#[test]
fn a_bus_without_network_names_the_nats_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bus.sock");
    let mut child = Command::new("unshare")
        .args(["-rn", support::BIN, "bus", "--socket"])
        .arg(&socket)
        .args(["--nats", "nats://192.0.2.1:4222", "--host-id", "sensor-1", "--export", "attacker.>"])
        .env("DECNET_HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("cannot reach NATS") {
                break;
            }
        }
        seen
    });
    let found = support::wait_until(20.0, || reader.is_finished());
    let _ = child.kill();
    let _ = child.wait();
    let log = if found { reader.join().unwrap() } else { String::from("(no line within 20 s)") };
    assert!(log.contains("cannot reach NATS") && log.contains("decnet-bus-nats.conf"), "{log}");
}

#[test]
fn the_debian_package_ships_every_unit() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"].as_array().unwrap();
    let sources: Vec<&str> = assets.iter().map(|a| a[0].as_str().unwrap()).collect();
    for name in shipped_units().keys() {
        let source = format!("../../deploy/{name}");
        assert!(sources.contains(&source.as_str()), "the package lacks {name}");
    }
    for (file, _) in DROPINS {
        assert!(sources.iter().any(|s| s.ends_with(file)), "the package lacks {file}");
    }
    for needed in ["target/release/decnet", "../../deploy/decnet.logrotate"] {
        assert!(sources.contains(&needed), "the package lacks {needed}");
    }
}
