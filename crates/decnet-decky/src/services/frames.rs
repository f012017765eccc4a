//! Bounded I/O for the binary protocols (mysql, postgres, mssql): exact
//! reads of lengths the protocol file has already checked, each under
//! the session's idle timeout, and writes that give up on a client that
//! stops reading. Line protocols use [`crate::io::Conn`] instead.
//!
//! Also the `login_attempt` of a challenge/response exchange, where no
//! clear password exists: `username`, `hash` (the crackable line) and
//! `hash_type`, which the ingester stores as a credential of that kind.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::event::Session;
use crate::io::{end_of, End, Metered};
use crate::rfc5424::Severity;

/// A session's stream with its idle timeout.
pub struct Frames<S> {
    io: Metered<S>,
    idle: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Frames<S> {
    pub fn new(io: Metered<S>, idle: Duration) -> Self {
        Frames { io, idle }
    }

    /// Fill `buf` completely. The caller sized it from a length it checked
    /// against its protocol's bound: nothing here allocates.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), End> {
        match tokio::time::timeout(self.idle, self.io.read_exact(buf)).await {
            Err(_) => Err(End::Idle),
            Ok(Err(e)) => Err(end_of(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// `n` bytes (already checked against the protocol's bound) in a new buffer.
    pub async fn read_vec(&mut self, n: usize) -> Result<Vec<u8>, End> {
        let mut buf = vec![0u8; n];
        self.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Write everything or fail after the idle timeout.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        let io = &mut self.io;
        match tokio::time::timeout(self.idle, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        {
            Err(_) => Err(End::Idle),
            Ok(Err(e)) => Err(end_of(e)),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// A `login_attempt` line for a challenge/response exchange: the hash a
/// cracker takes instead of a password.
pub fn login_hash(session: &mut Session, username: &str, hash: &str, hash_type: &str, extra: Vec<(&str, String)>) {
    session.username = Some(username.to_string());
    let mut fields =
        vec![("username", username.to_string()), ("hash", hash.to_string()), ("hash_type", hash_type.to_string())];
    fields.extend(extra);
    session.emit("login_attempt", Severity::Notice, fields, Some(format!("{hash_type} login attempt for {username}")));
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` as text for a log field: lossy UTF-8, control characters
/// escaped, at most `max` characters (the session line stays one line).
pub fn text(bytes: &[u8], max: usize) -> String {
    crate::io::printable(bytes).chars().take(max).collect()
}
