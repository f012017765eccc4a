//! RFC 5424 syslog lines: the form mutation events take in the ingest log,
//! and the parser the correlator reads that log (and ordinary service
//! events) back with.
//!
//! Why hand-written and not a crate: the line decnet writes has one exact
//! shape (SPEC §8) and the correlator must get back *exactly* what was
//! emitted. The Rust RFC 5424 crates either only send to a syslog daemon
//! (`syslog`), or parse leniently by guessing between RFC 3164 and 5424
//! (`syslog_loose`), which would silently accept a damaged line; the
//! strict parser (`syslog_rfc5424`) has been unmaintained for years. The
//! grammar needed here (header fields, SD-ELEMENTs with escaped values) is
//! a few dozen lines, tested by a format → parse property test.
//!
//! Non-ASCII decky names: RFC 5424 HOSTNAME is 1–255 printable US-ASCII
//! characters without spaces. The HOSTNAME field therefore carries the
//! decky name with every other character replaced by `_` (and cut to 255
//! characters, `-` if nothing is left); the `decky` SD parameter, which
//! is UTF-8, carries the exact name, and the parser takes the name from it.

use std::fmt::Write as _;
use time::OffsetDateTime;

/// local0 (16) × 8 + informational (6).
pub const MUTATION_PRI: u8 = 134;
pub const APP_NAME: &str = "mutator";
pub const MSGID: &str = "decky_mutated";
/// SD-ID of decnet's parameters (enterprise number as in the Python DECNET).
pub const SD_ID: &str = "relay@55555";

pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
pub const MAX_PROCID: usize = 128;
pub const MAX_MSGID: usize = 32;

/// Why a mutation changed a decky (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    Creation,
    Retirement,
    Scheduled,
    Operator,
    Behavioral,
    Healer,
    Federation,
}

impl Trigger {
    pub const ALL: [Trigger; 7] = [
        Trigger::Creation,
        Trigger::Retirement,
        Trigger::Scheduled,
        Trigger::Operator,
        Trigger::Behavioral,
        Trigger::Healer,
        Trigger::Federation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Creation => "creation",
            Trigger::Retirement => "retirement",
            Trigger::Scheduled => "scheduled",
            Trigger::Operator => "operator",
            Trigger::Behavioral => "behavioral",
            Trigger::Healer => "healer",
            Trigger::Federation => "federation",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| format!("unknown trigger {s:?}"))
    }
}

/// One decky transition, as emitted and as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationEvent {
    pub timestamp: OffsetDateTime,
    pub decky: String,
    pub old_services: Vec<String>,
    pub new_services: Vec<String>,
    pub trigger: Trigger,
    pub actor: Option<String>,
}

/// A parsed RFC 5424 line. NILVALUE (`-`) fields are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogLine {
    pub pri: u8,
    pub timestamp: Option<OffsetDateTime>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    pub structured_data: Vec<SdElement>,
    pub msg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

impl SdElement {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl SyslogLine {
    /// The first SD-ELEMENT with id `id`.
    pub fn element(&self, id: &str) -> Option<&SdElement> {
        self.structured_data.iter().find(|e| e.id == id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an RFC 5424 line: {0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

const TIMESTAMP_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// RFC 3339 UTC with microseconds (RFC 5424 allows at most 6 fraction digits).
pub fn format_timestamp(ts: OffsetDateTime) -> String {
    ts.to_offset(time::UtcOffset::UTC).format(TIMESTAMP_FORMAT).unwrap_or_else(|_| "-".to_string())
}

/// HOSTNAME for a decky name: printable ASCII only, ≤ 255 characters.
pub fn hostname_for(decky: &str) -> String {
    let h: String = decky.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(MAX_HOSTNAME).collect();
    if h.is_empty() {
        "-".to_string()
    } else {
        h
    }
}

/// Escape an SD-PARAM value (RFC 5424 §6.3.3): `"`, `\` and `]`.
pub fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The exact SPEC §8 line (without trailing newline).
pub fn format_mutation(ev: &MutationEvent) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "<{MUTATION_PRI}>1 {} {} {APP_NAME} - {MSGID} [{SD_ID}",
        format_timestamp(ev.timestamp),
        hostname_for(&ev.decky)
    );
    let mut param = |name: &str, value: &str| {
        let _ = write!(line, " {name}=\"");
        escape_param_value(value, &mut line);
        line.push('"');
    };
    param("decky", &ev.decky);
    param("old_services", &ev.old_services.join(","));
    param("new_services", &ev.new_services.join(","));
    param("trigger", ev.trigger.as_str());
    if let Some(actor) = &ev.actor {
        param("actor", actor);
    }
    line.push(']');
    line
}

/// Syslog severities used by decnet's lines (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Alert = 1,
    Critical = 2,
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// local0, the facility every decnet line uses.
pub const FACILITY_LOCAL0: u8 = 16;

/// One honeypot / worker event in the fleet-wide line format:
/// `<PRI>1 TS <host> <app> - <msgid> [relay@55555 k="v" …] msg`.
/// `host` is the decky (or worker host), `app` the service (`ssh`, `http`,
/// `prober`, …), `msgid` the event type (`login_attempt`, `command`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEvent {
    pub timestamp: OffsetDateTime,
    pub severity: Severity,
    pub host: String,
    pub app: String,
    pub msgid: String,
    /// SD params in order; values are escaped on format.
    pub params: Vec<(String, String)>,
    pub msg: Option<String>,
}

fn header_token(value: &str, max: usize) -> String {
    let t: String = value.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if t.is_empty() {
        "-".to_string()
    } else {
        t
    }
}

/// Format a [`RelayEvent`] (without trailing newline). Header fields are
/// forced to printable ASCII and cut to their RFC 5424 maxima; SD names
/// that are not valid SD-NAMEs are skipped; the MSG has CR/LF replaced by
/// spaces so one event is always one line.
pub fn format_event(ev: &RelayEvent) -> String {
    let mut line = String::with_capacity(192);
    let pri = FACILITY_LOCAL0 * 8 + ev.severity as u8;
    let _ = write!(
        line,
        "<{pri}>1 {} {} {} - {}",
        format_timestamp(ev.timestamp),
        header_token(&ev.host, MAX_HOSTNAME),
        header_token(&ev.app, MAX_APP_NAME),
        header_token(&ev.msgid, MAX_MSGID)
    );
    let valid_name = |n: &str| {
        !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
    };
    let params: Vec<_> = ev.params.iter().filter(|(n, _)| valid_name(n)).collect();
    if params.is_empty() {
        line.push_str(" -");
    } else {
        let _ = write!(line, " [{SD_ID}");
        for (name, value) in params {
            let _ = write!(line, " {name}=\"");
            escape_param_value(value, &mut line);
            line.push('"');
        }
        line.push(']');
    }
    if let Some(msg) = ev.msg.as_deref().filter(|m| !m.is_empty()) {
        line.push(' ');
        line.extend(msg.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }));
    }
    line
}

/// Parse one RFC 5424 line (trailing `\r`/`\n` ignored).
pub fn parse_line(line: &str) -> Result<SyslogLine, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix('<').ok_or_else(|| ParseError("missing <PRI>".into()))?;
    let close = rest.find('>').ok_or_else(|| ParseError("unterminated <PRI>".into()))?;
    let pri_text = &rest[..close];
    if pri_text.is_empty() || pri_text.len() > 3 || !pri_text.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("bad PRI {pri_text:?}"));
    }
    let pri: u8 = match pri_text.parse() {
        Ok(p) if p <= 191 => p,
        _ => return err(format!("PRI {pri_text} out of range")),
    };
    let mut rest = &rest[close + 1..];
    let version = take_field(&mut rest, "VERSION")?;
    if version != "1" {
        return err(format!("unsupported version {version:?}"));
    }
    let ts_text = take_field(&mut rest, "TIMESTAMP")?;
    let timestamp = match ts_text {
        "-" => None,
        t => Some(
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ParseError(format!("bad TIMESTAMP {t:?}: {e}")))?,
        ),
    };
    let hostname = header_field(take_field(&mut rest, "HOSTNAME")?, "HOSTNAME", MAX_HOSTNAME)?;
    let app_name = header_field(take_field(&mut rest, "APP-NAME")?, "APP-NAME", MAX_APP_NAME)?;
    let procid = header_field(take_field(&mut rest, "PROCID")?, "PROCID", MAX_PROCID)?;
    let msgid = header_field(take_field(&mut rest, "MSGID")?, "MSGID", MAX_MSGID)?;

    let mut structured_data = Vec::new();
    if let Some(after) = rest.strip_prefix('-') {
        rest = after;
    } else if rest.starts_with('[') {
        while rest.starts_with('[') {
            let (element, after) = parse_sd_element(&rest[1..])?;
            structured_data.push(element);
            rest = after;
        }
    } else {
        return err("missing STRUCTURED-DATA");
    }
    let msg = match rest {
        "" => None,
        r => match r.strip_prefix(' ') {
            // A UTF-8 MSG may start with a BOM (RFC 5424 §6.4).
            Some(m) => Some(m.strip_prefix('\u{feff}').unwrap_or(m).to_string()),
            None => return err("garbage after STRUCTURED-DATA"),
        },
    };
    Ok(SyslogLine { pri, timestamp, hostname, app_name, procid, msgid, structured_data, msg })
}

/// Take one space-terminated header field.
fn take_field<'a>(rest: &mut &'a str, name: &str) -> Result<&'a str, ParseError> {
    match rest.find(' ') {
        Some(i) if i > 0 => {
            let field = &rest[..i];
            *rest = &rest[i + 1..];
            Ok(field)
        }
        _ => err(format!("missing {name}")),
    }
}

fn header_field(value: &str, name: &str, max: usize) -> Result<Option<String>, ParseError> {
    if value == "-" {
        return Ok(None);
    }
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return err(format!("bad {name} {value:?}"));
    }
    Ok(Some(value.to_string()))
}

/// SD-NAME: 1–32 printable ASCII except `=`, space, `]`, `"`.
fn take_sd_name<'a>(rest: &mut &'a str) -> Result<&'a str, ParseError> {
    let end = rest.find(|c: char| !c.is_ascii_graphic() || matches!(c, '=' | ']' | '"')).unwrap_or(rest.len());
    if end == 0 || end > 32 {
        return err(format!("bad SD name at {:?}", truncate(rest)));
    }
    let name = &rest[..end];
    *rest = &rest[end..];
    Ok(name)
}

/// Parse an SD-ELEMENT after its `[`; returns it and what follows its `]`.
fn parse_sd_element(input: &str) -> Result<(SdElement, &str), ParseError> {
    let mut rest = input;
    let id = take_sd_name(&mut rest)?.to_string();
    let mut params = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            return Ok((SdElement { id, params }, after));
        }
        rest = rest.strip_prefix(' ').ok_or_else(|| ParseError(format!("bad SD element {id}")))?;
        let name = take_sd_name(&mut rest)?.to_string();
        rest = rest.strip_prefix("=\"").ok_or_else(|| ParseError(format!("SD param {name} lacks =\"")))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return err(format!("unterminated value of SD param {name}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                    // RFC 5424: a backslash before any other char is kept as is.
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return err(format!("unterminated value of SD param {name}")),
                },
                Some((_, ']')) => return err(format!("unescaped ']' in SD param {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        rest = &rest[end + 1..];
        params.push((name, value));
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn split_services(v: &str) -> Vec<String> {
    if v.is_empty() {
        Vec::new()
    } else {
        v.split(',').map(str::to_string).collect()
    }
}

impl MutationEvent {
    /// The mutation event a parsed line carries; `None` for other lines
    /// (ordinary service events), an error for a mutation line that lacks
    /// what a mutation needs.
    pub fn from_line(line: &SyslogLine) -> Result<Option<MutationEvent>, ParseError> {
        if line.msgid.as_deref() != Some(MSGID) {
            return Ok(None);
        }
        let sd = line.element(SD_ID).ok_or_else(|| ParseError(format!("{MSGID} without [{SD_ID}]")))?;
        let need = |name: &str| sd.param(name).ok_or_else(|| ParseError(format!("{MSGID} without {name}")));
        Ok(Some(MutationEvent {
            timestamp: line.timestamp.ok_or_else(|| ParseError(format!("{MSGID} without TIMESTAMP")))?,
            decky: need("decky")?.to_string(),
            old_services: split_services(need("old_services")?),
            new_services: split_services(need("new_services")?),
            trigger: need("trigger")?.parse().map_err(ParseError)?,
            actor: sd.param("actor").map(str::to_string),
        }))
    }
}

/// Parse a line and return its mutation event, if it is one.
pub fn parse_mutation(line: &str) -> Result<Option<MutationEvent>, ParseError> {
    MutationEvent::from_line(&parse_line(line)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(decky: &str, old: &[&str], new: &[&str], actor: Option<&str>) -> MutationEvent {
        MutationEvent {
            timestamp: time::macros::datetime!(2024-05-06 07:08:09.123456 UTC),
            decky: decky.into(),
            old_services: old.iter().map(|s| s.to_string()).collect(),
            new_services: new.iter().map(|s| s.to_string()).collect(),
            trigger: Trigger::Scheduled,
            actor: actor.map(str::to_string),
        }
    }

    #[test]
    fn relay_event_formats_pri_escapes_and_parses_back() {
        let ev = RelayEvent {
            timestamp: time::macros::datetime!(2024-05-06 07:08:09.5 UTC),
            severity: Severity::Warning,
            host: "web 01".into(),
            app: "ssh".into(),
            msgid: "login_attempt".into(),
            params: vec![
                ("src_ip".into(), "10.0.0.9".into()),
                ("username".into(), "ro\"ot]\\".into()),
                ("bad name".into(), "skipped".into()),
            ],
            msg: Some("two\nlines".into()),
        };
        let line = format_event(&ev);
        assert!(
            line.starts_with("<132>1 2024-05-06T07:08:09.500000Z web_01 ssh - login_attempt [relay@55555 "),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let parsed = parse_line(&line).unwrap();
        let sd = parsed.element(SD_ID).unwrap();
        assert_eq!(sd.param("username"), Some("ro\"ot]\\"));
        assert_eq!(sd.param("bad name"), None);
        assert_eq!(parsed.msg.as_deref(), Some("two lines"));
        let bare = RelayEvent { params: vec![], msg: None, ..ev };
        assert!(format_event(&bare).ends_with(" login_attempt -"));
        assert!(parse_line(&format_event(&bare)).unwrap().structured_data.is_empty());
    }

    #[test]
    fn formats_the_exact_spec_line() {
        let line = format_mutation(&event("web-01", &["a", "b"], &["c"], Some("alice")));
        assert_eq!(
            line,
            r#"<134>1 2024-05-06T07:08:09.123456Z web-01 mutator - decky_mutated [relay@55555 decky="web-01" old_services="a,b" new_services="c" trigger="scheduled" actor="alice"]"#
        );
    }

    #[test]
    fn escapes_and_non_ascii_hostnames() {
        let line = format_mutation(&event("wéb \"x\"]", &[], &["ssh"], None));
        assert!(line.contains(r#" w_b_"x"] mutator "#), "{line}");
        assert!(line.contains(r#"decky="wéb \"x\"\]""#), "{line}");
        assert!(!line.contains("actor="));
        let long = "x".repeat(300);
        assert_eq!(hostname_for(&long).len(), MAX_HOSTNAME);
    }

    #[test]
    fn parses_ordinary_service_events() {
        let line = r#"<38>1 2024-01-01T00:00:00Z deck-1 ssh 42 login_attempt [relay@55555 src_ip="1.2.3.4" user="ro\\ot"][origin@1 x="y"] message body"#;
        let parsed = parse_line(line).unwrap();
        assert_eq!(parsed.app_name.as_deref(), Some("ssh"));
        assert_eq!(parsed.procid.as_deref(), Some("42"));
        assert_eq!(parsed.structured_data.len(), 2);
        assert_eq!(parsed.element(SD_ID).unwrap().param("user"), Some(r"ro\ot"));
        assert_eq!(parsed.msg.as_deref(), Some("message body"));
        assert_eq!(MutationEvent::from_line(&parsed), Ok(None));
        let nil = parse_line("<13>1 - - - - - -").unwrap();
        assert!(nil.hostname.is_none() && nil.structured_data.is_empty() && nil.msg.is_none());
    }

    #[test]
    fn rejects_damaged_lines() {
        for bad in [
            "",
            "hello",
            "<999>1 - - - - - -",
            "<13>2 - - - - - -",
            "<13>1 - - - - -",
            r#"<13>1 - h a - m [x@1 a="unterminated]"#,
            r#"<13>1 - h a - m [x@1 a="b]c"]"#,
            "<134>1 2024-01-01T00:00:00Z d mutator - decky_mutated [relay@55555 decky=\"d\"]",
        ] {
            assert!(parse_mutation(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_hard_characters_round_trip() {
        // Each character SD-PARAM escaping must handle, plus spaces and
        // non-ASCII, in every value (the property below reaches some of
        // them only by chance).
        let hard = "w é\"x\\]y";
        let mut ev = event(hard, &[hard, "ssh"], &["a b", "ü]"], Some(hard));
        ev.trigger = Trigger::Operator;
        assert_eq!(parse_mutation(&format_mutation(&ev)).unwrap(), Some(ev));
    }

    fn service_name() -> impl Strategy<Value = String> {
        // Any non-empty text without ',' (the list separator), with the
        // characters escaping must handle drawn often.
        prop_oneof!["[^,]{1,12}", "[ \"\\\\\\]é]{1,6}"]
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            decky in prop_oneof![".{0,40}", "[a-z \"\\\\\\]é]{0,12}"],
            old in proptest::collection::vec(service_name(), 0..4),
            new in proptest::collection::vec(service_name(), 0..4),
            trigger in proptest::sample::select(Trigger::ALL.to_vec()),
            actor in proptest::option::of(prop_oneof![".{0,20}", "[ \"\\\\\\]é]{0,6}"]),
            micros in 0i64..4_000_000_000_000_000,
        ) {
            let ev = MutationEvent {
                timestamp: OffsetDateTime::from_unix_timestamp_nanos(micros as i128 * 1000).unwrap(),
                decky, old_services: old, new_services: new, trigger, actor,
            };
            let line = format_mutation(&ev);
            let back = parse_mutation(&line).unwrap();
            prop_assert_eq!(back, Some(ev));
        }
    }
}
