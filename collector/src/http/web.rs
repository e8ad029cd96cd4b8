//! The web dashboard at `/`: static assets compiled into the binary (no CDN: it works offline), reading
//! the JSON API and the live stream (`/api/v1/live`).
//!
//! `GET /` is the page; `GET /assets/<name>` its scripts (plain ES modules, no build step), styles, icon
//! and the vendored charting library (uPlot, MIT, `web/vendor/`). Every answer carries a strong `ETag`
//! (a hash of the content) with `Cache-Control: no-cache`, so browsers revalidate cheaply (304) and never
//! mix a new page with old scripts after an upgrade.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::AppState;

/// One file of the dashboard.
struct Asset {
    /// The name under `/assets/` (`""` for the page itself).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    Asset { name: "", content_type: "text/html; charset=utf-8", body: include_bytes!("web/index.html") },
    Asset { name: "app.js", content_type: JS, body: include_bytes!("web/app.js") },
    Asset { name: "api.js", content_type: JS, body: include_bytes!("web/api.js") },
    Asset { name: "charts.js", content_type: JS, body: include_bytes!("web/charts.js") },
    Asset { name: "live.js", content_type: JS, body: include_bytes!("web/live.js") },
    Asset { name: "views.js", content_type: JS, body: include_bytes!("web/views.js") },
    Asset { name: "table.js", content_type: JS, body: include_bytes!("web/table.js") },
    Asset { name: "budgets.js", content_type: JS, body: include_bytes!("web/budgets.js") },
    Asset { name: "alerts.js", content_type: JS, body: include_bytes!("web/alerts.js") },
    Asset { name: "explorer.js", content_type: JS, body: include_bytes!("web/explorer.js") },
    Asset { name: "history.js", content_type: JS, body: include_bytes!("web/history.js") },
    Asset { name: "model.js", content_type: JS, body: include_bytes!("web/model.js") },
    Asset { name: "recommendations.js", content_type: JS, body: include_bytes!("web/recommendations.js") },
    Asset { name: "style.css", content_type: CSS, body: include_bytes!("web/style.css") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("web/favicon.svg") },
    Asset { name: "vendor/uPlot.iife.min.js", content_type: JS, body: include_bytes!("web/vendor/uPlot.iife.min.js") },
    Asset { name: "vendor/uPlot.min.css", content_type: CSS, body: include_bytes!("web/vendor/uPlot.min.css") },
    Asset {
        name: "vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("web/vendor/uPlot.LICENSE"),
    },
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("", &headers) }))
        .route("/index.html", get(|headers: HeaderMap| async move { serve("", &headers) }))
        .route(
            "/assets/{*name}",
            get(|Path(name): Path<String>, headers: HeaderMap| async move { serve(&name, &headers) }),
        )
}

/// The strong ETags of the assets, computed once (FNV-1a 64 over the content).
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let h = a
                    .body
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
                format!("\"{h:016x}-{}\"", a.body.len())
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        // The API's error shape, like every other unknown path.
        let msg = format!("no such asset: /assets/{name}");
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": msg }))).into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if name.is_empty() {
        // Scripts, styles, images and API calls from this origin only: nothing from a CDN, no inline script.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
            ),
        );
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        let a = ASSETS.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("asset {name:?}"));
        std::str::from_utf8(a.body).expect("UTF-8")
    }

    /// Every `assets/…` the page names and every `./x.js` a module imports is served.
    #[test]
    fn every_referenced_asset_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let page = text("");
        let mut referenced = Vec::new();
        for part in page.split("\"assets/").skip(1) {
            referenced.push(part.split('"').next().unwrap().to_string());
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js") && !a.name.starts_with("vendor/")) {
            for part in text(a.name).split("from './").skip(1) {
                referenced.push(part.split('\'').next().unwrap().to_string());
            }
        }
        assert!(referenced.len() >= 6, "{referenced:?}");
        for r in &referenced {
            assert!(served.contains(&r.as_str()), "{r} is referenced but not served");
        }
        for a in ASSETS.iter().filter(|a| !a.name.is_empty()) {
            assert!(
                referenced.iter().any(|r| r == a.name) || a.name.ends_with("LICENSE"),
                "{} is served but nothing uses it",
                a.name
            );
        }
    }

    /// No CDN: no asset names another origin (an SVG's namespace is a name, not a download).
    #[test]
    fn nothing_comes_from_elsewhere() {
        for a in ASSETS.iter().filter(|a| !a.name.starts_with("vendor/")) {
            let t = text(a.name).replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !t.contains("http://") && !t.contains("https://") && !t.contains("\"//"),
                "{} names another origin",
                a.name
            );
        }
    }

    #[test]
    fn etag_revalidates_and_unknown_names_are_404() {
        let resp = serve("app.js", &HeaderMap::new());
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], JS);
        let etag = resp.headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("app.js", &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("app.js", &HeaderMap::new()).headers()[header::CACHE_CONTROL], "no-cache");
        assert!(serve("", &HeaderMap::new()).headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
