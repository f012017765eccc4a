//! NTLMSSP as a Windows host answers it (MS-NLMP), shared by smb and rdp:
//! the CHALLENGE a Windows 10 / Server 2019 sends (a random server
//! challenge, the persona's NetBIOS and DNS names in the target info, its
//! build in the version field), the client's AUTHENTICATE parsed apart,
//! and its response recorded as the crackable line hashcat takes (mode
//! 5600 for NetNTLMv2, 5500 for NetNTLMv1). Also the SPNEGO (RFC 4178)
//! wrapping SMB puts around it.
//!
//! No password is ever checked: the decky cannot know one, and Windows
//! answers a wrong one with STATUS_LOGON_FAILURE, which is what the
//! callers send.

use super::ber::{self, Reader};
use super::wire::{filetime, from_utf16le, hex, utf16le};
use crate::event::{self, SharedSession};
use crate::rfc5424::Severity;
use crate::Persona;

pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_SIGN: u32 = 0x0000_0010;
const NEGOTIATE_SEAL: u32 = 0x0000_0020;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;

/// Longest user, domain or workstation name kept (characters).
const MAX_NAME: usize = 256;
/// Longest NT response kept (a NetNTLMv2 blob is ~100-300 bytes; the
/// message itself is bounded by its frame).
const MAX_RESPONSE: usize = 4096;

/// The SPNEGO OID and NTLMSSP's mechanism OID (1.3.6.1.5.5.2, 1.3.6.1.4.1.311.2.2.10).
const SPNEGO_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
const NTLMSSP_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];

/// The names a Windows host reports in its CHALLENGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub nb_domain: String,
    pub nb_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
}

impl Names {
    /// The persona as a member of its domain: the NetBIOS names are the
    /// first label upper-cased and cut to 15 characters, as Windows setup
    /// makes them.
    pub fn of(persona: &Persona) -> Names {
        let netbios = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_uppercase().chars().take(15).collect();
        Names {
            nb_domain: netbios(&persona.domain),
            nb_computer: netbios(&persona.hostname),
            dns_domain: persona.domain.to_ascii_lowercase(),
            dns_computer: persona.fqdn().to_ascii_lowercase(),
        }
    }
}

/// The Windows build a persona runs (`10.0.17763` → 10, 0, 17763).
pub fn build_of(persona: &Persona) -> (u8, u8, u16) {
    let mut parts = persona.version_id.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(10).min(255) as u8;
    let minor = parts.next().unwrap_or(0).min(255) as u8;
    let build = parts.next().unwrap_or(17763).min(65535) as u16;
    (major, minor, build)
}

/// The flags of a client's NEGOTIATE (0 when `msg` is none).
pub fn negotiate_flags(msg: &[u8]) -> Option<u32> {
    if msg.len() < 16 || &msg[..8] != SIGNATURE || msg[8..12] != 1u32.to_le_bytes() {
        return None;
    }
    Some(u32::from_le_bytes([msg[12], msg[13], msg[14], msg[15]]))
}

/// A CHALLENGE message answering a NEGOTIATE with `client_flags`.
pub fn challenge_message(persona: &Persona, server_challenge: &[u8; 8], client_flags: u32) -> Vec<u8> {
    let names = Names::of(persona);
    // Windows grants what it supports of what the client asked, and
    // always the flags of its own answer (target info, version, domain).
    let requested = client_flags & (NEGOTIATE_SIGN | NEGOTIATE_SEAL | NEGOTIATE_128 | NEGOTIATE_56 | KEY_EXCH);
    let flags = NEGOTIATE_UNICODE
        | REQUEST_TARGET
        | NEGOTIATE_NTLM
        | ALWAYS_SIGN
        | TARGET_TYPE_DOMAIN
        | EXTENDED_SESSIONSECURITY
        | NEGOTIATE_TARGET_INFO
        | NEGOTIATE_VERSION
        | requested;
    let target_name = utf16le(&names.nb_domain);
    let mut info = Vec::new();
    let mut av = |id: u16, value: &[u8]| {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(value);
    };
    // The order Windows writes them in.
    av(2, &utf16le(&names.nb_domain));
    av(1, &utf16le(&names.nb_computer));
    av(4, &utf16le(&names.dns_domain));
    av(3, &utf16le(&names.dns_computer));
    av(5, &utf16le(&names.dns_domain));
    av(7, &filetime(time::OffsetDateTime::now_utc()).to_le_bytes());
    av(0, &[]);
    let (major, minor, build) = build_of(persona);
    let payload_at = 56u32;
    let mut m = Vec::with_capacity(56 + target_name.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&payload_at.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(server_challenge);
    m.extend_from_slice(&[0u8; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(payload_at + target_name.len() as u32).to_le_bytes());
    m.extend_from_slice(&[major, minor]);
    m.extend_from_slice(&build.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 15]);
    m.extend_from_slice(&target_name);
    m.extend_from_slice(&info);
    m
}

/// What an AUTHENTICATE message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub lm_response: Vec<u8>,
    pub nt_response: Vec<u8>,
}

/// Why bytes are not an AUTHENTICATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    #[error("not an NTLMSSP AUTHENTICATE message")]
    NotAuthenticate,
    #[error("a field points outside the message")]
    Field,
}

/// The payload field whose (length, offset) header is at `at`.
fn field(msg: &[u8], at: usize) -> Result<&[u8], NtlmError> {
    let h = msg.get(at..at + 8).ok_or(NtlmError::Field)?;
    let len = u16::from_le_bytes([h[0], h[1]]) as usize;
    let offset = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    msg.get(offset..offset.checked_add(len).ok_or(NtlmError::Field)?).ok_or(NtlmError::Field)
}

pub fn parse_authenticate(msg: &[u8]) -> Result<Authenticate, NtlmError> {
    if msg.len() < 64 || &msg[..8] != SIGNATURE || msg[8..12] != 3u32.to_le_bytes() {
        return Err(NtlmError::NotAuthenticate);
    }
    let flags = u32::from_le_bytes([msg[60], msg[61], msg[62], msg[63]]);
    let text = |b: &[u8]| {
        if flags & NEGOTIATE_UNICODE != 0 {
            from_utf16le(b, MAX_NAME)
        } else {
            String::from_utf8_lossy(b).chars().take(MAX_NAME).collect()
        }
    };
    let nt = field(msg, 20)?;
    Ok(Authenticate {
        lm_response: field(msg, 12)?.to_vec(),
        nt_response: nt[..nt.len().min(MAX_RESPONSE)].to_vec(),
        domain: text(field(msg, 28)?),
        user: text(field(msg, 36)?),
        workstation: text(field(msg, 44)?),
    })
}

impl Authenticate {
    /// The anonymous (null session) logon: no user, no NT response.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_empty() && self.nt_response.is_empty()
    }

    /// The crackable line and its type: NetNTLMv2 as hashcat's mode 5600
    /// (`user::domain:challenge:ntproofstr:blob`), NetNTLMv1 as mode 5500
    /// (`user::domain:lm:nt:challenge`); none for an anonymous logon.
    pub fn hash(&self, server_challenge: &[u8; 8]) -> Option<(String, &'static str)> {
        let (user, domain) = (&self.user, &self.domain);
        match self.nt_response.len() {
            0 => None,
            24 => Some((
                format!(
                    "{user}::{domain}:{}:{}:{}",
                    hex(&self.lm_response),
                    hex(&self.nt_response),
                    hex(server_challenge)
                ),
                "netntlmv1",
            )),
            n if n > 24 => Some((
                format!(
                    "{user}::{domain}:{}:{}:{}",
                    hex(server_challenge),
                    hex(&self.nt_response[..16]),
                    hex(&self.nt_response[16..])
                ),
                "netntlmv2",
            )),
            _ => None,
        }
    }
}

/// Log the logon: a `login_attempt` with the crackable `hash` (or, for an
/// anonymous one, without a secret), the domain and workstation.
pub fn record(session: &SharedSession, auth: &Authenticate, server_challenge: &[u8; 8]) {
    event::with(session, |s| {
        let mut fields = vec![
            ("username", auth.user.clone()),
            ("domain", auth.domain.clone()),
            ("workstation", auth.workstation.clone()),
        ];
        match auth.hash(server_challenge) {
            Some((hash, kind)) => {
                fields.push(("hash", hash));
                fields.push(("hash_type", kind.to_string()));
                fields.push(("auth_method", "ntlm".to_string()));
            }
            None => fields.push(("auth_method", "ntlm-anonymous".to_string())),
        }
        s.username = Some(auth.user.clone());
        let msg = format!("ntlm login attempt for {}\\{}", auth.domain, auth.user);
        s.emit("login_attempt", Severity::Notice, fields, Some(msg));
    });
}

/// The NTLMSSP message inside a GSS token: the token itself when it is
/// raw NTLMSSP, else the mechToken of a SPNEGO negTokenInit or the
/// responseToken of a negTokenResp.
pub fn unwrap_gss(token: &[u8]) -> Option<&[u8]> {
    if token.starts_with(SIGNATURE) {
        return Some(token);
    }
    let mut outer = Reader::new(token);
    match outer.peek_tag()? {
        // [APPLICATION 0] { OID spnego, [0] NegTokenInit { …, [2] mechToken } }
        0x60 => {
            let mut app = Reader::new(outer.expect(0x60).ok()?);
            if app.expect(0x06).ok()? != SPNEGO_OID {
                return None;
            }
            let init = Reader::new(app.expect(0xa0).ok()?).expect(0x30).ok()?;
            find_context(init, 0xa2)
        }
        // [1] NegTokenResp { …, [2] responseToken }
        0xa1 => find_context(Reader::new(outer.expect(0xa1).ok()?).expect(0x30).ok()?, 0xa2),
        _ => None,
    }
}

/// The OCTET STRING inside context tag `want` of a SEQUENCE's contents.
fn find_context(seq: &[u8], want: u8) -> Option<&[u8]> {
    let mut r = Reader::new(seq);
    while !r.is_empty() {
        let (tag, contents) = r.element().ok()?;
        if tag == want {
            return Reader::new(contents).expect(0x04).ok();
        }
    }
    None
}

/// The SPNEGO negTokenInit2 a Windows SMB server puts in its NEGOTIATE
/// response: the mechanisms it offers (NTLMSSP; Kerberos is not offered,
/// as by a host that is reached by address) and the fixed hint string.
pub fn spnego_init() -> Vec<u8> {
    let mech_types = ber::tlv(0x30, &ber::tlv(0x06, NTLMSSP_OID));
    let hint = ber::tlv(0x1b, b"not_defined_in_RFC4178@please_ignore");
    let hints = ber::tlv(0xa3, &ber::tlv(0x30, &ber::tlv(0xa0, &hint)));
    let mut init = ber::tlv(0xa0, &mech_types);
    init.extend_from_slice(&hints);
    let mut app = ber::tlv(0x06, SPNEGO_OID);
    app.extend_from_slice(&ber::tlv(0xa0, &ber::tlv(0x30, &init)));
    ber::tlv(0x60, &app)
}

/// A SPNEGO negTokenResp: `state` (0 accept-completed, 1 accept-incomplete,
/// 2 reject), NTLMSSP as the chosen mechanism when a token is sent.
pub fn spnego_resp(state: u8, token: Option<&[u8]>) -> Vec<u8> {
    let mut seq = ber::tlv(0xa0, &ber::tlv(0x0a, &[state]));
    if let Some(token) = token {
        seq.extend_from_slice(&ber::tlv(0xa1, &ber::tlv(0x06, NTLMSSP_OID)));
        seq.extend_from_slice(&ber::tlv(0xa2, &ber::tlv(0x04, token)));
    }
    ber::tlv(0xa1, &ber::tlv(0x30, &seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona() -> Persona {
        let mut p = Persona::derive("fs-01", Some("windows-server"), None, 1_764_000_000);
        p.domain = "corp.internal".into();
        p
    }

    /// An AUTHENTICATE as a client builds it (payload after a 72-byte header).
    fn authenticate(user: &str, domain: &str, ws: &str, lm: &[u8], nt: &[u8]) -> Vec<u8> {
        let fields: Vec<Vec<u8>> = vec![lm.to_vec(), nt.to_vec(), utf16le(domain), utf16le(user), utf16le(ws), vec![]];
        let mut header = Vec::from(&SIGNATURE[..]);
        header.extend_from_slice(&3u32.to_le_bytes());
        let mut payload = Vec::new();
        let mut at = 72u32;
        for f in &fields {
            header.extend_from_slice(&(f.len() as u16).to_le_bytes());
            header.extend_from_slice(&(f.len() as u16).to_le_bytes());
            header.extend_from_slice(&at.to_le_bytes());
            payload.extend_from_slice(f);
            at += f.len() as u32;
        }
        header.extend_from_slice(&(NEGOTIATE_UNICODE | EXTENDED_SESSIONSECURITY).to_le_bytes());
        header.extend_from_slice(&[0u8; 8]);
        header.extend_from_slice(&payload);
        header
    }

    #[test]
    fn the_challenge_names_the_persona_and_carries_the_build_and_the_challenge() {
        let p = persona();
        let m = challenge_message(&p, &[1, 2, 3, 4, 5, 6, 7, 8], NEGOTIATE_SIGN | KEY_EXCH);
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(&m[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let flags = u32::from_le_bytes(m[20..24].try_into().unwrap());
        assert_ne!(flags & NEGOTIATE_SIGN, 0, "requested flags are granted");
        assert_ne!(flags & KEY_EXCH, 0);
        assert_eq!(flags & NEGOTIATE_SEAL, 0, "unrequested ones are not");
        assert_eq!(&m[48..52], &[10, 0, 0x63, 0x45], "10.0.17763");
        let info = field(&m, 40).unwrap();
        assert!(hex(info).contains(&hex(&utf16le("fs-01.corp.internal"))));
        assert!(hex(info).contains(&hex(&utf16le("FS-01"))));
        assert_eq!(from_utf16le(field(&m, 12).unwrap(), 64), "CORP");
    }

    #[test]
    fn authenticate_parses_and_makes_hashcat_lines() {
        let nt: Vec<u8> = (0..60).collect();
        let a = parse_authenticate(&authenticate("alice", "CORP", "WS1", &[0; 24], &nt)).unwrap();
        assert_eq!((a.user.as_str(), a.domain.as_str(), a.workstation.as_str()), ("alice", "CORP", "WS1"));
        let (line, kind) = a.hash(&[0x11; 8]).unwrap();
        assert_eq!(kind, "netntlmv2");
        assert_eq!(line, format!("alice::CORP:1111111111111111:{}:{}", hex(&nt[..16]), hex(&nt[16..])));
        let v1 = parse_authenticate(&authenticate("bob", "", "", &[0xaa; 24], &[0xbb; 24])).unwrap();
        assert_eq!(
            v1.hash(&[0; 8]).unwrap(),
            (format!("bob:::{}:{}:{}", "aa".repeat(24), "bb".repeat(24), "00".repeat(8)), "netntlmv1")
        );
        let anon = parse_authenticate(&authenticate("", "", "", &[0], &[])).unwrap();
        assert!(anon.is_anonymous() && anon.hash(&[0; 8]).is_none());
    }

    #[test]
    fn a_hostile_authenticate_is_refused_without_panicking() {
        let good = authenticate("alice", "CORP", "WS1", &[0; 24], &[1; 40]);
        assert_eq!(parse_authenticate(&good[..40]), Err(NtlmError::NotAuthenticate));
        assert_eq!(parse_authenticate(b"NTLMSSP\0\x01\0\0\0"), Err(NtlmError::NotAuthenticate));
        let mut far = good.clone();
        far[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_authenticate(&far), Err(NtlmError::Field));
        let mut long = good.clone();
        long[20..22].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(parse_authenticate(&long), Err(NtlmError::Field));
        for cut in 0..good.len() {
            let _ = parse_authenticate(&good[..cut]);
            let _ = unwrap_gss(&good[..cut]);
        }
    }

    #[test]
    fn spnego_wrapping_round_trips_through_unwrap() {
        let ntlm = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2".to_vec();
        assert_eq!(unwrap_gss(&ntlm), Some(&ntlm[..]));
        assert_eq!(unwrap_gss(&spnego_resp(1, Some(&ntlm))), Some(&ntlm[..]));
        assert_eq!(unwrap_gss(&spnego_resp(0, None)), None);
        // A client's negTokenInit: mechTypes then mechToken.
        let mut init = ber::tlv(0xa0, &ber::tlv(0x30, &ber::tlv(0x06, NTLMSSP_OID)));
        init.extend_from_slice(&ber::tlv(0xa2, &ber::tlv(0x04, &ntlm)));
        let mut app = ber::tlv(0x06, SPNEGO_OID);
        app.extend_from_slice(&ber::tlv(0xa0, &ber::tlv(0x30, &init)));
        assert_eq!(unwrap_gss(&ber::tlv(0x60, &app)), Some(&ntlm[..]));
        assert_eq!(negotiate_flags(&ntlm), Some(0xa208_8207));
        assert!(unwrap_gss(&spnego_init()).is_none(), "the server's offer carries no token");
    }
}
