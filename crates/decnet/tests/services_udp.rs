//! The UDP services (dns, snmp, tftp, llmnr, sip) of one decky in a test
//! namespace, each driven by its real client: dig, snmpget/snmpwalk,
//! curl's TFTP, dig on the LLMNR port, sipvicious; and nmap -sU -sV naming
//! the products the persona names. Lines arrive per datagram without a
//! session around them.

mod native_support;

use std::time::Duration;

use base64::Engine as _;
use native_support::{is, sd, NsFleet};

const DECKY: &str = "ns-01";
const IP: &str = "127.0.0.1";

async fn fleet() -> NsFleet {
    let fleet = NsFleet::start("udp", &[(DECKY, IP)], |o| {
        o.personas.insert(DECKY.into(), serde_json::json!({"release": "debian-12", "domain": "corp.internal"}));
    })
    .await;
    fleet.deploy(DECKY, &["dns", "snmp", "tftp", "llmnr", "sip"]).await;
    fleet
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_services_answer_their_real_clients_and_record_what_they_ask() {
    let fleet = fleet().await;
    let ns = &fleet.ns;
    let at = format!("@{IP}");

    // DNS: its own name, the zone's SOA, other zones refused, version.bind.
    let out = ns.run(20, "dig", &[&at, "ns-01.corp.internal", "A", "+short", "+tries=1", "+time=3"]).await;
    assert_eq!(text(&out), IP, "{}", String::from_utf8_lossy(&out.stderr));
    let out = ns.run(20, "dig", &[&at, "corp.internal", "SOA", "+short", "+tries=1", "+time=3"]).await;
    assert!(text(&out).starts_with("ns-01.corp.internal. hostmaster.corp.internal. "), "{}", text(&out));
    let out = ns.run(20, "dig", &[&at, "www.example.com", "A", "+tries=1", "+time=3"]).await;
    // As a real authoritative-only named answers (scripts/real-udp-servers.sh).
    assert!(text(&out).contains("status: REFUSED") && text(&out).contains("flags: qr rd;"), "{}", text(&out));
    assert!(text(&out).contains("; EDNS: version: 0, flags:; udp: 1232"), "{}", text(&out));
    assert!(text(&out).contains("WARNING: recursion requested but not available"), "{}", text(&out));
    let out = ns.run(20, "dig", &[&at, "nothere.corp.internal", "A", "+tries=1", "+time=3"]).await;
    assert!(text(&out).contains("status: NXDOMAIN") && text(&out).contains("flags: qr aa rd"), "{}", text(&out));
    let out = ns.run(20, "dig", &[&at, "-c", "CH", "-t", "TXT", "version.bind", "+short", "+tries=1", "+time=3"]).await;
    assert_eq!(text(&out), "\"9.18.49-1~deb12u3-Debian\"");
    // Over TCP too.
    let out = ns.run(20, "dig", &[&at, "+tcp", "mail.corp.internal", "A", "+short", "+tries=1", "+time=3"]).await;
    assert!(text(&out).parse::<std::net::Ipv4Addr>().is_ok(), "{}", text(&out));
    let line = fleet
        .receiver
        .wait_for("dns request", |l| is(l, "dns", "request") && sd(l, "name") == Some("www.example.com."))
        .await;
    assert_eq!((sd(&line, "qtype"), sd(&line, "qclass"), sd(&line, "rcode")), (Some("A"), Some("IN"), Some("REFUSED")));
    assert_eq!(sd(&line, "transport"), Some("udp"));
    assert_eq!(sd(&line, "sid"), None, "a datagram is not a session");
    fleet
        .receiver
        .wait_for("dns over tcp", |l| is(l, "dns", "request") && sd(l, "name") == Some("mail.corp.internal."))
        .await;

    // SNMP: the right community answers sysDescr and walks; a wrong one
    // gets nothing; both are recorded as credentials.
    let out = ns.run(20, "snmpget", &["-v2c", "-c", "public", "-t", "2", "-r", "0", IP, "1.3.6.1.2.1.1.1.0"]).await;
    let descr = text(&out);
    assert!(descr.contains("STRING: \"Linux ns-01 ") && descr.ends_with(" x86_64\""), "{descr}");
    let out = ns.run(60, "snmpwalk", &["-v2c", "-c", "public", "-t", "2", "-r", "0", IP, "1.3.6.1.2.1.1"]).await;
    let walk = text(&out);
    assert!(walk.contains("STRING: \"ns-01\"") && walk.contains("Timeticks: ("), "{walk}");
    // sysObjectID NET-SNMP-TC::linux; sysLocation as Debian ships it.
    assert!(walk.contains("OID: iso.3.6.1.4.1.8072.3.2.10"), "{walk}");
    assert!(walk.contains("\"Sitting on the Dock of the Bay\""), "{walk}");
    let out = ns.run(60, "snmpwalk", &["-v1", "-c", "public", "-t", "2", "-r", "0", IP, "1.3.6.1.2.1.2.2.1.2"]).await;
    assert!(text(&out).contains("STRING: \"lo\""), "{}", text(&out));
    let out = ns.run(20, "snmpget", &["-v2c", "-c", "letmein", "-t", "1", "-r", "0", IP, "1.3.6.1.2.1.1.5.0"]).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Timeout"), "{out:?}");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (community, result) in [("public", "accepted"), ("letmein", "refused")] {
        let line = fleet
            .receiver
            .wait_for("snmp community", |l| {
                is(l, "snmp", "login_attempt") && sd(l, "secret_b64") == Some(b64(community).as_str())
            })
            .await;
        assert_eq!((sd(&line, "username"), sd(&line, "result")), (Some("community"), Some(result)));
    }
    fleet
        .receiver
        .wait_for("snmp get", |l| is(l, "snmp", "command") && sd(l, "command") == Some("GET 1.3.6.1.2.1.1.5.0"))
        .await;

    // TFTP: a file of the persona's set, a missing one, an upload.
    let out = ns.run(20, "curl", &["-sS", "--max-time", "10", &format!("tftp://{IP}/startup-config")]).await;
    assert!(text(&out).contains("hostname ns-01-gw"), "{out:?}");
    let out = ns.run(20, "curl", &["-sS", "--max-time", "10", &format!("tftp://{IP}/nope.cfg")]).await;
    assert_eq!(out.status.code(), Some(68), "curl's TFTP file-not-found: {out:?}");
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("implant.bin");
    let payload: Vec<u8> = (0..1500u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&upload, &payload).unwrap();
    let out = ns
        .run(
            20,
            "curl",
            &["-sS", "--max-time", "10", "-T", upload.to_str().unwrap(), &format!("tftp://{IP}/implant.bin")],
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let sha: String = ring_sha256(&payload);
    let line = fleet.receiver.wait_for("tftp upload", |l| is(l, "tftp", "upload")).await;
    assert_eq!(
        (sd(&line, "filename"), sd(&line, "bytes"), sd(&line, "sha256"), sd(&line, "complete")),
        (Some("implant.bin"), Some("1500"), Some(sha.as_str()), Some("true"))
    );
    fleet.receiver.wait_for("tftp rrq", |l| is(l, "tftp", "request") && sd(l, "filename") == Some("nope.cfg")).await;

    // LLMNR: its own name answered with its address, others not at all.
    let llmnr = ["-p", "5355", &at, "+noedns", "+tries=1", "+time=2"];
    let out = ns.run(20, "dig", &[&llmnr[..], &["NS-01", "A", "+short"]].concat()).await;
    assert_eq!(text(&out), IP, "{out:?}");
    let out = ns.run(20, "dig", &[&llmnr[..], &["wpad", "A"]].concat()).await;
    let said = format!("{}{}", text(&out), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("timed out") && !said.contains("ANSWER SECTION"), "{said}");
    let line =
        fleet.receiver.wait_for("llmnr wpad", |l| is(l, "llmnr", "request") && sd(l, "name") == Some("wpad.")).await;
    assert_eq!(sd(&line, "answered"), Some("false"));

    // SIP: sipvicious's svmap names the PBX; svcrack's digest answers are
    // recorded as john-format hashes that the password reproduces.
    let out = ns.run(30, "sipvicious_svmap", &[IP]).await;
    assert!(text(&out).contains("Asterisk PBX 18.20.2"), "{out:?}");
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "hunter2\n").unwrap();
    let out = ns.run(60, "sipvicious_svcrack", &["-u", "1001", "-d", words.to_str().unwrap(), IP]).await;
    let line = fleet
        .receiver
        .wait_for("sip digest", |l| is(l, "sip", "login_attempt") && sd(l, "username") == Some("1001"))
        .await;
    assert_eq!(sd(&line, "hash_type"), Some("sip-digest"), "{out:?}");
    let hash = sd(&line, "hash").unwrap().to_string();
    let f: Vec<&str> = hash.split('*').collect();
    assert_eq!((f[0], f[3], f[4], f[5]), ("$sip$", "1001", "asterisk", "REGISTER"), "{hash}");
    let uri = if f[8].is_empty() { format!("{}:{}", f[6], f[7]) } else { format!("{}:{}:{}", f[6], f[7], f[8]) };
    let ha1 = md5_hex("1001:asterisk:hunter2");
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    assert_eq!(
        f[14],
        md5_hex(&format!("{ha1}:{}:{ha2}", f[9])),
        "the recorded digest is svcrack's answer for hunter2: {hash}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmap_names_bind_net_snmp_and_asterisk() {
    let fleet = fleet().await;
    let ip = IP.parse().unwrap();
    let dns = fleet.ns.nmap_udp_version(ip, 53).await;
    assert!(dns.contains("ISC BIND 9.18.49"), "{dns}");
    let snmp = fleet.ns.nmap_udp_version(ip, 161).await;
    assert!(snmp.contains("net-snmp"), "{snmp}");
    let sip = fleet.ns.nmap_udp_version(ip, 5060).await;
    assert!(sip.contains("Asterisk"), "{sip}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_is_cut_off_and_logged_once_while_others_are_served() {
    let fleet = NsFleet::start("udpflood", &[(DECKY, IP), ("ns-02", "127.0.0.2")], |o| {
        o.limits.datagrams.per_source_burst = 20.0;
        // One more every 10 s after the burst: the flood below takes ~12 s.
        o.limits.datagrams.per_source_datagrams = 0.1;
    })
    .await;
    fleet.deploy(DECKY, &["dns"]).await;
    let dns = fleet.at(DECKY, "dns").await;
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03".to_vec();
    let mut answered = 0;
    for _ in 0..60 {
        if fleet.udp_exchange(dns, query.clone(), Duration::from_millis(300)).await.is_some() {
            answered += 1;
        }
    }
    // The burst (and a refilled datagram or two): never the whole flood.
    assert!((20..=22).contains(&answered), "{answered} of 60 answered");
    let refused = fleet.receiver.wait_for("refusal", |l| is(l, "dns", "connection_refused")).await;
    assert_eq!(sd(&refused, "reason"), Some("source rate"));
    let n = fleet.receiver.parsed().iter().filter(|l| is(l, "dns", "connection_refused")).count();
    // About 40 refusals, at most one line per 10 s for the address.
    assert!((1..=2).contains(&n), "{n} refusal lines: one per 10 s per address");
    // Another address of the namespace is still answered.
    let other = tokio::task::spawn_blocking({
        let path = fleet.ns.path();
        move || {
            decnet::decky::netns::run_in(Some(&path), move || {
                let s = std::net::UdpSocket::bind("127.0.0.2:0")?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.send_to(&query, dns)?;
                let mut buf = [0u8; 512];
                s.recv_from(&mut buf).map(|(n, _)| n)
            })
        }
    })
    .await
    .unwrap();
    assert!(other.is_ok_and(|n| n > 12), "another source was not answered");
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn ring_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// mDNS as dig (legacy unicast on 5353) and nmap's dns-service-discovery
/// see it: the decky's `.local` name, the DNS-SD list built from the
/// services it is serving right now with their ports, every question
/// recorded, other names unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdns_answers_its_name_and_lists_what_the_decky_serves() {
    let fleet = NsFleet::start("mdns", &[(DECKY, IP)], |o| {
        o.personas.insert(DECKY.into(), serde_json::json!({"release": "debian-12"}));
    })
    .await;
    fleet.deploy(DECKY, &["mdns", "http", "ftp"]).await;
    let ns = &fleet.ns;
    let mdns = ["-p", "5353", &format!("@{IP}"), "+tries=1", "+time=2"].map(String::from);
    let dig = |args: &[&str]| {
        let mut all: Vec<&str> = mdns.iter().map(String::as_str).collect();
        all.extend(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            ns.run(20, "dig", &refs).await
        }
    };
    let out = dig(&["ns-01.local", "A", "+short"]).await;
    assert_eq!(text(&out), IP, "{}", String::from_utf8_lossy(&out.stderr));
    let out = dig(&["_services._dns-sd._udp.local", "PTR", "+short"]).await;
    let mut types: Vec<String> = text(&out).lines().map(str::to_string).collect();
    types.sort();
    assert_eq!(types, ["_ftp._tcp.local.", "_http._tcp.local."], "{}", text(&out));
    let out = dig(&["_http._tcp.local", "PTR"]).await;
    let answer = text(&out);
    let squashed = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(answer.contains("flags: qr aa;"), "{answer}");
    assert!(
        squashed.contains("ns-01._http._tcp.local. 10 IN SRV 0 0 80 ns-01.local."),
        "legacy TTL, real port\n{answer}"
    );
    assert!(squashed.contains("ns-01.local. 10 IN A 127.0.0.1"), "{answer}");
    // Another host's name: a responder stays silent.
    let out = dig(&["printer.local", "A"]).await;
    assert!(text(&out).contains("timed out"), "{}", text(&out));

    let out = ns.run(60, "nmap", &["-sU", "-Pn", "-n", "-p5353", "--script", "dns-service-discovery", IP]).await;
    let report = text(&out);
    for want in ["5353/udp open", "80/tcp http", "21/tcp ftp", "Address=127.0.0.1"] {
        assert!(report.contains(want), "dns-service-discovery does not print {want:?}\n{report}");
    }

    let line = fleet
        .receiver
        .wait_for("mdns request", |l| is(l, "mdns", "request") && sd(l, "name") == Some("printer.local."))
        .await;
    assert_eq!((sd(&line, "qtype"), sd(&line, "answered")), (Some("A"), Some("false")));
    fleet
        .receiver
        .wait_for("mdns enumeration", |l| {
            is(l, "mdns", "request")
                && sd(l, "name") == Some("_services._dns-sd._udp.local.")
                && sd(l, "answered") == Some("true")
        })
        .await;
}
