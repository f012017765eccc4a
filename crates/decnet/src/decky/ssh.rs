//! SSH honeypot: a real SSH server (russh, pure-Rust `ring` crypto) that
//! presents an Ubuntu OpenSSH banner, completes key exchange, records
//! every password and public-key attempt, accepts any password (after
//! recording it), and gives a fake shell whose commands are logged, for
//! interactive shells (with or without a pty) and `ssh host command`.
//!
//! Public keys are recorded and then refused: accepting an unknown key
//! would be odd for a real host, and refusing makes the client go on to
//! its password, which is the credential worth having.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session as SshSession};
use russh::{Channel, ChannelId, MethodKind, MethodSet, SshId};
use tokio::net::TcpStream;

use super::event::{self, SharedSession};
use super::io::{end_of, printable, End, Metered};
use super::shell::Shell;

/// What the server says first; an Ubuntu 22.04 OpenSSH.
pub const BANNER: &str = "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6";

const MOTD: &str = "Welcome to Ubuntu 22.04.3 LTS (GNU/Linux 5.15.0-91-generic x86_64)\r\n\r\n \
* Documentation:  https://help.ubuntu.com\r\n\r\nLast login: Fri Dec  1 09:12:44 2023 from 10.0.0.5\r\n";

/// The host key of a decky: derived from a per-installation seed and the
/// decky's name, so a decky keeps its fingerprint across restarts (a real
/// host does) while two deckies never share one.
pub fn host_key(seed: &[u8], decky: &str) -> russh::keys::PrivateKey {
    let mut material = seed.to_vec();
    material.extend_from_slice(b"\0decnet-ssh-host-key\0");
    material.extend_from_slice(decky.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&key))
}

struct ChannelState {
    pty: bool,
    shell: Option<Shell>,
    buf: Vec<u8>,
    last_cr: bool,
}

struct Handler {
    session: SharedSession,
    decky: String,
    user: String,
    max_line: usize,
    channels: HashMap<ChannelId, ChannelState>,
    offered: HashSet<String>,
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
        let outcome = shell.run(&command);
        let mut out = Self::crlf(state.pty, &outcome.output);
        if outcome.exit {
            if state.pty {
                out.push_str("logout\r\n");
            }
            ssh.data(channel, out.into_bytes())?;
            ssh.exit_status_request(channel, 0)?;
            ssh.eof(channel)?;
            ssh.close(channel)?;
            self.channels.remove(&channel);
            return Ok(());
        }
        if state.pty {
            out.push_str(&shell.prompt());
        }
        ssh.data(channel, out.into_bytes())?;
        Ok(())
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        event::with(&self.session, |s| s.login_attempt(user, password.as_bytes(), "password", vec![]));
        self.user = user.to_string();
        Ok(Auth::Accept)
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let key = offer.public_key;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if self.offered.insert(format!("{user}\0{fingerprint}")) {
            let openssh = key.to_openssh().unwrap_or_default();
            event::with(&self.session, |s| {
                s.login_attempt(
                    user,
                    openssh.as_bytes(),
                    "publickey",
                    vec![("key_type", offer.algorithm.to_string()), ("key_fingerprint", fingerprint.clone())],
                )
            });
        }
        Ok(Auth::reject())
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
            self.channels
                .insert(channel.id(), ChannelState { pty: false, shell: None, buf: Vec::new(), last_cr: false });
            reply.accept().await;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        ssh: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pty = true;
        }
        ssh.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, ssh: &mut SshSession) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
        let shell = Shell::new(&self.user, &self.decky);
        let greeting = if state.pty { format!("{MOTD}{}", shell.prompt()) } else { String::new() };
        state.shell = Some(shell);
        ssh.channel_success(channel)?;
        if !greeting.is_empty() {
            ssh.data(channel, greeting.into_bytes())?;
        }
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), Self::Error> {
        ssh.channel_success(channel)?;
        let command = printable(&data[..data.len().min(self.max_line)]);
        event::with(&self.session, |s| s.command(command.trim()));
        let mut shell = Shell::new(&self.user, &self.decky);
        let outcome = shell.run(&command);
        ssh.data(channel, outcome.output.into_bytes())?;
        ssh.exit_status_request(channel, 0)?;
        ssh.eof(channel)?;
        ssh.close(channel)?;
        self.channels.remove(&channel);
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], ssh: &mut SshSession) -> Result<(), Self::Error> {
        for &b in data {
            let Some(state) = self.channels.get_mut(&channel) else { return Ok(()) };
            if state.shell.is_none() {
                return Ok(());
            }
            let pty = state.pty;
            match b {
                b'\n' if state.last_cr => state.last_cr = false,
                b'\r' | b'\n' => {
                    state.last_cr = b == b'\r';
                    if pty {
                        ssh.data(channel, b"\r\n".to_vec())?;
                    }
                    let line = std::mem::take(&mut state.buf);
                    self.run_line(channel, &line, ssh)?;
                }
                0x7f | 0x08 => {
                    state.last_cr = false;
                    if state.buf.pop().is_some() && pty {
                        ssh.data(channel, b"\x08 \x08".to_vec())?;
                    }
                }
                0x03 => {
                    state.last_cr = false;
                    state.buf.clear();
                    if pty {
                        let prompt = state.shell.as_ref().map(|s| s.prompt()).unwrap_or_default();
                        ssh.data(channel, format!("^C\r\n{prompt}").into_bytes())?;
                    }
                }
                0x04 if state.buf.is_empty() => {
                    self.run_line(channel, b"exit", ssh)?;
                }
                _ => {
                    state.last_cr = false;
                    if state.buf.len() >= self.max_line {
                        // Same rule as every line protocol: an overlong line ends the session.
                        event::with(&self.session, |s| s.finish("line too long"));
                        return Err(russh::Error::Disconnect);
                    }
                    state.buf.push(b);
                    if pty {
                        ssh.data(channel, vec![b])?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, ssh: &mut SshSession) -> Result<(), Self::Error> {
        // Piped stdin ended: run what is left, then end like `bash` does.
        let leftover = match self.channels.get_mut(&channel) {
            Some(state) if state.shell.is_some() => std::mem::take(&mut state.buf),
            _ => return Ok(()),
        };
        if !leftover.is_empty() {
            self.run_line(channel, &leftover, ssh)?;
        }
        if self.channels.remove(&channel).is_some() {
            ssh.exit_status_request(channel, 0)?;
            ssh.eof(channel)?;
            ssh.close(channel)?;
        }
        Ok(())
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

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let ctx = event::with(&session, |s| s.context().clone());
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    let config = Arc::new(russh::server::Config {
        server_id: SshId::Standard(Cow::Borrowed(BANNER)),
        methods,
        // A short, constant delay on rejection (russh's timing defence)
        // that does not make a scan crawl.
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![ctx.host_key.clone()],
        inactivity_timeout: Some(ctx.limits.idle),
        max_auth_attempts: 10,
        nodelay: true,
        ..Default::default()
    });
    let handler = Handler {
        session: session.clone(),
        decky: ctx.name.clone(),
        user: "root".to_string(),
        max_line: ctx.limits.max_line,
        channels: HashMap::new(),
        offered: HashSet::new(),
    };
    let running = match russh::server::run_stream(config, io, handler).await {
        Ok(r) => r,
        Err(e) => return end_of_ssh(e),
    };
    let _guard = DisconnectOnDrop(running.handle());
    match running.await {
        Ok(()) => End::ClientClosed,
        Err(e) => end_of_ssh(e),
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
