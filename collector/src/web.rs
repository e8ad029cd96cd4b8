//! The web dashboard at `/`: static assets compiled into the binary (no CDN: it works offline), reading
//! the JSON API and the live stream (`/api/v1/live`).

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::api::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("web/index.html"))
}
