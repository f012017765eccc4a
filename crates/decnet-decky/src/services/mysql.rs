//! MySQL honeypot: the persona's MySQL or MariaDB server as its release
//! packages it (MySQL 8.0 on Ubuntu, MariaDB on Debian and CentOS, MySQL
//! Community Server on Windows).
//!
//! The handshake v10 carries the release's version string (MariaDB 10+
//! with its `5.5.5-` replication prefix), capability flags, character set
//! and default auth plugin, as the real server sends them (Debian 12's
//! MariaDB 10.11 was captured byte for byte, see docs/deckies.md). No
//! TLS: `CLIENT_SSL` is never offered (Debian's MariaDB ships without
//! certificates; for MySQL 8 this is the one flag that differs), so every
//! client answers in clear.
//!
//! Logins are challenge/response: the client never sends its password,
//! only a scramble of it with the server's 20-byte salt. Both exchanges
//! are recorded as crackable `hash` lines: `mysql_native_password` as
//! `$mysqlna$<salt hex>*<response hex>` (john's and hashcat's mode 11200
//! format), a `caching_sha2_password` fast-auth scramble as
//! `$mysql-sha2$<salt hex>*<scramble hex>`. A caching_sha2 (or any other)
//! answer is followed by an AuthSwitchRequest to `mysql_native_password`,
//! which is what a real MySQL 8 does for an account created with that
//! plugin, so every client ends with a native response a cracker takes.
//!
//! The attempt is then refused with `ERROR 1045 (28000): Access denied
//! for user 'x'@'ip' (using password: YES)`, or accepted per the persona's
//! auth policy (exact `credentials` are verified against the scramble;
//! root, which Debian and Ubuntu only let in over the local socket, never
//! gets in otherwise): a fake session then answers the queries clients
//! send first (`@@version_comment`, `@@version`, `USER()`, `SHOW
//! DATABASES`, …) and records every query as a `command`.

use std::net::IpAddr;

use rand::Rng;
use tokio::net::TcpStream;

use super::frames::{hex, login_hash, text, Frames};
use crate::event::{self, SharedSession};
use crate::io::{End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// Largest packet payload a client may send: a login is a few hundred
/// bytes and the queries worth recording fit easily; a longer one ends
/// the session before it is read.
pub const MAX_PACKET: usize = 64 * 1024;

/// Commands one logged-in session may send (each is logged anyway; the
/// session's log budget also applies).
const MAX_COMMANDS: usize = 1_000;

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
const CLIENT_PROTOCOL_41: u32 = 1 << 9;
const CLIENT_SSL: u32 = 1 << 11;
const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
const CLIENT_CONNECT_ATTRS: u32 = 1 << 20;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 1 << 21;
const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// MariaDB's extended capabilities (the handshake's last 4 reserved bytes).
const MARIADB_EXTENDED_TYPE_INFO: u32 = 1 << 3;
const MARIADB_CACHE_METADATA: u32 = 1 << 4;

const NATIVE: &str = "mysql_native_password";
const CACHING_SHA2: &str = "caching_sha2_password";

/// The `mysql` entry of [`super::REGISTRY`].
pub struct Mysql;

impl super::Protocol for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }
    fn default_port(&self) -> u16 {
        3306
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// The server the persona's release packages, as its handshake shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavour {
    /// `SELECT @@version` (without MariaDB's `5.5.5-` wire prefix).
    pub version: String,
    pub mariadb: bool,
    /// The default authentication plugin the handshake names.
    pub plugin: &'static str,
    pub capabilities: u32,
    /// MariaDB 10.2+'s extended capabilities (0 otherwise).
    pub mariadb_capabilities: u32,
    pub charset: u8,
    /// `@@version_comment`, what the `mysql` client's banner shows.
    pub comment: String,
}

/// The version string each release packages: Ubuntu's MySQL 8.0 security
/// updates, Debian's MariaDB (Debian 12's is what `apt-cache policy` gives
/// on the machine this was developed on), CentOS 7's MariaDB 5.5, MySQL
/// Community Server on Windows.
fn derived_version(p: &Persona) -> String {
    match p.release.as_str() {
        "ubuntu-22.04" => "8.0.41-0ubuntu0.22.04.1",
        "ubuntu-20.04" => "8.0.41-0ubuntu0.20.04.1",
        "debian-12" => "10.11.19-MariaDB-0+deb12u1",
        "debian-11" => "10.5.29-MariaDB-0+deb11u1",
        "centos-7" => "5.5.68-MariaDB",
        _ => "8.0.40",
    }
    .to_string()
}

/// What the persona's MySQL server shows (its `mysql` version override
/// included: a version naming MariaDB makes the server MariaDB).
pub fn flavour(persona: &Persona) -> Flavour {
    let version = persona.version_of("mysql", derived_version);
    let version = version.strip_prefix("5.5.5-").unwrap_or(&version).to_string();
    let mariadb = version.contains("MariaDB");
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(8);
    if mariadb {
        let comment = match (persona.os_id.as_str(), persona.version_id.as_str()) {
            ("debian", v) => format!("Debian {v}"),
            _ => "MariaDB Server".to_string(),
        };
        let (capabilities, mariadb_capabilities, charset) = if major >= 10 {
            // Captured from Debian 12's mariadbd 10.11: lower 0xf7fe (no
            // CLIENT_SSL; bit 0 clear marks MariaDB), upper 0x81ff,
            // extended 0x1d, utf8mb4_general_ci (45).
            (0x81ff_f7fe, 0x1d, 45)
        } else {
            // MariaDB 5.5: latin1_swedish_ci and no extended capabilities.
            (0xa00f_f7ff, 0, 8)
        };
        Flavour { version, mariadb, plugin: NATIVE, capabilities, mariadb_capabilities, charset, comment }
    } else {
        let comment = match persona.family {
            OsFamily::Windows => "MySQL Community Server - GPL".to_string(),
            _ if persona.os_id == "ubuntu" => "(Ubuntu)".to_string(),
            _ => "MySQL Community Server - GPL".to_string(),
        };
        // MySQL 8.0.2x+: every lower flag but CLIENT_SSL (not offered, see
        // the module's doc), upper 0xdfff; utf8mb4_0900_ai_ci (255).
        Flavour {
            version,
            mariadb,
            plugin: CACHING_SHA2,
            capabilities: 0xdfff_ffff & !CLIENT_SSL,
            mariadb_capabilities: 0,
            charset: 255,
            comment,
        }
    }
}

/// A 20-byte salt of printable characters, as the servers make them.
fn salt() -> [u8; 20] {
    let mut rng = rand::rng();
    std::array::from_fn(|_| rng.random_range(0x21u8..=0x7e))
}

/// The handshake v10 payload.
pub fn handshake(f: &Flavour, connection_id: u32, salt: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![10u8];
    if f.mariadb && !f.version.starts_with("5.") {
        p.extend_from_slice(b"5.5.5-");
    }
    p.extend_from_slice(f.version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&salt[..8]);
    p.push(0);
    p.extend_from_slice(&(f.capabilities as u16).to_le_bytes());
    p.push(f.charset);
    p.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    p.extend_from_slice(&((f.capabilities >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&f.mariadb_capabilities.to_le_bytes());
    p.extend_from_slice(&salt[8..]);
    p.push(0);
    p.extend_from_slice(f.plugin.as_bytes());
    p.push(0);
    p
}

/// A client's HandshakeResponse41, as far as the honeypot needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginRequest {
    pub capabilities: u32,
    pub mariadb_capabilities: u32,
    pub user: String,
    pub response: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<String>,
    /// Connection attributes (`_client_name`, `program_name`, …), at most 32.
    pub attributes: Vec<(String, String)>,
}

/// Why a client's packet is not a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPacket {
    /// Pre-4.1 clients, or fewer bytes than the fields claim.
    Truncated,
    /// The client asked for TLS, which was never offered.
    TlsRequested,
}

/// A byte cursor whose every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BadPacket> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(BadPacket::Truncated)?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn nul_terminated(&mut self) -> Result<&'a [u8], BadPacket> {
        let rest = &self.buf[self.at..];
        let n = rest.iter().position(|b| *b == 0).ok_or(BadPacket::Truncated)?;
        self.at += n + 1;
        Ok(&rest[..n])
    }
    fn lenenc(&mut self) -> Result<u64, BadPacket> {
        let first = self.take(1)?[0];
        let width = match first {
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            0xfb | 0xff => return Err(BadPacket::Truncated),
            n => return Ok(n as u64),
        };
        let bytes = self.take(width)?;
        Ok(bytes.iter().rev().fold(0u64, |acc, b| (acc << 8) | *b as u64))
    }
    fn lenenc_bytes(&mut self) -> Result<&'a [u8], BadPacket> {
        let n = self.lenenc()?;
        // A length beyond the packet fails here, before any allocation.
        self.take(usize::try_from(n).map_err(|_| BadPacket::Truncated)?)
    }
    fn done(&self) -> bool {
        self.at >= self.buf.len()
    }
}

/// Parse a HandshakeResponse41 (what follows the server's handshake).
pub fn parse_login(payload: &[u8]) -> Result<LoginRequest, BadPacket> {
    let mut c = Cursor { buf: payload, at: 0 };
    let capabilities = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes"));
    if capabilities & CLIENT_PROTOCOL_41 == 0 {
        return Err(BadPacket::Truncated);
    }
    c.take(4)?; // max packet size
    c.take(1)?; // character set
    let filler = c.take(23)?;
    if capabilities & CLIENT_SSL != 0 && payload.len() == 32 {
        return Err(BadPacket::TlsRequested);
    }
    let mariadb_capabilities = if capabilities & CLIENT_LONG_PASSWORD == 0 {
        u32::from_le_bytes(filler[19..23].try_into().expect("4 bytes"))
    } else {
        0
    };
    let user = text(c.nul_terminated()?, 256);
    let response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        c.lenenc_bytes()?
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = c.take(1)?[0] as usize;
        c.take(n)?
    } else {
        c.nul_terminated()?
    }
    .to_vec();
    let mut login = LoginRequest { capabilities, mariadb_capabilities, user, response, ..Default::default() };
    if capabilities & CLIENT_CONNECT_WITH_DB != 0 && !c.done() {
        login.database = Some(text(c.nul_terminated()?, 256));
    }
    if capabilities & CLIENT_PLUGIN_AUTH != 0 && !c.done() {
        login.plugin = Some(text(c.nul_terminated()?, 64));
    }
    if capabilities & CLIENT_CONNECT_ATTRS != 0 && !c.done() {
        let all = c.lenenc_bytes()?;
        let mut attrs = Cursor { buf: all, at: 0 };
        while !attrs.done() && login.attributes.len() < 32 {
            let key = text(attrs.lenenc_bytes()?, 64);
            let value = text(attrs.lenenc_bytes()?, 256);
            login.attributes.push((key, value));
        }
    }
    Ok(login)
}

/// The `mysql_native_password` scramble of `password` with `salt`:
/// SHA1(password) XOR SHA1(salt + SHA1(SHA1(password))).
pub fn native_scramble(password: &[u8], salt: &[u8]) -> [u8; 20] {
    let sha1 = |parts: &[&[u8]]| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    };
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    let mix = sha1(&[salt, &stage2]);
    std::array::from_fn(|i| stage1[i] ^ mix[i])
}

/// A MySQL packet: 3-byte length, sequence number, payload.
fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// An ERR packet's payload.
pub fn error(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(message.as_bytes());
    p
}

/// An OK packet's payload (autocommit on, no warnings).
fn ok() -> Vec<u8> {
    vec![0, 0, 0, 2, 0, 0, 0]
}

async fn read_packet(frames: &mut Frames<TcpStream>) -> Result<(u8, Vec<u8>), End> {
    let mut header = [0u8; 4];
    frames.read_exact(&mut header).await?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    if len > MAX_PACKET {
        return Err(End::LineTooLong);
    }
    Ok((header[3], frames.read_vec(len).await?))
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (limits, ctx, peer) = event::with(&session, |s| (s.limits().clone(), s.context().clone(), s.peer));
    let persona = ctx.persona.clone();
    let f = flavour(&persona);
    let mut frames = Frames::new(io, limits.idle);
    let connection_id = rand::rng().random_range(8..20_000u32);
    let first_salt = salt();
    if let Err(e) = frames.send(&packet(0, &handshake(&f, connection_id, &first_salt))).await {
        return e;
    }
    let (seq, payload) = match read_packet(&mut frames).await {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut seq = seq.wrapping_add(1);
    let login = match parse_login(&payload) {
        Ok(l) => l,
        Err(_) => {
            // What mysqld answers a packet it cannot read as a login: the
            // pre-4.1 error form (no SQL state), as it cannot know the
            // client's protocol.
            let _ = frames.send(&packet(seq, b"\xff\x13\x04Bad handshake")).await;
            return End::Done;
        }
    };
    let mut extra = vec![];
    if let Some(db) = &login.database {
        extra.push(("database", db.clone()));
    }
    if let Some((_, program)) = login
        .attributes
        .iter()
        .find(|(k, _)| k == "program_name")
        .or(login.attributes.iter().find(|(k, _)| k == "_client_name"))
    {
        extra.push(("client", program.clone()));
    }
    let client_plugin = login.plugin.clone().unwrap_or_else(|| NATIVE.to_string());
    let ip = peer.ip();
    // The response to record, and the salt it answers.
    let (salt_used, response) = if client_plugin == NATIVE && (login.response.len() == 20 || login.response.is_empty())
    {
        (first_salt, login.response.clone())
    } else {
        if client_plugin == CACHING_SHA2 && login.response.len() == 32 {
            let hash = format!("$mysql-sha2${}*{}", hex(&first_salt), hex(&login.response));
            event::with(&session, |s| login_hash(s, &login.user, &hash, "mysql-caching-sha2", extra.clone()));
        }
        // The account's plugin is mysql_native_password: switch to it with
        // a fresh salt, as the server does.
        let switch_salt = salt();
        let mut switch = vec![0xfe];
        switch.extend_from_slice(NATIVE.as_bytes());
        switch.push(0);
        switch.extend_from_slice(&switch_salt);
        switch.push(0);
        if let Err(e) = frames.send(&packet(seq, &switch)).await {
            return e;
        }
        let (client_seq, answer) = match read_packet(&mut frames).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        seq = client_seq.wrapping_add(1);
        (switch_salt, answer)
    };
    let accepted = if response.is_empty() {
        event::with(&session, |s| s.login_attempt(&login.user, b"", "none", extra.clone()));
        false
    } else {
        let hash = format!("$mysqlna${}*{}", hex(&salt_used), hex(&response));
        event::with(&session, |s| login_hash(s, &login.user, &hash, "mysql-native", extra.clone()));
        let listed = persona
            .auth
            .credentials
            .iter()
            .any(|(u, p)| *u == login.user && native_scramble(p.as_bytes(), &salt_used)[..] == response[..]);
        listed || (login.user != "root" && ctx.auth.check(&persona.auth, ip, &login.user, hash.as_bytes()))
    };
    if !accepted {
        let using = if response.is_empty() { "NO" } else { "YES" };
        let message = format!("Access denied for user '{}'@'{ip}' (using password: {using})", login.user);
        let _ = frames.send(&packet(seq, &error(1045, "28000", &message))).await;
        return End::Done;
    }
    if let Err(e) = frames.send(&packet(seq, &ok())).await {
        return e;
    }
    let results = ResultFormat {
        deprecate_eof: login.capabilities & f.capabilities & CLIENT_DEPRECATE_EOF != 0,
        extended_metadata: login.mariadb_capabilities & f.mariadb_capabilities & MARIADB_EXTENDED_TYPE_INFO != 0,
        cache_metadata: login.mariadb_capabilities & f.mariadb_capabilities & MARIADB_CACHE_METADATA != 0,
    };
    let mut fake =
        FakeServer { flavour: &f, persona: &persona, user: login.user.clone(), ip, database: login.database };
    for _ in 0..MAX_COMMANDS {
        let (_, command) = match read_packet(&mut frames).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        let Some((&kind, body)) = command.split_first() else { return End::Done };
        let replies = match kind {
            0x01 => return End::Done, // COM_QUIT
            0x02 => {
                let db = text(body, 256);
                event::with(&session, |s| s.command(&format!("USE {db}")));
                fake.database = Some(db);
                vec![ok()]
            }
            0x03 => {
                let query = text(body, crate::event::MAX_COMMAND_CHARS);
                event::with(&session, |s| s.command(query.trim()));
                fake.answer(&query).encode(&results)
            }
            0x0e => vec![ok()], // COM_PING
            _ => vec![error(1047, "08S01", "Unknown command")],
        };
        let mut out = Vec::new();
        for (i, reply) in replies.iter().enumerate() {
            out.extend(packet(i as u8 + 1, reply));
        }
        if let Err(e) = frames.send(&out).await {
            return e;
        }
    }
    End::Done
}

/// How the client asked for result sets.
struct ResultFormat {
    deprecate_eof: bool,
    extended_metadata: bool,
    cache_metadata: bool,
}

/// What a query gets.
enum Answer {
    Ok,
    Error(u16, &'static str, String),
    /// Column names and rows (`None` is SQL NULL).
    Rows(Vec<String>, Vec<Vec<Option<String>>>),
}

fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    }
    out.extend_from_slice(s);
}

impl Answer {
    /// The payloads of the reply, in order.
    fn encode(&self, fmt: &ResultFormat) -> Vec<Vec<u8>> {
        let eof = |fmt: &ResultFormat| {
            if fmt.deprecate_eof {
                vec![0xfe, 0, 0, 2, 0, 0, 0]
            } else {
                vec![0xfe, 0, 0, 2, 0]
            }
        };
        match self {
            Answer::Ok => vec![ok()],
            Answer::Error(code, state, message) => vec![error(*code, state, message)],
            Answer::Rows(columns, rows) => {
                let mut out = Vec::new();
                let mut count = vec![columns.len() as u8];
                if fmt.cache_metadata {
                    count.push(1); // metadata follows
                }
                out.push(count);
                for name in columns {
                    let mut def = Vec::new();
                    lenenc_str(&mut def, b"def");
                    for part in [&b""[..], b"", b"", name.as_bytes(), b""] {
                        lenenc_str(&mut def, part);
                    }
                    if fmt.extended_metadata {
                        def.push(0);
                    }
                    // Fixed fields: utf8 (33), 256 characters, VAR_STRING.
                    def.extend_from_slice(&[0x0c, 33, 0, 0, 3, 0, 0, 0xfd, 0, 0, 0x27, 0, 0]);
                    out.push(def);
                }
                if !fmt.deprecate_eof {
                    out.push(eof(fmt));
                }
                for row in rows {
                    let mut r = Vec::new();
                    for cell in row {
                        match cell {
                            Some(v) => lenenc_str(&mut r, v.as_bytes()),
                            None => r.push(0xfb),
                        }
                    }
                    out.push(r);
                }
                out.push(eof(fmt));
                out
            }
        }
    }
}

/// The logged-in session's view of the server.
struct FakeServer<'a> {
    flavour: &'a Flavour,
    persona: &'a Persona,
    user: String,
    ip: IpAddr,
    database: Option<String>,
}

impl FakeServer<'_> {
    fn answer(&self, query: &str) -> Answer {
        let q = query.trim().trim_end_matches(';').trim().to_ascii_lowercase();
        let q = q.split_whitespace().collect::<Vec<_>>().join(" ");
        let one = |name: &str, value: Option<String>| Answer::Rows(vec![name.into()], vec![vec![value]]);
        let expr = q.strip_prefix("select ").map(|e| e.strip_suffix(" limit 1").unwrap_or(e));
        match (q.as_str(), expr) {
            (_, Some("@@version_comment")) => one("@@version_comment", Some(self.flavour.comment.clone())),
            (_, Some(e @ ("@@version" | "version()"))) => one(e, Some(self.flavour.version.clone())),
            (_, Some(e @ ("user()" | "system_user()" | "session_user()"))) => {
                one(e, Some(format!("{}@{}", self.user, self.ip)))
            }
            (_, Some("current_user()")) => one("current_user()", Some(format!("{}@%", self.user))),
            (_, Some("database()")) => one("database()", self.database.clone()),
            (_, Some("@@hostname")) => one("@@hostname", Some(self.persona.hostname.clone())),
            ("show databases" | "show schemas", _) => {
                let mut dbs = vec!["information_schema", "mysql", "performance_schema"];
                if !self.flavour.version.starts_with("5.") {
                    dbs.push("sys");
                }
                Answer::Rows(vec!["Database".into()], dbs.into_iter().map(|d| vec![Some(d.to_string())]).collect())
            }
            ("show tables", _) => match &self.database {
                None => Answer::Error(1046, "3D000", "No database selected".into()),
                Some(db) => Answer::Rows(vec![format!("Tables_in_{db}")], vec![]),
            },
            _ => Answer::Ok,
        }
    }
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
    fn each_release_shows_its_own_server() {
        let f = flavour(&persona("debian-12"));
        assert!(f.mariadb && f.plugin == NATIVE && f.comment == "Debian 12");
        let h = handshake(&f, 3, b"^MG\\wbg[uY>iu3;l1Mpk");
        // Byte for byte what Debian 12's mariadbd sent (connection 3, that salt).
        let real = "0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100030000005e4d475c7762675b00\
                    fef72d0200ff81150000000000001d00000075593e6975333b6c314d706b006d7973716c5f6e61746976655f70617373776f726400";
        assert_eq!(hex(&h), real);
        let f = flavour(&persona("ubuntu-22.04"));
        assert!(!f.mariadb && f.plugin == CACHING_SHA2 && f.version.contains("0ubuntu0.22.04"));
        assert_eq!(f.capabilities & CLIENT_SSL, 0);
        let f = flavour(&persona("centos-7"));
        assert!(hex(&handshake(&f, 1, &[b'a'; 20])).starts_with(&hex(b"\x0a5.5.68-MariaDB\0")));
        let mut p = persona("windows-server-2019");
        assert_eq!(flavour(&p).comment, "MySQL Community Server - GPL");
        p.versions.insert("mysql".into(), "10.6.18-MariaDB".into());
        assert!(flavour(&p).mariadb);
    }

    /// libmariadb 3.3's login (mariadb client, Debian 12), captured.
    const MARIADB_CLIENT_LOGIN: &str = "84a2bf000000100021000000000000000000000000000000000000001d0000006170700014d07e879ada4420\
        dfb9f1a1886710bfec94ce607a6d7973716c5f6e61746976655f70617373776f7264007e035f6f73054c696e75780c5f636c69656e745f6e616d65\
        0a6c69626d617269616462045f70696404313230330f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f\
        36340c70726f6772616d5f6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn a_real_clients_login_parses() {
        let login = parse_login(&unhex(MARIADB_CLIENT_LOGIN)).unwrap();
        assert_eq!(login.user, "app");
        assert_eq!(login.response.len(), 20);
        assert_eq!(login.plugin.as_deref(), Some(NATIVE));
        assert_eq!(login.mariadb_capabilities, 0x1d);
        assert!(login.attributes.contains(&("program_name".into(), "mysql".into())));
    }

    #[test]
    fn truncated_oversized_and_tls_logins_are_refused_without_panicking() {
        let full = unhex(MARIADB_CLIENT_LOGIN);
        for cut in 0..full.len() {
            // Every prefix either parses (optional trailing parts) or is Truncated.
            let _ = parse_login(&full[..cut]);
        }
        assert_eq!(parse_login(&full[..40]), Err(BadPacket::Truncated));
        // A response length claiming more bytes than the packet holds.
        let mut lying = full[..36].to_vec();
        lying.extend_from_slice(b"app\0\xfd\xff\xff\xff");
        assert_eq!(parse_login(&lying), Err(BadPacket::Truncated));
        // An 8-byte length prefix of 2^64-1.
        let mut huge = full[..36].to_vec();
        huge.extend_from_slice(b"app\0\xfe\xff\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(parse_login(&huge), Err(BadPacket::Truncated));
        let mut tls = full[..32].to_vec();
        tls[1] |= (CLIENT_SSL >> 8) as u8;
        assert_eq!(parse_login(&tls), Err(BadPacket::TlsRequested));
        // Pre-4.1 clients are not served.
        assert_eq!(parse_login(&[0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(BadPacket::Truncated));
    }

    #[test]
    fn the_native_scramble_is_mysqls() {
        // The captured login above answered this salt with password S3cret.
        let salt = b"ggL(!jv4<n;vbg^%9.zA";
        let login = parse_login(&unhex(MARIADB_CLIENT_LOGIN)).unwrap();
        assert_eq!(native_scramble(b"S3cret", salt)[..], login.response[..]);
        assert_ne!(native_scramble(b"S3cret!", salt)[..], login.response[..]);
    }

    #[test]
    fn results_are_framed_as_the_client_asked() {
        let p = persona("debian-12");
        let f = flavour(&p);
        let fake =
            FakeServer { flavour: &f, persona: &p, user: "app".into(), ip: [10, 0, 0, 1].into(), database: None };
        // Captured: MariaDB 10.11's `select @@version` to libmariadb (no
        // DEPRECATE_EOF, extended type info, metadata cache): the same
        // framing, column type and charset aside.
        let fmt = ResultFormat { deprecate_eof: false, extended_metadata: true, cache_metadata: true };
        let payloads = fake.answer("select @@version").encode(&fmt);
        assert_eq!(payloads[0], vec![1, 1]);
        assert_eq!(&payloads[1][..19], b"\x03def\x00\x00\x00\x09@@version\x00\x00");
        assert_eq!(payloads[2], vec![0xfe, 0, 0, 2, 0]);
        assert_eq!(payloads[3], [&[26u8][..], b"10.11.19-MariaDB-0+deb12u1"].concat());
        assert_eq!(payloads.len(), 5);
        let plain = ResultFormat { deprecate_eof: true, extended_metadata: false, cache_metadata: false };
        let payloads = fake.answer("SHOW DATABASES;").encode(&plain);
        assert_eq!(payloads[0], vec![1]);
        assert_eq!(payloads.len(), 1 + 1 + 4 + 1, "no EOF after the columns");
        assert!(matches!(fake.answer("show tables"), Answer::Error(1046, ..)));
        assert!(matches!(fake.answer("select @@version_comment limit 1"), Answer::Rows(..)));
    }
}
