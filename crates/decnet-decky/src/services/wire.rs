//! Bounded reads and writes for the binary, length-prefixed protocols
//! (smb, rdp, vnc, ldap): [`crate::io::Conn`] reads lines, these read
//! frames. Every read waits at most the session's idle time, and a frame's
//! announced length is checked against a cap before anything is
//! allocated, so a client that announces 4 GiB costs nothing.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::io::{end_of, End};

/// A binary stream with the session's idle timeout.
pub struct Wire<S> {
    stream: S,
    idle: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S, idle: Duration) -> Self {
        Wire { stream, idle }
    }

    /// Fill `buf` or end the session (idle, closed, byte budget spent).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), End> {
        match tokio::time::timeout(self.idle, self.stream.read_exact(buf)).await {
            Err(_) => Err(End::Idle),
            Ok(Err(e)) => Err(end_of(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// `n` more bytes, refused (the session ends) when `n` exceeds `max`.
    pub async fn read_vec(&mut self, n: usize, max: usize) -> Result<Vec<u8>, End> {
        if n > max {
            return Err(oversize(n, max));
        }
        let mut buf = vec![0u8; n];
        self.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// One byte.
    pub async fn read_u8(&mut self) -> Result<u8, End> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b).await?;
        Ok(b[0])
    }

    /// One BER/DER element (LDAP messages, CredSSP's TSRequest): its tag
    /// and contents, the length checked against `max` before reading.
    pub async fn read_tlv(&mut self, max: usize) -> Result<(u8, Vec<u8>), End> {
        let mut head = [0u8; 2];
        self.read_exact(&mut head).await?;
        let len = if head[1] < 0x80 {
            head[1] as usize
        } else {
            let n = (head[1] & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(End::Io("unsupported BER length".into()));
            }
            let mut b = [0u8; 4];
            self.read_exact(&mut b[4 - n..]).await?;
            u32::from_be_bytes(b) as usize
        };
        Ok((head[0], self.read_vec(len, max).await?))
    }

    /// Write everything within the idle time.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        let w = &mut self.stream;
        match tokio::time::timeout(self.idle, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        {
            Err(_) => Err(End::Idle),
            Ok(Err(e)) => Err(end_of(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// The end of a session whose client announced a frame over the cap.
pub fn oversize(n: usize, max: usize) -> End {
    End::Io(format!("frame of {n} bytes over the {max}-byte cap"))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// UTF-16LE of `s` (the wire form of Windows strings).
pub fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// `bytes` read as UTF-16LE (an odd last byte dropped, bad surrogates
/// replaced), at most `max` characters.
pub fn from_utf16le(bytes: &[u8], max: usize) -> String {
    let units = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).take(max).collect()
}

/// Windows FILETIME (100 ns since 1601) of unix seconds + nanoseconds.
pub fn filetime(now: time::OffsetDateTime) -> u64 {
    let unix_100ns = now.unix_timestamp_nanos() / 100;
    (unix_100ns + 116_444_736_000_000_000).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversize_announcement_ends_before_allocating_and_a_short_stream_ends_as_closed() {
        let (client, server) = tokio::io::duplex(64);
        let mut wire = Wire::new(server, Duration::from_secs(1));
        assert!(matches!(wire.read_vec(usize::MAX, 1024).await, Err(End::Io(_))));
        drop(client);
        assert_eq!(wire.read_vec(4, 1024).await, Err(End::ClientClosed));
    }

    #[tokio::test]
    async fn ber_elements_read_with_their_length_bounded() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1024);
        let mut wire = Wire::new(server, Duration::from_secs(1));
        client.write_all(&[0x30, 0x82, 0x00, 0x02, 7, 8, 0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]).await.unwrap();
        assert_eq!(wire.read_tlv(1024).await, Ok((0x30, vec![7, 8])));
        assert!(matches!(wire.read_tlv(1024).await, Err(End::Io(_))), "2 GiB announced");
        client.write_all(&[0x30, 0x80]).await.unwrap();
        assert!(matches!(wire.read_tlv(1024).await, Err(End::Io(_))), "indefinite length");
    }

    #[tokio::test]
    async fn a_silent_client_ends_idle() {
        let (_client, server) = tokio::io::duplex(64);
        let mut wire = Wire::new(server, Duration::from_millis(50));
        assert_eq!(wire.read_u8().await, Err(End::Idle));
    }

    #[test]
    fn utf16_round_trips_and_bounds_and_filetime_is_windows_epoch() {
        assert_eq!(from_utf16le(&utf16le("Ädmin"), 64), "Ädmin");
        assert_eq!(from_utf16le(&utf16le("administrator"), 5), "admin");
        assert_eq!(from_utf16le(&[0x41, 0x00, 0x42], 64), "A");
        assert_eq!(filetime(time::OffsetDateTime::UNIX_EPOCH), 116_444_736_000_000_000);
    }
}
