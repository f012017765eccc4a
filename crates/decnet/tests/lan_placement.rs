//! Deckies placed on a LAN by decnet itself: a "LAN" made of a veth pair
//! between two namespaces the test creates, the host side (where the real
//! `decnet mutator` runs, entered with `nsenter --net`) and an attacker
//! side. The mutator gives each decky a namespace of its own with a
//! macvlan on the host's veth. From the attacker namespace: each decky
//! answers ARP with its own MAC (its persona's), ssh and http reach each
//! at its own address, the Windows persona's packets carry Windows' TTL,
//! and `nmap -O` sees different stacks. Stopping the mutator (and a
//! teardown) leaves no namespace or interface behind.
//!
//! Needs root (namespaces, macvlan): CI and scripts/test.sh run as root.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::{send_signal, wait_exit, wait_until, BIN};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("iproute2");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip").args(["netns", "exec", ns, program]).args(args).stdin(Stdio::null()).output().unwrap()
}

/// The test's LAN: `host` and `attacker` namespaces joined by a veth pair.
struct Lan {
    host: String,
    attacker: String,
}

impl Lan {
    fn new() -> Lan {
        let tag = std::process::id();
        let lan = Lan { host: format!("lanhost-{tag}"), attacker: format!("lanatk-{tag}") };
        ip(&["netns", "add", &lan.host]);
        ip(&["netns", "add", &lan.attacker]);
        ip(&[
            "link",
            "add",
            "v-host",
            "netns",
            &lan.host,
            "type",
            "veth",
            "peer",
            "name",
            "v-att",
            "netns",
            &lan.attacker,
        ]);
        ip(&["-n", &lan.host, "addr", "add", "10.77.0.1/24", "dev", "v-host"]);
        ip(&["-n", &lan.attacker, "addr", "add", "10.77.0.2/24", "dev", "v-att"]);
        for (ns, link) in [(&lan.host, "v-host"), (&lan.attacker, "v-att")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.host, &self.attacker] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

const FLEET: &str = r#"
interval = 600

[[decky]]
name = "lan-lnx"
archetype = "linux-server"
services = ["ssh", "http"]
address = "10.77.0.10"

[[decky]]
name = "lan-win"
archetype = "windows-workstation"
services = ["http"]
address = "10.77.0.11"

[[decky]]
name = "lan-cam"
archetype = "iot-device"
services = ["telnet", "http"]
address = "10.77.0.12"
"#;

const DECKIES: [(&str, &str, &str); 3] = [
    ("lan-lnx", "linux-server", "10.77.0.10"),
    ("lan-win", "windows-workstation", "10.77.0.11"),
    ("lan-cam", "iot-device", "10.77.0.12"),
];

fn namespace(decky: &str) -> PathBuf {
    Path::new("/run/netns").join(format!("decnet-{decky}"))
}

fn decnet(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("DECNET_HOME", home).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn deckies_are_hosts_of_their_own_on_the_lan() {
    let lan = Lan::new();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("fleet.toml"), FLEET).unwrap();
    let out = decnet(
        home.path(),
        &["deploy", "--config", home.path().join("fleet.toml").to_str().unwrap(), "--driver", "native"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let log = std::fs::File::create(home.path().join("mutator.log")).unwrap();
    let mut mutator = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lan.host))
        .args([BIN, "mutator", "--driver", "native", "--lan-parent", "v-host", "--lan-prefix", "24"])
        .env("DECNET_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mutator_log = || std::fs::read_to_string(home.path().join("mutator.log")).unwrap_or_default();

    // Every decky's http answers from the attacker's side.
    for (decky, _, addr) in DECKIES {
        let up = wait_until(60.0, || {
            let o = in_ns(
                &lan.attacker,
                "curl",
                &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", &format!("http://{addr}/")],
            );
            String::from_utf8_lossy(&o.stdout) == "200"
        });
        assert!(up, "{decky} never answered http at {addr}; mutator log:\n{}", mutator_log());
    }

    // ARP: each decky answers with its own MAC, the one its persona (and
    // so its shell's `ip link`) names.
    let now = 1_700_000_000;
    let mut macs = Vec::new();
    for (decky, archetype, addr) in DECKIES {
        let ping = in_ns(&lan.attacker, "ping", &["-c", "1", "-W", "2", addr]);
        let text = String::from_utf8_lossy(&ping.stdout).into_owned();
        // Windows answers with TTL 128, the Linux personas with 64.
        let ttl = if archetype.starts_with("windows") { "ttl=128" } else { "ttl=64" };
        assert!(text.contains(ttl), "{decky}: {text}");
        let neigh = ip(&["-n", &lan.attacker, "neigh", "show", addr]);
        let mac = neigh.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).unwrap_or_default().to_string();
        let persona = decnet::decky::Persona::derive(decky, Some(archetype), Some(addr.parse().unwrap()), now);
        assert_eq!(mac, persona.interfaces[0].mac, "{decky}'s ARP answer: {neigh}");
        macs.push(mac);
    }
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 3, "one MAC per decky");

    // SSH on the Linux decky's own address.
    let banner = in_ns(&lan.attacker, "sh", &["-c", "nc -w 5 10.77.0.10 22 </dev/null | head -c 8"]);
    assert_eq!(String::from_utf8_lossy(&banner.stdout), "SSH-2.0-");

    // nmap -O sees two different stacks: Windows' TTL, window and scale on
    // one, Linux's on the other.
    let fingerprint = |addr: &str| {
        let o = in_ns(&lan.attacker, "nmap", &["-O", "--osscan-guess", "-n", "-p", "80,81", addr]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        eprintln!("nmap -O {addr}:\n{text}");
        text
    };
    let (linux, windows) = (fingerprint("10.77.0.10"), fingerprint("10.77.0.11"));
    assert!(linux.contains("Linux"), "{linux}");
    assert!(windows.contains("%T=80%") && windows.contains("W1=FFFF"), "Windows' TTL and window: {windows}");
    // Its options in Windows' order, and nmap's best guess Windows.
    assert!(windows.contains("O1=M5B4NW8NNS"), "{windows}");
    let best = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("Aggressive OS guesses:") || l.starts_with("OS details:"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, g)| g.split(',').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default()
    };
    assert!(best(&windows).contains("Windows"), "the Windows persona is guessed {:?}", best(&windows));
    assert!(best(&linux).contains("Linux"), "the Linux persona is guessed {:?}", best(&linux));
    assert!(linux.contains("%T=40%") && !linux.contains("W1=FFFF"), "{linux}");

    // A teardown removes the decky's namespace.
    let out = decnet(home.path(), &["teardown", "lan-cam"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(30.0, || !namespace("lan-cam").exists()), "lan-cam's namespace is left:\n{}", mutator_log());

    // Stopping the mutator removes the others, and their links with them.
    send_signal(mutator.id() as i32, "TERM");
    assert!(wait_exit(&mut mutator, 20.0).is_some(), "{}", mutator_log());
    for (decky, _, _) in DECKIES {
        assert!(!namespace(decky).exists(), "{decky}'s namespace is left");
    }
    let links = ip(&["-n", &lan.host, "link", "show"]);
    assert!(!links.contains("macvlan") && !links.contains("@v-host"), "{links}");
}

#[test]
fn a_missing_parent_interface_stops_the_mutator_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["mutator", "--driver", "native", "--lan-parent", "no-such-if0"])
        .env("DECNET_HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-if0") && err.contains("does not exist"), "{err}");
}
