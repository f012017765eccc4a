//! `tls_client_hello`: JA3 and JA4 of the attacker's TLS client, plus SNI
//! and ALPN, from the first handshake record it sends.
//!
//! JA3 = md5 of `version,ciphers,extensions,groups,point_formats` (decimal,
//! `-`-joined, GREASE values removed), as Salesforce published it. JA4
//! (FoxIO) = `t<ver><d|i><nn ciphers><nn extensions><alpn>_<sha256 of
//! sorted ciphers, 12 hex>_<sha256 of sorted extensions without SNI/ALPN,
//! then `_` and the signature algorithms in order, 12 hex>`.
//!
//! Both are built here from the parsed lists because no maintained crate
//! does either.

use md5::{Digest as _, Md5};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::events::rfc5424::{cut_chars, MAX_NAME_CHARS, TRUNCATED_PARAM};

/// GREASE (RFC 8701): 0x?a?a with both bytes equal.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A byte reader that never panics: every read is `None` past the end.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    pub fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<usize> {
        let b = self.bytes(3)?;
        Some(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = self.u8()? as usize;
        self.bytes(n).map(Reader)
    }
    pub fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()? as usize;
        self.bytes(n).map(Reader)
    }
    pub fn u16_list(mut self) -> Vec<u16> {
        let mut out = Vec::new();
        while let Some(v) = self.u16() {
            out.push(v);
        }
        out
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The handshake message of type `msg_type` at the start of `stream` (TLS
/// records, possibly several), or `None` when it is not (yet) complete.
pub fn handshake_message(stream: &[u8], msg_type: u8) -> Option<Vec<u8>> {
    let mut r = Reader(stream);
    let mut hs = Vec::new();
    loop {
        if r.u8()? != 0x16 {
            return None;
        }
        let _version = r.u16()?;
        let body = r.vec16()?;
        hs.extend_from_slice(body.0);
        if hs.len() >= 4 {
            if hs[0] != msg_type {
                return None;
            }
            let len = ((hs[1] as usize) << 16) | ((hs[2] as usize) << 8) | hs[3] as usize;
            if hs.len() >= 4 + len {
                hs.truncate(4 + len);
                return Some(hs);
            }
        }
    }
}

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
}

/// Parse a ClientHello handshake message (type byte first).
pub fn parse_client_hello(msg: &[u8]) -> Option<ClientHello> {
    let mut r = Reader(msg);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader(r.bytes(len)?);
    let mut ch = ClientHello { version: r.u16()?, ..Default::default() };
    r.bytes(32)?;
    r.vec8()?; // session id
    ch.ciphers = r.vec16()?.u16_list();
    r.vec8()?; // compression methods
    if r.is_empty() {
        return Some(ch);
    }
    let mut exts = r.vec16()?;
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let mut body = exts.vec16()?;
        ch.extensions.push(ty);
        match ty {
            0 => {
                let mut list = body.vec16()?;
                while !list.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && ch.sni.is_none() {
                        ch.sni = Some(String::from_utf8_lossy(name.0).into_owned());
                    }
                }
            }
            10 => ch.groups = body.vec16()?.u16_list(),
            11 => ch.point_formats = body.vec8()?.0.to_vec(),
            13 => ch.signature_algorithms = body.vec16()?.u16_list(),
            16 => {
                let mut list = body.vec16()?;
                while !list.is_empty() {
                    ch.alpn.push(String::from_utf8_lossy(list.vec8()?.0).into_owned());
                }
            }
            43 => ch.supported_versions = body.vec8()?.u16_list(),
            _ => {}
        }
    }
    Some(ch)
}

fn dash<T: ToString>(v: impl Iterator<Item = T>) -> String {
    v.map(|x| x.to_string()).collect::<Vec<_>>().join("-")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha12(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))[..12].to_string()
}

/// JA4's two-character version code.
pub fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's ALPN code: first and last character of the first protocol
/// (hex digits of the first/last byte when those are not alphanumeric).
pub fn ja4_alpn(alpn: Option<&str>) -> String {
    let Some(a) = alpn.filter(|a| !a.is_empty()) else { return "00".into() };
    let (first, last) = (a.as_bytes()[0], a.as_bytes()[a.len() - 1]);
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        format!("{}{}", first as char, last as char)
    } else {
        let h = hex(&[first, last]);
        format!("{}{}", &h[..1], &h[3..])
    }
}

impl ClientHello {
    pub fn ja3_string(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.version,
            dash(self.ciphers.iter().filter(|c| !is_grease(**c))),
            dash(self.extensions.iter().filter(|c| !is_grease(**c))),
            dash(self.groups.iter().filter(|c| !is_grease(**c))),
            dash(self.point_formats.iter())
        )
    }

    pub fn ja3(&self) -> String {
        hex(&Md5::digest(self.ja3_string().as_bytes()))
    }

    pub fn ja4(&self) -> String {
        let ciphers: Vec<u16> = self.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
        let exts: Vec<u16> = self.extensions.iter().copied().filter(|c| !is_grease(*c)).collect();
        let version = self.supported_versions.iter().copied().filter(|v| !is_grease(*v)).max().unwrap_or(self.version);
        let mut sorted_ciphers: Vec<String> = ciphers.iter().map(|c| format!("{c:04x}")).collect();
        sorted_ciphers.sort();
        let mut sorted_exts: Vec<String> =
            exts.iter().filter(|e| **e != 0 && **e != 16).map(|e| format!("{e:04x}")).collect();
        sorted_exts.sort();
        let sigs: Vec<String> = self.signature_algorithms.iter().map(|s| format!("{s:04x}")).collect();
        let ext_part = if sigs.is_empty() {
            sorted_exts.join(",")
        } else {
            format!("{}_{}", sorted_exts.join(","), sigs.join(","))
        };
        let hash_or_zero = |list_empty: bool, s: &str| if list_empty { "000000000000".to_string() } else { sha12(s) };
        format!(
            "t{}{}{:02}{:02}{}_{}_{}",
            ja4_version(version),
            if self.sni.is_some() { "d" } else { "i" },
            ciphers.len().min(99),
            exts.len().min(99),
            ja4_alpn(self.alpn.first().map(String::as_str)),
            hash_or_zero(ciphers.is_empty(), &sorted_ciphers.join(",")),
            hash_or_zero(sorted_exts.is_empty(), &ext_part),
        )
    }

    /// Event details; the fingerprint (dedup key and stored hash) is the JA3.
    /// The SNI is the client's free text (up to 64 KiB on the wire): it is
    /// cut to [`MAX_NAME_CHARS`] here and named in `truncated`, so the bus,
    /// the database and the line all carry the same bounded value.
    pub fn details(&self) -> Map<String, Value> {
        let cut = self.sni.as_deref().and_then(|s| cut_chars(s, MAX_NAME_CHARS));
        let mut d = json!({
            "ja3": self.ja3(),
            "ja3_string": self.ja3_string(),
            "ja4": self.ja4(),
            "sni": cut.or(self.sni.as_deref()),
            "alpn": self.alpn,
            "tls_version": format!("{:#06x}", self.version),
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        if cut.is_some() {
            d.insert(TRUNCATED_PARAM.into(), Value::String("sni".into()));
        }
        d
    }
}
