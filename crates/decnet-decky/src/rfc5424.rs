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

/// Characters no line may carry as they are: every control character
/// (C0 including CR, LF, NUL and ESC; DEL; C1 U+0080–U+009F), the Unicode
/// bidi controls that reorder what a viewer shows (`admin\u{202e}gnp.exe`
/// displays as `adminexe.png`), the line/paragraph separators some
/// viewers break lines at, and the BOM (the MSG parser strips a leading
/// one, so it must not arrive raw to round trip).
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// The visible form of a [`must_escape`] character: `\xHH` below U+0100
/// (`\x0a`, `\x1b`, `\x85`), `\uHHHH` above (`\u202e`), lowercase hex.
pub fn push_escaped_char(c: char, out: &mut String) {
    let cp = c as u32;
    if cp < 0x100 {
        let _ = write!(out, "\\x{cp:02x}");
    } else {
        let _ = write!(out, "\\u{cp:04x}");
    }
}

/// `text` with every [`must_escape`] character in its visible form and
/// everything else as is: what a terminal or a page shows of attacker
/// text (not reversible: a literal `\x0a` looks the same).
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    // The collector calls this on every line: printable ASCII, the usual
    // case, is settled by a byte scan without decoding characters.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(must_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if must_escape(c) {
            push_escaped_char(c, &mut out);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The character an escape at the start of `rest` (just after a `\`)
/// stands for, and its length: `xHH` / `uHHHH` only when the character is
/// one [`must_escape`] covers, so `\x41` in someone else's line stays text.
fn unescape_at(rest: &str) -> Option<(char, usize)> {
    let (digits, len) = match rest.as_bytes().first()? {
        b'x' => (2, 3),
        b'u' => (4, 5),
        _ => return None,
    };
    let hex = rest.get(1..1 + digits)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    must_escape(c).then_some((c, len))
}

/// Escape an SD-PARAM value: `"`, `\` and `]` with a backslash (RFC 5424
/// §6.3.3), and every [`must_escape`] character in its visible form.
pub fn escape_param_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
            out.push(c);
        } else if must_escape(c) {
            push_escaped_char(c, out);
        } else {
            out.push(c);
        }
    }
}

/// Escape a MSG. RFC 5424 gives MSG no escaping, so a backslash is
/// doubled only where the parser would otherwise read an escape (before
/// `\`, `x`, `u` or an escaped character): `C:\Users` stays readable.
pub fn escape_msg(msg: &str, out: &mut String) {
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        if must_escape(c) {
            push_escaped_char(c, out);
        } else if c == '\\' && chars.peek().is_some_and(|&n| matches!(n, '\\' | 'x' | 'u') || must_escape(n)) {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
}

/// The inverse of [`escape_msg`]: `\\` is one backslash, `\xHH`/`\uHHHH`
/// of an escaped character is that character, any other backslash is text.
pub fn unescape_msg(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.contains('\\') {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('\\') {
            out.push('\\');
            rest = tail;
        } else if let Some((c, len)) = unescape_at(after) {
            out.push(c);
            rest = &after[len..];
        } else {
            out.push('\\');
            rest = after;
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
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

/// Longest line [`format_event`] writes, in bytes, whatever it is given:
/// well under the collector's 64 KiB line limit, so no producer can make a
/// line the collector would have to cut.
pub const MAX_EVENT_LINE: usize = 48 * 1024;
/// Characters kept of a MSG.
pub const MAX_MSG_CHARS: usize = 4096;
/// Characters kept of an SD value without a cap of its own.
pub const MAX_VALUE_CHARS: usize = 1024;
/// Characters kept of the names an attacker picks freely (usernames, SNI,
/// certificate names, mail addresses, Host headers).
pub const MAX_NAME_CHARS: usize = 256;
/// Characters kept of `secret_b64`: a multiple of 4, so a cut secret is
/// still base64 (3 KiB of password, which is stored hashed).
pub const MAX_SECRET_B64_CHARS: usize = 4096;
/// Characters kept of the JSON lists some lines carry (a session's
/// `commands`, a traversal's `mutations`); the line budget still applies.
pub const MAX_LIST_CHARS: usize = 16 * 1024;
/// The SD param listing what was cut: `truncated="username,msg"`.
pub const TRUNCATED_PARAM: &str = "truncated";
/// Bytes kept free for the `truncated` param and the closing `]`.
const MARKER_RESERVE: usize = 512;

const NAME_FIELDS: [&str; 14] = [
    "username",
    "user",
    "sni",
    "server_name",
    "subject",
    "subject_cn",
    "issuer",
    "issuer_cn",
    "sans",
    "host",
    "mail_from",
    "rcpt_to",
    "user_agent",
    "client_banner",
];

/// `text` cut to `max` characters (at a char boundary), `None` when it fits:
/// for producers that cap a field before it reaches the bus or the
/// database, and name it in their own `truncated` list.
pub fn cut_chars(text: &str, max: usize) -> Option<&str> {
    text.char_indices().nth(max).map(|(i, _)| &text[..i])
}

/// The character cap of an SD value, by param name.
pub fn value_cap(name: &str) -> usize {
    match name {
        "secret_b64" => MAX_SECRET_B64_CHARS,
        "commands" | "mutations" => MAX_LIST_CHARS,
        n if NAME_FIELDS.contains(&n) => MAX_NAME_CHARS,
        _ => MAX_VALUE_CHARS,
    }
}

/// Escape at most `max_chars` characters of `value` in at most `max_bytes`
/// bytes (an escape is never split). Returns the characters taken.
fn escape_value_capped(value: &str, max_chars: usize, max_bytes: usize, out: &mut String) -> usize {
    let start = out.len();
    let mut piece = String::with_capacity(8);
    let mut taken = 0;
    for c in value.chars().take(max_chars) {
        piece.clear();
        escape_param_value(c.encode_utf8(&mut [0; 4]), &mut piece);
        if out.len() - start + piece.len() > max_bytes {
            break;
        }
        out.push_str(&piece);
        taken += 1;
    }
    taken
}

/// Format a [`RelayEvent`] (without trailing newline), always exactly one
/// line of at most [`MAX_EVENT_LINE`] bytes with no [`must_escape`]
/// character in it. Header fields are forced to printable ASCII and cut to
/// their RFC 5424 maxima; SD names that are not valid SD-NAMEs are skipped;
/// SD values and the MSG are escaped (see [`escape_param_value`],
/// [`escape_msg`]) and cut to their caps ([`value_cap`], [`MAX_MSG_CHARS`]);
/// whatever was cut is named in a `truncated` SD param.
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
    let mut truncated: Vec<&str> = Vec::new();
    let mut msg = String::new();
    if let Some(text) = ev.msg.as_deref().filter(|m| !m.is_empty()) {
        let cut = match text.char_indices().nth(MAX_MSG_CHARS) {
            Some((i, _)) => {
                truncated.push("msg");
                &text[..i]
            }
            None => text,
        };
        escape_msg(cut, &mut msg);
    }
    let valid_name = |n: &str| {
        !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
    };
    // What the SD values may use: the rest after the header, the MSG and
    // room for the marker.
    let budget = MAX_EVENT_LINE.saturating_sub(line.len() + 1 + msg.len() + MARKER_RESERVE);
    // A producer that cut fields itself lists them in its own `truncated`
    // param: one marker carries both lists.
    for (_, given) in ev.params.iter().filter(|(n, _)| n == TRUNCATED_PARAM) {
        truncated.extend(given.split(',').filter(|f| !f.is_empty()));
    }
    let params: Vec<_> = ev.params.iter().filter(|(n, _)| valid_name(n) && n != TRUNCATED_PARAM).collect();
    let sd_start = line.len();
    if !params.is_empty() {
        let _ = write!(line, " [{SD_ID}");
        for (name, value) in params {
            let used = line.len() - sd_start;
            // ` name=""`: without room even for an empty value the param is left out.
            let Some(room) = budget.checked_sub(used + name.len() + 4) else {
                truncated.push(name);
                continue;
            };
            let _ = write!(line, " {name}=\"");
            let cap = value_cap(name);
            let mark = line.len();
            let mut taken = escape_value_capped(value, cap, room, &mut line);
            if name == "secret_b64" && !taken.is_multiple_of(4) && value.chars().nth(taken).is_some() {
                // Keep whole base64 quanta so the cut secret still decodes.
                line.truncate(mark);
                taken = escape_value_capped(value, taken - taken % 4, room, &mut line);
            }
            if value.chars().nth(taken).is_some() {
                truncated.push(name);
            }
            line.push('"');
        }
    }
    if !truncated.is_empty() {
        if line.len() == sd_start {
            let _ = write!(line, " [{SD_ID}");
        }
        let _ = write!(line, " {TRUNCATED_PARAM}=\"");
        let mark = line.len();
        for (i, name) in truncated.iter().enumerate() {
            // The reserve bounds the list; names past it are summed up as `…`.
            if line.len() - mark + name.len() * 2 + 4 > MARKER_RESERVE - 32 {
                line.push_str(",…");
                break;
            }
            if i > 0 {
                line.push(',');
            }
            escape_param_value(name, &mut line);
        }
        line.push('"');
    }
    if line.len() == sd_start {
        line.push_str(" -");
    } else {
        line.push(']');
    }
    if !msg.is_empty() {
        line.push(' ');
        line.push_str(&msg);
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
            Some(m) => Some(unescape_msg(m.strip_prefix('\u{feff}').unwrap_or(m)).into_owned()),
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
        let mut i = 0;
        let end = loop {
            let Some(c) = rest[i..].chars().next() else {
                return err(format!("unterminated value of SD param {name}"));
            };
            match c {
                '"' => break i,
                '\\' => {
                    let after = &rest[i + 1..];
                    match after.chars().next() {
                        None => return err(format!("unterminated value of SD param {name}")),
                        Some(e @ ('"' | '\\' | ']')) => {
                            value.push(e);
                            i += 2;
                        }
                        Some(_) => match unescape_at(after) {
                            Some((e, len)) => {
                                value.push(e);
                                i += 1 + len;
                            }
                            // RFC 5424: a backslash before any other char is kept as is.
                            None => {
                                value.push('\\');
                                i += 1;
                            }
                        },
                    }
                }
                ']' => return err(format!("unescaped ']' in SD param {name}")),
                c => {
                    value.push(c);
                    i += c.len_utf8();
                }
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
        assert!(line.ends_with(" two\\x0alines"), "{line}");
        let parsed = parse_line(&line).unwrap();
        let sd = parsed.element(SD_ID).unwrap();
        assert_eq!(sd.param("username"), Some("ro\"ot]\\"));
        assert_eq!(sd.param("bad name"), None);
        assert_eq!(parsed.msg.as_deref(), Some("two\nlines"));
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

    fn relay(params: Vec<(&str, String)>, msg: Option<String>) -> RelayEvent {
        RelayEvent {
            timestamp: time::macros::datetime!(2026-12-03 10:00:00 UTC),
            severity: Severity::Info,
            host: "web-01".into(),
            app: "sniffer".into(),
            msgid: "tls_client_hello".into(),
            params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            msg,
        }
    }

    /// The issue's forged record: an SNI carrying a newline and a whole
    /// second line with another attacker's address.
    #[test]
    fn an_sni_cannot_start_a_second_line() {
        let forged =
            "x.test\n<134>1 2026-12-03T10:00:00Z web-01 ssh - login_attempt [relay@55555 src_ip=\"198.51.100.77\"]\r\0";
        let ev = relay(vec![("src_ip", "203.0.113.5".into()), ("sni", forged.into())], Some(forged.into()));
        let line = format_event(&ev);
        assert!(!line.contains(['\n', '\r', '\0']), "{line}");
        assert!(line.contains(r#"sni="x.test\x0a<134>1 "#), "{line}");
        let parsed = parse_line(&line).unwrap();
        let sd = parsed.element(SD_ID).unwrap();
        assert_eq!(sd.param("src_ip"), Some("203.0.113.5"));
        assert_eq!(sd.param("sni"), Some(forged));
        assert_eq!(parsed.msg.as_deref(), Some(forged));
    }

    #[test]
    fn ansi_c1_and_bidi_are_escaped_visibly_everywhere() {
        let nasty = "admin\u{202e}gnp.exe \u{1b}[31mred\u{1b}[0m \u{9b}2J \u{7f} \u{2066}x\u{2069} \u{feff}";
        let ev = relay(vec![("username", nasty.into())], Some(nasty.into()));
        let line = format_event(&ev);
        assert!(!line.chars().any(must_escape), "{line:?}");
        for shown in [r"admin\u202egnp.exe", r"\x1b[31mred\x1b[0m", r"\x9b2J", r"\x7f", r"\u2066x\u2069", r"\ufeff"] {
            assert_eq!(line.matches(shown).count(), 2, "{shown} in SD and MSG: {line}");
        }
        let parsed = parse_line(&line).unwrap();
        assert_eq!(parsed.element(SD_ID).unwrap().param("username"), Some(nasty));
        assert_eq!(parsed.msg.as_deref(), Some(nasty));
        assert_eq!(visible(nasty), r"admin\u202egnp.exe \x1b[31mred\x1b[0m \x9b2J \x7f \u2066x\u2069 \ufeff");
        // Mutation lines take the same rule.
        let m = format_mutation(&event("web\n01", &[], &["ssh"], Some("eve\u{1b}[2J")));
        assert!(m.contains(r#"decky="web\x0a01""#) && m.contains(r#"actor="eve\x1b[2J""#), "{m}");
    }

    #[test]
    fn backslashes_in_a_msg_stay_readable_and_round_trip() {
        for (msg, shown) in [
            (r"C:\Users\eve", r"C:\Users\eve"),
            (r"literal \x0a text", r"literal \\x0a text"),
            ("\\\n", r"\\\x0a"),
            (r"\\", r"\\\"),
            (r"end\", r"end\"),
            (r"\u202e", r"\\u202e"),
        ] {
            let line = format_event(&relay(vec![], Some(msg.into())));
            assert!(line.ends_with(&format!(" - {shown}")), "{msg:?} → {line}");
            assert_eq!(parse_line(&line).unwrap().msg.as_deref(), Some(msg), "{line}");
        }
        // Someone else's line: an escape of a character that needs none is text.
        assert_eq!(parse_line(r"<13>1 - - - - - - a\x41\u0041\q").unwrap().msg.as_deref(), Some(r"a\x41\u0041\q"));
        let sd = parse_line(r#"<13>1 - - - - - [a@1 v="\x41\x1b\q"]"#).unwrap();
        assert_eq!(sd.structured_data[0].param("v"), Some("\\x41\u{1b}\\q"));
    }

    /// The issue's hidden session: a 70,000-character SSH username.
    #[test]
    fn a_huge_username_is_cut_marked_and_the_secret_kept() {
        let username = "A".repeat(70_000);
        let secret = "c2VjcmV0LXBhc3N3b3Jk".to_string();
        let ev = relay(
            vec![
                ("src_ip", "203.0.113.5".into()),
                ("username", username.clone()),
                ("secret_b64", secret.clone()),
                ("auth_method", "password".into()),
            ],
            Some(format!("password login attempt for {username}")),
        );
        let line = format_event(&ev);
        assert!(line.len() <= MAX_EVENT_LINE, "{}", line.len());
        let parsed = parse_line(&line).unwrap();
        let sd = parsed.element(SD_ID).unwrap();
        assert_eq!(sd.param("username"), Some(&username[..MAX_NAME_CHARS]));
        assert_eq!(sd.param("secret_b64"), Some(secret.as_str()));
        assert_eq!(sd.param("auth_method"), Some("password"));
        assert_eq!(sd.param(TRUNCATED_PARAM), Some("msg,username"));
        assert_eq!(parsed.msg.unwrap().chars().count(), MAX_MSG_CHARS);

        // A secret over its cap keeps whole base64 quanta.
        let long_secret = "QUJD".repeat(2000) + "QQ==";
        let line = format_event(&relay(vec![("secret_b64", long_secret.clone())], None));
        let kept = parse_line(&line).unwrap().element(SD_ID).unwrap().param("secret_b64").unwrap().to_string();
        assert_eq!(kept, long_secret[..MAX_SECRET_B64_CHARS]);
        assert!(line.contains(r#" truncated="secret_b64"]"#), "{}", &line[line.len() - 40..]);
    }

    #[test]
    fn a_producers_own_truncated_list_joins_the_marker() {
        let ev = relay(vec![("truncated", "subject,sans".into()), ("sni", "s".repeat(300))], None);
        let parsed = parse_line(&format_event(&ev)).unwrap();
        let sd = parsed.element(SD_ID).unwrap();
        assert_eq!(sd.params.iter().filter(|(n, _)| n == TRUNCATED_PARAM).count(), 1);
        assert_eq!(sd.param(TRUNCATED_PARAM), Some("subject,sans,sni"));
        assert_eq!(cut_chars("héllo", 2), Some("hé"));
        assert_eq!(cut_chars("héllo", 5), None);
    }

    #[test]
    fn many_long_params_stay_under_the_line_limit() {
        // Every value a 6-byte escape, many params: the budget cuts, the
        // marker says which, and the line still parses.
        let params: Vec<(String, String)> =
            (0..200).map(|i| (format!("p{i}"), "\u{202e}".repeat(MAX_VALUE_CHARS))).collect();
        let ev = RelayEvent { params, ..relay(vec![], Some("\u{1b}".repeat(10 * MAX_MSG_CHARS))) };
        let line = format_event(&ev);
        assert!(line.len() <= MAX_EVENT_LINE, "{}", line.len());
        let parsed = parse_line(&line).unwrap();
        let marker = parsed.element(SD_ID).unwrap().param(TRUNCATED_PARAM).unwrap().to_string();
        assert!(marker.starts_with("msg,p5,p6,") && marker.ends_with(",…"), "{marker}");
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

        /// Whatever a producer hands over: one line, no raw control or
        /// bidi character, under the limit, and every kept value (and the
        /// MSG) parses back exactly, or as its marked prefix when cut.
        #[test]
        fn format_event_is_always_one_clean_line(
            host in "\\PC{0,20}|.{0,20}",
            params in proptest::collection::vec(
                ("[a-z_]{1,10}|username|secret_b64|sni", prop_oneof![
                    ".{0,40}",
                    "[\\x00-\\x1f\\x7f-\\x9f\u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{61c}\\\\\"\\]xu0-9a-f]{0,40}",
                    "[a\n\u{1b}\u{202e}]{250,300}",
                ]),
                0..6,
            ),
            msg in proptest::option::of(prop_oneof![
                ".{0,60}",
                "[\\x00-\\x1f\\x7f-\\x9f\u{202e}\u{feff}\\\\xu0-9a ]{0,60}",
            ]),
        ) {
            let ev = RelayEvent {
                timestamp: time::macros::datetime!(2026-12-03 10:00:00 UTC),
                severity: Severity::Notice,
                host,
                app: "ssh".into(),
                msgid: "login_attempt".into(),
                params: params.clone(),
                msg: msg.clone(),
            };
            let line = format_event(&ev);
            prop_assert!(!line.chars().any(must_escape), "{:?}", line);
            prop_assert!(line.len() <= MAX_EVENT_LINE);
            let parsed = parse_line(&line).unwrap();
            prop_assert_eq!(parsed.msg.clone(), msg.filter(|m| !m.is_empty()));
            let cut = parsed.element(SD_ID).and_then(|e| e.param(TRUNCATED_PARAM)).unwrap_or("").to_string();
            let cut: Vec<&str> = cut.split(',').collect();
            let mut seen = std::collections::HashSet::new();
            for (name, value) in &params {
                if !seen.insert(name.clone()) || name == TRUNCATED_PARAM {
                    continue; // the first of a repeated name is the one `param` finds
                }
                let back = parsed.element(SD_ID).and_then(|e| e.param(name)).unwrap();
                if cut.contains(&name.as_str()) {
                    prop_assert!(value.starts_with(back) && back.chars().count() <= value_cap(name));
                } else {
                    prop_assert_eq!(back, value.as_str());
                }
            }
        }
    }
}
