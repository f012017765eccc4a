//! The SSH deckies as a scanner sees them from inside a network namespace
//! the test creates: `ssh-audit` (PyPI) and `nmap -sV -sC` run there,
//! against deckies of several releases and, side by side on the same
//! namespace's loopback, the real sshd and the real dropbear of this
//! machine (Debian 12's openssh-server and dropbear-bin, which
//! scripts/test.sh installs) with the host keys a default install has.

mod native_support;

use std::path::Path;
use std::time::Duration;

use decnet_decky::persona::releases::{SshProduct, RELEASES};
use decnet_decky::services::ssh::algorithms;
use native_support::{Netns, NsFleet};

const SSHD: &str = "/usr/sbin/sshd";
const REAL_SSHD_AT: &str = "127.0.0.99";
const DROPBEAR: &str = "/usr/sbin/dropbear";
const REAL_DROPBEAR_AT: &str = "127.0.0.98";

/// A decky of every release (the OpenSSH ones, the Dropbear camera, the
/// Windows server), one address each on the namespace's loopback.
fn deckies() -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for (i, r) in RELEASES.iter().enumerate() {
        out.push((format!("ssh-{}", r.id), format!("127.0.0.{}", i + 1), r.id));
    }
    out
}

/// The real sshd, started inside `ns` on port 22 of [`REAL_SSHD_AT`] with
/// RSA, ECDSA and Ed25519 host keys (sshd's load order); killed on drop.
struct RealSshd {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn real_sshd(ns: &Netns) -> RealSshd {
    assert!(Path::new(SSHD).exists(), "{SSHD} missing: scripts/test.sh installs openssh-server");
    let dir = tempfile::tempdir().unwrap();
    let mut config = format!("Port 22\nListenAddress {REAL_SSHD_AT}\nUsePAM no\nPidFile none\n");
    for t in ["rsa", "ecdsa", "ed25519"] {
        let key = dir.path().join(format!("host_{t}"));
        let ok = std::process::Command::new("ssh-keygen").args(["-q", "-t", t, "-N", "", "-f"]).arg(&key).status();
        assert!(ok.unwrap().success());
        config.push_str(&format!("HostKey {}\n", key.display()));
    }
    let cfg = dir.path().join("sshd_config");
    std::fs::write(&cfg, config).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = ns
        .command(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sshd starts");
    wait_for_banner(ns, REAL_SSHD_AT).await;
    RealSshd { _child: child, _dir: dir }
}

/// The real dropbear, in the foreground inside `ns` on port 22 of
/// [`REAL_DROPBEAR_AT`], with the RSA, ECDSA and Ed25519 host keys
/// Debian's package makes with dropbearkey; killed on drop.
async fn real_dropbear(ns: &Netns) -> RealSshd {
    assert!(Path::new(DROPBEAR).exists(), "{DROPBEAR} missing: scripts/test.sh installs dropbear-bin");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.command(DROPBEAR);
    cmd.args(["-F", "-E", "-p", &format!("{REAL_DROPBEAR_AT}:22")]).arg("-P").arg(dir.path().join("pid"));
    for t in ["rsa", "ecdsa", "ed25519"] {
        let key = dir.path().join(format!("dropbear_{t}_host_key"));
        let made = std::process::Command::new("dropbearkey")
            .args(["-t", t, "-f"])
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        assert!(made.unwrap().success(), "dropbearkey -t {t}");
        cmd.arg("-r").arg(&key);
    }
    let child =
        cmd.stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("dropbear starts");
    wait_for_banner(ns, REAL_DROPBEAR_AT).await;
    RealSshd { _child: child, _dir: dir }
}

/// Returns once a connection to port 22 of `ip` inside the namespace reads a banner.
async fn wait_for_banner(ns: &Netns, ip: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out =
            ns.run(5, "timeout", &["2", "bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/22 && head -c 4 <&3")]).await;
        if out.stdout.starts_with(b"SSH-") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the real server at {ip} did not listen in the namespace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ssh_audit(ns: &Netns, ip: &str) -> serde_json::Value {
    let out = ns.run(120, "ssh-audit", &["-j", "-p", "22", ip]).await;
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ssh-audit JSON for {ip}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What ssh-audit says of a server, less what differs between two hosts
/// of one release (the target, the key fingerprints) and the timings in
/// its connection-rate note (they vary from run to run).
fn verdict(mut v: serde_json::Value) -> serde_json::Value {
    let o = v.as_object_mut().unwrap();
    o.remove("target");
    o.remove("fingerprints");
    if let Some(notes) = o.get_mut("additional_notes").and_then(|n| n.as_array_mut()) {
        for note in notes {
            let mut text: String =
                note.as_str().unwrap().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
            while text.contains("##") || text.contains("#.#") {
                text = text.replace("#.#", "#").replace("##", "#");
            }
            *note = serde_json::Value::String(text);
        }
    }
    v
}

/// nmap's report for port 22 of one host: the port line and the script
/// output under it, with the host-key fingerprints masked (they differ
/// between any two hosts).
fn nmap_section(report: &str, ip: &str) -> Vec<String> {
    let host = report
        .split("Nmap scan report for ")
        .find(|s| s.starts_with(ip))
        .unwrap_or_else(|| panic!("no {ip} in {report}"));
    host.lines()
        .skip_while(|l| !l.starts_with("22/tcp"))
        .take_while(|l| l.starts_with("22/tcp") || l.starts_with('|'))
        .map(|l| {
            l.split_whitespace()
                .map(|w| if w.len() >= 32 && w.chars().all(|c| c.is_ascii_hexdigit() || c == ':') { "<fp>" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// What nmap's service probe names for a banner: OpenSSH's
/// `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10` is `OpenSSH 9.2p1 Debian
/// 2+deb12u10`, Dropbear's `SSH-2.0-dropbear_2022.83` is `Dropbear sshd
/// 2022.83`.
fn product_of(banner: &str) -> String {
    let software = banner.trim_start_matches("SSH-2.0-");
    match software.strip_prefix("dropbear_") {
        Some(v) => format!("Dropbear sshd {v}"),
        None => software.replacen('_', " ", 1).replacen('-', " ", 1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_audit_and_nmap_in_a_namespace_see_each_decky_as_its_release() {
    let deckies = deckies();
    let pairs: Vec<(&str, &str)> = deckies.iter().map(|(n, ip, _)| (n.as_str(), ip.as_str())).collect();
    let fleet = NsFleet::start("sshaudit", &pairs, |o| {
        for (name, _, release) in &deckies {
            o.personas.insert(name.clone(), serde_json::json!({ "release": release }));
        }
    })
    .await;
    for (name, _, _) in &deckies {
        fleet.deploy(name, &["ssh"]).await;
    }
    let _real = real_sshd(&fleet.ns).await;
    let _real_dropbear = real_dropbear(&fleet.ns).await;

    // ssh-audit: the Debian 12 decky is the real Debian 12 sshd, verdict
    // for verdict (every recommendation and warning the same); every
    // decky names its release and lists exactly its algorithms.
    let want = verdict(ssh_audit(&fleet.ns, REAL_SSHD_AT).await);
    let (_, debian_ip, _) = deckies.iter().find(|(_, _, r)| *r == "debian-12").unwrap();
    let got = verdict(ssh_audit(&fleet.ns, debian_ip).await);
    assert_eq!(got, want, "ssh-audit: decky\n{got:#}\nreal sshd\n{want:#}");
    // …and the camera decky is the real dropbear, verdict for verdict.
    let want = verdict(ssh_audit(&fleet.ns, REAL_DROPBEAR_AT).await);
    let (_, camera_ip, _) = deckies.iter().find(|(_, _, r)| *r == "busybox-camera").unwrap();
    let got = verdict(ssh_audit(&fleet.ns, camera_ip).await);
    assert_eq!(got, want, "ssh-audit: camera decky\n{got:#}\nreal dropbear\n{want:#}");
    for (name, ip, release) in &deckies {
        let r = RELEASES.iter().find(|r| r.id == *release).unwrap();
        let report = ssh_audit(&fleet.ns, ip).await;
        assert_eq!(report["banner"]["raw"], r.ssh_banner, "{name}");
        let lists = algorithms::lists(release);
        let want = lists.unwrap_or_else(|| panic!("{release} has no generated lists"));
        let names = |key: &str| -> Vec<String> {
            report[key].as_array().unwrap().iter().map(|a| a["algorithm"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names("kex"), want.kex, "{name}");
        assert_eq!(names("enc"), want.cipher, "{name}");
        assert_eq!(names("mac"), want.mac, "{name}");
        assert_eq!(names("key"), want.host_key, "{name}");
        for key in report["key"].as_array().unwrap() {
            if key["algorithm"].as_str().unwrap().contains("rsa") {
                // ssh-keygen's RSA default became 3072 bits in OpenSSH 8.0;
                // dropbearkey's is 2048.
                let bits = if r.ssh == SshProduct::Dropbear || r.ssh_release.starts_with('7') { 2048 } else { 3072 };
                assert_eq!(key["keysize"], bits, "{name}: a default install's RSA host key");
            }
        }
    }

    // nmap -sV -sC (the default scripts, written out so the algorithm
    // listing can join them) over all of them at once, from the namespace.
    let mut targets: Vec<&str> = deckies.iter().map(|(_, ip, _)| ip.as_str()).collect();
    targets.push(REAL_SSHD_AT);
    targets.push(REAL_DROPBEAR_AT);
    // ssh-hostkey reads the banner line, then waits for the KEXINIT its
    // own KEXINIT should draw; Dropbear sent it with the banner, so on a
    // real dropbear (and the camera) it waits nmap's 30 s per key type
    // and shows nothing. The script timeout bounds that wait; the result
    // is the same.
    let mut args =
        vec!["-sV", "--script", "default,ssh2-enum-algos", "--script-timeout", "12s", "-Pn", "-n", "-p", "22"];
    args.extend(targets.iter().copied());
    let out = fleet.ns.run(300, "nmap", &args).await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let real = nmap_section(&report, REAL_SSHD_AT);
    assert!(real.first().is_some_and(|l| l.contains("OpenSSH")), "{report}");
    assert_eq!(nmap_section(&report, debian_ip), real, "nmap: Debian 12 decky vs real sshd\n{report}");
    let real = nmap_section(&report, REAL_DROPBEAR_AT);
    assert!(real.first().is_some_and(|l| l.contains("Dropbear")), "{report}");
    assert_eq!(nmap_section(&report, camera_ip), real, "nmap: camera decky vs real dropbear\n{report}");
    for (name, ip, release) in &deckies {
        let r = RELEASES.iter().find(|r| r.id == *release).unwrap();
        let section = nmap_section(&report, ip);
        let port_line = section.first().map(String::as_str).unwrap_or("");
        assert!(port_line.contains(&product_of(r.ssh_banner)), "{name}: {port_line}\n{report}");
        if r.ssh == SshProduct::OpenSsh {
            assert!(section.iter().any(|l| l.contains("ssh-hostkey")), "{name}: no host keys\n{report}");
        }
    }
}
