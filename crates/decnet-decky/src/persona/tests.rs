use super::*;

const NOW: i64 = 1_764_000_000;

#[test]
fn derivation_is_stable_and_per_decky() {
    let a = Persona::derive("web-01", Some("linux-server"), None, NOW);
    assert_eq!(a, Persona::derive("web-01", Some("linux-server"), None, NOW));
    let b = Persona::derive("web-02", Some("linux-server"), None, NOW);
    assert_ne!(a.interfaces[0].mac, b.interfaces[0].mac);
    assert_ne!(a.hostname, b.hostname);
}

#[test]
fn every_archetype_gets_a_release_of_its_family() {
    for (arch, family) in [
        ("iot-device", OsFamily::Embedded),
        ("windows-workstation", OsFamily::Windows),
        ("windows-server", OsFamily::Windows),
        ("database-host", OsFamily::Linux),
        ("linux-server", OsFamily::Linux),
    ] {
        for i in 0..20 {
            let p = Persona::derive(&format!("d{i}"), Some(arch), None, NOW);
            assert_eq!(p.family, family, "{arch}");
            let r = p.release_facts();
            assert!(r.kernels.iter().any(|(k, _)| *k == p.kernel_release));
            assert_eq!(p.ssh_banner, r.ssh_banner);
        }
    }
}

#[test]
fn all_listed_releases_are_used_by_some_archetype() {
    for r in RELEASES {
        let used = [
            "linux-server",
            "database-host",
            "mail-server",
            "container-host",
            "iot-device",
            "windows-workstation",
            "windows-server",
        ]
        .iter()
        .any(|a| releases::candidates(Some(a)).contains(&r.id));
        assert!(used, "{} is never drawn", r.id);
    }
}

#[test]
fn boot_time_is_before_now_and_stable_within_a_week() {
    let p = Persona::derive("db-02", Some("database-host"), None, NOW);
    assert!(p.boot_time < NOW);
    assert!(p.uptime(NOW) > 0);
    let later = Persona::derive("db-02", Some("database-host"), None, NOW + 60);
    let week_start = NOW - NOW.rem_euclid(7 * 86_400);
    if NOW + 60 < week_start + 7 * 86_400 {
        assert_eq!(p.boot_time, later.boot_time);
    }
    assert!(p.last_logins.iter().all(|l| l.at < NOW));
}

#[test]
fn interface_shows_a_lan_address_and_a_plausible_vendor() {
    let addr: IpAddr = "192.168.50.17".parse().unwrap();
    let p = Persona::derive("cam-lobby", Some("iot-device"), Some(addr), NOW);
    assert_eq!(p.interfaces[0].address, "192.168.50.17");
    assert_eq!(p.interfaces[0].gateway, "192.168.50.1");
    let oui = &p.interfaces[0].mac[..8];
    let known: Vec<String> = EMBEDDED_OUIS.iter().map(|o| format!("{:02x}:{:02x}:{:02x}", o[0], o[1], o[2])).collect();
    assert!(known.contains(&oui.to_string()), "{oui}");
    // A loopback decky claims a private LAN address, never 127.x.
    let lo = Persona::derive("web-01", Some("linux-server"), Some("127.1.0.1".parse().unwrap()), NOW);
    assert!(lo.interfaces[0].address.starts_with("10."));
}

#[test]
fn overrides_replace_fields_and_release_brings_its_facts() {
    let p = Persona::derive("web-01", Some("linux-server"), None, NOW);
    let o = serde_json::json!({"release": "centos-7", "cpu_count": 12, "ftp_anonymous": true});
    let q = p.clone().with_overrides(&o).unwrap();
    assert_eq!(q.release, "centos-7");
    assert_eq!(q.ssh_banner, "SSH-2.0-OpenSSH_7.4");
    assert_eq!(q.pretty_name, "CentOS Linux 7 (Core)");
    assert_eq!(q.cpu_count, 12);
    assert!(q.ftp_anonymous);
    assert_eq!(q.hostname, p.hostname);
    // An explicit banner wins over the release's.
    let r = p.clone().with_overrides(&serde_json::json!({"release": "debian-12", "ssh_banner": "SSH-2.0-X"})).unwrap();
    assert_eq!(r.ssh_banner, "SSH-2.0-X");
    let e = p.clone().with_overrides(&serde_json::json!({"no_such_field": 1})).unwrap_err();
    assert!(e.to_string().contains("no_such_field"), "{e}");
    assert!(p.clone().with_overrides(&serde_json::json!({"release": "plan9"})).is_err());
    assert!(p.with_overrides(&serde_json::json!({"cpu_count": "many"})).is_err());
}

#[test]
fn different_archetypes_differ_in_every_fact() {
    let a = Persona::derive("web-01", Some("linux-server"), None, NOW);
    let b = Persona::derive("db-02", Some("database-host"), None, NOW);
    let (va, vb) = (serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
    // Facts that must differ between any two deckies of different kinds;
    // `family`, `machine` and the like legitimately agree between two
    // Linux servers, and policy knobs are operator settings, not facts.
    for key in [
        "hostname",
        "archetype",
        "release",
        "pretty_name",
        "kernel_release",
        "kernel_version",
        "boot_time",
        "interfaces",
        "ssh_banner",
        "motd",
        "last_logins",
        "disks",
        "users",
        "packages",
    ] {
        assert_ne!(va[key], vb[key], "{key} is the same for web-01 and db-02");
    }
}

#[test]
fn a_version_override_wins_over_what_the_service_derives() {
    let p = Persona::derive("db-01", Some("database-host"), None, NOW);
    assert_eq!(p.version_of("redis", |_| "6.0.16".into()), "6.0.16");
    let p = p.with_overrides(&serde_json::json!({ "versions": { "redis": "7.2.4" } })).unwrap();
    assert_eq!(p.version_of("redis", |_| "6.0.16".into()), "7.2.4");
    assert_eq!(p.version_of("mysql", |_| "8.0.36".into()), "8.0.36");
}
