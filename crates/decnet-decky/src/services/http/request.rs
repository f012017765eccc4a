//! Reading one request head off the wire, bounded, and judging it the way
//! Apache 2.4 (`HttpProtocolOptions Strict`) and nginx do: a request line
//! of exactly `METHOD SP target SP HTTP/d.d`, header lines `name: value`,
//! a `Host` on HTTP/1.1. What fails is not an error here but a request
//! marked [`Request::malformed`], answered 400 by the server persona and
//! logged like any other.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::{printable, Conn, End};

/// Most header lines read from one request; more is a 400 and the
/// connection closed (Apache's LimitRequestFields; nginx counts no lines,
/// only bytes, and would still answer).
pub const MAX_HEADERS: usize = 100;
/// Empty lines tolerated before a request line (RFC 9112 §2.2).
const MAX_LEADING_EMPTY: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// As sent (printable, at most 32 characters).
    pub method: String,
    /// The request target as sent (printable, at most 2048 characters).
    pub target: String,
    /// The target's path: no query, absolute-form reduced to its path.
    pub path: String,
    pub version: String,
    /// (major, minor) when the version parsed.
    pub proto: (u8, u8),
    /// The Host header's host part, lowercased (at most 256 characters).
    pub host: Option<String>,
    /// The Host header's port, if it named one.
    pub host_port: Option<u16>,
    pub user_agent: String,
    pub authorization: Option<String>,
    /// `Connection: close` / `Connection: keep-alive` tokens.
    pub wants_close: bool,
    pub wants_keep_alive: bool,
    /// `Accept-Encoding` names gzip (with a non-zero q).
    pub accepts_gzip: bool,
    pub content_length: u64,
    /// `Transfer-Encoding: chunked`: the body is read chunk by chunk.
    pub chunked: bool,
    /// A body in another transfer coding: it is not read, so the
    /// connection cannot be reused after the answer.
    pub unframed_body: bool,
    /// Why the request is a 400, if it is.
    pub malformed: Option<&'static str>,
}

impl Request {
    pub fn is_http11(&self) -> bool {
        self.proto >= (1, 1)
    }
}

/// RFC 9110 token characters (method and header names).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn bounded(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A host as Apache accepts it: a DNS name or IPv4 address (letters,
/// digits, `-`, `.`, `_`) or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `host[:port]` split and checked; `None` when it is not a valid Host.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match value.rfind(':') {
        Some(i) if !value[i..].contains(']') => (&value[..i], Some(&value[i + 1..])),
        _ => (value, None),
    };
    if !valid_host(host) {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Parse the request line into `req`.
fn request_line(req: &mut Request, line: &str) {
    let parts: Vec<&str> = line.split(' ').collect();
    req.method = bounded(parts.first().copied().unwrap_or(""), 32);
    req.target = bounded(parts.get(1).copied().unwrap_or(""), 2048);
    req.version = bounded(parts.get(2).copied().unwrap_or(""), 16);
    let version = req.version.as_bytes();
    let proto_ok = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    if proto_ok {
        req.proto = (version[5] - b'0', version[7] - b'0');
    }
    let target = parts.get(1).copied().unwrap_or("");
    let path_part = if target.starts_with('/') || target == "*" {
        Some(target)
    } else if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        Some(rest.find('/').map(|i| &rest[i..]).unwrap_or("/"))
    } else {
        None
    };
    req.path = bounded(path_part.map(|p| p.split(['?', '#']).next().unwrap_or("")).unwrap_or(""), 2048);
    req.malformed = if parts.len() != 3 {
        Some("request line is not METHOD target HTTP/x.y")
    } else if !is_token(parts[0]) {
        Some("method is not a token")
    } else if !proto_ok {
        Some("bad protocol version")
    } else if path_part.is_none() {
        Some("bad request target")
    } else {
        None
    };
}

/// Read one request head. The first line waits at most `first_wait` (the
/// server's keep-alive timeout between requests, the session idle limit
/// otherwise); a line past the session's line limit, a closed connection
/// or the byte budget end the session as they do for every service.
pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    first_wait: std::time::Duration,
) -> Result<Request, End> {
    let mut req = Request::default();
    let mut line = String::new();
    for _ in 0..=MAX_LEADING_EMPTY {
        line = match tokio::time::timeout(first_wait, conn.read_line()).await {
            Err(_) => return Err(End::Idle),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(l)) => printable(&l),
        };
        if !line.is_empty() {
            break;
        }
    }
    request_line(&mut req, &line);
    if req.malformed.is_some() {
        // Both servers answer a bad request line at once, headers unread
        // (the connection is closed after the 400 anyway).
        return Ok(req);
    }
    let mut hosts = 0;
    let mut count = 0;
    loop {
        let raw = conn.read_line().await?;
        if raw.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            req.malformed = req.malformed.or(Some("too many header lines"));
            req.wants_close = true;
            break;
        }
        let line = printable(&raw);
        let Some((name, value)) = line.split_once(':') else {
            req.malformed = req.malformed.or(Some("header line without a colon"));
            continue;
        };
        if !is_token(name) {
            req.malformed = req.malformed.or(Some("bad header name"));
            continue;
        }
        let value = value.trim_matches([' ', '\t']);
        match name.to_ascii_lowercase().as_str() {
            "host" => {
                hosts += 1;
                match split_host(value) {
                    Some((host, port)) => {
                        req.host = Some(bounded(&host, 256));
                        req.host_port = port;
                    }
                    None => req.malformed = req.malformed.or(Some("bad Host header")),
                }
            }
            "user-agent" => req.user_agent = bounded(value, 512),
            "accept-encoding" => {
                req.accepts_gzip |= value.split(',').any(|coding| {
                    let mut parts = coding.split(';').map(|p| p.trim().to_ascii_lowercase());
                    let name = parts.next().unwrap_or_default();
                    let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>() == Ok(0.0)));
                    (name == "gzip" || name == "x-gzip") && !refused
                })
            }
            "authorization" => req.authorization = Some(bounded(value, 1024)),
            "connection" => {
                for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                    req.wants_close |= token == "close";
                    req.wants_keep_alive |= token == "keep-alive";
                }
            }
            "content-length" => match value.parse::<u64>() {
                Ok(n) => req.content_length = n,
                Err(_) => req.malformed = req.malformed.or(Some("bad Content-Length")),
            },
            "transfer-encoding" => {
                let last = value.rsplit(',').next().unwrap_or("").trim().to_ascii_lowercase();
                if last == "chunked" {
                    req.chunked = true;
                } else {
                    req.unframed_body = true;
                }
            }
            _ => {}
        }
    }
    if hosts > 1 {
        req.malformed = req.malformed.or(Some("more than one Host header"));
    }
    if req.malformed.is_none() && req.is_http11() && req.host.is_none() {
        req.malformed = Some("HTTP/1.1 request without a Host");
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: &str) -> Request {
        let mut r = Request::default();
        request_line(&mut r, l);
        r
    }

    #[test]
    fn request_lines_are_judged_like_a_strict_server() {
        let ok = line("GET /a/b?c=d HTTP/1.1");
        assert_eq!((ok.malformed, ok.path.as_str(), ok.proto), (None, "/a/b", (1, 1)));
        assert_eq!(line("GET http://x.example/p?q HTTP/1.0").path, "/p");
        assert!(line("OPTIONS * HTTP/1.1").malformed.is_none());
        assert!(line("FOO / HTTP/1.1").malformed.is_none(), "unknown methods are the server's to refuse");
        for bad in [
            "GARBAGE",
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 x",
            "GET / HTTPS/1.1",
            "GET foo HTTP/1.1",
            "G(T / HTTP/1.1",
            "",
        ] {
            assert!(line(bad).malformed.is_some(), "{bad:?} should be malformed");
        }
    }

    #[test]
    fn hosts_split_and_refuse_junk() {
        assert_eq!(split_host("Example.COM:8080"), Some(("example.com".into(), Some(8080))));
        assert_eq!(split_host("[::1]:80"), Some(("[::1]".into(), Some(80))));
        assert_eq!(split_host("10.0.0.1"), Some(("10.0.0.1".into(), None)));
        for bad in ["", "a b", "<script>", "x:99999", "x:y", "a/b"] {
            assert_eq!(split_host(bad), None, "{bad:?}");
        }
    }
}
