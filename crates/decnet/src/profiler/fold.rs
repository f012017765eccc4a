//! Folding `logs` rows into per-attacker profiles: pure data, no I/O, so
//! the rules (what counts as a command, how the traversal path is built,
//! which rows are skipped) are unit-tested without a database.

use serde_json::Value;

/// What the collector writes when a line carried no usable address.
pub const UNKNOWN_IP: &str = "Unknown";
/// Commands kept per attacker (the most recent ones): the logs table keeps
/// every one, the profile is a summary the API can send in one answer.
pub const MAX_COMMANDS: usize = 200;
/// Event types whose row is a command the attacker ran.
pub const COMMAND_EVENTS: &[&str] = &["command", "exec", "shell_command"];
/// The arrow between deckies in a traversal path.
pub const PATH_SEPARATOR: &str = " → ";

/// One `logs` row, as the profiler reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub timestamp: f64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: String,
    pub fields: Value,
    pub msg: String,
}

/// Why a row does not belong to any attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `attacker_ip` is `Unknown` or empty: nobody to attribute it to.
    NoAddress,
    /// `attacker_ip` is not an IPv4/IPv6 address (a collector bug or a
    /// forged line); kept in `logs`, left out of the profiles.
    BadAddress,
    /// The collector stored it from a sender it does not trust to speak
    /// for a decky (`ingest_trusted: false`, see `collector::access`).
    Untrusted,
}

/// The attacker a row is about, or why it is about none. The address is
/// written back in canonical form (IPv6 lower-case, compressed) so case
/// variants of one host fold together.
pub fn attacker_of(row: &LogRow) -> Result<String, Skip> {
    if row.fields.get("ingest_trusted") == Some(&Value::Bool(false)) {
        return Err(Skip::Untrusted);
    }
    let raw = row.attacker_ip.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case(UNKNOWN_IP) {
        return Err(Skip::NoAddress);
    }
    match raw.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => Err(Skip::BadAddress),
    }
}

/// An `attackers` row in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub ip: String,
    pub first_seen: f64,
    pub last_seen: f64,
    pub event_count: i64,
    pub services: Vec<String>,
    /// In order of first contact.
    pub deckies: Vec<String>,
    pub credential_count: i64,
    pub commands: Vec<String>,
    pub fingerprints: Value,
    pub behavior: String,
    pub observed_published: bool,
}

impl Profile {
    pub fn new(ip: &str, ts: f64) -> Profile {
        Profile {
            ip: ip.to_string(),
            first_seen: ts,
            last_seen: ts,
            event_count: 0,
            services: Vec::new(),
            deckies: Vec::new(),
            credential_count: 0,
            commands: Vec::new(),
            fingerprints: Value::Array(Vec::new()),
            behavior: "unknown".into(),
            observed_published: false,
        }
    }

    pub fn traversal_path(&self) -> String {
        self.deckies.join(PATH_SEPARATOR)
    }

    pub fn is_traversal(&self) -> bool {
        self.deckies.len() >= 2
    }

    /// Fold one row (already attributed to this profile's IP).
    pub fn apply(&mut self, row: &LogRow) {
        self.first_seen = self.first_seen.min(row.timestamp);
        self.last_seen = self.last_seen.max(row.timestamp);
        self.event_count += 1;
        if !row.service.is_empty() && !self.services.contains(&row.service) {
            self.services.push(row.service.clone());
        }
        if !row.decky.is_empty() && !self.deckies.contains(&row.decky) {
            self.deckies.push(row.decky.clone());
        }
        if let Some(cmd) = command_of(row) {
            self.commands.push(cmd);
            if self.commands.len() > MAX_COMMANDS {
                let extra = self.commands.len() - MAX_COMMANDS;
                self.commands.drain(..extra);
            }
        }
    }
}

/// The command a row records, if it is a command event: the `command`
/// (or `cmd`) field, else the message.
pub fn command_of(row: &LogRow) -> Option<String> {
    if !COMMAND_EVENTS.contains(&row.event_type.as_str()) {
        return None;
    }
    let from_fields = ["command", "cmd", "input"].iter().find_map(|k| row.fields.get(*k).and_then(Value::as_str));
    let cmd = from_fields.unwrap_or(&row.msg).trim();
    (!cmd.is_empty()).then(|| cmd.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: i64, ts: f64, decky: &str, service: &str, event_type: &str, ip: &str) -> LogRow {
        LogRow {
            id,
            timestamp: ts,
            decky: decky.into(),
            service: service.into(),
            event_type: event_type.into(),
            attacker_ip: ip.into(),
            fields: json!({}),
            msg: String::new(),
        }
    }

    #[test]
    fn unknown_empty_and_garbage_addresses_are_skipped() {
        assert_eq!(attacker_of(&row(1, 0.0, "d", "ssh", "x", "Unknown")), Err(Skip::NoAddress));
        assert_eq!(attacker_of(&row(1, 0.0, "d", "ssh", "x", " ")), Err(Skip::NoAddress));
        assert_eq!(attacker_of(&row(1, 0.0, "d", "ssh", "x", "10.0.0.1; DROP")), Err(Skip::BadAddress));
        // A forged line from an untrusted sender makes no attacker; rows
        // without the tag (older collectors) and trusted ones still do.
        let mut forged = row(1, 0.0, "d", "ssh", "x", "10.0.0.1");
        forged.fields = serde_json::json!({"ingest_trusted": false, "ingest_transport": "tcp"});
        assert_eq!(attacker_of(&forged), Err(Skip::Untrusted));
        forged.fields = serde_json::json!({"ingest_trusted": true});
        assert_eq!(attacker_of(&forged).as_deref(), Ok("10.0.0.1"));
        assert_eq!(attacker_of(&row(1, 0.0, "d", "ssh", "x", "2001:DB8::1")).unwrap(), "2001:db8::1");
    }

    #[test]
    fn deckies_in_first_contact_order_make_the_path() {
        let mut p = Profile::new("10.0.0.1", 100.0);
        for (i, (ts, decky, svc)) in
            [(100.0, "web-01", "ssh"), (101.0, "web-01", "ssh"), (105.0, "db-02", "http"), (90.0, "web-01", "ftp")]
                .into_iter()
                .enumerate()
        {
            p.apply(&row(i as i64, ts, decky, svc, "connection", "10.0.0.1"));
        }
        assert_eq!(p.deckies, ["web-01", "db-02"]);
        assert_eq!(p.traversal_path(), "web-01 → db-02");
        assert!(p.is_traversal());
        assert_eq!(p.services, ["ssh", "http", "ftp"]);
        assert_eq!((p.first_seen, p.last_seen, p.event_count), (90.0, 105.0, 4));
    }

    #[test]
    fn one_decky_is_no_traversal() {
        let mut p = Profile::new("10.0.0.1", 1.0);
        p.apply(&row(1, 1.0, "web-01", "ssh", "connection", "10.0.0.1"));
        assert!(!p.is_traversal());
        assert_eq!(p.traversal_path(), "web-01");
    }

    #[test]
    fn commands_come_from_fields_or_message_and_are_capped() {
        let mut r = row(1, 1.0, "web-01", "ssh", "command", "10.0.0.1");
        r.fields = json!({"command": "uname -a"});
        assert_eq!(command_of(&r).as_deref(), Some("uname -a"));
        r.fields = json!({});
        r.msg = " id ".into();
        assert_eq!(command_of(&r).as_deref(), Some("id"));
        r.event_type = "login_attempt".into();
        assert_eq!(command_of(&r), None);

        let mut p = Profile::new("10.0.0.1", 1.0);
        for i in 0..(MAX_COMMANDS + 5) {
            let mut r = row(i as i64, 1.0, "web-01", "ssh", "command", "10.0.0.1");
            r.msg = format!("cmd{i}");
            p.apply(&r);
        }
        assert_eq!(p.commands.len(), MAX_COMMANDS);
        assert_eq!(p.commands[0], "cmd5", "the oldest are dropped");
    }
}
