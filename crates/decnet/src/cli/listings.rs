//! `decnet attackers` and `decnet deckies`: the dashboard's two main lists
//! in a terminal, through the API (as `decnet workers` is), with `--json`
//! for scripts: the API's answer as is.

use super::workers::{print_json, Api};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct AttackersArgs {
    /// Only this behaviour class (brute_force, scanning, interactive, …).
    #[arg(long)]
    pub behavior: Option<String>,
    /// Only attackers that touched this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only attackers that touched this decky.
    #[arg(long)]
    pub decky: Option<String>,
    /// Sort: last_seen (default), first_seen or events (all newest/most first).
    #[arg(long)]
    pub sort: Option<String>,
    /// At most this many rows (1-500; the API's default is 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Print the API's `{attackers, total, page, limit}` instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Base URL of the API.
    #[arg(long, env = "DECNET_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
}

#[derive(Debug, clap::Args)]
pub struct DeckiesArgs {
    /// Print the API's `{deckies: [...]}` instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Base URL of the API.
    #[arg(long, env = "DECNET_API_URL", default_value = "http://127.0.0.1:8000")]
    pub api: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(text).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        }
        other => other.to_string(),
    }
}

fn when(v: &Value) -> String {
    v.as_f64()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t as i64).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// Attacker-chosen text never reaches the terminal raw (see `terminal`).
fn safe(s: &str) -> String {
    s.chars().map(|c| if crate::events::rfc5424::must_escape(c) { '?' } else { c }).collect()
}

/// The attackers table: one row per attacker, newest first.
pub fn render_attackers(answer: &Value) -> String {
    let rows = answer["attackers"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out =
        format!("{:<39}  {:<11}  {:>6}  {:<20}  {:<24}  PATH\n", "IP", "BEHAVIOR", "EVENTS", "LAST SEEN", "SERVICES");
    for a in rows {
        out.push_str(&format!(
            "{:<39}  {:<11}  {:>6}  {:<20}  {:<24}  {}\n",
            text(&a["ip"]),
            text(&a["behavior"]),
            text(&a["event_count"]),
            when(&a["last_seen"]),
            safe(&text(&a["services"])),
            safe(&text(&a["traversal_path"])),
        ));
    }
    out.push_str(&format!("{} of {} attacker(s)\n", rows.len(), text(&answer["total"])));
    out
}

/// The deckies table.
pub fn render_deckies(answer: &Value) -> String {
    let rows = answer["deckies"].as_array().map(Vec::as_slice).unwrap_or_default();
    let width = rows.iter().map(|d| text(&d["name"]).len()).max().unwrap_or(4).max(4);
    let mut out =
        format!("{:<width$}  {:<15}  {:<16}  {:<20}  SERVICES\n", "NAME", "ADDRESS", "ARCHETYPE", "LAST MUTATED");
    for d in rows {
        out.push_str(&format!(
            "{:<width$}  {:<15}  {:<16}  {:<20}  {}\n",
            text(&d["name"]),
            text(&d["address"]),
            text(&d["archetype"]),
            when(&d["last_mutated"]),
            text(&d["services"]),
        ));
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", super::workers::segment(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub async fn run_attackers(args: AttackersArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api)?;
    let q = query(&[
        ("behavior", args.behavior),
        ("service", args.service),
        ("decky", args.decky),
        ("sort", args.sort),
        ("limit", args.limit.map(|l| l.to_string())),
    ]);
    let answer: Value = api.get(&format!("/api/v1/attackers{q}")).await?;
    if args.json {
        return print_json(&answer);
    }
    print!("{}", render_attackers(&answer));
    Ok(())
}

pub async fn run_deckies(args: DeckiesArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.api)?;
    let answer: Value = api.get("/api/v1/fleet").await?;
    if args.json {
        return print_json(&answer);
    }
    print!("{}", render_deckies(&answer));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attacker_rows_show_the_class_and_keep_controls_off_the_screen() {
        let answer = json!({"attackers": [{"ip": "10.0.0.5", "behavior": "interactive", "event_count": 3,
            "last_seen": 0.0, "services": ["ssh"], "traversal_path": "web-01 → db\u{1b}[2J"}], "total": 1});
        let t = render_attackers(&answer);
        assert!(t.contains("10.0.0.5") && t.contains("interactive") && t.contains("1970-01-01T00:00:00Z"), "{t}");
        assert!(!t.contains('\u{1b}'), "{t:?}");
        assert!(t.ends_with("1 of 1 attacker(s)\n"));
    }

    #[test]
    fn query_escapes_values_and_skips_unset_ones() {
        assert_eq!(query(&[("a", None), ("b", Some("x y".into()))]), "?b=x%20y");
        assert_eq!(query(&[("a", None)]), "");
    }
}
