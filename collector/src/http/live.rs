//! The fleet now: every GPU's latest interval (utilisation, memory, power) and who is on it.
//! `GET /api/v1/fleet` answers once; `GET /api/v1/live` streams the same JSON as server-sent events
//! (`event: fleet`) every two seconds, for as long as the client stays.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::wrappers::ReceiverStream;

use crate::http::{AppState, SortedJson};

/// How often the live stream sends the fleet.
const EVERY: Duration = Duration::from_secs(2);

pub fn router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(routes!(fleet)).routes(routes!(live))
}

#[utoipa::path(
    get,
    path = "/api/v1/fleet",
    tag = "live",
    summary = "Every GPU's latest interval and who is on it",
    responses((status = 200, description = "OK", body = crate::live::FleetBody))
)]
async fn fleet(State(s): State<AppState>) -> SortedJson<crate::live::FleetBody> {
    SortedJson(s.fleet.snapshot(gpucost_types::clock::now_ns()))
}

#[utoipa::path(
    get,
    path = "/api/v1/live",
    tag = "live",
    summary = "The fleet as server-sent events (event: fleet) every 2 s",
    responses((status = 200, description = "Server-sent events: each `event: fleet` carries, as its data, what `GET /api/v1/fleet` answers", body = String, content_type = "text/event-stream"))
)]
async fn live(State(s): State<AppState>) -> impl axum::response::IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            // Through a `Value`, as `/api/v1/fleet` answers it (keys in alphabetical order).
            let fleet = serde_json::to_value(s.fleet.snapshot(gpucost_types::clock::now_ns()))
                .expect("the fleet serialises")
                .to_string();
            let event = Event::default().event("fleet").data(fleet);
            if tx.send(Ok(event)).await.is_err() {
                return; // the client left
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}
