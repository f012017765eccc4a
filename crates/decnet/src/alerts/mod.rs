//! Alerts: webhooks on chosen topics and the SIEM export (docs/alerts.md).
//!
//! The API process delivers (`decnet api`, which `decnet up` runs). It
//! listens on a bus connection of its own, not the API's shared one: the
//! bus never echoes an event to the connection that published it, and the
//! API's ingester publishes `credential.captured` and `attacker.artifact`
//! on the shared connection, so a subscription there would never see them.
//!
//! It subscribes `>` when a SIEM export is configured (every event is
//! exported), else only the topics webhooks may ask for.
//!
//! For each event [`run`] hands it to the SIEM exporter (every topic but
//! worker heartbeats) and, when its topic is one of
//! [`crate::store::webhooks::ALERT_TOPICS`], to every enabled webhook that asked for it:
//! - `attacker.observed` is sent once per attacker IP and webhook, ever
//!   (the profiler and the sniffer both publish it; the delivery log is
//!   the memory, so a restart does not repeat it either);
//! - each webhook has a token bucket of `rate_per_min` per minute (full
//!   at start); past it the notification is logged `rate_limited`, not
//!   sent: a scan of a thousand addresses must not become a thousand
//!   Slack messages;
//! - a delivery is retried on a connection error, a timeout, 408, 429 or
//!   5xx, with exponential backoff (1 s, 2 s, 4 s … capped at 60 s, a
//!   `Retry-After` in seconds is honoured up to the cap), at most
//!   `max_attempts` times; other 4xx answers fail at once;
//! - at most `max_in_flight` deliveries run at once in the process; past
//!   that a notification is logged `dropped`.
//!
//! `worker.stale` has no bus event (silence is not an event): the same
//! loop checks the worker registry every `stale_check` and raises one
//! when a worker it had heard from turns stale.

pub mod format;
pub mod siem;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use decnet_bus::sdk::AppBus;
use decnet_bus::{Envelope, Subscription};
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use sqlx::SqlitePool;
use tokio::sync::Semaphore;

use crate::api::AppState;
use crate::registry::{WorkerHealth, WorkerRegistry};
use crate::store::webhooks::{self as store, DeliveryStatus, Webhook};
pub use siem::{Siem, SiemConfig};

/// Retry, timeout and concurrency settings (tests shorten them).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Delay before the second attempt; doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_max: Duration,
    /// Attempts per notification, the first included.
    pub max_attempts: u32,
    /// Longest one HTTP attempt may take.
    pub request_timeout: Duration,
    /// Deliveries running at once in this process.
    pub max_in_flight: usize,
    /// How often the worker registry is checked for newly stale workers.
    pub stale_check: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_attempts: 5,
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            stale_check: Duration::from_secs(5),
        }
    }
}

/// Topics every webhook may ask for and the one a test sends.
pub const TEST_TOPIC: &str = "webhook.test";

/// Bus events the SIEM exporter listens to: everything.
const SUBSCRIBE_PATTERN: &str = ">";
/// Local queue of that subscription (the bus drops past it, counted).
const SUBSCRIPTION_CAPACITY: usize = 8192;
/// How often the delivery log is cut back to `KEEP_DELIVERIES` rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pause between subscribe attempts while the bus is away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// A per-webhook token bucket: `rate` tokens a minute, `rate` at most.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The alerting side of the API: settings, HTTP client, rate buckets,
/// the bus connection it listens on and the SIEM exporter.
#[derive(Debug)]
pub struct Alerts {
    config: AlertsConfig,
    http: reqwest::Client,
    buckets: Mutex<HashMap<i64, Bucket>>,
    in_flight: Arc<Semaphore>,
    bus: Option<Arc<AppBus>>,
    siem: Option<Arc<Siem>>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts::new(AlertsConfig::default())
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeliveryOutcome {
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// HTTP status of the last answer, when there was one.
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

impl Alerts {
    pub fn new(config: AlertsConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // A webhook answers; it does not send us elsewhere (and a
            // redirect must not carry the body to a host nobody chose).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("decnet/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Alerts {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            http,
            buckets: Mutex::new(HashMap::new()),
            bus: None,
            siem: None,
        }
    }

    /// Listen for events on `bus` (a connection of its own, see the module doc).
    pub fn with_bus(mut self, bus: Arc<AppBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Export every event to `siem`.
    pub fn with_siem(mut self, siem: Arc<Siem>) -> Self {
        self.siem = Some(siem);
        self
    }

    pub fn siem(&self) -> Option<&Arc<Siem>> {
        self.siem.as_ref()
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// Take a token from `hook`'s bucket; false when it is empty.
    fn allow(&self, hook: &Webhook) -> bool {
        let rate = f64::from(hook.rate_per_min.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let b = buckets.entry(hook.id).or_insert(Bucket { tokens: rate, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate / 60.0).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Hand `event` to the SIEM exporter and to every webhook that wants it.
    pub async fn dispatch(&self, pool: &SqlitePool, event: &Envelope) {
        if let Some(siem) = &self.siem {
            if !is_heartbeat(&event.topic) {
                siem.offer(event);
            }
        }
        if !store::ALERT_TOPICS.contains(&event.topic.as_str()) {
            return;
        }
        let hooks = match store::list(pool).await {
            Ok(h) => h,
            Err(e) => return tracing::error!(error = %e, topic = %event.topic, "cannot read webhooks; alert not sent"),
        };
        let event = Arc::new(event.clone());
        for hook in hooks.into_iter().filter(|h| h.wants(&event.topic)) {
            if let Err(e) = self.enqueue(pool, hook, event.clone()).await {
                tracing::error!(error = %e, topic = %event.topic, "cannot log a webhook delivery; alert not sent");
            }
        }
    }

    async fn enqueue(&self, pool: &SqlitePool, hook: Webhook, event: Arc<Envelope>) -> Result<(), sqlx::Error> {
        let key = dedupe_key(&event);
        if let Some(key) = key.as_deref() {
            if store::already_notified(pool, hook.id, &event.topic, key).await? {
                return Ok(());
            }
        }
        if !self.allow(&hook) {
            tracing::info!(webhook = %hook.name, topic = %event.topic, rate_per_min = hook.rate_per_min, "webhook rate limit: notification not sent");
            store::log_delivery(pool, &hook, &event.topic, key.as_deref(), DeliveryStatus::RateLimited).await?;
            return Ok(());
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(webhook = %hook.name, max = self.config.max_in_flight, "too many webhook deliveries in flight: notification dropped");
            store::log_delivery(pool, &hook, &event.topic, key.as_deref(), DeliveryStatus::Dropped).await?;
            return Ok(());
        };
        let id = store::log_delivery(pool, &hook, &event.topic, key.as_deref(), DeliveryStatus::Pending).await?;
        let (pool, http, config) = (pool.clone(), self.http.clone(), self.config.clone());
        tokio::spawn(async move {
            let _permit = permit;
            deliver(&pool, &http, &config, &hook, &event, id, config.max_attempts).await;
        });
        Ok(())
    }

    /// Send a test notification to `hook` now (one attempt, no rate
    /// limit) and say how it went; logged like any other delivery.
    pub async fn send_test(&self, pool: &SqlitePool, hook: &Webhook, by: &str) -> Result<DeliveryOutcome, sqlx::Error> {
        let event = Envelope {
            v: decnet_bus::envelope::ENVELOPE_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            topic: TEST_TOPIC.into(),
            event_type: "test".into(),
            ts: decnet_bus::envelope::now_ts(),
            payload: serde_json::json!({"webhook": hook.name, "requested_by": by}),
        };
        let id = store::log_delivery(pool, hook, TEST_TOPIC, None, DeliveryStatus::Pending).await?;
        Ok(deliver(pool, &self.http, &self.config, hook, &event, id, 1).await)
    }
}

/// Worker heartbeats are not exported: they are liveness, not events
/// (a stale worker is, as `worker.stale`).
fn is_heartbeat(topic: &str) -> bool {
    topic.starts_with("system.") && topic.ends_with(".health")
}

/// What makes two events the same alert: only `attacker.observed` is
/// deduplicated (once per attacker IP); every other alert is news.
fn dedupe_key(event: &Envelope) -> Option<String> {
    match event.topic.as_str() {
        "attacker.observed" => event.payload.get("attacker_ip").and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    }
}

/// POST the rendered `event` to `hook`, retrying as the module doc says;
/// the delivery row `id` is updated after every attempt.
async fn deliver(
    pool: &SqlitePool,
    http: &reqwest::Client,
    config: &AlertsConfig,
    hook: &Webhook,
    event: &Envelope,
    id: i64,
    max_attempts: u32,
) -> DeliveryOutcome {
    let body = format::render(hook.format, event);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (http_status, error, retry_after, retryable) = match http.post(&hook.url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None, None, false),
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
                let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
                (Some(status.as_u16()), Some(format!("HTTP {status}: {text}")), retry_after, retryable)
            }
            // without_url: the URL holds the webhook's secret.
            Err(e) => (None, Some(error_text(e.without_url())), None, true),
        };
        let done = error.is_none() || !retryable || attempt >= max_attempts;
        let status = match (&error, done) {
            (None, _) => DeliveryStatus::Delivered,
            (Some(_), true) => DeliveryStatus::Failed,
            (Some(_), false) => DeliveryStatus::Pending,
        };
        if let Err(e) = store::finish_delivery(pool, id, status, attempt, error.as_deref()).await {
            tracing::error!(error = %e, delivery = id, "cannot update the webhook delivery log");
        }
        if done {
            match &error {
                None => tracing::debug!(webhook = %hook.name, topic = %event.topic, attempt, "webhook delivered"),
                Some(e) => {
                    tracing::warn!(webhook = %hook.name, destination = %hook.destination(), topic = %event.topic, attempts = attempt, error = %e, "webhook delivery failed")
                }
            }
            return DeliveryOutcome { status, attempts: attempt, http_status, error };
        }
        let backoff = config.retry_base.saturating_mul(1 << (attempt - 1).min(16)).min(config.retry_max);
        tokio::time::sleep(retry_after.map_or(backoff, |r| r.min(config.retry_max))).await;
    }
}

/// `e` and its causes, each once (reqwest's own text is terse).
fn error_text(e: reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Remembers each worker's last status to see it turn stale.
#[derive(Debug, Default)]
pub struct StaleWatch {
    last: HashMap<(String, String), WorkerHealth>,
}

impl StaleWatch {
    /// One `worker.stale` event per worker that was `ok` at the previous
    /// check and is `stale` now.
    pub fn check(&mut self, registry: &WorkerRegistry) -> Vec<Envelope> {
        let now = decnet_bus::envelope::now_ts();
        let mut out = Vec::new();
        for w in registry.snapshot(now) {
            let key = (w.host.clone(), w.name.clone());
            let before = self.last.insert(key, w.status);
            if before == Some(WorkerHealth::Ok) && w.status == WorkerHealth::Stale {
                out.push(Envelope {
                    v: decnet_bus::envelope::ENVELOPE_VERSION,
                    id: uuid::Uuid::new_v4().simple().to_string(),
                    topic: store::WORKER_STALE.into(),
                    event_type: "stale".into(),
                    ts: now,
                    payload: serde_json::json!({
                        "worker": w.name, "host": w.host,
                        "last_heartbeat_ts": w.last_heartbeat_ts, "seconds_since": w.seconds_since,
                    }),
                });
            }
        }
        out
    }
}

/// What the loop listens to: everything when exporting to a SIEM, else
/// only the bus topics a webhook may ask for (no need to receive every
/// log line just to drop it).
fn patterns(siem: bool) -> Vec<&'static str> {
    if siem {
        vec![SUBSCRIBE_PATTERN]
    } else {
        store::ALERT_TOPICS.iter().copied().filter(|t| *t != store::WORKER_STALE).collect()
    }
}

/// One stream over all `patterns`, or `None` unless every one subscribed.
async fn subscribe(bus: &AppBus, patterns: &[&str]) -> Option<SelectAll<Subscription>> {
    let bus = bus.get().await?;
    let mut subs = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        match bus.subscribe_with_capacity(pattern, SUBSCRIPTION_CAPACITY).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::debug!(pattern, error = %e, "alerts cannot subscribe yet");
                return None;
            }
        }
    }
    Some(futures_util::stream::select_all(subs))
}

/// The alerts loop of the API: listen, dispatch, watch for stale workers,
/// run the SIEM exporter; ends on `state.shutdown`.
pub async fn run(state: AppState) {
    let alerts = state.alerts.clone();
    let cancel = state.shutdown.clone();
    let exporter = alerts.siem.clone().map(|s| tokio::spawn(s.run(cancel.clone())));
    let mut stale = StaleWatch::default();
    let mut tick = tokio::time::interval(alerts.config.stale_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let patterns = patterns(alerts.siem.is_some());
    let mut sub: Option<SelectAll<Subscription>> = None;
    let mut retry_at = tokio::time::Instant::now();
    let mut last_prune = std::time::Instant::now();
    loop {
        if sub.is_none() && tokio::time::Instant::now() >= retry_at {
            if let Some(bus) = &alerts.bus {
                sub = tokio::select! {
                    _ = cancel.cancelled() => break,
                    s = tokio::time::timeout(Duration::from_secs(2), subscribe(bus, &patterns)) => s.ok().flatten(),
                };
                if sub.is_some() {
                    tracing::info!("alerts listening on the bus");
                } else {
                    retry_at = tokio::time::Instant::now() + RESUBSCRIBE_DELAY;
                }
            }
        }
        let next = async {
            match sub.as_mut() {
                Some(s) => s.next().await,
                None if alerts.bus.is_some() => {
                    tokio::time::sleep_until(retry_at).await;
                    None
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                for event in stale.check(&state.registry) {
                    alerts.dispatch(&state.pool, &event).await;
                }
                if last_prune.elapsed() >= PRUNE_EVERY {
                    last_prune = std::time::Instant::now();
                    if let Err(e) = store::prune_deliveries(&state.pool, store::KEEP_DELIVERIES).await {
                        tracing::warn!(error = %e, "cannot prune the webhook delivery log");
                    }
                }
            }
            event = next => match event {
                Some(event) => alerts.dispatch(&state.pool, &event).await,
                None => {
                    if sub.take().is_some() {
                        tracing::warn!("alerts subscription ended (bus gone); resubscribing");
                        retry_at = tokio::time::Instant::now() + RESUBSCRIBE_DELAY;
                    }
                }
            },
        }
    }
    if let Some(task) = exporter {
        let _ = task.await;
    }
}
