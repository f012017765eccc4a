//! SSH honeypot: a real SSH server (russh, pure-Rust `ring` crypto) that
//! answers as the SSH server of the decky's persona: its banner, its host
//! key types ([`host_keys`]), its answer to a non-SSH first line
//! ([`ident`]), its failure delay, attempt limit and disconnect message,
//! its MOTD and `Last login` ([`motd`]). Every password and public-key
//! attempt is recorded with its `outcome`; passwords get in as the
//! persona's auth policy says ([`crate::auth`]); commands run in the fake
//! shell, for interactive shells (with or without a pty) and `ssh host
//! command`.
//!
//! Public keys are recorded and then refused: accepting an unknown key
//! would be odd for a real host, and refusing makes the client go on to
//! its password, which is the credential worth having. Port forwarding is
//! refused the way sshd with `AllowTcpForwarding no` refuses it: nothing
//! is ever connected to.

pub mod algorithms;
pub mod gex;
pub mod host_keys;
pub mod ident;
pub mod motd;
pub mod scp;
pub mod sftp;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::Rng;
use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session as SshSession};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, MethodKind, MethodSet, SshId};
use tokio::net::TcpStream;

use crate::capture::{Capture, Capturer};
use crate::event::{self, SharedSession};
use crate::io::{end_of, printable, End, Metered};
use crate::persona::{OsFamily, Persona, SshProduct};
use crate::rfc5424::Severity;
use crate::shell::line_editor::{Action, LineEditor};
use crate::shell::Shell;
use crate::DeckyContext;

/// `(major, minor)` of the persona's upstream SSH release (`8.9p1`,
/// `2022.83`), for behaviour that changed between releases.
pub fn release_version(persona: &Persona) -> (u32, u32) {
    let mut parts = persona.ssh_release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// sshd's per-user floor for a failed attempt (OpenSSH 7.8 and later):
/// 5 ms plus 0–4.3 ms from a hash of a secret drawn at each start and the
/// user name. Here the secret is per process and the decky's name is
/// hashed in, so deckies differ like separate hosts do.
fn user_specific_delay(decky: &str, user: &str) -> f64 {
    static SECRET: OnceLock<u64> = OnceLock::new();
    let secret = SECRET.get_or_init(rand::random);
    let digest = ring::digest::digest(&ring::digest::SHA512, format!("{secret}{decky}\0{user}").as_bytes());
    let peek = u32::from_be_bytes(digest.as_ref()[..4].try_into().expect("4 bytes"));
    0.005 + f64::from(peek) / 1e12
}

/// How long one failed password attempt for `user` takes on the
/// persona's server.
///
/// Debian, Ubuntu and CentOS run sshd with PAM, whose pam_unix asks for a
/// 2 s delay that libpam randomises to base × (0.5 + the mean of three
/// uniform draws), 1–3 s. OpenSSH 7.8 and later then pad every failure to
/// the user's floor doubled until it exceeds the time already spent, so a
/// failure lasts floor × 2^k: a real Debian 12 sshd gave 1.46, 1.85, 2.90,
/// 3.54, 3.70 s. Dropbear sleeps 250–350 ms; OpenSSH for Windows has no
/// PAM, only the floor.
pub fn failure_delay(persona: &Persona, decky: &str, user: &str) -> Duration {
    let mut rng = rand::rng();
    let pam = match (persona.ssh_product, persona.family) {
        (SshProduct::Dropbear, _) => return Duration::from_micros(250_000 + rng.random_range(0..100_000)),
        (SshProduct::OpenSsh, OsFamily::Windows) => 0.0,
        (SshProduct::OpenSsh, _) => 2.0 * (0.5 + (0..3).map(|_| rng.random::<f64>()).sum::<f64>() / 3.0),
    };
    if release_version(persona) < (7, 8) {
        return Duration::from_secs_f64(pam);
    }
    let mut total = user_specific_delay(decky, user);
    while total < pam {
        total *= 2.0;
    }
    Duration::from_secs_f64(total)
}

/// Failed attempts (passwords and refused public keys) before the server
/// gives up: OpenSSH's MaxAuthTries default, Dropbear's MAX_AUTH_TRIES.
pub fn max_auth_tries(persona: &Persona) -> u32 {
    match persona.ssh_product {
        SshProduct::OpenSsh => 6,
        SshProduct::Dropbear => 10,
    }
}

/// Whether root may log in with a password under the persona's sshd
/// config (`PermitRootLogin`; Dropbear allows it unless built with -w).
pub fn root_password_allowed(persona: &Persona) -> bool {
    persona.permit_root_login == "yes"
}

/// The methods the server offers, as sshd's `publickey,password`.
fn methods() -> MethodSet {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    methods
}

/// A failure that keeps every method open: sshd lists the same methods
/// after each failure (russh would otherwise drop the method that failed,
/// and the client would give up after one password).
fn try_again() -> Auth {
    Auth::Reject { proceed_with_methods: Some(methods()), partial_success: false }
}

/// Send `data` on `channel`, recording it as the session's output: every
/// byte a shell channel sends goes through here, so each is recorded once.
fn send(session: &SharedSession, ssh: &mut SshSession, channel: ChannelId, data: Vec<u8>) -> Result<(), russh::Error> {
    event::with(session, |s| s.record_output(&data));
    ssh.data(channel, data)
}

/// Longest forwarding target kept in a line.
const MAX_TARGET_CHARS: usize = 255;

struct ChannelState {
    pty: bool,
    shell: Option<Shell>,
    /// A pty's keystrokes go through readline-style editing; piped stdin
    /// (no pty) is split into lines as bash reads a script.
    editor: Option<LineEditor>,
    buf: Vec<u8>,
    last_cr: bool,
    /// The channel itself, kept from its opening until the client says
    /// what it is for: sftp and scp read it as a stream; a shell or a
    /// command drops it (russh then delivers data to the handler only; a
    /// kept channel nobody reads would stall the connection).
    channel: Option<Channel<Msg>>,
}

struct Handler {
    session: SharedSession,
    ctx: Arc<DeckyContext>,
    source: IpAddr,
    /// The persona's release, whose sshd the group exchange answers as.
    release: String,
    user: String,
    max_line: usize,
    channels: HashMap<ChannelId, ChannelState>,
    offered: HashSet<String>,
    /// Failed attempts on this connection (sshd's `authctxt->failures`).
    failures: u32,
    /// The server gave up on this client; later requests are not judged.
    gave_up: bool,
    /// Set once the session runs; used to send the give-up disconnect.
    handle: Arc<OnceLock<russh::server::Handle>>,
    /// Downloads, written files and uploads of this connection.
    capture: Capture,
    /// The client's and the decky's ends of the TCP connection (the shell's `SSH_CONNECTION`).
    peer: SocketAddr,
    local: SocketAddr,
}

impl Handler {
    fn crlf(pty: bool, text: &str) -> String {
        if pty {
            text.replace('\n', "\r\n")
        } else {
            text.to_string()
        }
    }

    /// Run one shell line on `channel`; closes the channel on `exit`.
    fn run_line(&mut self, channel: ChannelId, line: &[u8], ssh: &mut SshSession) -> Result<(), russh::Error> {
        let command = printable(line).trim().to_string();
        if !command.is_empty() {
            event::with(&self.session, |s| s.command(&command));
        }
        let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
        let Some(shell) = state.shell.as_mut() else { return Ok(()) };
        self.capture.settle(shell);
        let outcome = shell.run(&command);
        self.capture.drain(shell);
        let mut out = Self::crlf(state.pty, &outcome.output);
        if outcome.exit {
            if state.pty {
                out.push_str("logout\r\n");
            }
            send(&self.session, ssh, channel, out.into_bytes())?;
            ssh.exit_status_request(channel, outcome.status as u32)?;
            ssh.eof(channel)?;
            ssh.close(channel)?;
            self.channels.remove(&channel);
            return Ok(());
        }
        if state.pty {
            out.push_str(&shell.prompt());
        }
        send(&self.session, ssh, channel, out.into_bytes())?;
        Ok(())
    }

    /// Keystrokes on a pty: edited as readline would, echo sent back in
    /// one write per batch, each finished line run (and logged).
    fn keystrokes(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), russh::Error> {
        let mut echo = Vec::new();
        for &b in data {
            let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
            let (Some(editor), Some(shell)) = (state.editor.as_mut(), state.shell.as_ref()) else { return Ok(()) };
            let step = editor.feed(b, shell);
            echo.extend(step.echo);
            let Some(action) = step.action else { continue };
            if !echo.is_empty() {
                send(&self.session, ssh, channel, std::mem::take(&mut echo))?;
            }
            match action {
                Action::Line(line) => self.run_line(channel, line.as_bytes(), ssh)?,
                // bash leaves on Ctrl-D at an empty prompt as on `exit`.
                Action::Eof => self.run_line(channel, b"exit", ssh)?,
                Action::TooLong => {
                    // Same rule as every line protocol: an overlong line ends the session.
                    event::with(&self.session, |s| s.finish("line too long"));
                    return Err(russh::Error::Disconnect);
                }
            }
        }
        if !echo.is_empty() && self.channels.contains_key(&channel) {
            send(&self.session, ssh, channel, echo)?;
        }
        Ok(())
    }

    /// Stdin without a pty: lines as bash reads them from a pipe, no echo.
    fn piped(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), russh::Error> {
        for &b in data {
            let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
            match b {
                b'\n' if state.last_cr => state.last_cr = false,
                b'\r' | b'\n' => {
                    state.last_cr = b == b'\r';
                    let line = std::mem::take(&mut state.buf);
                    self.run_line(channel, &line, ssh)?;
                }
                // The control keys keep the meaning they had before a pty
                // editor existed, so piped sessions behave as they did.
                0x7f | 0x08 => {
                    state.last_cr = false;
                    state.buf.pop();
                }
                0x03 => {
                    state.last_cr = false;
                    state.buf.clear();
                }
                0x04 if state.buf.is_empty() => self.run_line(channel, b"exit", ssh)?,
                _ => {
                    state.last_cr = false;
                    if state.buf.len() >= self.max_line {
                        event::with(&self.session, |s| s.finish("line too long"));
                        return Err(russh::Error::Disconnect);
                    }
                    state.buf.push(b);
                }
            }
        }
        Ok(())
    }

    /// One more failed attempt; at the server's limit it gives up the way
    /// the persona's server does. OpenSSH sends `SSH_MSG_DISCONNECT`
    /// (protocol error, "Too many authentication failures"); Dropbear
    /// exits without a message, so the connection just closes.
    fn failed(&mut self) -> Result<(), russh::Error> {
        self.failures += 1;
        if self.failures < max_auth_tries(&self.ctx.persona) {
            return Ok(());
        }
        self.gave_up = true;
        event::with(&self.session, |s| s.finish("too many authentication failures"));
        match (self.ctx.persona.ssh_product, self.handle.get()) {
            (SshProduct::OpenSsh, Some(handle)) => {
                // Through the handle, because an auth callback has no
                // session to write to; spawned, because the session loop
                // only drains the handle's queue after this returns.
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ProtocolError,
                            "Too many authentication failures".into(),
                            "".into(),
                        )
                        .await;
                });
                Ok(())
            }
            _ => Err(russh::Error::Disconnect),
        }
    }

    /// Record a refused forwarding request (an attacker looking for a pivot).
    fn forwarding(&self, kind: &str, host: &str, port: u32) {
        let target: String = format!("{host}:{port}").chars().take(MAX_TARGET_CHARS).collect();
        event::with(&self.session, |s| {
            s.emit(
                "port_forward",
                Severity::Warning,
                vec![("kind", kind.to_string()), ("target", target.clone()), ("outcome", "refused".into())],
                Some(format!("{kind} {target} refused")),
            )
        });
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn lookup_dh_gex_group(
        &mut self,
        params: &russh::client::GexParams,
    ) -> Result<Option<russh::kex::dh::groups::DhGroup>, Self::Error> {
        Ok(gex::choose(&self.release, params))
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // "none" is how a client asks for the method list; sshd does not
        // count it as a failure.
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.gave_up {
            return Err(russh::Error::Disconnect);
        }
        let persona = self.ctx.persona.clone();
        let verdict =
            self.ctx.auth.password(&persona.auth, root_password_allowed(&persona), self.source, user, password);
        event::with(&self.session, |s| {
            s.login_attempt(user, password.as_bytes(), "password", vec![("outcome", verdict.outcome().to_string())])
        });
        if verdict.accepted() {
            self.user = user.to_string();
            return Ok(Auth::Accept);
        }
        // The failure path of the real server takes its time (PAM's delay);
        // a refused root takes as long as any wrong password.
        tokio::time::sleep(failure_delay(&persona, &self.ctx.name, user)).await;
        self.failed()?;
        Ok(try_again())
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if self.gave_up {
            return Err(russh::Error::Disconnect);
        }
        let key = offer.public_key;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        // The offered set is bounded by the attempt limit: every offer
        // counts as a failure, and the connection ends at the limit.
        if self.offered.insert(format!("{user}\0{fingerprint}")) {
            let openssh = key.to_openssh().unwrap_or_default();
            event::with(&self.session, |s| {
                s.login_attempt(
                    user,
                    openssh.as_bytes(),
                    "publickey",
                    vec![
                        ("key_type", offer.algorithm.to_string()),
                        ("key_fingerprint", fingerprint.clone()),
                        ("outcome", "failure".to_string()),
                    ],
                )
            });
        }
        self.failed()?;
        Ok(try_again())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _ssh: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // A few channels per connection are plenty for a shell; more is a
        // client trying to make the decky hold state for it. Dropping the
        // reply handle refuses the channel.
        if self.channels.len() < 4 {
            self.channels.insert(
                channel.id(),
                ChannelState {
                    pty: false,
                    shell: None,
                    editor: None,
                    buf: Vec::new(),
                    last_cr: false,
                    channel: Some(channel),
                },
            );
            reply.accept().await;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _ssh: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.forwarding("direct-tcpip", host_to_connect, port_to_connect);
        // sshd's words when forwarding is off: "administratively
        // prohibited: open failed" on the client.
        reply.reject(ChannelOpenFailure::Other { code: 1, reason: "open failed".into() }).await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _ssh: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        self.forwarding("tcpip-forward", address, *port);
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        ssh: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pty = true;
            event::with(&self.session, |s| s.record_terminal(term, cols, rows));
        }
        ssh.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, ssh: &mut SshSession) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
        state.channel = None;
        let mut shell = Shell::new(&self.user, self.ctx.persona.clone());
        shell.set_ssh_connection(self.peer, self.local, state.pty);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let greeting = if state.pty {
            let text = motd::greeting(&self.ctx.persona, &self.user, now).replace('\n', "\r\n");
            format!("{text}{}", shell.prompt())
        } else {
            String::new()
        };
        state.shell = Some(shell);
        event::with(&self.session, |s| s.start_recording());
        if state.pty {
            state.editor = Some(LineEditor::new(self.max_line));
        }
        ssh.channel_success(channel)?;
        if !greeting.is_empty() {
            send(&self.session, ssh, channel, greeting.into_bytes())?;
        }
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), Self::Error> {
        ssh.channel_success(channel)?;
        let command = printable(&data[..data.len().min(self.max_line)]);
        let kept = self.channels.get_mut(&channel).and_then(|state| state.channel.take());
        if let (Some(mode), Some(kept)) = (scp::parse(command.trim()), kept) {
            // Legacy scp: the transfer runs on the channel in a task of its
            // own; the channel keeps its slot in the table until it closes.
            event::with(&self.session, |s| s.command(command.trim()));
            let shell = Shell::new(&self.user, self.ctx.persona.clone());
            tokio::spawn(scp_transfer(kept, mode, shell, self.capture.capturer(), self.ctx.clone()));
            return Ok(());
        }
        event::with(&self.session, |s| {
            s.command(command.trim());
            s.start_recording();
            s.record_input(command.as_bytes());
        });
        let mut shell = Shell::new(&self.user, self.ctx.persona.clone());
        shell.interactive = false;
        let pty = self.channels.get(&channel).is_some_and(|c| c.pty);
        shell.set_ssh_connection(self.peer, self.local, pty);
        let outcome = shell.run(&command);
        // A download fetched for the command (fetching on) ends before the
        // command does, as the real tool's transfer would.
        self.capture.drain(&mut shell);
        self.capture.finish().await;
        // `ssh host cmd` keeps the streams apart, as sshd does: stderr
        // travels as extended data, and the exit status is the command's.
        if !outcome.stdout.is_empty() {
            send(&self.session, ssh, channel, outcome.stdout)?;
        }
        if !outcome.stderr.is_empty() {
            event::with(&self.session, |s| s.record_output(&outcome.stderr));
            ssh.extended_data(channel, 1, outcome.stderr)?;
        }
        ssh.exit_status_request(channel, outcome.status as u32)?;
        ssh.eof(channel)?;
        ssh.close(channel)?;
        self.channels.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        ssh: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let kept = self.channels.get_mut(&channel).and_then(|state| state.channel.take());
        match (name, kept) {
            ("sftp", Some(kept)) => {
                ssh.channel_success(channel)?;
                event::with(&self.session, |s| {
                    s.emit(
                        "subsystem",
                        Severity::Info,
                        vec![("name", "sftp".into())],
                        Some("subsystem request sftp".into()),
                    )
                });
                let shell = Shell::new(&self.user, self.ctx.persona.clone());
                let sftp = sftp::Sftp::new(shell, self.capture.capturer(), max_upload(&self.ctx));
                let handle = self.handle.get().cloned();
                let stream = sftp::EndOnError::new(kept.into_stream()).on_end(async move {
                    // As sshd when sftp-server exits: status 0, EOF, close.
                    if let Some(handle) = handle {
                        let _ = handle.exit_status_request(channel, 0).await;
                        let _ = handle.eof(channel).await;
                        let _ = handle.close(channel).await;
                    }
                });
                russh_sftp::server::run(stream, sftp).await;
            }
            // sshd answers an unknown subsystem with a failure.
            _ => ssh.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), Self::Error> {
        if self.channels.get(&channel).is_some_and(|state| state.shell.is_some()) {
            event::with(&self.session, |s| s.record_input(data));
        }
        match self.channels.get(&channel) {
            Some(state) if state.shell.is_some() && state.editor.is_some() => self.keystrokes(channel, data, ssh),
            Some(state) if state.shell.is_some() => self.piped(channel, data, ssh),
            _ => Ok(()),
        }
    }

    async fn channel_close(&mut self, channel: ChannelId, _ssh: &mut SshSession) -> Result<(), Self::Error> {
        // The slot is free again (sftp and scp channels hold theirs until here).
        self.channels.remove(&channel);
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, ssh: &mut SshSession) -> Result<(), Self::Error> {
        // Piped stdin ended: run what is left, then end like `bash` does.
        let leftover = match self.channels.get_mut(&channel) {
            Some(state) if state.shell.is_some() => match state.editor.as_mut() {
                Some(editor) => editor.take_line().into_bytes(),
                None => std::mem::take(&mut state.buf),
            },
            _ => return Ok(()),
        };
        if !leftover.is_empty() {
            self.run_line(channel, &leftover, ssh)?;
        }
        self.capture.finish().await;
        if self.channels.remove(&channel).is_some() {
            ssh.exit_status_request(channel, 0)?;
            ssh.eof(channel)?;
            ssh.close(channel)?;
        }
        Ok(())
    }
}

/// The largest file scp or sftp accepts: what the session filesystem can
/// hold and the quarantine can keep.
fn max_upload(ctx: &DeckyContext) -> u64 {
    let fs = crate::shell::fs::FsLimits::default().max_bytes as u64;
    ctx.artifacts.as_ref().map_or(fs, |a| fs.min(a.store.limits().max_file))
}

/// One legacy scp transfer on its channel, then the exit status scp's
/// client waits for.
async fn scp_transfer(
    mut channel: Channel<Msg>,
    mode: scp::Mode,
    mut shell: Shell,
    capturer: Capturer,
    ctx: Arc<DeckyContext>,
) {
    let status = match mode {
        scp::Mode::Sink { target, recursive } => {
            let mut sink = scp::Sink::new(&target, recursive, &shell, max_upload(&ctx));
            let mut status = 0;
            if channel.data_bytes(&b"\0"[..]).await.is_ok() {
                while let Some(msg) = channel.wait().await {
                    let ChannelMsg::Data { data } = msg else {
                        if matches!(msg, ChannelMsg::Eof | ChannelMsg::Close) {
                            break;
                        }
                        continue;
                    };
                    let step = sink.feed(&data, &mut shell);
                    for (path, bytes) in step.files {
                        if bytes.is_empty() {
                            continue;
                        }
                        // Stored before the file is acknowledged: the client
                        // leaves right after the last one, and the artifact
                        // line must come before the session's closing lines.
                        if let Some(stored) = capturer.upload(&path, bytes) {
                            let _ = stored.await;
                        }
                    }
                    if !step.reply.is_empty() && channel.data_bytes(step.reply).await.is_err() {
                        break;
                    }
                    if let Some(end) = step.end {
                        status = end;
                        break;
                    }
                }
            }
            status
        }
        scp::Mode::Source { path } => scp_source(&mut channel, &path, &shell).await,
    };
    let _ = channel.exit_status(status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// Wait for the client's one-byte acknowledgement; false when it sent an
/// error or left.
async fn scp_ack(channel: &mut Channel<Msg>) -> bool {
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) if !data.is_empty() => return data[0] == 0,
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return false,
            Some(_) => {}
        }
    }
}

async fn scp_source(channel: &mut Channel<Msg>, path: &str, shell: &Shell) -> u32 {
    if !scp_ack(channel).await {
        return 1;
    }
    match scp::source(path, shell) {
        Ok((header, bytes)) => {
            if channel.data_bytes(header).await.is_err() || !scp_ack(channel).await {
                return 1;
            }
            let mut body = bytes;
            body.push(0);
            if channel.data_bytes(body).await.is_err() || !scp_ack(channel).await {
                return 1;
            }
            0
        }
        Err(error) => {
            let _ = channel.data_bytes(error).await;
            1
        }
    }
}

/// Ends the russh session task when the serving future is dropped (time
/// limit, service closed): that task runs on its own otherwise.
struct DisconnectOnDrop(russh::server::Handle);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        let handle = self.0.clone();
        tokio::spawn(async move {
            let _ = handle.disconnect(russh::Disconnect::ByApplication, "session closed".into(), "en".into()).await;
        });
    }
}

/// The `ssh` entry of [`super::REGISTRY`].
pub struct Ssh;

impl super::Protocol for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }
    fn default_port(&self) -> u16 {
        22
    }
    fn prepare(&self, ctx: &DeckyContext) -> Result<(), String> {
        // RSA takes seconds: start now, so the first client rarely waits.
        ctx.host_keys.prefetch();
        Ok(())
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let (ctx, peer) = event::with(&session, |s| (s.context().clone(), s.peer));
    let source = peer.ip();
    let local = io.get_ref().local_addr().unwrap_or(peer);
    let keys = match ctx.host_keys.get().await {
        Ok(k) => k,
        Err(e) => return End::Io(e),
    };
    let persona = ctx.persona.clone();
    let config = Arc::new(russh::server::Config {
        server_id: SshId::Standard(Cow::Owned(persona.ssh_banner.clone())),
        methods: methods(),
        // The failure delay is the handler's (the release's own); russh's
        // constant one would add to it.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: keys.as_ref().clone(),
        // The KEXINIT of the release the persona names (see algorithms.rs).
        preferred: algorithms::preferred(&ctx.persona.release),
        inactivity_timeout: Some(ctx.limits.idle),
        // The handler enforces the release's limit and message; this is
        // only a backstop a little above it.
        max_auth_attempts: max_auth_tries(&persona) as usize + 2,
        nodelay: true,
        // Dropbear sends its KEXINIT with its banner, unasked (OpenSSH waits
        // for the client's line): scanners that read one line and then a
        // packet, as nmap's ssh-hostkey does, stall on the real one.
        kexinit_with_id: persona.ssh_product == SshProduct::Dropbear,
        ..Default::default()
    });
    let handle = Arc::new(OnceLock::new());
    let handler = Handler {
        session: session.clone(),
        ctx: ctx.clone(),
        source,
        release: ctx.persona.release.clone(),
        user: "root".to_string(),
        max_line: ctx.limits.max_line,
        channels: HashMap::new(),
        offered: HashSet::new(),
        failures: 0,
        gave_up: false,
        handle: handle.clone(),
        capture: Capture::new(&session),
        peer,
        local,
    };
    // russh reads each packet with two exact-size reads (its first block,
    // then the rest): without a buffer that is two or three recv calls per
    // packet, ~30 per login. 4 KiB holds the largest kex packet a client
    // sends (sntrup761 + x25519, ~1.2 KiB).
    let io = tokio::io::BufReader::with_capacity(4096, io);
    let gate = ident::IdentGate::new(io, ident::IdentPolicy::of(&persona));
    let refused = gate.refused.clone();
    let bad_ident = |e: russh::Error| match refused.get() {
        Some(line) => End::Io(format!("invalid SSH identification {line:?}")),
        None => end_of_ssh(e),
    };
    let running = match russh::server::run_stream(config, gate, handler).await {
        Ok(r) => r,
        Err(e) => return bad_ident(e),
    };
    let _ = handle.set(running.handle());
    let _guard = DisconnectOnDrop(running.handle());
    match running.await {
        Ok(()) => End::ClientClosed,
        Err(e) => bad_ident(e),
    }
}

fn end_of_ssh(e: russh::Error) -> End {
    match e {
        russh::Error::IO(io) => end_of(io),
        russh::Error::InactivityTimeout => End::Idle,
        russh::Error::Disconnect | russh::Error::HUP => End::ClientClosed,
        other => End::Io(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(release: &str) -> Persona {
        Persona::derive("d", None, None, 0).with_overrides(&serde_json::json!({ "release": release })).unwrap()
    }

    #[test]
    fn a_failure_takes_the_release_s_time() {
        let debian = persona("debian-12");
        let floor = user_specific_delay("d", "admin");
        assert!((0.005..0.0093).contains(&floor), "{floor}");
        for _ in 0..200 {
            // PAM's 1–3 s, padded to the user's floor × 2^k.
            let d = failure_delay(&debian, "d", "admin").as_secs_f64();
            assert!((1.0..6.0).contains(&d), "{d}");
            let steps = (d / floor).log2();
            assert!((steps - steps.round()).abs() < 1e-6, "{d} is not {floor} × 2^k");
            let centos = failure_delay(&persona("centos-7"), "d", "admin").as_secs_f64();
            assert!((1.0..3.0).contains(&centos), "{centos}");
            let camera = failure_delay(&persona("busybox-camera"), "d", "admin").as_secs_f64();
            assert!((0.25..0.35).contains(&camera), "{camera}");
            let windows = failure_delay(&persona("windows-10"), "d", "admin").as_secs_f64();
            assert!((0.005..0.0093).contains(&windows), "{windows}");
        }
        assert_eq!(release_version(&debian), (9, 2));
        assert_eq!(release_version(&persona("busybox-camera")), (2022, 83));
    }
}
