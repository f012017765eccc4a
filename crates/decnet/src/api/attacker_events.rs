//! `GET /api/v1/attackers/stream?token=`: every `attacker.>` event as
//! Server-Sent Events, for the live Attackers page.
//!
//! Same rules as the topology stream ([`super::events`]): auth before
//! anything, a per-user cap on open streams, headers that never wait on
//! the bus, a `: keepalive` comment each period that also retries the
//! subscription while the bus is down. Events are named by their full
//! topic (`attacker.observed`, `attacker.scored`) with data
//! `{topic, type, ts, payload}`. The first event is `ready`, sent once the
//! subscription is in place (or after a short grace when the bus is slow),
//! so a client knows from when on it misses nothing. When the token the
//! stream was opened with expires it sends `token_expired` and ends, and
//! `revoked` when its user is deleted or changes role or password, like
//! every stream ([`super::events::TokenExpiry`]).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{header::HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use decnet_bus::{topics, Envelope, Pattern, Subscription};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorBody};
use super::events::{
    next_answer, next_envelope, start_subscribe, PendingSubscription, StreamSlot, TokenExpiry, SNAPSHOT_GRACE,
};
use super::state::AppState;
use crate::auth::ViewerFromQuery;
use decnet_bus::sdk::AppBus;
use std::sync::Arc;

struct Feed {
    ready_sent: bool,
    subscription: Option<Subscription>,
    pending: Option<PendingSubscription>,
    bus: Arc<AppBus>,
    pattern: Pattern,
    keepalive: tokio::time::Interval,
    shutdown: CancellationToken,
    expiry: TokenExpiry,
    _slot: StreamSlot,
}

impl Feed {
    async fn next_event(&mut self) -> Option<Event> {
        if self.expiry.has_fired() {
            return None;
        }
        if !self.ready_sent {
            self.ready_sent = true;
            if let Some(pending) = self.pending.as_mut() {
                if let Ok(answer) = tokio::time::timeout(SNAPSHOT_GRACE, pending).await {
                    self.pending = None;
                    self.subscription = answer.ok().flatten();
                }
            }
            let data = json!({ "subscribed": self.subscription.is_some() });
            return Some(Event::default().event("ready").data(data.to_string()));
        }
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                event = self.expiry.expired() => return Some(event),
                subscription = next_answer(&mut self.pending) => {
                    self.pending = None;
                    self.subscription = subscription;
                }
                envelope = next_envelope(&mut self.subscription) => match envelope {
                    Some(envelope) => return Some(event_of(envelope)),
                    None => self.subscription = None,
                },
                _ = self.keepalive.tick() => {
                    if self.subscription.is_none() && self.pending.is_none() {
                        self.pending = Some(start_subscribe(self.bus.clone(), self.pattern.clone()));
                    }
                    return Some(Event::default().comment("keepalive"));
                }
            }
        }
    }
}

fn event_of(envelope: Envelope) -> Event {
    let data = json!({
        "topic": envelope.topic,
        "type": envelope.event_type,
        "ts": envelope.ts,
        "payload": envelope.payload,
    });
    Event::default().event(envelope.topic.clone()).data(data.to_string())
}

#[utoipa::path(
    get, path = "/api/v1/attackers/stream", tag = "attackers", security(("bearer" = [])),
    params(("token" = Option<String>, Query, description = "Bearer token, for EventSource")),
    responses(
        (status = 200, description = "text/event-stream: `ready`, then `attacker.*` events, `: keepalive` comments; `token_expired` and the end of the stream when the token expires, `revoked` and the end when the user is deleted or changes role or password", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 429, description = "Too many open streams for this user", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    ViewerFromQuery(user): ViewerFromQuery,
) -> Result<impl IntoResponse, ApiError> {
    let slot = state.event_streams.try_acquire(&user.username).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} already has {} event streams open (the limit); close one first",
                user.username,
                state.event_streams.config().max_streams_per_user
            ),
        )
    })?;
    let pattern = topics::attacker_all();
    let pending = start_subscribe(state.bus.clone(), pattern.clone());
    let period = state.event_streams.config().keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        ready_sent: false,
        subscription: None,
        pending: Some(pending),
        bus: state.bus.clone(),
        pattern,
        keepalive,
        shutdown: state.shutdown.clone(),
        expiry: state.event_streams.credential_end(&user, &state.pool, &state.shutdown),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next_event().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let no_buffering = [(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"))];
    Ok((no_buffering, Sse::new(stream)))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(stream))]
pub struct AttackerEventsDoc;
