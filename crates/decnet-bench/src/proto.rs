//! The two systems under test, spoken raw: the decnet bus frame protocol
//! over a UNIX socket and the NATS text protocol over TCP.
//!
//! Why raw on both sides: a comparison through two different client
//! libraries measures the libraries (async-nats batches, buffers and
//! acknowledges differently from our SDK). Here both sides get the same
//! shape: one blocking socket per publisher and per subscriber, writes
//! through a 64 KiB buffer, reads into a 256 KiB buffer parsed in place,
//! no decode of the event beyond finding its body. Only what a load
//! generator needs is implemented: HELLO/SUB/PUB/EVT for the bus,
//! CONNECT/SUB/PUB/MSG/PING/PONG for NATS.

use anyhow::Context;
use decnet_bus::frame::{encode_frame, FrameSpan, Scan, Verb};
use std::io::{self, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where the workload runs.
#[derive(Debug, Clone)]
pub enum Target {
    Bus(PathBuf),
    /// `host:port` of a nats-server.
    Nats(String),
}

impl Target {
    pub fn label(&self) -> &'static str {
        match self {
            Target::Bus(_) => "decnet bus",
            Target::Nats(_) => "nats-server",
        }
    }

    pub fn short(&self) -> &'static str {
        match self {
            Target::Bus(_) => "bus",
            Target::Nats(_) => "nats",
        }
    }

    /// `nats://host:port` or `host:port`.
    pub fn nats(url: &str) -> Target {
        Target::Nats(url.strip_prefix("nats://").unwrap_or(url).trim_end_matches('/').to_string())
    }

    /// Open and greet one connection.
    pub fn connect(&self, name: &str) -> anyhow::Result<Conn> {
        let stream = match self {
            Target::Bus(path) => Stream::Unix(
                UnixStream::connect(path)
                    .with_context(|| format!("cannot connect to the bus at {}", path.display()))?,
            ),
            Target::Nats(addr) => {
                let s = TcpStream::connect(addr).with_context(|| format!("cannot connect to NATS at {addr}"))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        let reader = stream.try_clone()?;
        let mut conn = Conn {
            nats: matches!(self, Target::Nats(_)),
            w: BufWriter::with_capacity(64 * 1024, stream),
            reader: Some(EventReader::new(reader, matches!(self, Target::Nats(_)))),
            next_sid: 1,
        };
        conn.greet(name)?;
        Ok(conn)
    }
}

/// A UNIX or TCP socket.
#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection: the writing side, and its reader until taken.
pub struct Conn {
    nats: bool,
    w: BufWriter<Stream>,
    reader: Option<EventReader>,
    next_sid: u64,
}

impl Conn {
    fn greet(&mut self, name: &str) -> anyhow::Result<()> {
        if self.nats {
            // The server speaks first (INFO); CONNECT without verbose mode,
            // so no +OK per command, like the bus.
            let reader = self.reader.as_mut().expect("reader present at connect");
            let info = reader.next_line().context("NATS server sent no INFO")?;
            anyhow::ensure!(
                info.starts_with(b"INFO"),
                "NATS server sent {:?}, not INFO",
                String::from_utf8_lossy(&info)
            );
            let connect = serde_json::json!({"verbose": false, "pedantic": false, "name": name, "lang": "raw", "version": "0", "protocol": 0});
            write!(self.w, "CONNECT {connect}\r\n")?;
        } else {
            let mut f = bytes::BytesMut::new();
            encode_frame(Verb::Hello, name, b"", &mut f)?;
            self.w.write_all(&f)?;
        }
        self.w.flush()?;
        Ok(())
    }

    pub fn subscribe(&mut self, pattern: &str) -> io::Result<()> {
        if self.nats {
            let sid = self.next_sid;
            self.next_sid += 1;
            write!(self.w, "SUB {pattern} {sid}\r\n")
        } else {
            self.w.write_all(b"SUB ")?;
            self.w.write_all(pattern.as_bytes())?;
            self.w.write_all(b"\n\0\0\0\0")
        }
    }

    /// Buffer one event: the PUB body on the bus, the message on NATS.
    #[inline]
    pub fn publish(&mut self, topic: &str, body: &[u8]) -> io::Result<()> {
        if self.nats {
            write!(self.w, "PUB {topic} {}\r\n", body.len())?;
            self.w.write_all(body)?;
            self.w.write_all(b"\r\n")
        } else {
            self.w.write_all(b"PUB ")?;
            self.w.write_all(topic.as_bytes())?;
            self.w.write_all(b"\n")?;
            self.w.write_all(&(body.len() as u32).to_be_bytes())?;
            self.w.write_all(body)
        }
    }

    /// Write out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Wait until the server has applied everything sent so far. NATS
    /// answers PING in order; the bus has no acknowledgement, so the
    /// caller waits for an event instead (see the load module).
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        if !self.nats {
            return Ok(());
        }
        self.w.write_all(b"PING\r\n")?;
        self.w.flush()?;
        let reader = self.reader.as_mut().context("sync after the reader was taken")?;
        loop {
            let line = reader.next_line()?;
            if line.starts_with(b"PONG") {
                return Ok(());
            }
            anyhow::ensure!(!line.starts_with(b"-ERR"), "NATS: {}", String::from_utf8_lossy(&line));
        }
    }

    /// The reading side, for a subscriber thread.
    pub fn take_reader(&mut self) -> EventReader {
        self.reader.take().expect("reader taken once")
    }
}

/// Reads events off one connection, parsing in place.
pub struct EventReader {
    nats: bool,
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// One received event: its topic and body (the envelope on the bus, the
/// message on NATS), borrowed from the read buffer.
pub struct Event<'a> {
    pub topic: &'a [u8],
    pub body: &'a [u8],
}

impl EventReader {
    fn new(stream: Stream, nats: bool) -> EventReader {
        EventReader { nats, stream, buf: vec![0; 256 * 1024], start: 0, end: 0 }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// Read more bytes, keeping the unparsed tail. `Ok(false)` at EOF.
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        if self.end == self.buf.len() {
            let len = self.buf.len();
            self.buf.resize(len * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }

    /// One protocol line (NATS control lines), without the CRLF.
    fn next_line(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            anyhow::ensure!(self.fill(0)?, "connection closed");
        }
    }

    /// The next event; `Ok(None)` when the server closed the connection.
    /// A read timeout set on the socket comes back as an `Err` of kind
    /// `WouldBlock`/`TimedOut`, leaving the reader usable.
    pub fn next(&mut self) -> io::Result<Option<Event<'_>>> {
        loop {
            let window = &self.buf[self.start..self.end];
            let mut need = 0;
            if self.nats {
                if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
                    let line = &window[..i];
                    if let Some(rest) = line.strip_prefix(b"MSG ") {
                        // MSG <subject> <sid> [reply-to] <#bytes>
                        let mut parts = rest.split(|&b| b == b' ');
                        let topic_len = parts.next().map_or(0, <[u8]>::len);
                        let len: usize = rest
                            .rsplit(|&b| b == b' ')
                            .next()
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
                            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad MSG line"))?;
                        let body_at = i + 2;
                        if window.len() >= body_at + len + 2 {
                            let s = self.start;
                            self.start += body_at + len + 2;
                            return Ok(Some(Event {
                                topic: &self.buf[s + 4..s + 4 + topic_len],
                                body: &self.buf[s + body_at..s + body_at + len],
                            }));
                        }
                        need = body_at + len + 2;
                    } else {
                        let ping = line.starts_with(b"PING");
                        let err = line.starts_with(b"-ERR").then(|| String::from_utf8_lossy(line).into_owned());
                        self.start += i + 2;
                        if ping {
                            self.stream.write_all(b"PONG\r\n")?;
                        }
                        if let Some(e) = err {
                            return Err(io::Error::other(format!("NATS: {e}")));
                        }
                        continue; // +OK, PONG, INFO
                    }
                }
            } else {
                match FrameSpan::scan(window) {
                    Ok(Scan::Frame(span)) => {
                        let s = self.start;
                        self.start += span.len;
                        if span.verb == Verb::Bye {
                            return Ok(None);
                        }
                        return Ok(Some(Event {
                            topic: &self.buf[s + span.arg.start..s + span.arg.end],
                            body: &self.buf[s + span.body.start..s + span.body.end],
                        }));
                    }
                    Ok(Scan::Incomplete { needed }) => need = needed,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                }
            }
            if !self.fill(need)? {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_messages_and_pings_are_parsed() {
        let (mut server, client) = UnixStream::pair().unwrap();
        let mut r = EventReader::new(Stream::Unix(client), true);
        server.write_all(b"PING\r\nMSG a.b 1 5\r\nhello\r\n+OK\r\nMSG c 2 reply.x 3\r\nxyz\r\n").unwrap();
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.topic, e.body), (&b"a.b"[..], &b"hello"[..]));
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.topic, e.body), (&b"c"[..], &b"xyz"[..]));
        let mut pong = [0u8; 6];
        server.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"PONG\r\n", "a PING is answered");
        drop(server);
        assert!(r.next().unwrap().is_none());
    }

    #[test]
    fn bus_frames_arriving_in_pieces_are_parsed() {
        let (mut server, client) = UnixStream::pair().unwrap();
        let mut r = EventReader::new(Stream::Unix(client), false);
        let mut bytes = bytes::BytesMut::new();
        let big = vec![b'x'; 300_000];
        encode_frame(Verb::Evt, "t.one", &big, &mut bytes).unwrap();
        encode_frame(Verb::Evt, "t.two", b"{}", &mut bytes).unwrap();
        let writer = std::thread::spawn(move || {
            for piece in bytes.chunks(7000) {
                server.write_all(piece).unwrap();
            }
        });
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.topic, e.body.len()), (&b"t.one"[..], 300_000));
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.topic, e.body), (&b"t.two"[..], &b"{}"[..]));
        writer.join().unwrap();
    }
}
