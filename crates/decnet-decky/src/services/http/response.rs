//! A response as a server persona builds it: status, headers in the exact
//! order that server writes them, body. Plus the helpers every persona
//! needs: HTTP dates, filling the generated page templates, escaping.

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    /// Every header, in wire order.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// HEAD: the headers describe `body`, which is not sent.
    pub head_only: bool,
    /// The connection ends after this response.
    pub close: bool,
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase a server sends with `status` (Apache's; nginx's
/// differ for a few and are given by its persona).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        501 => "Not Implemented",
        _ => "Internal Server Error",
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for unix seconds.
pub fn http_date(secs: i64) -> String {
    const FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(FMT).ok()).unwrap_or_default()
}

/// Now, as unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A generated template with its `@NAME@` placeholders filled.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    out
}

/// `data` gzip-compressed at zlib's default level, with the header both
/// servers write (no name, no time, OS = Unix).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::GzBuilder::new().operating_system(3).write(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// `data` as one chunk and the last chunk (`Transfer-Encoding: chunked`).
pub fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

/// HTML-escape text an attacker controls before it goes into a page
/// (what Apache's `ap_escape_html` does).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_templates_and_escaping() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fill("@A@ at @B@:@A@", &[("A", "x"), ("B", "y")]), "x at y:x");
        assert_eq!(escape_html("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }

    #[test]
    fn gzip_round_trips_and_chunks_frame_it() {
        use std::io::Read as _;
        let page = include_str!("pages/nginx-index.html");
        let packed = gzip(page.as_bytes());
        assert_eq!(packed[9], 3, "OS = Unix, as both servers write it");
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut unpacked).unwrap();
        assert_eq!(unpacked, page);
        let framed = chunked(&packed);
        let line_end = framed.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&framed[..line_end]).unwrap();
        assert_eq!(usize::from_str_radix(size, 16).unwrap(), packed.len());
        assert_eq!(&framed[line_end + 2..line_end + 2 + packed.len()], &packed[..]);
        assert!(framed.ends_with(b"\r\n0\r\n\r\n"));
    }
}
