//! Parser tests: known values from crafted handshakes, and properties
//! that hostile bytes never panic any parser or the flow table.

use super::flows::Analyzer;
use super::packet::{self, ACK, FIN, SYN};
use super::tls_client_hello::{handshake_message, is_grease, parse_client_hello};
use super::tls_session::parse_server_hello;
use super::{ssh_banner, tcp_syn};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::IpAddr;

fn ext(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut e = ty.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

fn vec16(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A ClientHello `body` as a handshake message (24-bit length) in a TLS
/// handshake record.
fn client_hello_in_record(body: &[u8]) -> Vec<u8> {
    let mut hs = vec![1, 0];
    hs.extend(vec16(body));
    let mut rec = vec![0x16, 3, 1];
    rec.extend(vec16(&hs));
    rec
}

/// A ClientHello record: TLS 1.2 legacy version, GREASE first cipher and extension.
pub fn client_hello_record(sni: &str) -> Vec<u8> {
    let ciphers: &[u16] = &[0x2a2a, 0x1301, 0x1302, 0xc02f, 0x009c];
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.push(0);
    body.extend(vec16(&ciphers.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<_>>()));
    body.extend_from_slice(&[1, 0]);
    let mut exts = ext(0x3a3a, &[]);
    let mut name = vec![0];
    name.extend(vec16(sni.as_bytes()));
    exts.extend(ext(0, &vec16(&name)));
    exts.extend(ext(10, &vec16(&[0x4a, 0x4a, 0, 29, 0, 23])));
    exts.extend(ext(11, &[1, 0]));
    exts.extend(ext(13, &vec16(&[4, 3, 8, 4])));
    exts.extend(ext(16, &vec16(b"\x02h2\x08http/1.1")));
    exts.extend(ext(43, &[4, 3, 4, 3, 3]));
    body.extend(vec16(&exts));
    client_hello_in_record(&body)
}

#[test]
fn ja3_and_ja4_of_a_crafted_client_hello() {
    let rec = client_hello_record("decky.test");
    let msg = handshake_message(&rec, 1).unwrap();
    let ch = parse_client_hello(&msg).unwrap();
    assert_eq!(ch.sni.as_deref(), Some("decky.test"));
    assert_eq!(ch.alpn, ["h2", "http/1.1"]);
    assert_eq!(ch.ja3_string(), "771,4865-4866-49199-156,0-10-11-13-16-43,29-23,0");
    let ja4 = ch.ja4();
    assert!(ja4.starts_with("t13d0406h2_"), "{ja4}");
    assert_eq!(ja4.len(), "t13d0406h2_".len() + 12 + 1 + 12);
    // Split over two records, it still parses to the same message.
    let hs = &rec[5..];
    let mut split = vec![0x16, 3, 1, 0, 10];
    split.extend_from_slice(&hs[..10]);
    split.extend_from_slice(&[0x16, 3, 1]);
    split.extend(vec16(&hs[10..]));
    assert_eq!(handshake_message(&split, 1).unwrap(), msg);
    assert!(handshake_message(&split[..20], 1).is_none(), "incomplete");
}

/// A published ClientHello with known JA3 and JA4: Chrome 143 as recorded
/// by browserleaks.com (its `ja4`, `ja4_ro` — the lists in the order sent —
/// `ja3_text` and `ja3_hash`), values computed with FoxIO's reference
/// rules. Rebuilt here from those lists (GREASE added where Chrome puts it,
/// which both algorithms must ignore), so the whole path — record parse,
/// GREASE removal, SNI/ALPN left out of JA4's extension hash but counted,
/// signature algorithms in order — is checked against someone else's numbers.
pub fn chrome_143_client_hello() -> Vec<u8> {
    let ciphers: &[u16] = &[
        0x8a8a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d,
        0x002f, 0x0035,
    ];
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[5; 32]);
    body.extend(vec16(&ciphers.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<_>>()));
    body.extend_from_slice(&[1, 0]);
    let u16s = |v: &[u16]| v.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>();
    let mut name = vec![0];
    name.extend(vec16(b"tls.browserleaks.com"));
    let sigalgs = u16s(&[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]);
    let mut exts = ext(0x1a1a, &[]);
    for (ty, ext_body) in [
        (0x002d, vec![1, 1]),
        (0x0033, vec16(&[0x3a, 0x3a, 0, 1, 0])),
        (0x0010, vec16(b"\x02h2\x08http/1.1")),
        (0xfe0d, vec![0; 8]),
        (0x0017, vec![]),
        (0x44cd, vec16(b"\x02h2")),
        (0x0000, vec16(&name)),
        (0x000b, vec![1, 0]),
        (0x000a, vec16(&u16s(&[0x4a4a, 4588, 29, 23, 24]))),
        (0x002b, {
            let mut v = vec![6];
            v.extend(u16s(&[0x5a5a, 0x0304, 0x0303]));
            v
        }),
        (0xff01, vec![0]),
        (0x0023, vec![]),
        (0x0012, vec![]),
        (0x0005, vec![1, 0, 0, 0, 0]),
        (0x000d, vec16(&sigalgs)),
        (0x001b, vec![2, 0, 2]),
    ] {
        exts.extend(ext(ty, &ext_body));
    }
    exts.extend(ext(0x2a2a, &[0]));
    body.extend(vec16(&exts));
    client_hello_in_record(&body)
}

#[test]
fn ja3_and_ja4_match_published_values_for_chrome_143() {
    let rec = chrome_143_client_hello();
    let ch = parse_client_hello(&handshake_message(&rec, 1).unwrap()).unwrap();
    assert_eq!(
        ch.ja3_string(),
        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
         45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
    );
    assert_eq!(ch.ja3(), "98487aa16281980e7d1120d399efb6a4");
    assert_eq!(ch.ja4(), "t13d1516h2_8daaf6152771_d8a2da3f94cd");
}

#[test]
fn grease_values() {
    assert!(is_grease(0x0a0a) && is_grease(0xfafa));
    assert!(!is_grease(0x0a1a) && !is_grease(0x1301));
}

#[test]
fn server_hello_ja3s_ja4s() {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1; 32]);
    body.push(0);
    body.extend_from_slice(&[0x13, 0x01, 0]);
    let mut exts = ext(43, &[3, 4]);
    exts.extend(ext(51, &[0, 29, 0, 0]));
    body.extend(vec16(&exts));
    let mut msg = vec![2, 0];
    msg.extend(vec16(&body));
    let sh = parse_server_hello(&msg).unwrap();
    assert_eq!(sh.ja3s_string(), "771,4865,43-51");
    assert!(sh.ja4s().starts_with("t130200_1301_"), "{}", sh.ja4s());
}

#[test]
fn ssh_banners() {
    assert_eq!(ssh_banner::client_banner(b"SSH-2.0-libssh_0.9.6\r\nxx").as_deref(), Some("SSH-2.0-libssh_0.9.6"));
    assert_eq!(ssh_banner::client_banner(b"SSH-2.0-partial"), None);
    assert_eq!(ssh_banner::client_banner(b"GET / HTTP/1.1\r\n"), None);
    assert_eq!(ssh_banner::client_banner(b"SSH-2.0-\x01bad\r\n"), None);
}

#[allow(clippy::too_many_arguments)]
fn ipv4_tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    opts: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let tcp_len = 20 + opts.len();
    let total = 20 + tcp_len + data.len();
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.push(((tcp_len / 4) as u8) << 4);
    p.push(flags);
    p.extend_from_slice(&64240u16.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(opts);
    p.extend_from_slice(data);
    p
}

#[test]
fn a_flow_yields_syn_hello_and_timing_once_each() {
    let decky: IpAddr = "10.9.0.2".parse().unwrap();
    let mut a = Analyzer::new(HashMap::from([(decky, "web-01".to_string())]));
    let (c, d) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let linux = [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
    let mut evs = Vec::new();
    let pkts = [
        (ipv4_tcp(c, d, 40000, 443, SYN, 100, &linux, &[]), 0.0),
        (ipv4_tcp(d, c, 443, 40000, SYN | ACK, 500, &[], &[]), 0.001),
        (ipv4_tcp(c, d, 40000, 443, ACK, 101, &[], &[]), 0.003),
    ];
    for (p, t) in &pkts {
        evs.extend(a.on_packet(&packet::parse(p).unwrap(), *t));
    }
    let hello = client_hello_record("x.test");
    // The hello in two segments.
    let (h1, h2) = hello.split_at(30);
    let p1 = ipv4_tcp(c, d, 40000, 443, ACK, 101, &[], h1);
    let p2 = ipv4_tcp(c, d, 40000, 443, ACK, 101 + 30, &[], h2);
    evs.extend(a.on_packet(&packet::parse(&p1).unwrap(), 0.004));
    assert_eq!(evs.len(), 1, "nothing before the hello is whole");
    evs.extend(a.on_packet(&packet::parse(&p1).unwrap(), 0.004)); // retransmission
    evs.extend(a.on_packet(&packet::parse(&p2).unwrap(), 0.005));
    let fin = ipv4_tcp(c, d, 40000, 443, FIN | ACK, 101 + hello.len() as u32, &[], &[]);
    evs.extend(a.on_packet(&packet::parse(&fin).unwrap(), 0.010));
    let types: Vec<_> = evs.iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["tcp_syn_fingerprint", "tls_client_hello", "tcp_flow_timing"]);
    assert_eq!(evs[0].details["os_guess"], "Linux");
    assert_eq!(evs[0].details["mss"], 1460);
    assert_eq!(evs[1].details["sni"], "x.test");
    assert_eq!(evs[1].attacker_ip.to_string(), "10.9.0.1");
    assert_eq!(evs[1].decky, "web-01");
    assert_eq!(evs[2].details["client_rtt_ms"], 2.0);
    assert_eq!(a.flows(), 0);
    // Traffic between two non-decky hosts is ignored.
    let other = ipv4_tcp(c, [10, 9, 0, 3], 1, 2, SYN, 0, &[], &[]);
    assert!(a.on_packet(&packet::parse(&other).unwrap(), 1.0).is_empty());
}

#[test]
fn os_guess_families() {
    assert_eq!(tcp_syn::initial_ttl(57), 64);
    assert_eq!(tcp_syn::initial_ttl(113), 128);
    assert_eq!(tcp_syn::os_guess(128, "M,N,W,N,N,S", 64240), "Windows");
    assert_eq!(tcp_syn::os_guess(64, "", 1024), "nmap SYN scan");
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = packet::parse(&bytes);
        let _ = parse_client_hello(&bytes);
        let _ = parse_server_hello(&bytes);
        let _ = handshake_message(&bytes, 1);
        let _ = ssh_banner::client_banner(&bytes);
    }

    #[test]
    fn damaged_handshakes_never_panic(cut in 0usize..400, flip in 0usize..400, val in any::<u8>()) {
        let mut rec = client_hello_record("a.test");
        let i = flip % rec.len();
        rec[i] = val;
        rec.truncate(cut.min(rec.len()));
        if let Some(m) = handshake_message(&rec, 1) {
            if let Some(ch) = parse_client_hello(&m) {
                let _ = (ch.ja3(), ch.ja4(), ch.details());
            }
        }
        let _ = parse_client_hello(rec.get(5..).unwrap_or_default());
    }

    #[test]
    fn the_flow_table_survives_hostile_packets(
        packets in proptest::collection::vec((any::<u8>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..80)), 1..40)
    ) {
        let decky: IpAddr = "10.9.0.2".parse().unwrap();
        let mut a = Analyzer::new(HashMap::from([(decky, "d".to_string())]));
        for (i, (flags, seq, data)) in packets.iter().enumerate() {
            let (s, d) = if i % 2 == 0 { ([10, 9, 0, 1], [10, 9, 0, 2]) } else { ([10, 9, 0, 2], [10, 9, 0, 1]) };
            let (sp, dp) = if i % 2 == 0 { (5555, 22) } else { (22, 5555) };
            let p = ipv4_tcp(s, d, sp, dp, *flags, *seq, &[], data);
            if let Some(p) = packet::parse(&p) {
                for ev in a.on_packet(&p, i as f64) {
                    let _ = ev.payload();
                }
            }
        }
    }
}

#[test]
fn a_long_sni_is_cut_in_the_details_and_named_in_truncated() {
    use crate::events::rfc5424::MAX_NAME_CHARS;
    let long = format!("a.test\n<134>1 {}", "é".repeat(5000));
    let ch = parse_client_hello(&handshake_message(&client_hello_record(&long), 1).unwrap()).unwrap();
    let d = ch.details();
    assert_eq!(d["sni"].as_str().unwrap().chars().count(), MAX_NAME_CHARS);
    assert!(long.starts_with(d["sni"].as_str().unwrap()));
    assert_eq!(d["truncated"], "sni");
    let short = parse_client_hello(&handshake_message(&client_hello_record("x.test"), 1).unwrap()).unwrap();
    assert_eq!((short.details()["sni"].as_str(), short.details().get("truncated")), (Some("x.test"), None));
}
