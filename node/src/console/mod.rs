//! The web console: a single-page app for operators, its assets embedded in the binary (the
//! network is closed: no CDN), served at `/` without the token. The page holds no data of its
//! own; it asks the admin API for everything with the token the operator types at login.
//!
//! | path | asset |
//! |---|---|
//! | `/` | the page (`index.html`) |
//! | `/console/app.js` | the application (an ES module: routing, pages, forms) |
//! | `/console/i18n.js` | every label, Chinese and English (an ES module) |
//! | `/console/dom.js` | DOM building helpers (an ES module; never `innerHTML`) |
//! | `/console/console.css` | the style sheet |
//! | `/console/favicon.svg`, `/favicon.ico` | the icon (SVG) |
//!
//! Every asset carries the same Content-Security-Policy, which allows only the node's own
//! scripts, styles and images (plus `data:` images): no inline script, handler or style.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const I18N_JS: &str = include_str!("assets/i18n.js");
const DOM_JS: &str = include_str!("assets/dom.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The Content-Security-Policy of every console asset.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                       script-src 'self'; frame-ancestors 'none'";

/// Every path the console serves, with its content type (for tests and docs).
pub const PATHS: &[(&str, &str)] = &[
    ("/", HTML),
    ("/console/app.js", JS),
    ("/console/i18n.js", JS),
    ("/console/dom.js", JS),
    ("/console/console.css", CSS),
    ("/console/favicon.svg", SVG),
    ("/favicon.ico", SVG),
];

/// The console's routes, merged outside the API's token check.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/console/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/console/i18n.js", get(|| async { asset(JS, I18N_JS) }))
        .route("/console/dom.js", get(|| async { asset(JS, DOM_JS) }))
        .route(
            "/console/console.css",
            get(|| async { asset(CSS, CONSOLE_CSS) }),
        )
        .route(
            "/console/favicon.svg",
            get(|| async { asset(SVG, FAVICON_SVG) }),
        )
        .route("/favicon.ico", get(|| async { asset(SVG, FAVICON_SVG) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Everything the page loads comes from the node itself.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_has_no_inline_code() {
        for asset in [
            "/console/app.js",
            "/console/console.css",
            "/console/favicon.svg",
        ] {
            assert!(
                INDEX_HTML.contains(asset),
                "index.html does not load {asset}"
            );
        }
        for module in ["'./dom.js'", "'./i18n.js'"] {
            assert!(APP_JS.contains(module), "app.js does not import {module}");
        }
        // The CSP forbids inline scripts, handlers and styles: the page must not need them.
        for forbidden in ["<script>", " onclick=", " onload=", " style=", "<style"] {
            assert!(
                !INDEX_HTML.contains(forbidden),
                "index.html contains {forbidden}"
            );
        }
        // API data goes in as text, never as markup; looks change by class only.
        for (name, js) in [("app.js", APP_JS), ("dom.js", DOM_JS), ("i18n.js", I18N_JS)] {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                ".style.",
                "eval(",
            ] {
                assert!(!js.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }
}
