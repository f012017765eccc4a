//! Fuzz targets for the prober's parsers of what an attacker's server
//! sends back: any bytes → no panic, and output bounded by the input.
//! Property tests with a fixed case count (proptest, like the sniffer's
//! parser properties), so they run in every `cargo test` and stay quick;
//! each target has a random-bytes form and a near-valid form that gets
//! past the first length checks.

use proptest::collection::vec;
use proptest::prelude::*;

use super::{hassh, jarm, tcpfp, tls_certificate};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// SSH name-lists with lengths that may lie about their bodies.
fn kexinit() -> impl Strategy<Value = Vec<u8>> {
    (vec((any::<u32>(), bytes(40)), 0..12), prop::bool::ANY).prop_map(|(lists, honest)| {
        let mut p = vec![20u8];
        p.extend_from_slice(&[7; 16]);
        for (claimed, body) in lists {
            let len = if honest { body.len() as u32 } else { claimed % 64 };
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&body);
        }
        p
    })
}

/// A TLS handshake record of type `kind` with a random body.
fn record(kind: u8) -> impl Strategy<Value = Vec<u8>> {
    (bytes(300), any::<u16>()).prop_map(move |(body, claimed)| {
        let mut r = vec![22, 3, 3];
        r.extend_from_slice(&claimed.to_be_bytes());
        r.push(kind);
        r.extend(body);
        r
    })
}

/// An IPv4 header (IHL and protocol mostly right) and a TCP header whose
/// data offset and options are random.
fn ipv4_tcp() -> impl Strategy<Value = Vec<u8>> {
    (0u8..16, prop::bool::weighted(0.9), bytes(20), bytes(60)).prop_map(|(ihl, tcp_proto, ip_rest, tcp)| {
        let mut p = vec![0x40 | ihl];
        p.extend(ip_rest.iter().copied().chain(std::iter::repeat(0)).take(19));
        p[9] = if tcp_proto { 6 } else { 17 };
        p.extend(tcp);
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hassh_kexinit_and_packets(random in bytes(512), near in kexinit()) {
        for data in [&random, &near] {
            if let Ok(k) = hassh::parse_kexinit(data) {
                // Every name came out of the input.
                prop_assert!(k.hassh_server_string().len() <= data.len() + 8);
            }
            if let Ok(payload) = hassh::packet_payload(data) {
                prop_assert!(payload.len() <= data.len());
            }
        }
    }

    #[test]
    fn jarm_server_hello_answers(random in bytes(512), near in record(2)) {
        for data in [&random, &near] {
            let answer = jarm::read_server_hello(data);
            prop_assert!(answer.len() <= 2 * data.len() + 16, "{} from {} bytes", answer.len(), data.len());
            let hash = jarm::jarm_hash(&vec![answer; 10].join(","));
            prop_assert_eq!(hash.len(), 62);
        }
    }

    #[test]
    fn tcp_fingerprint_packets(random in bytes(128), near in ipv4_tcp(), opts in bytes(64)) {
        for data in [&random, &near] {
            if let Some((.., s)) = tcpfp::parse_ipv4_tcp(data) {
                prop_assert!(s.options.len() <= data.len());
            }
            let _ = tcpfp::parse_tcp(data);
        }
        let mut s = tcpfp::SynAck::default();
        tcpfp::parse_options(&opts, &mut s);
        prop_assert!(s.options.len() <= opts.len());
        let _ = s.hash();
    }

    #[test]
    fn certificates_from_hostile_servers(random in bytes(512), flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let _ = tls_certificate::describe(&random);
        // A real certificate with a few bytes changed: past the outer DER
        // lengths, into the names and extensions.
        let mut der = real_certificate().to_vec();
        for (at, value) in flips {
            let i = at.index(der.len());
            der[i] = value;
        }
        if let Ok((hash, details)) = tls_certificate::describe(&der) {
            prop_assert_eq!(hash.len(), 64);
            prop_assert!(details["sans"].as_array().is_some_and(|s| s.len() <= tls_certificate::MAX_SANS));
        }
    }
}

fn real_certificate() -> &'static [u8] {
    static DER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DER.get_or_init(|| {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into(), "127.0.0.1".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "fuzz.test");
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    })
}
