//! One session's record: every interaction as one RFC 5424 line.
//!
//! Lines follow the fleet-wide format (`events::rfc5424::format_event`):
//! HOST = the decky, APP = the service, MSGID = the event type, SD
//! `relay@55555` with `src_ip`, `src_port`, `sid` and the event's fields.
//! Secrets travel as `secret_b64` (base64 of the exact bytes), so a
//! password with quotes, brackets or binary survives the line intact.
//! A session always ends with `disconnect` then `session_recorded`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use super::DeckyContext;
use crate::events::rfc5424::{format_event, RelayEvent, Severity};

/// Longest command (characters) kept in a `command` line.
pub const MAX_COMMAND_CHARS: usize = 1024;

/// Bytes in and out of one session, shared with the metered stream.
#[derive(Debug, Default)]
pub struct ByteCount {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

impl ByteCount {
    pub fn total(&self) -> u64 {
        self.received.load(Ordering::Relaxed) + self.sent.load(Ordering::Relaxed)
    }
}

pub struct Session {
    ctx: Arc<DeckyContext>,
    service: &'static str,
    pub sid: String,
    pub peer: SocketAddr,
    started: Instant,
    pub bytes: Arc<ByteCount>,
    commands: Vec<String>,
    pub username: Option<String>,
    finished: bool,
}

impl Session {
    /// A new session; emits `connect`.
    pub fn open(ctx: Arc<DeckyContext>, service: &'static str, peer: SocketAddr) -> Session {
        let sid = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let s = Session {
            ctx,
            service,
            sid,
            peer,
            started: Instant::now(),
            bytes: Arc::new(ByteCount::default()),
            commands: Vec::new(),
            username: None,
            finished: false,
        };
        s.emit("connect", Severity::Info, vec![], Some(format!("connection from {peer}")));
        s
    }

    pub fn decky(&self) -> &str {
        &self.ctx.name
    }

    pub fn limits(&self) -> &super::Limits {
        &self.ctx.limits
    }

    pub fn context(&self) -> &Arc<DeckyContext> {
        &self.ctx
    }

    /// Emit one line with the session's common fields first.
    pub fn emit(&self, msgid: &str, severity: Severity, extra: Vec<(&str, String)>, msg: Option<String>) {
        // After session_recorded nothing more belongs to this session (an
        // SSH task may still be winding down after a time limit).
        if self.finished {
            return;
        }
        let mut params = vec![
            ("src_ip".to_string(), self.peer.ip().to_string()),
            ("src_port".to_string(), self.peer.port().to_string()),
            ("sid".to_string(), self.sid.clone()),
        ];
        params.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        let line = format_event(&RelayEvent {
            timestamp: time::OffsetDateTime::now_utc(),
            severity,
            host: self.ctx.name.clone(),
            app: self.service.to_string(),
            msgid: msgid.to_string(),
            params,
            msg,
        });
        self.ctx.sink.push(line);
    }

    /// A credential: `username`, `secret_b64`, `auth_method` (+ extras).
    pub fn login_attempt(&mut self, username: &str, secret: &[u8], method: &str, extra: Vec<(&str, String)>) {
        self.username = Some(username.to_string());
        let mut fields = vec![
            ("username", username.to_string()),
            ("secret_b64", base64::engine::general_purpose::STANDARD.encode(secret)),
            ("auth_method", method.to_string()),
        ];
        fields.extend(extra);
        self.emit("login_attempt", Severity::Notice, fields, Some(format!("{method} login attempt for {username}")));
    }

    /// A command the attacker ran: MSGID `command`, msg `CMD <command>`.
    pub fn command(&mut self, command: &str) {
        let command: String = command.chars().take(MAX_COMMAND_CHARS).collect();
        let mut fields = vec![("command", command.clone())];
        if let Some(u) = &self.username {
            fields.push(("username", u.clone()));
        }
        self.emit("command", Severity::Warning, fields, Some(format!("CMD {command}")));
        if self.commands.len() < self.ctx.limits.max_recorded_commands {
            self.commands.push(command);
        }
    }

    /// End the session: `disconnect` (with why) then `session_recorded`.
    pub fn finish(&mut self, reason: &str) {
        if self.finished {
            return;
        }
        let duration = format!("{:.3}", self.started.elapsed().as_secs_f64());
        let bytes = self.bytes.total().to_string();
        self.emit(
            "disconnect",
            Severity::Info,
            vec![("reason", reason.to_string()), ("duration_s", duration.clone()), ("bytes", bytes.clone())],
            None,
        );
        let mut fields = vec![
            ("service", self.service.to_string()),
            ("duration_s", duration),
            ("bytes", bytes),
            ("bytes_in", self.bytes.received.load(Ordering::Relaxed).to_string()),
            // A JSON array: commands may contain any character, and JSON
            // keeps them apart unambiguously.
            ("commands", serde_json::to_string(&self.commands).unwrap_or_else(|_| "[]".into())),
        ];
        if let Some(u) = &self.username {
            fields.push(("username", u.clone()));
        }
        self.emit("session_recorded", Severity::Info, fields, None);
        self.finished = true;
    }
}

/// A session shared between a service's tasks (the SSH server runs the
/// protocol in its own task). The lock is never held across an await.
pub type SharedSession = Arc<std::sync::Mutex<Session>>;

/// Run `f` on the session (a poisoned lock still gives the session: a
/// panicking handler must not silence the others' records).
pub fn with<R>(session: &SharedSession, f: impl FnOnce(&mut Session) -> R) -> R {
    let mut guard = session.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

impl Drop for Session {
    /// A session whose task ended without saying why (a panic in a
    /// handler, a cancelled task) is still recorded.
    fn drop(&mut self) {
        self.finish("ended");
    }
}
