//! The dashboard's vendored static files, compiled into the binary so the
//! dashboard works on an air-gapped host: asciinema-player (Apache-2.0;
//! its version, licence and how to update it are in `static/asciinema-player/`
//! and `scripts/vendor-asciinema-player.sh`). No auth: nothing here is data.

use axum::http::header;
use axum::response::IntoResponse;

const PLAYER_JS: &str = include_str!("static/asciinema-player/asciinema-player.min.js");
const PLAYER_CSS: &str = include_str!("static/asciinema-player/asciinema-player.css");

pub async fn player_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PLAYER_JS,
    )
}

pub async fn player_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PLAYER_CSS,
    )
}
