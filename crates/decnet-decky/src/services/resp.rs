//! The Redis wire (RESP2 requests, RESP2/RESP3 replies), parsed apart from
//! the commands: [`parse`] takes whatever bytes have arrived and returns
//! one request, "need more", or the protocol error real Redis gives.
//!
//! Written by hand: the request side of RESP is two framings (multibulk
//! and inline) a few dozen lines long, and the decky needs Redis's exact
//! error texts and its own bounds checked *before* anything is allocated,
//! which the client-side crates do not offer.

/// Most arguments in one request. Real Redis takes up to 1024*1024; a
/// decky has no use for more than this, and a bigger count is refused
/// before any of it is read.
pub const MAX_ARGS: usize = 4096;
/// Longest bulk argument (real Redis: `proto-max-bulk-len`, 512 MB).
pub const MAX_BULK: usize = 256 * 1024;

/// A protocol error: Redis answers `-ERR Protocol error: <text>` and
/// closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// One request: its arguments (the command name first).
pub type Request = Vec<Vec<u8>>;

/// Parse one request from the front of `buf`: `Ok(Some((request,
/// consumed)))`, `Ok(None)` when more bytes are needed, or the error.
/// `max_inline` bounds an inline request line (and the header lines).
pub fn parse(buf: &[u8], max_inline: usize) -> Result<Option<(Request, usize)>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        multibulk(buf, max_inline)
    } else {
        inline(buf, max_inline)
    }
}

/// The line at `buf[at..]` up to CRLF (or LF for inline), and where the
/// next one starts.
fn line_at(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let lf = rest.iter().position(|b| *b == b'\n')?;
    let line = &rest[..lf];
    Some((line.strip_suffix(b"\r").unwrap_or(line), at + lf + 1))
}

fn number(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn multibulk(buf: &[u8], max_inline: usize) -> Result<Option<(Request, usize)>, ProtocolError> {
    let Some((head, mut at)) = line_at(buf, 0) else {
        return if buf.len() > max_inline.min(64 * 1024) {
            Err(ProtocolError("too big mbulk count string".into()))
        } else {
            Ok(None)
        };
    };
    let count = match number(&head[1..]) {
        Some(n) if n <= MAX_ARGS as i64 => n,
        _ => return Err(ProtocolError("invalid multibulk length".into())),
    };
    if count <= 0 {
        // `*0` and `*-1` are empty requests Redis skips.
        return Ok(Some((Vec::new(), at)));
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some((len_line, next)) = line_at(buf, at) else {
            return if buf.len() - at > 64 * 1024 {
                Err(ProtocolError("too big bulk count string".into()))
            } else {
                Ok(None)
            };
        };
        if len_line.first() != Some(&b'$') {
            let got = len_line.first().map(|b| *b as char).filter(|c| !c.is_control()).unwrap_or(' ');
            return Err(ProtocolError(format!("expected '$', got '{got}'")));
        }
        let len = match number(&len_line[1..]) {
            Some(n) if (0..=MAX_BULK as i64).contains(&n) => n as usize,
            _ => return Err(ProtocolError("invalid bulk length".into())),
        };
        if buf.len() < next + len + 2 {
            return Ok(None);
        }
        args.push(buf[next..next + len].to_vec());
        at = next + len + 2;
    }
    Ok(Some((args, at)))
}

fn inline(buf: &[u8], max_inline: usize) -> Result<Option<(Request, usize)>, ProtocolError> {
    let Some((line, next)) = line_at(buf, 0) else {
        return if buf.len() > max_inline { Err(ProtocolError("too big inline request".into())) } else { Ok(None) };
    };
    if line.len() > max_inline {
        return Err(ProtocolError("too big inline request".into()));
    }
    let args = split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
    Ok(Some((args, next)))
}

/// Redis's `sdssplitargs`: words split on whitespace; "double quotes" with
/// `\n \r \t \b \a \\ \" \xHH`, 'single quotes' with `\'`; a closing quote
/// must be followed by a space or the end. `None`: unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() || args.len() >= MAX_ARGS {
            return Some(args);
        }
        let mut word = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            if in_double {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'x') && hex2(line.get(i + 2..i + 4)).is_some() {
                    word.push(hex2(line.get(i + 2..i + 4))?);
                    i += 4;
                } else if c == b'\\' && i + 1 < line.len() {
                    word.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else if in_single {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    word.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(c) => word.push(*c),
                }
                i += 1;
            }
        }
        args.push(word);
    }
}

fn hex2(pair: Option<&[u8]>) -> Option<u8> {
    let pair = std::str::from_utf8(pair?).ok()?;
    u8::from_str_radix(pair, 16).ok()
}

/// A reply, encoded for the protocol version the client chose (HELLO 3
/// switches a connection to RESP3).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Reply>),
    /// A RESP3 map; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 verbatim text (INFO); a bulk string in RESP2.
    Verbatim(String),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn bulk(text: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(text.into())
    }

    pub fn encode(&self, resp3: bool, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            // An error is one line: Redis replaces CR and LF in it by spaces.
            Reply::Error(e) => out.extend_from_slice(format!("-{}\r\n", e.replace(['\r', '\n'], " ")).as_bytes()),
            Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(resp3, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    out.extend_from_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                } else {
                    out.extend_from_slice(format!("*{}\r\n", pairs.len() * 2).as_bytes());
                }
                for (k, v) in pairs {
                    k.encode(resp3, out);
                    v.encode(resp3, out);
                }
            }
            Reply::Verbatim(text) if resp3 => {
                out.extend_from_slice(format!("={}\r\ntxt:", text.len() + 4).as_bytes());
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Verbatim(text) => Reply::Bulk(text.as_bytes().to_vec()).encode(resp3, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Request {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_requests_parse_whole_or_wait_for_more() {
        let wire = b"*2\r\n$3\r\nGET\r\n$5\r\na\r\nb!\r\n*1\r\n$4\r\nPING\r\n";
        let (req, used) = parse(wire, 4096).unwrap().unwrap();
        assert_eq!(req, vec![b"GET".to_vec(), b"a\r\nb!".to_vec()], "a bulk may hold CRLF");
        assert_eq!(parse(&wire[used..], 4096).unwrap().unwrap().0, args(&["PING"]));
        for cut in 1..used {
            assert_eq!(parse(&wire[..cut], 4096), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn oversize_and_malformed_lengths_are_refused_before_allocating() {
        assert_eq!(parse(b"*99999999\r\n", 4096), Err(ProtocolError("invalid multibulk length".into())));
        assert_eq!(parse(b"*x\r\n", 4096), Err(ProtocolError("invalid multibulk length".into())));
        assert_eq!(parse(b"*1\r\n$999999999\r\n", 4096), Err(ProtocolError("invalid bulk length".into())));
        assert_eq!(parse(b"*1\r\n$-5\r\n", 4096), Err(ProtocolError("invalid bulk length".into())));
        assert_eq!(parse(b"*1\r\n:3\r\n", 4096), Err(ProtocolError("expected '$', got ':'".into())));
        assert_eq!(parse(&[b'a'; 5000], 4096), Err(ProtocolError("too big inline request".into())));
        assert_eq!(parse(&[b'*'; 70_000], 4096), Err(ProtocolError("too big mbulk count string".into())));
        // Empty requests are skipped, as Redis does.
        assert_eq!(parse(b"*0\r\n", 4096), Ok(Some((vec![], 4))));
    }

    #[test]
    fn inline_requests_split_as_redis_splits_them() {
        assert_eq!(parse(b"set k v\r\n", 4096).unwrap().unwrap().0, args(&["set", "k", "v"]));
        assert_eq!(parse(b"PING\n", 4096).unwrap().unwrap(), (args(&["PING"]), 5));
        assert_eq!(
            split_args(br#"set "a b\n\x41" 'it\'s' "#).unwrap(),
            vec![b"set".to_vec(), b"a b\nA".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(split_args(b"get \"abc"), None);
        assert_eq!(split_args(b"get \"abc\"x"), None);
        assert_eq!(parse(b"get \"abc\r\n", 4096), Err(ProtocolError("unbalanced quotes in request".into())));
        assert_eq!(split_args(b"   ").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn replies_encode_in_resp2_and_resp3() {
        let mut two = Vec::new();
        let mut three = Vec::new();
        let map = Reply::Map(vec![(Reply::bulk("server"), Reply::bulk("redis"))]);
        for r in [Reply::Null, map, Reply::Verbatim("a".into()), Reply::Error("x\r\ny".into())] {
            r.encode(false, &mut two);
            r.encode(true, &mut three);
        }
        assert_eq!(two, b"$-1\r\n*2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$1\r\na\r\n-x  y\r\n");
        assert_eq!(three, b"_\r\n%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n=5\r\ntxt:a\r\n-x  y\r\n");
    }
}
