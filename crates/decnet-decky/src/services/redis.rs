//! Redis honeypot: the redis-server each release packages (7.0.15 on
//! Debian 12, 6.0.16 on Debian 11 and Ubuntu 22.04, 5.0.7 on Ubuntu
//! 20.04, EPEL's 3.2.12 on CentOS 7, Microsoft's 3.0.504 port on
//! Windows), open to the network without a password: the decision an
//! admin makes with `bind 0.0.0.0` and `protected-mode no`, and the one
//! the attacks this decky exists to see look for.
//!
//! Requests come in RESP or inline ([`super::resp`]); every command is a
//! `command` line (arguments escaped, AUTH's password left out and
//! recorded as a credential instead). The keyspace is per session and
//! bounded. What reaches the host: nothing. `SLAVEOF` never connects,
//! `MODULE LOAD` never loads, `CONFIG SET dir` + `SAVE` never write; each
//! answers as the real version does (7.0 refuses to change `dir` and
//! `dbfilename`, its protected configs; older versions accept them), so
//! the whole chain is seen.
//!
//! INFO is the real 7.0.15's, field for field, captured by
//! `scripts/gen-redis-info.sh` into `redis_info.txt`, with the persona's
//! facts put in.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, Reply};
use crate::event::{self, SharedSession};
use crate::io::{end_of, printable, End, Metered};
use crate::persona::OsFamily;
use crate::Persona;

/// INFO as a fresh real redis-server 7.0.15 answers it.
const INFO_TEMPLATE: &str = include_str!("redis_info.txt");

/// Keys one session may hold, and bytes of keys and values together; past
/// either a write is refused as a full Redis refuses it.
const MAX_KEYS: usize = 1024;
const MAX_KEYSPACE_BYTES: usize = 256 * 1024;
/// Characters of one argument kept in a `command` line.
const MAX_LOGGED_ARG: usize = 256;

/// The `redis` entry of [`super::REGISTRY`].
pub struct Redis;

impl super::Protocol for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn default_port(&self) -> u16 {
        6379
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

/// The redis-server version the persona's release packages.
pub fn version(persona: &Persona) -> String {
    persona.version_of("redis", |p| {
        match p.release.as_str() {
            "debian-12" => "7.0.15",
            "debian-11" | "ubuntu-22.04" => "6.0.16",
            "ubuntu-20.04" => "5.0.7",
            "centos-7" => "3.2.12",
            "windows-10" | "windows-server-2019" => "3.0.504",
            _ => "7.0.15",
        }
        .to_string()
    })
}

/// The compiler the release built it with (INFO's `gcc_version`).
fn gcc_version(persona: &Persona) -> &'static str {
    match persona.release.as_str() {
        "debian-12" => "12.2.0",
        "debian-11" => "10.2.1",
        "ubuntu-22.04" => "11.2.0",
        "ubuntu-20.04" => "9.3.0",
        "centos-7" => "4.8.5",
        _ if persona.family == OsFamily::Windows => "0.0.0",
        _ => "12.2.0",
    }
}

/// `(major, minor)` of a version string.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A stable hex string for `label` on this persona (run id, build id).
fn persona_hex(persona: &Persona, label: &str, len: usize) -> String {
    let mut material = persona.hostname.as_bytes().to_vec();
    material.extend_from_slice(label.as_bytes());
    material.extend_from_slice(&persona.boot_time.to_le_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_string()
}

/// The session's view of the server: its configuration and keyspace.
pub struct Server {
    persona: std::sync::Arc<Persona>,
    version: String,
    major: (u32, u32),
    port: u16,
    config: BTreeMap<&'static str, String>,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    key_bytes: usize,
    pub resp3: bool,
    /// When the last SAVE happened (unix seconds).
    last_save: i64,
}

/// What a request does to the connection.
pub enum Outcome {
    Reply(Reply),
    /// Reply, then close (QUIT).
    Close(Reply),
}

impl Server {
    pub fn new(persona: std::sync::Arc<Persona>, port: u16) -> Server {
        let version = version(&persona);
        let major = major_minor(&version);
        let windows = persona.family == OsFamily::Windows;
        let mut config = BTreeMap::new();
        let dir = if windows { "C:\\Program Files\\Redis" } else { "/var/lib/redis" };
        for (k, v) in [
            ("dir", dir),
            ("dbfilename", "dump.rdb"),
            ("bind", "0.0.0.0"),
            ("protected-mode", "no"),
            ("requirepass", ""),
            ("masterauth", ""),
            ("maxmemory", "0"),
            ("maxmemory-policy", "noeviction"),
            ("maxclients", "10000"),
            ("appendonly", "no"),
            ("appendfilename", "appendonly.aof"),
            ("daemonize", if windows { "no" } else { "yes" }),
            ("databases", "16"),
            ("timeout", "0"),
            ("tcp-keepalive", "300"),
            ("loglevel", "notice"),
            ("logfile", if windows { "" } else { "/var/log/redis/redis-server.log" }),
            ("slave-read-only", "yes"),
            ("replica-read-only", "yes"),
            ("save", if major >= (7, 0) { "3600 1 300 100 60 10000" } else { "900 1 300 10 60 10000" }),
        ] {
            config.insert(k, v.to_string());
        }
        config.insert("port", port.to_string());
        if major >= (7, 0) {
            config.insert("enable-module-command", "no".into());
            config.insert("enable-protected-configs", "no".into());
        }
        if major < (5, 0) {
            config.remove("replica-read-only");
        }
        let last_save = persona.boot_time + 12;
        Server { persona, version, major, port, config, keys: BTreeMap::new(), key_bytes: 0, resp3: false, last_save }
    }

    fn wrong_args(&self, name: &str) -> Reply {
        Reply::Error(format!("ERR wrong number of arguments for '{name}' command"))
    }

    /// The real version's answer to a command it does not know.
    fn unknown(&self, args: &[Vec<u8>]) -> Reply {
        let name: String = printable(&args[0]).chars().take(128).collect();
        if self.major < (5, 0) {
            return Reply::Error(format!("ERR unknown command '{name}'"));
        }
        let mut listed = String::new();
        for arg in &args[1..] {
            if listed.len() >= 128 {
                break;
            }
            let room = 128 - listed.len();
            let arg: String = printable(arg).chars().take(room).collect();
            if self.major >= (7, 0) {
                listed.push_str(&format!("'{arg}' "));
            } else {
                listed.push_str(&format!("`{arg}`, "));
            }
        }
        if self.major >= (7, 0) {
            Reply::Error(format!("ERR unknown command '{name}', with args beginning with: {listed}"))
        } else {
            Reply::Error(format!("ERR unknown command `{name}`, with args beginning with: {listed}"))
        }
    }

    /// Apply one request (never empty) at unix time `now`.
    pub fn apply(&mut self, args: &[Vec<u8>], now: i64) -> Outcome {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let argc = args.len();
        let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
        let reply = match name.as_str() {
            "ping" if argc == 1 => Reply::Simple("PONG".into()),
            "ping" if argc == 2 => Reply::Bulk(args[1].clone()),
            "echo" if argc == 2 => Reply::Bulk(args[1].clone()),
            "quit" => return Outcome::Close(Reply::ok()),
            "auth" if argc == 2 || (argc == 3 && self.major >= (6, 0)) => self.auth(argc),
            "hello" if self.major >= (6, 0) => self.hello(args),
            "info" => Reply::Verbatim(self.info(args.get(1).map(|s| printable(s)), now)),
            "config" if argc >= 2 => self.config(args),
            "select" if argc == 2 => match arg(1).parse::<i64>() {
                Ok(n) if (0..16).contains(&n) => Reply::ok(),
                Ok(_) => Reply::Error("ERR DB index is out of range".into()),
                Err(_) => Reply::Error("ERR value is not an integer or out of range".into()),
            },
            "set" if argc >= 3 => self.set(&args[1], &args[2]),
            "get" if argc == 2 => self.keys.get(&args[1]).map(|v| Reply::Bulk(v.clone())).unwrap_or(Reply::Null),
            "del" | "unlink" if argc >= 2 => Reply::Int(args[1..].iter().filter(|k| self.remove(k)).count() as i64),
            "exists" if argc >= 2 => Reply::Int(args[1..].iter().filter(|k| self.keys.contains_key(*k)).count() as i64),
            "keys" if argc == 2 => {
                Reply::Array(self.keys.keys().filter(|k| glob(&args[1], k)).map(|k| Reply::Bulk(k.clone())).collect())
            }
            "dbsize" if argc == 1 => Reply::Int(self.keys.len() as i64),
            "type" if argc == 2 => {
                Reply::Simple(if self.keys.contains_key(&args[1]) { "string" } else { "none" }.into())
            }
            "ttl" | "pttl" if argc == 2 => Reply::Int(if self.keys.contains_key(&args[1]) { -1 } else { -2 }),
            "flushall" | "flushdb" => {
                self.keys.clear();
                self.key_bytes = 0;
                Reply::ok()
            }
            "slaveof" | "replicaof" if argc == 3 && (name == "slaveof" || self.major >= (5, 0)) => {
                // Never connects: the answer alone is what the attacker sees.
                if arg(1).eq_ignore_ascii_case("no") && arg(2).eq_ignore_ascii_case("one") {
                    Reply::ok()
                } else if arg(2).parse::<u16>().is_err() {
                    Reply::Error("ERR Invalid master port".into())
                } else {
                    Reply::ok()
                }
            }
            "module" if self.major >= (4, 0) && argc >= 2 => self.module(args),
            "save" if argc == 1 => {
                self.last_save = now;
                Reply::ok()
            }
            "bgsave" => {
                self.last_save = now;
                Reply::Simple("Background saving started".into())
            }
            "lastsave" => Reply::Int(self.last_save),
            "time" => Reply::Array(vec![Reply::bulk(now.to_string()), Reply::bulk("123456")]),
            "client" if argc >= 2 => match arg(1).to_ascii_lowercase().as_str() {
                "setname" | "setinfo" => Reply::ok(),
                "getname" => Reply::Null,
                "id" => Reply::Int(7),
                _ => Reply::ok(),
            },
            "command" => match arg(1).to_ascii_lowercase().as_str() {
                "count" => Reply::Int(240),
                _ => Reply::Array(vec![]),
            },
            "module" if self.major < (4, 0) => self.unknown(args),
            "replicaof" if self.major < (5, 0) => self.unknown(args),
            "ping" | "echo" | "auth" | "config" | "select" | "set" | "get" | "del" | "unlink" | "exists" | "keys"
            | "dbsize" | "type" | "ttl" | "pttl" | "slaveof" | "replicaof" | "save" | "client" | "module" => {
                self.wrong_args(&name)
            }
            _ => self.unknown(args),
        };
        Outcome::Reply(reply)
    }

    fn auth(&self, argc: usize) -> Reply {
        if self.major < (6, 0) {
            Reply::Error("ERR Client sent AUTH, but no password is set".into())
        } else if argc == 2 {
            Reply::Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into())
        } else if self.major >= (6, 2) {
            Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
        } else {
            Reply::Error("WRONGPASS invalid username-password pair".into())
        }
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]].
    fn hello(&mut self, args: &[Vec<u8>]) -> Reply {
        if let Some(v) = args.get(1) {
            match String::from_utf8_lossy(v).parse::<i64>() {
                Ok(2) => self.resp3 = false,
                Ok(3) => self.resp3 = true,
                Ok(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
                Err(_) => return Reply::Error("ERR Protocol version is not an integer or out of range".into()),
            }
        }
        if args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(b"AUTH")) {
            return self.auth(3);
        }
        let fields = vec![
            (Reply::bulk("server"), Reply::bulk("redis")),
            (Reply::bulk("version"), Reply::bulk(self.version.clone())),
            (Reply::bulk("proto"), Reply::Int(if self.resp3 { 3 } else { 2 })),
            (Reply::bulk("id"), Reply::Int(7)),
            (Reply::bulk("mode"), Reply::bulk("standalone")),
            (Reply::bulk("role"), Reply::bulk("master")),
            (Reply::bulk("modules"), Reply::Array(vec![])),
        ];
        Reply::Map(fields)
    }

    fn config(&mut self, args: &[Vec<u8>]) -> Reply {
        let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        let seven = self.major >= (7, 0);
        match sub.as_str() {
            "get" if args.len() == 3 => Reply::Map(
                self.config
                    .iter()
                    .filter(|(k, _)| glob(&args[2].to_ascii_lowercase(), k.as_bytes()))
                    .map(|(k, v)| (Reply::bulk(*k), Reply::bulk(v.clone())))
                    .collect(),
            ),
            "set" if args.len() == 4 => {
                let key = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
                let value = String::from_utf8_lossy(&args[3]).into_owned();
                match self.config.keys().find(|k| **k == key).copied() {
                    Some(k @ ("dir" | "dbfilename")) if seven => Reply::Error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{k}') - can't set protected config"
                    )),
                    Some(k) => {
                        // Kept for this session only: CONFIG GET shows it.
                        if value.len() <= 4096 {
                            self.config.insert(k, value);
                        }
                        Reply::ok()
                    }
                    None if seven => Reply::Error(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        printable(&args[2]).chars().take(128).collect::<String>()
                    )),
                    None => Reply::Error(format!(
                        "ERR Unsupported CONFIG parameter: {}",
                        printable(&args[2]).chars().take(128).collect::<String>()
                    )),
                }
            }
            "resetstat" | "rewrite" if args.len() == 2 => Reply::ok(),
            "get" | "set" | "resetstat" | "rewrite" if seven => self.wrong_args(&format!("config|{sub}")),
            "get" | "set" | "resetstat" | "rewrite" => self.wrong_args("config"),
            _ if seven => Reply::Error(format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                printable(&args[1]).chars().take(128).collect::<String>()
            )),
            _ => Reply::Error("ERR CONFIG subcommand must be one of GET, SET, RESETSTAT, REWRITE".into()),
        }
    }

    fn module(&self, args: &[Vec<u8>]) -> Reply {
        if self.major >= (7, 0) {
            return Reply::Error("ERR MODULE command not allowed. If the enable-module-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.".into());
        }
        match String::from_utf8_lossy(&args[1]).to_ascii_lowercase().as_str() {
            "load" if args.len() >= 3 => {
                Reply::Error("ERR Error loading the extension. Please check the server logs.".into())
            }
            "list" => Reply::Array(vec![]),
            "unload" if args.len() == 3 => {
                Reply::Error("ERR Error unloading module: no such module with that name".into())
            }
            _ => Reply::Error("ERR Syntax error, try MODULE HELP".into()),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Reply {
        let old = self.keys.get(key).map(|v| key.len() + v.len()).unwrap_or(0);
        let grown = self.key_bytes - old + key.len() + value.len();
        if grown > MAX_KEYSPACE_BYTES || (old == 0 && self.keys.len() >= MAX_KEYS) {
            return Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into());
        }
        self.key_bytes = grown;
        self.keys.insert(key.to_vec(), value.to_vec());
        Reply::ok()
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        match self.keys.remove(key) {
            Some(v) => {
                self.key_bytes -= key.len() + v.len();
                true
            }
            None => false,
        }
    }

    /// INFO [section]: the real server's fields with the persona's facts.
    pub fn info(&self, section: Option<String>, now: i64) -> String {
        let p = &self.persona;
        let uptime = (p.uptime(now) - 12).max(1);
        let memory = p.memory_kib * 1024;
        let keys = self.keys.len();
        let os = if p.family == OsFamily::Windows {
            "Windows".to_string()
        } else {
            format!("Linux {} {}", p.kernel_release, p.machine)
        };
        let pid = 400 + u32::from_str_radix(&persona_hex(p, "redis-pid", 4), 16).unwrap_or(0) % 1600;
        let values: BTreeMap<&str, String> = [
            ("redis_version", self.version.clone()),
            ("redis_build_id", persona_hex(p, "redis-build", 16)),
            ("os", os),
            ("gcc_version", gcc_version(p).to_string()),
            ("process_id", pid.to_string()),
            ("process_supervised", if p.family == OsFamily::Windows { "no" } else { "systemd" }.to_string()),
            ("run_id", persona_hex(p, "redis-run", 40)),
            ("tcp_port", self.port.to_string()),
            ("server_time_usec", format!("{now}000000")),
            ("uptime_in_seconds", uptime.to_string()),
            ("uptime_in_days", (uptime / 86400).to_string()),
            ("lru_clock", ((now as u64) & ((1 << 24) - 1)).to_string()),
            ("executable", "/usr/bin/redis-server".to_string()),
            ("config_file", "/etc/redis/redis.conf".to_string()),
            ("total_system_memory", memory.to_string()),
            ("total_system_memory_human", format!("{:.2}G", memory as f64 / (1u64 << 30) as f64)),
            ("rdb_last_save_time", self.last_save.to_string()),
            ("master_replid", persona_hex(p, "redis-replid", 40)),
        ]
        .into_iter()
        .collect();
        let wanted =
            section.map(|s| s.to_ascii_lowercase()).filter(|s| !matches!(s.as_str(), "all" | "everything" | "default"));
        let mut out = String::new();
        let mut current = String::new();
        for line in INFO_TEMPLATE.lines().filter(|l| !l.starts_with("# Generated")) {
            if let Some(name) = line.strip_prefix("# ") {
                current = name.to_ascii_lowercase();
            }
            if wanted.as_deref().is_some_and(|w| w != current) {
                continue;
            }
            if line.is_empty() && out.is_empty() {
                continue;
            }
            match line.split_once(':') {
                Some((key, _)) if values.contains_key(key) => {
                    out.push_str(&format!("{key}:{}\r\n", values[key]));
                }
                _ => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
            if line == "# Keyspace" && keys > 0 {
                out.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
            }
        }
        // Redis ends INFO without the blank line after its last section.
        while out.ends_with("\r\n\r\n") {
            out.truncate(out.len() - 2);
        }
        out
    }
}

/// Redis's `stringmatchlen` for KEYS and CONFIG GET: `*`, `?`, `[…]`, `\`.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point: linear enough for a bounded
    // pattern, and no recursion an attacker's `****…` could deepen.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let matched = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(pattern, p, text[t]) {
                Some((true, next)) => Some(next),
                _ => None,
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(c) => (*c == text[t]).then_some(p + 1),
            None => None,
        };
        match matched {
            Some(next) => {
                p = next;
                t += 1;
            }
            None => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// A `[...]` class at `pattern[at]`: whether `c` is in it, and where the
/// pattern goes on. `None` for an unterminated class.
fn class(pattern: &[u8], at: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() && pattern[i + 2] != b']' {
            let (lo, hi) = (pattern[i].min(pattern[i + 2]), pattern[i].max(pattern[i + 2]));
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((hit != negate, i + 1))
}

/// The request as one `command` line: arguments escaped and bounded,
/// AUTH's (and HELLO AUTH's) password left out.
pub fn logged(args: &[Vec<u8>]) -> String {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let mut secret_at = None;
    if name == "auth" {
        secret_at = Some(args.len() - 1);
    } else if name == "hello" {
        secret_at = args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH")).map(|i| i + 2);
    }
    let words: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != secret_at || args.len() == 1)
        .map(|(_, a)| {
            let text: String = printable(a).chars().take(MAX_LOGGED_ARG).collect();
            if text.is_empty() || text.contains(' ') || text.contains('"') {
                // Control bytes are already `\xNN` (printable); only the
                // quotes that delimit the argument need escaping.
                format!("\"{}\"", text.replace('"', "\\\""))
            } else {
                text
            }
        })
        .collect();
    words.join(" ")
}

/// The credential a request carries: (user, password) of AUTH or HELLO AUTH.
pub fn credential(args: &[Vec<u8>]) -> Option<(String, Vec<u8>)> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    match (name.as_str(), args.len()) {
        ("auth", 2) => Some(("default".into(), args[1].clone())),
        ("auth", 3) => Some((printable(&args[1]), args[2].clone())),
        ("hello", _) => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"AUTH"))?;
            Some((printable(args.get(at + 1)?), args.get(at + 2)?.clone()))
        }
        _ => None,
    }
}

pub async fn serve(session: SharedSession, mut io: Metered<TcpStream>) -> End {
    let (limits, ctx) = event::with(&session, |s| (s.limits().clone(), s.context().clone()));
    let port = io.get_ref().local_addr().map(|a| a.port()).unwrap_or(6379);
    let mut server = Server::new(ctx.persona.clone(), port);
    // Bounded: a request is at most one max_line inline, or MAX_ARGS bulks
    // of MAX_BULK; the session's byte budget caps it all anyway.
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    loop {
        // Every complete request in the buffer, in order (clients pipeline).
        loop {
            match resp::parse(&buf, limits.max_line) {
                Ok(None) => break,
                Err(resp::ProtocolError(why)) => {
                    event::with(&session, |s| s.command(&format!("protocol error: {why}")));
                    let mut out = Vec::new();
                    Reply::Error(format!("ERR Protocol error: {why}")).encode(server.resp3, &mut out);
                    let _ = send(&mut io, &out, limits.idle).await;
                    return End::Done;
                }
                Ok(Some((args, used))) => {
                    buf.drain(..used);
                    if args.is_empty() {
                        continue;
                    }
                    if let Some((user, secret)) = credential(&args) {
                        event::with(&session, |s| {
                            s.login_attempt(&user, &secret, "password", vec![("result", "refused".into())])
                        });
                    }
                    event::with(&session, |s| s.command(&logged(&args)));
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let (reply, close) = match server.apply(&args, now) {
                        Outcome::Reply(r) => (r, false),
                        Outcome::Close(r) => (r, true),
                    };
                    let mut out = Vec::new();
                    reply.encode(server.resp3, &mut out);
                    if let Err(e) = send(&mut io, &out, limits.idle).await {
                        return e;
                    }
                    if close {
                        return End::Done;
                    }
                }
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
        let p = Persona::derive("cache-under-test", Some("database-host"), None, 1_790_000_000)
            .with_overrides(&serde_json::json!({ "release": release }))
            .unwrap();
        Server::new(std::sync::Arc::new(p), 6379)
    }

    fn run(s: &mut Server, line: &str) -> Reply {
        let args = resp::split_args(line.as_bytes()).unwrap();
        match s.apply(&args, 1_790_000_100) {
            Outcome::Reply(r) | Outcome::Close(r) => r,
        }
    }

    fn error(r: Reply) -> String {
        match r {
            Reply::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn versions_follow_the_release() {
        assert_eq!(server("debian-12").version, "7.0.15");
        assert_eq!(server("ubuntu-22.04").version, "6.0.16");
        assert_eq!(server("ubuntu-20.04").version, "5.0.7");
        assert_eq!(server("centos-7").version, "3.2.12");
        assert_eq!(server("windows-server-2019").version, "3.0.504");
    }

    #[test]
    fn unknown_commands_and_auth_answer_as_each_version() {
        // 7.0.15's text is the real server's, captured on loopback.
        let mut seven = server("debian-12");
        assert_eq!(error(run(&mut seven, "foo a b")), "ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
        assert!(error(run(&mut seven, "auth x")).starts_with("ERR AUTH <password> called without any password"));
        assert_eq!(error(run(&mut seven, "auth u p")), "WRONGPASS invalid username-password pair or user is disabled.");
        assert_eq!(error(run(&mut seven, "get")), "ERR wrong number of arguments for 'get' command");
        let mut six = server("debian-11");
        assert_eq!(error(run(&mut six, "foo a")), "ERR unknown command `foo`, with args beginning with: `a`, ");
        let mut three = server("centos-7");
        assert_eq!(error(run(&mut three, "foo a")), "ERR unknown command 'foo'");
        assert_eq!(error(run(&mut three, "auth x")), "ERR Client sent AUTH, but no password is set");
        assert_eq!(error(run(&mut three, "auth u p")), "ERR wrong number of arguments for 'auth' command");
        // A huge unknown command's echo is bounded.
        let long = format!("{} {}", "x".repeat(5000), "y ".repeat(3000));
        assert!(error(run(&mut seven, &long)).len() < 400);
    }

    #[test]
    fn the_write_chain_is_refused_by_7_and_accepted_by_older_versions() {
        let mut seven = server("debian-12");
        assert!(error(run(&mut seven, "config set dir /root/.ssh")).contains("can't set protected config"));
        assert_eq!(
            run(&mut seven, "config get dir"),
            Reply::Map(vec![(Reply::bulk("dir"), Reply::bulk("/var/lib/redis"))])
        );
        assert!(error(run(&mut seven, "module load /tmp/x.so")).starts_with("ERR MODULE command not allowed"));
        let mut six = server("ubuntu-22.04");
        assert_eq!(run(&mut six, "set x \"\\n*/1 * * * * id\\n\""), Reply::ok());
        assert_eq!(run(&mut six, "config set dir /var/spool/cron/crontabs"), Reply::ok());
        assert_eq!(run(&mut six, "config set dbfilename root"), Reply::ok());
        assert_eq!(
            run(&mut six, "config get d*"),
            Reply::Map(vec![
                (Reply::bulk("daemonize"), Reply::bulk("yes")),
                (Reply::bulk("databases"), Reply::bulk("16")),
                (Reply::bulk("dbfilename"), Reply::bulk("root")),
                (Reply::bulk("dir"), Reply::bulk("/var/spool/cron/crontabs")),
            ])
        );
        assert_eq!(run(&mut six, "save"), Reply::ok());
        assert_eq!(run(&mut six, "slaveof 10.9.9.9 8886"), Reply::ok());
        assert_eq!(error(run(&mut six, "slaveof 10.9.9.9 x")), "ERR Invalid master port");
        assert!(error(run(&mut six, "module load /tmp/exp.so")).starts_with("ERR Error loading the extension"));
        assert_eq!(error(run(&mut six, "config set nosuch 1")), "ERR Unsupported CONFIG parameter: nosuch");
    }

    #[test]
    fn the_keyspace_is_bounded_per_session() {
        let mut s = server("debian-12");
        for i in 0..MAX_KEYS {
            assert_eq!(run(&mut s, &format!("set k{i} v")), Reply::ok());
        }
        assert!(error(run(&mut s, "set one-more v")).starts_with("OOM"));
        assert_eq!(run(&mut s, "set k1 replaced"), Reply::ok(), "overwriting stays within the bound");
        assert_eq!(run(&mut s, "del k1 k2 nothing"), Reply::Int(2));
        assert_eq!(run(&mut s, "flushall"), Reply::ok());
        assert_eq!(run(&mut s, "dbsize"), Reply::Int(0));
        let big = "v".repeat(200 * 1024);
        assert_eq!(run(&mut s, &format!("set a {big}")), Reply::ok());
        assert!(error(run(&mut s, &format!("set b {big}"))).starts_with("OOM"));
        assert_eq!(run(&mut s, "keys *"), Reply::Array(vec![Reply::bulk("a")]));
    }

    #[test]
    fn info_has_the_real_servers_fields_with_the_personas_facts() {
        let mut s = server("debian-12");
        run(&mut s, "set a 1");
        let info = s.info(None, 1_790_000_100);
        let p = s.persona.clone();
        assert!(info.starts_with("# Server\r\nredis_version:7.0.15\r\n"), "{info}");
        assert!(info.contains(&format!("\r\nos:Linux {} {}\r\n", p.kernel_release, p.machine)));
        assert!(info.contains(&format!("\r\nuptime_in_seconds:{}\r\n", p.uptime(1_790_000_100) - 12)));
        assert!(info.contains("\r\ndb0:keys=1,expires=0,avg_ttl=0"));
        assert!(!info.ends_with("\r\n\r\n"));
        let template_keys = INFO_TEMPLATE.lines().filter(|l| l.contains(':') && !l.starts_with('#')).count();
        assert_eq!(info.lines().filter(|l| l.contains(':') && !l.starts_with("db0")).count(), template_keys);
        let server_only = s.info(Some("server".into()), 1_790_000_100);
        assert!(server_only.starts_with("# Server\r\n") && !server_only.contains("# Clients"));
    }

    #[test]
    fn glob_matches_as_redis_does() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"d*", b"dir") && !glob(b"d*", b"bind"));
        assert!(glob(b"h?llo", b"hello") && glob(b"h[ae]llo", b"hallo") && !glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-c]t", b"hbt") && glob(b"a\\*", b"a*") && !glob(b"a\\*", b"ab"));
        assert!(!glob(b"[abc", b"a"), "an unterminated class matches nothing");
        // A pathological pattern ends quickly.
        assert!(!glob(&[b'*'; 2000].iter().copied().chain(*b"x").collect::<Vec<_>>(), &[b'a'; 4000]));
    }

    #[test]
    fn commands_are_logged_escaped_without_passwords() {
        let args = |l: &str| resp::split_args(l.as_bytes()).unwrap();
        assert_eq!(logged(&args("AUTH s3cret")), "AUTH");
        assert_eq!(logged(&args("auth bob s3cret")), "auth bob");
        assert_eq!(logged(&args("HELLO 3 AUTH bob pw SETNAME x")), "HELLO 3 AUTH bob SETNAME x");
        assert_eq!(logged(&args("set x \"a\\nb c\"")), "set x \"a\\x0ab c\"");
        assert_eq!(credential(&args("auth bob pw")), Some(("bob".into(), b"pw".to_vec())));
        assert_eq!(credential(&args("AUTH pw")), Some(("default".into(), b"pw".to_vec())));
        assert_eq!(credential(&args("HELLO 3 AUTH u")), None);
    }
}
