//! nginx as Debian and Ubuntu ship it (nginx.conf: `keepalive_timeout
//! 65`, no `keepalive_header`; the default site: `try_files $uri $uri/
//! =404` over /var/www/html, whose index is `index.nginx-debian.html`).
//!
//! What the real server does, checked against it by
//! `crates/decnet/tests/http_personas.rs`:
//! - headers `Server`, `Date`, `Content-Type`, `Content-Length`,
//!   `Last-Modified`, `Connection`, `ETag` (`"mtime-size"`, hex, mtime in
//!   seconds), `Accept-Ranges`; `Connection` always (`keep-alive` or
//!   `close`), `WWW-Authenticate` after it on a 401;
//! - GET/HEAD of `/` the default page; any other upper-case method on it
//!   405 `Not Allowed` (the static module serves only GET and HEAD), on a
//!   missing path 404 (try_files answers first); a method that is not
//!   upper-case letters, a bad request line or a missing Host 400, closed;
//! - `keepalive_requests`: 100 before 1.19.10, 1000 since; the last one
//!   answers `Connection: close`;
//! - error pages from the generated templates, signed with the Server
//!   header's text, never a host name.

use super::request::Request;
use super::response::{chunked, fill, gzip, http_date, now, Response};
use super::Exchange;
use crate::services::installed;
use crate::Persona;

pub const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(65);

const PAGE: &str = include_str!("pages/nginx-index.html");

fn error_page(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("Bad Request", include_str!("pages/nginx-400.html")),
        401 => ("Unauthorized", include_str!("pages/nginx-401.html")),
        403 => ("Forbidden", include_str!("pages/nginx-403.html")),
        405 => ("Not Allowed", include_str!("pages/nginx-405.html")),
        _ => ("Not Found", include_str!("pages/nginx-404.html")),
    }
}

/// `keepalive_requests` for the persona's version.
fn keepalive_requests(server: &str) -> u32 {
    let version: Vec<u32> = server
        .strip_prefix("nginx/")
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    if version.as_slice() >= [1, 19, 10].as_slice() {
        1000
    } else {
        100
    }
}

/// nginx's request-line parser takes only upper-case letters, `_` and `-`
/// in a method.
fn nginx_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
}

pub fn respond(persona: &Persona, req: &Request, ex: &Exchange) -> Response {
    let server = persona.http_server.as_str();
    let method = req.method.as_str();
    let is_page = req.path == "/" || req.path == "/index.nginx-debian.html";
    let status = if req.malformed.is_some() || !nginx_method(method) {
        400
    } else if super::wants_auth(&req.path) {
        401
    } else if !is_page {
        404
    } else if matches!(method, "GET" | "HEAD") {
        200
    } else {
        405
    };
    let close = status == 400
        || req.wants_close
        || req.unframed_body
        || ex.must_close
        || (!req.is_http11() && !req.wants_keep_alive)
        || ex.served + 1 >= keepalive_requests(server);

    let (reason, text) = if status == 200 {
        ("OK", PAGE.to_string())
    } else {
        let (reason, template) = error_page(status);
        (reason, fill(template, &[("SERVER", server)]))
    };
    // Debian's `gzip on` (gzip_http_version 1.1, text/html): the page and
    // the 404 page go out compressed and chunked, with a weak ETag; the
    // 401/405 pages are not compressed.
    let gzipped =
        req.accepts_gzip && req.is_http11() && matches!(method, "GET" | "HEAD") && (status == 200 || status == 404);
    let body = if gzipped { chunked(&gzip(text.as_bytes())) } else { text.clone().into_bytes() };
    let mut headers: Vec<(&'static str, String)> =
        vec![("Server", server.to_string()), ("Date", http_date(now())), ("Content-Type", "text/html".into())];
    if !gzipped {
        headers.push(("Content-Length", text.len().to_string()));
    }
    let mtime = installed::package(persona, "nginx").0;
    if status == 200 {
        headers.push(("Last-Modified", http_date(mtime)));
    }
    if gzipped && method != "HEAD" {
        headers.push(("Transfer-Encoding", "chunked".into()));
    }
    headers.push(("Connection", if close { "close" } else { "keep-alive" }.into()));
    if status == 200 {
        let weak = if gzipped { "W/" } else { "" };
        headers.push(("ETag", format!("{weak}\"{:x}-{:x}\"", mtime, text.len())));
        if !gzipped {
            headers.push(("Accept-Ranges", "bytes".into()));
        }
    }
    if gzipped {
        headers.push(("Content-Encoding", "gzip".into()));
    }
    if status == 401 {
        headers.push(("WWW-Authenticate", "Basic realm=\"Restricted\"".into()));
    }
    Response { status, reason, headers, body, head_only: method == "HEAD" && status != 400, close }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_requests_follow_the_version() {
        assert_eq!(keepalive_requests("nginx/1.18.0 (Ubuntu)"), 100);
        assert_eq!(keepalive_requests("nginx/1.19.10"), 1000);
        assert_eq!(keepalive_requests("nginx/1.22.1"), 1000);
        assert!(nginx_method("GET") && nginx_method("FOO") && !nginx_method("foo") && !nginx_method("G!T"));
    }
}
