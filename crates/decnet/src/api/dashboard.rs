//! The dashboard: one static HTML page compiled into the binary, talking
//! to the JSON API and its SSE stream from the browser. Serving it needs no
//! auth (it holds no data); everything it shows comes from authenticated calls.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // The page loads nothing from elsewhere; say so to the browser.
            // 'self' scripts and styles are the vendored session player
            // (api::assets), whose terminal emulator is WebAssembly.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                 style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}
