//! The Overview's roll-ups of `logs` rows (0020_console.sql), counted per
//! ingest batch in Rust instead of per row by a trigger.
//!
//! The 0020 triggers cost about 12 µs for every row inserted (three
//! upserts each); a batch of thousands of rows touches only a few dozen
//! keys (hours, deckies, services, commands), so the ingester sums the
//! batch here and applies one upsert per key, inside the batch's own
//! transaction (exactly once with the rows). While it inserts the batch's
//! `logs` rows its connection runs no triggers (`store::set_triggers`, a
//! per-connection setting turned back on before the `credentials` upserts
//! and before the connection returns to the pool), so every other writer
//! of `logs` is still counted by the triggers (0023_rollups_without_flag.sql).
//!
//! The numbers are exactly what the triggers would have added:
//! `console_hourly` (events, sessions = `connect` rows) per
//! `CAST(timestamp / 3600 AS INTEGER)`, and `console_top` hits and latest
//! time per decky, service and command (the `command` field of a
//! `command` row, cut to 512 characters). Retention's deletions never
//! changed the roll-ups (they count what arrived) and still do not.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use crate::collector::Record;

/// Longest command text kept as a roll-up key (0020's `substr(.., 1, 512)`).
const MAX_COMMAND_CHARS: usize = 512;
/// Keys per multi-row upsert (4 parameters each).
const KEYS_PER_UPSERT: usize = 200;

/// Counts of one `console_hourly` row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HourCounts {
    pub events: i64,
    pub sessions: i64,
}

/// Hits and latest time of one `console_top` key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopCounts {
    pub hits: i64,
    pub last_seen: f64,
}

/// What a batch of `logs` rows adds to the roll-ups.
#[derive(Debug, Default)]
pub struct LogRollups {
    pub hourly: HashMap<i64, HourCounts>,
    /// Per kind (`decky`, `service` or `command`), per value.
    pub top: HashMap<&'static str, HashMap<String, TopCounts>>,
}

/// The hour a row counts in: SQLite's `CAST(ts / 3600 AS INTEGER)`
/// (truncation toward zero, as `as` does).
pub fn hour_of(timestamp: f64) -> i64 {
    (timestamp / 3600.0) as i64
}

/// A `command` row's roll-up key: its `command` field as SQLite's
/// `json_extract` would give it (a string as is, a number or boolean as
/// its text, an object or array as JSON), cut to 512 characters.
pub fn command_key(record: &Record) -> Option<String> {
    if record.event_type != "command" {
        return None;
    }
    let text = match record.fields.get("command")? {
        Value::Null => return None,
        Value::String(s) => return Some(s.chars().take(MAX_COMMAND_CHARS).collect()),
        Value::Bool(b) => (*b as i64).to_string(),
        other => other.to_string(),
    };
    Some(text.chars().take(MAX_COMMAND_CHARS).collect())
}

impl LogRollups {
    pub fn add(&mut self, record: &Record) {
        let hour = self.hourly.entry(hour_of(record.timestamp)).or_default();
        hour.events += 1;
        hour.sessions += (record.event_type == "connect") as i64;
        self.hit("decky", &record.decky, record.timestamp);
        self.hit("service", &record.service, record.timestamp);
        if let Some(command) = command_key(record) {
            self.hit("command", &command, record.timestamp);
        }
    }

    fn hit(&mut self, kind: &'static str, value: &str, at: f64) {
        let values = self.top.entry(kind).or_default();
        // Looked up by &str first: most rows repeat a key already seen, and
        // only a new key costs an allocation.
        if let Some(t) = values.get_mut(value) {
            t.hits += 1;
            t.last_seen = t.last_seen.max(at);
            return;
        }
        values.insert(value.to_string(), TopCounts { hits: 1, last_seen: at });
    }

    /// Add the counts to the tables, one upsert per key (in multi-row
    /// statements), inside the batch's transaction.
    pub async fn apply(&self, tx: &mut Transaction<'_, Sqlite>) -> anyhow::Result<()> {
        let hours: Vec<_> = self.hourly.iter().collect();
        for rows in hours.chunks(KEYS_PER_UPSERT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO console_hourly (hour, events, sessions) ");
            q.push_values(rows, |mut b, (hour, c)| {
                b.push_bind(**hour).push_bind(c.events).push_bind(c.sessions);
            });
            q.push(
                " ON CONFLICT (hour) DO UPDATE SET events = events + excluded.events, \
                 sessions = sessions + excluded.sessions",
            );
            q.build().execute(&mut **tx).await?;
        }
        let top: Vec<_> =
            self.top.iter().flat_map(|(kind, values)| values.iter().map(move |(value, c)| (*kind, value, c))).collect();
        for rows in top.chunks(KEYS_PER_UPSERT) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO console_top (kind, value, hits, last_seen) ");
            q.push_values(rows, |mut b, (kind, value, c)| {
                b.push_bind(*kind).push_bind(value.as_str()).push_bind(c.hits).push_bind(c.last_seen);
            });
            q.push(
                " ON CONFLICT (kind, value) DO UPDATE SET hits = hits + excluded.hits, \
                 last_seen = max(last_seen, excluded.last_seen)",
            );
            q.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}
