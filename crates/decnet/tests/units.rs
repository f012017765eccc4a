//! The shipped systemd units parse: `systemd-analyze verify` accepts each
//! one (with the real binary as ExecStart), and the mutator's LAN drop-in
//! on top of its unit. Unknown or misspelt settings fail here instead of
//! being ignored by systemd on an operator's host.

mod support;

use std::path::Path;
use std::process::Command;

fn verify(dir: &Path, unit: &str) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join(unit))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .expect("systemd-analyze (systemd) is installed");
    let err = String::from_utf8_lossy(&out.stderr);
    // Complaints about the host's own units are not ours.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("decnet")).collect();
    assert!(out.status.success() && ours.is_empty(), "{unit}: {err}");
}

#[test]
fn every_shipped_unit_and_the_lan_drop_in_verify() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dir = tempfile::tempdir().unwrap();
    let mut units = 0;
    for entry in std::fs::read_dir(&deploy).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().replace("/usr/local/bin/decnet", support::BIN);
        std::fs::write(dir.path().join(&name), text).unwrap();
        units += 1;
    }
    assert!(units >= 8, "units found: {units}");
    let dropins = dir.path().join("decnet-mutator.service.d");
    std::fs::create_dir(&dropins).unwrap();
    std::fs::copy(deploy.join("decnet-mutator-lan.conf"), dropins.join("lan.conf")).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".service") {
            verify(dir.path(), &name);
        }
    }
    // A misspelt setting is caught (the check can fail).
    std::fs::write(dropins.join("typo.conf"), "[Service]\nAmbientCapabilitie=CAP_NET_ADMIN\n").unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("decnet-mutator.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("AmbientCapabilitie"), "the typo went unnoticed");
}
