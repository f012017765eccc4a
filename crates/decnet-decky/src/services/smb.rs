//! SMB honeypot: the SMB2/3 server of the persona's Windows (10 or Server
//! 2019) with SMB1 not installed, as both ship since 1709.
//!
//! - An SMB1 NEGOTIATE that lists `SMB 2.???` (or `SMB 2.002`) is answered
//!   with an SMB2 NEGOTIATE response (dialect 0x02FF, or 0x0202), as
//!   Windows does for multi-protocol clients; one that lists only SMB1
//!   dialects (nmap's probe, old clients) gets the connection closed.
//! - SMB2 NEGOTIATE: the highest of 2.0.2–3.1.1 both sides speak, the
//!   decky's stable server GUID, the system time, signing enabled (and
//!   required on a `windows-server` persona, a domain controller), SPNEGO
//!   offering NTLMSSP, and for 3.1.1 the pre-auth integrity (SHA-512) and
//!   encryption (AES-128-GCM or CCM, as the client offers) contexts.
//! - SESSION_SETUP: NTLMSSP through SPNEGO ([`super::ntlm`]): the
//!   CHALLENGE names the persona; the AUTHENTICATE's user, domain,
//!   workstation and NetNTLMv2 response are recorded as a hashcat 5600
//!   line, answered with STATUS_LOGON_FAILURE (guest is disabled, so a
//!   wrong or unknown account fails as on Windows). An anonymous (null)
//!   session succeeds.
//! - A null session may TREE_CONNECT to `IPC$` (other shares:
//!   STATUS_ACCESS_DENIED); opening a pipe there (`srvsvc` for a share
//!   list) is STATUS_ACCESS_DENIED, as Windows 10 / 2019 restrict
//!   anonymous access to named pipes: so `smbclient -L -N` gets in and is
//!   refused the list, as against the real host. Every share and pipe
//!   asked for is recorded as a command.
//!
//! Frames are NetBIOS session messages of at most [`MAX_FRAME`] bytes
//! (checked before reading the body); anything malformed ends the session.

use rand::RngCore;
use tokio::net::TcpStream;

use super::ntlm;
use super::wire::{filetime, from_utf16le, Wire};
use crate::event::{self, SharedSession};
use crate::io::{End, Metered};
use crate::Persona;

/// Largest frame read: far above any negotiate or session setup.
pub const MAX_FRAME: usize = 64 * 1024;
/// Requests served per session (each answered; a loop of ECHOs ends here).
const MAX_REQUESTS: usize = 256;

const STATUS_SUCCESS: u32 = 0;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xC000_0016;
const STATUS_LOGON_FAILURE: u32 = 0xC000_006D;
const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
const STATUS_NOT_SUPPORTED: u32 = 0xC000_00BB;
const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
const STATUS_USER_SESSION_DELETED: u32 = 0xC000_0203;
const STATUS_NETWORK_NAME_DELETED: u32 = 0xC000_00C9;

const NEGOTIATE: u16 = 0;
const SESSION_SETUP: u16 = 1;
const LOGOFF: u16 = 2;
const TREE_CONNECT: u16 = 3;
const TREE_DISCONNECT: u16 = 4;
const CREATE: u16 = 5;
const ECHO: u16 = 13;

/// Dialects Windows 10 / Server 2019 speak, lowest first.
const DIALECTS: &[u16] = &[0x0202, 0x0210, 0x0300, 0x0302, 0x0311];

/// The `smb` entry of [`super::REGISTRY`].
pub struct Smb;

impl super::Protocol for Smb {
    fn name(&self) -> &'static str {
        "smb"
    }
    fn default_port(&self) -> u16 {
        445
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// An SMB2 request header's fields the server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub command: u16,
    pub credits: u16,
    pub flags: u32,
    pub next: u32,
    pub message_id: u64,
    pub process_id: u32,
    pub tree_id: u32,
    pub session_id: u64,
}

/// The SMB2 header at the start of `msg`.
pub fn parse_header(msg: &[u8]) -> Option<Header> {
    if msg.len() < 64 || &msg[..4] != b"\xfeSMB" {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([msg[i], msg[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(msg[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().unwrap_or_default());
    Some(Header {
        command: u16_at(12),
        credits: u16_at(14),
        flags: u32_at(16),
        next: u32_at(20),
        message_id: u64_at(24),
        process_id: u32_at(32),
        tree_id: u32_at(36),
        session_id: u64_at(40),
    })
}

/// What an SMB1 NEGOTIATE asks of an SMB2-only server: the SMB2 dialect
/// to answer with (0x02FF for `SMB 2.???`, 0x0202 for `SMB 2.002`), or
/// none (the connection is closed).
pub fn smb1_upgrade(msg: &[u8]) -> Option<u16> {
    // Header (32), WordCount (1, zero words), ByteCount (2), dialects.
    if msg.len() < 35 || &msg[..4] != b"\xffSMB" || msg[4] != 0x72 {
        return None;
    }
    let words = msg[32] as usize * 2;
    let bytes = msg.get(33 + words + 2..)?;
    let dialects: Vec<&[u8]> = bytes.split(|b| *b == 0).filter_map(|d| d.strip_prefix(&[0x02])).collect();
    if dialects.contains(&&b"SMB 2.???"[..]) {
        Some(0x02FF)
    } else if dialects.contains(&&b"SMB 2.002"[..]) {
        Some(0x0202)
    } else {
        None
    }
}

/// What a client's SMB2 NEGOTIATE offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offer {
    pub dialects: Vec<u16>,
    /// Ciphers of its ENCRYPTION_CAPABILITIES context (3.1.1).
    pub ciphers: Vec<u16>,
}

/// The NEGOTIATE request body after the header.
pub fn parse_negotiate(msg: &[u8]) -> Option<Offer> {
    let body = msg.get(64..)?;
    if body.len() < 36 {
        return None;
    }
    let count = u16::from_le_bytes([body[2], body[3]]) as usize;
    let list = body.get(36..36 + count * 2)?;
    let dialects: Vec<u16> = list.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let mut offer = Offer { dialects, ciphers: Vec::new() };
    if offer.dialects.contains(&0x0311) {
        let at = u32::from_le_bytes(body[28..32].try_into().ok()?) as usize;
        let n = u16::from_le_bytes([body[32], body[33]]) as usize;
        let mut i = at;
        for _ in 0..n.min(16) {
            let Some(h) = msg.get(i..i + 8) else { break };
            let (kind, len) = (u16::from_le_bytes([h[0], h[1]]), u16::from_le_bytes([h[2], h[3]]) as usize);
            let Some(data) = msg.get(i + 8..i + 8 + len) else { break };
            if kind == 2 && data.len() >= 2 {
                let c = u16::from_le_bytes([data[0], data[1]]) as usize;
                offer.ciphers = data[2..].chunks_exact(2).take(c).map(|x| u16::from_le_bytes([x[0], x[1]])).collect();
            }
            i += (8 + len).div_ceil(8) * 8;
        }
    }
    Some(offer)
}

/// The security buffer of a SESSION_SETUP request.
pub fn session_setup_token(msg: &[u8]) -> Option<&[u8]> {
    let body = msg.get(64..88)?;
    let at = u16::from_le_bytes([body[12], body[13]]) as usize;
    let len = u16::from_le_bytes([body[14], body[15]]) as usize;
    msg.get(at..at + len)
}

/// The UTF-16 path or name at (offset field, length field) of the body.
fn body_string(msg: &[u8], offset_at: usize, len_at: usize) -> Option<String> {
    let at = u16::from_le_bytes([*msg.get(64 + offset_at)?, *msg.get(64 + offset_at + 1)?]) as usize;
    let len = u16::from_le_bytes([*msg.get(64 + len_at)?, *msg.get(64 + len_at + 1)?]) as usize;
    Some(from_utf16le(msg.get(at..at + len)?, 512))
}

/// How the persona's server signs: required on a domain controller.
fn security_mode(persona: &Persona) -> u16 {
    if persona.archetype == "windows-server" {
        0x03
    } else {
        0x01
    }
}

/// The decky's server GUID: stable for the decky, different between deckies.
fn server_guid(decky: &str) -> [u8; 16] {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("decnet-smb-guid\0{decky}").as_bytes());
    let mut g = [0u8; 16];
    g.copy_from_slice(&d.as_ref()[..16]);
    g
}

/// The response header for `req` with `status`.
fn response_header(req: &Header, status: u32, session_id: u64, tree_id: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(b"\xfeSMB");
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&status.to_le_bytes());
    h.extend_from_slice(&req.command.to_le_bytes());
    h.extend_from_slice(&req.credits.clamp(1, 64).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // SERVER_TO_REDIR
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&req.message_id.to_le_bytes());
    h.extend_from_slice(&req.process_id.to_le_bytes());
    h.extend_from_slice(&tree_id.to_le_bytes());
    h.extend_from_slice(&session_id.to_le_bytes());
    h.extend_from_slice(&[0u8; 16]);
    h
}

/// SMB2 ERROR response body (how Windows answers a failed request).
fn error_body() -> Vec<u8> {
    vec![9, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The NEGOTIATE response for `dialect`.
pub fn negotiate_response(persona: &Persona, decky: &str, dialect: u16, ciphers: &[u16]) -> Vec<u8> {
    let blob = ntlm::spnego_init();
    let mut contexts = Vec::new();
    let mut count = 0u16;
    if dialect == 0x0311 {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        let mut preauth = vec![1, 0, 32, 0, 1, 0];
        preauth.extend_from_slice(&salt);
        push_context(&mut contexts, 1, &preauth);
        count += 1;
        // AES-128-GCM, else AES-128-CCM, whichever the client offers.
        if let Some(c) = [2u16, 1].into_iter().find(|c| ciphers.contains(c)) {
            push_context(&mut contexts, 2, &[1, 0, c as u8, 0]);
            count += 1;
        }
    }
    let security_at = 64 + 64u16;
    let contexts_at = (security_at as usize + blob.len()).div_ceil(8) * 8;
    let capabilities: u32 = match dialect {
        0x0202 => 0x1,
        0x0210 | 0x02FF => 0x7,
        _ => 0x2f,
    };
    let mut b = Vec::new();
    b.extend_from_slice(&65u16.to_le_bytes());
    b.extend_from_slice(&security_mode(persona).to_le_bytes());
    b.extend_from_slice(&dialect.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&server_guid(decky));
    b.extend_from_slice(&capabilities.to_le_bytes());
    for _ in 0..3 {
        b.extend_from_slice(&8_388_608u32.to_le_bytes());
    }
    b.extend_from_slice(&filetime(time::OffsetDateTime::now_utc()).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // ServerStartTime: Windows sends 0
    b.extend_from_slice(&security_at.to_le_bytes());
    b.extend_from_slice(&(blob.len() as u16).to_le_bytes());
    b.extend_from_slice(&(if count > 0 { contexts_at as u32 } else { 0 }).to_le_bytes());
    b.extend_from_slice(&blob);
    if count > 0 {
        b.resize(contexts_at - 64, 0);
        b.extend_from_slice(&contexts);
    }
    b
}

fn push_context(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(data);
}

/// SESSION_SETUP response body with `flags` and a security `token`.
fn session_setup_body(flags: u16, token: &[u8]) -> Vec<u8> {
    let mut b = vec![9, 0];
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&72u16.to_le_bytes());
    b.extend_from_slice(&(token.len() as u16).to_le_bytes());
    b.extend_from_slice(token);
    b
}

/// Where one connection's logon stands.
#[derive(Default)]
struct State {
    dialect: Option<u16>,
    session_id: u64,
    challenge: Option<[u8; 8]>,
    anonymous: bool,
    ipc_tree: Option<u32>,
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (idle, ctx) = event::with(&session, |s| (s.limits().idle, s.context().clone()));
    let persona = ctx.persona.clone();
    let mut wire = Wire::new(io, idle);
    let mut state = State::default();
    for _ in 0..MAX_REQUESTS {
        let mut nb = [0u8; 4];
        if let Err(e) = wire.read_exact(&mut nb).await {
            return e;
        }
        if nb[0] != 0 {
            // A NetBIOS keepalive or session request: Windows on 445 only
            // speaks direct-hosted SMB and drops anything else.
            return End::Done;
        }
        let len = u32::from_be_bytes([0, nb[1], nb[2], nb[3]]) as usize;
        let msg = match wire.read_vec(len, MAX_FRAME).await {
            Ok(m) => m,
            Err(e) => return e,
        };
        if msg.starts_with(b"\xffSMB") {
            let Some(dialect) = smb1_upgrade(&msg).filter(|_| state.dialect.is_none()) else {
                event::with(&session, |s| s.command("SMB1 negotiate refused"));
                return End::Done;
            };
            let req = Header {
                command: NEGOTIATE,
                credits: 1,
                flags: 0,
                next: 0,
                message_id: 0,
                process_id: 0,
                tree_id: 0,
                session_id: 0,
            };
            let mut out = response_header(&req, STATUS_SUCCESS, 0, 0);
            out.extend(negotiate_response(&persona, &ctx.name, dialect, &[]));
            if let Err(e) = wire.send(&frame(&out)).await {
                return e;
            }
            continue;
        }
        // Compound requests are answered one by one (MS-SMB2 lets a
        // server send each response on its own).
        let mut at = 0usize;
        loop {
            let Some(part) = msg.get(at..) else { return End::Done };
            let Some(req) = parse_header(part) else { return End::Done };
            let end = if req.next == 0 { part.len() } else { (req.next as usize).min(part.len()) };
            let one = &part[..end];
            let reply = match handle(&session, &persona, &ctx.name, &mut state, &req, one) {
                Ok(r) => r,
                Err(e) => return e,
            };
            if let Err(e) = wire.send(&frame(&reply)).await {
                return e;
            }
            if req.next == 0 || req.next < 64 {
                break;
            }
            at += req.next as usize;
        }
    }
    End::Done
}

/// One request's response (header and body).
fn handle(
    session: &SharedSession,
    persona: &Persona,
    decky: &str,
    state: &mut State,
    req: &Header,
    msg: &[u8],
) -> Result<Vec<u8>, End> {
    let fail = |status: u32, st: &State| {
        let mut out = response_header(req, status, st.session_id, req.tree_id);
        out.extend(error_body());
        out
    };
    Ok(match req.command {
        NEGOTIATE => {
            let Some(offer) = parse_negotiate(msg) else { return Ok(fail(STATUS_INVALID_PARAMETER, state)) };
            let Some(dialect) = DIALECTS.iter().rev().copied().find(|d| offer.dialects.contains(d)) else {
                // STATUS_NOT_SUPPORTED, then Windows closes.
                return Err(End::Done);
            };
            state.dialect = Some(dialect);
            let mut out = response_header(req, STATUS_SUCCESS, 0, 0);
            out.extend(negotiate_response(persona, decky, dialect, &offer.ciphers));
            out
        }
        _ if state.dialect.is_none() => return Err(End::Done),
        SESSION_SETUP => {
            let Some(token) = session_setup_token(msg).and_then(ntlm::unwrap_gss) else {
                return Ok(fail(STATUS_INVALID_PARAMETER, state));
            };
            if let Some(flags) = ntlm::negotiate_flags(token) {
                let mut challenge = [0u8; 8];
                rand::rng().fill_bytes(&mut challenge);
                state.challenge = Some(challenge);
                state.session_id = rand::rng().next_u64() | 1;
                let ntlm_challenge = ntlm::challenge_message(persona, &challenge, flags);
                let mut out = response_header(req, STATUS_MORE_PROCESSING_REQUIRED, state.session_id, 0);
                out.extend(session_setup_body(0, &ntlm::spnego_resp(1, Some(&ntlm_challenge))));
                return Ok(out);
            }
            let (Some(challenge), Ok(auth)) = (state.challenge.take(), ntlm::parse_authenticate(token)) else {
                return Ok(fail(STATUS_INVALID_PARAMETER, state));
            };
            ntlm::record(session, &auth, &challenge);
            if auth.is_anonymous() {
                state.anonymous = true;
                let mut out = response_header(req, STATUS_SUCCESS, state.session_id, 0);
                // SMB2_SESSION_FLAG_IS_NULL.
                out.extend(session_setup_body(0x2, &ntlm::spnego_resp(0, None)));
                out
            } else {
                fail(STATUS_LOGON_FAILURE, state)
            }
        }
        _ if !state.anonymous || req.session_id != state.session_id => fail(STATUS_USER_SESSION_DELETED, state),
        TREE_CONNECT => {
            let path = body_string(msg, 4, 6).unwrap_or_default();
            event::with(session, |s| s.command(&format!("tree connect {path}")));
            let share = path.rsplit('\\').next().unwrap_or_default();
            if share.eq_ignore_ascii_case("IPC$") {
                let tree = 1;
                state.ipc_tree = Some(tree);
                let mut out = response_header(req, STATUS_SUCCESS, state.session_id, tree);
                // Pipe share, no caching, the access a null session gets.
                out.extend_from_slice(&[16, 0, 2, 0, 0x30, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&0x001f_00a9u32.to_le_bytes());
                out
            } else {
                fail(STATUS_ACCESS_DENIED, state)
            }
        }
        TREE_DISCONNECT | LOGOFF | ECHO => {
            if req.command == TREE_DISCONNECT {
                state.ipc_tree = None;
            }
            if req.command == LOGOFF {
                state.anonymous = false;
            }
            let mut out = response_header(req, STATUS_SUCCESS, state.session_id, req.tree_id);
            out.extend_from_slice(&[4, 0, 0, 0]);
            out
        }
        _ if state.ipc_tree != Some(req.tree_id) => fail(STATUS_NETWORK_NAME_DELETED, state),
        CREATE => {
            let name = body_string(msg, 44, 46).unwrap_or_default();
            event::with(session, |s| s.command(&format!("open pipe {name}")));
            fail(STATUS_ACCESS_DENIED, state)
        }
        _ => fail(STATUS_NOT_SUPPORTED, state),
    })
}

/// A NetBIOS session message around `msg`.
fn frame(msg: &[u8]) -> Vec<u8> {
    let len = msg.len() as u32;
    let mut out = len.to_be_bytes().to_vec();
    out[0] = 0;
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smb1_negotiate(dialects: &[&str]) -> Vec<u8> {
        let mut m = b"\xffSMB\x72".to_vec();
        m.resize(32, 0);
        let names: Vec<u8> = dialects.iter().flat_map(|d| [&[2u8][..], d.as_bytes(), &[0]].concat()).collect();
        m.push(0);
        m.extend_from_slice(&(names.len() as u16).to_le_bytes());
        m.extend(names);
        m
    }

    #[test]
    fn smb1_clients_are_upgraded_only_when_they_speak_smb2() {
        assert_eq!(smb1_upgrade(&smb1_negotiate(&["NT LM 0.12", "SMB 2.002", "SMB 2.???"])), Some(0x02FF));
        assert_eq!(smb1_upgrade(&smb1_negotiate(&["NT LM 0.12", "SMB 2.002"])), Some(0x0202));
        assert_eq!(smb1_upgrade(&smb1_negotiate(&["PC NETWORK PROGRAM 1.0", "NT LM 0.12"])), None);
        let whole = smb1_negotiate(&["SMB 2.???"]);
        for cut in 0..whole.len() {
            let _ = smb1_upgrade(&whole[..cut]);
        }
    }

    fn negotiate_request(dialects: &[u16], ciphers: &[u16]) -> Vec<u8> {
        let mut m = b"\xfeSMB".to_vec();
        m.resize(64, 0);
        let mut body = vec![0u8; 36];
        body[0] = 36;
        body[2..4].copy_from_slice(&(dialects.len() as u16).to_le_bytes());
        for d in dialects {
            body.extend_from_slice(&d.to_le_bytes());
        }
        if !ciphers.is_empty() {
            while !(64 + body.len()).is_multiple_of(8) {
                body.push(0);
            }
            let at = (64 + body.len()) as u32;
            body[28..32].copy_from_slice(&at.to_le_bytes());
            body[32..34].copy_from_slice(&1u16.to_le_bytes());
            let mut data = (ciphers.len() as u16).to_le_bytes().to_vec();
            ciphers.iter().for_each(|c| data.extend_from_slice(&c.to_le_bytes()));
            body.extend_from_slice(&2u16.to_le_bytes());
            body.extend_from_slice(&(data.len() as u16).to_le_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend(data);
        }
        m.extend(body);
        m
    }

    #[test]
    fn negotiate_offers_parse_and_hostile_counts_stay_in_bounds() {
        let req = negotiate_request(&[0x0202, 0x0311], &[1, 2]);
        let offer = parse_negotiate(&req).unwrap();
        assert_eq!(offer.dialects, vec![0x0202, 0x0311]);
        assert_eq!(offer.ciphers, vec![1, 2]);
        let mut lying = req.clone();
        lying[66..68].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(parse_negotiate(&lying), None);
        let mut far = req.clone();
        far[64 + 28..64 + 32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_negotiate(&far).unwrap().ciphers, Vec::<u16>::new());
        for cut in 0..req.len() {
            let _ = parse_negotiate(&req[..cut]);
            let _ = session_setup_token(&req[..cut]);
            let _ = parse_header(&req[..cut]);
        }
    }

    #[test]
    fn the_negotiate_response_carries_the_persona_signing_policy_and_311_contexts() {
        let dc = Persona::derive("dc-01", Some("windows-server"), None, 1_764_000_000);
        let ws = Persona::derive("ws-01", Some("windows-workstation"), None, 1_764_000_000);
        let r = negotiate_response(&dc, "dc-01", 0x0311, &[1, 2]);
        assert_eq!(u16::from_le_bytes([r[2], r[3]]), 0x03, "a DC requires signing");
        assert_eq!(u16::from_le_bytes([r[4], r[5]]), 0x0311);
        assert_eq!(u16::from_le_bytes([r[6], r[7]]), 2, "preauth and encryption contexts");
        assert_eq!(&r[8..24], &server_guid("dc-01"));
        assert_ne!(server_guid("dc-01"), server_guid("dc-02"));
        let contexts_at = u32::from_le_bytes(r[60..64].try_into().unwrap()) as usize;
        assert_eq!(contexts_at % 8, 0);
        assert_eq!(&r[contexts_at - 64..contexts_at - 64 + 2], &[1, 0]);
        let w = negotiate_response(&ws, "ws-01", 0x02FF, &[]);
        assert_eq!(u16::from_le_bytes([w[2], w[3]]), 0x01);
        assert_eq!(u16::from_le_bytes([w[6], w[7]]), 0);
    }
}
