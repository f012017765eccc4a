//! Every registered protocol takes any bytes: random and protocol-shaped
//! inputs, sent by many clients at once, never panic a session, never make
//! a log line that is not one clean RFC 5424 line, and leave the service
//! answering. Inputs come from proptest strategies; they are run
//! concurrently (each from its own loopback source address) because one
//! session of a line protocol can take seconds to end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use decnet_decky::listener::ServiceListener;
use decnet_decky::services::{Transport, REGISTRY};
use decnet_decky::sink::LineSink;
use decnet_decky::{DeckyContext, Limits, Persona};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

mod common;
use common::collector;

/// Inputs per protocol.
const CASES: usize = 48;

/// Bytes a client might send: anything, or text shaped like each
/// protocol's requests (so parsers get past their first check).
fn inputs() -> impl Strategy<Value = Vec<u8>> {
    let words = proptest::sample::select::<&'static [u8]>(vec![
        "SSH-2.0-OpenSSH_9.2\r\n".as_bytes(),
        "GET / HTTP/1.1\r\n".as_bytes(),
        "Host: x\r\n".as_bytes(),
        "\r\n".as_bytes(),
        "USER root\r\n".as_bytes(),
        "PASS x\r\n".as_bytes(),
        "EHLO a\r\n".as_bytes(),
        "STARTTLS\r\n".as_bytes(),
        "AUTH PLAIN AGFhAGI=\r\n".as_bytes(),
        "MAIL FROM:<a@b>\r\n".as_bytes(),
        "DATA\r\n".as_bytes(),
        "PASV\r\n".as_bytes(),
        "LIST\r\n".as_bytes(),
        "root\r\n".as_bytes(),
        "\u{ff}\u{fd}\u{18}".as_bytes(),
        "\x16\x03\x01\x00\x05hello".as_bytes(),
        "Content-Length: 99999999\r\n".as_bytes(),
        "Transfer-Encoding: chunked\r\n".as_bytes(),
        "0\r\n\r\n".as_bytes(),
        "\x1b[31m".as_bytes(),
        "\u{202e}".as_bytes(),
        "%s%n%x".as_bytes(),
        "../../../../etc/passwd".as_bytes(),
        // mysql: a login packet's start (capabilities, max packet, charset, filler), a user.
        b"\x3a\x00\x00\x01\x85\xa6\xff\x01\x00\x00\x00\x01\x21",
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"root\x00\x14",
        b"mysql_native_password\x00",
        b"\x21\x00\x00\x00\x03select @@version",
        // postgres: SSLRequest, a v3 startup, password/SASL messages.
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        b"\x00\x00\x00\x12\x00\x03\x00\x00user\x00bob\x00\x00",
        b"p\x00\x00\x00\x28md5",
        b"SCRAM-SHA-256\x00\x00\x00\x00\x0fn,,n=,r=abcdefg",
        b"c=biws,r=abc,p=",
        // mssql: PRELOGIN and LOGIN7 packet headers, a PRELOGIN option table.
        b"\x12\x01\x00\x2f\x00\x00\x01\x00",
        b"\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\xff",
        b"\x10\x01\x00\x80\x00\x00\x01\x00",
        // docker_api / k8s
        "POST /v1.41/containers/create HTTP/1.1\r\n".as_bytes(),
        "Authorization: Bearer x\r\n".as_bytes(),
        "{\"Image\":\"a\",\"Cmd\":[\"sh\"],\"HostConfig\":{\"Binds\":[\"/:/h\"]}}".as_bytes(),
        // mqtt: CONNECT 3.1.1, PUBLISH QoS 1, a length cut short
        "\x10\x10\x00\x04MQTT\x04\x02\x00\x1e\x00\x04nmap".as_bytes(),
        "\x32\x08\x00\x03a/b\x00\x01hi".as_bytes(),
        "\x10\x7f\x7f".as_bytes(),
        // conpot (Modbus/TCP): read holding registers, device identification
        "\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a".as_bytes(),
        "\x00\x02\x00\x00\x00\x05\x01\x2b\x0e\x01\x00".as_bytes(),
        "\x00\x03\x00\x00\x00\x09\x01\x10\x00\x01\x00\x7f\x02".as_bytes(),
        // redis (RESP and inline), imap, pop3, elasticsearch, mongodb
        "*1\r\n$4\r\nPING\r\n".as_bytes(),
        "*3\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$3\r\ndir\r\n".as_bytes(),
        "*2\r\n$999999999\r\n".as_bytes(),
        "*-1\r\n".as_bytes(),
        "set x \"\\x41\r\n".as_bytes(),
        "INFO\r\n".as_bytes(),
        "a1 LOGIN u \"p\\\"w\"\r\n".as_bytes(),
        "a2 AUTHENTICATE PLAIN\r\n".as_bytes(),
        "AHUAcA==\r\n".as_bytes(),
        "a3 STARTTLS\r\n".as_bytes(),
        "CAPA\r\n".as_bytes(),
        "STLS\r\n".as_bytes(),
        "AUTH PLAIN AHUAcA==\r\n".as_bytes(),
        "POST /_search HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"q\"}".as_bytes(),
        "GET /_cat/indices?v HTTP/1.1\r\n".as_bytes(),
        "\u{3a}\0\0\0\x01\0\0\0\0\0\0\0\u{dd}\x07\0\0\0\0\0\0\0".as_bytes(),
        "\x25\0\0\0\x10\x05\0\0\0\0\0\0\x03\x01hello\0\x10\0\0\0".as_bytes(),
        "\0\0\x01\0".as_bytes(),
    ]);
    let shaped = proptest::collection::vec(words, 0..12).prop_map(|w| w.concat());
    // Pieces of the binary protocols' frames (smb, rdp, vnc, ldap), so
    // their parsers see real headers with lying lengths after them.
    let pieces: Vec<&'static [u8]> = vec![
        b"\0\0\0\x40",
        b"\0\xff\xff\xff",
        b"\xfeSMB\x40\0\0\0\0\0\0\0\0\0\x01\0",
        b"\xffSMBr\0\0\0\0\x08\x01\x40",
        b"\x02SMB 2.???\0",
        b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2",
        b"NTLMSSP\0\x03\0\0\0\x18\0\x18\0\xff\xff\0\0",
        b"\x60\x48\x06\x06\x2b\x06\x01\x05\x05\x02\xa0\x3e",
        b"\xa1\x81\xff\x30\x84\x7f\xff\xff\xff",
        b"\x03\0\0\x2a\x25\xe0\0\0\0\0\0Cookie: mstshash=root\r\n\x01\0\x08\0\x0b\0\0\0",
        b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\0\x80\0",
        b"\x30\x25\x02\x01\x02\x63\x20\x04\0\x0a\x01\0\x0a\x01\0\x02\x01\0\x02\x01\0\x01\x01\0\x87\x0bobjectClass\x30\0",
        b"\xa2\x84\0\0\0\x02\xa2\x00",
        b"RFB 003.008\n",
        b"\x02",
        // S7comm (conpot's companion on 102): a COTP connection request,
        // setup communication, read SZL 0x001c, read var DB1, a lying TPKT.
        b"\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x14\x00\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a",
        b"\x03\x00\x00\x19\x02\xf0\x80\x32\x01\x00\x00\x00\x00\x00\x08\x00\x00\xf0\x00\x00\x01\x00\x01\x01\xe0",
        b"\x03\x00\x00\x21\x02\xf0\x80\x32\x07\x00\x00\x00\x00\x00\x08\x00\x08\x00\x01\x12\x04\x11\x44\x01\x00\xff\x09\x00\x04\x00\x1c\x00\x01",
        b"\x03\x00\x00\x1f\x02\xf0\x80\x32\x01\x00\x00\x00\x01\x00\x0e\x00\x00\x04\x01\x12\x0a\x10\x02\x00\x04\x00\x01\x84\x00\x00\x00",
        b"\x03\x00\x04\x00\x02\xf0\x80\x32\x07\xff\xff",
    ];
    let binary = proptest::collection::vec(proptest::sample::select(pieces), 0..10).prop_map(|p| p.concat());
    let raw = proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048);
    proptest::prop_oneof![shaped, binary, raw]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_takes_any_bytes_and_keeps_serving() {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 100_000, Default::default());
    let limits = Limits {
        idle: Duration::from_millis(800),
        max_session: Duration::from_secs(3),
        max_sessions: 4 * CASES,
        max_sessions_per_source: 4 * CASES,
        ..Limits::default()
    };
    let mut runner = TestRunner::deterministic();
    for (i, protocol) in REGISTRY.iter().enumerate() {
        if !protocol.transports().contains(&Transport::Tcp) {
            continue;
        }
        let name = format!("fuzz-{}", protocol.name());
        let persona = Persona::derive(&name, Some("linux-server"), None, 1_764_000_000);
        let ctx = DeckyContext::new(&name, persona, sink.clone(), limits.clone(), b"fuzz-seed");
        let listener = ServiceListener::open(ctx, protocol.name(), "127.0.0.1:0".parse().unwrap()).unwrap();
        // The service's own port, then its companions' (conpot's S7comm).
        let targets: Vec<SocketAddr> =
            std::iter::once(listener.addr).chain(listener.companions.iter().map(|(_, at)| *at)).collect();
        for (k, target) in targets.into_iter().enumerate() {
            let cases: Vec<Vec<u8>> = (0..CASES).map(|_| inputs().new_tree(&mut runner).unwrap().current()).collect();
            let mut clients = tokio::task::JoinSet::new();
            for (j, bytes) in cases.into_iter().enumerate() {
                // Each client its own source address: per-source limits and
                // password counts never mask an input.
                let source = IpAddr::V4(Ipv4Addr::new(127, 60 + 2 * k as u8, i as u8, j as u8 + 1));
                clients.spawn(async move {
                    let socket = TcpSocket::new_v4().unwrap();
                    socket.bind(SocketAddr::new(source, 0)).unwrap();
                    let Ok(mut stream) = socket.connect(target).await else { return };
                    let _ = stream.write_all(&bytes).await;
                    let mut sink = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut sink)).await;
                });
            }
            while let Some(joined) = clients.join_next().await {
                joined.expect("a client task");
            }
            // The service still answers a plain connection afterwards.
            let probe = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(target)).await;
            assert!(matches!(probe, Ok(Ok(_))), "{} stopped accepting on {target}", protocol.name());
        }
        listener.close().await;
    }
    // Every session has ended (service closed) and written its last lines.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= REGISTRY.len() * CASES * 2, "only {} lines", lines.len());
    for line in &lines {
        assert!(!line.chars().any(|c| c.is_control()), "a control character in {line:?}");
        assert!(line.len() <= 48 * 1024, "a {}-byte line", line.len());
        decnet_decky::rfc5424::parse_line(line).unwrap_or_else(|e| panic!("{e:?}: {line:?}"));
    }
    for protocol in REGISTRY.iter().filter(|p| p.transports().contains(&Transport::Tcp)) {
        let ended = lines
            .iter()
            .filter(|l| l.contains(&format!(" fuzz-{} {} - session_recorded ", protocol.name(), protocol.name())))
            .count();
        // Every fuzz session, and maybe the closing probe's, ends recorded.
        assert!(ended >= CASES, "{}: {ended} of {CASES} sessions ended with session_recorded", protocol.name());
    }
}

/// A well-formed request each UDP protocol answers (from a client's view):
/// after the fuzzing, the service must still answer it.
fn udp_probe(service: &str, hostname: &str) -> Vec<u8> {
    match service {
        // version.bind CH TXT (nmap's probe).
        "dns" => b"\0\x06\x01\0\0\x01\0\0\0\0\0\0\x07version\x04bind\0\0\x10\0\x03".to_vec(),
        "llmnr" => {
            let mut q = b"\0\x07\0\0\0\x01\0\0\0\0\0\0".to_vec();
            q.push(hostname.len() as u8);
            q.extend_from_slice(hostname.as_bytes());
            q.extend_from_slice(b"\0\0\x01\0\x01");
            q
        }
        // v2c GET sysDescr.0, community public.
        "snmp" => b"\x30\x29\x02\x01\x01\x04\x06public\xa0\x1c\x02\x04\x12\x34\x56\x78\x02\x01\x00\x02\x01\x00\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00\x05\x00".to_vec(),
        "sip" => b"OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/UDP nm;branch=foo;rport\r\nFrom: <sip:nm@nm>;tag=root\r\nTo: <sip:nm2@nm2>\r\nCall-ID: 50000\r\nCSeq: 42 OPTIONS\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "tftp" => b"\0\x01startup-config\0octet\0".to_vec(),
        // <hostname>.local A, as dig asks it (legacy unicast).
        "mdns" => {
            let mut q = b"\0\x09\0\0\0\x01\0\0\0\0\0\0".to_vec();
            q.push(hostname.len() as u8);
            q.extend_from_slice(hostname.as_bytes());
            q.extend_from_slice(b"\x05local\0\0\x01\0\x01");
            q
        }
        other => panic!("no UDP probe for {other}: add one here"),
    }
}

/// Datagrams: each probe cut short, bit-flipped, or replaced by random
/// bytes or the shaped text inputs.
fn datagrams(probe: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let len = probe.len();
    let cut = {
        let p = probe.clone();
        (0..len).prop_map(move |n| p[..n].to_vec())
    };
    let flipped = {
        let p = probe.clone();
        proptest::collection::vec((0..len, any::<u8>()), 1..6).prop_map(move |flips| {
            let mut v = p.clone();
            for (at, x) in flips {
                v[at] ^= x;
            }
            v
        })
    };
    proptest::prop_oneof![cut, flipped, inputs()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_udp_protocol_takes_any_datagram_and_keeps_answering() {
    let (collector, lines) = collector().await;
    let sink = LineSink::start(collector, 100_000, Default::default());
    let mut runner = TestRunner::deterministic();
    let udp: Vec<_> = REGISTRY.iter().filter(|p| p.transports().contains(&Transport::Udp)).collect();
    assert!(!udp.is_empty());
    for (i, protocol) in udp.iter().enumerate() {
        let name = format!("fuzz-{}", protocol.name());
        let persona = Persona::derive(&name, Some("linux-server"), None, 1_764_000_000);
        let probe = udp_probe(protocol.name(), &persona.hostname);
        let ctx = DeckyContext::new(&name, persona, sink.clone(), Limits::default(), b"fuzz-seed");
        let listener = ServiceListener::open(ctx, protocol.name(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let target = listener.addr;
        for j in 0..CASES {
            let bytes = datagrams(probe.clone()).new_tree(&mut runner).unwrap().current();
            // Each datagram its own source: the per-source rate never hides one.
            let source = IpAddr::V4(Ipv4Addr::new(127, 61, i as u8, j as u8 + 1));
            let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap();
            socket.send_to(&bytes, target).await.unwrap();
            let mut reply = vec![0u8; 65_535];
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut reply)).await
            {
                // No amplification: never more than the bound, whatever came in.
                assert!(
                    n <= bytes.len().max(1) * decnet_decky::udp::REPLY_FACTOR || protocol.name() == "tftp",
                    "{}: {n}-byte reply to {} bytes",
                    protocol.name(),
                    bytes.len()
                );
            }
        }
        // The service still answers its well-formed request.
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&probe, target).await.unwrap();
        let mut reply = vec![0u8; 65_535];
        let got = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut reply)).await;
        assert!(matches!(got, Ok(Ok((n, _))) if n > 0), "{} stopped answering", protocol.name());
        listener.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = lines.lock().unwrap().clone();
    for line in &lines {
        assert!(!line.chars().any(|c| c.is_control()), "a control character in {line:?}");
        decnet_decky::rfc5424::parse_line(line).unwrap_or_else(|e| panic!("{e:?}: {line:?}"));
        assert!(!line.contains(" sid=\""), "a datagram line with a session id: {line}");
    }
    for protocol in &udp {
        let n =
            lines.iter().filter(|l| l.contains(&format!(" fuzz-{} {} - ", protocol.name(), protocol.name()))).count();
        assert!(n > 0, "{}: no line at all", protocol.name());
    }
}
