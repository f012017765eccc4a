//! PostgreSQL honeypot: the persona's PostgreSQL as its release packages
//! it, up to the password check, which always fails.
//!
//! SSLRequest and GSSENCRequest are answered `N` (no TLS, no GSSAPI), as
//! by a server without `ssl = on`; the StartupMessage's `user`,
//! `database` and `application_name` are recorded as a `command`. Then
//! the authentication the release's `pg_hba.conf` configures for TCP
//! clients: SCRAM-SHA-256 from PostgreSQL 14 (Debian/Ubuntu's
//! postgresql-common writes `scram-sha-256` there), md5 before (CentOS
//! 7's `ident` default is taken to have been changed to md5, as any
//! admin who opens port 5432 does). A fleet file can set
//! `versions.postgres-auth` to `password`, `md5` or `scram-sha-256`.
//!
//! What each exchange records (`login_attempt`):
//! - cleartext: the password (`secret_b64`);
//! - md5: `$postgres$<user>*<salt hex>*<md5 hex>`, hash_type
//!   `postgres-md5` (hashcat mode 11100, john's `postgres` format);
//! - SCRAM-SHA-256: `$scram-sha-256$<iterations>$<salt b64>$<AuthMessage
//!   b64>$<ClientProof b64>`, hash_type `postgres-scram`. No cracker mode
//!   takes a wire exchange (hashcat 28600 wants the stored verifier, which
//!   needs the server key), so the line holds everything a candidate
//!   password is checked with: SaltedPassword = PBKDF2-SHA256(password,
//!   salt, i); ClientKey = HMAC(SaltedPassword, "Client Key"); the proof
//!   is ClientKey XOR HMAC(SHA256(ClientKey), AuthMessage).
//!
//! The failure is the real server's ErrorResponse, field for field
//! (`S`/`V` FATAL, `C` 28P01, `M password authentication failed for user
//! "x"`, `F auth.c`, `L`, `R auth_failed`), and a startup packet of an
//! unknown protocol version (nmap's probe) gets the release's `unsupported
//! frontend protocol` error, whose `postmaster.c` line number is how
//! scanners tell versions apart.

use base64::Engine as _;
use rand::Rng;
use tokio::net::TcpStream;

use super::frames::{hex, login_hash, text, Frames};
use crate::event::{self, SharedSession};
use crate::io::{End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a longer (or shorter than 8
/// bytes) startup packet is dropped without an answer.
pub const MAX_STARTUP: usize = 10_000;
/// Longest password/SASL message read; PostgreSQL's own cap on an auth
/// token is 65535, no real client sends more than a few hundred bytes.
pub const MAX_AUTH_MESSAGE: usize = 8_192;
/// SCRAM iterations, PostgreSQL's default `scram_iterations`.
const ITERATIONS: u32 = 4096;

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
const CANCEL_REQUEST: u32 = 80877102;

/// The `postgres` entry of [`super::REGISTRY`].
pub struct Postgres;

impl super::Protocol for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn default_port(&self) -> u16 {
        5432
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// How the server checks passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    Md5,
    Scram,
}

/// What the persona's PostgreSQL shows before anyone logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `SHOW server_version` (never sent: nobody gets in).
    pub version: String,
    pub major: u32,
    pub method: Method,
    /// `__LINE__` of ProcessStartupPacket's protocol error in the
    /// release's postmaster.c (nmap's version table keys on it).
    pub postmaster_line: u32,
    /// `__LINE__` of auth_failed's report in auth.c.
    pub auth_line: u32,
    /// MSVC builds report source paths from the build tree.
    pub windows: bool,
}

/// The release's PostgreSQL. Versions are chosen where nmap's table knows
/// the postmaster.c line (14.1–14.5: 2138, 13.5–13.8: 2133, 12.9–12.12:
/// 2119, 9.2.22–9.2.24: 1755); Debian 12's 15.20 was measured against
/// the real server (2220, and auth.c 334, which no scanner keys on and
/// the other majors reuse).
fn derived_version(p: &Persona) -> String {
    match p.release.as_str() {
        "ubuntu-22.04" => "14.5 (Ubuntu 14.5-0ubuntu0.22.04.1)",
        "ubuntu-20.04" => "12.12 (Ubuntu 12.12-0ubuntu0.20.04.1)",
        "debian-12" => "15.20 (Debian 15.20-0+deb12u1)",
        "debian-11" => "13.8 (Debian 13.8-0+deb11u1)",
        "centos-7" => "9.2.24",
        _ => "15.20",
    }
    .to_string()
}

pub fn server(persona: &Persona) -> Server {
    let version = persona.version_of("postgres", derived_version);
    let major: u32 = version.split(['.', ' ']).next().and_then(|m| m.parse().ok()).unwrap_or(15);
    let postmaster_line = match major {
        ..=9 => 1755,
        12 => 2119,
        13 => 2133,
        14 => 2138,
        _ => 2220,
    };
    let default = if major >= 14 { "scram-sha-256" } else { "md5" };
    let method = match persona.version_of("postgres-auth", |_| default.to_string()).as_str() {
        "password" => Method::Password,
        "md5" => Method::Md5,
        _ => Method::Scram,
    };
    Server { version, major, method, postmaster_line, auth_line: 334, windows: persona.family == OsFamily::Windows }
}

impl Server {
    /// A source file as the release's build names it in `F`.
    fn file(&self, unix: &'static str, windows: &'static str) -> &'static str {
        if self.windows {
            windows
        } else {
            unix
        }
    }

    /// An ErrorResponse of severity FATAL (`V` from 9.6 on).
    fn fatal(&self, code: &str, message: &str, file: &str, line: u32, routine: &str) -> Vec<u8> {
        let mut fields: Vec<(u8, String)> = vec![(b'S', "FATAL".into())];
        if self.major >= 10 {
            fields.push((b'V', "FATAL".into()));
        }
        fields.extend([
            (b'C', code.to_string()),
            (b'M', message.to_string()),
            (b'F', file.to_string()),
            (b'L', line.to_string()),
            (b'R', routine.to_string()),
        ]);
        let mut body = Vec::new();
        for (tag, value) in fields {
            body.push(tag);
            // A NUL would end the field early: never from a client's bytes.
            body.extend(value.bytes().filter(|b| *b != 0));
            body.push(0);
        }
        body.push(0);
        message_of(b'E', &body)
    }

    pub fn unsupported_protocol(&self, code: u32) -> Vec<u8> {
        // PostgreSQL 14 dropped protocol 2; before, the range began at 1.0.
        let earliest = if self.major >= 14 { "3.0" } else { "1.0" };
        let message = format!(
            "unsupported frontend protocol {}.{}: server supports {earliest} to 3.0",
            code >> 16,
            code & 0xffff
        );
        let file = self.file("postmaster.c", ".\\src\\backend\\postmaster\\postmaster.c");
        self.fatal("0A000", &message, file, self.postmaster_line, "ProcessStartupPacket")
    }

    pub fn auth_failed(&self, user: &str) -> Vec<u8> {
        let file = self.file("auth.c", ".\\src\\backend\\libpq\\auth.c");
        let message = format!("password authentication failed for user \"{user}\"");
        self.fatal("28P01", &message, file, self.auth_line, "auth_failed")
    }
}

/// A backend message: type byte, length (itself included), body.
fn message_of(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An Authentication request (`R`) of `code` with `data`.
fn auth_request(code: u32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    message_of(b'R', &body)
}

/// A StartupMessage's parameters (`user`, `database`, …), at most 64
/// kept. The layout check is PostgreSQL's: name/value pairs, then one
/// terminating NUL that must be the packet's last byte.
pub fn parse_parameters(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let key_len = body[at..].iter().position(|b| *b == 0)?;
        if key_len == 0 {
            break;
        }
        let value_at = at + key_len + 1;
        if value_at >= body.len() {
            break;
        }
        let value_len = body[value_at..].iter().position(|b| *b == 0)?;
        if params.len() < 64 {
            params.push((text(&body[at..at + key_len], 64), text(&body[value_at..value_at + value_len], 256)));
        }
        at = value_at + value_len + 1;
    }
    (at + 1 == body.len()).then_some(params)
}

/// A SASLInitialResponse: mechanism and client-first-message.
pub fn parse_sasl_initial(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let nul = body.iter().position(|b| *b == 0)?;
    let mechanism = text(&body[..nul], 64);
    let rest = &body[nul + 1..];
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = if len < 0 { &[][..] } else { rest.get(4..4 + len as usize)? };
    Some((mechanism, data.to_vec()))
}

/// The `r=` nonce of a client-first-message (after its GS2 header).
pub fn client_first_bare(first: &[u8]) -> Option<(&[u8], &[u8])> {
    // GS2 header: "n,," / "y,," / "p=...,," then the bare message.
    let mut commas = first.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i);
    let _ = commas.next()?;
    let second = commas.next()?;
    let bare = &first[second + 1..];
    let nonce = bare.split(|b| *b == b',').find_map(|a| a.strip_prefix(b"r="))?;
    Some((bare, nonce))
}

/// A client-final-message split at its proof: (without-proof, proof b64).
pub fn split_final(last: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = last.windows(3).rposition(|w| w == b",p=")?;
    Some((&last[..at], &last[at + 3..]))
}

/// The salt a user's stored SCRAM verifier has: stable per decky and
/// user, as a real account's is, and unguessable from outside.
fn salt_for(persona: &Persona, user: &str) -> [u8; 16] {
    let mut material = b"decnet-postgres-scram-salt\0".to_vec();
    material.extend_from_slice(persona.hostname.as_bytes());
    material.push(0);
    material.extend_from_slice(user.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA256, &material);
    d.as_ref()[..16].try_into().expect("16 bytes")
}

async fn read_message(frames: &mut Frames<TcpStream>) -> Result<(u8, Vec<u8>), End> {
    let mut header = [0u8; 5];
    frames.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
    if !(4..=MAX_AUTH_MESSAGE + 4).contains(&len) {
        return Err(End::LineTooLong);
    }
    Ok((header[0], frames.read_vec(len - 4).await?))
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let persona = ctx.persona.clone();
    let server = server(&persona);
    let mut frames = Frames::new(io, limits.idle);
    let mut negotiations = 0;
    let params = loop {
        let mut len = [0u8; 4];
        if let Err(e) = frames.read_exact(&mut len).await {
            return e;
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(8..=MAX_STARTUP).contains(&len) {
            // "invalid length of startup packet": logged by the server, never sent.
            return End::Done;
        }
        let body = match frames.read_vec(len - 4).await {
            Ok(b) => b,
            Err(e) => return e,
        };
        let code = u32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
        match code {
            SSL_REQUEST | GSSENC_REQUEST if negotiations < 2 => {
                negotiations += 1;
                if let Err(e) = frames.send(b"N").await {
                    return e;
                }
            }
            CANCEL_REQUEST => return End::Done,
            c if c >> 16 == 3 => match parse_parameters(&body[4..]) {
                Some(p) => break p,
                None => {
                    let file = server.file("postmaster.c", ".\\src\\backend\\postmaster\\postmaster.c");
                    let message = "invalid startup packet layout: expected terminator as last byte";
                    let e = server.fatal("08P01", message, file, server.postmaster_line + 112, "ProcessStartupPacket");
                    let _ = frames.send(&e).await;
                    return End::Done;
                }
            },
            c => {
                let _ = frames.send(&server.unsupported_protocol(c)).await;
                return End::Done;
            }
        }
    };
    let param = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(user) = param("user").filter(|u| !u.is_empty()) else {
        let file = server.file("postmaster.c", ".\\src\\backend\\postmaster\\postmaster.c");
        let message = "no PostgreSQL user name specified in startup packet";
        let e = server.fatal("28000", message, file, server.postmaster_line + 129, "ProcessStartupPacket");
        let _ = frames.send(&e).await;
        return End::Done;
    };
    let database = param("database").unwrap_or_else(|| user.clone());
    let application = param("application_name").unwrap_or_default();
    event::with(&session, |s| {
        s.command(&format!("startup user={user} database={database} application_name={application}"))
    });
    let extra = || vec![("database", database.clone()), ("client", application.clone())];
    let expect_password = |kind: u8| kind == b'p';
    match server.method {
        Method::Password => {
            if let Err(e) = frames.send(&auth_request(3, &[])).await {
                return e;
            }
            let (kind, body) = match read_message(&mut frames).await {
                Ok(m) => m,
                Err(e) => return e,
            };
            if !expect_password(kind) {
                return End::Done;
            }
            let password = body.strip_suffix(&[0]).unwrap_or(&body);
            event::with(&session, |s| s.login_attempt(&user, password, "password", extra()));
        }
        Method::Md5 => {
            let salt: [u8; 4] = rand::rng().random();
            if let Err(e) = frames.send(&auth_request(5, &salt)).await {
                return e;
            }
            let (kind, body) = match read_message(&mut frames).await {
                Ok(m) => m,
                Err(e) => return e,
            };
            if !expect_password(kind) {
                return End::Done;
            }
            let answer = body.strip_suffix(&[0]).unwrap_or(&body);
            match answer.strip_prefix(b"md5").filter(|h| h.len() == 32 && h.iter().all(u8::is_ascii_hexdigit)) {
                Some(md5) => {
                    let hash = format!("$postgres${user}*{}*{}", hex(&salt), text(md5, 32).to_ascii_lowercase());
                    event::with(&session, |s| login_hash(s, &user, &hash, "postgres-md5", extra()));
                }
                // Not an md5 answer: whatever it is, it is what the client
                // typed for a password.
                None => event::with(&session, |s| s.login_attempt(&user, answer, "password", extra())),
            }
        }
        Method::Scram => {
            if let Err(e) = frames.send(&auth_request(10, b"SCRAM-SHA-256\0\0")).await {
                return e;
            }
            let (kind, body) = match read_message(&mut frames).await {
                Ok(m) => m,
                Err(e) => return e,
            };
            if !expect_password(kind) {
                return wrong_sasl_message(&mut frames, &server, kind).await;
            }
            let Some((mechanism, first)) = parse_sasl_initial(&body) else {
                return malformed_sasl(&mut frames, &server, 1025, "read_client_first_message").await;
            };
            if mechanism != "SCRAM-SHA-256" {
                let message = "client selected an invalid SASL authentication mechanism";
                let e = server.fatal("08P01", message, "auth-scram.c", 256, "scram_init");
                let _ = frames.send(&e).await;
                return End::Done;
            }
            let Some((bare, client_nonce)) = client_first_bare(&first) else {
                return malformed_sasl(&mut frames, &server, 1025, "read_client_first_message").await;
            };
            let b64 = base64::engine::general_purpose::STANDARD;
            let server_nonce: [u8; 18] = rand::rng().random();
            let salt = salt_for(&persona, &user);
            let server_first = format!(
                "r={}{},s={},i={ITERATIONS}",
                String::from_utf8_lossy(client_nonce),
                b64.encode(server_nonce),
                b64.encode(salt)
            );
            if let Err(e) = frames.send(&auth_request(11, server_first.as_bytes())).await {
                return e;
            }
            let (kind, last) = match read_message(&mut frames).await {
                Ok(m) => m,
                Err(e) => return e,
            };
            if !expect_password(kind) {
                return wrong_sasl_message(&mut frames, &server, kind).await;
            }
            let Some((without_proof, proof)) = split_final(&last) else {
                return malformed_sasl(&mut frames, &server, 825, "read_any_attr").await;
            };
            let mut auth_message = bare.to_vec();
            auth_message.push(b',');
            auth_message.extend_from_slice(server_first.as_bytes());
            auth_message.push(b',');
            auth_message.extend_from_slice(without_proof);
            let hash = format!(
                "$scram-sha-256${ITERATIONS}${}${}${}",
                b64.encode(salt),
                b64.encode(&auth_message),
                text(proof, 64)
            );
            event::with(&session, |s| login_hash(s, &user, &hash, "postgres-scram", extra()));
        }
    }
    let _ = frames.send(&server.auth_failed(&user)).await;
    End::Done
}

/// A message other than the SASL answer where one was expected. (Under
/// md5 or cleartext the session just closes: the report's auth.c line
/// there was never measured, and only scanners send anything else.)
async fn wrong_sasl_message(frames: &mut Frames<TcpStream>, server: &Server, kind: u8) -> End {
    let message = format!("expected SASL response, got message type {kind}");
    let _ = frames.send(&server.fatal("08P01", &message, "auth-sasl.c", 95, "CheckSASLAuth")).await;
    End::Done
}

/// A SCRAM message that does not parse (the line and routine of the
/// check that fails, as PostgreSQL 15 reports them).
async fn malformed_sasl(frames: &mut Frames<TcpStream>, server: &Server, line: u32, routine: &str) -> End {
    let e = server.fatal("08P01", "malformed SCRAM message", "auth-scram.c", line, routine);
    let _ = frames.send(&e).await;
    End::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(release: &str) -> Persona {
        Persona::derive("db-01", Some("database-host"), None, 1_764_000_000)
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap()
    }

    #[test]
    fn releases_pick_their_version_and_method() {
        let s = server(&persona("debian-12"));
        assert_eq!((s.major, s.method, s.postmaster_line), (15, Method::Scram, 2220));
        let s = server(&persona("debian-11"));
        assert_eq!((s.major, s.method), (13, Method::Md5));
        let s = server(&persona("centos-7"));
        assert_eq!((s.major, s.method), (9, Method::Md5));
        let mut p = persona("ubuntu-22.04");
        p.versions.insert("postgres-auth".into(), "password".into());
        assert_eq!(server(&p).method, Method::Password);
    }

    #[test]
    fn errors_are_the_real_servers_bytes() {
        let s = server(&persona("debian-12"));
        // Captured from Debian 12's postgres 15.20.
        assert_eq!(
            s.unsupported_protocol(0xff53_4d42),
            b"E\x00\x00\x00\x8bSFATAL\x00VFATAL\x00C0A000\x00Munsupported frontend protocol 65363.19778: server supports 3.0 to 3.0\x00Fpostmaster.c\x00L2220\x00RProcessStartupPacket\x00\x00".to_vec()
        );
        assert_eq!(
            s.auth_failed("nobody"),
            b"E\x00\x00\x00fSFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user \"nobody\"\x00Fauth.c\x00L334\x00Rauth_failed\x00\x00".to_vec()
        );
        // 9.2 has no V field and supported protocol 1.0.
        let old = server(&persona("centos-7")).unsupported_protocol(0xff53_4d42);
        assert!(!old.windows(7).any(|w| w == b"VFATAL\0"));
        assert!(old.windows(10).any(|w| w == b"1.0 to 3.0"));
    }

    #[test]
    fn startup_and_sasl_parsers_take_garbage() {
        assert_eq!(
            parse_parameters(b"user\0bob\0database\0db\0\0"),
            Some(vec![("user".into(), "bob".into()), ("database".into(), "db".into())])
        );
        assert_eq!(parse_parameters(b"user\0bob"), None, "no terminator");
        assert_eq!(parse_parameters(b"user\0bob\0"), None, "no terminator after the last pair");
        assert_eq!(parse_parameters(b"user\0bob\0\0\0"), None, "bytes after the terminator");
        assert_eq!(parse_parameters(b"\0"), Some(vec![]));
        assert_eq!(parse_parameters(b"user"), None);
        assert_eq!(parse_parameters(b""), None);
        let mut many = Vec::new();
        for i in 0..200 {
            many.extend_from_slice(format!("k{i}\0v\0").as_bytes());
        }
        many.push(0);
        assert_eq!(parse_parameters(&many).unwrap().len(), 64, "parameters are capped");

        assert_eq!(
            parse_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x05n,,ab"),
            Some(("SCRAM-SHA-256".into(), b"n,,ab".to_vec()))
        );
        assert_eq!(parse_sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x50n,,ab"), None, "length past the message");
        assert_eq!(parse_sasl_initial(b"SCRAM-SHA-256\0\0\0"), None);
        assert_eq!(parse_sasl_initial(b"SCRAM-SHA-256"), None);
        assert_eq!(parse_sasl_initial(b"X\0\xff\xff\xff\xff").map(|(_, d)| d), Some(vec![]));

        assert_eq!(client_first_bare(b"n,,n=,r=abc"), Some((&b"n=,r=abc"[..], &b"abc"[..])));
        assert_eq!(client_first_bare(b"n,,n=x"), None, "no nonce");
        assert_eq!(client_first_bare(b"garbage"), None);
        assert_eq!(split_final(b"c=biws,r=abc,p=UFJPT0Y="), Some((&b"c=biws,r=abc"[..], &b"UFJPT0Y="[..])));
        assert_eq!(split_final(b"c=biws"), None);
    }
}
