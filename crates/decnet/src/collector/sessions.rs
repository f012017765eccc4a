//! Commands per session, so `attacker.session.ended` can say what the
//! attacker did without a consumer re-reading the log.
//!
//! A decky's `command` lines carry the session id (`sid`) when the service
//! has one; lines without one are grouped by (attacker, decky, service),
//! which is what a single interactive session looks like from outside.
//! The `session_recorded` line closes the session under either key.
//! Everything is bounded: sessions (oldest evicted), commands per session
//! and command length, since an attacker controls all three.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::parse::Record;

pub const MAX_SESSIONS: usize = 10_000;
pub const MAX_COMMANDS: usize = 256;
pub const MAX_COMMAND_LEN: usize = 1024;

#[derive(Debug, Default)]
pub struct Sessions {
    commands: HashMap<String, Vec<String>>,
    order: VecDeque<String>,
    max_sessions: usize,
}

fn sid_key(sid: &str) -> String {
    format!("sid\u{0}{sid}")
}

fn peer_key(r: &Record) -> String {
    format!("peer\u{0}{}\u{0}{}\u{0}{}", r.attacker_ip, r.decky, r.service)
}

fn sid(r: &Record) -> Option<&str> {
    r.field("sid").filter(|s| !s.is_empty())
}

/// The command a `command` record carries: the msg after `CMD `, else a
/// `command`/`cmd` SD param, else the whole msg.
pub fn command_text(r: &Record) -> String {
    let text = r.msg.strip_prefix("CMD ").or_else(|| r.field("command")).or_else(|| r.field("cmd")).unwrap_or(&r.msg);
    text.chars().take(MAX_COMMAND_LEN).collect()
}

impl Sessions {
    pub fn new() -> Self {
        Sessions { max_sessions: MAX_SESSIONS, ..Default::default() }
    }

    pub fn with_capacity(max_sessions: usize) -> Self {
        Sessions { max_sessions: max_sessions.max(1), ..Default::default() }
    }

    /// Remember the command of a `command` record.
    pub fn on_command(&mut self, r: &Record) {
        let key = sid(r).map(sid_key).unwrap_or_else(|| peer_key(r));
        if !self.commands.contains_key(&key) {
            while self.commands.len() >= self.max_sessions {
                match self.order.pop_front() {
                    Some(old) => {
                        self.commands.remove(&old);
                    }
                    None => break,
                }
            }
            // Ended sessions leave stale keys in `order`; compact now and
            // then so it cannot outgrow the map.
            if self.order.len() >= 2 * self.max_sessions {
                let live = &self.commands;
                self.order.retain(|k| live.contains_key(k));
            }
            self.order.push_back(key.clone());
        }
        let list = self.commands.entry(key).or_default();
        if list.len() < MAX_COMMANDS {
            list.push(command_text(r));
        }
    }

    /// The `attacker.session.ended` payload for a `session_recorded` record,
    /// with the session's commands (forgotten from here on).
    pub fn on_end(&mut self, r: &Record) -> Value {
        let by_sid = sid(r).and_then(|s| self.commands.remove(&sid_key(s)));
        let by_peer = self.commands.remove(&peer_key(r));
        let mut commands = by_sid.unwrap_or_default();
        commands.extend(by_peer.unwrap_or_default());
        let number = |name: &str| r.field(name).and_then(|v| v.parse::<f64>().ok()).map(Value::from);
        serde_json::json!({
            "attacker_ip": r.attacker_ip,
            "decky": r.decky,
            "service": r.field("service").unwrap_or(&r.service),
            "session_id": sid(r),
            "duration_s": number("duration_s"),
            "bytes": number("bytes"),
            "commands": commands,
            "timestamp": r.timestamp,
        })
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::parse::parse_record;

    fn rec(l: &str) -> Record {
        parse_record(l, 0.0).unwrap()
    }

    #[test]
    fn commands_are_collected_by_sid_and_by_peer() {
        let mut s = Sessions::new();
        s.on_command(&rec(r#"<134>1 - web ssh - command [relay@55555 src_ip="1.1.1.1" sid="a1"] CMD ls"#));
        s.on_command(&rec(r#"<134>1 - web ssh - - [relay@55555 src_ip="1.1.1.1" sid="a1"] CMD whoami"#));
        // Same peer, no sid: a separate group.
        s.on_command(&rec(r#"<134>1 - web telnet - command [relay@55555 src_ip="1.1.1.1"] CMD id"#));
        let end = s.on_end(&rec(
            r#"<134>1 - web ssh - session_recorded [relay@55555 sid="a1" service="ssh" src_ip="1.1.1.1" duration_s="2.5" bytes="120"]"#,
        ));
        assert_eq!(end["commands"], serde_json::json!(["ls", "whoami"]));
        assert_eq!(end["session_id"], "a1");
        assert_eq!(end["duration_s"], 2.5);
        assert_eq!(end["bytes"], 120.0);
        assert_eq!(end["attacker_ip"], "1.1.1.1");
        let end = s.on_end(&rec(r#"<134>1 - web telnet - session_recorded [relay@55555 src_ip="1.1.1.1"]"#));
        assert_eq!(end["commands"], serde_json::json!(["id"]));
        assert!(s.is_empty());
        // A session nobody typed in ends with no commands.
        let end = s.on_end(&rec(r#"<134>1 - web ftp - session_recorded [relay@55555 src_ip="2.2.2.2"]"#));
        assert_eq!(end["commands"], serde_json::json!([]));
    }

    #[test]
    fn sessions_and_commands_are_bounded() {
        let mut s = Sessions::with_capacity(10);
        for i in 0..100 {
            s.on_command(&rec(&format!(r#"<134>1 - web ssh - command [relay@55555 sid="s{i}"] CMD x"#)));
            assert!(s.len() <= 10);
        }
        for i in 0..20 {
            s.on_end(&rec(&format!(r#"<134>1 - web ssh - session_recorded [relay@55555 sid="s{}"]"#, 90 + i)));
            s.on_command(&rec(&format!(r#"<134>1 - web ssh - command [relay@55555 sid="t{i}"] CMD x"#)));
        }
        assert!(s.order.len() <= 20, "{}", s.order.len());
        let long = "y".repeat(5000);
        for _ in 0..(MAX_COMMANDS + 5) {
            s.on_command(&rec(&format!(r#"<134>1 - web ssh - command [relay@55555 sid="big"] CMD {long}"#)));
        }
        let end = s.on_end(&rec(r#"<134>1 - web ssh - session_recorded [relay@55555 sid="big"]"#));
        let cmds = end["commands"].as_array().unwrap();
        assert_eq!(cmds.len(), MAX_COMMANDS);
        assert_eq!(cmds[0].as_str().unwrap().len(), MAX_COMMAND_LEN);
    }
}
