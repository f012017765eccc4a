//! The `webhooks` and `webhook_deliveries` tables (docs/alerts.md).
//!
//! A webhook is a destination URL, a body format and the topics it wants;
//! each notification due to it gets a delivery row saying what became of
//! it. The URL is a secret: [`redact_url`] is the only form that leaves
//! the process (API answers, the delivery log, log lines).

use serde::{Deserialize, Serialize};
use sqlx::{Row, SqlitePool};

/// The body shape a destination understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{source, topic, type, ts, id, summary, payload}`.
    Json,
    /// A Slack incoming webhook: `{text, blocks}` (mrkdwn, escaped).
    Slack,
    /// A Microsoft Teams incoming webhook: a MessageCard.
    Teams,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Teams => "teams",
        }
    }
}

impl std::str::FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(WebhookFormat::Json),
            "slack" => Ok(WebhookFormat::Slack),
            "teams" => Ok(WebhookFormat::Teams),
            other => Err(format!("unknown webhook format {other:?}: expected json, slack or teams")),
        }
    }
}

/// Topics a webhook may ask for: the bus topics worth waking someone for,
/// and `worker.stale`, which the API itself raises when a worker it had
/// heard from falls silent (there is no bus event for silence).
pub const ALERT_TOPICS: &[&str] = &[
    decnet_bus::topics::ATTACKER_OBSERVED,
    decnet_bus::topics::CREDENTIAL_CAPTURED,
    decnet_bus::topics::ATTACKER_ARTIFACT,
    decnet_bus::topics::IDENTITY_FORMED,
    decnet_bus::topics::CREDENTIAL_REUSE_DETECTED,
    WORKER_STALE,
];

/// The API's own event for a worker turning `stale` (SPEC §7).
pub const WORKER_STALE: &str = "worker.stale";

/// Notifications per minute when none is given.
pub const DEFAULT_RATE_PER_MIN: u32 = 30;

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub format: WebhookFormat,
    pub topics: Vec<String>,
    pub rate_per_min: u32,
    pub enabled: bool,
    pub created_by: Option<String>,
    pub created_at: f64,
}

impl Webhook {
    pub fn wants(&self, topic: &str) -> bool {
        self.enabled && self.topics.iter().any(|t| t == topic)
    }

    pub fn destination(&self) -> String {
        redact_url(&self.url)
    }
}

/// What a new webhook is made of (checked by [`validate`]).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub name: String,
    pub url: String,
    pub format: WebhookFormat,
    pub topics: Vec<String>,
    pub rate_per_min: u32,
    pub enabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("a webhook named {0:?} already exists")]
    Duplicate(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// `scheme://host[:port]/…`: enough to tell destinations apart, never the
/// path or query where Slack, Teams and most receivers keep their token.
/// Anything unparsable shows as `(invalid url)`.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = (u.path() != "/" && !u.path().is_empty()) || u.query().is_some();
            format!("{}://{host}{port}/{}", u.scheme(), if hidden { "…" } else { "" })
        }
        Err(_) => "(invalid url)".into(),
    }
}

/// Check a webhook before it is stored; the message says what is wrong.
pub fn validate(hook: &NewWebhook) -> Result<(), WebhookError> {
    let bad = |m: String| Err(WebhookError::Invalid(m));
    let name_ok = !hook.name.is_empty()
        && hook.name.len() <= 64
        && hook.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return bad(format!("invalid webhook name {:?}: use 1-64 letters, digits, '.', '_' or '-'", hook.name));
    }
    match reqwest::Url::parse(&hook.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(u) => return bad(format!("webhook url must be http:// or https:// with a host, got {}://", u.scheme())),
        Err(e) => return bad(format!("webhook url does not parse: {e}")),
    }
    if hook.url.len() > 2048 {
        return bad("webhook url is longer than 2048 characters".into());
    }
    if hook.topics.is_empty() {
        return bad(format!("no topics: choose from {}", ALERT_TOPICS.join(", ")));
    }
    if let Some(t) = hook.topics.iter().find(|t| !ALERT_TOPICS.contains(&t.as_str())) {
        return bad(format!("unknown topic {t:?}: choose from {}", ALERT_TOPICS.join(", ")));
    }
    if !(1..=3600).contains(&hook.rate_per_min) {
        return bad(format!("rate_per_min must be 1 to 3600, got {}", hook.rate_per_min));
    }
    Ok(())
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Webhook, sqlx::Error> {
    let format: String = row.try_get("format")?;
    let topics: String = row.try_get("topics")?;
    let rate: i64 = row.try_get("rate_per_min")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        format: format.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        topics: serde_json::from_str(&topics).map_err(|e| sqlx::Error::Decode(e.into()))?,
        rate_per_min: u32::try_from(rate).unwrap_or(DEFAULT_RATE_PER_MIN),
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn create(pool: &SqlitePool, hook: &NewWebhook, created_by: Option<&str>) -> Result<Webhook, WebhookError> {
    validate(hook)?;
    let topics = serde_json::to_string(&hook.topics).unwrap_or_else(|_| "[]".into());
    let result = sqlx::query(
        "INSERT INTO webhooks (name, url, format, topics, rate_per_min, enabled, created_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&hook.name)
    .bind(&hook.url)
    .bind(hook.format.as_str())
    .bind(topics)
    .bind(i64::from(hook.rate_per_min))
    .bind(hook.enabled as i64)
    .bind(created_by)
    .bind(decnet_bus::envelope::now_ts())
    .fetch_one(pool)
    .await;
    match result {
        Ok(row) => {
            let id: i64 = row.try_get("id")?;
            Ok(get(pool, id).await?.ok_or(sqlx::Error::RowNotFound)?)
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(WebhookError::Duplicate(hook.name.clone())),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<Webhook>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM webhooks ORDER BY id").fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(pool: &SqlitePool, id: i64) -> Result<Option<Webhook>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM webhooks WHERE id = ?").bind(id).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// A webhook by id, or by name when `key` is not a number.
pub async fn find(pool: &SqlitePool, key: &str) -> Result<Option<Webhook>, sqlx::Error> {
    if let Ok(id) = key.parse::<i64>() {
        return get(pool, id).await;
    }
    let row = sqlx::query("SELECT * FROM webhooks WHERE name = ?").bind(key).fetch_optional(pool).await?;
    row.as_ref().map(from_row).transpose()
}

/// Replace every field of webhook `id` (the API merges a PATCH first).
pub async fn update(pool: &SqlitePool, id: i64, hook: &NewWebhook) -> Result<bool, WebhookError> {
    validate(hook)?;
    let topics = serde_json::to_string(&hook.topics).unwrap_or_else(|_| "[]".into());
    let result = sqlx::query(
        "UPDATE webhooks SET name = ?, url = ?, format = ?, topics = ?, rate_per_min = ?, enabled = ? WHERE id = ?",
    )
    .bind(&hook.name)
    .bind(&hook.url)
    .bind(hook.format.as_str())
    .bind(topics)
    .bind(i64::from(hook.rate_per_min))
    .bind(hook.enabled as i64)
    .bind(id)
    .execute(pool)
    .await;
    match result {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(WebhookError::Duplicate(hook.name.clone())),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(pool: &SqlitePool, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM webhooks WHERE id = ?").bind(id).execute(pool).await?;
    Ok(r.rows_affected() == 1)
}

/// What became of one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Being sent (or waiting to retry).
    Pending,
    /// The destination answered 2xx.
    Delivered,
    /// Every attempt failed; `last_error` says why.
    Failed,
    /// Over the webhook's `rate_per_min`: not sent.
    RateLimited,
    /// Too many deliveries in flight in this process: not sent.
    Dropped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::RateLimited => "rate_limited",
            DeliveryStatus::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            "rate_limited" => DeliveryStatus::RateLimited,
            "dropped" => DeliveryStatus::Dropped,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One row of the delivery log as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: Option<i64>,
    pub webhook_name: String,
    /// The redacted URL.
    pub destination: String,
    pub topic: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

/// Start a delivery row; returns its id.
pub async fn log_delivery(
    pool: &SqlitePool,
    hook: &Webhook,
    topic: &str,
    dedupe_key: Option<&str>,
    status: DeliveryStatus,
) -> Result<i64, sqlx::Error> {
    let now = decnet_bus::envelope::now_ts();
    let row = sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, webhook_name, destination, topic, dedupe_key, status, attempts, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id",
    )
    .bind(hook.id)
    .bind(&hook.name)
    .bind(hook.destination())
    .bind(topic)
    .bind(dedupe_key)
    .bind(status.as_str())
    .bind(now)
    .bind(now)
    .fetch_one(pool)
    .await?;
    row.try_get("id")
}

/// Record the outcome (so far) of delivery `id`.
pub async fn finish_delivery(
    pool: &SqlitePool,
    id: i64,
    status: DeliveryStatus,
    attempts: u32,
    last_error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_deliveries SET status = ?, attempts = ?, last_error = ?, updated_at = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(i64::from(attempts))
        .bind(last_error)
        .bind(decnet_bus::envelope::now_ts())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether `hook` was already sent (or is being sent, or failed trying)
/// a `topic` notification for `key`. Rate-limited and dropped ones do not
/// count: nothing reached anyone.
pub async fn already_notified(pool: &SqlitePool, hook_id: i64, topic: &str, key: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT 1 FROM webhook_deliveries WHERE webhook_id = ? AND topic = ? AND dedupe_key = ?
         AND status IN ('pending', 'delivered', 'failed') LIMIT 1",
    )
    .bind(hook_id)
    .bind(topic)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.is_some())
}

/// Delivery rows kept: older ones are pruned, except those that remember
/// which attackers were already announced (`dedupe_key`), so the log
/// stays bounded under a flood of rate-limited notifications.
pub const KEEP_DELIVERIES: i64 = 10_000;

/// Delete all but the newest `keep` rows without a `dedupe_key`; returns
/// how many went.
pub async fn prune_deliveries(pool: &SqlitePool, keep: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE dedupe_key IS NULL AND id <
         (SELECT id FROM webhook_deliveries WHERE dedupe_key IS NULL ORDER BY id DESC LIMIT 1 OFFSET ?)",
    )
    .bind(keep.max(1) - 1)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// The newest `limit` delivery rows, newest first (of one webhook when given).
pub async fn recent_deliveries(
    pool: &SqlitePool,
    webhook_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT * FROM webhook_deliveries WHERE (?1 IS NULL OR webhook_id = ?1) ORDER BY id DESC LIMIT ?2")
            .bind(webhook_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| {
            let status: String = r.try_get("status")?;
            Ok(Delivery {
                id: r.try_get("id")?,
                webhook_id: r.try_get("webhook_id")?,
                webhook_name: r.try_get("webhook_name")?,
                destination: r.try_get("destination")?,
                topic: r.try_get("topic")?,
                status: DeliveryStatus::parse(&status),
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pruning_keeps_the_newest_rows_and_every_dedupe_memory() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::store::open(&dir.path().join("d.db")).await.unwrap();
        let new = hook("https://x.example/h", &["attacker.observed", "credential.captured"]);
        let h = create(&pool, &new, None).await.unwrap();
        log_delivery(&pool, &h, "attacker.observed", Some("203.0.113.1"), DeliveryStatus::Delivered).await.unwrap();
        for _ in 0..10 {
            log_delivery(&pool, &h, "credential.captured", None, DeliveryStatus::RateLimited).await.unwrap();
        }
        assert_eq!(prune_deliveries(&pool, 4).await.unwrap(), 6);
        let left = recent_deliveries(&pool, None, 100).await.unwrap();
        assert_eq!(left.len(), 5);
        assert!(already_notified(&pool, h.id, "attacker.observed", "203.0.113.1").await.unwrap());
        assert_eq!(prune_deliveries(&pool, 4).await.unwrap(), 0);
    }

    #[test]
    fn redaction_keeps_the_host_and_hides_the_token() {
        let r = redact_url("https://hooks.slack.com/services/T000/B000/XXXXSECRET");
        assert_eq!(r, "https://hooks.slack.com/…");
        assert!(!r.contains("SECRET"));
        assert_eq!(redact_url("http://127.0.0.1:9000/hook?key=abc"), "http://127.0.0.1:9000/…");
        assert_eq!(redact_url("http://example.org/"), "http://example.org/");
        assert_eq!(redact_url("not a url"), "(invalid url)");
    }

    fn hook(url: &str, topics: &[&str]) -> NewWebhook {
        NewWebhook {
            name: "ops".into(),
            url: url.into(),
            format: WebhookFormat::Slack,
            topics: topics.iter().map(|s| s.to_string()).collect(),
            rate_per_min: 10,
            enabled: true,
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert!(validate(&hook("https://x.example/h", &["attacker.observed"])).is_ok());
        let e = validate(&hook("ftp://x.example/h", &["attacker.observed"])).unwrap_err().to_string();
        assert!(e.contains("http"), "{e}");
        let e = validate(&hook("https://x.example/h", &["attacker.scored"])).unwrap_err().to_string();
        assert!(e.contains("unknown topic \"attacker.scored\""), "{e}");
        let e = validate(&hook("https://x.example/h", &[])).unwrap_err().to_string();
        assert!(e.contains("no topics"), "{e}");
    }
}
