//! Notification bodies: one event rendered for a generic JSON receiver,
//! a Slack incoming webhook or a Microsoft Teams incoming webhook.
//!
//! Nearly every value in an alert came from an attacker (user names,
//! paths, URLs, even the "IP" field of a hand-published event), so every
//! value is escaped for the target format before it is placed in text the
//! receiver interprets:
//! - Slack mrkdwn: `&`, `<`, `>` become entities (that is the whole of
//!   Slack's own escaping rule, and it stops `<!channel>`, `<@U123>` and
//!   `<https://evil|click here>`); a bare `@channel`/`@here`/`@everyone`
//!   gets a zero-width joiner after the `@` so no client links it.
//! - Teams MessageCard text is rendered as markdown with some HTML: the
//!   HTML specials become entities and markdown punctuation is
//!   backslash-escaped.
//! - Generic JSON carries the payload as data, which serde_json encodes.

use serde_json::{json, Value};

use crate::store::webhooks::WebhookFormat;
use decnet_bus::Envelope;

/// Facts shown per notification at most (the payload keeps the rest).
const MAX_FACTS: usize = 12;
/// Characters of one fact value at most; longer values are cut with `…`.
const MAX_VALUE_CHARS: usize = 300;

/// The one-line human summary of `event` (plain text, not yet escaped).
pub fn summary(event: &Envelope) -> String {
    let p = &event.payload;
    let s = |k: &str| text_of(p.get(k));
    match event.topic.as_str() {
        "attacker.observed" => {
            format!("New attacker {} seen on {} ({})", s("attacker_ip"), s("decky"), s("service"))
        }
        "credential.captured" => format!(
            "Credential captured from {} on {}/{}: user {}",
            s("attacker_ip"),
            s("decky"),
            s("service"),
            s("username")
        ),
        "attacker.artifact" => format!(
            "File captured from {} on {}: {} ({} bytes, {})",
            s("attacker_ip"),
            s("decky"),
            s("path"),
            s("size"),
            s("mime")
        ),
        "identity.formed" => format!("New attacker identity {}: {}", s("identity"), s("members")),
        "credential.reuse.detected" => {
            format!("One secret tried on {} targets by {}", s("target_count"), s("attacker_ips"))
        }
        "worker.stale" => {
            format!("Worker {} on {} is stale: silent for {} s", s("worker"), s("host"), s("seconds_since"))
        }
        "webhook.test" => "decnet test notification: this webhook works".to_string(),
        other => format!("decnet event {other}"),
    }
}

/// A JSON value as one line of text: strings bare, arrays comma-joined.
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items.iter().map(|i| text_of(Some(i))).collect::<Vec<_>>().join(", "),
        Some(Value::Number(n)) => {
            // Whole seconds read better than 91.2345.
            match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:.0}"),
                _ => n.to_string(),
            }
        }
        Some(other) => other.to_string(),
    }
}

fn cut(s: String) -> String {
    if s.chars().count() <= MAX_VALUE_CHARS {
        return s;
    }
    let mut out: String = s.chars().take(MAX_VALUE_CHARS).collect();
    out.push('…');
    out
}

/// (name, value) pairs of the payload's fields, in payload order.
fn facts(event: &Envelope) -> Vec<(String, String)> {
    match &event.payload {
        Value::Object(map) => {
            map.iter().take(MAX_FACTS).map(|(k, v)| (cut(k.clone()), cut(text_of(Some(v))))).collect()
        }
        _ => Vec::new(),
    }
}

/// Slack mrkdwn escaping (see the module comment).
pub fn escape_slack(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    defuse_mentions(&out)
}

/// `@channel`, `@here`, `@everyone` (any case) with U+2060 WORD JOINER
/// after the `@`: shown the same, linked by no client.
fn defuse_mentions(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        let after = &rest[at + 1..];
        let lower = after.to_ascii_lowercase();
        if ["channel", "here", "everyone"].iter().any(|m| lower.starts_with(m)) {
            out.push('\u{2060}');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Teams MessageCard text escaping (see the module comment).
pub fn escape_teams(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\\' | '*' | '_' | '`' | '[' | ']' | '#' | '~' | '|' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn when(event: &Envelope) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos((event.ts * 1e9) as i128)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| event.ts.to_string())
}

/// The request body for `format`.
pub fn render(format: WebhookFormat, event: &Envelope) -> Value {
    match format {
        WebhookFormat::Json => json!({
            "source": "decnet",
            "topic": event.topic,
            "type": event.event_type,
            "id": event.id,
            "ts": event.ts,
            "time": when(event),
            "summary": summary(event),
            "payload": event.payload,
        }),
        WebhookFormat::Slack => {
            let text = escape_slack(&summary(event));
            let fields: Vec<Value> = facts(event)
                .into_iter()
                .map(
                    |(k, v)| json!({"type": "mrkdwn", "text": format!("*{}*\n{}", escape_slack(&k), escape_slack(&v))}),
                )
                .collect();
            let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
            // Slack allows at most 10 fields per section.
            for chunk in fields.chunks(10) {
                blocks.push(json!({"type": "section", "fields": chunk}));
            }
            blocks.push(json!({"type": "context", "elements": [{
                "type": "mrkdwn",
                "text": format!("decnet · {} · {}", escape_slack(&event.topic), when(event)),
            }]}));
            json!({"text": text, "blocks": blocks})
        }
        WebhookFormat::Teams => {
            let facts: Vec<Value> = facts(event)
                .into_iter()
                .map(|(k, v)| json!({"name": escape_teams(&k), "value": escape_teams(&v)}))
                .collect();
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": escape_teams(&summary(event)),
                "themeColor": if event.topic == "webhook.test" { "2E7D32" } else { "C62828" },
                "title": escape_teams(&summary(event)),
                "sections": [{
                    "activitySubtitle": format!("decnet · {} · {}", escape_teams(&event.topic), when(event)),
                    "facts": facts,
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str, payload: Value) -> Envelope {
        Envelope { v: 1, id: "e1".into(), topic: topic.into(), event_type: "x".into(), ts: 1_700_000_000.0, payload }
    }

    #[test]
    fn slack_escapes_attacker_text_and_defuses_mentions() {
        let e = event(
            "credential.captured",
            json!({"attacker_ip": "203.0.113.9", "decky": "web-01", "service": "ssh",
                   "username": "<!channel> & <https://evil.example|click> @here @Everyone"}),
        );
        let body = render(WebhookFormat::Slack, &e);
        let all = body.to_string();
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(!all.contains("<https://evil"), "{all}");
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"), "{text}");
        assert!(text.contains("@\u{2060}here") && text.contains("@\u{2060}Everyone"), "{text}");
        assert!(!text.contains("@here"), "{text}");
        assert_eq!(body["blocks"][0]["text"]["type"], "mrkdwn");
    }

    #[test]
    fn teams_is_a_message_card_with_escaped_facts() {
        let e = event("attacker.observed", json!({"attacker_ip": "198.51.100.7", "decky": "*bold*<b>x</b>"}));
        let body = render(WebhookFormat::Teams, &e);
        assert_eq!(body["@type"], "MessageCard");
        let facts = body["sections"][0]["facts"].as_array().unwrap();
        let decky = facts.iter().find(|f| f["name"] == "decky").unwrap();
        assert_eq!(decky["value"], "\\*bold\\*&lt;b&gt;x&lt;/b&gt;");
    }

    #[test]
    fn json_keeps_the_payload_as_data() {
        let e = event("attacker.observed", json!({"attacker_ip": "<x>"}));
        let body = render(WebhookFormat::Json, &e);
        assert_eq!(body["payload"]["attacker_ip"], "<x>");
        assert_eq!(body["topic"], "attacker.observed");
        assert!(body["summary"].as_str().unwrap().starts_with("New attacker <x>"));
    }
}
