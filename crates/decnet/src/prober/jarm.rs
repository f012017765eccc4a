//! JARM: an active TLS server fingerprint from ten crafted ClientHellos.
//!
//! Why by hand: JARM's value comes from ClientHellos no real TLS library
//! would send (cipher lists in odd orders, TLS 1.3 offered with only
//! pre-1.3 suites, GREASE in fixed spots), so every byte is built here.
//! The hash is only comparable with everyone else's JARM values if it is
//! computed exactly like the published algorithm (salesforce/jarm), quirks
//! included: the "spdy/3" and "h2" ALPN entries are one list element there
//! (a missing comma in the reference), which changes how the ALPN list is
//! reordered, so it is one element here too. The ServerHello is read with
//! the same fixed offsets and the same fall-backs to `|||`.

use rand::Rng;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ProbeError;

/// A JARM of a host that never answered TLS.
pub const NOT_TLS: &str = "00000000000000000000000000000000000000000000000000000000000000";
/// The reference reads one segment of at most this many bytes per probe.
const READ_LIMIT: usize = 1484;
const EMPTY: &str = "|||";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Tls11,
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Forward,
    Reverse,
    TopHalf,
    BottomHalf,
    MiddleOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SupportedVersions {
    /// supported_versions lists 1.0–1.2.
    Up12,
    /// No supported_versions extension.
    Absent,
    /// supported_versions lists 1.0–1.3.
    Up13,
}

/// One of the ten probes, in the reference's terms.
#[derive(Debug, Clone, Copy)]
struct Hello {
    version: Version,
    /// `false`: the suite list without the TLS 1.3 suites ("NO1.3").
    tls13_suites: bool,
    cipher_order: Order,
    grease: bool,
    rare_alpn: bool,
    supported: SupportedVersions,
    extension_order: Order,
}

const fn hello(
    version: Version,
    tls13_suites: bool,
    cipher_order: Order,
    grease: bool,
    rare_alpn: bool,
    supported: SupportedVersions,
    extension_order: Order,
) -> Hello {
    Hello { version, tls13_suites, cipher_order, grease, rare_alpn, supported, extension_order }
}

use Order::*;
use SupportedVersions::*;
use Version::*;

/// The ten probes in the order their answers enter the hash.
const PROBES: [Hello; 10] = [
    hello(Tls12, true, Forward, false, false, Up12, Reverse),
    hello(Tls12, true, Reverse, false, false, Up12, Forward),
    hello(Tls12, true, TopHalf, false, false, Absent, Forward),
    hello(Tls12, true, BottomHalf, false, true, Absent, Forward),
    hello(Tls12, true, MiddleOut, true, true, Absent, Reverse),
    hello(Tls11, true, Forward, false, false, Absent, Forward),
    hello(Tls13, true, Forward, false, false, Up13, Reverse),
    hello(Tls13, true, Reverse, false, false, Up13, Forward),
    hello(Tls13, false, Forward, false, false, Up13, Forward),
    hello(Tls13, true, MiddleOut, true, false, Up13, Reverse),
];

/// Every suite JARM offers, in its "forward" order.
const SUITES_ALL: [u16; 69] = [
    0x0016, 0x0033, 0x0067, 0xc09e, 0xc0a2, 0x009e, 0x0039, 0x006b, 0xc09f, 0xc0a3, 0x009f, 0x0045, 0x00be, 0x0088,
    0x00c4, 0x009a, 0xc008, 0xc009, 0xc023, 0xc0ac, 0xc0ae, 0xc02b, 0xc00a, 0xc024, 0xc0ad, 0xc0af, 0xc02c, 0xc072,
    0xc073, 0xcca9, 0x1302, 0x1301, 0xcc14, 0xc007, 0xc012, 0xc013, 0xc027, 0xc02f, 0xc014, 0xc028, 0xc030, 0xc060,
    0xc061, 0xc076, 0xc077, 0xcca8, 0x1305, 0x1304, 0x1303, 0xcc13, 0xc011, 0x000a, 0x002f, 0x003c, 0xc09c, 0xc0a0,
    0x009c, 0x0035, 0x003d, 0xc09d, 0xc0a1, 0x009d, 0x0041, 0x00ba, 0x0084, 0x00c0, 0x0007, 0x0004, 0x0005,
];

/// The suites the hash indexes the server's choice in (1-based, hex).
const SUITE_INDEX: [u16; 69] = [
    0x0004, 0x0005, 0x0007, 0x000a, 0x0016, 0x002f, 0x0033, 0x0035, 0x0039, 0x003c, 0x003d, 0x0041, 0x0045, 0x0067,
    0x006b, 0x0084, 0x0088, 0x009a, 0x009c, 0x009d, 0x009e, 0x009f, 0x00ba, 0x00be, 0x00c0, 0x00c4, 0xc007, 0xc008,
    0xc009, 0xc00a, 0xc011, 0xc012, 0xc013, 0xc014, 0xc023, 0xc024, 0xc027, 0xc028, 0xc02b, 0xc02c, 0xc02f, 0xc030,
    0xc060, 0xc061, 0xc072, 0xc073, 0xc076, 0xc077, 0xc09c, 0xc09d, 0xc09e, 0xc09f, 0xc0a0, 0xc0a1, 0xc0a2, 0xc0a3,
    0xc0ac, 0xc0ad, 0xc0ae, 0xc0af, 0xcc13, 0xcc14, 0xcca8, 0xcca9, 0x1301, 0x1302, 0x1303, 0x1304, 0x1305,
];

const GREASE: [u16; 16] = [
    0x0a0a, 0x1a1a, 0x2a2a, 0x3a3a, 0x4a4a, 0x5a5a, 0x6a6a, 0x7a7a, 0x8a8a, 0x9a9a, 0xaaaa, 0xbaba, 0xcaca, 0xdada,
    0xeaea, 0xfafa,
];

fn is_tls13_suite(s: u16) -> bool {
    (0x1301..=0x1305).contains(&s)
}

/// Reorder a list the way the reference's `cipher_mung` does.
fn reorder<T: Clone>(items: &[T], order: Order) -> Vec<T> {
    let n = items.len();
    match order {
        Forward => items.to_vec(),
        Reverse => items.iter().rev().cloned().collect(),
        BottomHalf => items[n / 2 + n % 2..].to_vec(),
        TopHalf => {
            let mut out = Vec::with_capacity(n / 2 + 1);
            if n % 2 == 1 {
                out.push(items[n / 2].clone());
            }
            out.extend(reorder(&reorder(items, Reverse), BottomHalf));
            out
        }
        MiddleOut => {
            let mid = n / 2;
            let mut out = Vec::with_capacity(n);
            if n % 2 == 1 {
                out.push(items[mid].clone());
                for i in 1..=mid {
                    out.push(items[mid + i].clone());
                    out.push(items[mid - i].clone());
                }
            } else {
                for i in 1..=mid {
                    out.push(items[mid - 1 + i].clone());
                    out.push(items[mid - i].clone());
                }
            }
            out
        }
    }
}

fn grease(rng: &mut impl Rng) -> [u8; 2] {
    GREASE[rng.random_range(0..GREASE.len())].to_be_bytes()
}

fn push_u16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u16).to_be_bytes());
}

/// ALPN protocols (length-prefixed) in their forward order; "spdy/3"+"h2" is one element on purpose.
fn alpn_entries(rare: bool) -> Vec<&'static [u8]> {
    if rare {
        vec![b"\x08http/0.9", b"\x08http/1.0", b"\x06spdy/1", b"\x06spdy/2", b"\x06spdy/3", b"\x03h2c", b"\x02hq"]
    } else {
        vec![
            b"\x08http/0.9",
            b"\x08http/1.0",
            b"\x08http/1.1",
            b"\x06spdy/1",
            b"\x06spdy/2",
            b"\x06spdy/3\x02h2",
            b"\x03h2c",
            b"\x02hq",
        ]
    }
}

fn extensions(h: &Hello, host: &str, rng: &mut impl Rng) -> Vec<u8> {
    let mut e = Vec::with_capacity(512);
    if h.grease {
        e.extend_from_slice(&grease(rng));
        e.extend_from_slice(&[0, 0]);
    }
    // server_name
    let name = host.as_bytes();
    e.extend_from_slice(&[0, 0]);
    push_u16(&mut e, name.len() + 5);
    push_u16(&mut e, name.len() + 3);
    e.push(0);
    push_u16(&mut e, name.len());
    e.extend_from_slice(name);
    e.extend_from_slice(b"\x00\x17\x00\x00"); // extended_master_secret
    e.extend_from_slice(b"\x00\x01\x00\x01\x01"); // max_fragment_length
    e.extend_from_slice(b"\xff\x01\x00\x01\x00"); // renegotiation_info
    e.extend_from_slice(b"\x00\x0a\x00\x0a\x00\x08\x00\x1d\x00\x17\x00\x18\x00\x19"); // supported_groups
    e.extend_from_slice(b"\x00\x0b\x00\x02\x01\x00"); // ec_point_formats
    e.extend_from_slice(b"\x00\x23\x00\x00"); // session_ticket
    let alpns: Vec<u8> = reorder(&alpn_entries(h.rare_alpn), h.extension_order).concat();
    e.extend_from_slice(&[0x00, 0x10]);
    push_u16(&mut e, alpns.len() + 2);
    push_u16(&mut e, alpns.len());
    e.extend_from_slice(&alpns);
    e.extend_from_slice(
        b"\x00\x0d\x00\x14\x00\x12\x04\x03\x08\x04\x04\x01\x05\x03\x08\x05\x05\x01\x08\x06\x06\x01\x02\x01",
    ); // signature_algorithms
       // key_share: x25519 with random bytes (the server never gets to use it)
    let mut share = Vec::with_capacity(45);
    if h.grease {
        share.extend_from_slice(&grease(rng));
        share.extend_from_slice(&[0, 1, 0]);
    }
    share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20]);
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    share.extend_from_slice(&key);
    e.extend_from_slice(&[0x00, 0x33]);
    push_u16(&mut e, share.len() + 2);
    push_u16(&mut e, share.len());
    e.extend_from_slice(&share);
    e.extend_from_slice(b"\x00\x2d\x00\x02\x01\x01"); // psk_key_exchange_modes
    if h.version == Tls13 || h.supported == Up12 {
        let versions: &[[u8; 2]] =
            if h.supported == Up12 { &[[3, 1], [3, 2], [3, 3]] } else { &[[3, 1], [3, 2], [3, 3], [3, 4]] };
        let mut list = Vec::new();
        if h.grease {
            list.extend_from_slice(&grease(rng));
        }
        list.extend(reorder(versions, h.extension_order).concat());
        e.extend_from_slice(&[0x00, 0x2b]);
        push_u16(&mut e, list.len() + 1);
        e.push(list.len() as u8);
        e.extend_from_slice(&list);
    }
    let mut out = Vec::with_capacity(e.len() + 2);
    push_u16(&mut out, e.len());
    out.extend_from_slice(&e);
    out
}

/// The TLS record holding probe `index`'s ClientHello (SNI = `host`).
fn client_hello(index: usize, host: &str, rng: &mut impl Rng) -> Vec<u8> {
    let h = &PROBES[index];
    let (record_version, hello_version): ([u8; 2], [u8; 2]) = match h.version {
        Tls11 => ([3, 2], [3, 2]),
        Tls12 => ([3, 3], [3, 3]),
        Tls13 => ([3, 1], [3, 3]),
    };
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(&hello_version);
    let mut random = [0u8; 64]; // client random + session id
    rng.fill_bytes(&mut random);
    body.extend_from_slice(&random[..32]);
    body.push(32);
    body.extend_from_slice(&random[32..]);
    let suites: Vec<u16> = SUITES_ALL.iter().copied().filter(|s| h.tls13_suites || !is_tls13_suite(*s)).collect();
    let mut suites: Vec<[u8; 2]> = reorder(&suites, h.cipher_order).iter().map(|s| s.to_be_bytes()).collect();
    if h.grease {
        suites.insert(0, grease(rng));
    }
    push_u16(&mut body, suites.len() * 2);
    body.extend(suites.concat());
    body.extend_from_slice(&[1, 0]); // one compression method: null
    body.extend(extensions(h, host, rng));
    let mut handshake = Vec::with_capacity(body.len() + 4);
    handshake.push(1); // client_hello
    handshake.push(0);
    push_u16(&mut handshake, body.len());
    handshake.extend_from_slice(&body);
    let mut record = Vec::with_capacity(handshake.len() + 5);
    record.push(0x16);
    record.extend_from_slice(&record_version);
    push_u16(&mut record, handshake.len());
    record.extend_from_slice(&handshake);
    record
}

/// Why reading an answer stopped, mirroring the reference's two kinds of failure.
enum ReadFail {
    /// An out-of-range index while walking extensions: the extension part is `|||`.
    Extensions,
    /// Anything else: the whole answer is `|||`.
    Whole,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Python-style slice: clamped, never panics.
fn slice(d: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(d.len());
    &d[from.min(to)..to]
}

fn be_int(b: &[u8]) -> Result<usize, ReadFail> {
    if b.is_empty() {
        return Err(ReadFail::Whole);
    }
    Ok(b.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize))
}

fn read_extensions(d: &[u8], counter: usize) -> Result<String, ReadFail> {
    if *d.get(counter + 47).ok_or(ReadFail::Extensions)? == 11 {
        return Ok(EMPTY.into());
    }
    if slice(d, counter + 50, counter + 53) == b"\x0e\xac\x0b" || slice(d, 82, 85) == b"\x0f\xf0\x0b" {
        return Ok(EMPTY.into());
    }
    let mut count = 49 + counter;
    let length = be_int(slice(d, counter + 47, counter + 49))?;
    let maximum = (length + count).saturating_sub(1);
    let mut types: Vec<&[u8]> = Vec::new();
    let mut alpn: Option<Option<&[u8]>> = None;
    while count < maximum {
        let ty = slice(d, count, count + 2);
        let ext_len = be_int(slice(d, count + 2, count + 4))?;
        let value = if ext_len == 0 {
            count += 4;
            None
        } else {
            let v = slice(d, count + 4, count + 4 + ext_len);
            count += ext_len + 4;
            Some(v)
        };
        if ty == b"\x00\x10" && alpn.is_none() {
            alpn = Some(value);
        }
        types.push(ty);
    }
    let alpn = match alpn {
        None => String::new(),
        // The reference calls .decode() on a str here and fails the whole answer.
        Some(None) => return Err(ReadFail::Whole),
        Some(Some(v)) => String::from_utf8(slice(v, 3, v.len()).to_vec()).map_err(|_| ReadFail::Whole)?,
    };
    let types: Vec<String> = types.iter().map(|t| hex(t)).collect();
    Ok(format!("{alpn}|{}", types.join("-")))
}

/// One probe's answer as `cipher|version|alpn|extensions` (`|||` when not a ServerHello).
pub fn read_server_hello(d: &[u8]) -> String {
    let parse = || -> Result<String, ReadFail> {
        let first = *d.first().ok_or(ReadFail::Whole)?;
        if first == 21 || first != 22 || *d.get(5).ok_or(ReadFail::Whole)? != 2 {
            return Ok(EMPTY.into());
        }
        let counter = *d.get(43).ok_or(ReadFail::Whole)? as usize;
        let cipher = hex(slice(d, counter + 44, counter + 46));
        let version = hex(slice(d, 9, 11));
        let ext = match read_extensions(d, counter) {
            Ok(e) => e,
            Err(ReadFail::Extensions) => EMPTY.into(),
            Err(ReadFail::Whole) => return Err(ReadFail::Whole),
        };
        Ok(format!("{cipher}|{version}|{ext}"))
    };
    parse().unwrap_or_else(|_| EMPTY.into())
}

fn cipher_byte(cipher: &str) -> String {
    if cipher.is_empty() {
        return "00".into();
    }
    let pos = SUITE_INDEX.iter().position(|s| format!("{s:04x}") == cipher).unwrap_or(SUITE_INDEX.len());
    format!("{:02x}", pos + 1)
}

fn version_char(version: &str) -> char {
    if version.is_empty() {
        return '0';
    }
    let digit = version.get(3..4).and_then(|d| d.parse::<usize>().ok());
    digit.and_then(|i| "abcdef".chars().nth(i)).unwrap_or('0')
}

/// The JARM fuzzy hash of the ten answers joined with `,`.
pub fn jarm_hash(raw: &str) -> String {
    if raw.split(',').all(|a| a == EMPTY) {
        return NOT_TLS.into();
    }
    let mut fuzzy = String::with_capacity(62);
    let mut alpn_ext = String::new();
    for answer in raw.split(',') {
        let parts: Vec<&str> = answer.split('|').collect();
        let part = |i: usize| parts.get(i).copied().unwrap_or("");
        fuzzy.push_str(&cipher_byte(part(0)));
        fuzzy.push(version_char(part(1)));
        alpn_ext.push_str(part(2));
        alpn_ext.push_str(part(3));
    }
    let digest = hex(&Sha256::digest(alpn_ext.as_bytes()));
    fuzzy.push_str(&digest[..32]);
    fuzzy
}

/// Send one hello; read the first record (or what the reference's single read would see).
async fn exchange(addr: SocketAddr, hello: &[u8], timeout: Duration) -> Result<Option<Vec<u8>>, ProbeError> {
    let attempt = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => return Ok::<_, std::io::Error>(None),
        };
        stream.write_all(hello).await?;
        let mut buf = vec![0u8; READ_LIMIT];
        let mut have = 0;
        loop {
            let n = stream.read(&mut buf[have..]).await.unwrap_or(0);
            have += n;
            // Done at EOF, at the read limit, or once the first record is whole.
            let whole = have >= 5 && have >= 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize;
            if n == 0 || have == READ_LIMIT || whole {
                break;
            }
        }
        buf.truncate(have);
        Ok(Some(buf))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ProbeError::Timeout),
        Ok(Ok(data)) => Ok(data),
        Ok(Err(_)) => Ok(None),
    }
}

/// Run the ten probes against `addr` (SNI `host`, as the reference sends
/// the target it was given). Returns `(hash, raw answers)`; a timeout on
/// any probe makes the whole JARM "not TLS", as in the reference.
pub async fn probe(addr: SocketAddr, host: &str, timeout: Duration) -> Result<(String, String), ProbeError> {
    let mut answers = Vec::with_capacity(PROBES.len());
    for i in 0..PROBES.len() {
        let hello = client_hello(i, host, &mut rand::rng());
        match exchange(addr, &hello, timeout).await {
            Ok(Some(data)) => answers.push(read_server_hello(&data)),
            Ok(None) => answers.push(EMPTY.to_string()),
            Err(ProbeError::Timeout) => {
                answers = vec![EMPTY.to_string(); PROBES.len()];
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let raw = answers.join(",");
    Ok((jarm_hash(&raw), raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_matches_the_reference_shapes() {
        let five = [1, 2, 3, 4, 5];
        assert_eq!(reorder(&five, Reverse), [5, 4, 3, 2, 1]);
        assert_eq!(reorder(&five, BottomHalf), [4, 5]);
        assert_eq!(reorder(&five, TopHalf), [3, 2, 1]);
        assert_eq!(reorder(&five, MiddleOut), [3, 4, 2, 5, 1]);
        let four = [1, 2, 3, 4];
        assert_eq!(reorder(&four, BottomHalf), [3, 4]);
        assert_eq!(reorder(&four, TopHalf), [2, 1]);
        assert_eq!(reorder(&four, MiddleOut), [3, 2, 4, 1]);
    }

    #[test]
    fn client_hello_lengths_are_consistent() {
        let mut rng = rand::rng();
        for i in 0..PROBES.len() {
            let rec = client_hello(i, "example.com", &mut rng);
            assert_eq!(rec[0], 0x16);
            assert_eq!(u16::from_be_bytes([rec[3], rec[4]]) as usize, rec.len() - 5, "probe {i}");
            assert_eq!(rec[5], 1);
            let hs_len = ((rec[6] as usize) << 16) | ((rec[7] as usize) << 8) | rec[8] as usize;
            assert_eq!(hs_len, rec.len() - 9, "probe {i}");
            // session id of 32 bytes after version + random
            assert_eq!(rec[9 + 2 + 32], 32);
        }
    }

    #[test]
    fn hash_of_nothing_is_62_zeros_and_shape_is_fixed() {
        assert_eq!(jarm_hash(&[EMPTY; 10].join(",")), NOT_TLS);
        assert_eq!(NOT_TLS.len(), 62);
        let one = ["c02f|0303|h2|ff01-0000-0001-000b-0023-0010"; 10].join(",");
        let h = jarm_hash(&one);
        assert_eq!(h.len(), 62);
        // c02f is the 41st suite of the index list: 0x29; version 0303 -> 'd'.
        assert!(h.starts_with("29d29d"), "{h}");
    }

    #[test]
    fn hostile_answers_never_panic() {
        for d in [&b""[..], b"\x16", b"\x16\x03\x03\x00\x01\x02", &[0x16; 60], &[0xff; 200]] {
            let _ = read_server_hello(d);
        }
        let mut junk = vec![0x16, 3, 3, 0, 80, 2];
        junk.resize(120, 0xff);
        let _ = read_server_hello(&junk);
    }
}
