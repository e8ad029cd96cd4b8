//! The fleet now: every GPU's latest interval (utilisation, memory, power) and who is on it.
//! `GET /api/v1/fleet` answers once; `GET /api/v1/live` streams the same JSON as server-sent events
//! (`event: fleet`) every two seconds.

use axum::Router;

use crate::api::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
