//! RDP honeypot: Remote Desktop of the persona's Windows with Network
//! Level Authentication required (the default since Windows Server 2012
//! and Windows 10), taken as far as the NTLM logon.
//!
//! - The X.224 Connection Request is parsed: its `Cookie: mstshash=<user>`
//!   (the user name mstsc and most tools put there) is recorded, with the
//!   protocols the client asked for.
//! - The Connection Confirm selects CredSSP (PROTOCOL_HYBRID, or
//!   HYBRID_EX when offered) with the flags Windows 10 / 2019 send; a
//!   client that offers neither gets RDP_NEG_FAILURE
//!   HYBRID_REQUIRED_BY_SERVER, as from an NLA-only host.
//! - TLS with the decky's certificate (CN = the persona's FQDN, as Windows'
//!   self-signed RDP certificate), then CredSSP (MS-CSSP TSRequest, DER):
//!   the client's NTLM NEGOTIATE (raw or in SPNEGO) gets the persona's
//!   CHALLENGE ([`super::ntlm`]: `rdp-ntlm-info` shows the persona's
//!   names and build), its AUTHENTICATE is recorded (user, domain,
//!   workstation, NetNTLMv2 as a hashcat 5600 line), and the answer is a
//!   TSRequest carrying STATUS_LOGON_FAILURE, then the connection closes,
//!   as Windows does for a wrong password.
//!
//! Bounds: the TPKT and every TSRequest are checked against
//! [`MAX_PDU`] before they are read; the TLS handshake gets the idle time
//! (at most 10 s); anything malformed ends the session.

use tokio::net::TcpStream;

use super::ber::{self, BerError, Reader};
use super::ntlm;
use super::wire::Wire;
use crate::event::{self, SharedSession};
use crate::io::{printable, End, Metered};

/// Largest TPKT or TSRequest read.
pub const MAX_PDU: usize = 16 * 1024;
const PROTOCOL_HYBRID: u32 = 2;
const PROTOCOL_HYBRID_EX: u32 = 8;
/// The CredSSP version Windows 10 / Server 2019 speak.
const CREDSSP_VERSION: i64 = 6;
const STATUS_LOGON_FAILURE: u32 = 0xC000_006D;

/// The `rdp` entry of [`super::REGISTRY`].
pub struct Rdp;

impl super::Protocol for Rdp {
    fn name(&self) -> &'static str {
        "rdp"
    }
    fn default_port(&self) -> u16 {
        3389
    }
    fn prepare(&self, ctx: &crate::DeckyContext) -> Result<(), String> {
        ctx.tls_config().map(|_| ())
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// What an X.224 Connection Request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// The `mstshash` cookie (or the `msts` routing token), if any.
    pub cookie: Option<String>,
    /// RDP_NEG_REQ's requested protocols; none without a negotiation request.
    pub protocols: Option<u32>,
}

/// The X.224 TPDU of a TPKT (after its 4-byte header).
pub fn parse_connection_request(tpdu: &[u8]) -> Option<ConnectionRequest> {
    let li = *tpdu.first()? as usize;
    if tpdu.get(1)? & 0xf0 != 0xe0 || li < 6 || tpdu.len() < li + 1 {
        return None;
    }
    let mut variable = &tpdu[7..li + 1];
    let mut cookie = None;
    if variable.starts_with(b"Cookie: ") {
        let end = variable.windows(2).position(|w| w == b"\r\n")?;
        let line = &variable[8..end];
        let value = line.strip_prefix(b"mstshash=").unwrap_or(line);
        cookie = Some(printable(&value[..value.len().min(256)]));
        variable = &variable[end + 2..];
    }
    let protocols = match variable {
        [1, _, 8, 0, p0, p1, p2, p3, ..] => Some(u32::from_le_bytes([*p0, *p1, *p2, *p3])),
        _ => None,
    };
    Some(ConnectionRequest { cookie, protocols })
}

/// The Connection Confirm for what the client asked: the protocol
/// selected, or none (a negotiation failure was sent).
pub fn connection_confirm(requested: Option<u32>) -> (Vec<u8>, Option<u32>) {
    let mut out = vec![0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00];
    let selected = requested.and_then(|p| {
        if p & PROTOCOL_HYBRID_EX != 0 {
            Some(PROTOCOL_HYBRID_EX)
        } else if p & PROTOCOL_HYBRID != 0 {
            Some(PROTOCOL_HYBRID)
        } else {
            None
        }
    });
    match selected {
        // RDP_NEG_RSP with EXTENDED_CLIENT_DATA, DYNVC_GFX, RESTRICTED_ADMIN,
        // REDIRECTED_AUTH and the reserved bit, as Windows 10 sets them.
        Some(_) => out.extend_from_slice(&[0x02, 0x1f, 0x08, 0x00]),
        None => out.extend_from_slice(&[0x03, 0x00, 0x08, 0x00]),
    }
    match selected {
        Some(p) => out.extend_from_slice(&p.to_le_bytes()),
        // HYBRID_REQUIRED_BY_SERVER.
        None => out.extend_from_slice(&5u32.to_le_bytes()),
    }
    (out, selected)
}

/// A client's TSRequest: its version and first negoToken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsRequest {
    pub version: i64,
    pub token: Option<Vec<u8>>,
}

/// Parse the contents of a TSRequest SEQUENCE.
pub fn parse_ts_request(contents: &[u8]) -> Result<TsRequest, BerError> {
    let mut r = Reader::new(contents);
    let version = Reader::new(r.expect(0xa0)?).integer(0x02)?;
    let mut token = None;
    if let Some(tokens) = r.optional(0xa1)? {
        let mut list = Reader::new(Reader::new(tokens).expect(0x30)?);
        let first = Reader::new(list.expect(0x30)?).expect(0xa0)?;
        token = Some(Reader::new(first).expect(0x04)?.to_vec());
    }
    Ok(TsRequest { version, token })
}

/// A TSRequest from the server: a token, or an error code.
pub fn ts_request(version: i64, token: Option<&[u8]>, error: Option<u32>) -> Vec<u8> {
    let mut seq = ber::tlv(0xa0, &ber::tlv(0x02, &ber::integer_bytes(version)));
    if let Some(token) = token {
        let item = ber::tlv(0x30, &ber::tlv(0xa0, &ber::tlv(0x04, token)));
        seq.extend(ber::tlv(0xa1, &ber::tlv(0x30, &item)));
    }
    if let Some(code) = error {
        seq.extend(ber::tlv(0xa4, &ber::tlv(0x02, &ber::integer_bytes(code as i32 as i64))));
    }
    ber::tlv(0x30, &seq)
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (idle, ctx) = event::with(&session, |s| (s.limits().idle, s.context().clone()));
    let persona = ctx.persona.clone();
    let mut wire = Wire::new(io, idle);
    let mut tpkt = [0u8; 4];
    if let Err(e) = wire.read_exact(&mut tpkt).await {
        return e;
    }
    let len = u16::from_be_bytes([tpkt[2], tpkt[3]]) as usize;
    if tpkt[0] != 3 || len < 11 {
        event::with(&session, |s| s.command(&format!("not rdp ({})", printable(&tpkt))));
        return End::Done;
    }
    let tpdu = match wire.read_vec(len - 4, MAX_PDU).await {
        Ok(t) => t,
        Err(e) => return e,
    };
    let Some(request) = parse_connection_request(&tpdu) else {
        event::with(&session, |s| s.command("malformed connection request"));
        return End::Done;
    };
    event::with(&session, |s| {
        let protocols = request.protocols.map(|p| format!("{p:#x}")).unwrap_or_else(|| "none".into());
        match &request.cookie {
            Some(user) => {
                s.username = Some(user.clone());
                s.command(&format!("connect mstshash={user} protocols={protocols}"))
            }
            None => s.command(&format!("connect protocols={protocols}")),
        }
    });
    let (confirm, selected) = connection_confirm(request.protocols);
    if let Err(e) = wire.send(&confirm).await {
        return e;
    }
    if selected.is_none() {
        return End::Done;
    }
    let config = match ctx.tls_config() {
        Ok(c) => c,
        Err(e) => return End::Io(e),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake = idle.min(super::https::HANDSHAKE_TIMEOUT);
    let tls = match tokio::time::timeout(handshake, acceptor.accept(wire.into_inner())).await {
        Err(_) => return End::Idle,
        Ok(Err(e)) => return End::Io(format!("tls: {}", e.to_string().chars().take(200).collect::<String>())),
        Ok(Ok(t)) => t,
    };
    let mut wire = Wire::new(tls, idle);
    let mut challenge: Option<[u8; 8]> = None;
    // NEGOTIATE, AUTHENTICATE; a client that loops gets cut off.
    for _ in 0..4 {
        let request = match wire.read_tlv(MAX_PDU).await {
            Ok((0x30, contents)) => parse_ts_request(&contents),
            Ok((tag, _)) => Err(BerError::Tag(tag)),
            Err(e) => return e,
        };
        let Ok(TsRequest { version, token: Some(token) }) = request else {
            event::with(&session, |s| s.command("malformed credssp request"));
            return End::Done;
        };
        let version = version.clamp(2, CREDSSP_VERSION);
        let wrapped = !token.starts_with(ntlm::SIGNATURE);
        let Some(message) = ntlm::unwrap_gss(&token) else {
            event::with(&session, |s| s.command("credssp token without ntlm"));
            return End::Done;
        };
        if let Some(flags) = ntlm::negotiate_flags(message) {
            let mut c = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut c);
            challenge = Some(c);
            let reply = ntlm::challenge_message(&persona, &c, flags);
            let reply = if wrapped { ntlm::spnego_resp(1, Some(&reply)) } else { reply };
            if let Err(e) = wire.send(&ts_request(version, Some(&reply), None)).await {
                return e;
            }
            continue;
        }
        let (Some(c), Ok(auth)) = (challenge.take(), ntlm::parse_authenticate(message)) else {
            event::with(&session, |s| s.command("unexpected credssp token"));
            return End::Done;
        };
        ntlm::record(&session, &auth, &c);
        if version >= 3 {
            let _ = wire.send(&ts_request(version, None, Some(STATUS_LOGON_FAILURE))).await;
        }
        return End::Done;
    }
    End::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nmap's TerminalServerCookie probe, without the TPKT header.
    const NMAP_PROBE: &[u8] = b"\x25\xe0\0\0\0\0\0Cookie: mstshash=nmap\r\n\x01\0\x08\0\x03\0\0\0";

    #[test]
    fn the_cookie_and_protocols_parse_and_the_confirm_is_what_nmap_knows() {
        let r = parse_connection_request(NMAP_PROBE).unwrap();
        assert_eq!(r, ConnectionRequest { cookie: Some("nmap".into()), protocols: Some(3) });
        let (confirm, selected) = connection_confirm(r.protocols);
        // nmap-service-probes' "Windows 10" ms-wbt-server line.
        assert_eq!(confirm, b"\x03\0\0\x13\x0e\xd0\0\0\x124\0\x02\x1f\x08\0\x02\0\0\0");
        assert_eq!(selected, Some(PROTOCOL_HYBRID));
        assert_eq!(connection_confirm(Some(0x0b)).1, Some(PROTOCOL_HYBRID_EX));
        let (failure, none) = connection_confirm(Some(1)); // PROTOCOL_SSL only
        assert_eq!((failure[11], failure[15], none), (3, 5, None));
        let bare = parse_connection_request(b"\x06\xe0\0\0\0\0\0").unwrap();
        assert_eq!(bare, ConnectionRequest { cookie: None, protocols: None });
    }

    #[test]
    fn hostile_connection_requests_are_refused_without_panicking() {
        assert_eq!(parse_connection_request(b"\x25\xd0\0\0\0\0\0"), None, "not a CR");
        assert_eq!(parse_connection_request(b"\x7f\xe0\0\0\0\0\0"), None, "LI past the end");
        assert_eq!(parse_connection_request(b"\x20\xe0\0\0\0\0\0Cookie: mstshash=no-end.........."), None);
        for cut in 0..NMAP_PROBE.len() {
            let _ = parse_connection_request(&NMAP_PROBE[..cut]);
        }
    }

    #[test]
    fn ts_requests_round_trip_and_errors_carry_the_ntstatus() {
        let token = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2".to_vec();
        let encoded = ts_request(6, Some(&token), None);
        let (tag, contents) = Reader::new(&encoded).element().unwrap();
        assert_eq!(tag, 0x30);
        assert_eq!(parse_ts_request(contents).unwrap(), TsRequest { version: 6, token: Some(token) });
        let error = ts_request(6, None, Some(STATUS_LOGON_FAILURE));
        assert!(error.ends_with(&[0xa4, 0x06, 0x02, 0x04, 0xc0, 0x00, 0x00, 0x6d]));
        for cut in 0..contents.len() {
            let _ = parse_ts_request(&contents[..cut]);
        }
        assert!(parse_ts_request(&[0xa0, 0x03, 0x02, 0x01]).is_err());
    }
}
