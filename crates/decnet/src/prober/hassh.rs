//! HASSH server fingerprint: the SSH server's banner and the algorithm
//! lists of its KEXINIT.
//!
//! Why no SSH library: the fingerprint is in the very first binary packet
//! the server sends, before any key exchange, and an SSH client library
//! would negotiate (and fail on attackers' odd servers) instead of just
//! reporting what was offered. The server sends its KEXINIT without
//! waiting for ours, so we read it and hang up.
//!
//! hasshServer = md5(`kex;enc_s2c;mac_s2c;comp_s2c`), as published by
//! Salesforce's HASSH.

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::ProbeError;

/// What we announce; plain so it does not stand out in the attacker's logs.
pub const CLIENT_BANNER: &str = "SSH-2.0-OpenSSH_9.2p1";
/// RFC 4253 §4.2: lines before the banner are allowed, each at most 255 bytes.
const MAX_LINE: usize = 255;
const MAX_PRE_BANNER_LINES: usize = 16;
/// RFC 4253 §6.1 lets implementations cap packets at 35000 bytes.
const MAX_PACKET: usize = 35_000;
const SSH_MSG_KEXINIT: u8 = 20;

/// The parsed server KEXINIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub enc_c2s: Vec<String>,
    pub enc_s2c: Vec<String>,
    pub mac_c2s: Vec<String>,
    pub mac_s2c: Vec<String>,
    pub comp_c2s: Vec<String>,
    pub comp_s2c: Vec<String>,
}

impl KexInit {
    /// The string hasshServer hashes.
    pub fn hassh_server_string(&self) -> String {
        format!(
            "{};{};{};{}",
            self.kex.join(","),
            self.enc_s2c.join(","),
            self.mac_s2c.join(","),
            self.comp_s2c.join(",")
        )
    }

    pub fn hassh_server(&self) -> String {
        hex(&Md5::digest(self.hassh_server_string().as_bytes()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parse a KEXINIT message payload (starting with the message number).
pub fn parse_kexinit(payload: &[u8]) -> Result<KexInit, ProbeError> {
    let bad = |m: &str| ProbeError::Protocol(format!("bad KEXINIT: {m}"));
    if payload.first() != Some(&SSH_MSG_KEXINIT) {
        return Err(bad(&format!("message {} is not KEXINIT", payload.first().copied().unwrap_or(0))));
    }
    let mut rest = payload.get(17..).ok_or_else(|| bad("shorter than its cookie"))?;
    let mut list = || -> Result<Vec<String>, ProbeError> {
        let len = rest.get(..4).ok_or_else(|| bad("name-list length cut short"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let body = rest.get(4..4 + len).ok_or_else(|| bad("name-list longer than the packet"))?;
        let text = std::str::from_utf8(body).map_err(|_| bad("name-list is not ASCII"))?;
        rest = &rest[4 + len..];
        Ok(if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_string).collect() })
    };
    Ok(KexInit {
        kex: list()?,
        host_key: list()?,
        enc_c2s: list()?,
        enc_s2c: list()?,
        mac_c2s: list()?,
        mac_s2c: list()?,
        comp_c2s: list()?,
        comp_s2c: list()?,
    })
}

/// Split one unencrypted binary packet (RFC 4253 §6) off `data`: its payload.
pub fn packet_payload(data: &[u8]) -> Result<&[u8], ProbeError> {
    let bad = |m: String| ProbeError::Protocol(format!("bad SSH packet: {m}"));
    let len = data.get(..4).ok_or_else(|| bad("cut short".into()))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if !(5..=MAX_PACKET).contains(&len) {
        return Err(bad(format!("length {len}")));
    }
    let padding = *data.get(4).ok_or_else(|| bad("cut short".into()))? as usize;
    if padding + 1 > len {
        return Err(bad(format!("padding {padding} larger than the packet")));
    }
    data.get(5..4 + len - padding).ok_or_else(|| bad("cut short".into()))
}

async fn read_line(reader: &mut BufReader<TcpStream>) -> Result<String, ProbeError> {
    let mut line = Vec::new();
    let n = (&mut *reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(ProbeError::Protocol("connection closed before the SSH banner".into()));
    }
    if !line.ends_with(b"\n") {
        return Err(ProbeError::Protocol(format!("banner line longer than {MAX_LINE} bytes")));
    }
    Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
}

/// Connect, swap banners, read the server KEXINIT.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(String, Map<String, Value>), ProbeError> {
    let work = async {
        let stream = TcpStream::connect(addr).await?;
        let mut reader = BufReader::new(stream);
        let mut banner = None;
        for _ in 0..MAX_PRE_BANNER_LINES {
            let line = read_line(&mut reader).await?;
            if line.starts_with("SSH-") {
                banner = Some(line);
                break;
            }
        }
        let banner = banner.ok_or_else(|| ProbeError::Protocol("no SSH banner".into()))?;
        reader.get_mut().write_all(format!("{CLIENT_BANNER}\r\n").as_bytes()).await?;
        let mut head = [0u8; 4];
        reader.read_exact(&mut head).await?;
        let len = u32::from_be_bytes(head) as usize;
        if !(5..=MAX_PACKET).contains(&len) {
            return Err(ProbeError::Protocol(format!("bad SSH packet length {len}")));
        }
        let mut packet = vec![0u8; 4 + len];
        packet[..4].copy_from_slice(&head);
        reader.read_exact(&mut packet[4..]).await?;
        let kex = parse_kexinit(packet_payload(&packet)?)?;
        Ok::<_, ProbeError>((banner, kex))
    };
    let (banner, kex) = tokio::time::timeout(timeout, work).await.map_err(|_| ProbeError::Timeout)??;
    let hash = kex.hassh_server();
    let details = json!({
        "banner": banner,
        "hassh_server_string": kex.hassh_server_string(),
        "kex_algorithms": kex.kex,
        "server_host_key_algorithms": kex.host_key,
        "encryption_s2c": kex.enc_s2c,
        "mac_s2c": kex.mac_s2c,
        "compression_s2c": kex.comp_s2c,
    });
    Ok((hash, details.as_object().cloned().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit(lists: &[&str]) -> Vec<u8> {
        let mut p = vec![SSH_MSG_KEXINIT];
        p.extend_from_slice(&[7; 16]);
        for l in lists {
            p.extend_from_slice(&(l.len() as u32).to_be_bytes());
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn parses_lists_and_hashes_the_server_string() {
        let p =
            kexinit(&["k1,k2", "ssh-ed25519", "a", "aes128-ctr", "m", "hmac-sha2-256", "none", "none,zlib", "", ""]);
        let k = parse_kexinit(&p).unwrap();
        assert_eq!(k.hassh_server_string(), "k1,k2;aes128-ctr;hmac-sha2-256;none,zlib");
        assert_eq!(k.hassh_server(), hex(&Md5::digest(b"k1,k2;aes128-ctr;hmac-sha2-256;none,zlib")));
    }

    #[test]
    fn refuses_damaged_kexinit_and_packets() {
        let p = kexinit(&["k1", "h"]);
        assert!(parse_kexinit(&p).is_err());
        assert!(parse_kexinit(&[21, 0, 0]).is_err());
        let mut big = kexinit(&["k"]);
        big[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_kexinit(&big).is_err());
        assert!(packet_payload(&[0, 0, 0, 1, 0]).is_err());
        assert!(packet_payload(&[0, 0, 0, 8, 9, 1, 2, 3, 4, 5, 6, 7]).is_err());
        assert_eq!(packet_payload(&[0, 0, 0, 6, 2, 20, 1, 2, 0, 0]).unwrap(), &[20, 1, 2]);
    }
}
