//! TFTP (69/udp, RFC 1350): tftpd-hpa serving a small per-persona file
//! set, with uploads accepted (as `tftpd-hpa -c` does).
//!
//! As the real server, each transfer runs from a new source port of the
//! decky's address: the request on port 69 gets no reply from port 69.
//! - RRQ for a file of the persona's set (a router's `startup-config`, a
//!   PXE `pxelinux.cfg/default`, a camera's `config.ini`) is sent in
//!   512-byte blocks, each waiting for its ACK; any other name gets
//!   tftpd-hpa's `File not found` (error 1), a `..` path `Permission
//!   denied` (error 2), a mode other than octet/netascii `Unknown mode`.
//!   Options (RFC 2347) are ignored, which clients accept.
//! - WRQ is acknowledged and the upload received, at most
//!   [`MAX_UPLOAD`] bytes (past it `Disk full or allocation exceeded`);
//!   the bytes are kept only long enough to hash them.
//! - Lines: one `request` (`opcode`, `filename`, `mode`) per request, and
//!   for uploads one `upload` (`filename`, `bytes`, `sha256`, `complete`).
//!
//! A transfer holds one of the decky's session slots (and its source's
//! share), so transfers are bounded like TCP sessions; it ends after
//! [`RETRIES`] unanswered sends or the session time limit. Its DATA blocks
//! are larger than the ACKs that pace them (TFTP is lockstep): without
//! ACKs, a spoofed request gets one block and [`RETRIES`] resends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{Protocol, Transport};
use crate::persona::OsFamily;
use crate::rfc5424::Severity;
use crate::udp::{Datagram, DatagramLog};
use crate::{DeckyContext, Persona};

pub struct Tftp;

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const BLOCK: usize = 512;
/// Bytes one upload may send.
pub const MAX_UPLOAD: usize = 1024 * 1024;
/// Sends of one block before the transfer is given up.
pub const RETRIES: u32 = 3;
/// How long a block waits for its answer (tftpd-hpa's default timeout).
const WAIT: Duration = Duration::from_secs(1);

impl Protocol for Tftp {
    fn name(&self) -> &'static str {
        "tftp"
    }
    fn default_port(&self) -> u16 {
        69
    }
    fn transports(&self) -> &'static [Transport] {
        &[Transport::Udp]
    }
    fn datagram(&self, d: &mut Datagram<'_>) -> Option<Vec<u8>> {
        let request = Request::parse(d.payload).ok()?;
        d.request(
            vec![
                ("opcode", if request.write { "WRQ" } else { "RRQ" }.into()),
                ("filename", request.filename.clone()),
                ("mode", request.mode.clone()),
            ],
            format!("{} {} {}", if request.write { "WRQ" } else { "RRQ" }, request.filename, request.mode),
        );
        let slot = match crate::listener::take_slot(d.ctx, d.peer.ip().to_canonical()) {
            Ok(slot) => slot,
            Err(reason) => {
                crate::listener::refused(d.ctx, "tftp", d.peer, reason);
                return None;
            }
        };
        let (ctx, peer, local, netns) = (d.ctx.clone(), d.peer, d.local, d.netns.map(|p| p.to_path_buf()));
        let log = d.detached_log();
        tokio::spawn(async move {
            let limit = ctx.limits.max_session;
            let _ = tokio::time::timeout(limit, transfer(ctx, peer, local, netns, request, log)).await;
            drop(slot);
        });
        None
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub filename: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotTftp(pub &'static str);

impl Request {
    /// `opcode filename\0 mode\0 [option\0 value\0]…`; options ignored.
    pub fn parse(wire: &[u8]) -> Result<Request, NotTftp> {
        let [hi, lo, rest @ ..] = wire else { return Err(NotTftp("short")) };
        let write = match u16::from_be_bytes([*hi, *lo]) {
            RRQ => false,
            WRQ => true,
            _ => return Err(NotTftp("not a request")),
        };
        let mut fields = rest.split(|b| *b == 0);
        let filename = fields.next().filter(|f| !f.is_empty()).ok_or(NotTftp("no filename"))?;
        let mode = fields.next().filter(|m| !m.is_empty()).ok_or(NotTftp("no mode"))?;
        if !rest.ends_with(&[0]) {
            return Err(NotTftp("unterminated"));
        }
        Ok(Request {
            write,
            filename: String::from_utf8_lossy(filename).into_owned(),
            mode: String::from_utf8_lossy(mode).to_ascii_lowercase(),
        })
    }
}

fn error(code: u16, message: &str) -> Vec<u8> {
    let mut p = ERROR.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

fn packet(op: u16, block: u16, data: &[u8]) -> Vec<u8> {
    let mut p = op.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// The files the persona's TFTP root holds.
pub fn files(p: &Persona) -> Vec<(&'static str, String)> {
    let fqdn = p.fqdn();
    let gateway = p.interfaces.first().map(|i| i.gateway.clone()).unwrap_or_default();
    let address = p.interfaces.first().map(|i| i.address.clone()).unwrap_or_default();
    let startup = format!(
        "!\nversion 15.2\nservice timestamps debug datetime msec\nservice password-encryption\n!\nhostname {}-gw\n!\nenable secret 5 $1$mERr$hx5rVt7rPNoS4wqbXKX7m0\n!\nip domain-name {}\nip name-server {}\n!\nusername admin privilege 15 password 7 0822455D0A16\n!\ninterface GigabitEthernet0/0\n ip address {} 255.255.255.0\n!\nsnmp-server community public RO\n!\nline vty 0 4\n login local\n transport input ssh telnet\n!\nend\n",
        p.hostname, p.domain, address, gateway
    );
    let pxe = format!(
        "DEFAULT install\nLABEL install\n  KERNEL debian-installer/amd64/linux\n  APPEND vga=788 initrd=debian-installer/amd64/initrd.gz auto=true priority=critical url=http://{fqdn}/preseed.cfg --- quiet\nPROMPT 0\nTIMEOUT 0\n"
    );
    let mut out = vec![("startup-config", startup), ("pxelinux.cfg/default", pxe)];
    if p.family == OsFamily::Embedded {
        out.push((
            "config.ini",
            format!("[network]\nhostname={}\nip={address}\ngateway={gateway}\ndhcp=0\n[user]\nadmin=admin:12345\n[rtsp]\nport=554\nauth=1\n", p.hostname),
        ));
    }
    out
}

/// Bind the transfer's socket on the decky's address (a new port), in its
/// namespace, talking only to `peer`.
async fn transfer_socket(local: SocketAddr, peer: SocketAddr, netns: Option<PathBuf>) -> Option<UdpSocket> {
    let std_socket = tokio::task::spawn_blocking(move || {
        crate::netns::run_in(netns.as_deref(), move || {
            let s = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
            s.set_nonblocking(true)?;
            s.connect(peer)?;
            Ok(s)
        })
    })
    .await
    .ok()?
    .ok()?;
    UdpSocket::from_std(std_socket).ok()
}

async fn transfer(
    ctx: Arc<DeckyContext>,
    peer: SocketAddr,
    local: SocketAddr,
    netns: Option<PathBuf>,
    request: Request,
    mut log: DatagramLog,
) {
    let Some(socket) = transfer_socket(local, peer, netns).await else { return };
    if request.mode != "octet" && request.mode != "netascii" {
        let _ = socket.send(&error(4, "Unknown mode")).await;
        return;
    }
    if request.filename.split('/').any(|c| c == "..") {
        let _ = socket.send(&error(2, "Permission denied")).await;
        return;
    }
    let name = request.filename.trim_start_matches('/');
    if request.write {
        receive(&socket, &request.filename, &mut log).await;
        return;
    }
    match files(&ctx.persona).into_iter().find(|(n, _)| *n == name) {
        Some((_, content)) => send(&socket, content.as_bytes()).await,
        None => {
            let _ = socket.send(&error(1, "File not found")).await;
        }
    }
}

/// Wait for the next packet from the peer (the socket is connected).
async fn next(socket: &UdpSocket, buf: &mut [u8]) -> Option<usize> {
    match tokio::time::timeout(WAIT, socket.recv(buf)).await {
        Ok(Ok(n)) => Some(n),
        _ => None,
    }
}

/// Send `content` block by block, each until its ACK comes.
async fn send(socket: &UdpSocket, content: &[u8]) {
    let mut buf = [0u8; 1024];
    // A final short (possibly empty) block tells the client it is done.
    let blocks = content.len() / BLOCK + 1;
    for i in 0..blocks {
        let block = (i + 1) as u16;
        let chunk = &content[i * BLOCK..((i + 1) * BLOCK).min(content.len())];
        let data = packet(DATA, block, chunk);
        let mut acked = false;
        for _ in 0..RETRIES {
            if socket.send(&data).await.is_err() {
                return;
            }
            // Stray packets (an old ACK) do not count as an answer.
            while let Some(n) = next(socket, &mut buf).await {
                match buf[..n] {
                    [0, 4, hi, lo, ..] if u16::from_be_bytes([hi, lo]) == block => {
                        acked = true;
                        break;
                    }
                    [0, 5, ..] => return,
                    _ => {}
                }
            }
            if acked {
                break;
            }
        }
        if !acked {
            return;
        }
    }
}

/// Receive an upload: ACK 0, then each DATA block in order, at most
/// [`MAX_UPLOAD`] bytes, then one `upload` line.
async fn receive(socket: &UdpSocket, filename: &str, log: &mut DatagramLog) {
    let mut buf = vec![0u8; 4 + BLOCK + 64];
    let mut received: Vec<u8> = Vec::new();
    let mut expected: u16 = 1;
    let mut complete = false;
    let mut ack = packet(ACK, 0, &[]);
    'blocks: loop {
        let mut tries = 0;
        loop {
            if socket.send(&ack).await.is_err() {
                break 'blocks;
            }
            match next(socket, &mut buf).await {
                Some(n) => match buf[..n] {
                    [0, 3, hi, lo, ..] if u16::from_be_bytes([hi, lo]) == expected => {
                        let data = &buf[4..n];
                        if received.len() + data.len() > MAX_UPLOAD {
                            let _ = socket.send(&error(3, "Disk full or allocation exceeded")).await;
                            break 'blocks;
                        }
                        received.extend_from_slice(data);
                        ack = packet(ACK, expected, &[]);
                        expected = expected.wrapping_add(1);
                        if data.len() < BLOCK {
                            let _ = socket.send(&ack).await;
                            complete = true;
                            break 'blocks;
                        }
                        break;
                    }
                    [0, 5, ..] => break 'blocks,
                    // A resent block we already have: ACK it again.
                    _ => tries += 1,
                },
                None => tries += 1,
            }
            if tries >= RETRIES {
                break 'blocks;
            }
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &received);
    let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    log.emit(
        "upload",
        Severity::Warning,
        vec![
            ("filename", filename.to_string()),
            ("bytes", received.len().to_string()),
            ("sha256", sha.clone()),
            ("complete", complete.to_string()),
        ],
        format!("upload {filename} {} bytes sha256 {sha}", received.len()),
    );
    keep_upload(filename, &received, log);
}

/// Where tftpd-hpa (`-s /srv/tftp`) writes an upload.
const TFTP_ROOT: &str = "/srv/tftp";

/// Keep what was uploaded in the decky's quarantine (when capture is on)
/// and announce it as an `artifact` line, like a shell upload.
fn keep_upload(filename: &str, received: &[u8], log: &mut DatagramLog) {
    let Some(artifacts) = log.context().artifacts.clone() else { return };
    if received.is_empty() {
        return;
    }
    // One transfer is one "session" for the per-session budget.
    let quota = crate::artifacts::SessionQuota::default();
    let path = format!("{TFTP_ROOT}/{}", filename.trim_start_matches('/'));
    match artifacts.store.store(&quota, received) {
        Ok(stored) => log.emit(
            "artifact",
            Severity::Warning,
            vec![
                ("source", "upload".to_string()),
                ("path", path.clone()),
                ("sha256", stored.sha256.clone()),
                ("size", stored.size.to_string()),
                ("mime", stored.mime.to_string()),
            ],
            format!("upload {path} sha256={} {} bytes {}", stored.sha256, stored.size, stored.mime),
        ),
        Err(e) => log.emit(
            "artifact_dropped",
            Severity::Warning,
            vec![("path", path.clone()), ("reason", e.to_string())],
            format!("upload {path} not kept: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_or_without_options() {
        let r = Request::parse(b"\x00\x01startup-config\x00octet\x00").unwrap();
        assert_eq!((r.write, r.filename.as_str(), r.mode.as_str()), (false, "startup-config", "octet"));
        let w = Request::parse(b"\x00\x02up.bin\x00OCTET\x00tsize\x00100\x00blksize\x001468\x00").unwrap();
        assert_eq!((w.write, w.mode.as_str()), (true, "octet"));
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x03\x00\x01data",
            b"\x00\x01\x00octet\x00",
            b"\x00\x01file\x00\x00",
            b"\x00\x01file\x00octet",
            b"\x00\x01file",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_file_set_names_the_persona() {
        let p = Persona::derive("cam-03", Some("iot-device"), None, 1_764_000_000);
        let f = files(&p);
        let startup = &f.iter().find(|(n, _)| *n == "startup-config").unwrap().1;
        assert!(startup.contains("hostname cam-03-gw"));
        assert!(f.iter().any(|(n, _)| *n == "pxelinux.cfg/default"));
    }

    #[test]
    fn error_packets_are_as_tftpd_hpa_sends_them() {
        assert_eq!(error(1, "File not found"), b"\x00\x05\x00\x01File not found\x00");
        assert_eq!(packet(DATA, 2, b"ab"), b"\x00\x03\x00\x02ab");
    }
}
