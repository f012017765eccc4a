//! One session's record: every interaction as one RFC 5424 line.
//!
//! Lines follow the fleet-wide format (`events::rfc5424::format_event`):
//! HOST = the decky, APP = the service, MSGID = the event type, SD
//! `relay@55555` with `src_ip`, `src_port`, `sid` and the event's fields.
//! Secrets travel as `secret_b64` (base64 of the exact bytes), so a
//! password with quotes, brackets or binary survives the line intact.
//! A session always ends with `disconnect` then `session_recorded`.
//!
//! Log budget: a session may write [`crate::Limits::max_log_lines`] lines
//! and [`crate::Limits::max_log_bytes`] bytes of log. The first line over
//! either is replaced by one `log_budget_exhausted` line, later ones are
//! only counted (`log_lines_suppressed` in `session_recorded`, and
//! [`LOG_BUDGET_EXHAUSTED`] for the process). The closing `disconnect` and
//! `session_recorded` are always written: they are what makes a session
//! visible, and they are bounded on their own.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use super::DeckyContext;
use crate::recording::Recording;
use crate::rfc5424::{format_event, RelayEvent, Severity};

/// Longest command (characters) kept in a `command` line.
pub const MAX_COMMAND_CHARS: usize = 1024;

/// Sessions that hit their log budget (reported in the native driver's health).
pub static LOG_BUDGET_EXHAUSTED: AtomicU64 = AtomicU64::new(0);

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
    /// Log written so far, against the session's log budget.
    log_lines: Cell<u64>,
    log_bytes: Cell<u64>,
    /// Lines not written because the budget was spent (the first one is
    /// the one `log_budget_exhausted` stands in for).
    log_suppressed: Cell<u64>,
    /// The shell's recording, when the decky records (made when a shell
    /// starts, see [`Session::start_recording`]).
    recording: Option<Recording>,
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
            log_lines: Cell::new(0),
            log_bytes: Cell::new(0),
            log_suppressed: Cell::new(0),
            recording: None,
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

    /// Emit one line with the session's common fields first, within the
    /// session's log budget.
    pub fn emit(&self, msgid: &str, severity: Severity, extra: Vec<(&str, String)>, msg: Option<String>) {
        // After session_recorded nothing more belongs to this session (an
        // SSH task may still be winding down after a time limit).
        if self.finished {
            return;
        }
        if self.log_suppressed.get() > 0 {
            self.log_suppressed.set(self.log_suppressed.get() + 1);
            return;
        }
        let line = self.format(msgid, severity, extra, msg);
        let limits = &self.ctx.limits;
        let lines = self.log_lines.get() + 1;
        let bytes = self.log_bytes.get() + line.len() as u64;
        if lines > limits.max_log_lines || bytes > limits.max_log_bytes {
            self.log_suppressed.set(1);
            LOG_BUDGET_EXHAUSTED.fetch_add(1, Ordering::Relaxed);
            let note = self.format(
                "log_budget_exhausted",
                Severity::Warning,
                vec![("log_lines", self.log_lines.get().to_string()), ("log_bytes", self.log_bytes.get().to_string())],
                Some("session log budget spent; further interactions are counted, not logged".into()),
            );
            self.ctx.sink.push(note);
            return;
        }
        self.log_lines.set(lines);
        self.log_bytes.set(bytes);
        self.ctx.sink.push(line);
    }

    /// Emit one of the closing lines: outside the budget, always written.
    fn emit_closing(&self, msgid: &str, extra: Vec<(&str, String)>) {
        if !self.finished {
            self.ctx.sink.push(self.format(msgid, Severity::Info, extra, None));
        }
    }

    /// Lines and bytes of log written so far, and lines suppressed.
    pub fn log_written(&self) -> (u64, u64, u64) {
        (self.log_lines.get(), self.log_bytes.get(), self.log_suppressed.get())
    }

    fn format(&self, msgid: &str, severity: Severity, extra: Vec<(&str, String)>, msg: Option<String>) -> String {
        session_line(&self.ctx, self.service, self.peer, &self.sid, msgid, severity, extra, msg)
    }

    /// Start recording the session's shell (once; later calls keep the
    /// first recording). Nothing happens when the decky does not record.
    pub fn start_recording(&mut self) {
        if self.recording.is_none() && self.ctx.recordings.is_some() {
            let shell = self.ctx.persona.users.first().map(|u| u.shell.clone()).unwrap_or_else(|| "/bin/sh".into());
            self.recording = Some(Recording::new(&shell, self.ctx.limits.max_recording_bytes));
        }
    }

    /// The terminal the client asked for, for the recording's header.
    pub fn record_terminal(&mut self, term: &str, width: u32, height: u32) {
        self.start_recording();
        if let Some(r) = self.recording.as_mut() {
            r.terminal(term, width, height);
        }
    }

    /// What the session sent to the attacker's terminal.
    pub fn record_output(&mut self, data: &[u8]) {
        if let Some(r) = self.recording.as_mut() {
            r.output(data);
        }
    }

    /// What the attacker typed.
    pub fn record_input(&mut self, data: &[u8]) {
        if let Some(r) = self.recording.as_mut() {
            r.input(data);
        }
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
        self.emit_closing(
            "disconnect",
            vec![("reason", reason.to_string()), ("duration_s", duration.clone()), ("bytes", bytes.clone())],
        );
        let mut fields: Vec<(&'static str, String)> = vec![
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
        if self.log_suppressed.get() > 0 {
            fields.push(("log_lines_suppressed", self.log_suppressed.get().to_string()));
        }
        let recording = self.recording.take().filter(|r| !r.is_empty());
        match (recording, self.ctx.recordings.clone()) {
            (Some(recording), Some(dir)) => {
                // The file is written off the async threads; the closing
                // line follows it, so it can name the file's size and hash
                // (and still comes after `disconnect`).
                let (ctx, service, peer, sid) = (self.ctx.clone(), self.service, self.peer, self.sid.clone());
                let write = move || {
                    match recording.finish(&dir, &ctx.name, &sid) {
                        Ok(written) => {
                            fields.push(("recording", written.path.display().to_string()));
                            fields.push(("recording_bytes", written.bytes.to_string()));
                            fields.push(("recording_sha256", written.sha256));
                        }
                        Err(e) => {
                            tracing::warn!(decky = %ctx.name, %sid, "session recording not written: {e}");
                            fields.push(("recording_error", e.to_string()));
                        }
                    }
                    let line =
                        session_line(&ctx, service, peer, &sid, "session_recorded", Severity::Info, fields, None);
                    ctx.sink.push(line);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => drop(runtime.spawn_blocking(write)),
                    Err(_) => write(),
                }
            }
            _ => self.emit_closing("session_recorded", fields),
        }
        self.finished = true;
    }
}

/// One line of a session: its common fields first, then `extra`.
#[allow(clippy::too_many_arguments)]
fn session_line(
    ctx: &DeckyContext,
    service: &str,
    peer: SocketAddr,
    sid: &str,
    msgid: &str,
    severity: Severity,
    extra: Vec<(&str, String)>,
    msg: Option<String>,
) -> String {
    let mut params = vec![
        ("src_ip".to_string(), peer.ip().to_string()),
        ("src_port".to_string(), peer.port().to_string()),
        ("sid".to_string(), sid.to_string()),
    ];
    params.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity,
        host: ctx.name.clone(),
        app: service.to_string(),
        msgid: msgid.to_string(),
        params,
        msg,
    })
}

/// A line about a connection that never became a session (refused at
/// accept): same HOST/APP/SD shape as a session's lines, without `sid`.
pub fn connection_refused(ctx: &DeckyContext, service: &str, peer: SocketAddr, reason: &str, also_refused: u64) {
    let mut params = vec![
        ("src_ip".to_string(), peer.ip().to_string()),
        ("src_port".to_string(), peer.port().to_string()),
        ("reason".to_string(), reason.to_string()),
    ];
    if also_refused > 0 {
        params.push(("refused_unlogged".to_string(), also_refused.to_string()));
    }
    ctx.sink.push(format_event(&RelayEvent {
        timestamp: time::OffsetDateTime::now_utc(),
        severity: Severity::Warning,
        host: ctx.name.clone(),
        app: service.to_string(),
        msgid: "connection_refused".to_string(),
        params,
        msg: Some(format!("connection from {peer} refused: {reason}")),
    }));
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
