//! The vendored GOV.UK Frontend and MOJ Frontend builds (see `assets/README.md`), compiled
//! into the binary so the console works from a single file on a fresh machine. The style
//! sheets ask for `/assets/images/...` and `/assets/fonts/...`, so those paths are served as
//! they are; everything of the console's own lives under `/console/static/`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal, $path:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

/// `/console/static/{name}`.
const STATIC: &[Asset] = &[
    asset!(
        "govuk-frontend.min.css",
        "text/css",
        "govuk/govuk-frontend.min.css"
    ),
    asset!(
        "govuk-frontend.min.js",
        "text/javascript",
        "govuk/govuk-frontend.min.js"
    ),
    asset!(
        "moj-frontend.min.css",
        "text/css",
        "moj/moj-frontend.min.css"
    ),
    asset!(
        "moj-frontend.min.js",
        "text/javascript",
        "moj/moj-frontend.min.js"
    ),
    asset!("console.js", "text/javascript", "console.js"),
    asset!("console.css", "text/css", "console.css"),
];

/// `/assets/images/{name}`.
const IMAGES: &[Asset] = &[
    asset!(
        "favicon.ico",
        "image/x-icon",
        "govuk/assets/images/favicon.ico"
    ),
    asset!(
        "favicon.svg",
        "image/svg+xml",
        "govuk/assets/images/favicon.svg"
    ),
    asset!(
        "govuk-crest.svg",
        "image/svg+xml",
        "govuk/assets/images/govuk-crest.svg"
    ),
    asset!(
        "govuk-icon-180.png",
        "image/png",
        "govuk/assets/images/govuk-icon-180.png"
    ),
    asset!(
        "icon-close-cross-black.svg",
        "image/svg+xml",
        "moj/assets/images/icon-close-cross-black.svg"
    ),
    asset!(
        "icon-document.svg",
        "image/svg+xml",
        "moj/assets/images/icon-document.svg"
    ),
    asset!(
        "icon-progress-tick.svg",
        "image/svg+xml",
        "moj/assets/images/icon-progress-tick.svg"
    ),
    asset!(
        "icon-tag-remove-cross-white.svg",
        "image/svg+xml",
        "moj/assets/images/icon-tag-remove-cross-white.svg"
    ),
    asset!(
        "icon-tag-remove-cross.svg",
        "image/svg+xml",
        "moj/assets/images/icon-tag-remove-cross.svg"
    ),
    asset!(
        "icon-toggle-plus-minus.svg",
        "image/svg+xml",
        "moj/assets/images/icon-toggle-plus-minus.svg"
    ),
];

/// `/assets/fonts/{name}`: GDS Transport, served only when `console.gds_transport_font` is on.
const FONTS: &[Asset] = &[
    asset!(
        "bold-b542beb274-v2.woff2",
        "font/woff2",
        "govuk/assets/fonts/bold-b542beb274-v2.woff2"
    ),
    asset!(
        "light-94a07e06a1-v2.woff2",
        "font/woff2",
        "govuk/assets/fonts/light-94a07e06a1-v2.woff2"
    ),
];

fn serve(set: &[Asset], name: &str) -> Response {
    match set.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn console_static(Path(name): Path<String>) -> Response {
    serve(STATIC, &name)
}

pub async fn image(Path(name): Path<String>) -> Response {
    serve(IMAGES, &name)
}

pub fn font(name: &str, allowed: bool) -> Response {
    if allowed {
        serve(FONTS, name)
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
