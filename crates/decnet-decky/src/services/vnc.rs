//! VNC honeypot: an RFB server that asks for a VNC password and never
//! accepts one, behaving as libvncserver does (x11vnc, the VNC server
//! Debian and Ubuntu package for sharing a desktop; also what many
//! embedded devices run): `RFB 003.008`, one security type (2, VNC
//! authentication), a 16-byte random challenge, and for the response
//! SecurityResult 1 with libvncserver's reason `password check failed!`
//! (RFB 3.8; 3.7 and 3.3 clients get the result without a reason, as the
//! protocol versions say).
//!
//! The response is DES of the challenge under the password, so the pair
//! is recorded as a `hash` in john's `$vnc$*CHALLENGE*RESPONSE` format
//! (hash_type `vnc-des`): cracking it offline recovers the password.
//!
//! The protocol version a persona announces may be overridden with
//! `versions.vnc` (`3.8`, `3.7` or `3.3`).

use rand::RngCore;
use tokio::net::TcpStream;

use super::wire::Wire;
use crate::event::{self, SharedSession};
use crate::io::{End, Metered};
use crate::rfc5424::Severity;

/// libvncserver's failure reason for a wrong VNC password.
pub const FAILURE_REASON: &str = "password check failed!";

/// The `vnc` entry of [`super::REGISTRY`].
pub struct Vnc;

impl super::Protocol for Vnc {
    fn name(&self) -> &'static str {
        "vnc"
    }
    fn default_port(&self) -> u16 {
        5900
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// The minor version (3, 7 or 8) of a `3.x` version string.
fn minor_of(version: &str) -> u8 {
    match version.trim() {
        "3.3" => 3,
        "3.7" => 7,
        _ => 8,
    }
}

/// The minor version of a client's `RFB 003.00x\n` (a version above the
/// server's is answered as the server's, below 3.7 as 3.3, as RFC 6143
/// §7.1.1 says); none for anything that is not a ProtocolVersion.
pub fn client_minor(reply: &[u8; 12], server: u8) -> Option<u8> {
    let text = std::str::from_utf8(reply).ok()?;
    let rest = text.strip_prefix("RFB ")?.strip_suffix('\n')?;
    let (major, minor) = rest.split_once('.')?;
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    if major != 3 {
        return if major > 3 { Some(server) } else { None };
    }
    Some(match minor {
        m if m >= server as u32 => server,
        7 => 7,
        _ => 3,
    })
}

/// The crackable line of one exchange.
pub fn hash_line(challenge: &[u8; 16], response: &[u8; 16]) -> String {
    let up = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    format!("$vnc$*{}*{}", up(challenge), up(response))
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (idle, persona) = event::with(&session, |s| (s.limits().idle, s.context().persona.clone()));
    let server = minor_of(&persona.version_of("vnc", |_| "3.8".into()));
    let mut wire = Wire::new(io, idle);
    if let Err(e) = wire.send(format!("RFB 003.{server:03}\n").as_bytes()).await {
        return e;
    }
    let mut reply = [0u8; 12];
    if let Err(e) = wire.read_exact(&mut reply).await {
        return e;
    }
    let Some(minor) = client_minor(&reply, server) else {
        // libvncserver logs and drops a client whose version it cannot read.
        let text = crate::io::printable(&reply);
        event::with(&session, |s| s.command(&format!("invalid protocol version {text}")));
        return End::Done;
    };
    if minor == 3 {
        // RFB 3.3: the server picks the type.
        if let Err(e) = wire.send(&2u32.to_be_bytes()).await {
            return e;
        }
    } else {
        if let Err(e) = wire.send(&[1, 2]).await {
            return e;
        }
        let chosen = match wire.read_u8().await {
            Ok(b) => b,
            Err(e) => return e,
        };
        if chosen != 2 {
            event::with(&session, |s| s.command(&format!("security type {chosen}")));
            let _ = wire.send(&failure(minor, "Authentication failure")).await;
            return End::Done;
        }
    }
    let mut challenge = [0u8; 16];
    rand::rng().fill_bytes(&mut challenge);
    if let Err(e) = wire.send(&challenge).await {
        return e;
    }
    let mut response = [0u8; 16];
    if let Err(e) = wire.read_exact(&mut response).await {
        return e;
    }
    event::with(&session, |s| {
        s.emit(
            "login_attempt",
            Severity::Notice,
            vec![
                ("username", String::new()),
                ("hash", hash_line(&challenge, &response)),
                ("hash_type", "vnc-des".into()),
                ("auth_method", "vnc".into()),
                ("rfb_version", format!("3.{minor}")),
            ],
            Some("vnc login attempt".into()),
        )
    });
    let _ = wire.send(&failure(minor, FAILURE_REASON)).await;
    End::Done
}

/// SecurityResult "failed", with the reason from RFB 3.8 on.
fn failure(minor: u8, reason: &str) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    if minor >= 8 {
        out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_versions_are_read_as_rfc_6143_says() {
        assert_eq!(client_minor(b"RFB 003.008\n", 8), Some(8));
        assert_eq!(client_minor(b"RFB 003.007\n", 8), Some(7));
        assert_eq!(client_minor(b"RFB 003.003\n", 8), Some(3));
        assert_eq!(client_minor(b"RFB 003.005\n", 8), Some(3));
        assert_eq!(client_minor(b"RFB 003.889\n", 8), Some(8));
        assert_eq!(client_minor(b"RFB 004.001\n", 8), Some(8));
        assert_eq!(client_minor(b"RFB 003.008\n", 7), Some(7));
        assert_eq!(client_minor(b"GET / HTTP/1", 8), None);
        assert_eq!(client_minor(b"RFB 00x.008\n", 8), None);
        assert_eq!(client_minor(b"RFB \xff\xfe\xfd.008\n", 8), None);
    }

    #[test]
    fn the_hash_line_is_johns_format_and_failures_follow_the_version() {
        let line = hash_line(&[0xab; 16], &[0x01; 16]);
        assert_eq!(line, format!("$vnc$*{}*{}", "AB".repeat(16), "01".repeat(16)));
        assert_eq!(failure(3, FAILURE_REASON), vec![0, 0, 0, 1]);
        assert_eq!(failure(7, FAILURE_REASON), vec![0, 0, 0, 1]);
        let f = failure(8, FAILURE_REASON);
        assert_eq!(&f[4..8], &(FAILURE_REASON.len() as u32).to_be_bytes());
        assert_eq!(&f[8..], FAILURE_REASON.as_bytes());
        assert_eq!(minor_of("3.7"), 7);
        assert_eq!(minor_of("bogus"), 8);
    }
}
