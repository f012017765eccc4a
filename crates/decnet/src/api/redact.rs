//! Request spans without secrets.
//!
//! tower-http's default span records the full URI. Browser `EventSource`
//! clients can only authenticate with `?token=<bearer token>`, so with
//! `RUST_LOG=debug` every SSE request wrote a working token into the log
//! (8 lines per request). The span made here records the URI with the
//! value of every `token` (and `access_token`) query parameter replaced.

use axum::http::{Request, Uri};
use tracing::Span;

/// Query parameters whose values never reach a log.
const SECRET_PARAMS: &[&str] = &["token", "access_token"];

/// `uri` as text, secret query values replaced by `[redacted]`.
pub fn redact_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name)) && pair.contains('=') {
                format!("{name}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

/// The request span: method, redacted URI, HTTP version (the same fields
/// as tower-http's default, at the same DEBUG level).
pub fn make_span<B>(req: &Request<B>) -> Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %redact_uri(req.uri()),
        version = ?req.version(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact_uri(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn token_values_are_replaced_and_the_rest_kept() {
        assert_eq!(r("/a/b?token=eyJ.x.y"), "/a/b?token=[redacted]");
        assert_eq!(r("/a?x=1&token=s3cret&y=2"), "/a?x=1&token=[redacted]&y=2");
        assert_eq!(r("/a?TOKEN=s3cret&access_token=t"), "/a?TOKEN=[redacted]&access_token=[redacted]");
        assert_eq!(r("/a?tokens=1&notoken=2"), "/a?tokens=1&notoken=2");
        assert_eq!(r("/plain"), "/plain");
    }
}
