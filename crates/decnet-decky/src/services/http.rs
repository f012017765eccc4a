//! HTTP honeypot: the web server the decky's persona names (Apache or
//! nginx as Debian/Ubuntu/CentOS ship them, lighttpd, IIS), answering as
//! that server does: its default page, its header set and order, its
//! `ETag`/`Last-Modified`, keep-alive, HEAD/OPTIONS, its 400/405/501 and
//! its own error pages. Pages and error bodies are generated from the real
//! packages by `scripts/gen-http-pages` (into `http/pages/`); the rules for
//! each server are in [`apache`], [`nginx`] and [`simple`], and
//! `crates/decnet/tests/http_personas.rs` holds them against a real
//! Apache and nginx. Nothing in a response names the decky: pages name
//! the Host the client sent, as the real servers do.
//!
//! Every request is one `request` line (method, path, version, user
//! agent, host, status); Basic credentials sent with any request are a
//! `login_attempt`. Admin-ish paths ask for them (401) and never accept.
//!
//! Hand-parsed rather than served through hyper/axum: the head is read
//! with the same bounded line reader as every other service (line length,
//! idle timeout, byte budget), and a malformed request is answered and
//! logged as what it was instead of being rejected inside a framework.

mod apache;
mod nginx;
pub mod request;
pub mod response;
mod simple;

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::event::{self, SharedSession};
use crate::io::{printable, Conn, End, Metered};
use crate::persona::HttpProduct;
use crate::rfc5424::Severity;
use crate::Persona;

pub use apache::default_page as apache_default_page;

/// Most body bytes read (and thrown away) from one request; a longer body
/// is answered and the connection closed instead of read on.
const MAX_BODY: u64 = 64 * 1024;

/// What a server persona knows about the connection a request came on.
pub struct Exchange {
    /// Requests already answered on this connection.
    pub served: u32,
    /// The port the client connected to (Apache's signature names it).
    pub local_port: u16,
    /// The connection cannot carry another request (a body left unread).
    pub must_close: bool,
}

/// Paths that look like they hide something behind a login.
fn wants_auth(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    ["/admin", "/login", "/manager", "/wp-admin", "/phpmyadmin", "/cgi-bin"].iter().any(|s| p.starts_with(s))
}

/// The persona's answer to `req`.
pub fn respond(persona: &Persona, req: &request::Request, ex: &Exchange) -> response::Response {
    match persona.http_product {
        HttpProduct::Apache => apache::respond(persona, req, ex),
        HttpProduct::Nginx => nginx::respond(persona, req, ex),
        HttpProduct::Lighttpd => simple::respond(persona, req, ex, false),
        HttpProduct::Iis => simple::respond(persona, req, ex, true),
    }
}

/// How long the server waits for the next request on a kept-alive connection.
fn keep_alive_timeout(product: HttpProduct) -> Duration {
    match product {
        HttpProduct::Apache => apache::KEEP_ALIVE_TIMEOUT,
        HttpProduct::Nginx => nginx::KEEP_ALIVE_TIMEOUT,
        HttpProduct::Lighttpd | HttpProduct::Iis => simple::KEEP_ALIVE_TIMEOUT,
    }
}

/// The `http` entry of [`super::REGISTRY`].
pub struct Http;

impl super::Protocol for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn default_port(&self) -> u16 {
        80
    }
    fn serve(&self, session: SharedSession, io: Metered<TcpStream>) -> super::ServeFuture {
        Box::pin(serve(session, io))
    }
}

pub async fn serve(session: SharedSession, io: Metered<TcpStream>) -> End {
    let local_port = io.get_ref().local_addr().map(|a| a.port()).unwrap_or(80);
    serve_stream(session, io, local_port).await
}

/// Credentials of a Basic `Authorization` header, recorded.
fn record_basic(session: &SharedSession, auth: &str, path: &str) {
    let Some(basic) = auth.strip_prefix("Basic ").or_else(|| auth.strip_prefix("basic ")) else { return };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else { return };
    let (user, pass) = match raw.iter().position(|b| *b == b':') {
        Some(i) => (printable(&raw[..i]), raw[i + 1..].to_vec()),
        None => (printable(&raw), Vec::new()),
    };
    event::with(session, |s| s.login_attempt(&user, &pass, "basic", vec![("path", path.to_string())]));
}

/// Read and drop a chunked body. `Ok(false)` when it is longer than
/// [`MAX_BODY`] or not valid chunked framing: what follows cannot be read
/// as the next request, so the answer closes the connection.
async fn discard_chunked<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>) -> Result<bool, End> {
    let mut total: u64 = 0;
    loop {
        let line = printable(&conn.read_line().await?);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = u64::from_str_radix(size, 16) else { return Ok(false) };
        if size == 0 {
            for _ in 0..request::MAX_HEADERS {
                if conn.read_line().await?.is_empty() {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Ok(false);
        }
        conn.discard(size as usize).await?;
        if !conn.read_line().await?.is_empty() {
            return Ok(false);
        }
    }
}

/// Serve requests over any stream (plain TCP here, TLS for
/// [`super::https`]) until the persona's server would close the connection.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    session: SharedSession,
    io: Metered<S>,
    local_port: u16,
) -> End {
    let (persona, limits) = event::with(&session, |s| (s.context().persona.clone(), s.limits().clone()));
    let mut conn = Conn::new(io, limits.max_line, limits.idle);
    let keep_alive = keep_alive_timeout(persona.http_product).min(limits.idle);
    let mut served: u32 = 0;
    loop {
        let wait = if served == 0 { limits.idle } else { keep_alive };
        let req = match request::read(&mut conn, wait).await {
            Ok(r) => r,
            // A client that leaves after its answers is done, not cut off.
            Err(End::ClientClosed | End::Idle) if served > 0 => return End::Done,
            Err(e) => return e,
        };
        let mut body_too_long = false;
        if req.malformed.is_none() && req.chunked {
            match discard_chunked(&mut conn).await {
                Ok(complete) => body_too_long = !complete,
                Err(e) => return e,
            }
        } else if req.content_length > 0 && req.malformed.is_none() {
            body_too_long = req.content_length > MAX_BODY;
            if let Err(e) = conn.discard(req.content_length.min(MAX_BODY) as usize).await {
                return e;
            }
        }
        if let Some(auth) = req.authorization.as_deref() {
            record_basic(&session, auth, &req.path);
        }
        // A body not read to its end leaves bytes that cannot be read as
        // the next request: that answer is the last.
        let response = respond(&persona, &req, &Exchange { served, local_port, must_close: body_too_long });
        event::with(&session, |s| {
            s.emit(
                "request",
                Severity::Notice,
                vec![
                    ("method", req.method.clone()),
                    ("path", req.target.clone()),
                    ("version", req.version.clone()),
                    ("user_agent", req.user_agent.clone()),
                    ("host", req.host.clone().unwrap_or_default()),
                    ("status", response.status.to_string()),
                ],
                Some(format!("{} {} {}", req.method, req.target, response.status)),
            )
        });
        if let Err(e) = conn.send(&response.to_bytes()).await {
            return e;
        }
        served += 1;
        if response.close {
            return End::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> request::Request {
        request::Request {
            method: "GET".into(),
            target: path.into(),
            path: path.into(),
            version: "HTTP/1.1".into(),
            proto: (1, 1),
            host: Some("10.0.0.9".into()),
            ..Default::default()
        }
    }

    /// Every release's server names itself as the persona says, serves a
    /// page at `/`, a 404 elsewhere and a 401 on admin paths, and never
    /// names the decky, whatever product it is.
    #[test]
    fn every_release_answers_as_its_server_and_never_names_the_decky() {
        let ex = Exchange { served: 0, local_port: 80, must_close: false };
        for release in crate::persona::RELEASES {
            let name = format!("decky-under-test-{}", release.id);
            let persona = Persona::derive(&name, None, None, 1_790_000_000)
                .with_overrides(&serde_json::json!({"release": release.id}))
                .unwrap();
            for (path, status) in [("/", 200), ("/nonexistent", 404), ("/admin", 401)] {
                let response = respond(&persona, &get(path), &ex);
                assert_eq!(response.status, status, "{} {path}", release.id);
                let server = response.headers.iter().find(|(n, _)| *n == "Server").map(|(_, v)| v.as_str());
                assert_eq!(server, Some(persona.http_server.as_str()), "{}", release.id);
                let wire = String::from_utf8_lossy(&response.to_bytes()).to_lowercase();
                assert!(!wire.contains("decky-under-test"), "{} {path} names the decky:\n{wire}", release.id);
                assert!(!response.close, "{} {path}: HTTP/1.1 stays open", release.id);
            }
        }
    }
}
