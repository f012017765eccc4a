//! The telnet wire (RFC 854): separates a client's option negotiation
//! from its data, edits lines the way a terminal's remote echo needs
//! (the server echoes what it reads when it has said WILL ECHO), and keeps
//! every buffer bounded.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::io::{end_of, End, Metered};
use crate::shell::line_editor::{Action, Context, LineEditor};

pub const IAC: u8 = 255;
pub const DONT: u8 = 254;
pub const DO: u8 = 253;
pub const WONT: u8 = 252;
pub const WILL: u8 = 251;
pub const SB: u8 = 250;
pub const SE: u8 = 240;

pub const ECHO: u8 = 1;
pub const SGA: u8 = 3;
pub const STATUS: u8 = 5;
pub const TTYPE: u8 = 24;
pub const NAWS: u8 = 31;
pub const TSPEED: u8 = 32;
pub const LFLOW: u8 = 33;
pub const XDISPLOC: u8 = 35;
pub const NEW_ENVIRON: u8 = 39;

/// Longest subnegotiation kept (a terminal type or environment is short).
const MAX_SUB: usize = 512;
/// Subnegotiations kept per session.
const MAX_SUBS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Option(u8),
    Sub,
    SubIac,
}

/// The client's bytes, split: negotiation answers, subnegotiations and
/// data. Fed in pieces as they arrive; a sequence cut between two reads
/// continues with the next piece.
#[derive(Debug)]
pub struct Parser {
    state: State,
    pub data: VecDeque<u8>,
    /// The client's answers, in order: (WILL/WONT/DO/DONT, option).
    pub answers: Vec<(u8, u8)>,
    /// The client's subnegotiations (option byte first), bounded.
    pub subs: Vec<Vec<u8>>,
    sub: Vec<u8>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser { state: State::Data, data: VecDeque::new(), answers: Vec::new(), subs: Vec::new(), sub: Vec::new() }
    }
}

/// A telnet connection: what the client negotiated, and its data bytes.
pub struct TelnetConn {
    stream: Metered<TcpStream>,
    idle: Duration,
    max_line: usize,
    pub wire: Parser,
    after_cr: bool,
}

impl Parser {
    /// Parse received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (State::Data, IAC) => State::Iac,
                (State::Data, b) => {
                    self.data.push_back(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    self.data.push_back(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Option(b),
                (State::Iac, SB) => {
                    self.sub.clear();
                    State::Sub
                }
                // NOP, GA, AYT, … carry nothing for us.
                (State::Iac, _) => State::Data,
                (State::Option(verb), option) => {
                    if self.answers.len() < 256 {
                        self.answers.push((verb, option));
                    }
                    State::Data
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, b) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(b);
                    }
                    State::Sub
                }
                (State::SubIac, SE) => {
                    if self.subs.len() < MAX_SUBS {
                        self.subs.push(std::mem::take(&mut self.sub));
                    }
                    State::Data
                }
                (State::SubIac, b) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(b);
                    }
                    State::Sub
                }
            };
        }
    }
}

impl TelnetConn {
    pub fn new(stream: Metered<TcpStream>, max_line: usize, idle: Duration) -> TelnetConn {
        TelnetConn { stream, idle, max_line, wire: Parser::default(), after_cr: false }
    }

    pub fn stream(&self) -> &TcpStream {
        self.stream.get_ref()
    }

    /// Whether the client answered `option` (with WILL or WONT).
    pub fn answered(&self, option: u8) -> bool {
        self.wire.answers.iter().any(|(verb, opt)| *opt == option && matches!(*verb, WILL | WONT))
    }

    /// Whether the client said WILL `option`.
    pub fn will(&self, option: u8) -> bool {
        self.wire.answers.iter().rev().find(|(verb, opt)| *opt == option && matches!(*verb, WILL | WONT)).map(|a| a.0)
            == Some(WILL)
    }

    /// Data bytes received and not yet read as a line.
    pub fn pending_data(&self) -> bool {
        !self.wire.data.is_empty()
    }

    /// Read what the client sends next (waiting at most the idle time),
    /// splitting it into negotiation and data.
    pub async fn fill(&mut self) -> Result<(), End> {
        let mut chunk = [0u8; 2048];
        let n = match tokio::time::timeout(self.idle, self.stream.read(&mut chunk)).await {
            Err(_) => return Err(End::Idle),
            Ok(Err(e)) => return Err(end_of(e)),
            Ok(Ok(0)) => return Err(End::ClientClosed),
            Ok(Ok(n)) => n,
        };
        self.wire.feed(&chunk[..n]);
        // Data nobody reads as a line yet (a flood before the prompt) is
        // held only up to one line's worth more.
        if self.wire.data.len() > self.max_line + 2 {
            return Err(End::LineTooLong);
        }
        Ok(())
    }

    /// The next line of data: ended by CR (with the LF or NUL a client
    /// sends after it) or LF; DEL and BS edit it. With `echo`, what is
    /// typed is sent back (the server said WILL ECHO, so the client shows
    /// only what the server echoes). A line over the cap ends the session.
    pub async fn read_line(&mut self, echo: bool) -> Result<Vec<u8>, End> {
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            while let Some(b) = self.wire.data.pop_front() {
                if std::mem::take(&mut self.after_cr) && matches!(b, b'\n' | 0) {
                    continue;
                }
                match b {
                    b'\r' | b'\n' => {
                        self.after_cr = b == b'\r';
                        if echo {
                            out.extend_from_slice(b"\r\n");
                            self.send(&out).await?;
                        }
                        return Ok(line);
                    }
                    0x7f | 0x08 => {
                        if line.pop().is_some() && echo {
                            out.extend_from_slice(b"\x08 \x08");
                        }
                    }
                    0 => {}
                    b => {
                        if line.len() >= self.max_line {
                            return Err(End::LineTooLong);
                        }
                        line.push(b);
                        if echo {
                            out.push(b);
                            if b == IAC {
                                out.push(IAC);
                            }
                        }
                    }
                }
            }
            if !out.is_empty() {
                self.send(&std::mem::take(&mut out)).await?;
            }
            self.fill().await?;
        }
    }

    /// Read keystrokes through a line editor (the shell, after login)
    /// until it has a line or another action; its echo is sent as it
    /// comes. A NUL after CR (Enter in character mode) is dropped.
    pub async fn read_edited(&mut self, editor: &mut LineEditor, ctx: &(dyn Context + Sync)) -> Result<Action, End> {
        loop {
            let mut out = Vec::new();
            while let Some(b) = self.wire.data.pop_front() {
                // Enter is CR NUL or CR LF: what follows the CR is part of
                // it, also when the CR ended a line read before (the login).
                if std::mem::take(&mut self.after_cr) && matches!(b, b'\n' | 0) {
                    continue;
                }
                self.after_cr = b == b'\r';
                let step = editor.feed(b, ctx);
                // The echo is UTF-8 text, so it never holds an IAC byte.
                out.extend_from_slice(&step.echo);
                if let Some(action) = step.action {
                    self.send(&out).await?;
                    return Ok(action);
                }
            }
            if !out.is_empty() {
                self.send(&out).await?;
            }
            self.fill().await?;
        }
    }

    /// Write everything or fail (a client that stops reading is cut off
    /// after the idle time).
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

    /// Send text, with IAC doubled and bare LFs as CRLF (NVT rules).
    pub async fn send_text(&mut self, text: &str) -> Result<(), End> {
        let mut out = Vec::with_capacity(text.len() + 16);
        let mut prev = 0u8;
        for &b in text.as_bytes() {
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            if b == IAC {
                out.push(IAC);
            }
            prev = b;
        }
        self.send(&out).await
    }
}

/// What a line from a client that is not a telnet client looks like: an
/// HTTP/RTSP/SIP request line, a TLS or SSH hello, or binary.
pub fn is_probe(line: &[u8]) -> bool {
    if line.starts_with(&[0x16, 0x03]) || line.starts_with(b"SSH-") {
        return true;
    }
    let text = String::from_utf8_lossy(line);
    let mut words = text.split(' ');
    let method = words.next().unwrap_or("");
    let last = text.rsplit(' ').next().unwrap_or("");
    if !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && words.count() >= 2
        && ["HTTP/", "RTSP/", "SIP/"].iter().any(|p| last.starts_with(p))
    {
        return true;
    }
    // Binary protocols (SMB, RDP, …): mostly bytes no keyboard sends.
    let binary = line.iter().filter(|b| **b < 0x20 && !matches!(**b, b'\t' | 0x1b)).count();
    line.len() >= 4 && binary * 4 >= line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_separates_negotiation_from_data_across_reads() {
        let mut p = Parser::default();
        p.feed(b"\xff\xfb\x18\xff\xfc\x20ro");
        p.feed(b"\x00o\xff\xfa\x18\x00xterm\xff");
        p.feed(b"\xf0t\xff\xffx\xff");
        assert_eq!(p.answers, vec![(WILL, TTYPE), (WONT, TSPEED)]);
        assert_eq!(p.subs, vec![b"\x18\x00xterm".to_vec()]);
        assert_eq!(p.data.iter().copied().collect::<Vec<u8>>(), b"ro\x00ot\xffx".to_vec());
        // The IAC left at the end of the last read completes as a NOP; a
        // subnegotiation that never ends keeps at most MAX_SUB bytes.
        p.feed(b"\xf1\xff\xfa\x27");
        p.feed(&vec![b'A'; 10_000]);
        assert!(p.sub.len() <= MAX_SUB);
        assert_eq!(p.data.len(), 7, "nothing of it became data");
    }

    #[test]
    fn protocol_lines_are_probes_and_typing_is_not() {
        assert!(is_probe(b"GET / HTTP/1.0"));
        assert!(is_probe(b"OPTIONS rtsp://x/ RTSP/1.0"));
        assert!(is_probe(b"\x16\x03\x01\x00\xa5\x01\x00\x00"));
        assert!(is_probe(b"SSH-2.0-Go"));
        assert!(is_probe(b"\x00\x00\x00\x85\xffSMBr\x00\x00"));
        assert!(!is_probe(b"root"));
        assert!(!is_probe(b"admin GET HTTP/1.0x"));
        assert!(!is_probe(b"\xc3\x28\x1b[31m"));
        assert!(!is_probe(b""));
    }
}
