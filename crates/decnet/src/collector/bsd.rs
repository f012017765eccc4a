//! The other syslog lines decnet hears besides RFC 5424: BSD syslog (RFC
//! 3164, what `logger --rfc3164`, older daemons and rsyslog's traditional
//! forwarding format send) and lines that carry a whole syslog line as
//! their message (Docker's syslog/journald drivers relayed by rsyslog, a
//! json-file log shipped as text).
//!
//! BSD syslog has no grammar beyond `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`
//! (day space-padded: `Dec  3`; a syslog file's lines lack the `<PRI>`;
//! rsyslog's `RSYSLOG_ForwardFormat` puts an RFC 3339 time there instead),
//! and no year or zone: the year is the one
//! the line arrived in (last year when that would put it more than a day
//! in the future: a December line read in January), the zone is UTC.
//! rsyslog's traditional format puts a second space before a MSG that
//! began with one (`TAG:  MSG`); that space is the formatter's, not the
//! message's, and is dropped.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A parsed BSD line. The TAG is split into the program name and PID.
#[derive(Debug, Clone, PartialEq)]
pub struct BsdLine {
    pub pri: u8,
    /// Unix seconds.
    pub timestamp: f64,
    pub hostname: String,
    pub tag: Option<String>,
    pub pid: Option<String>,
    pub msg: String,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/// user.notice: the PRI of a line that has none (RFC 3164 §4.3.3).
pub const DEFAULT_PRI: u8 = 13;
/// RFC 3164 §4.1.3: a TAG is at most 32 characters.
const MAX_TAG: usize = 32;

/// Parse one BSD syslog line; `None` when it is not one.
/// `received_at` (unix seconds) supplies the year.
pub fn parse(line: &str, received_at: f64) -> Option<BsdLine> {
    let (pri, rest) = match line.strip_prefix('<') {
        Some(rest) => {
            let close = rest.find('>')?;
            let pri_text = &rest[..close];
            if pri_text.is_empty() || pri_text.len() > 3 || !pri_text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (pri_text.parse().ok().filter(|p| *p <= 191)?, &rest[close + 1..])
        }
        // A syslog *file* (`/var/log/syslog`) keeps no PRI: RFC 3164 §4.3.3's
        // default, user.notice, as a relay would add it.
        None => (DEFAULT_PRI, line),
    };
    let (timestamp, rest) = match rest.get(..15).and_then(|stamp| parse_timestamp(stamp, received_at)) {
        // `Mmm dd hh:mm:ss ` is exactly 16 bytes.
        Some(t) => (t, rest.get(15..)?.strip_prefix(' ')?),
        // rsyslog's RSYSLOG_ForwardFormat: the same line with an RFC 3339
        // TIMESTAMP (and a zone, so no guessing).
        None => {
            let (stamp, rest) = rest.split_once(' ')?;
            let t = OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
            (t.unix_timestamp_nanos() as f64 / 1e9, rest)
        }
    };
    let (hostname, rest) = rest.split_once(' ')?;
    if hostname.is_empty() || !hostname.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (tag, pid, msg) = split_tag(rest);
    // rsyslog's `%msg:::sp-if-no-1st-sp%`: one space of the two is its own.
    let msg = msg.strip_prefix(' ').filter(|_| tag.is_some()).unwrap_or(msg);
    Some(BsdLine {
        pri,
        timestamp,
        hostname: hostname.to_string(),
        tag,
        pid,
        msg: crate::events::rfc5424::unescape_msg(msg).into_owned(),
    })
}

/// `TAG[PID]: MSG` or `TAG: MSG`; anything else is all MSG.
fn split_tag(rest: &str) -> (Option<String>, Option<String>, &str) {
    let Some(colon) = rest.find(": ").or_else(|| rest.strip_suffix(':').map(str::len)) else {
        return (None, None, rest);
    };
    let tag = &rest[..colon];
    let msg = rest.get(colon + 2..).unwrap_or("");
    let (name, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((name, pid)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_alphanumeric()) => (name, Some(pid)),
        _ => (tag, None),
    };
    if name.is_empty() || name.len() > MAX_TAG || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'[') {
        return (None, None, rest);
    }
    (Some(name.to_string()), pid.map(str::to_string), msg)
}

fn parse_timestamp(stamp: &str, received_at: f64) -> Option<f64> {
    let b = stamp.as_bytes();
    if !stamp.is_ascii() || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &stamp[..3])? as u8 + 1;
    let day: u8 = stamp[4..6].trim_start().parse().ok()?;
    let num = |r: std::ops::Range<usize>| -> Option<u8> {
        let s = &stamp[r];
        s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let time = Time::from_hms(num(7..9)?, num(10..12)?, num(13..15)?).ok()?;
    let received = OffsetDateTime::from_unix_timestamp(received_at as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let month = Month::try_from(month).ok()?;
    let at_year = |year: i32| {
        Date::from_calendar_date(year, month, day)
            .ok()
            .map(|d| PrimitiveDateTime::new(d, time).assume_utc().unix_timestamp() as f64)
    };
    // Feb 29 exists only in some years: try this year, then last year.
    match at_year(received.year()) {
        Some(t) if t <= received_at + 86_400.0 => Some(t),
        _ => at_year(received.year() - 1),
    }
}

/// The syslog line a message carries, if it carries one: a message that
/// is itself `<PRI>…` (Docker's syslog or journald driver relayed by
/// rsyslog), or a Docker json-file record `{"log":"<PRI>…\n",…}`.
pub fn wrapped(msg: &str) -> Option<std::borrow::Cow<'_, str>> {
    let msg = msg.trim_start();
    if msg.starts_with('<') {
        return Some(std::borrow::Cow::Borrowed(msg));
    }
    if msg.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct JsonFile {
            log: String,
        }
        let record: JsonFile = serde_json::from_str(msg).ok()?;
        let inner = record.log.trim_end_matches(['\r', '\n']);
        return inner.starts_with('<').then(|| std::borrow::Cow::Owned(inner.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T11:20:00Z.
    const NOW: f64 = 1_796_296_800.0;

    #[test]
    fn logger_rfc3164_lines() {
        // Exactly what util-linux `logger --rfc3164 -t sshd --id=4242` sends.
        let l = parse("<13>Dec  3 11:20:19 vm sshd[4242]: Failed password for root from 203.0.113.9", NOW).unwrap();
        assert_eq!(l.pri, 13);
        assert_eq!(l.timestamp, NOW + 19.0);
        assert_eq!((l.hostname.as_str(), l.tag.as_deref(), l.pid.as_deref()), ("vm", Some("sshd"), Some("4242")));
        assert_eq!(l.msg, "Failed password for root from 203.0.113.9");
        let l = parse("<38>Nov 30 23:59:59 host app: text", NOW).unwrap();
        assert_eq!((l.tag.as_deref(), l.pid, l.msg.as_str()), (Some("app"), None, "text"));
    }

    #[test]
    fn rsyslogs_forward_format_has_an_rfc3339_timestamp() {
        // Exactly what rsyslog's RSYSLOG_ForwardFormat sent for a logger line.
        let l = parse("<13>2026-12-03T12:08:32.5+00:00 vm sshd[7]: Failed password", NOW).unwrap();
        assert_eq!((l.timestamp, l.tag.as_deref(), l.msg.as_str()), (NOW + 2912.5, Some("sshd"), "Failed password"));
        assert_eq!(parse("<13>2026-13-03T12:08:32Z vm sshd[7]: x", NOW), None);
    }

    #[test]
    fn a_syslog_file_line_has_no_pri() {
        let l = parse("Dec  3 11:20:19 vm CRON[99]: (root) CMD (true)", NOW).unwrap();
        assert_eq!((l.pri, l.hostname.as_str(), l.tag.as_deref()), (DEFAULT_PRI, "vm", Some("CRON")));
    }

    #[test]
    fn rsyslogs_double_space_is_not_part_of_the_message() {
        let l = parse("<30>Dec  3 11:20:00 web-01 sshd:  Accepted password", NOW).unwrap();
        assert_eq!(l.msg, "Accepted password");
        // Without a TAG every byte after HOST is the message.
        let l = parse("<30>Dec  3 11:20:00 web-01 no tag here", NOW).unwrap();
        assert_eq!((l.tag, l.msg.as_str()), (None, "no tag here"));
    }

    #[test]
    fn the_year_is_the_receivers_unless_that_is_the_future() {
        // A Dec 31 line received on Jan 1 2027 is from 2026.
        let jan_1_2027 = 1_798_761_600.0;
        let l = parse("<13>Dec 31 23:59:59 h t: x", jan_1_2027).unwrap();
        assert_eq!(l.timestamp, jan_1_2027 - 1.0);
    }

    #[test]
    fn not_bsd() {
        for bad in [
            "",
            "<13>",
            "<13>1 2026-12-03T11:20:19Z vm app - - - hello",
            "<13>Foo  3 11:20:19 vm x: y",
            "<13>Dec 32 11:20:19 vm x: y",
            "<13>Dec  3 25:20:19 vm x: y",
            "<13>Dec  3 11:20:19",
            "<999>Dec  3 11:20:19 vm x: y",
            "Dec  3 11:20:19",
            "just text",
        ] {
            assert_eq!(parse(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn wrapped_lines() {
        assert_eq!(wrapped(" <134>1 - - - - - -").as_deref(), Some("<134>1 - - - - - -"));
        let json = r#"{"log":"<134>1 - h a - m - hi\n","stream":"stdout","time":"2026-12-03T11:20:00Z"}"#;
        assert_eq!(wrapped(json).as_deref(), Some("<134>1 - h a - m - hi"));
        assert_eq!(wrapped(r#"{"log":"plain\n"}"#), None);
        assert_eq!(wrapped("plain"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "<[0-9]{1,3}>[A-Za-z]{3} [ 0-9]{2} [0-9:]{8} \\PC{0,40}", t in 0f64..4e9) {
            let _ = parse(&s, t);
        }
    }
}
