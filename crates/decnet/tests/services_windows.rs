//! The Windows services (smb, rdp, vnc, ldap) of a domain-controller
//! persona, driven by their real clients inside a namespace the test
//! makes: smbclient, xfreerdp (+auth-only, under Xvfb), ldapsearch, a
//! python VNC client (pycryptodome's DES), and nmap -sV with the SMB2 and
//! RDP NSE scripts. Each client's credential or hash arrives as a
//! `login_attempt` line and its requests as `command` lines; the NTLM
//! lines are proven crackable by recomputing them from the password.

mod native_support;

use native_support::{is, sd, NsFleet};

const PERSONA: &str = r#"{"release": "windows-server-2019", "archetype": "windows-server", "domain": "corp.internal"}"#;

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn windows_fleet(tag: &str) -> NsFleet {
    let fleet = NsFleet::start(tag, &[("dc-01", "127.0.0.1")], |o| {
        o.personas.insert("dc-01".into(), serde_json::from_str(PERSONA).unwrap());
    })
    .await;
    fleet.deploy("dc-01", &["smb", "rdp", "vnc", "ldap"]).await;
    fleet
}

/// The credential the ingester stores for `service`'s login line (kind,
/// username), read from the raw line as the collector receives it.
fn stored_credential(fleet: &NsFleet, service: &str) -> (String, String) {
    let lines = fleet.receiver.lines.lock().unwrap().clone();
    lines
        .iter()
        .filter_map(|raw| decnet::collector::parse::parse_record(raw, 0.0).ok())
        .filter(|r| r.service == service && r.event_type == "login_attempt")
        .find_map(|r| decnet::ingest::store::credential_of(&r))
        .map(|c| (c.kind, c.username))
        .unwrap_or_else(|| panic!("no stored credential for {service} in:\n{}", lines.join("\n")))
}

/// The NetNTLMv2 line checks out against `password` (recomputed in python).
async fn assert_crackable(fleet: &NsFleet, hash: &str, password: &str) {
    let out = fleet.ns.run(30, "python3", &[&script("netntlmv2_check.py"), hash, password]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "match", "{hash}: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_services_answer_real_clients_and_record_what_they_reveal() {
    let fleet = windows_fleet("win").await;
    let decky = |l: &decnet::events::rfc5424::SyslogLine| l.hostname.as_deref() == Some("dc-01");

    // smb: a password logon is refused as Windows refuses it, and its
    // NetNTLMv2 response is recorded in hashcat's format.
    let out = fleet.ns.run(60, "smbclient", &["-L", "//127.0.0.1", "-U", "alice%Winter2024!"]).await;
    assert!(text(&out).contains("NT_STATUS_LOGON_FAILURE"), "{}", text(&out));
    let line = fleet.receiver.wait_for("smb hash", |l| decky(l) && is(l, "smb", "login_attempt")).await;
    assert_eq!(sd(&line, "username"), Some("alice"));
    assert_eq!(sd(&line, "hash_type"), Some("netntlmv2"));
    assert!(sd(&line, "secret_b64").is_none());
    let hash = sd(&line, "hash").unwrap().to_string();
    assert!(hash.starts_with("alice::"), "{hash}");
    assert_crackable(&fleet, &hash, "Winter2024!").await;

    // A null session gets in, reaches IPC$, and is refused the share list
    // (srvsvc) and any disk share, as on Windows Server 2019.
    let out = fleet.ns.run(60, "smbclient", &["-L", "//127.0.0.1", "-N"]).await;
    let listing = text(&out);
    assert!(listing.contains("Anonymous login successful"), "{listing}");
    assert!(listing.contains("SMB1 disabled -- no workgroup available"), "{listing}");
    assert!(!listing.contains("IPC$") && !listing.contains("ADMIN$"), "no share is listed: {listing}");
    fleet
        .receiver
        .wait_for("IPC$", |l| is(l, "smb", "command") && sd(l, "command") == Some("tree connect \\\\127.0.0.1\\IPC$"))
        .await;
    fleet
        .receiver
        .wait_for("srvsvc", |l| is(l, "smb", "command") && sd(l, "command") == Some("open pipe srvsvc"))
        .await;
    let out = fleet.ns.run(60, "smbclient", &["//127.0.0.1/C$", "-N", "-c", "ls"]).await;
    assert!(text(&out).contains("NT_STATUS_ACCESS_DENIED"), "{}", text(&out));
    fleet
        .receiver
        .wait_for("C$", |l| is(l, "smb", "command") && sd(l, "command") == Some("tree connect \\\\127.0.0.1\\C$"))
        .await;

    // rdp: xfreerdp's NLA logon, the same crackable line, a logon failure.
    let out = fleet
        .ns
        .run(
            90,
            "xvfb-run",
            &["-a", "xfreerdp", "/v:127.0.0.1", "/u:bob", "/p:Summer2025#", "/d:CORP", "+auth-only", "/cert:ignore"],
        )
        .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("LOGON_FAILURE"), "{}", text(&out));
    let line = fleet.receiver.wait_for("rdp hash", |l| is(l, "rdp", "login_attempt")).await;
    assert_eq!((sd(&line, "username"), sd(&line, "domain")), (Some("bob"), Some("CORP")));
    assert_eq!(sd(&line, "hash_type"), Some("netntlmv2"));
    assert_crackable(&fleet, sd(&line, "hash").unwrap(), "Summer2025#").await;
    fleet
        .receiver
        .wait_for("mstshash", |l| {
            is(l, "rdp", "command") && sd(l, "command").is_some_and(|c| c.starts_with("connect mstshash=bob "))
        })
        .await;

    // vnc: the challenge and the client's DES response, as john's line.
    let out = fleet.ns.run(30, "python3", &[&script("vnc_client.py"), "127.0.0.1", "5900", "s3cretpw"]).await;
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(seen["version"], "RFB 003.008\n");
    assert_eq!(seen["types"], serde_json::json!([2]));
    assert_eq!((seen["result"].as_u64(), seen["reason"].as_str()), (Some(1), Some("password check failed!")));
    let line = fleet.receiver.wait_for("vnc hash", |l| is(l, "vnc", "login_attempt")).await;
    let expected = format!("$vnc$*{}*{}", seen["challenge"].as_str().unwrap(), seen["response"].as_str().unwrap());
    assert_eq!(sd(&line, "hash"), Some(expected.as_str()));
    assert_eq!(sd(&line, "hash_type"), Some("vnc-des"));

    // ldap: the rootDSE of a DC of corp.internal to anyone; a simple bind
    // recorded and refused with AD's text; other anonymous searches refused.
    let out = fleet
        .ns
        .run(30, "ldapsearch", &["-x", "-o", "ldif-wrap=no", "-H", "ldap://127.0.0.1", "-s", "base", "-b", ""])
        .await;
    let dse = text(&out);
    for want in [
        "defaultNamingContext: DC=corp,DC=internal",
        "dnsHostName: dc-01.corp.internal",
        "supportedSASLMechanisms: GSS-SPNEGO",
        "supportedLDAPVersion: 3",
        "domainFunctionality: 7",
        "serverName: CN=DC-01,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=corp,DC=internal",
        "currentTime: ",
    ] {
        assert!(dse.contains(want), "no {want:?} in\n{dse}");
    }
    let out = fleet
        .ns
        .run(
            30,
            "ldapsearch",
            &[
                "-x",
                "-H",
                "ldap://127.0.0.1",
                "-D",
                "CN=svc_backup,CN=Users,DC=corp,DC=internal",
                "-w",
                "Backup!23",
                "-b",
                "DC=corp,DC=internal",
            ],
        )
        .await;
    assert!(text(&out).contains("Invalid credentials (49)") && text(&out).contains("data 52e"), "{}", text(&out));
    let line = fleet.receiver.wait_for("ldap bind", |l| is(l, "ldap", "login_attempt")).await;
    assert_eq!(sd(&line, "username"), Some("CN=svc_backup,CN=Users,DC=corp,DC=internal"));
    assert_eq!(sd(&line, "secret_b64"), Some("QmFja3VwITIz"));
    let out = fleet
        .ns
        .run(
            30,
            "ldapsearch",
            &[
                "-x",
                "-H",
                "ldap://127.0.0.1",
                "-b",
                "DC=corp,DC=internal",
                "(&(objectClass=user)(adminCount=1))",
                "sAMAccountName",
            ],
        )
        .await;
    assert!(text(&out).contains("result: 1 Operations error") && text(&out).contains("000004DC"), "{}", text(&out));
    fleet
        .receiver
        .wait_for("ldap search", |l| {
            is(l, "ldap", "command")
                && sd(l, "command")
                    == Some("search base=\"DC=corp,DC=internal\" scope=2 filter=(&(objectClass=user)(adminCount=1)) attrs=sAMAccountName")
        })
        .await;

    // Each becomes a row of `credentials`, of the right kind.
    assert_eq!(stored_credential(&fleet, "smb"), ("hash:netntlmv2".into(), "alice".into()));
    assert_eq!(stored_credential(&fleet, "rdp"), ("hash:netntlmv2".into(), "bob".into()));
    assert_eq!(stored_credential(&fleet, "vnc"), ("hash:vnc-des".into(), "".into()));
    assert_eq!(
        stored_credential(&fleet, "ldap"),
        ("password".into(), "CN=svc_backup,CN=Users,DC=corp,DC=internal".into())
    );

    // What a scanner concludes: nmap -sV and the NSE scripts name the
    // persona's products and names.
    let out = fleet
        .ns
        .run(
            400,
            "nmap",
            &[
                "-sV",
                "-Pn",
                "-n",
                "-p",
                "389,445,3389,5900",
                "--script",
                "smb2-security-mode,smb2-time,rdp-ntlm-info",
                "127.0.0.1",
            ],
        )
        .await;
    let report = text(&out);
    for want in [
        "Microsoft Windows Active Directory LDAP (Domain: corp.internal, Site: Default-First-Site-Name)",
        "445/tcp  open  microsoft-ds",
        "Microsoft Terminal Services",
        "VNC (protocol 3.8)",
        "Message signing enabled and required",
        "NetBIOS_Domain_Name: CORP",
        "NetBIOS_Computer_Name: DC-01",
        "DNS_Computer_Name: dc-01.corp.internal",
        "Product_Version: 10.0.17763",
    ] {
        assert!(report.contains(want), "no {want:?} in nmap's report:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_end_only_their_own_session() {
    let fleet = windows_fleet("winbad").await;
    let send = |port: &'static str, hex: &'static str| {
        let fleet = &fleet;
        async move { fleet.ns.run(30, "python3", &[&script("raw_send.py"), "127.0.0.1", port, hex]).await }
    };
    // Lengths far over the caps: each session ends at once, before the
    // body is awaited (the client sends none).
    send("445", "00ffffff").await;
    send("389", "30847fffffff").await;
    send("3389", "0300ffff").await;
    // Garbage where a version or an X.224 request belongs.
    send("5900", "474554202f20485454502f312e310d0a").await;
    send("3389", "0300000b06d00000000000").await;
    // Well framed, wrong inside: an LDAP message with no operation, HTTP
    // to RDP, a VNC client choosing security type None, a NetBIOS keepalive.
    send("389", "300302010a").await;
    send("3389", "474554202f20485454502f312e310d0a0d0a").await;
    send("5900", "524642203030332e3030380a01").await;
    send("445", "85000000").await;
    // SMB1 only (nmap's probe, old clients): closed, as SMB1 is not installed.
    send(
        "445",
        "0000002fff534d4272000000000000000000000000000000000000000000000000000000000c00024e54204c4d20302e313200",
    )
    .await;
    let lines = || fleet.receiver.parsed();
    for (service, reason) in
        [("smb", "over the 65536-byte cap"), ("ldap", "over the 65536-byte cap"), ("rdp", "over the 16384-byte cap")]
    {
        fleet
            .receiver
            .wait_for(reason, |l| is(l, service, "disconnect") && sd(l, "reason").is_some_and(|r| r.contains(reason)))
            .await;
    }
    fleet
        .receiver
        .wait_for("vnc garbage", |l| {
            is(l, "vnc", "command")
                && sd(l, "command").is_some_and(|c| c.starts_with("invalid protocol version GET / HTTP"))
        })
        .await;
    fleet
        .receiver
        .wait_for("rdp garbage", |l| {
            is(l, "rdp", "command") && sd(l, "command") == Some("malformed connection request")
        })
        .await;
    fleet
        .receiver
        .wait_for("smb1", |l| is(l, "smb", "command") && sd(l, "command") == Some("SMB1 negotiate refused"))
        .await;
    let command = |service: &'static str, prefix: &'static str| {
        let fleet = &fleet;
        async move {
            fleet
                .receiver
                .wait_for(prefix, |l| {
                    is(l, service, "command") && sd(l, "command").is_some_and(|c| c.starts_with(prefix))
                })
                .await
        }
    };
    command("ldap", "malformed request (truncated)").await;
    command("rdp", "not rdp (GET ").await;
    command("vnc", "security type 1").await;
    // The keepalive and the SMB1-only sessions both end as `done`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let done = lines().iter().filter(|l| is(l, "smb", "disconnect") && sd(l, "reason") == Some("done")).count();
        if done >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done} smb sessions ended as done");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Every service still answers a real client afterwards.
    let out =
        fleet.ns.run(30, "ldapsearch", &["-x", "-H", "ldap://127.0.0.1", "-s", "base", "-b", "", "dnsHostName"]).await;
    assert!(text(&out).contains("dnsHostName: dc-01.corp.internal"), "{}", text(&out));
    let out = fleet.ns.run(30, "python3", &[&script("vnc_client.py"), "127.0.0.1", "5900", "x"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("password check failed!"), "{}", text(&out));
    assert!(lines().iter().all(|l| l.hostname.as_deref() == Some("dc-01")));
}

/// The VNC decky and a real x11vnc (Debian's libvncserver server, under
/// Xvfb, in the same namespace) answer the same VNC client the same way:
/// version, security types, result and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_answers_as_a_real_x11vnc_does() {
    let fleet = NsFleet::start("winvnc", &[("vnc-01", "127.0.0.1")], |_| {}).await;
    fleet.deploy("vnc-01", &["vnc"]).await;
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let stored = std::process::Command::new("x11vnc")
        .args(["-storepasswd", "the-real-one"])
        .arg(&passwd)
        .output()
        .expect("x11vnc is installed");
    assert!(stored.status.success(), "{}", text(&stored));
    // x11vnc lingers after a client that failed to log in; `timeout`
    // (coreutils) puts itself, xvfb-run, Xvfb and x11vnc in one process
    // group, which is signalled below, or at the latest after 90 s.
    let mut real = fleet.ns.command("timeout");
    real.args(["90", "xvfb-run", "-a", "x11vnc", "-rfbauth"])
        .arg(&passwd)
        .args(["-rfbport", "5901", "-localhost", "-timeout", "60", "-quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut real = real.spawn().unwrap();
    let mut seen = Vec::new();
    for port in ["5900", "5901"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let answer = loop {
            let out = fleet.ns.run(30, "python3", &[&script("vnc_client.py"), "127.0.0.1", port, "a-wrong-one"]).await;
            if out.status.success() {
                break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
            }
            // x11vnc takes a moment to open its port.
            assert!(std::time::Instant::now() < deadline, "port {port}: {}", text(&out));
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        seen.push(answer);
    }
    for field in ["version", "types", "result", "reason"] {
        assert_eq!(seen[0][field], seen[1][field], "{field}: decky {} vs x11vnc {}", seen[0], seen[1]);
    }
    // `ip netns exec` execs `timeout`: its pid leads the group.
    let group = format!("-{}", real.id().expect("still running"));
    let _ = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), real.wait()).await;
}
