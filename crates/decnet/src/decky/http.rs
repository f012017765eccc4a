//! HTTP honeypot: an Apache-on-Ubuntu lookalike. It answers one request
//! per connection (`Connection: close`): `/` with the default page, login
//! and admin paths with a Basic-auth challenge (credentials sent with any
//! request are recorded), anything else 404. Each request is one
//! `request` line with method, path, user agent and status.
//!
//! Hand-parsed rather than served through hyper/axum: the head is read
//! with the same bounded line reader as every other service (line length,
//! idle timeout, byte budget), and a malformed request still gets logged
//! as what it was instead of being rejected inside a framework.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::event::{self, SharedSession};
use super::io::{printable, Conn, End, Metered};
use crate::events::rfc5424::Severity;

/// Most header lines read from one request.
const MAX_HEADERS: usize = 64;
/// Most body bytes read (and thrown away) from one request.
const MAX_BODY: usize = 64 * 1024;

const SERVER: &str = "Apache/2.4.52 (Ubuntu)";

fn page(decky: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>Apache2 Ubuntu Default Page: It works</title></head>\n\
         <body><h1>It works!</h1><p>This is the default welcome page used to test the correct operation of \
         the Apache2 server after installation on Ubuntu systems ({decky}).</p></body></html>\n"
    )
}

/// Paths that look like they hide something behind a login.
fn wants_auth(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    ["/admin", "/login", "/manager", "/wp-admin", "/phpmyadmin", "/cgi-bin"].iter().any(|s| p.starts_with(s))
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    serve_stream(session, io).await
}

/// Serve one request over any stream (plain TCP here, TLS for [`super::https`]).
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(session: SharedSession, io: Metered<S>) -> End {
    let (decky, limits) = event::with(&session, |s| (s.decky().to_string(), s.limits().clone()));
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    let request_line = match conn.read_line().await {
        Ok(l) => printable(&l),
        Err(e) => return e,
    };
    let mut parts = request_line.split_whitespace();
    let (method, path, version) = (
        parts.next().unwrap_or("").chars().take(16).collect::<String>(),
        parts.next().unwrap_or("").chars().take(2048).collect::<String>(),
        parts.next().unwrap_or("").chars().take(16).collect::<String>(),
    );
    let (mut user_agent, mut host, mut auth, mut length) = (String::new(), String::new(), None, 0usize);
    for _ in 0..MAX_HEADERS {
        let line = match conn.read_line().await {
            Ok(l) => printable(&l),
            Err(e) => return e,
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "user-agent" => user_agent = value.chars().take(512).collect(),
            "host" => host = value.chars().take(256).collect(),
            "content-length" => length = value.parse().unwrap_or(0),
            "authorization" => auth = Some(value.to_string()),
            _ => {}
        }
    }
    if length > 0 {
        if let Err(e) = conn.discard(length.min(MAX_BODY)).await {
            return e;
        }
    }
    if let Some(basic) = auth.as_deref().and_then(|a| a.strip_prefix("Basic ").or_else(|| a.strip_prefix("basic "))) {
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) {
            let (user, pass) = match raw.iter().position(|b| *b == b':') {
                Some(i) => (printable(&raw[..i]), raw[i + 1..].to_vec()),
                None => (printable(&raw), Vec::new()),
            };
            event::with(&session, |s| s.login_attempt(&user, &pass, "basic", vec![("path", path.clone())]));
        }
    }
    let valid = !method.is_empty() && path.starts_with('/') && version.starts_with("HTTP/");
    let (status, reason, body, extra) = if !valid {
        (400, "Bad Request", "<html><body><h1>Bad Request</h1></body></html>\n".to_string(), "")
    } else if wants_auth(&path) && auth.is_none() {
        (
            401,
            "Unauthorized",
            "<html><body><h1>Unauthorized</h1></body></html>\n".to_string(),
            "WWW-Authenticate: Basic realm=\"Restricted\"\r\n",
        )
    } else if wants_auth(&path) {
        // Credentials never work, but the attacker's attempt is recorded.
        (403, "Forbidden", "<html><body><h1>Forbidden</h1></body></html>\n".to_string(), "")
    } else if path == "/" || path.starts_with("/index.html") || path.starts_with("/?") {
        (200, "OK", page(&decky), "")
    } else {
        (404, "Not Found", "<html><body><h1>Not Found</h1></body></html>\n".to_string(), "")
    };
    event::with(&session, |s| {
        s.emit(
            "request",
            Severity::Notice,
            vec![
                ("method", method.clone()),
                ("path", path.clone()),
                ("version", version.clone()),
                ("user_agent", user_agent.clone()),
                ("host", host.clone()),
                ("status", status.to_string()),
            ],
            Some(format!("{method} {path} {status}")),
        )
    });
    let date = httpdate();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nDate: {date}\r\nServer: {SERVER}\r\n{extra}Content-Type: text/html; charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut response = head.into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    match conn.send(&response).await {
        Ok(()) => End::Done,
        Err(e) => e,
    }
}

/// An RFC 7231 date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate() -> String {
    const FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc().format(FMT).unwrap_or_default()
}
