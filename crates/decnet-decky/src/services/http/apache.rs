//! Apache 2.4 as Debian, Ubuntu and CentOS ship it (Debian's
//! apache2.conf: `KeepAlive On`, `MaxKeepAliveRequests 100`,
//! `KeepAliveTimeout 5`; security.conf: `ServerTokens OS`,
//! `ServerSignature On`, `TraceEnable Off`; mod_deflate on).
//!
//! What the real server does, checked against it by
//! `crates/decnet/tests/http_personas.rs`:
//! - headers in the order its filters add them: `Date`, `Server`, then
//!   `Allow`/`WWW-Authenticate`, `Last-Modified`, `ETag` (`"size-mtime"`,
//!   hex, mtime in microseconds), `Accept-Ranges`, `Content-Length`,
//!   `Vary`, `Keep-Alive`/`Connection`, `Content-Type` last;
//! - `Keep-Alive: timeout=5, max=N` and `Connection: Keep-Alive` only to a
//!   client that sent `Connection: keep-alive`, N counting down per
//!   request on the connection; `Connection: close` whenever it closes;
//! - GET/HEAD/POST of `/` the default page, OPTIONS 200 with `Allow`,
//!   other known methods 405, unknown methods 501 (connection closed), a
//!   bad request line or a missing Host 400 (closed);
//! - error pages from the generated templates, signed `<Server> Server at
//!   <Host> Port <port>` with the Host the client sent (without one, the
//!   name Apache guesses for itself on a host with no ServerName).

use super::request::Request;
use super::response::{escape_html, fill, gzip, http_date, now, reason, Response};
use super::Exchange;
use crate::services::installed;
use crate::Persona;

pub const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_KEEP_ALIVE_REQUESTS: u32 = 100;
const ALLOW: &str = "GET,POST,OPTIONS,HEAD";
/// What Apache calls itself in its signature when the request named no
/// host and no ServerName is set: Debian and Ubuntu map the host name to
/// 127.0.1.1 in /etc/hosts, so that is what it resolves.
const GUESSED_SERVER_NAME: &str = "127.0.1.1";

const DEBIAN_PAGE: &str = include_str!("pages/apache-debian-index.html");
const UBUNTU_PAGE: &str = include_str!("pages/apache-ubuntu-index.html");

/// Error page templates: (before 2.4.66, 2.4.66 and later).
fn error_template(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => (include_str!("pages/apache-400-pre-2.4.66.html"), include_str!("pages/apache-400.html")),
        401 => (include_str!("pages/apache-401-pre-2.4.66.html"), include_str!("pages/apache-401.html")),
        403 => (include_str!("pages/apache-403-pre-2.4.66.html"), include_str!("pages/apache-403.html")),
        405 => (include_str!("pages/apache-405-pre-2.4.66.html"), include_str!("pages/apache-405.html")),
        501 => (include_str!("pages/apache-501-pre-2.4.66.html"), include_str!("pages/apache-501.html")),
        _ => (include_str!("pages/apache-404-pre-2.4.66.html"), include_str!("pages/apache-404.html")),
    }
}

/// Methods Apache knows (core and mod_dav's registrations); anything
/// else is a 501.
const KNOWN_METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "OPTIONS",
    "PUT",
    "DELETE",
    "CONNECT",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "VERSION-CONTROL",
    "CHECKOUT",
    "UNCHECKOUT",
    "CHECKIN",
    "UPDATE",
    "LABEL",
    "REPORT",
    "MKWORKSPACE",
    "MKACTIVITY",
    "BASELINE-CONTROL",
    "MERGE",
];

/// The `N` of `Apache/2.4.N`.
fn patch_level(server: &str) -> u32 {
    server
        .strip_prefix("Apache/2.4.")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

/// The default page this persona's package installed.
pub fn default_page(persona: &Persona) -> &'static str {
    if persona.os_id == "ubuntu" {
        UBUNTU_PAGE
    } else {
        DEBIAN_PAGE
    }
}

enum Route {
    Page,
    Forbidden,
    Auth,
    Missing,
}

fn route(path: &str) -> Route {
    let lower = path.to_ascii_lowercase();
    if path == "/" || path == "/index.html" || path == "*" {
        Route::Page
    } else if lower.starts_with("/.ht") || lower == "/icons/" || lower.starts_with("/server-status") {
        Route::Forbidden
    } else if super::wants_auth(path) {
        Route::Auth
    } else {
        Route::Missing
    }
}

pub fn respond(persona: &Persona, req: &Request, ex: &Exchange) -> Response {
    let server = persona.http_server.as_str();
    let modern = patch_level(server) >= 66;
    let method = req.method.as_str();
    let known = KNOWN_METHODS.contains(&method);

    let (status, mut extra): (u16, Vec<(&'static str, String)>) = if req.malformed.is_some() {
        (400, vec![])
    } else if !known {
        (501, vec![("Allow", ALLOW.into())])
    } else {
        match (route(&req.path), method) {
            (Route::Auth, _) => (401, vec![("WWW-Authenticate", "Basic realm=\"Restricted\"".into())]),
            (Route::Forbidden, _) => (403, vec![]),
            (_, "OPTIONS") => (200, vec![("Allow", ALLOW.into())]),
            (Route::Page, "GET" | "HEAD" | "POST") => (200, vec![]),
            (Route::Missing, "GET" | "HEAD" | "POST") => (404, vec![]),
            _ => (405, vec![("Allow", ALLOW.into())]),
        }
    };
    let close = status == 400
        || status == 501
        || req.wants_close
        || req.unframed_body
        || ex.must_close
        || (!req.is_http11() && !req.wants_keep_alive)
        || ex.served + 1 > MAX_KEEP_ALIVE_REQUESTS;

    let page = status == 200 && method != "OPTIONS";
    // mod_deflate (enabled by Debian and Ubuntu for text/html) compresses
    // the page, not the error documents, for a client that takes gzip.
    let deflate = page && req.accepts_gzip;
    let (body, content_type) = if deflate {
        (gzip(default_page(persona).as_bytes()), "text/html")
    } else if page {
        (default_page(persona).as_bytes().to_vec(), "text/html")
    } else if status == 200 {
        (Vec::new(), "text/html")
    } else {
        let host = req.host.clone().unwrap_or_else(|| GUESSED_SERVER_NAME.to_string());
        let port = req.host_port.unwrap_or(ex.local_port).to_string();
        let (old, new) = error_template(status);
        let text = fill(
            if modern { new } else { old },
            &[("SERVER", server), ("HOST", &escape_html(&host)), ("PORT", &port), ("METHOD", &escape_html(method))],
        );
        (text.into_bytes(), "text/html; charset=iso-8859-1")
    };

    let mut headers: Vec<(&'static str, String)> = vec![("Date", http_date(now())), ("Server", server.to_string())];
    headers.append(&mut extra);
    if page {
        let (mtime, micros) = installed::package(persona, "apache2");
        headers.push(("Last-Modified", http_date(mtime)));
        let size = default_page(persona).len();
        let suffix = if deflate { "-gzip" } else { "" };
        headers.push(("ETag", format!("\"{size:x}-{:x}{suffix}\"", mtime * 1_000_000 + i64::from(micros))));
        headers.push(("Accept-Ranges", "bytes".into()));
    }
    if deflate {
        headers.push(("Vary", "Accept-Encoding".into()));
        headers.push(("Content-Encoding", "gzip".into()));
    }
    headers.push(("Content-Length", body.len().to_string()));
    if page && !deflate {
        headers.push(("Vary", "Accept-Encoding".into()));
    }
    if close {
        headers.push(("Connection", "close".into()));
    } else if req.wants_keep_alive {
        let left = MAX_KEEP_ALIVE_REQUESTS - ex.served;
        headers.push(("Keep-Alive", format!("timeout={}, max={left}", KEEP_ALIVE_TIMEOUT.as_secs())));
        headers.push(("Connection", "Keep-Alive".into()));
    }
    headers.push(("Content-Type", content_type.into()));
    Response {
        status,
        reason: reason(status),
        headers,
        body,
        head_only: method == "HEAD" && req.malformed.is_none(),
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_levels_choose_the_error_page_generation() {
        assert_eq!(patch_level("Apache/2.4.52 (Ubuntu)"), 52);
        assert_eq!(patch_level("Apache/2.4.6 (CentOS)"), 6);
        assert_eq!(patch_level("Apache/2.4.71 (Debian)"), 71);
        assert_eq!(patch_level("nginx"), 0);
    }
}
