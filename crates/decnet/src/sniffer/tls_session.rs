//! `tls_session`: JA3S and JA4S of the decky's answer to an attacker's
//! ClientHello. A decky's answer depends on what the client offered, so
//! (JA3, JA3S) together pin the client tooling tighter than JA3 alone.
//!
//! JA3S = md5 of `version,cipher,extensions` (decimal, `-`-joined).
//! JA4S = `t<ver><nn extensions><alpn>_<cipher hex>_<sha256 of the
//! extensions in order, 12 hex>`.

use md5::{Digest as _, Md5};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::tls_client_hello::{ja4_alpn, ja4_version, Reader};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHello {
    pub version: u16,
    pub cipher: u16,
    pub extensions: Vec<u16>,
    /// From supported_versions, when the server sent it (TLS 1.3).
    pub selected_version: Option<u16>,
    pub alpn: Option<String>,
}

/// Parse a ServerHello handshake message (type byte first).
pub fn parse_server_hello(msg: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(msg);
    if r.u8()? != 2 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader(r.bytes(len)?);
    let mut sh = ServerHello { version: r.u16()?, ..Default::default() };
    r.bytes(32)?;
    r.vec8()?;
    sh.cipher = r.u16()?;
    r.u8()?; // compression
    if r.is_empty() {
        return Some(sh);
    }
    let mut exts = r.vec16()?;
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let mut body = exts.vec16()?;
        sh.extensions.push(ty);
        match ty {
            43 => sh.selected_version = body.u16(),
            16 => {
                let mut list = body.vec16()?;
                sh.alpn = list.vec8().map(|p| String::from_utf8_lossy(p.0).into_owned());
            }
            _ => {}
        }
    }
    Some(sh)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl ServerHello {
    pub fn ja3s_string(&self) -> String {
        let exts: Vec<String> = self.extensions.iter().map(|e| e.to_string()).collect();
        format!("{},{},{}", self.version, self.cipher, exts.join("-"))
    }

    pub fn ja3s(&self) -> String {
        hex(&Md5::digest(self.ja3s_string().as_bytes()))
    }

    pub fn ja4s(&self) -> String {
        let exts: Vec<String> = self.extensions.iter().map(|e| format!("{e:04x}")).collect();
        let ext_hash = if exts.is_empty() {
            "000000000000".to_string()
        } else {
            hex(&Sha256::digest(exts.join(",").as_bytes()))[..12].to_string()
        };
        format!(
            "t{}{:02}{}_{:04x}_{}",
            ja4_version(self.selected_version.unwrap_or(self.version)),
            self.extensions.len().min(99),
            ja4_alpn(self.alpn.as_deref()),
            self.cipher,
            ext_hash
        )
    }

    pub fn details(&self) -> Map<String, Value> {
        json!({
            "ja3s": self.ja3s(),
            "ja3s_string": self.ja3s_string(),
            "ja4s": self.ja4s(),
            "cipher": format!("{:#06x}", self.cipher),
            "tls_version": format!("{:#06x}", self.selected_version.unwrap_or(self.version)),
            "alpn": self.alpn,
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }
}
