//! MongoDB honeypot: a standalone mongod with authorization off (the
//! default of the `mongodb-org` packages, and what the scanners that empty
//! and ransom open databases look for), over OP_MSG and the legacy
//! OP_QUERY ([`super::mongo_wire`]).
//!
//! `hello` / `isMaster` answer with the version's wire range, `buildInfo`
//! with a real release's version and git hash, `listDatabases` with a
//! fresh server's `admin`, `config` and `local`; reads find nothing,
//! writes are acknowledged and kept nowhere. Every command is a `command`
//! line (`<db>.<command> <document as JSON, bounded>`).
//!
//! SCRAM-SHA-1 and SCRAM-SHA-256 logins are played to their last step,
//! as mongod plays them for a user it does not know (a salt and nonce,
//! then `AuthenticationFailed`): the user is recorded, and the client's
//! proof with everything needed to test a password against it is recorded
//! as `hash` (type `mongodb-scram`):
//! `$mongodb-scram$*<0: SHA-1 | 1: SHA-256>*<user b64>*<iterations>*<salt b64>*<auth message b64>*<client proof b64>`.
//! For SHA-1 the PBKDF2 input is MongoDB's `hex(md5("<user>:mongo:<password>"))`,
//! for SHA-256 the password itself.

use std::time::Duration;

use base64::Engine as _;
use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Document};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::mongo_wire::{self, Message, Op};
use crate::event::{self, SharedSession};
use crate::io::{end_of, printable, End, Metered};
use crate::rfc5424::Severity;
use crate::Persona;

/// Characters of a command document kept in its `command` line.
const LOGGED_DOC: usize = 512;

/// The `mongodb` entry of [`super::REGISTRY`].
pub struct Mongodb;

impl super::Protocol for Mongodb {
    fn name(&self) -> &'static str {
        "mongodb"
    }
    fn default_port(&self) -> u16 {
        27017
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// A release of mongod: its version, git hash and wire-version range.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    pub version: String,
    pub git: Option<&'static str>,
    pub max_wire: i32,
}

/// Releases whose version and git hash are known (a fleet file may name
/// another version; its git hash is then left out).
const KNOWN: &[(&str, &str, i32)] = &[
    ("4.4.13", "df25c71b8674a78e17468f48bcda5285decb9246", 9),
    ("4.4.10", "58971da1ef93435a9f62bf4708a81713def6e88c", 9),
    ("4.2.2", "a0bbbff6ada159e19298d37946ac8dc4b497eadf", 8),
    ("4.2.1", "edf6d45851c0b9ee15548f0f847df141764a317e", 8),
    ("4.0.14", "1622021384533dade8b3c89ed3ecd80e1142c132", 7),
    ("3.6.23", "d352e6a4764659e0d0350ce77279de3c1f243e5c", 6),
];

/// The mongod the persona runs: mongodb-org 4.4 on current releases,
/// 4.2 on Ubuntu 20.04, 3.6 on CentOS 7.
pub fn build(persona: &Persona) -> Build {
    let version = persona.version_of("mongodb", |p| {
        match p.release.as_str() {
            "ubuntu-20.04" => "4.2.2",
            "centos-7" => "3.6.23",
            _ => "4.4.13",
        }
        .to_string()
    });
    let known = KNOWN.iter().find(|(v, _, _)| *v == version);
    let max_wire = known.map(|k| k.2).unwrap_or_else(|| wire_of(&version));
    Build { git: known.map(|k| k.1), max_wire, version }
}

/// The wire version a release speaks, from its major.minor.
fn wire_of(version: &str) -> i32 {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
        (3, 6) => 6,
        (4, 0) => 7,
        (4, 2) => 8,
        (4, 4) => 9,
        (5, _) => 13,
        (6, _) => 17,
        (7, _) => 21,
        (m, _) if m >= 8 => 25,
        _ => 6,
    }
}

/// A SCRAM conversation in progress.
struct Scram {
    sha256: bool,
    user: String,
    client_first_bare: String,
    server_first: String,
    salt: Vec<u8>,
    iterations: u32,
}

/// One connection's server.
pub struct Server {
    persona: std::sync::Arc<Persona>,
    build: Build,
    peer: String,
    connection_id: i32,
    scram: Option<Scram>,
}

/// What a command does besides its reply.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// A login to record: user, mechanism, and the crackable line when the
    /// exchange got that far.
    pub login: Option<(String, String, Option<String>)>,
}

fn ok_with(mut d: Document) -> Document {
    d.insert("ok", 1.0);
    d
}

fn failure(code: i32, name: &str, msg: impl Into<String>) -> Document {
    doc! { "ok": 0.0, "errmsg": msg.into(), "code": code, "codeName": name }
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes })
}

/// A SCRAM attribute (`r=`, `s=`, …) of a message.
fn attribute<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.split(',').find_map(|part| part.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
}

impl Server {
    pub fn new(persona: std::sync::Arc<Persona>, peer: String, connection_id: i32) -> Server {
        Server { build: build(&persona), persona, peer, connection_id, scram: None }
    }

    fn hello(&self, legacy: bool, cmd: &Document) -> Document {
        let mut d = Document::new();
        if cmd.get_bool("helloOk").unwrap_or(false) {
            d.insert("helloOk", true);
        }
        d.insert(if legacy { "ismaster" } else { "isWritablePrimary" }, true);
        if self.build.max_wire >= 9 {
            d.insert("topologyVersion", doc! { "processId": self.process_id(), "counter": 0i64 });
        }
        d.insert("maxBsonObjectSize", 16_777_216);
        d.insert("maxMessageSizeBytes", 48_000_000);
        d.insert("maxWriteBatchSize", 100_000);
        d.insert("localTime", bson::DateTime::now());
        d.insert("logicalSessionTimeoutMinutes", 30);
        d.insert("connectionId", self.connection_id);
        d.insert("minWireVersion", 0);
        d.insert("maxWireVersion", self.build.max_wire);
        d.insert("readOnly", false);
        // `saslSupportedMechs` is answered only for a user that exists:
        // mongod leaves it out for an unknown one, as here.
        ok_with(d)
    }

    fn process_id(&self) -> bson::oid::ObjectId {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.persona.hostname.as_bytes());
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&(self.persona.boot_time as u32).to_be_bytes());
        id[4..].copy_from_slice(&digest.as_ref()[..8]);
        bson::oid::ObjectId::from_bytes(id)
    }

    fn build_info(&self) -> Document {
        let mut d = doc! { "version": self.build.version.clone() };
        if let Some(git) = self.build.git {
            d.insert("gitVersion", git);
        }
        let array: Vec<i32> =
            self.build.version.split('.').map(|p| p.parse().unwrap_or(0)).chain([0]).take(4).collect();
        d.insert("modules", Bson::Array(vec![]));
        d.insert("allocator", "tcmalloc");
        d.insert("javascriptEngine", "mozjs");
        d.insert("sysInfo", "deprecated");
        d.insert("versionArray", array);
        d.insert("bits", 64);
        d.insert("debug", false);
        d.insert("maxBsonObjectSize", 16_777_216);
        d.insert("storageEngines", vec!["biggie", "devnull", "ephemeralForTest", "wiredTiger"]);
        ok_with(d)
    }

    /// The head of `serverStatus` (what scanners read: host, version, uptime).
    fn server_status(&self) -> Document {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // mongod starts a few seconds after boot.
        let uptime = (self.persona.uptime(now) - 9).max(1);
        let pid = 600 + (self.persona.boot_time.unsigned_abs() % 1400) as i64;
        ok_with(doc! {
            "host": self.persona.hostname.clone(),
            "version": self.build.version.clone(),
            "process": "mongod",
            "pid": pid,
            "uptime": uptime as f64,
            "uptimeMillis": uptime * 1000,
            "uptimeEstimate": uptime,
            "localTime": bson::DateTime::now(),
        })
    }

    fn list_databases(&self) -> Document {
        let databases = vec![
            doc! { "name": "admin", "sizeOnDisk": 40960.0, "empty": false },
            doc! { "name": "config", "sizeOnDisk": 110592.0, "empty": false },
            doc! { "name": "local", "sizeOnDisk": 73728.0, "empty": false },
        ];
        ok_with(doc! { "databases": databases, "totalSize": 225280.0 })
    }

    /// A salt stable per (decky, user), as mongod derives one for a user
    /// it does not have (so repeated tries see the same salt).
    fn salt_for(&self, user: &str, len: usize) -> Vec<u8> {
        let mut material = self.persona.hostname.as_bytes().to_vec();
        material.push(0);
        material.extend_from_slice(user.as_bytes());
        ring::digest::digest(&ring::digest::SHA256, &material).as_ref()[..len].to_vec()
    }

    fn sasl_start(&mut self, cmd: &Document) -> (Document, Effects) {
        let mechanism = cmd.get_str("mechanism").unwrap_or_default().to_string();
        let sha256 = match mechanism.as_str() {
            "SCRAM-SHA-256" => true,
            "SCRAM-SHA-1" => false,
            other => {
                let msg = format!(
                    "Received authentication for mechanism {} which is not enabled",
                    printable(other.as_bytes()).chars().take(64).collect::<String>()
                );
                return (failure(334, "MechanismUnavailable", msg), Effects::default());
            }
        };
        let payload = match cmd.get("payload") {
            Some(Bson::Binary(b)) => String::from_utf8_lossy(&b.bytes).into_owned(),
            Some(Bson::String(s)) => s.clone(),
            _ => String::new(),
        };
        // `n,,n=user,r=nonce`: the GS2 header, then the client-first-bare.
        let bare = payload.splitn(3, ',').nth(2).unwrap_or_default().to_string();
        let (Some(user), Some(nonce)) = (attribute(&bare, "n"), attribute(&bare, "r")) else {
            return (failure(17, "ProtocolError", "Invalid SCRAM client first message"), Effects::default());
        };
        let user: String =
            printable(user.replace("=2C", ",").replace("=3D", "=").as_bytes()).chars().take(256).collect();
        let server_nonce: [u8; 24] = rand::random();
        let salt = self.salt_for(&user, if sha256 { 28 } else { 16 });
        let iterations = if sha256 { 15000 } else { 10000 };
        let b64 = base64::engine::general_purpose::STANDARD;
        let server_first = format!("r={nonce}{},s={},i={iterations}", b64.encode(server_nonce), b64.encode(&salt));
        self.scram = Some(Scram {
            sha256,
            user: user.clone(),
            client_first_bare: bare.chars().take(1024).collect(),
            server_first: server_first.clone(),
            salt,
            iterations,
        });
        let reply = ok_with(doc! {
            "conversationId": 1,
            "done": false,
            "payload": binary(server_first.into_bytes()),
        });
        (reply, Effects { login: Some((user, mechanism, None)) })
    }

    fn sasl_continue(&mut self, cmd: &Document) -> (Document, Effects) {
        let failed = failure(18, "AuthenticationFailed", "Authentication failed.");
        let Some(scram) = self.scram.take() else {
            return (failure(17, "ProtocolError", "No SASL session state found"), Effects::default());
        };
        let payload = match cmd.get("payload") {
            Some(Bson::Binary(b)) => String::from_utf8_lossy(&b.bytes).into_owned(),
            _ => String::new(),
        };
        // `c=biws,r=nonce,p=proof`: the auth message is everything but p.
        let Some(proof) = attribute(&payload, "p") else { return (failed, Effects::default()) };
        let without_proof = payload.rsplit_once(",p=").map(|(head, _)| head).unwrap_or_default();
        let auth_message = format!("{},{},{}", scram.client_first_bare, scram.server_first, without_proof);
        let b64 = base64::engine::general_purpose::STANDARD;
        let hash = format!(
            "$mongodb-scram$*{}*{}*{}*{}*{}*{}",
            u8::from(scram.sha256),
            b64.encode(scram.user.as_bytes()),
            scram.iterations,
            b64.encode(&scram.salt),
            b64.encode(auth_message.as_bytes()),
            proof.chars().take(128).collect::<String>(),
        );
        let mechanism = if scram.sha256 { "SCRAM-SHA-256" } else { "SCRAM-SHA-1" };
        (failed, Effects { login: Some((scram.user, mechanism.into(), Some(hash))) })
    }

    /// Answer one command document (its name is its first key).
    pub fn command(&mut self, cmd: &Document) -> (Document, Effects) {
        let Some(name) = cmd.keys().next().cloned() else {
            return (failure(59, "CommandNotFound", "no such command: ''"), Effects::default());
        };
        let db = cmd.get_str("$db").unwrap_or("admin").to_string();
        let none = Effects::default;
        let empty_cursor = |ns: String| ok_with(doc! { "cursor": { "firstBatch": [], "id": 0i64, "ns": ns } });
        let collection = cmd.get_str(&name).unwrap_or_default().to_string();
        match name.to_ascii_lowercase().as_str() {
            "hello" | "ismaster" => {
                let mut reply = self.hello(name.eq_ignore_ascii_case("ismaster"), cmd);
                let mut effects = none();
                // 4.4 and later start a login inside the handshake (drivers
                // send its saslStart along): answered as saslStart would be.
                if let (true, Ok(start)) = (self.build.max_wire >= 9, cmd.get_document("speculativeAuthenticate")) {
                    if start.contains_key("saslStart") {
                        let (mut first, e) = self.sasl_start(start);
                        if first.remove("ok") == Some(Bson::Double(1.0)) {
                            reply.insert("speculativeAuthenticate", first);
                            effects = e;
                        }
                    }
                }
                (reply, effects)
            }
            "buildinfo" => (self.build_info(), none()),
            "serverstatus" => (self.server_status(), none()),
            "ping" | "endsessions" | "dropdatabase" | "logout" | "killcursors" => (ok_with(doc! {}), none()),
            "whatsmyuri" => (ok_with(doc! { "you": self.peer.clone() }), none()),
            "listdatabases" => (self.list_databases(), none()),
            "listcollections" => (empty_cursor(format!("{db}.$cmd.listCollections")), none()),
            "find" | "aggregate" => (empty_cursor(format!("{db}.{collection}")), none()),
            "count" => (ok_with(doc! { "n": 0 }), none()),
            "insert" => {
                let n = cmd.get_array("documents").map(|d| d.len()).unwrap_or(0) as i32;
                (ok_with(doc! { "n": n }), none())
            }
            "update" | "delete" => (ok_with(doc! { "n": 0 }), none()),
            "drop" => (failure(26, "NamespaceNotFound", "ns not found"), none()),
            "create" => (ok_with(doc! {}), none()),
            "getlog" => (ok_with(doc! { "totalLinesWritten": 0, "log": [] }), none()),
            "getcmdlineopts" => (
                ok_with(doc! {
                    "argv": ["/usr/bin/mongod", "--config", "/etc/mongod.conf"],
                    "parsed": { "config": "/etc/mongod.conf", "net": { "bindIp": "0.0.0.0", "port": 27017 }, "storage": { "dbPath": "/var/lib/mongodb" } },
                }),
                none(),
            ),
            "saslstart" => self.sasl_start(cmd),
            "saslcontinue" => self.sasl_continue(cmd),
            "authenticate" => (failure(18, "AuthenticationFailed", "Authentication failed."), none()),
            _ => {
                let shown: String = printable(name.as_bytes()).chars().take(128).collect();
                (failure(59, "CommandNotFound", format!("no such command: '{shown}'")), none())
            }
        }
    }
}

/// The `command` line of a command: `<db>.<name> <document>`, the SASL
/// payloads (a proof is not a command) left out, bounded.
pub fn logged(db: &str, cmd: &Document, sequence_docs: usize) -> String {
    let mut shown = cmd.clone();
    for secret in ["payload", "speculativeAuthenticate", "pwd"] {
        if shown.contains_key(secret) {
            shown.insert(secret, "<recorded>");
        }
    }
    let name = cmd.keys().next().cloned().unwrap_or_default();
    let json = Bson::Document(shown).into_relaxed_extjson().to_string();
    let mut line =
        format!("{}.{} {}", printable(db.as_bytes()), printable(name.as_bytes()), printable(json.as_bytes()));
    if sequence_docs > 0 {
        line.push_str(&format!(" (+{sequence_docs} documents)"));
    }
    line.chars().take(LOGGED_DOC).collect()
}

pub async fn serve(session: SharedSession, mut io: Metered<TcpStream>) -> End {
    let (limits, ctx, peer) = event::with(&session, |s| (s.limits().clone(), s.context().clone(), s.peer));
    let connection_id = rand::random::<u16>() as i32 + 1;
    let mut server = Server::new(ctx.persona.clone(), peer.to_string(), connection_id);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 8192];
    loop {
        // Every whole message already here, in order.
        loop {
            let len = match mongo_wire::message_length(&buf) {
                Ok(Some(len)) if buf.len() >= len => len,
                Ok(_) => break,
                Err(e) => return protocol_error(&session, e),
            };
            let message: Vec<u8> = buf.drain(..len).collect();
            let Message { request_id, op } = match mongo_wire::parse(&message) {
                Ok(m) => m,
                Err(e) => return protocol_error(&session, e),
            };
            let (cmd, db, legacy, sequence_docs) = match op {
                Op::Msg { body, sequence_docs } => {
                    let db = body.get_str("$db").unwrap_or("admin").to_string();
                    (body, db, false, sequence_docs)
                }
                Op::Query { collection, query } => {
                    // `{$query: {...}}` wraps a command with read preferences.
                    let cmd = query.get_document("$query").cloned().unwrap_or(query);
                    let db = collection.split('.').next().unwrap_or("admin").to_string();
                    (cmd, db, true, 0)
                }
            };
            let (reply, effects) = server.command(&cmd);
            // saslStart names the user: the command line carries it.
            if let Some((user, _, None)) = &effects.login {
                event::with(&session, |s| s.username = Some(user.clone()));
            }
            event::with(&session, |s| s.command(&logged(&db, &cmd, sequence_docs)));
            if let Some((user, mechanism, Some(hash))) = effects.login {
                record_login(&session, &user, &mechanism, hash);
            }
            let wire = if legacy {
                mongo_wire::query_reply(request_id, &reply)
            } else {
                mongo_wire::msg_reply(request_id, &reply)
            };
            if let Err(e) = send(&mut io, &wire, limits.idle).await {
                return e;
            }
        }
        let n = match tokio::time::timeout(limits.idle, io.read(&mut chunk)).await {
            Err(_) => return End::Idle,
            Ok(Err(e)) => return end_of(e),
            Ok(Ok(0)) => return End::ClientClosed,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A SCRAM login that reached its proof: the user and the crackable line.
fn record_login(session: &SharedSession, user: &str, mechanism: &str, hash: String) {
    event::with(session, |s| {
        s.username = Some(user.to_string());
        let fields = vec![
            ("username", user.to_string()),
            ("hash", hash),
            ("hash_type", "mongodb-scram".to_string()),
            ("auth_method", mechanism.to_string()),
            ("result", "refused".to_string()),
        ];
        s.emit("login_attempt", Severity::Notice, fields, Some(format!("{mechanism} login attempt for {user}")));
    });
}

fn protocol_error(session: &SharedSession, e: mongo_wire::WireError) -> End {
    event::with(session, |s| s.command(&format!("protocol error: {}", e.0)));
    End::Done
}

async fn send(io: &mut Metered<TcpStream>, bytes: &[u8], idle: Duration) -> Result<(), End> {
    match tokio::time::timeout(idle, io.write_all(bytes)).await {
        Err(_) => Err(End::Idle),
        Ok(Err(e)) => Err(end_of(e)),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(release: &str) -> Server {
        let p = Persona::derive("docs-under-test", Some("database-host"), None, 1_790_000_000)
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap();
        Server::new(std::sync::Arc::new(p), "10.0.0.5:40000".into(), 12)
    }

    #[test]
    fn hello_and_build_info_follow_the_release() {
        let mut s = server("debian-12");
        let (hello, _) = s.command(&doc! { "hello": 1, "helloOk": true, "$db": "admin" });
        assert_eq!(hello.get_i32("maxWireVersion").unwrap(), 9);
        assert!(hello.get_bool("isWritablePrimary").unwrap() && hello.get_bool("helloOk").unwrap());
        let (legacy, _) = s.command(&doc! { "isMaster": 1 });
        assert!(legacy.get_bool("ismaster").unwrap());
        let (info, _) = s.command(&doc! { "buildinfo": 1 });
        assert_eq!(info.get_str("version").unwrap(), "4.4.13");
        assert_eq!(info.get_str("gitVersion").unwrap(), "df25c71b8674a78e17468f48bcda5285decb9246");
        assert_eq!(build(&server("ubuntu-20.04").persona).max_wire, 8);
        // A driver's speculative saslStart inside hello gets its first step.
        let start = doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": binary(b"n,,n=root,r=abc".to_vec()), "db": "admin" };
        let (hello, effects) = s.command(&doc! { "hello": 1, "speculativeAuthenticate": start });
        assert!(hello.get_document("speculativeAuthenticate").unwrap().get_binary_generic("payload").is_ok());
        assert_eq!(effects.login, Some(("root".into(), "SCRAM-SHA-256".into(), None)));
        assert_eq!(build(&server("centos-7").persona).max_wire, 6);
        let (unknown, _) = s.command(&doc! { "frobnicate": 1 });
        assert_eq!(unknown.get_str("errmsg").unwrap(), "no such command: 'frobnicate'");
        assert_eq!(unknown.get_i32("code").unwrap(), 59);
    }

    /// The recorded line holds what a cracker needs: recomputing the
    /// proof from the right password matches it, a wrong one does not.
    #[test]
    fn a_scram_exchange_is_recorded_as_a_line_the_password_verifies() {
        use ring::{digest, hmac, pbkdf2};
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut s = server("debian-12");
        let start = doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": binary(b"n,,n=admin,r=clientnonce123".to_vec()), "$db": "admin" };
        let (first, effects) = s.command(&start);
        assert_eq!(effects.login, Some(("admin".into(), "SCRAM-SHA-256".into(), None)));
        let server_first = String::from_utf8(first.get_binary_generic("payload").unwrap().clone()).unwrap();
        let nonce = attribute(&server_first, "r").unwrap().to_string();
        let salt = b64.decode(attribute(&server_first, "s").unwrap()).unwrap();
        let iterations: u32 = attribute(&server_first, "i").unwrap().parse().unwrap();
        // The client's side of SCRAM-SHA-256 (RFC 7677) with password "hunter2".
        let proof_for = |password: &[u8]| {
            let mut salted = [0u8; 32];
            pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations.try_into().unwrap(), &salt, password, &mut salted);
            let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
            let client_key = hmac::sign(&key, b"Client Key");
            let stored = digest::digest(&digest::SHA256, client_key.as_ref());
            let auth = format!("n=admin,r=clientnonce123,{server_first},c=biws,r={nonce}");
            let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()), auth.as_bytes());
            let proof: Vec<u8> = client_key.as_ref().iter().zip(sig.as_ref()).map(|(a, b)| a ^ b).collect();
            b64.encode(proof)
        };
        let final_msg = format!("c=biws,r={nonce},p={}", proof_for(b"hunter2"));
        let (reply, effects) =
            s.command(&doc! { "saslContinue": 1, "conversationId": 1, "payload": binary(final_msg.into_bytes()) });
        assert_eq!(reply.get_i32("code").unwrap(), 18);
        let (user, _, hash) = effects.login.unwrap();
        assert_eq!(user, "admin");
        let hash = hash.unwrap();
        let fields: Vec<&str> = hash.trim_start_matches("$mongodb-scram$*").split('*').collect();
        assert_eq!(fields[0], "1");
        assert_eq!(b64.decode(fields[1]).unwrap(), b"admin");
        assert_eq!(fields[2], iterations.to_string());
        assert_eq!(b64.decode(fields[3]).unwrap(), salt);
        let auth = String::from_utf8(b64.decode(fields[4]).unwrap()).unwrap();
        assert_eq!(auth, format!("n=admin,r=clientnonce123,{server_first},c=biws,r={nonce}"));
        assert_eq!(fields[5], proof_for(b"hunter2"));
        assert_ne!(fields[5], proof_for(b"wrong"));
        // A continue without a start is refused, not a panic.
        let (orphan, effects) = s.command(&doc! { "saslContinue": 1, "payload": binary(vec![]) });
        assert_eq!(orphan.get_i32("code").unwrap(), 17);
        assert_eq!(effects, Effects::default());
    }

    #[test]
    fn malformed_sasl_and_logged_lines_stay_bounded() {
        let mut s = server("debian-12");
        let (r, e) = s.command(&doc! { "saslStart": 1, "mechanism": "SCRAM-SHA-1", "payload": "garbage" });
        assert_eq!(r.get_i32("code").unwrap(), 17);
        assert_eq!(e, Effects::default());
        let (r, _) = s.command(&doc! { "saslStart": 1, "mechanism": "PLAIN\n" });
        assert_eq!(r.get_str("codeName").unwrap(), "MechanismUnavailable");
        let big = doc! { "insert": "users", "documents": [{ "name": "x".repeat(5000) }], "$db": "shop" };
        let line = logged("shop", &big, 0);
        assert!(line.starts_with("shop.insert {"), "{line}");
        assert!(line.chars().count() <= LOGGED_DOC);
        let secret = logged("admin", &doc! { "saslStart": 1, "payload": "n,,n=u,r=x" }, 0);
        assert!(!secret.contains("r=x"), "{secret}");
    }
}
