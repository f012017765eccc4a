//! Live topology events over Server-Sent Events:
//! `GET /api/v1/topologies/{id}/events?token=...`.
//!
//! Browsers' `EventSource` cannot send headers, hence the `?token=` form of
//! auth; it is checked before the topology lookup so ids cannot be probed
//! without a valid token. A stream:
//!
//! 1. answers at once: the handler checks auth, the topology and the
//!    user's cap, starts subscribing to `topology.<id>.>` in the background
//!    and returns, so the headers never wait for the bus;
//! 2. sends `event: snapshot` with `{topology_id, status, version, in_flight}`,
//!    read after the subscription is confirmed when the bus confirms it
//!    within [`SNAPSHOT_GRACE`] (always, for a healthy local bus), so no
//!    event can fall between the snapshot and the first live event; a bus
//!    slower than that does not hold the snapshot back;
//! 3. forwards each bus event named by its topic tail (`mutation.applied`,
//!    `status`, ...) with data `{topic, type, ts, payload}`;
//! 4. sends a `: keepalive` comment every `keepalive` (15 s by default);
//! 5. when the token it was opened with expires, sends `event: token_expired`
//!    and ends; when its user is deleted or changes role or password (say
//!    `decnet user del` in another process), sends `event: revoked` and
//!    ends within [`super::revocation::POLL`]: a stream must not keep
//!    delivering to a credential that would be refused on any new request
//!    (the client logs in again and reconnects).
//!
//! The bus never echoes an event to the connection that published it, and
//! the API publishes on one shared connection, so the events the API itself
//! publishes (`mutation.enqueued`, `status: deploying`) would never reach
//! its own streams. [`EventStreams::echo`] hands them to the streams of
//! this process directly; events from other processes (the mutator) come
//! through the bus subscription. This also keeps those events flowing to
//! open streams while the bus is down.
//!
//! With the bus down (or a subscribe that times out) the stream still
//! answers with the snapshot and keepalives, and starts a new subscribe
//! attempt on a keepalive when none is under way; the attempt runs beside
//! the stream, so keepalives are never held up by it. Each user may hold a
//! bounded number of open streams (429 beyond); the slot and the bus
//! subscription are both owned by the response body, so a client that
//! disconnects frees them when hyper drops the body (a subscribe still
//! under way then ends in a dropped subscription, which unsubscribes).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header::HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use decnet_bus::{topics, Envelope, Pattern, Subscription};
use serde_json::json;
use sqlx::SqlitePool;
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiPath, ErrorBody};
use super::revocation::{Revocation, UserWatch};
use super::state::AppState;
use crate::auth::{AuthUser, ViewerFromQuery};
use crate::store::topology as store;
use crate::topology_events::TopologyEvent;
use decnet_bus::sdk::AppBus;

/// Interval of the `: keepalive` comment.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Open event streams allowed per user.
pub const DEFAULT_MAX_STREAMS_PER_USER: usize = 4;
/// Longest one subscribe attempt may take before it counts as failed (the
/// next keepalive then starts another).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the snapshot waits for the subscribe started with the stream.
/// A healthy local bus confirms in well under a millisecond; a hung one
/// must not hold the snapshot back (the headers never wait at all).
pub const SNAPSHOT_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub keepalive: Duration,
    pub max_streams_per_user: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { keepalive: DEFAULT_KEEPALIVE, max_streams_per_user: DEFAULT_MAX_STREAMS_PER_USER }
    }
}

/// Events this process published, as its own streams see them.
const LOCAL_ECHO_CAPACITY: usize = 1024;

/// The settings of event streams, who holds how many open, and the local
/// echo of this process's own topology events.
#[derive(Debug)]
pub struct EventStreams {
    config: EventsConfig,
    open: Mutex<HashMap<String, usize>>,
    local: broadcast::Sender<Arc<Envelope>>,
    /// Ends streams whose user is deleted or changes role or password.
    users: UserWatch,
}

impl Default for EventStreams {
    fn default() -> Self {
        Self::new(EventsConfig::default())
    }
}

impl EventStreams {
    pub fn new(config: EventsConfig) -> Self {
        let (local, _) = broadcast::channel(LOCAL_ECHO_CAPACITY);
        EventStreams { config, open: Mutex::new(HashMap::new()), local, users: UserWatch::default() }
    }

    /// Deliver an event this process publishes to its own open streams
    /// (the bus will not echo it back to us).
    pub fn echo(&self, event: &TopologyEvent) {
        let envelope = Envelope {
            v: decnet_bus::envelope::ENVELOPE_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            topic: event.topic.as_str().to_string(),
            event_type: event.event_type.clone(),
            ts: decnet_bus::envelope::now_ts(),
            payload: event.payload.clone(),
        };
        // No receivers (no open stream) is the common case, not an error.
        let _ = self.local.send(Arc::new(envelope));
    }

    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// The end of `user`'s stream: when its token expires, or when the
    /// user is deleted or changes role or password (whichever comes first).
    pub(crate) fn credential_end(
        &self,
        user: &AuthUser,
        pool: &SqlitePool,
        shutdown: &CancellationToken,
    ) -> TokenExpiry {
        TokenExpiry::new(user.token_expires_at, self.users.revocation(user, pool, shutdown))
    }

    /// Streams `user` holds open right now.
    pub fn open_for(&self, user: &str) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).get(user).copied().unwrap_or(0)
    }

    /// Take one of `user`'s slots, or `None` when all are in use.
    pub(crate) fn try_acquire(self: &Arc<Self>, user: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user.to_string()).or_insert(0);
        if *count >= self.config.max_streams_per_user {
            return None;
        }
        *count += 1;
        Some(StreamSlot { streams: self.clone(), user: user.to_string() })
    }
}

/// One open stream of one user; gives the slot back when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    streams: Arc<EventStreams>,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

async fn subscribe(bus: &AppBus, pattern: &Pattern) -> Option<Subscription> {
    let attempt = async {
        let bus = bus.get().await?;
        match bus.subscribe(pattern.as_str()).await {
            Ok(sub) => Some(sub),
            Err(e) => {
                tracing::debug!(pattern = %pattern.as_str(), error = %e, "event stream cannot subscribe yet");
                None
            }
        }
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, attempt).await.ok().flatten()
}

/// A subscribe attempt under way, its answer still to come.
pub(crate) type PendingSubscription = oneshot::Receiver<Option<Subscription>>;

/// Subscribe on a task of its own. Neither the handler nor the stream
/// ever waits on the bus longer than it chooses to, and a stream dropped
/// mid-attempt does not cancel the subscribe halfway (the finished
/// subscription is then dropped with the unread answer, which unsubscribes).
pub(crate) fn start_subscribe(bus: Arc<AppBus>, pattern: Pattern) -> PendingSubscription {
    let (answer, pending) = oneshot::channel();
    tokio::spawn(async move {
        let _ = answer.send(subscribe(&bus, &pattern).await);
    });
    pending
}

/// The answer of `pending`, or never while no attempt is under way.
pub(crate) async fn next_answer(pending: &mut Option<PendingSubscription>) -> Option<Subscription> {
    match pending {
        // A panicked attempt counts as a failed one.
        Some(rx) => rx.await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// What the response body pulls events from. Owns the bus subscription
/// (or the attempt to get one) and the user's slot, so dropping the body
/// releases both.
struct Feed {
    /// Whether the snapshot went out (it is always the first event).
    snapshot_sent: bool,
    pool: SqlitePool,
    topology_id: String,
    subscription: Option<Subscription>,
    pending: Option<PendingSubscription>,
    local: broadcast::Receiver<Arc<Envelope>>,
    bus: Arc<AppBus>,
    pattern: Pattern,
    prefix: String,
    keepalive: tokio::time::Interval,
    shutdown: CancellationToken,
    expiry: TokenExpiry,
    _slot: StreamSlot,
}

/// The end of a stream's credential. Every SSE stream holds one: a stream
/// must not keep delivering to a token that any new request would refuse,
/// so when the token expires the stream sends `event: token_expired`, and
/// when its user is deleted or changes role or password `event: revoked`,
/// and ends (the client logs in again and reconnects). One type for every
/// stream, so no stream can forget it.
pub(crate) struct TokenExpiry {
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    revocation: Revocation,
    /// The closing event went out; the stream ends next.
    fired: bool,
}

impl TokenExpiry {
    /// For a token valid until `expires_at` (unix seconds). The token was
    /// valid a moment ago, so this is in the future; the clamp only guards
    /// against a clock step.
    fn new(expires_at: i64, revocation: Revocation) -> TokenExpiry {
        let left = Duration::from_secs(expires_at.saturating_sub(crate::auth::unix_now()).max(0) as u64);
        TokenExpiry { deadline: Box::pin(tokio::time::sleep(left)), revocation, fired: false }
    }

    /// Whether the stream already sent its closing event and must end now.
    pub(crate) fn has_fired(&self) -> bool {
        self.fired
    }

    /// Waits for the expiry or the revocation and gives the event to send.
    /// Cancel-safe: the deadline and the revocation's view live in `self`,
    /// so a `select!` that picks another branch loses nothing.
    pub(crate) async fn expired(&mut self) -> Event {
        let event = tokio::select! {
            _ = self.deadline.as_mut() => {
                Event::default().event("token_expired").data(r#"{"error":"token expired; log in again"}"#)
            }
            reason = self.revocation.revoked() => {
                Event::default().event("revoked").data(json!({ "error": reason }).to_string())
            }
        };
        self.fired = true;
        event
    }
}

impl Feed {
    async fn next_event(&mut self) -> Option<Event> {
        if self.expiry.has_fired() {
            return None;
        }
        if !self.snapshot_sent {
            self.snapshot_sent = true;
            return self.snapshot().await;
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
                    Some(envelope) => return Some(self.bus_event(envelope)),
                    // The bus went away under us: carry on with keepalives
                    // and resubscribe on the next tick.
                    None => self.subscription = None,
                },
                local = self.local.recv() => match local {
                    Ok(envelope) if envelope.topic.starts_with(&self.prefix) => {
                        return Some(self.bus_event(Envelope::clone(&envelope)));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "slow event stream skipped local topology events");
                    }
                    // The sender lives as long as the state; closed means shutdown.
                    Err(broadcast::error::RecvError::Closed) => return None,
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

    /// The `snapshot` event. Waits up to [`SNAPSHOT_GRACE`] for the
    /// subscribe the handler started, so that on a healthy bus the snapshot
    /// is read after the subscription exists: an event published in
    /// between is then both in the snapshot and delivered, never lost.
    /// `None` (ending the stream) if the topology cannot be read: the
    /// status line is already out, so there is no error answer left to give.
    async fn snapshot(&mut self) -> Option<Event> {
        if let Some(pending) = self.pending.as_mut() {
            let answer = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return None,
                answer = tokio::time::timeout(SNAPSHOT_GRACE, pending) => answer,
            };
            // Past the grace the attempt stays pending and is picked up by
            // `next_event`; its events start whenever it completes.
            if let Ok(answer) = answer {
                self.pending = None;
                self.subscription = answer.ok().flatten();
            }
        }
        let id = &self.topology_id;
        let read = async {
            let topology = store::get_topology(&self.pool, id).await?;
            let in_flight = store::in_flight(&self.pool, id).await?;
            Ok::<_, ApiError>(topology.map(|t| (t, in_flight)))
        };
        match read.await {
            Ok(Some((topology, in_flight))) => {
                let snapshot = json!({
                    "topology_id": topology.id,
                    "status": topology.status,
                    "version": topology.version,
                    "in_flight": in_flight,
                });
                Some(Event::default().event("snapshot").data(snapshot.to_string()))
            }
            Ok(None) => {
                tracing::debug!(topology = %id, "topology gone before its event stream started");
                None
            }
            Err(e) => {
                tracing::error!(topology = %id, error = %e, "cannot read the snapshot of an event stream");
                None
            }
        }
    }

    fn bus_event(&self, envelope: Envelope) -> Event {
        let name = envelope.topic.strip_prefix(&self.prefix).unwrap_or(&envelope.topic);
        let data = json!({
            "topic": envelope.topic,
            "type": envelope.event_type,
            "ts": envelope.ts,
            "payload": envelope.payload,
        });
        Event::default().event(name).data(data.to_string())
    }
}

pub(crate) async fn next_envelope(subscription: &mut Option<Subscription>) -> Option<Envelope> {
    match subscription {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/topologies/{id}/events",
    tag = "topologies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Topology id"),
        ("token" = Option<String>, Query, description = "Bearer token, for clients that cannot send headers (EventSource)"),
    ),
    responses(
        (status = 200, description = "text/event-stream: `snapshot`, then every topology.<id>.> event named by its tail, `: keepalive` comments; `token_expired` and the end of the stream when the token expires, `revoked` and the end when the user is deleted or changes role or password", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such topology", body = ErrorBody),
        (status = 429, description = "This user already holds the maximum of open event streams", body = ErrorBody),
        (status = 500, description = "Database error", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    ViewerFromQuery(user): ViewerFromQuery,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    if store::get_topology(&state.pool, &id).await?.is_none() {
        return Err(ApiError::not_found(format!("no topology with id {id:?}")));
    }
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
    let pattern = topics::topology_events(&id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Both before the snapshot is read (in the body): the local echo at
    // once, the bus subscription as soon as the bus answers.
    let local = state.event_streams.local.subscribe();
    let pending = start_subscribe(state.bus.clone(), pattern.clone());

    let period = state.event_streams.config().keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        snapshot_sent: false,
        pool: state.pool.clone(),
        prefix: format!("topology.{id}."),
        topology_id: id,
        subscription: None,
        pending: Some(pending),
        local,
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
    // Tell buffering proxies (nginx) to pass events through at once.
    let no_buffering = [(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"))];
    Ok((no_buffering, Sse::new(stream)))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(events))]
pub struct EventsDoc;
