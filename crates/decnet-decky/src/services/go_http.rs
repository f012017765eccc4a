//! What the Docker daemon and the Kubernetes API server have in common:
//! both are Go programs answering through Go's `net/http`, whose wire
//! shape a scanner can see (and nmap's Docker signature matches on).
//!
//! - The status line echoes the request's protocol (`HTTP/1.0` to a 1.0
//!   request).
//! - The handler's headers go out sorted by name, then `Date` and
//!   `Content-Length` (Go's "extra headers"); `Connection: close` only to
//!   an HTTP/1.1 client when the server closes.
//! - HTTP/1.1 keeps the connection unless the client says `close`; 1.0
//!   closes unless it asks for keep-alive.
//!
//! Request heads are read by the HTTP honeypot's bounded reader
//! ([`super::http::request`]); bodies, which these APIs record (a
//! container's command, a pod spec), are read here, at most [`MAX_BODY`].

use tokio::io::{AsyncRead, AsyncWrite};

use super::http::request::{self, Request};
use super::http::response::{http_date, now};
use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End};
use crate::rfc5424::Severity;

/// Longest request body kept. A container spec or a pod manifest fits
/// with room; anything longer is refused and the connection closed.
pub const MAX_BODY: usize = 64 * 1024;

/// One request with the body it carried.
pub struct Incoming {
    pub head: Request,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY`] or badly framed: it was not
    /// kept, and the connection cannot carry another request.
    pub body_refused: bool,
}

/// Read the next request and its body. `Err` ends the session as for every
/// service (closed, idle, line too long, byte limit).
pub async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    first_wait: std::time::Duration,
) -> Result<Incoming, End> {
    let head = request::read(conn, first_wait).await?;
    let mut body = Vec::new();
    let mut body_refused = false;
    if head.malformed.is_none() {
        if head.chunked {
            match read_chunked(conn).await? {
                Some(b) => body = b,
                None => body_refused = true,
            }
        } else if head.unframed_body || head.content_length > MAX_BODY as u64 {
            body_refused = true;
        } else if head.content_length > 0 {
            body = conn.read_exact(head.content_length as usize).await?;
        }
    }
    Ok(Incoming { head, body, body_refused })
}

/// A chunked body, `None` when it is longer than [`MAX_BODY`] or not valid
/// chunked framing (the chunk sizes are checked before anything is read).
async fn read_chunked<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>) -> Result<Option<Vec<u8>>, End> {
    let mut body = Vec::new();
    loop {
        let line = printable(&conn.read_line().await?);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else { return Ok(None) };
        if size == 0 {
            for _ in 0..request::MAX_HEADERS {
                if conn.read_line().await?.is_empty() {
                    return Ok(Some(body));
                }
            }
            return Ok(None);
        }
        if size > MAX_BODY - body.len() {
            return Ok(None);
        }
        body.extend(conn.read_exact(size).await?);
        if !conn.read_line().await?.is_empty() {
            return Ok(None);
        }
    }
}

/// One answer, as a Go handler builds it.
pub struct Answer {
    pub status: u16,
    /// The handler's own headers (any order: Go sorts them).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A `Content-Type` Go sniffed from the body (the handler set none):
    /// written after `Content-Length`, with Go's other extra headers.
    pub sniffed: Option<&'static str>,
}

impl Answer {
    pub fn new(status: u16, headers: Vec<(&'static str, String)>, body: impl Into<Vec<u8>>) -> Answer {
        Answer { status, headers, body: body.into(), sniffed: None }
    }
}

/// Go's reason phrases (`http.StatusText`) for the codes these APIs use.
fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        _ => "Internal Server Error",
    }
}

/// Whether the connection ends after answering `req`.
pub fn closes_after(req: &Request, body_refused: bool) -> bool {
    body_refused || req.malformed.is_some() || req.wants_close || (!req.is_http11() && !req.wants_keep_alive)
}

/// The bytes Go's server writes for `answer` to `req` (`close`: the
/// connection ends after it).
pub fn render(req: &Request, answer: &Answer, close: bool) -> Vec<u8> {
    let proto = if req.is_http11() { "HTTP/1.1" } else { "HTTP/1.0" };
    let mut out = format!("{proto} {} {}\r\n", answer.status, reason(answer.status)).into_bytes();
    let mut headers = answer.headers.clone();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &headers {
        line(name, value);
    }
    line("Date", &http_date(now()));
    // Go omits the length of a 204/304 and of a 1xx, and adds none when
    // the handler set one.
    if !matches!(answer.status, 204 | 304 | 100..=199) && !headers.iter().any(|(n, _)| *n == "Content-Length") {
        line("Content-Length", &answer.body.len().to_string());
    }
    if let Some(t) = answer.sniffed {
        line("Content-Type", t);
    }
    if close && req.is_http11() {
        line("Connection", "close");
    } else if !close && !req.is_http11() {
        line("Connection", "keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    if req.method != "HEAD" {
        out.extend_from_slice(&answer.body);
    }
    out
}

/// Go's answer to a request its server refuses before any handler runs
/// (written raw, no Date): an HTTP/1.1 request without a Host names why,
/// in the status line too, as a real dockerd (Go 1.19) sent it.
pub fn bad_request(req: &Request) -> Vec<u8> {
    let status = if req.malformed == Some("HTTP/1.1 request without a Host") {
        "400 Bad Request: missing required Host header"
    } else {
        "400 Bad Request"
    };
    format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n{status}")
        .into_bytes()
}

/// The query parameter `name` of a request target, percent-decoded
/// (lossily: it is only ever logged or compared).
pub fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// `%XX` and `+` decoded; invalid escapes kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    printable(&out)
}

/// The `request` line every API call leaves.
pub fn log_request(session: &SharedSession, req: &Request, status: u16) {
    event::with(session, |s| {
        s.emit(
            "request",
            Severity::Notice,
            vec![
                ("method", req.method.clone()),
                ("path", req.target.clone()),
                ("version", req.version.clone()),
                ("user_agent", req.user_agent.clone()),
                ("status", status.to_string()),
            ],
            Some(format!("{} {} {status}", req.method, req.target)),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Request {
        Request {
            method: line.split(' ').next().unwrap().into(),
            proto: if line.ends_with("1.1") { (1, 1) } else { (1, 0) },
            ..Request::default()
        }
    }

    #[test]
    fn headers_go_out_sorted_then_date_and_length_like_go() {
        let answer = Answer::new(
            200,
            vec![("Server", "Docker/20.10.24+dfsg1 (linux)".into()), ("Api-Version", "1.41".into())],
            "",
        );
        let text = String::from_utf8(render(&req("OPTIONS / HTTP/1.0"), &answer, true)).unwrap();
        let names: Vec<&str> = text.lines().skip(1).map_while(|l| l.split_once(':').map(|(n, _)| n)).collect();
        assert_eq!(names, ["Api-Version", "Server", "Date", "Content-Length"]);
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "an HTTP/1.0 close names no Connection: {text}");
        let text = String::from_utf8(render(&req("GET / HTTP/1.1"), &answer, true)).unwrap();
        assert!(text.contains("Connection: close\r\n"), "{text}");
    }

    /// `read` over an in-memory stream carrying `wire`, then what is left.
    async fn read_wire(wire: &[u8]) -> (Result<Incoming, End>, Vec<u8>) {
        use tokio::io::AsyncWriteExt;
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut client = client;
        client.write_all(wire).await.unwrap();
        client.shutdown().await.unwrap();
        let meter = std::sync::Arc::new(crate::event::ByteCount::default());
        let mut conn =
            Conn::new(crate::io::Metered::new(server, meter, u64::MAX), 4096, std::time::Duration::from_secs(2));
        let got = read(&mut conn, std::time::Duration::from_secs(2)).await;
        let rest = conn.read_line().await.unwrap_or_default();
        (got, rest)
    }

    #[tokio::test]
    async fn bodies_are_kept_within_the_bound_and_refused_past_it() {
        let (got, rest) = read_wire(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloNEXT\n").await;
        let got = got.unwrap();
        assert_eq!((got.body.as_slice(), got.body_refused), (&b"hello"[..], false));
        assert_eq!(rest, b"NEXT", "the next request starts right after the body");
        let chunked = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT\n";
        let (got, rest) = read_wire(chunked).await;
        assert_eq!(got.unwrap().body, b"abcde");
        assert_eq!(rest, b"NEXT");
        // Declared past the bound: refused before a byte of it is read.
        let (got, rest) = read_wire(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\nhello\n").await;
        let got = got.unwrap();
        assert!(got.body_refused && got.body.is_empty());
        assert_eq!(rest, b"hello", "the body was left unread");
        // A chunk past the bound, a chunk size that is not hex, a chunk
        // without its CRLF: refused.
        for bad in [&b"10001\r\n"[..], b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n"] {
            let mut wire = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend_from_slice(bad);
            let got = read_wire(&wire).await.0.unwrap();
            assert!(got.body_refused, "{:?}", String::from_utf8_lossy(bad));
        }
        // A body in a coding it cannot frame, and a body cut short.
        let got = read_wire(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").await.0.unwrap();
        assert!(got.body_refused);
        let cut = read_wire(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc").await.0;
        assert!(matches!(cut, Err(End::ClientClosed)), "{:?}", cut.map(|i| i.body));
    }

    #[test]
    fn a_request_without_host_is_refused_as_go_refuses_it() {
        let no_host = Request { malformed: Some("HTTP/1.1 request without a Host"), ..Request::default() };
        // Byte for byte what Debian 12's dockerd sent to `GET /version HTTP/1.1`.
        assert_eq!(
            String::from_utf8(bad_request(&no_host)).unwrap(),
            "HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Connection: close\r\n\r\n400 Bad Request: missing required Host header"
        );
        let garbage = Request { malformed: Some("method is not a token"), ..Request::default() };
        assert!(String::from_utf8(bad_request(&garbage)).unwrap().ends_with("\r\n\r\n400 Bad Request"));
    }

    #[test]
    fn a_head_answer_has_the_length_but_no_body() {
        let text = render(&req("HEAD /_ping HTTP/1.1"), &Answer::new(200, vec![], "OK"), false);
        assert!(String::from_utf8(text).unwrap().ends_with("Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn query_parameters_decode_and_bad_escapes_survive() {
        assert_eq!(query_param("/images/create?fromImage=alpine&tag=latest", "fromImage").as_deref(), Some("alpine"));
        assert_eq!(query_param("/x?a=%2Fetc%2Fpasswd+x", "a").as_deref(), Some("/etc/passwd x"));
        assert_eq!(query_param("/x?a=%zz%", "a").as_deref(), Some("%zz%"));
        assert_eq!(query_param("/x?a=%0a", "a").as_deref(), Some("\\x0a"), "a decoded newline is shown, never kept");
        assert_eq!(query_param("/x", "a"), None);
    }
}
