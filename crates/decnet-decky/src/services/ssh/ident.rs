//! The client's identification line, judged the way the persona's sshd
//! judges it before any key exchange.
//!
//! A scanner that sends `GET / HTTP/1.0` to port 22 learns a lot from the
//! answer: OpenSSH 7.8 and later reply `Invalid SSH identification
//! string.` and close, older OpenSSH `Protocol mismatch.`, an SSH-1
//! client gets `Protocol major versions differ.`, and Dropbear skips
//! lines until it sees `SSH-`. [`IdentGate`] sits between the socket and
//! russh: it reads the first line, and either lets russh have it (and
//! everything after it, byte for byte) or writes the release's answer and
//! ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::persona::{Persona, SshProduct};

/// sshd reads at most this much for the identification line.
const MAX_IDENT: usize = 255;

/// How a server answers a client line that is not `SSH-2.0-…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentPolicy {
    /// OpenSSH 7.8 and later (the check moved to `kex.c`).
    OpenSsh,
    /// OpenSSH before 7.8 (`sshd.c`).
    OpenSshLegacy,
    /// Dropbear: lines before `SSH-` are skipped (russh does the same).
    Lenient,
}

impl IdentPolicy {
    pub fn of(persona: &Persona) -> IdentPolicy {
        if persona.ssh_product == SshProduct::Dropbear {
            return IdentPolicy::Lenient;
        }
        if super::release_version(persona) >= (7, 8) {
            IdentPolicy::OpenSsh
        } else {
            IdentPolicy::OpenSshLegacy
        }
    }

    /// What the server writes before closing on `line` (the client's first
    /// line, without its end), `None` to go on with the key exchange.
    pub fn refusal(self, line: &[u8]) -> Option<&'static str> {
        if self == IdentPolicy::Lenient {
            return None;
        }
        let legacy = self == IdentPolicy::OpenSshLegacy;
        if line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-") {
            return None;
        }
        if line.starts_with(b"SSH-1.") {
            return Some(if legacy {
                "Protocol major versions differ.\n"
            } else {
                "Protocol major versions differ.\r\n"
            });
        }
        Some(if legacy { "Protocol mismatch.\n" } else { "Invalid SSH identification string.\r\n" })
    }
}

enum State {
    /// Collecting the first line.
    Reading,
    /// Writing the refusal, `sent` bytes of it so far.
    Refusing(&'static str, usize),
    /// Replaying what was read, from `replayed`, then the socket directly.
    Passing {
        replayed: usize,
    },
    Refused,
}

/// The stream russh gets: the socket behind the identification check.
pub struct IdentGate<S> {
    inner: S,
    policy: IdentPolicy,
    read: Vec<u8>,
    state: State,
    /// The refused line (printable), for the session's end reason.
    pub refused: Arc<OnceLock<String>>,
}

impl<S> IdentGate<S> {
    pub fn new(inner: S, policy: IdentPolicy) -> IdentGate<S> {
        let state = if policy == IdentPolicy::Lenient { State::Passing { replayed: 0 } } else { State::Reading };
        IdentGate { inner, policy, read: Vec::new(), state, refused: Arc::new(OnceLock::new()) }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for IdentGate<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            match &mut me.state {
                State::Passing { replayed } => {
                    if *replayed < me.read.len() {
                        let n = (me.read.len() - *replayed).min(buf.remaining());
                        buf.put_slice(&me.read[*replayed..*replayed + n]);
                        *replayed += n;
                        if *replayed == me.read.len() {
                            me.read = Vec::new();
                            *replayed = 0;
                        }
                        return Poll::Ready(Ok(()));
                    }
                    return Pin::new(&mut me.inner).poll_read(cx, buf);
                }
                State::Reading => {
                    let mut chunk = [0u8; MAX_IDENT + 1];
                    let mut rb = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
                    if rb.filled().is_empty() {
                        // Closed before a whole line: russh sees the EOF.
                        me.state = State::Passing { replayed: 0 };
                        continue;
                    }
                    me.read.extend_from_slice(rb.filled());
                    let line = match me.read.iter().position(|b| *b == b'\n') {
                        Some(end) => &me.read[..end],
                        None if me.read.len() > MAX_IDENT => &me.read[..MAX_IDENT],
                        None => continue,
                    };
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    match me.policy.refusal(line) {
                        None => me.state = State::Passing { replayed: 0 },
                        Some(reply) => {
                            let _ = me.refused.set(crate::io::printable(&line[..line.len().min(64)]));
                            me.state = State::Refusing(reply, 0);
                        }
                    }
                }
                State::Refusing(reply, sent) => {
                    while *sent < reply.len() {
                        let n = ready!(Pin::new(&mut me.inner).poll_write(cx, &reply.as_bytes()[*sent..]))?;
                        if n == 0 {
                            break;
                        }
                        *sent += n;
                    }
                    ready!(Pin::new(&mut me.inner).poll_flush(cx))?;
                    me.state = State::Refused;
                }
                State::Refused => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "invalid SSH identification")))
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdentGate<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn each_release_line_answers_like_its_sshd() {
        let new = IdentPolicy::OpenSsh;
        assert_eq!(new.refusal(b"SSH-2.0-OpenSSH_9.6"), None);
        assert_eq!(new.refusal(b"SSH-1.99-PuTTY"), None);
        assert_eq!(new.refusal(b"GET / HTTP/1.0"), Some("Invalid SSH identification string.\r\n"));
        assert_eq!(new.refusal(b"SSH-1.5-old"), Some("Protocol major versions differ.\r\n"));
        assert_eq!(IdentPolicy::OpenSshLegacy.refusal(b"\x16\x03\x01"), Some("Protocol mismatch.\n"));
        assert_eq!(IdentPolicy::Lenient.refusal(b"GET / HTTP/1.0"), None);
    }

    #[tokio::test]
    async fn a_good_line_and_what_follows_reach_russh_byte_for_byte() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut gate = IdentGate::new(server, IdentPolicy::OpenSsh);
        // The identification and the start of KEXINIT in one segment.
        client.write_all(b"SSH-2.0-x\r\n\x00\x00\x01\x2cmore").await.unwrap();
        drop(client);
        let mut got = Vec::new();
        gate.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"SSH-2.0-x\r\n\x00\x00\x01\x2cmore");
        assert!(gate.refused.get().is_none());
    }

    #[tokio::test]
    async fn a_bad_line_is_answered_then_refused() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut gate = IdentGate::new(server, IdentPolicy::OpenSsh);
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut chunk = [0u8; 64];
        assert!(gate.read(&mut chunk).await.is_err());
        assert_eq!(gate.refused.get().map(String::as_str), Some("GET / HTTP/1.0"));
        let n = client.read(&mut chunk).await.unwrap();
        assert_eq!(&chunk[..n], b"Invalid SSH identification string.\r\n");
        // A line that never ends is cut at sshd's limit, not read forever.
        let (mut client, server) = tokio::io::duplex(4096);
        let mut gate = IdentGate::new(server, IdentPolicy::OpenSsh);
        client.write_all(&[b'A'; 1000]).await.unwrap();
        assert!(gate.read(&mut chunk).await.is_err());
    }
}
