//! Microsoft SQL Server honeypot (TDS): PRELOGIN answered with the
//! persona's SQL Server build, LOGIN7 read with its password decoded,
//! then the login refused as the real server refuses a wrong password.
//!
//! Encryption: the PRELOGIN answer says `ENCRYPT_NOT_SUP`, what a server
//! without TLS support answers, so a client that does not insist sends
//! LOGIN7 in clear (a real SQL Server always has at least a self-signed
//! certificate and would wrap the login in TLS; decnet does not, to read
//! it). A client that requires encryption ends the connection itself.
//!
//! LOGIN7's password is only obfuscated (each byte XOR 0xA5 with its
//! nibbles swapped), so it is recorded in clear as `secret_b64` with the
//! client's host name, program and database. The answer is the ERROR
//! token 18456 (state 1, class 14) `Login failed for user 'x'.` and a
//! DONE with the error bit, and the connection closes: there is no
//! LOGINACK, nobody gets in. An integrated (SSPI) login gets error 18452.
//!
//! Builds: SQL Server 2019 (15.0, CU28) where Microsoft ships it —
//! Windows, and Ubuntu's `mssql-server` packages —, SQL Server 2017 on
//! CentOS 7 (its last supported RHEL 7 release). nmap -sV reads the
//! PRELOGIN version and names the product from it.

use tokio::net::TcpStream;

use super::frames::Frames;
use crate::event::{self, SharedSession};
use crate::io::{End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// Largest TDS packet accepted (the default negotiated size is 4096; a
/// LOGIN7 fits in one).
pub const MAX_PACKET: usize = 8 * 1024;
/// Largest message (packets joined until end-of-message) accepted.
pub const MAX_MESSAGE: usize = 32 * 1024;

const PRELOGIN: u8 = 0x12;
const LOGIN7: u8 = 0x10;
const TABULAR_RESULT: u8 = 0x04;
const ENCRYPT_NOT_SUP: u8 = 0x02;

/// The `mssql` entry of [`super::REGISTRY`].
pub struct Mssql;

impl super::Protocol for Mssql {
    fn name(&self) -> &'static str {
        "mssql"
    }
    fn default_port(&self) -> u16 {
        1433
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// A SQL Server build: major, minor, build, sub-build.
pub type Build = (u8, u8, u16, u16);

fn derived_version(p: &Persona) -> String {
    match p.release.as_str() {
        "centos-7" => "14.0.3456.2",
        _ => "15.0.4385.2",
    }
    .to_string()
}

/// The persona's SQL Server build (a fleet override `versions.mssql` is
/// read as `major.minor.build.subbuild`).
pub fn build(persona: &Persona) -> Build {
    let v = persona.version_of("mssql", derived_version);
    let n: Vec<u32> = v.split('.').map(|p| p.trim().parse().unwrap_or(0)).collect();
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    (at(0).min(255) as u8, at(1).min(255) as u8, at(2).min(65535) as u16, at(3).min(65535) as u16)
}

/// The server name the errors carry: Windows names are upper case.
fn server_name(persona: &Persona) -> String {
    if persona.family == OsFamily::Windows {
        persona.hostname.to_uppercase()
    } else {
        persona.hostname.clone()
    }
}

/// The PRELOGIN option tokens the client sent (type, data), bounds checked.
pub fn parse_prelogin(payload: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut options = Vec::new();
    let mut at = 0;
    loop {
        let kind = *payload.get(at)?;
        if kind == 0xff {
            return Some(options);
        }
        let header = payload.get(at + 1..at + 5)?;
        let offset = u16::from_be_bytes([header[0], header[1]]) as usize;
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let data = payload.get(offset..offset.checked_add(len)?)?;
        if options.len() >= 16 {
            return None;
        }
        options.push((kind, data.to_vec()));
        at += 5;
    }
}

/// The PRELOGIN answer: the options a server returns, in its order
/// (MARS only when the client asked about it, as SQL Server does).
pub fn prelogin_answer(build: Build, client: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let (major, minor, number, sub) = build;
    let mut version = vec![major, minor];
    version.extend_from_slice(&number.to_be_bytes());
    version.extend_from_slice(&sub.to_be_bytes());
    let mut options: Vec<(u8, Vec<u8>)> = vec![(0, version), (1, vec![ENCRYPT_NOT_SUP]), (2, vec![0]), (3, vec![])];
    if client.iter().any(|(k, _)| *k == 4) {
        options.push((4, vec![0]));
    }
    let mut header = Vec::new();
    let mut data = Vec::new();
    let base = options.len() * 5 + 1;
    for (kind, value) in &options {
        header.push(*kind);
        header.extend_from_slice(&((base + data.len()) as u16).to_be_bytes());
        header.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    header.push(0xff);
    header.extend(data);
    header
}

/// What a LOGIN7 reveals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Login7 {
    pub tds_version: u32,
    pub host: String,
    pub user: String,
    pub password: Vec<u8>,
    pub app: String,
    pub server: String,
    pub library: String,
    pub database: String,
    /// Bytes of integrated (SSPI) authentication data.
    pub sspi: usize,
}

/// Undo LOGIN7's password obfuscation: XOR 0xA5, then swap the nibbles.
pub fn deobfuscate(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xa5).rotate_left(4)).collect()
}

/// UTF-16LE to text (unpaired surrogates replaced), control characters escaped.
fn ucs2(bytes: &[u8], max: usize) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let s: String = char::decode_utf16(units).map(|c| c.unwrap_or('\u{fffd}')).collect();
    crate::io::printable(s.as_bytes()).chars().take(max).collect()
}

/// Parse a LOGIN7 message. Every offset and length is checked against
/// the message before it is used.
pub fn parse_login7(m: &[u8]) -> Option<Login7> {
    if m.len() < 94 {
        return None;
    }
    let u16_at = |i: usize| u16::from_le_bytes([m[i], m[i + 1]]) as usize;
    let field = |i: usize| -> Option<&[u8]> {
        let (offset, chars) = (u16_at(i), u16_at(i + 2));
        m.get(offset..offset.checked_add(chars * 2)?)
    };
    let password = field(44)?;
    let decoded = deobfuscate(password);
    let password = String::from_utf16_lossy(
        &decoded.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(),
    )
    .into_bytes();
    Some(Login7 {
        tds_version: u32::from_le_bytes(m[4..8].try_into().ok()?),
        host: ucs2(field(36)?, 128),
        user: ucs2(field(40)?, 128),
        password,
        app: ucs2(field(48)?, 128),
        server: ucs2(field(52)?, 128),
        library: ucs2(field(60)?, 128),
        database: ucs2(field(68)?, 128),
        sspi: u16_at(80),
    })
}

/// A TDS packet (one, end-of-message) of `kind`.
fn packet(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 0x01];
    out.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 1, 0]);
    out.extend_from_slice(payload);
    out
}

fn ucs2_of(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// ERROR token then DONE (error bit), framed for the client's TDS version.
pub fn login_failed(number: i32, message: &str, server: &str, tds_version: u32) -> Vec<u8> {
    let modern = tds_version >= 0x7209_0002;
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(1); // state
    body.push(14); // class
    let text: Vec<u16> = message.encode_utf16().collect();
    body.extend_from_slice(&(text.len() as u16).to_le_bytes());
    body.extend(ucs2_of(message));
    let name: Vec<u16> = server.encode_utf16().take(128).collect();
    body.push(name.len() as u8);
    body.extend(name.iter().flat_map(|u| u.to_le_bytes()));
    body.push(0); // no procedure
    if modern {
        body.extend_from_slice(&1i32.to_le_bytes());
    } else {
        body.extend_from_slice(&1u16.to_le_bytes());
    }
    let mut out = vec![0xaa];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend(body);
    out.push(0xfd);
    out.extend_from_slice(&2u16.to_le_bytes()); // DONE_ERROR
    out.extend_from_slice(&0u16.to_le_bytes());
    if modern {
        out.extend_from_slice(&0u64.to_le_bytes());
    } else {
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    out
}

/// The next message: packets of one type joined until end-of-message.
async fn read_message(frames: &mut Frames<TcpStream>) -> Result<(u8, Vec<u8>), End> {
    let mut message = Vec::new();
    loop {
        let mut header = [0u8; 8];
        frames.read_exact(&mut header).await?;
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        if !(8..=MAX_PACKET).contains(&len) || message.len() + len > MAX_MESSAGE {
            return Err(End::LineTooLong);
        }
        message.extend(frames.read_vec(len - 8).await?);
        if header[1] & 0x01 != 0 {
            return Ok((header[0], message));
        }
    }
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let persona = ctx.persona.clone();
    let mut frames = Frames::new(io, limits.idle);
    let mut prelogins = 0;
    loop {
        let (kind, message) = match read_message(&mut frames).await {
            Ok(m) => m,
            Err(e) => return e,
        };
        match kind {
            PRELOGIN if prelogins == 0 => {
                prelogins += 1;
                // A PRELOGIN that does not parse closes, as SQL Server does.
                let Some(options) = parse_prelogin(&message) else { return End::Done };
                let answer = packet(TABULAR_RESULT, &prelogin_answer(build(&persona), &options));
                if let Err(e) = frames.send(&answer).await {
                    return e;
                }
            }
            LOGIN7 => {
                let Some(login) = parse_login7(&message) else { return End::Done };
                let server = server_name(&persona);
                let mut extra = vec![
                    ("client_host", login.host.clone()),
                    ("client", login.app.clone()),
                    ("library", login.library.clone()),
                ];
                if !login.database.is_empty() {
                    extra.push(("database", login.database.clone()));
                }
                let reply = if login.sspi > 0 && login.user.is_empty() {
                    event::with(&session, |s| s.command(&format!("integrated login from {}", login.host)));
                    let text = "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication.";
                    login_failed(18452, text, &server, login.tds_version)
                } else {
                    event::with(&session, |s| s.login_attempt(&login.user, &login.password, "password", extra));
                    let text = format!("Login failed for user '{}'.", login.user);
                    login_failed(18456, &text, &server, login.tds_version)
                };
                let _ = frames.send(&packet(TABULAR_RESULT, &reply)).await;
                return End::Done;
            }
            // Anything else before a login: the server drops the connection.
            _ => return End::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nmap's ms-sql-s probe (nmap-service-probes), a PRELOGIN.
    const NMAP_PROBE: &[u8] = b"\x12\x01\x00\x34\x00\x00\x00\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x0c\x03\x00\x28\x00\x04\xff\x08\x00\x01\x55\x00\x00\x00\x4d\x53\x53\x51\x4c\x53\x65\x72\x76\x65\x72\x00\x48\x0f\x00\x00";

    #[test]
    fn nmaps_probe_gets_the_answer_its_2019_signature_expects() {
        let options = parse_prelogin(&NMAP_PROBE[8..]).unwrap();
        assert_eq!(options.len(), 4);
        let answer = packet(TABULAR_RESULT, &prelogin_answer((15, 0, 4385, 2), &options));
        // nmap-service-probes: `^\x04\x01\x00\x25\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01
        // \x02\x00\x1c\x00\x01\x03\x00\x1d\x00\x00\xff\x0f\x00(..)` → SQL Server 2019, 15.00.<build>.
        let expected = b"\x04\x01\x00\x25\x00\x00\x01\x00\x00\x00\x15\x00\x06\x01\x00\x1b\x00\x01\x02\x00\x1c\x00\x01\x03\x00\x1d\x00\x00\xff\x0f\x00";
        assert_eq!(&answer[..expected.len()], expected);
        assert_eq!(u16::from_be_bytes([answer[expected.len()], answer[expected.len() + 1]]), 4385);
        assert_eq!(answer.len(), 0x25);
    }

    #[test]
    fn prelogin_with_lying_offsets_or_no_terminator_is_refused() {
        assert_eq!(parse_prelogin(b""), None);
        assert_eq!(parse_prelogin(b"\x00\x00\x06\x00\x06"), None, "no terminator, data past the end");
        assert_eq!(parse_prelogin(b"\x00\xff\xff\xff\xff\xff"), None, "offset past the end");
        assert_eq!(parse_prelogin(b"\xff"), Some(vec![]));
        let mut many = vec![];
        for _ in 0..20 {
            many.extend_from_slice(b"\x01\x00\x00\x00\x00");
        }
        many.push(0xff);
        assert_eq!(parse_prelogin(&many), None, "options are capped");
    }

    /// A LOGIN7 as clients build it (fields in the usual order).
    fn login7(user: &str, password: &str) -> Vec<u8> {
        let fields = ["kali", user, password, "sqlmap", "10.0.0.5", "", "ODBC", "", "master"];
        let mut data = Vec::new();
        let mut header = vec![0u8; 94];
        header[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        for (i, f) in fields.iter().enumerate() {
            let mut bytes = ucs2_of(f);
            if i == 2 {
                bytes = bytes.iter().map(|b| b.rotate_left(4) ^ 0xa5).collect();
            }
            let at = 36 + i * 4;
            header[at..at + 2].copy_from_slice(&((94 + data.len()) as u16).to_le_bytes());
            header[at + 2..at + 4].copy_from_slice(&(f.encode_utf16().count() as u16).to_le_bytes());
            data.extend(bytes);
        }
        let total = header.len() + data.len();
        header[0..4].copy_from_slice(&(total as u32).to_le_bytes());
        header.extend(data);
        header
    }

    #[test]
    fn the_obfuscated_password_is_recovered() {
        let login = parse_login7(&login7("sa", "P@ssw0rd!é")).unwrap();
        assert_eq!(login.user, "sa");
        assert_eq!(String::from_utf8(login.password).unwrap(), "P@ssw0rd!é");
        assert_eq!((login.host.as_str(), login.app.as_str(), login.database.as_str()), ("kali", "sqlmap", "master"));
        // 'a' (0x61) is stored as 0xB3 and a NUL byte as 0xA5.
        assert_eq!(deobfuscate(&[0xb3, 0xa5]), vec![0x61, 0x00]);
    }

    #[test]
    fn truncated_and_lying_logins_are_refused() {
        let full = login7("sa", "x");
        for cut in 0..full.len() {
            let parsed = parse_login7(&full[..cut]);
            assert!(parsed.is_none() || cut >= 94, "{cut}");
        }
        let mut lying = full.clone();
        lying[44..46].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(parse_login7(&lying), None, "password offset past the end");
        let mut long = full.clone();
        long[46..48].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(parse_login7(&long), None, "password length past the end");
    }

    #[test]
    fn the_failure_is_token_18456_then_done() {
        let reply = login_failed(18456, "Login failed for user 'sa'.", "WIN-SQL01", 0x7400_0004);
        assert_eq!(reply[0], 0xaa);
        let len = u16::from_le_bytes([reply[1], reply[2]]) as usize;
        assert_eq!(i32::from_le_bytes(reply[3..7].try_into().unwrap()), 18456);
        assert_eq!((reply[7], reply[8]), (1, 14));
        let done = &reply[3 + len..];
        assert_eq!(done[0], 0xfd);
        assert_eq!(done.len(), 1 + 2 + 2 + 8);
        // Before TDS 7.2 the line number is 2 bytes and the row count 4.
        let old = login_failed(18456, "Login failed for user 'sa'.", "WIN-SQL01", 0x7100_0001);
        assert_eq!(old.len(), reply.len() - 6);
    }

    #[test]
    fn builds_follow_the_release_and_overrides() {
        let p = Persona::derive("sql-01", Some("windows-server"), None, 1_764_000_000);
        assert_eq!(build(&p).0, 15);
        let mut c = p.with_overrides(&serde_json::json!({"release": "centos-7"})).unwrap();
        assert_eq!(build(&c), (14, 0, 3456, 2));
        c.versions.insert("mssql".into(), "16.0.4135.4".into());
        assert_eq!(build(&c), (16, 0, 4135, 4));
        c.versions.insert("mssql".into(), "garbage".into());
        assert_eq!(build(&c), (0, 0, 0, 0));
    }
}
