//! lighttpd (embedded cameras) and IIS (Windows): a smaller but
//! consistent variant. Each keeps its server's header order and `Server`
//! header, a default page and a 404, keep-alive on HTTP/1.1 and 400 for a
//! malformed request; no generated error pages yet (neither server is
//! packaged in a form the generator can run).

use super::request::Request;
use super::response::{http_date, now, reason, Response};
use super::Exchange;
use crate::services::installed;
use crate::Persona;

pub const KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_KEEP_ALIVE_REQUESTS: u32 = 100;

fn page(iis: bool) -> &'static str {
    if iis {
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\" />\r\n<title>IIS Windows Server</title>\r\n</head>\r\n<body>\r\n<div id=\"container\">\r\n<a href=\"http://go.microsoft.com/fwlink/?linkid=66138&amp;clcid=0x409\"><img src=\"iisstart.png\" alt=\"IIS\" width=\"960\" height=\"600\" /></a>\r\n</div>\r\n</body>\r\n</html>"
    } else {
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Web Client</title>\n</head>\n<body>\n<form action=\"/login.cgi\" method=\"post\">\n<input type=\"text\" name=\"username\">\n<input type=\"password\" name=\"password\">\n<input type=\"submit\" value=\"Login\">\n</form>\n</body>\n</html>\n"
    }
}

fn error_body(iis: bool, status: u16) -> String {
    if iis {
        format!("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n<HTML><HEAD><TITLE>{}</TITLE>\r\n<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n<BODY><h2>{}</h2>\r\n<hr><p>HTTP Error {status}. {}</p>\r\n</BODY></HTML>\r\n", reason(status), reason(status), reason(status))
    } else {
        format!("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>{status} - {}</title>\n </head>\n <body>\n  <h1>{status} - {}</h1>\n </body>\n</html>\n", reason(status), reason(status))
    }
}

pub fn respond(persona: &Persona, req: &Request, ex: &Exchange, iis: bool) -> Response {
    let server = persona.http_server.as_str();
    let method = req.method.as_str();
    let status = if req.malformed.is_some() {
        400
    } else if super::wants_auth(&req.path) {
        401
    } else if req.path == "/" && matches!(method, "GET" | "HEAD" | "POST") {
        200
    } else if req.path == "/" {
        405
    } else {
        404
    };
    let close = status == 400
        || req.wants_close
        || req.unframed_body
        || ex.must_close
        || (!req.is_http11() && !req.wants_keep_alive)
        || ex.served + 1 >= MAX_KEEP_ALIVE_REQUESTS;
    let body = if status == 200 { page(iis).to_string() } else { error_body(iis, status) };
    let date = http_date(now());
    let (mtime, _) = installed::package(persona, if iis { "iis" } else { "lighttpd" });
    let mut headers: Vec<(&'static str, String)> = vec![("Content-Type", "text/html".into())];
    if status == 200 {
        if iis {
            headers.push(("Last-Modified", http_date(mtime)));
            headers.push(("Accept-Ranges", "bytes".into()));
            // IIS: the file time as a FILETIME in hex, then the change number.
            let filetime = (mtime + 11_644_473_600) as u64 * 10_000_000;
            headers.push(("ETag", format!("\"{filetime:x}:0\"")));
        } else {
            headers.push(("Accept-Ranges", "bytes".into()));
            headers.push(("ETag", format!("\"{}\"", installed::draw(persona, "lighttpd-etag") % 4_000_000_000)));
            headers.push(("Last-Modified", http_date(mtime)));
        }
    }
    if status == 401 {
        headers.push(("WWW-Authenticate", "Basic realm=\"Restricted\"".into()));
    }
    if iis {
        headers.push(("Server", server.to_string()));
        headers.push(("Date", date));
        headers.push(("Content-Length", body.len().to_string()));
        if close {
            headers.push(("Connection", "close".into()));
        }
    } else {
        headers.push(("Content-Length", body.len().to_string()));
        if close {
            headers.push(("Connection", "close".into()));
        }
        headers.push(("Date", date));
        headers.push(("Server", server.to_string()));
    }
    Response {
        status,
        reason: reason(status),
        headers,
        body: body.into_bytes(),
        head_only: method == "HEAD" && status != 400,
        close,
    }
}
