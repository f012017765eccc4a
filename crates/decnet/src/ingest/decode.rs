//! Lines of `<log>.json` as the ingester stores them, and the evidence a
//! stored line carries.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::artifacts::{self, Artifact};
use super::recordings::{self, Recorded};
use super::store::{self, Credential};
use crate::collector::Record;

/// One line: the record, and its `fields` exactly as the collector wrote
/// them (what the `logs` row stores; decoding them into the record and
/// encoding them again for the row cost as much as the rest of the line).
///
/// `record.fields` is decoded only when something besides the row reads
/// it ([`reads_fields`]): a command's roll-up, an artifact, a recording, a
/// credential. For every other line (a sweep's connects and disconnects)
/// it is empty and the row still gets every field from `fields_json`.
#[derive(Debug)]
pub struct StoredLine {
    pub record: Record,
    pub fields_json: String,
}

/// Whether the ingester reads any of a line's fields beyond storing them:
/// a `command` (its roll-up key), an artifact or a recording (by event
/// type), or a credential (any line with a `username`). The test on the
/// text errs only toward decoding: a key is always a quoted string, and a
/// value that happens to read `"username"` just costs a decode.
pub fn reads_fields(event_type: &str, fields_json: &str) -> bool {
    matches!(event_type, "command" | artifacts::EVENT_TYPE)
        || (event_type == recordings::EVENT_TYPE && fields_json.contains("\"recording\""))
        || fields_json.contains("\"username\"")
}

/// [`Record`]'s JSON with `fields` borrowed as written.
#[derive(Deserialize)]
struct Line<'a> {
    timestamp: f64,
    decky: String,
    service: String,
    event_type: String,
    attacker_ip: String,
    #[serde(borrow)]
    fields: &'a RawValue,
    msg: String,
    raw_line: String,
    #[serde(default)]
    source: Option<String>,
}

/// One line of `<log>.json`.
pub fn decode(line: &[u8]) -> Result<StoredLine, serde_json::Error> {
    let l: Line = serde_json::from_slice(line)?;
    // Undecoded fields are still checked to be an object, as a `Record`'s
    // must be: a line that is not one is no record, decoded or not.
    if !l.fields.get().starts_with('{') {
        return Err(serde::de::Error::custom("fields is not a JSON object"));
    }
    let fields = match reads_fields(&l.event_type, l.fields.get()) {
        true => serde_json::from_str(l.fields.get())?,
        false => serde_json::Map::new(),
    };
    Ok(StoredLine {
        record: Record {
            timestamp: l.timestamp,
            decky: l.decky,
            service: l.service,
            event_type: l.event_type,
            attacker_ip: l.attacker_ip,
            fields,
            msg: l.msg,
            raw_line: l.raw_line,
            source: l.source,
        },
        fields_json: l.fields.get().to_owned(),
    })
}

/// The next `n` stored lines of `lines`; a line that is no record goes to
/// `bad_line` and is skipped.
pub fn next_lines<'a>(
    lines: &mut impl Iterator<Item = &'a [u8]>,
    n: usize,
    bad_line: &mut impl FnMut(&serde_json::Error),
) -> Vec<StoredLine> {
    let mut out = Vec::with_capacity(n);
    for line in lines {
        match decode(line) {
            Ok(l) => out.push(l),
            Err(e) => bad_line(&e),
        }
        if out.len() == n {
            break;
        }
    }
    out
}

/// What a trusted line proves beyond its `logs` row.
#[derive(Debug)]
pub struct Evidence {
    pub record: Record,
    pub artifact: Option<Artifact>,
    pub recording: Option<Recorded>,
    pub credential: Option<Credential>,
}

/// The evidence in `line`, if it carries any (most lines carry none).
pub fn evidence_of(line: StoredLine) -> Option<Evidence> {
    let record = line.record;
    let artifact = artifacts::artifact_of(&record);
    let recording = recordings::recording_of(&record);
    let credential = store::credential_of(&record);
    if artifact.is_none() && recording.is_none() && credential.is_none() {
        return None;
    }
    Some(Evidence { record, artifact, recording, credential })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_its_fields_as_written_and_decodes_them_too() {
        let record = crate::collector::parse_record(
            r#"<134>1 - web ssh - login_attempt [relay@55555 src_ip="1.2.3.4" username="r\"oot" secret_b64="aHVudGVyMg=="] hi"#,
            0.0,
        )
        .unwrap();
        let written = serde_json::to_string(&record).unwrap();
        let line = decode(written.as_bytes()).unwrap();
        assert_eq!(line.record, record);
        assert_eq!(line.fields_json, serde_json::to_string(&record.fields).unwrap());
        assert!(decode(b"{\"timestamp\": 1}").is_err(), "a line without the record's keys is no record");
        assert!(evidence_of(line).is_some_and(|e| e.credential.is_some()));
    }

    #[test]
    fn fields_are_decoded_for_every_line_that_can_prove_something() {
        let line = |text: &str| {
            let record = crate::collector::parse_record(text, 0.0).unwrap();
            let l = decode(serde_json::to_string(&record).unwrap().as_bytes()).unwrap();
            assert_eq!(l.fields_json, serde_json::to_string(&record.fields).unwrap(), "the row keeps every field");
            (record, l)
        };
        // Whatever the event type, a username means a possible credential.
        let (record, l) =
            line(r#"<134>1 - db mysql - auth [relay@55555 src_ip="1.2.3.4" username="sa" secret_b64="eA=="]"#);
        assert_eq!(l.record, record);
        assert!(evidence_of(l).is_some_and(|e| e.credential.is_some_and(|c| c.username == "sa")));
        let (record, l) = line(r#"<134>1 - web ssh - command [relay@55555 src_ip="1.2.3.4" command="id"] CMD id"#);
        assert_eq!(l.record, record, "a command's roll-up key is its field");
        let (record, l) =
            line(r#"<134>1 - web ssh - session_recorded [relay@55555 src_ip="1.2.3.4" recording="a/b.cast"]"#);
        assert_eq!(l.record, record);
        // A connect proves nothing more: its fields stay undecoded.
        let (record, l) = line(r#"<134>1 - web ssh - connect [relay@55555 src_ip="1.2.3.4" src_port="5"] hi"#);
        assert!(l.record.fields.is_empty() && !record.fields.is_empty());
        let written = serde_json::to_string(&record).unwrap();
        let not_object = written.replacen(&l.fields_json, "[1]", 1);
        assert!(decode(not_object.as_bytes()).is_err(), "fields must be an object, decoded or not");
        assert_eq!((l.record.decky.as_str(), l.record.attacker_ip.as_str()), ("web", "1.2.3.4"));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let good =
            serde_json::to_string(&crate::collector::parse_record("<134>1 - web ssh - connect - x", 0.0).unwrap())
                .unwrap();
        let text = format!("{good}\nnot json\n{good}\n{good}\n");
        let mut lines = text.lines().map(str::as_bytes);
        let mut bad = 0;
        let first = next_lines(&mut lines, 2, &mut |_| bad += 1);
        assert_eq!((first.len(), bad), (2, 1));
        let rest = next_lines(&mut lines, 2, &mut |_| bad += 1);
        assert_eq!((rest.len(), bad), (1, 1));
        assert!(evidence_of(rest.into_iter().next().unwrap()).is_none(), "a connect proves nothing more");
    }
}
