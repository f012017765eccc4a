//! One syslog line → one parsed record, the shape every later stage (the
//! `<log>.json` file, the ingester, `system.log`, `decnet parse`) shares.
//!
//! The header grammar is the strict RFC 5424 parser in
//! [`crate::events::rfc5424`] (also the correlator's), so a line the
//! collector accepts is a line the correlator can read back. What is added
//! here is the part honeypot logs need and RFC 5424 does not define: who
//! the attacker is. Services disagree on where they put the peer address
//! (SD params under different names, `key=value` text, `from 1.2.3.4`
//! prose), so the address is looked for in a fixed order and the first
//! hit wins; a line that names no address is kept with `Unknown` rather
//! than dropped, because the event itself still matters.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bsd;
use crate::events::rfc5424::{self, ParseError, SD_ID};

/// SD params (and `key=value` message tokens) that may carry the
/// attacker's address, in the order they are tried.
pub const ADDRESS_KEYS: [&str; 7] = ["src_ip", "src", "client_ip", "remote_ip", "remote_addr", "target_ip", "ip"];

/// `attacker_ip` of a line that names no address.
pub const UNKNOWN_IP: &str = "Unknown";

/// `event_type` of a line whose MSGID is `-` (and which is not a `CMD ` line).
pub const NIL_EVENT_TYPE: &str = "log";

/// What a parsed line becomes: one JSON object per line in `<log>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds (the line's TIMESTAMP, or the time it was received when `-`).
    pub timestamp: f64,
    pub decky: String,
    pub service: String,
    pub event_type: String,
    pub attacker_ip: String,
    /// Every SD param (first occurrence of a name wins), plus `remote_port`
    /// when the port came split off an address.
    pub fields: Map<String, Value>,
    pub msg: String,
    pub raw_line: String,
    /// Who shipped the line: absent for this host's collector (stored as
    /// `local`), the sender's certificate CN in a listener's `master.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Record {
    /// A field's value when it is a string.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The `system.log` payload.
    pub fn log_payload(&self) -> Value {
        serde_json::json!({
            "decky": self.decky,
            "service": self.service,
            "event_type": self.event_type,
            "attacker_ip": self.attacker_ip,
            "timestamp": self.timestamp,
        })
    }
}

/// How deep a syslog line inside a syslog line is looked into.
const MAX_WRAPPING: usize = 2;

/// Parse one line: RFC 5424, else BSD syslog (RFC 3164); a line whose
/// message is itself a syslog line (see [`bsd::wrapped`]) becomes the inner
/// line's record, with `relayed_by` naming the outer sender. Only a line
/// without decnet's own SD element is looked into: a decky's MSG is
/// attacker text and must never become a record of its own.
/// `received_at` (unix seconds) stands in for a nil TIMESTAMP.
pub fn parse_record(line: &str, received_at: f64) -> Result<Record, ParseError> {
    let raw_line = line.trim_end_matches(['\r', '\n']);
    let mut record = parse_wrapped(raw_line, received_at, 0)?;
    record.raw_line = raw_line.to_string();
    Ok(record)
}

fn parse_wrapped(line: &str, received_at: f64, depth: usize) -> Result<Record, ParseError> {
    let (record, ours) = match rfc5424::parse_line(line) {
        Ok(parsed) => {
            let ours = parsed.element(SD_ID).is_some();
            (from_rfc5424(parsed, received_at), ours)
        }
        Err(e) => match bsd::parse(line, received_at) {
            Some(l) => (from_bsd(l), false),
            // A json-file record on its own (a container that relays
            // another's Docker log to its stdout): the line it carries.
            None => match bsd::wrapped(line).filter(|_| line.starts_with('{') && depth < MAX_WRAPPING) {
                Some(inner) => {
                    let mut record = parse_wrapped(&inner, received_at, depth + 1).map_err(|_| e)?;
                    record.fields.entry("relayed_by").or_insert_with(|| Value::String("docker".into()));
                    return Ok(record);
                }
                None => return Err(e),
            },
        },
    };
    if !ours && depth < MAX_WRAPPING {
        if let Some(inner) = bsd::wrapped(&record.msg) {
            if let Ok(mut inner) = parse_wrapped(&inner, received_at, depth + 1) {
                let by = if record.decky == "unknown" { &record.service } else { &record.decky };
                inner.fields.entry("relayed_by").or_insert_with(|| Value::String(by.clone()));
                return Ok(inner);
            }
        }
    }
    Ok(record)
}

fn from_bsd(line: bsd::BsdLine) -> Record {
    let mut fields = Map::new();
    if let Some(pid) = line.pid {
        fields.insert("pid".into(), Value::String(pid));
    }
    let (attacker_ip, port) = attacker_address(&fields, &line.msg);
    if let Some(port) = port {
        fields.insert("remote_port".into(), Value::String(port.to_string()));
    }
    let event_type = if line.msg.starts_with("CMD ") { "command" } else { NIL_EVENT_TYPE };
    Record {
        timestamp: line.timestamp,
        decky: line.hostname,
        service: line.tag.unwrap_or_else(|| "unknown".to_string()),
        event_type: event_type.to_string(),
        attacker_ip,
        fields,
        msg: line.msg,
        raw_line: String::new(),
        source: None,
    }
}

fn from_rfc5424(parsed: rfc5424::SyslogLine, received_at: f64) -> Record {
    // decnet's own element first, then any others: a service's own SD-ID
    // may repeat a name, and ours is the one the fleet agrees on.
    let mut fields = Map::new();
    let ours = parsed.structured_data.iter().filter(|e| e.id == SD_ID);
    let others = parsed.structured_data.iter().filter(|e| e.id != SD_ID);
    for element in ours.chain(others) {
        for (name, value) in &element.params {
            fields.entry(name.clone()).or_insert_with(|| Value::String(value.clone()));
        }
    }
    let decnet_line = parsed.element(SD_ID).is_some();
    let mut msg = parsed.msg.unwrap_or_default();
    // rsyslog's RFC 5424 forwarding of a BSD message writes `- -  MSG`: the
    // message kept the space after the BSD TAG's colon. decnet's formatter
    // always writes its own element, and its MSG is kept exactly.
    if !decnet_line && msg.starts_with(' ') {
        msg.remove(0);
    }

    let (attacker_ip, port) = attacker_address(&fields, &msg);
    if let Some(port) = port {
        fields.entry("remote_port").or_insert_with(|| Value::String(port.to_string()));
    }

    let event_type = match parsed.msgid {
        Some(id) => id,
        None if msg.starts_with("CMD ") => "command".to_string(),
        None => NIL_EVENT_TYPE.to_string(),
    };
    // The `decky` SD param carries the exact (UTF-8) name; HOSTNAME may be
    // an ASCII-mangled copy of it (see rfc5424's module docs).
    let str_field = |name: &str| fields.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let decky = str_field("decky").or(parsed.hostname).unwrap_or_else(|| "unknown".to_string());
    let service = parsed.app_name.or_else(|| str_field("service")).unwrap_or_else(|| "unknown".to_string());
    let timestamp = match parsed.timestamp {
        Some(ts) => ts.unix_timestamp_nanos() as f64 / 1e9,
        None => received_at,
    };
    Record { timestamp, decky, service, event_type, attacker_ip, fields, msg, raw_line: String::new(), source: None }
}

/// What `fields.truncated` lists for a line the collector had to cut
/// (beside whatever the formatter listed as cut before it was sent).
pub const CUT_LINE: &str = "line";

/// Parse the head of a line that was longer than the collector's limit.
/// The cut usually lands in a long SD value or the MSG; closing what it
/// left open (`"]`, `]`, `=""]`) makes the head a line again, so the
/// record is kept with everything before the cut. Either way the record
/// says so: `fields.truncated` gains `line`. `raw_line` is the head as
/// received.
pub fn parse_truncated(head: &str, received_at: f64) -> Result<Record, ParseError> {
    let head = head.trim_end_matches(['\r', '\n']);
    let mut record = match parse_record(head, received_at) {
        Ok(r) => r,
        Err(e) => {
            // A backslash the cut separated from what it escaped would
            // escape the closing quote instead.
            let trailing = head.len() - head.trim_end_matches('\\').len();
            let body = if trailing % 2 == 1 { &head[..head.len() - 1] } else { head };
            let closed = ["\"]", "]", "=\"\"]"]
                .iter()
                .find_map(|close| parse_record(&format!("{body}{close}"), received_at).ok());
            let Some(mut r) = closed else { return Err(e) };
            r.raw_line = head.to_string();
            r
        }
    };
    let marked = match record.field(rfc5424::TRUNCATED_PARAM) {
        Some(before) if !before.is_empty() => format!("{before},{CUT_LINE}"),
        _ => CUT_LINE.to_string(),
    };
    record.fields.insert(rfc5424::TRUNCATED_PARAM.to_string(), Value::String(marked));
    Ok(record)
}

/// The attacker's address and, when it came as `host:port`, the port.
/// Order: SD params by [`ADDRESS_KEYS`], `key=value` message tokens by the
/// same keys, `from|rhost|client|src <ip>` in the message, the first bare
/// IPv4 in the message, else [`UNKNOWN_IP`]. A value that is not an
/// address (`-`, a hostname) does not count as a hit: the search goes on.
pub fn attacker_address(fields: &Map<String, Value>, msg: &str) -> (String, Option<u16>) {
    let found = ADDRESS_KEYS
        .iter()
        .find_map(|key| fields.get(*key).and_then(Value::as_str).and_then(split_address))
        .or_else(|| msg_key_value(msg))
        .or_else(|| msg_after_keyword(msg))
        .or_else(|| first_bare_ipv4(msg).map(|ip| (IpAddr::V4(ip), None)));
    match found {
        Some((ip, port)) => (ip.to_canonical().to_string(), port),
        None => (UNKNOWN_IP.to_string(), None),
    }
}

/// `1.2.3.4`, `1.2.3.4:22`, `::1`, `[::1]`, `[::1]:22` → address and port.
pub fn split_address(value: &str) -> Option<(IpAddr, Option<u16>)> {
    let value = value.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ip = host.parse::<IpAddr>().ok()?;
        return match after {
            "" => Some((ip, None)),
            _ => Some((ip, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    // Only IPv4 may carry a bare `:port` (a bare IPv6 was handled above).
    let (host, port) = value.rsplit_once(':')?;
    let ip = host.parse::<Ipv4Addr>().ok()?;
    Some((IpAddr::V4(ip), Some(port.parse().ok()?)))
}

/// Punctuation prose puts around an address (`from 1.2.3.4,` `(1.2.3.4)`).
fn trim_token(token: &str) -> &str {
    token.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | ';' | '(' | ')' | '<' | '>'))
}

fn msg_key_value(msg: &str) -> Option<(IpAddr, Option<u16>)> {
    let tokens: Vec<(&str, &str)> =
        msg.split_whitespace().filter_map(|t| t.split_once('=')).map(|(k, v)| (k, trim_token(v))).collect();
    ADDRESS_KEYS.iter().find_map(|key| tokens.iter().filter(|(k, _)| k == key).find_map(|(_, v)| split_address(v)))
}

fn msg_after_keyword(msg: &str) -> Option<(IpAddr, Option<u16>)> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"\b(?:from|rhost|client|src)\s+(\S+)").expect("static regex"));
    re.captures_iter(msg).find_map(|c| {
        let token = trim_token(&c[1]);
        // A trailing sentence dot belongs to the prose, not the address.
        split_address(token).or_else(|| split_address(token.strip_suffix('.')?))
    })
}

fn first_bare_ipv4(msg: &str) -> Option<Ipv4Addr> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"\b\d{1,3}(?:\.\d{1,3}){3}\b").expect("static regex"));
    re.find_iter(msg).find_map(|m| m.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TS: &str = "2026-12-02T16:10:00.250000Z";

    fn line(msgid: &str, sd: &str, msg: &str) -> String {
        let mut l = format!("<134>1 {TS} web-01 ssh - {msgid} {sd}");
        if !msg.is_empty() {
            l.push(' ');
            l.push_str(msg);
        }
        l
    }

    fn parse(l: &str) -> Record {
        parse_record(l, 1.0).unwrap_or_else(|e| panic!("{l}: {e}"))
    }

    #[test]
    fn header_fields_become_the_record() {
        let r = parse(&line("login_attempt", r#"[relay@55555 src_ip="10.0.0.5" username="root"]"#, "hello there"));
        assert_eq!(r.decky, "web-01");
        assert_eq!(r.service, "ssh");
        assert_eq!(r.event_type, "login_attempt");
        assert_eq!(r.attacker_ip, "10.0.0.5");
        assert_eq!(r.msg, "hello there");
        assert_eq!(r.field("username"), Some("root"));
        assert!((r.timestamp - 1_796_227_800.25).abs() < 1e-6, "{}", r.timestamp);
        assert!(r.raw_line.starts_with("<134>1 "));
    }

    /// Every address rule, with the expected (attacker_ip, remote_port).
    #[test]
    fn attacker_address_rules_in_order() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            // SD keys, each alone.
            (r#"[relay@55555 src_ip="1.1.1.1"]"#, "", "1.1.1.1", None),
            (r#"[relay@55555 src="1.1.1.2"]"#, "", "1.1.1.2", None),
            (r#"[relay@55555 client_ip="1.1.1.3"]"#, "", "1.1.1.3", None),
            (r#"[relay@55555 remote_ip="1.1.1.4"]"#, "", "1.1.1.4", None),
            (r#"[relay@55555 remote_addr="1.1.1.5"]"#, "", "1.1.1.5", None),
            (r#"[relay@55555 target_ip="1.1.1.6"]"#, "", "1.1.1.6", None),
            (r#"[relay@55555 ip="1.1.1.7"]"#, "", "1.1.1.7", None),
            // Key order wins over param order.
            (r#"[relay@55555 ip="9.9.9.9" src_ip="2.2.2.2"]"#, "", "2.2.2.2", None),
            (r#"[relay@55555 remote_addr="9.9.9.9" client_ip="2.2.2.3"]"#, "", "2.2.2.3", None),
            // host:port and [v6]:port split.
            (r#"[relay@55555 remote_addr="3.3.3.3:4444"]"#, "", "3.3.3.3", Some("4444")),
            // (`]` inside an SD value is escaped, RFC 5424 §6.3.3.)
            (r#"[relay@55555 remote_addr="[2001:db8::1\]:2222"]"#, "", "2001:db8::1", Some("2222")),
            (r#"[relay@55555 src_ip="[2001:db8::2\]"]"#, "", "2001:db8::2", None),
            (r#"[relay@55555 src_ip="2001:db8::3"]"#, "", "2001:db8::3", None),
            (r#"[relay@55555 src_ip="::ffff:7.7.7.7"]"#, "", "7.7.7.7", None),
            // A non-address value does not stop the search.
            (r#"[relay@55555 src_ip="-" ip="4.4.4.4"]"#, "", "4.4.4.4", None),
            (r#"[relay@55555 src="evil.example"]"#, "from 4.4.4.5", "4.4.4.5", None),
            // SD beats the message.
            (r#"[relay@55555 src_ip="5.5.5.5"]"#, "src_ip=6.6.6.6 from 6.6.6.7", "5.5.5.5", None),
            // key=value in the message, by key order, quotes and ports handled.
            ("-", "user=x remote_ip=6.6.6.1 src=6.6.6.2", "6.6.6.2", None),
            ("-", r#"client_ip="6.6.6.3:80""#, "6.6.6.3", Some("80")),
            ("-", "remote_addr=[2001:db8::9]:1", "2001:db8::9", Some("1")),
            // from|rhost|client|src <ip>.
            ("-", "Failed password for root from 8.8.8.1 port 22 ssh2", "8.8.8.1", None),
            ("-", "auth failure rhost 8.8.8.2", "8.8.8.2", None),
            ("-", "client 8.8.8.3:5555 said hi", "8.8.8.3", Some("5555")),
            ("-", "src 2001:db8::7 probing", "2001:db8::7", None),
            ("-", "connection from 8.8.8.4.", "8.8.8.4", None),
            // ... and only as words: "fromage" is not "from".
            ("-", "fromage 9.9.9.1 from 9.9.9.2", "9.9.9.2", None),
            // First bare IPv4 anywhere in the message.
            ("-", "blocked 10.1.2.3 then 10.1.2.4", "10.1.2.3", None),
            ("-", "version 999.1.1.1 then 10.9.9.9", "10.9.9.9", None),
            // Nothing at all.
            ("-", "nothing here", "Unknown", None),
            ("-", "", "Unknown", None),
        ];
        for (sd, msg, ip, port) in cases {
            let r = parse(&line("ev", sd, msg));
            assert_eq!(r.attacker_ip, *ip, "sd={sd} msg={msg}");
            assert_eq!(r.field("remote_port"), *port, "sd={sd} msg={msg}");
        }
    }

    #[test]
    fn a_remote_port_already_in_the_sd_is_kept() {
        let r = parse(&line("ev", r#"[relay@55555 src="1.2.3.4:80" remote_port="99"]"#, ""));
        assert_eq!(r.field("remote_port"), Some("99"));
    }

    #[test]
    fn event_type_rules() {
        let r = parse(&format!("<134>1 {TS} d ssh - - - CMD ls -la"));
        assert_eq!(r.event_type, "command");
        assert_eq!(r.msg, "CMD ls -la");
        let r = parse(&format!("<134>1 {TS} d ssh - - - CMDX ls"));
        assert_eq!(r.event_type, NIL_EVENT_TYPE);
        let r = parse(&format!("<134>1 {TS} d ssh - - - just text"));
        assert_eq!(r.event_type, NIL_EVENT_TYPE);
        // A MSGID is kept even when the message is a CMD line.
        let r = parse(&format!("<134>1 {TS} d ssh - command - CMD id"));
        assert_eq!(r.event_type, "command");
        let r = parse(&format!("<134>1 {TS} d ssh - session_recorded - CMD id"));
        assert_eq!(r.event_type, "session_recorded");
    }

    #[test]
    fn decky_comes_from_the_sd_param_when_present() {
        let r = parse(&format!(r#"<134>1 {TS} caf_ ssh - ev [relay@55555 decky="café"]"#));
        assert_eq!(r.decky, "café");
        let r = parse(&format!("<134>1 {TS} - - - ev -"));
        assert_eq!((r.decky.as_str(), r.service.as_str()), ("unknown", "unknown"));
        let r = parse(&format!(r#"<134>1 {TS} - - - ev [relay@55555 service="ftp"]"#));
        assert_eq!(r.service, "ftp");
    }

    #[test]
    fn nil_timestamp_is_the_receive_time() {
        let r = parse_record("<134>1 - d ssh - ev -", 42.5).unwrap();
        assert_eq!(r.timestamp, 42.5);
    }

    #[test]
    fn our_sd_element_wins_over_another_with_the_same_name() {
        let r = parse(&line("ev", r#"[other@1 src_ip="9.9.9.9" extra="x"][relay@55555 src_ip="1.1.1.1"]"#, ""));
        assert_eq!(r.attacker_ip, "1.1.1.1");
        assert_eq!(r.field("extra"), Some("x"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in ["", "hello", "<13>Oct 11 22:14:15", "<999>1 - - - - - -", "<134>1 x"] {
            assert!(parse_record(bad, 0.0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rsyslogs_double_space_in_an_rfc5424_line_is_not_the_messages() {
        // Exactly what rsyslog's RSYSLOG_SyslogProtocol23Format forwarded.
        let r = parse("<13>1 2026-12-03T12:08:32+00:00 vm sshd 7 - -  Failed password for root from 198.51.100.1\n");
        assert_eq!(r.msg, "Failed password for root from 198.51.100.1");
        // decnet's own lines keep their MSG exactly.
        let r = parse(&line("ev", r#"[relay@55555 a="b"]"#, " two  spaces"));
        assert_eq!(r.msg, " two  spaces");
    }

    #[test]
    fn bsd_syslog_lines_become_records() {
        let now = 1_796_296_800.0; // 2026-12-03T11:20:00Z
        let r =
            parse_record("<13>Dec  3 11:20:19 vm sshd[4242]: Failed password for root from 203.0.113.9 port 22", now)
                .unwrap();
        assert_eq!((r.decky.as_str(), r.service.as_str(), r.event_type.as_str()), ("vm", "sshd", "log"));
        assert_eq!(r.attacker_ip, "203.0.113.9");
        assert_eq!(r.field("pid"), Some("4242"));
        assert_eq!(r.timestamp, now + 19.0);
        assert_eq!(r.msg, "Failed password for root from 203.0.113.9 port 22");
        let r = parse_record("<13>Dec  3 11:20:19 vm shell:  CMD id", now).unwrap();
        assert_eq!((r.event_type.as_str(), r.msg.as_str()), ("command", "CMD id"));
    }

    #[test]
    fn a_syslog_line_inside_a_syslog_line_is_the_inner_record() {
        let inner =
            format!(r#"<134>1 {TS} web-01 ssh - login_attempt [relay@55555 src_ip="203.0.113.5" username="root"] hi"#);
        // Docker's journald/syslog driver relayed by rsyslog (BSD outside).
        let outer = format!("<30>Dec  3 11:20:19 dockerhost web-01[77]: {inner}");
        // logger's own RFC 5424 wrapping (another SD element outside).
        let outer5424 = format!(r#"<13>1 2026-12-03T11:20:19Z vm app - - [timeQuality tzKnown="1"] {inner}"#);
        // A json-file record shipped as text.
        let json = serde_json::json!({"log": format!("{inner}\n"), "stream": "stdout"}).to_string();
        let outer_json = format!("<30>Dec  3 11:20:19 shipper docker: {json}");
        for (line, by) in [(&outer, "dockerhost"), (&outer5424, "vm"), (&outer_json, "shipper")] {
            let r = parse_record(line, 0.0).unwrap();
            assert_eq!(
                (r.decky.as_str(), r.service.as_str(), r.event_type.as_str()),
                ("web-01", "ssh", "login_attempt")
            );
            assert_eq!(r.attacker_ip, "203.0.113.5");
            assert_eq!(r.field("username"), Some("root"));
            assert_eq!(r.field("relayed_by"), Some(by));
            assert_eq!(r.raw_line, *line, "the raw line is the whole outer line");
        }
        // A json-file record that is the whole line.
        let r = parse_record(&json, 0.0).unwrap();
        assert_eq!((r.event_type.as_str(), r.field("relayed_by")), ("login_attempt", Some("docker")));
        assert!(parse_record(r#"{"log":"not syslog\n"}"#, 0.0).is_err());
        // A decky's own line is never looked into: its MSG is attacker text.
        let own = format!(r#"<134>1 {TS} web-01 http - request [relay@55555 src_ip="203.0.113.5"] {inner}"#);
        let r = parse_record(&own, 0.0).unwrap();
        assert_eq!((r.service.as_str(), r.event_type.as_str()), ("http", "request"));
    }

    /// The issue's forged record, through the formatter and this parser: an
    /// SNI with a newline and a whole line after it stays one record of the
    /// real sender, with the SNI exactly as sent.
    #[test]
    fn a_forged_sni_is_one_record_of_the_real_attacker() {
        use crate::events::rfc5424::{format_event, RelayEvent, Severity};
        let sni = "x.test\n<134>1 2026-12-03T10:00:00Z ws-finance http - request [relay@55555 src_ip=\"198.51.100.77\"] GET /";
        let line = format_event(&RelayEvent {
            timestamp: time::OffsetDateTime::UNIX_EPOCH,
            severity: Severity::Info,
            host: "web-01".into(),
            app: "sniffer".into(),
            msgid: "tls_client_hello".into(),
            params: vec![("src_ip".into(), "203.0.113.5".into()), ("sni".into(), sni.into())],
            msg: None,
        });
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 1, "{line}");
        let r = parse(lines[0]);
        assert_eq!(r.attacker_ip, "203.0.113.5");
        assert_eq!(r.field("sni"), Some(sni));
    }

    #[test]
    fn a_cut_line_is_kept_with_what_came_before_the_cut() {
        let full = line("login_attempt", r#"[relay@55555 src_ip="10.0.0.5" username="rootrootroot" x="a\\b"]"#, "tail");
        for (cut_at, user) in [
            (full.find("rootroot").unwrap() + 6, Some("rootro")), // in a value
            (full.find("x=").unwrap() + 1, Some("rootrootroot")), // in a name
            (full.find("a\\\\b").unwrap() + 2, Some("rootrootroot")), // after a lone backslash
            (full.find("] tail").unwrap() + 1, Some("rootrootroot")), // right after the SD
            (full.len() - 2, Some("rootrootroot")),               // in the MSG
        ] {
            let head = &full[..cut_at];
            let r = parse_truncated(head, 0.0).unwrap_or_else(|e| panic!("{head}: {e}"));
            assert_eq!(r.attacker_ip, "10.0.0.5", "{head}");
            assert_eq!(r.field("username"), user, "{head}");
            assert_eq!(r.field("truncated"), Some("line"), "{head}");
            assert_eq!(r.raw_line, head);
        }
        // What the formatter already cut is kept in the list.
        let r = parse_truncated(&line("e", r#"[relay@55555 truncated="username" src_ip="10.0.0.5" v="abc"#, ""), 0.0)
            .unwrap();
        assert_eq!(r.field("truncated"), Some("username,line"));
        // A head that is no line at all stays an error (kept raw only).
        assert!(parse_truncated("<134>1 2026-", 0.0).is_err());
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = parse(&line("login_attempt", r#"[relay@55555 src_ip="10.0.0.5" secret_b64="cGFzcw=="]"#, "x"));
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse_record(&s, 0.0);
        }

        #[test]
        fn parsing_near_valid_lines_never_panics(
            sd in "(-|\\[relay@55555( [a-z_]{1,8}=\"[^\"\\]\\\\]{0,20}\"){0,4}\\])",
            msg in "\\PC{0,80}",
        ) {
            let l = format!("<134>1 {TS} h a - m {sd} {msg}");
            if let Ok(r) = parse_record(&l, 0.0) {
                prop_assert!(r.attacker_ip == UNKNOWN_IP || r.attacker_ip.parse::<IpAddr>().is_ok());
            }
        }
    }
}
